//! Denial and error replies: KAN's exact shape by default, the alternatives on request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use grantwall_core::config::DenialStyle;
use grantwall_core::jsonrpc::parse;
use grantwall_core::mcp::{check_routing_headers, HeaderMismatch, RoutingHeaders};
use grantwall_core::respond::{error_reply, forbidden};
use serde_json::{json, Value};

fn body(s: &str) -> Value {
    serde_json::from_str(s).unwrap()
}

#[test]
fn kan_denial_is_http_200_with_the_same_id_and_type() {
    let r = forbidden(DenialStyle::JsonrpcError, Some("7"), Some("tools/call"), Some("echo"), "default-deny");
    assert_eq!(r.status, 200);
    let b = body(&r.body);
    assert_eq!(b["id"], json!(7));
    assert_eq!(b["error"]["code"], json!(403));
    assert_eq!(b["error"]["message"], json!("Access to this tool is forbidden."));
    assert_eq!(b["error"]["data"]["reason"], json!("default-deny"));
    let r = forbidden(DenialStyle::JsonrpcError, Some("\"seven\""), Some("tools/call"), Some("echo"), "default-deny");
    assert_eq!(body(&r.body)["id"], json!("seven"));
}

#[test]
fn tool_error_style_explains_to_the_model() {
    let r = forbidden(DenialStyle::ToolError, Some("1"), Some("tools/call"), Some("rm \"-rf\""), "default-deny");
    assert_eq!(r.status, 200);
    let b = body(&r.body);
    assert_eq!(b["result"]["isError"], json!(true));
    let text = b["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("rm \\\"-rf\\\"") && text.contains("default-deny"), "{text}");
    // Not a tool call: falls back to the JSON-RPC error.
    let r = forbidden(DenialStyle::ToolError, Some("1"), Some("prompts/get"), Some("p"), "default-deny");
    assert_eq!(body(&r.body)["error"]["code"], json!(403));
}

#[test]
fn http_style_and_messages_without_ids_use_status_403() {
    let r = forbidden(DenialStyle::Http, Some("1"), Some("tools/call"), Some("x"), "default-deny");
    assert_eq!((r.status, body(&r.body)["id"].clone()), (403, json!(1)));
    let r = forbidden(DenialStyle::JsonrpcError, None, Some("GET"), None, "default-deny");
    assert_eq!((r.status, body(&r.body)["id"].clone()), (403, Value::Null));
}

#[test]
fn protocol_errors_are_valid_json_rpc() {
    let r = error_reply(400, None, -32700, "body is not valid JSON: \"x\"", Some("malformed-json"));
    let b = body(&r.body);
    assert_eq!((r.status, b["error"]["code"].clone(), b["id"].clone()), (400, json!(-32700), Value::Null));
}

fn headers<'a>(v: Option<&'a str>, m: Option<&'a str>, n: Option<&'a str>) -> RoutingHeaders<'a> {
    RoutingHeaders { protocol_version: v, mcp_method: m, mcp_name: n }
}

#[test]
fn routing_headers_must_agree_with_the_body() {
    let call = parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#).unwrap();
    let v = Some("2026-07-28");
    assert_eq!(check_routing_headers(&call, &headers(v, Some("tools/call"), Some("echo"))), Ok(()));
    assert_eq!(check_routing_headers(&call, &headers(v, Some("tools/call"), Some("delete-everything"))), Err(HeaderMismatch::NameDiffers));
    assert_eq!(check_routing_headers(&call, &headers(v, Some("tools/list"), Some("echo"))), Err(HeaderMismatch::MethodDiffers));
    assert_eq!(check_routing_headers(&call, &headers(v, None, Some("echo"))), Err(HeaderMismatch::MethodMissing));
    assert_eq!(check_routing_headers(&call, &headers(v, Some("tools/call"), None)), Err(HeaderMismatch::NameMissing));
    // Older revisions: optional, but when present they must agree.
    assert_eq!(check_routing_headers(&call, &headers(Some("2025-11-25"), None, None)), Ok(()));
    assert_eq!(check_routing_headers(&call, &headers(None, None, Some("other"))), Err(HeaderMismatch::NameDiffers));
    let list = parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
    assert_eq!(check_routing_headers(&list, &headers(v, Some("tools/list"), None)), Ok(()));
    assert_eq!(check_routing_headers(&list, &headers(v, Some("tools/list"), Some("x"))), Err(HeaderMismatch::NameUnexpected));
}
