//! The strict JSON-RPC parser: what it reads, and every trick it refuses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use grantwall_core::jsonrpc::{parse, MessageKind, ParseError};

fn refused(body: &str) -> ParseError {
    parse(body.as_bytes()).expect_err(body)
}

#[test]
fn reads_a_tool_call_and_keeps_the_raw_id() {
    let m = parse(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get-sum","arguments":{"a":1}}}"#).unwrap();
    assert_eq!(m.kind, MessageKind::Request);
    assert_eq!(m.id, Some("7"));
    assert_eq!(m.method, "tools/call");
    assert_eq!(m.target.as_deref(), Some("get-sum"));

    let m = parse(br#"{"id":"abc-1","jsonrpc":"2.0","method":"tools/call","params":{"arguments":{},"name":"echo"}}"#).unwrap();
    assert_eq!(m.id, Some("\"abc-1\""));
    assert_eq!(m.target.as_deref(), Some("echo"));
}

#[test]
fn decodes_escapes_before_comparing_names() {
    let m = parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"name":"get\u002dsum"}}"#).unwrap();
    assert_eq!(m.method, "tools/call");
    assert_eq!(m.target.as_deref(), Some("get-sum"));
}

#[test]
fn reads_resource_uris_prompt_names_and_completion_refs() {
    let m = parse(br#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a.txt","name":"decoy"}}"#).unwrap();
    assert_eq!(m.target.as_deref(), Some("file:///a.txt"));
    let m = parse(br#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"greeting","arguments":{"name":"x"}}}"#).unwrap();
    assert_eq!(m.target.as_deref(), Some("greeting"));
    let m = parse(br#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"greeting"},"argument":{"name":"n","value":"a"}}}"#).unwrap();
    assert_eq!(m.target.as_deref(), Some("greeting"));
    let m = parse(br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}"#).unwrap();
    assert_eq!(m.protocol_version.as_deref(), Some("2025-11-25"));
}

#[test]
fn tells_notifications_and_responses_apart() {
    let n = parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
    assert_eq!(n.kind, MessageKind::Notification);
    assert_eq!(n.id, None);
    let r = parse(br#"{"jsonrpc":"2.0","id":3,"result":{"roots":[]}}"#).unwrap();
    assert_eq!(r.kind, MessageKind::Response);
    let e = parse(br#"{"jsonrpc":"2.0","id":"x","error":{"code":-1,"message":"no"}}"#).unwrap();
    assert_eq!(e.kind, MessageKind::Response);
}

#[test]
fn refuses_duplicate_keys_at_every_depth() {
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"tools/list","params":{"name":"a"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"delete-everything"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"a":1,"a":2}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"x":[{"k":1,"k":2}]}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name\u0000":"x"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"a","name":"b"}}}"#,
    ] {
        let e = refused(body);
        assert!(matches!(e, ParseError::DuplicateKey(_) | ParseError::AmbiguousKey(_)), "{body}: {e:?}");
        assert_eq!(e.code(), -32600);
    }
}

#[test]
fn refuses_duplicates_in_large_objects_too() {
    let mut args: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
    args.push("\"k3\":0".into());
    let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{{}}}}}}}"#, args.join(","));
    assert!(matches!(refused(&body), ParseError::DuplicateKey(k) if k == "k3"));

    let mut params: Vec<String> = (0..40).map(|i| format!("\"p{i}\":{i}")).collect();
    params.insert(0, "\"name\":\"echo\"".into());
    params.push("\"name\":\"delete-everything\"".into());
    let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{{}}}}}"#, params.join(","));
    assert!(matches!(refused(&body), ParseError::DuplicateKey(k) if k == "name"));
}

#[test]
fn refuses_keys_a_lenient_parser_would_fold_onto_ours() {
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"Method":"tools/call","params":{"name":"a"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","NAME":"delete-everything"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a","URI":"file:///secret"}}"#,
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVer\u{017F}ion\":\"x\"}}",
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name\u0000":"x"}}"#,
    ] {
        assert!(matches!(refused(body), ParseError::AmbiguousKey(_)), "{body}");
    }
}

#[test]
fn refuses_what_is_not_exactly_one_message() {
    assert_eq!(refused(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#), ParseError::Batch);
    assert_eq!(refused(r#"  [ ]"#), ParseError::Batch);
    for body in ["", "   ", "null", "\"x\"", "{", r#"{"jsonrpc":"2.0","id":1,"method":"ping"} {}"#, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}x"] {
        let e = refused(body);
        assert!(matches!(e, ParseError::InvalidJson(_) | ParseError::InvalidRequest(_)), "{body:?}: {e:?}");
    }
    // A UTF-8 BOM, UTF-16 and invalid UTF-8 are refused, not decoded.
    let mut bom = vec![0xEF, 0xBB, 0xBF];
    bom.extend_from_slice(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    assert!(matches!(parse(&bom), Err(ParseError::InvalidJson(_))));
    let utf16: Vec<u8> = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}".encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    assert!(parse(&utf16).is_err());
    assert!(matches!(parse(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"a\xff\"}}"), Err(ParseError::InvalidJson(_))));
    // Lone surrogates cannot round-trip: refused.
    assert!(matches!(parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a\ud800"}}"#), Err(ParseError::InvalidJson(_))));
}

#[test]
fn refuses_malformed_envelopes() {
    let cases = [
        r#"{"id":1,"method":"ping"}"#,
        r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
        r#"{"jsonrpc":2.0,"id":1,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":7}"#,
        r#"{"jsonrpc":"2.0","id":1}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","extra":true}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{},"params":{}}"#,
    ];
    for body in cases {
        assert!(matches!(refused(body), ParseError::InvalidRequest(_)), "{body}");
    }
}

#[test]
fn ids_must_be_strings_or_integers() {
    for id in ["null", "1.0", "1e3", "-0.5", "true", "{}", "[1]"] {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#);
        assert!(matches!(refused(&body), ParseError::InvalidRequest(_)), "{id}");
    }
    for id in ["0", "-3", "123456789012345678901234567890", "\"\"", "\"\\\"q\""] {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#);
        assert_eq!(parse(body.as_bytes()).unwrap().id, Some(id), "{id}");
    }
}

#[test]
fn targeted_methods_need_a_string_target() {
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["echo"]}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["echo"]}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"name":"file:///a"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":null}}"#,
    ] {
        let e = refused(body);
        assert!(matches!(e, ParseError::InvalidParams(_)), "{body}: {e:?}");
        assert_eq!(e.code(), -32602);
    }
}

#[test]
fn nesting_is_bounded() {
    let deep = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{}1{}}}}}"#, "[".repeat(200), "]".repeat(200));
    assert!(matches!(refused(&deep), ParseError::InvalidJson(_)));
    let ok = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"a":{}1{}}}}}}}"#, "[".repeat(100), "]".repeat(100));
    assert!(parse(ok.as_bytes()).is_ok());
}

#[test]
fn params_that_are_not_an_object_or_array_are_an_invalid_request_not_a_parse_error() {
    // Regression (found by tests/e2e/test_differential.py): `"params": null` is valid JSON, yet it was
    // refused as malformed-json (-32700) because serde's type error surfaced unclassified.
    for params in ["null", "true", "7", "-1", "1.5", "\"echo\""] {
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{params}}}"#);
        let e = refused(&body);
        assert_eq!(e, ParseError::InvalidRequest("\"params\" must be an object or an array"), "{params}");
        assert_eq!((e.code(), e.reason()), (-32600, "invalid-request"));
    }
}
