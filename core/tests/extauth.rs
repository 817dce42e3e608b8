//! External authorization: which requests the engine selects for a check, the exact check request (HTTP
//! headers, gRPC CheckRequest bytes decoded back), and the reading of answers — every unreadable answer is
//! an error or unavailable, never an allow.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use grantwall_core::config::{McpMethod, CONFIG_VERSION};
use grantwall_core::engine::{Engine, Request};
use grantwall_core::extauth::{self, pb, CheckInput, ExtAuthProtocol, ExternalAuth, HeaderMutation, Verdict};
use grantwall_core::mcp::McpOp;
use prost::Message;
use serde_json::{json, Value};

const ALICE: &str = "spiffe://cluster.local/ns/agents/sa/alice";
const BOB: &str = "spiffe://cluster.local/ns/agents/sa/bob";

fn service(protocol: ExtAuthProtocol) -> ExternalAuth {
    ExternalAuth {
        policy: "tools/guard".into(),
        rules: vec![],
        protocol,
        cluster: "extauth".into(),
        authority: "guard.tools.svc.cluster.local:9000".into(),
        path_prefix: "/authz".into(),
        allowed_headers: vec!["x-trace".into()],
        allowed_response_headers: vec!["x-guard-verdict".into()],
        forward_body_max_bytes: Some(16),
        timeout_ms: 200,
        fail_open: false,
        cache_ttl_ms: 0,
    }
}

fn engine(external: Value, allow: Value) -> Engine {
    let config = json!({
        "version": CONFIG_VERSION,
        "principals": [ALICE, BOB],
        "backends": [{"name": "tools/mcp", "paths": ["/mcp"], "policies": allow, "externalAuth": external}],
        "routes": {"authorities": {"mcp.tools": 0}}
    });
    Engine::from_json(config.to_string().as_bytes()).unwrap()
}

fn request(principal: Option<&str>) -> Request<'_> {
    Request {
        method: "POST",
        path: "/mcp",
        authority: "mcp.tools",
        destination_port: None,
        headers: &[],
        principal,
        backend: Some(0),
        time: None,
        jwt_claims: None,
    }
}

