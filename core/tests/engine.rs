//! KAN decision semantics on the compiled config, and config loading errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use grantwall_core::config::*;
use grantwall_core::engine::{Engine, LevelOutcome, Request, Route};
use grantwall_core::jsonrpc;
use grantwall_core::mcp::McpOp;
use serde_json::json;

const ALICE: &str = "spiffe://cluster.local/ns/agents/sa/alice";
const BOB: &str = "spiffe://cluster.local/ns/agents/sa/bob";

fn engine(config: serde_json::Value) -> Engine {
    Engine::from_json(config.to_string().as_bytes()).unwrap()
}

/// One backend `tools/mcp` with the given backend-level policies and gateway-level policies.
fn config(gateway_policies: serde_json::Value, backend_policies: serde_json::Value) -> serde_json::Value {
    json!({
        "version": CONFIG_VERSION,
        "principals": [ALICE, BOB],
        "gateway": {"name": "gw/gateway", "policies": gateway_policies},
        "backends": [{"name": "tools/mcp", "paths": ["/mcp", "/local/mcp"], "policies": backend_policies}],
        "routes": {
            "clusters": {"outbound|8000||mcp.tools.svc.cluster.local": 0},
            "authorities": {"mcp.tools": 0, "mcp.tools.svc.cluster.local": 0}
        }
    })
}

fn tools_for(principal: u32, tools: &[&str], base: bool) -> serde_json::Value {
    json!({"name": "allow", "principals": [principal], "mcp": {"baseProtocol": base, "methods": [{"method": "tools/call", "names": tools}]}})
}

fn request<'a>(principal: Option<&'a str>, backend: Option<u32>) -> Request<'a> {
    Request { method: "POST", path: "/mcp", authority: "mcp.tools", destination_port: Some(443), headers: &[], principal, backend, time: None, jwt_claims: None }
}

fn call(tool: &str) -> McpOp<'_> {
    McpOp { name: "tools/call", base: false, method: Some(McpMethod::ToolsCall), target: Some(tool), arguments: None }
}

fn op(body: &str) -> (String, bool) {
    // Returns the method name and whether this is a base-protocol op, via the real parser.
    let m = jsonrpc::parse(body.as_bytes()).unwrap();
    let o = McpOp::from_message(&m);
    (o.name.to_owned(), o.base)
}

#[test]
fn no_policy_allows_everything() {
    let e = engine(config(json!([]), json!([])));
    let d = e.decide(&request(None, Some(0)), Some(&call("anything")));
    assert!(d.allowed);
    assert_eq!(d.reason(), "no-policy");
    assert!(!e.has_policies(Some(0)));
}

#[test]
fn allow_policy_grants_named_tools_to_named_callers_only() {
    let e = engine(config(json!([]), json!([{"name": "tools/p", "rules": [tools_for(0, &["get-sum"], true)]}])));
    let allowed = e.decide(&request(Some(ALICE), Some(0)), Some(&call("get-sum")));
    assert!(allowed.allowed);
    assert_eq!(allowed.backend, LevelOutcome::Matched { policy: "tools/p", rule: "allow" });
    assert_eq!(allowed.reason(), "rule-matched");
    for (who, tool) in [(Some(ALICE), "echo"), (Some(BOB), "get-sum"), (None, "get-sum"), (Some("spiffe://x/unknown"), "get-sum")] {
        let d = e.decide(&request(who, Some(0)), Some(&call(tool)));
        assert!(!d.allowed, "{who:?} {tool}");
        assert_eq!(d.backend, LevelOutcome::DefaultDeny);
        assert_eq!(d.deciding().0, "backend");
    }
}

