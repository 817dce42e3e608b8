//! Shared pieces of the fuzz targets: the policy the decision-level targets run against, a
//! deterministic chunker, and the whole request pipeline from body bytes to a comparable decision.

use grantwall_core::engine::{Engine, Request};
use grantwall_core::jsonrpc;
use grantwall_core::mcp::McpOp;
use std::sync::OnceLock;

/// tests/e2e/policies/grants.yaml compiled (alice: get-sum, echo, prompts, one resource; bob: echo).
const POLICY: &str = include_str!("../corpus/config/grants.json");

pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| match Engine::from_json(POLICY.as_bytes()) {
        Ok(e) => e,
        Err(e) => panic!("fuzz policy does not load: {e}"),
    })
}

/// Cut `body` into chunks at points drawn from `seed` (xorshift64*), empty chunks included.
pub fn cut(body: &[u8], seed: u64) -> Vec<&[u8]> {
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let n = (next() % (rest.len() as u64 + 1)) as usize;
        let (a, b) = rest.split_at(n);
        out.push(a);
        rest = b;
    }
    out
}

/// Parse + decide for alice and bob on the backend's MCP path: what the filter would do with this body.
pub fn decide_body(engine: &Engine, body: &[u8]) -> String {
    if body.len() > engine.settings().max_body_bytes as usize {
        return "refuse:body-too-large".to_owned();
    }
    let msg = match jsonrpc::parse(body) {
        Ok(m) => m,
        Err(e) => return format!("refuse:{}", e.reason()),
    };
    let op = McpOp::from_message(&msg);
    let mut out = format!("{}:{:?}:", op.name, op.target);
    for who in ["alice", "bob"] {
        let principal = format!("spiffe://cluster.local/ns/agents/sa/{who}");
        let route = engine.route(Some("outbound|8000||mcp-server.tools.svc.cluster.local"), "", "/mcp");
        let req = Request {
            method: "POST",
            path: "/mcp",
            authority: "mcp-server",
            destination_port: None,
            headers: &[],
            principal: Some(&principal),
            backend: route.map(|r| r.backend),
            time: None,
            jwt_claims: None,
        };
        out.push_str(if engine.decide(&req, Some(&op)).allowed { "A" } else { "D" });
    }
    out
}