const CALL: McpOp<'static> =
    McpOp { name: "tools/call", base: false, method: Some(McpMethod::ToolsCall), target: Some("get-sum"), arguments: Some(r#"{ "a": 1,
 "b": "é" }"#) };

#[test]
fn rules_select_what_is_checked_and_external_auth_alone_is_no_allow_policy() {
    let ext = json!({"policy": "tools/guard", "protocol": "HTTP", "cluster": "c", "authority": "a",
        "rules": [{"name": "alice", "principals": [0]}]});
    let e = engine(ext, json!([]));
    // No Allow policy: allowed locally, and only alice is sent to the service.
    assert!(e.has_policies(Some(0)));
    assert!(e.decide(&request(Some(BOB)), Some(&CALL)).allowed);
    assert_eq!(e.external_checks(&request(Some(ALICE)), Some(&CALL)), [None, Some(1)]);
    assert_eq!(e.external_checks(&request(Some(BOB)), Some(&CALL)), [None, None]);
    assert_eq!(e.external_checks(&request(None), None), [None, None]);
    assert_eq!(e.external_level(1).unwrap().policy, "tools/guard");
    // The service is told the arguments, and gets the headers it may see.
    assert!(e.needs_arguments());
    assert!(e.header_names().iter().any(|h| h == "authorization"));
}

#[test]
fn an_ephemeral_identity_is_selected_as_its_parent() {
    const SUB: &str = "oidc://issuer.test#sub-1";
    let config = json!({
        "version": CONFIG_VERSION,
        "settings": {"identity": {"ephemeral": [{"name": "tools/sub-1", "principal": SUB, "parent": ALICE,
            "ttlSeconds": 60, "permissions": [{"backend": 0, "rules": [{"name": "any"}]}]}]}},
        "principals": [ALICE, BOB],
        "backends": [{"name": "tools/mcp", "paths": ["/mcp"], "policies": [],
            "externalAuth": {"policy": "tools/guard", "protocol": "HTTP", "cluster": "c", "authority": "a",
                "rules": [{"name": "alice", "principals": [0]}]}}],
    });
    let e = Engine::from_json(config.to_string().as_bytes()).unwrap();
    // alice's guardrail covers the sub-agent acting for her; bob's requests are still not sent.
    assert_eq!(e.external_checks(&request(Some(SUB)), Some(&CALL)), [None, Some(1)]);
    assert_eq!(e.external_checks(&request(Some(BOB)), Some(&CALL)), [None, None]);
}

#[test]
fn no_rules_selects_everything() {
    let ext = json!({"policy": "tools/guard", "protocol": "GRPC", "cluster": "c", "authority": "a"});
    let e = engine(ext, json!([]));
    assert_eq!(e.external_checks(&request(None), None), [None, Some(1)]);
}

#[test]
fn a_config_the_filter_cannot_call_is_refused() {
    let config = |ext: Value| {
        json!({"version": CONFIG_VERSION, "backends": [{"name": "b", "paths": ["/mcp"], "externalAuth": ext}]}).to_string()
    };
    let err = Engine::from_json(config(json!({"policy": "p", "protocol": "HTTP", "cluster": "", "authority": "a"})).as_bytes())
        .err()
        .unwrap();
    assert_eq!(err.path, "backends[0].externalAuth.cluster");
    let err = Engine::from_json(
        config(json!({"policy": "p", "protocol": "HTTP", "cluster": "c", "authority": "a", "allowedResponseHeaders": ["content-length"]}))
            .as_bytes(),
    )
    .err()
    .unwrap();
    assert!(err.message.contains("may not be set"), "{err:?}");
    assert!(Engine::from_json(config(json!({"policy": "p", "protocol": "SOAP", "cluster": "c", "authority": "a"})).as_bytes()).is_err());
}

fn input<'a>(headers: &'a [(String, String)], body: &'a [u8], op: Option<&'a McpOp<'a>>) -> CheckInput<'a> {
    CheckInput {
        method: "POST",
        path: "/mcp?x=1",
        authority: "gw.example",
        headers,
        body,
        principal: Some(ALICE),
        backend: Some("tools/mcp"),
        op,
        id: Some("7"),
        protocol: &[],
    }
}

fn headers() -> Vec<(String, String)> {
    vec![("x-trace".into(), "t1".into()), ("authorization".into(), "Bearer x".into()), ("cookie".into(), "secret".into())]
}

#[test]
fn http_check_is_envoys_contract_plus_mcp_context() {
    let h = headers();
    let body = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get-sum"}}"#;
    let check = extauth::http_check(&service(ExtAuthProtocol::Http), &input(&h, body, Some(&CALL)));
    let get = |n: &str| check.headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    assert_eq!(get(":method"), Some("POST"));
    assert_eq!(get(":path"), Some("/authz/mcp?x=1"));
    assert_eq!(get(":authority"), Some("gw.example"));
    assert_eq!(get("x-trace"), Some("t1"));
    assert_eq!(get("authorization"), Some("Bearer x"));
    assert_eq!(get("cookie"), None, "not an allowed header");
    assert_eq!(check.body, body[..16].to_vec());
    assert_eq!(get("content-length"), Some("16"));
    assert_eq!(get("x-envoy-auth-partial-body"), Some("true"));
    assert_eq!(get("x-grantwall-identity"), Some(ALICE));
    assert_eq!(get("x-grantwall-backend"), Some("tools/mcp"));
    assert_eq!(get("x-grantwall-mcp-method"), Some("tools/call"));
    assert_eq!(get("x-grantwall-mcp-target"), Some("get-sum"));
    // Compact JSON, non-ASCII percent-encoded (header values stay visible ASCII).
    assert_eq!(get("x-grantwall-mcp-arguments"), Some(r#"{"a":1,"b":"%C3%A9"}"#));
}

#[test]
fn a_client_cannot_speak_for_grantwall() {
    let mut ea = service(ExtAuthProtocol::Http);
    ea.allowed_headers = vec!["x-grantwall-identity".into(), "x-envoy-auth-partial-body".into()];
    let h = vec![("x-grantwall-identity".to_owned(), "spiffe://evil".to_owned()), ("x-envoy-auth-partial-body".to_owned(), "false".to_owned())];
    let check = extauth::http_check(&ea, &input(&h, b"{}", Some(&CALL)));
    let values: Vec<&str> = check.headers.iter().filter(|(k, _)| k == "x-grantwall-identity").map(|(_, v)| v.as_str()).collect();
    assert_eq!(values, [ALICE]);
    assert_eq!(check.headers.iter().filter(|(k, _)| k == "x-envoy-auth-partial-body").count(), 1);
}

#[test]
fn header_values_cannot_inject_headers() {
    assert_eq!(extauth::header_value("a\r\nx-evil: 1"), "a%0D%0Ax-evil: 1");
    assert_eq!(extauth::header_value("100%"), "100%25");
    assert_eq!(extauth::header_value("plain"), "plain");
}

#[test]
fn no_forward_body_sends_no_body() {
    let mut ea = service(ExtAuthProtocol::Http);
    ea.forward_body_max_bytes = None;
    let h = headers();
    let check = extauth::http_check(&ea, &input(&h, b"{}", None));
    assert!(check.body.is_empty());
    assert!(!check.headers.iter().any(|(k, _)| k == "x-envoy-auth-partial-body" || k.starts_with("x-grantwall-mcp")));
}

#[test]
fn grpc_check_is_a_check_request_with_mcp_metadata() {
    let h = headers();
    let body = "{\"é\":1}".as_bytes(); // cut at 16 bytes never splits a character
    let bytes = extauth::grpc_check(&service(ExtAuthProtocol::Grpc), &input(&h, body, Some(&CALL)));
    let req = pb::CheckRequest::decode(bytes.as_slice()).unwrap();
    let attrs = req.attributes.unwrap();
    assert_eq!(attrs.source.unwrap().principal, ALICE);
    let http = attrs.request.unwrap().http.unwrap();
    assert_eq!((http.method.as_str(), http.path.as_str(), http.query.as_str(), http.host.as_str()), ("POST", "/mcp", "x=1", "gw.example"));
    assert_eq!(http.headers.get("x-trace").map(String::as_str), Some("t1"));
    assert_eq!(http.headers.get(":path").map(String::as_str), Some("/mcp?x=1"));
    assert!(!http.headers.contains_key("cookie"));
    assert_eq!(http.body, "{\"é\":1}");
    assert_eq!(attrs.context_extensions.get("grantwall.mcp-target").map(String::as_str), Some("get-sum"));
    assert_eq!(attrs.context_extensions.get("grantwall.mcp-arguments").map(String::as_str), Some(r#"{"a":1,"b":"é"}"#));
    let mcp = &attrs.metadata_context.unwrap().filter_metadata["mcp_proxy"];
    assert_eq!(mcp.fields["method"], pb::Value::string("tools/call"));
    let Some(pb::value::Kind::StructValue(params)) = &mcp.fields["params"].kind else { panic!() };
    assert_eq!(params.fields["name"], pb::Value::string("get-sum"));
    assert_eq!(params.fields["arguments"], pb::Value::from_json(&json!({"a": 1, "b": "é"})));
}

#[test]
fn a2a_and_llm_context_reaches_the_service_both_ways() {
    let h = headers();
    let protocol = [("a2a-operation", "SendMessage".to_owned()), ("llm-model", "gpt-4o\r\nx-evil: 1".to_owned())];
    let check_input = CheckInput { op: None, protocol: &protocol, ..input(&h, b"{}", None) };
    let check = extauth::http_check(&service(ExtAuthProtocol::Http), &check_input);
    let get = |n: &str| check.headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    assert_eq!(get("x-grantwall-a2a-operation"), Some("SendMessage"));
    // A model name is caller-chosen: it cannot inject a header.
    assert_eq!(get("x-grantwall-llm-model"), Some("gpt-4o%0D%0Ax-evil: 1"));
    assert_eq!(get("x-grantwall-mcp-method"), None);
    let bytes = extauth::grpc_check(&service(ExtAuthProtocol::Grpc), &check_input);
    let attrs = pb::CheckRequest::decode(bytes.as_slice()).unwrap().attributes.unwrap();
    let ext = |n: &str| attrs.context_extensions.get(n).map(String::as_str);
    assert_eq!(ext("grantwall.a2a-operation"), Some("SendMessage"));
    assert_eq!(ext("grantwall.llm-model"), Some("gpt-4o\r\nx-evil: 1"));
    assert_eq!(ext("grantwall.identity"), Some(ALICE));
}

#[test]
fn grpc_body_is_cut_at_a_character_boundary() {
    let mut ea = service(ExtAuthProtocol::Grpc);
    ea.forward_body_max_bytes = Some(2);
    let h = headers();
    let bytes = extauth::grpc_check(&ea, &input(&h, "\"é\"".as_bytes(), None));
    let http = pb::CheckRequest::decode(bytes.as_slice()).unwrap().attributes.unwrap().request.unwrap().http.unwrap();
    assert_eq!(http.body, "\"");
    assert_eq!(http.headers.get("x-envoy-auth-partial-body").map(String::as_str), Some("true"));
}

#[test]
fn http_answers() {
    let ea = service(ExtAuthProtocol::Http);
    let h = vec![("x-guard-verdict".to_owned(), "ok".to_owned()), ("x-other".to_owned(), "no".to_owned())];
    assert_eq!(
        extauth::http_verdict(&ea, Some("200"), &h, b""),
        Verdict::Allow(vec![HeaderMutation { name: "x-guard-verdict".into(), value: "ok".into(), append: false }])
    );
    assert_eq!(extauth::http_verdict(&ea, Some("403"), &[], b"  prompt\ninjection "), Verdict::Deny("prompt injection".into()));
    assert_eq!(extauth::http_verdict(&ea, Some("401"), &[], b""), Verdict::Deny("HTTP 401".into()));
    assert!(matches!(extauth::http_verdict(&ea, None, &[], b""), Verdict::Unavailable(_)));
    assert!(matches!(extauth::http_verdict(&ea, Some("503"), &[], b"no healthy upstream"), Verdict::Unavailable(_)));
    assert!(matches!(extauth::http_verdict(&ea, Some("abc"), &[], b""), Verdict::Error(_)));
    assert!(matches!(extauth::http_verdict(&ea, Some("100"), &[], b""), Verdict::Error(_)));
    let long = "x".repeat(1000);
    let Verdict::Deny(reason) = extauth::http_verdict(&ea, Some("403"), &[], long.as_bytes()) else { panic!() };
    assert_eq!(reason.chars().count(), extauth::MAX_REASON_CHARS + 1);
}

fn ok_with(headers: Vec<pb::HeaderValueOption>) -> Vec<u8> {
    pb::CheckResponse {
        status: Some(pb::RpcStatus { code: 0, message: String::new() }),
        denied_response: None,
        ok_response: Some(pb::OkHttpResponse { headers, ..Default::default() }),
    }
    .encode_to_vec()
}

fn header(key: &str, value: &str, append: Option<bool>) -> pb::HeaderValueOption {
    pb::HeaderValueOption {
        header: Some(pb::HeaderValue { key: key.into(), value: value.into(), raw_value: vec![] }),
        append: append.map(|value| pb::BoolValue { value }),
        append_action: 0,
    }
}

#[test]
fn grpc_answers() {
    assert_eq!(
        extauth::grpc_verdict(0, &ok_with(vec![header("X-User", "alice", None), header("x-tag", "t", Some(true))])),
        Verdict::Allow(vec![
            HeaderMutation { name: "x-user".into(), value: "alice".into(), append: false },
            HeaderMutation { name: "x-tag".into(), value: "t".into(), append: true },
        ])
    );
    let denied = pb::CheckResponse {
        status: Some(pb::RpcStatus { code: 7, message: "denied".into() }),
        denied_response: Some(pb::DeniedHttpResponse { status: None, headers: vec![], body: "tool echo is not approved".into() }),
        ok_response: None,
    };
    assert_eq!(extauth::grpc_verdict(0, &denied.encode_to_vec()), Verdict::Deny("tool echo is not approved".into()));
    let bare = pb::CheckResponse { status: Some(pb::RpcStatus { code: 16, message: "who are you".into() }), ..Default::default() };
    assert_eq!(extauth::grpc_verdict(0, &bare.encode_to_vec()), Verdict::Deny("who are you".into()));
    // Fail closed on everything else.
    assert!(matches!(extauth::grpc_verdict(0, b""), Verdict::Error(_)), "no status is not OK");
    assert!(matches!(extauth::grpc_verdict(0, b"\xff\xff\xff"), Verdict::Error(_)));
    assert!(matches!(extauth::grpc_verdict(14, b""), Verdict::Unavailable(_)));
    assert!(matches!(extauth::grpc_verdict(4, b""), Verdict::Unavailable(_)));
    assert!(matches!(extauth::grpc_verdict(13, b""), Verdict::Error(_)));
    for bad in ["content-length", ":path", "host", "mcp-name", "transfer-encoding"] {
        assert!(matches!(extauth::grpc_verdict(0, &ok_with(vec![header(bad, "x", None)])), Verdict::Error(_)), "{bad}");
    }
    assert!(matches!(extauth::grpc_verdict(0, &ok_with(vec![header("x-a", "a\r\nb", None)])), Verdict::Error(_)));
    let removing = pb::CheckResponse {
        status: Some(pb::RpcStatus::default()),
        ok_response: Some(pb::OkHttpResponse { headers_to_remove: vec!["authorization".into()], ..Default::default() }),
        ..Default::default()
    };
    assert!(matches!(extauth::grpc_verdict(0, &removing.encode_to_vec()), Verdict::Error(_)));
}

#[test]
fn grpc_service_names_the_cluster() {
    let ea = service(ExtAuthProtocol::Grpc);
    let svc = pb::GrpcService::decode(extauth::grpc_service(&ea).as_slice()).unwrap();
    assert_eq!(svc.envoy_grpc.unwrap().cluster_name, "extauth");
}

#[test]
fn cache_keys_separate_callers_tools_and_arguments() {
    let h = headers();
    let a = extauth::cache_key(1, &input(&h, b"", Some(&CALL)));
    let other_args = McpOp { arguments: Some(r#"{"a":2,"b":"é"}"#), ..CALL };
    assert_ne!(a, extauth::cache_key(1, &input(&h, b"", Some(&other_args))));
    // Formatting of the same arguments does not matter.
    let same_args = McpOp { arguments: Some(r#"{"a":1,"b":"é"}"#), ..CALL };
    assert_eq!(a, extauth::cache_key(1, &input(&h, b"", Some(&same_args))));
    let mut bob = input(&h, b"", Some(&CALL));
    bob.principal = Some(BOB);
    assert_ne!(a, extauth::cache_key(1, &bob));
    assert_ne!(a, extauth::cache_key(0, &input(&h, b"", Some(&CALL))));
}