#[test]
fn base_protocol_option_skip_denies_initialize_match_allows_it() {
    let init = McpOp { name: "initialize", base: true, method: None, target: None, arguments: None };
    let list = McpOp { name: "tools/list", base: true, method: Some(McpMethod::ToolsList), target: None, arguments: None };
    let skip = engine(config(json!([]), json!([{"name": "p/skip", "rules": [tools_for(0, &["get-sum"], false)]}])));
    assert!(!skip.decide(&request(Some(ALICE), Some(0)), Some(&init)).allowed);
    assert!(!skip.decide(&request(Some(ALICE), Some(0)), Some(&list)).allowed);
    assert!(!skip.decide(&request(Some(ALICE), Some(0)), Some(&McpOp::STREAM)).allowed);
    assert!(skip.decide(&request(Some(ALICE), Some(0)), Some(&call("get-sum"))).allowed);

    let matching = engine(config(json!([]), json!([{"name": "p/match", "rules": [tools_for(0, &["get-sum"], true)]}])));
    for o in [init, list, McpOp::STREAM, McpOp::SESSION_END] {
        assert!(matching.decide(&request(Some(ALICE), Some(0)), Some(&o)).allowed, "{}", o.name);
        assert!(!matching.decide(&request(Some(BOB), Some(0)), Some(&o)).allowed, "{}", o.name);
    }
    // Every base-protocol message kind the parser produces is granted by MATCH.
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"logging/setLevel","params":{"level":"info"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"server/discover"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"g"}}}"#,
        r#"{"jsonrpc":"2.0","id":9,"result":{}}"#,
    ] {
        assert!(op(body).1, "{body}");
    }
    let (name, base) = op(r#"{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"taskId":"t"}}"#);
    assert_eq!((name.as_str(), base), ("tasks/get", false));
}

#[test]
fn tools_list_is_granted_by_the_method_list_even_when_skipping_base_methods() {
    let rules = json!([{"name": "r", "principals": [0], "mcp": {"methods": [{"method": "tools/list"}]}}]);
    let e = engine(config(json!([]), json!([{"name": "p/list", "rules": rules}])));
    let list = McpOp { name: "tools/list", base: true, method: Some(McpMethod::ToolsList), target: None, arguments: None };
    assert!(e.decide(&request(Some(ALICE), Some(0)), Some(&list)).allowed);
    assert!(!e.decide(&request(Some(ALICE), Some(0)), Some(&call("echo"))).allowed);
}

#[test]
fn omitted_methods_grant_every_functional_method_but_an_empty_list_grants_none() {
    let all = engine(config(json!([]), json!([{"name": "p/all", "rules": [{"name": "r", "principals": [0], "mcp": {}}]}])));
    let tasks = McpOp { name: "tasks/get", base: false, method: None, target: None, arguments: None };
    let read = McpOp { name: "resources/read", base: false, method: Some(McpMethod::ResourcesRead), target: Some("file:///x"), arguments: None };
    for o in [call("x"), tasks, read] {
        assert!(all.decide(&request(Some(ALICE), Some(0)), Some(&o)).allowed, "{}", o.name);
    }
    let init = McpOp { name: "initialize", base: true, method: None, target: None, arguments: None };
    assert!(!all.decide(&request(Some(ALICE), Some(0)), Some(&init)).allowed);

    let none = engine(config(json!([]), json!([{"name": "p/none", "rules": [{"name": "r", "principals": [0], "mcp": {"baseProtocol": true, "methods": []}}]}])));
    assert!(!none.decide(&request(Some(ALICE), Some(0)), Some(&call("x"))).allowed);
    assert!(!none.decide(&request(Some(ALICE), Some(0)), Some(&tasks)).allowed);
    assert!(none.decide(&request(Some(ALICE), Some(0)), Some(&init)).allowed);
}

#[test]
fn resources_are_matched_by_uri() {
    let rules = json!([{"name": "r", "principals": [0], "mcp": {"methods": [{"method": "resources/read", "names": ["file:///docs/readme.md"]}]}}]);
    let e = engine(config(json!([]), json!([{"name": "p/res", "rules": rules}])));
    let read = |uri| McpOp { name: "resources/read", base: false, method: Some(McpMethod::ResourcesRead), target: Some(uri), arguments: None };
    assert!(e.decide(&request(Some(ALICE), Some(0)), Some(&read("file:///docs/readme.md"))).allowed);
    assert!(!e.decide(&request(Some(ALICE), Some(0)), Some(&read("file:///secret/keys.txt"))).allowed);
}

