//! JSON-RPC request inspection: `jsonrpc::parse` + `mcp::check_routing_headers`.
//!
//! Oracles beyond "no panic": whatever the strict parser accepts, serde_json's ordinary `Value` reads the
//! same way (method, target, id), re-encoding it parses to the same message, the routing headers that
//! name exactly the body agree, and every reply built from the request's id is valid JSON echoing that id.
#![no_main]

use grantwall_core::config::DenialStyle;
use grantwall_core::jsonrpc::{parse, MessageKind};
use grantwall_core::mcp::{check_routing_headers, RoutingHeaders, HEADER_ROUTING_REVISION};
use grantwall_core::respond;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|body: &[u8]| {
    let Ok(msg) = parse(body) else { return };
    let v: Value = serde_json::from_slice(body).expect("strict parser accepted what serde_json refuses");
    assert_eq!(v["jsonrpc"], "2.0");
    if msg.kind != MessageKind::Response {
        assert_eq!(v["method"].as_str(), Some(msg.method.as_ref()), "method differs from a lenient reading");
    }
    let field = match msg.method.as_ref() {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => Some("uri"),
        _ => None,
    };
    if let Some(field) = field {
        assert_eq!(v["params"][field].as_str(), msg.target.as_deref(), "target differs from a lenient reading");
    }
    match msg.id {
        Some(raw) => assert_eq!(serde_json::from_str::<Value>(raw).ok().as_ref(), v.get("id")),
        None => assert!(v.get("id").is_none()),
    }

    // Re-encoded (escapes normalised, whitespace gone) it is the same message.
    let again = serde_json::to_vec(&v).expect("Value serializes");
    let m2 = parse(&again).expect("re-encoded message refused");
    assert_eq!((m2.kind, &m2.method, &m2.target), (msg.kind, &msg.method, &msg.target));

    // Headers that say exactly what the body says always agree; a missing Mcp-Method never does (2026-07-28).
    if msg.kind != MessageKind::Response {
        let exact = RoutingHeaders {
            protocol_version: Some(HEADER_ROUTING_REVISION),
            mcp_method: Some(msg.method.as_ref()),
            mcp_name: field.and(msg.target.as_deref()),
        };
        assert_eq!(check_routing_headers(&msg, &exact), Ok(()));
        let missing = RoutingHeaders { mcp_method: None, ..exact };
        assert!(check_routing_headers(&msg, &missing).is_err());
        if field.is_some() {
            let other = RoutingHeaders { mcp_name: Some("\u{0}other"), ..exact };
            assert!(check_routing_headers(&msg, &other).is_err());
        }
    }

    // The id is echoed raw into replies: they must stay one valid JSON object with the same id.
    for style in [DenialStyle::JsonrpcError, DenialStyle::ToolError, DenialStyle::Http] {
        let reply = respond::forbidden(style, msg.id, Some(msg.method.as_ref()), msg.target.as_deref(), "default-deny");
        let r: Value = serde_json::from_str(&reply.body).expect("denial reply is not JSON");
        assert_eq!(r.get("id"), Some(v.get("id").unwrap_or(&Value::Null)));
    }
});
