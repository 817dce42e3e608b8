//! Config loading (`Engine::from_json`): the filter's `on_configure` input.
//!
//! Oracles: loading never panics; a config that loads can route and decide any request without panicking,
//! and loading through `serde_json::from_slice` + `Engine::new` agrees with `from_json`.
#![no_main]

use grantwall_core::config::Config;
use grantwall_core::engine::{Engine, Request};
use grantwall_core::mcp::McpOp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let loaded = Engine::from_json(data);
    let via_new = serde_json::from_slice::<Config>(data).ok().map(Engine::new);
    if let Some(other) = &via_new {
        assert_eq!(other.is_ok(), loaded.is_ok(), "from_json and Engine::new disagree");
    }
    let Ok(engine) = loaded else { return };
    let headers = [("x-a".to_owned(), "b".to_owned())];
    for (authority, path) in [("mcp-server", "/mcp"), ("MCP-SERVER.tools:8000", "/mcp/x?y"), ("[::1]:1", "//"), ("", "")] {
        let route = engine.route(Some("outbound|8000||mcp-server.tools.svc.cluster.local"), authority, path)
            .or_else(|| engine.route(None, authority, path));
        let backend = route.map(|r| r.backend);
        let _ = engine.has_policies(backend);
        let _ = engine.backend_name(backend.unwrap_or(u32::MAX));
        for principal in [None, Some("spiffe://cluster.local/ns/agents/sa/alice")] {
            let req = Request { method: "POST", path, authority, destination_port: Some(8000), headers: &headers, principal, backend, time: None, jwt_claims: None };
            let call = McpOp { name: "tools/call", base: false, method: grantwall_core::config::McpMethod::from_name("tools/call"), target: Some("echo"), arguments: None };
            for op in [None, Some(&McpOp::STREAM), Some(&call)] {
                let d = engine.decide(&req, op);
                let _ = (d.reason(), d.deciding());
            }
        }
    }
});