#[test]
fn mcp_conditions_never_match_non_mcp_traffic_but_source_only_rules_do() {
    let e = engine(config(json!([]), json!([{"name": "p/m", "rules": [tools_for(0, &["x"], true)]}])));
    assert!(!e.decide(&request(Some(ALICE), Some(0)), None).allowed);
    let open = engine(config(json!([]), json!([{"name": "p/src", "rules": [{"name": "alice-all", "principals": [0]}]}])));
    assert!(open.decide(&request(Some(ALICE), Some(0)), None).allowed);
    assert!(open.decide(&request(Some(ALICE), Some(0)), Some(&call("anything"))).allowed);
    assert!(!open.decide(&request(Some(BOB), Some(0)), None).allowed);
}

#[test]
fn source_less_rules_match_any_caller_including_anonymous() {
    let rules = json!([{"name": "anyone-echo", "mcp": {"methods": [{"method": "tools/call", "names": ["echo"]}]}}]);
    let e = engine(config(json!([]), json!([{"name": "p/anyone", "rules": rules}])));
    assert!(e.decide(&request(None, Some(0)), Some(&call("echo"))).allowed);
    assert!(e.decide(&request(Some(BOB), Some(0)), Some(&call("echo"))).allowed);
    assert!(!e.decide(&request(None, Some(0)), Some(&call("get-sum"))).allowed);
}

#[test]
fn a_policy_without_rules_matches_all_traffic() {
    let e = engine(config(json!([]), json!([{"name": "p/empty", "rules": []}])));
    let d = e.decide(&request(None, Some(0)), Some(&call("anything")));
    assert!(d.allowed);
    assert_eq!(d.backend, LevelOutcome::Matched { policy: "p/empty", rule: "*" });
}

#[test]
fn or_across_policies_and_first_match_in_policy_order() {
    let p1 = json!({"name": "ns/first", "rules": [tools_for(0, &["echo"], false)]});
    let p2 = json!({"name": "ns/second", "rules": [tools_for(0, &["get-sum"], false), {"name": "anyone", "mcp": {}}]});
    let e = engine(config(json!([]), json!([p1, p2])));
    assert_eq!(e.decide(&request(Some(ALICE), Some(0)), Some(&call("echo"))).backend, LevelOutcome::Matched { policy: "ns/first", rule: "allow" });
    assert_eq!(e.decide(&request(Some(ALICE), Some(0)), Some(&call("get-sum"))).backend, LevelOutcome::Matched { policy: "ns/second", rule: "allow" });
    assert_eq!(e.decide(&request(Some(BOB), Some(0)), Some(&call("zzz"))).backend, LevelOutcome::Matched { policy: "ns/second", rule: "anyone" });
}

#[test]
fn gateway_and_backend_levels_are_anded() {
    // KAN's e2e: gateway allows only echo, backend allows only get-sum: neither passes both.
    let gw = json!([{"name": "gw/gateway-level", "rules": [tools_for(0, &["echo"], true)]}]);
    let be = json!([{"name": "tools/backend-level", "rules": [tools_for(0, &["get-sum"], true)]}]);
    let e = engine(config(gw, be));
    let echo = e.decide(&request(Some(ALICE), Some(0)), Some(&call("echo")));
    assert!(!echo.allowed);
    assert_eq!(echo.deciding().0, "backend");
    let sum = e.decide(&request(Some(ALICE), Some(0)), Some(&call("get-sum")));
    assert!(!sum.allowed);
    assert_eq!(sum.deciding(), ("gateway", LevelOutcome::DefaultDeny));
    let init = McpOp { name: "initialize", base: true, method: None, target: None, arguments: None };
    assert!(e.decide(&request(Some(ALICE), Some(0)), Some(&init)).allowed);
    // Without a backend only the gateway level applies.
    assert!(e.decide(&request(Some(ALICE), None), Some(&call("echo"))).allowed);
    assert_eq!(e.decide(&request(Some(ALICE), None), Some(&call("echo"))).backend, LevelOutcome::NotApplicable);
}

