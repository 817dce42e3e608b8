//! What per-caller filtering adds to a 100-tool `tools/list` response, natively (printed, not asserted):
//!
//!     cargo run --release -p grantwall-core --example list_filter_cost
//!
//! Measures: the engine decision per tool (a caller granted 10 of 100 tools), the JSON rewrite, the same
//! inside an SSE event (split, parse, rewrite), and hashing pinned tools (JCS + SHA-256).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use grantwall_core::config::{McpMethod, CONFIG_VERSION};
use grantwall_core::engine::{Engine, Request};
use grantwall_core::listfilter::{filter_message, Filtered, ListKind};
use grantwall_core::mcp::McpOp;
use grantwall_core::pinning::tool_hash;
use grantwall_core::sse::{parse_event, SseSplitter};
use serde_json::json;
use std::hint::black_box;
use std::time::Instant;

const ALICE: &str = "spiffe://cluster.local/ns/agents/sa/alice";

fn main() {
    let tools: Vec<_> = (0..100)
        .map(|i| {
            json!({"name": format!("tool-{i:03}"), "title": format!("Tool {i}"),
                   "description": "Does one thing well, with a description of realistic length for a model to read.",
                   "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}, "limit": {"type": "integer"}},
                                   "required": ["path"]},
                   "annotations": {"readOnlyHint": true}})
        })
        .collect();
    let body = json!({"jsonrpc": "2.0", "id": 7, "result": {"tools": tools, "nextCursor": "page-2"}}).to_string();
    let granted: Vec<String> = (0..100).step_by(10).map(|i| format!("tool-{i:03}")).collect();
    let config = json!({
        "version": CONFIG_VERSION, "principals": [ALICE],
        "backends": [{"name": "tools/mcp", "paths": ["/mcp"], "policies": [{"name": "tools/p", "rules": [
            {"name": "alice", "principals": [0], "mcp": {"baseProtocol": true, "methods": [
                {"method": "tools/call", "names": granted}]}}]}]}],
        "routes": {"authorities": {"mcp": 0}}
    });
    let engine = Engine::from_json(config.to_string().as_bytes()).unwrap();
    let request = Request { method: "POST", path: "/mcp", authority: "mcp", destination_port: None, headers: &[],
                            principal: Some(ALICE), backend: Some(0), time: None, jwt_claims: None };
    let judge = |name: &str| {
        let op = McpOp { name: "tools/call", base: false, method: Some(McpMethod::ToolsCall), target: Some(name), arguments: None };
        engine.decide(&request, Some(&op)).allowed
    };
    println!("100-tool tools/list response: {} bytes; caller granted 10 tools", body.len());

    let n = 2000;
    let per = |label: &str, start: Instant| {
        let us = start.elapsed().as_secs_f64() * 1e6 / f64::from(n);
        println!("{label:<52} {us:>9.1} µs per response");
    };

    let t = Instant::now();
    for _ in 0..n {
        let mut kept = 0;
        for i in 0..100 {
            kept += usize::from(judge(black_box(&format!("tool-{i:03}"))));
        }
        black_box(kept);
    }
    per("engine decisions only (100 x tools/call)", t);

    let t = Instant::now();
    for _ in 0..n {
        let out = filter_message(ListKind::Tools, "7", black_box(body.as_bytes()), false, |item| judge(item.key)).unwrap();
        black_box(out);
    }
    per("JSON response: parse + judge + rewrite", t);

    let t = Instant::now();
    for _ in 0..n {
        let v: serde_json::Value = serde_json::from_str(black_box(&body)).unwrap();
        black_box(serde_json::to_vec(&v).unwrap());
    }
    per("(reference: serde_json::Value parse + serialize)", t);

    let sse = format!("event: message\r\nid: 1\r\ndata: {body}\r\n\r\n");
    let t = Instant::now();
    for _ in 0..n {
        let mut s = SseSplitter::new();
        let mut outs = 0;
        for chunk in black_box(sse.as_bytes()).chunks(16 * 1024) {
            s.push(chunk);
            while let Some(ev) = s.next_event() {
                let data = parse_event(&ev).unwrap().data.unwrap();
                if let Filtered::Rewritten { body, .. } =
                    filter_message(ListKind::Tools, "7", data.as_bytes(), true, |item| judge(item.key)).unwrap()
                {
                    outs += body.len();
                }
            }
        }
        black_box(outs);
    }
    per("SSE response (16 KiB chunks): split + parse + rewrite", t);

    let raw: Vec<String> = (0..100).map(|i| serde_json::to_string(&body_tool(&body, i)).unwrap()).collect();
    let t = Instant::now();
    for _ in 0..n {
        for r in &raw {
            black_box(tool_hash(black_box(r)).unwrap());
        }
    }
    per("pins: JCS + SHA-256 of all 100 tools", t);
}

fn body_tool(body: &str, i: usize) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["result"]["tools"][i].clone()
}