#[test]
fn http_conditions_all_must_hold() {
    let rule = json!({"name": "r", "principals": [0], "http": {
        "methods": ["POST"],
        "paths": [{"type": "prefix", "value": "/mcp"}, {"type": "regex", "value": "/v[0-9]+/mcp"}],
        "hosts": ["*.example.com", "mcp.tools"],
        "headers": [{"name": "x-team", "type": "exact", "value": "blue"}, {"name": "x-trace", "type": "regex", "value": "[a-f0-9]{4}"}],
        "ports": [443]
    }});
    let e = engine(config(json!([]), json!([{"name": "p/http", "rules": [rule]}])));
    let headers = vec![("x-team".to_owned(), "blue".to_owned()), ("x-trace".to_owned(), "beef".to_owned())];
    assert_eq!(e.header_names(), ["x-team", "x-trace"]);
    assert!(e.uses_ports());
    assert!(!engine(config(json!([]), json!([{"name": "p", "rules": [tools_for(0, &["x"], false)]}]))).uses_ports());
    let base = Request { method: "POST", path: "/mcp?x=1", authority: "a.example.com:443", destination_port: Some(443), headers: &headers, principal: Some(ALICE), backend: Some(0), time: None, jwt_claims: None };
    assert!(e.decide(&base, None).allowed);
    assert!(e.decide(&Request { path: "/v2/mcp", ..base }, None).allowed);
    assert!(e.decide(&Request { authority: "MCP.TOOLS", ..base }, None).allowed);
    let wrong_headers = vec![("x-team".to_owned(), "red".to_owned()), ("x-trace".to_owned(), "beef".to_owned())];
    let bad_trace = vec![("x-team".to_owned(), "blue".to_owned()), ("x-trace".to_owned(), "beefy".to_owned())];
    for (what, req) in [
        ("method", Request { method: "GET", ..base }),
        ("path segment", Request { path: "/mcpx", ..base }),
        ("regex is anchored", Request { path: "/v2/mcp/extra", ..base }),
        ("bare wildcard suffix", Request { authority: "example.com", ..base }),
        ("host", Request { authority: "evil.com", ..base }),
        ("header value", Request { headers: &wrong_headers, ..base }),
        ("header regex is anchored", Request { headers: &bad_trace, ..base }),
        ("missing header", Request { headers: &[], ..base }),
        ("port", Request { destination_port: Some(80), ..base }),
        ("unknown port", Request { destination_port: None, ..base }),
    ] {
        assert!(!e.decide(&req, None).allowed, "{what}");
    }
}

#[test]
fn routing_by_cluster_then_authority_then_path() {
    let e = engine(config(json!([]), json!([])));
    let on = Some(Route { backend: 0, mcp_endpoint: true });
    let off = Some(Route { backend: 0, mcp_endpoint: false });
    assert_eq!(e.route(Some("outbound|8000||mcp.tools.svc.cluster.local"), "whatever", "/mcp"), on);
    assert_eq!(e.route(None, "mcp.tools:8000", "/mcp/"), on);
    assert_eq!(e.route(None, "MCP.Tools.svc.cluster.local", "/mcp?session=1"), on);
    assert_eq!(e.route(None, "mcp.tools", "/local/mcp"), on);
    // Off the MCP path the request is still for this backend (its policies apply), just not MCP endpoint traffic.
    assert_eq!(e.route(None, "mcp.tools", "/mcpx"), off);
    assert_eq!(e.route(Some("outbound|8000||mcp.tools.svc.cluster.local"), "x", "/messages?session_id=1"), off);
    assert_eq!(e.route(Some("some-other-cluster"), "elsewhere", "/mcp"), None);
    assert_eq!(e.route(None, "mcp", "/mcp"), None);
}

#[test]
fn decision_cost_does_not_depend_on_unrelated_grants() {
    // 100,000 callers with one grant each: the decision still finds exactly the caller's rule.
    let principals: Vec<String> = (0..100_000).map(|i| format!("spiffe://cluster.local/ns/a/sa/agent-{i}")).collect();
    let rules: Vec<serde_json::Value> = (0..100_000u32)
        .map(|i| json!({"name": format!("r{i}"), "principals": [i], "mcp": {"methods": [{"method": "tools/call", "names": [format!("tool-{i}")]}]}}))
        .collect();
    let cfg = json!({"version": CONFIG_VERSION, "principals": principals, "gateway": {"name": "g", "policies": [{"name": "ns/big", "rules": rules}]}});
    let e = engine(cfg);
    let who = "spiffe://cluster.local/ns/a/sa/agent-77777";
    let d = e.decide(&request(Some(who), None), Some(&call("tool-77777")));
    assert_eq!(d.gateway, LevelOutcome::Matched { policy: "ns/big", rule: "r77777" });
    assert!(!e.decide(&request(Some(who), None), Some(&call("tool-77778"))).allowed);
}

fn load_error(cfg: serde_json::Value) -> String {
    match Engine::from_json(cfg.to_string().as_bytes()) {
        Ok(_) => panic!("config should not load: {cfg}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn config_errors_name_the_field() {
    let mut c = config(json!([]), json!([]));
    c["version"] = json!("grantwall.io/v0");
    assert!(load_error(c).contains("at version: unsupported version"));

    let c = config(json!([]), json!([{"name": "p", "rules": [{"name": "r", "principals": [5]}]}]));
    assert!(load_error(c).contains("backends[0].policies[0].rules[0].principals[0]: principal 5 does not exist"));

    let c = config(json!([]), json!([{"name": "p", "rules": [{"name": "r", "mcp": {"methods": [{"method": "tools/delete"}]}}]}]));
    let e = load_error(c);
    assert!(e.contains("backends[0].policies[0].rules[0].mcp.methods[0].method"), "{e}");

    let c = config(json!([]), json!([{"name": "p", "rules": [{"name": "r", "surprise": 1}]}]));
    let e = load_error(c);
    assert!(e.contains("backends[0].policies[0].rules[0]") && e.contains("surprise"), "{e}");

    let c = config(json!([]), json!([{"name": "p", "rules": [{"name": "r", "http": {"paths": [{"type": "regex", "value": "(unclosed"}]}}]}]));
    assert!(load_error(c).contains("backends[0].policies[0].rules[0].http.paths[0].value: invalid regular expression"));

    let mut c = config(json!([]), json!([]));
    c["routes"]["authorities"]["ghost"] = json!(3);
    assert!(load_error(c).contains("routes.authorities[\"ghost\"]: backend 3 does not exist"));

    let mut c = config(json!([]), json!([]));
    c["settings"] = json!({"identity": {"forwardedClientCert": {"trust": "fromPeers"}}});
    assert!(load_error(c).contains("settings.identity.forwardedClientCert.peers"));

    let mut c = config(json!([]), json!([]));
    c["principals"] = json!(["not-a-spiffe-id"]);
    assert!(load_error(c).contains("principals[0]"));

    assert!(Engine::from_json(b"{\"version\": \"grantwall.io/v1alpha1\"} trailing").is_err());
    assert!(Engine::from_json(b"").is_err());
}

#[test]
fn settings_default_to_kan_behaviour() {
    let e = engine(json!({"version": CONFIG_VERSION}));
    assert_eq!(e.settings().denial, DenialStyle::JsonrpcError);
    assert_eq!(e.settings().max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    assert_eq!(e.settings().identity.forwarded_client_cert.trust, XfccTrust::Never);
    assert!(e.settings().audit_log);
}
