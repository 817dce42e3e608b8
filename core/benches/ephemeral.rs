//! What an ephemeral identity adds per request, natively (`cargo bench -p grantwall-core --bench ephemeral`):
//! the decision (parent's grants AND the identity's permissions) against the same call by the parent, the
//! lifetime check, and the budget counter's logic over an in-memory CAS store. The host's two shared-data
//! calls (get, set) are not in these figures: they are Envoy's, measured in Envoy (docs/identity.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use criterion::{criterion_group, criterion_main, Criterion};
use grantwall_core::config::McpMethod;
use grantwall_core::engine::{Engine, Request};
use grantwall_core::ephemeral::{check_alive, consume, counter_key, CounterStore, StoreError};
use grantwall_core::mcp::McpOp;
use serde_json::json;
use std::collections::HashMap;
use std::hint::black_box;

const ALICE: &str = "spiffe://cluster.local/ns/agents/sa/alice";
const SUB: &str = "oidc://issuer.test#sub-1";

fn engine() -> Engine {
    let grant = |tools: &[&str]| json!({"baseProtocol": true, "methods": [{"method": "tools/call", "names": tools}]});
    let config = json!({
        "version": "grantwall.io/v1alpha1",
        "settings": {"auditLog": false, "identity": {"ephemeral": [{"name": "tools/sub-1", "principal": SUB, "parent": ALICE,
            "ttlSeconds": 60, "maxRequests": 1_000_000_000u32, "permissions": [{"backend": 0, "rules": [{"name": "echo", "mcp": grant(&["echo"])}]}]}]}},
        "principals": [ALICE],
        "backends": [{"name": "tools/mcp", "paths": ["/mcp"], "policies": [{"name": "tools/p", "rules": [
            {"name": "alice", "principals": [0], "mcp": grant(&["echo", "get-sum"])}]}]}],
    });
    Engine::from_json(config.to_string().as_bytes()).unwrap()
}

#[derive(Default)]
struct Map(HashMap<String, (Vec<u8>, u32)>, u32);

impl CounterStore for Map {
    fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        Ok(self.0.get(key).cloned())
    }
    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<bool, StoreError> {
        if cas != 0 && self.0.get(key).is_some_and(|(_, c)| *c != cas) {
            return Ok(false);
        }
        self.1 += 1;
        self.0.insert(key.to_owned(), (value.to_vec(), self.1));
        Ok(true)
    }
}

fn bench(c: &mut Criterion) {
    let e = engine();
    let op = McpOp { name: "tools/call", base: false, method: Some(McpMethod::ToolsCall), target: Some("echo"), arguments: None };
    let req = |p| Request { method: "POST", path: "/mcp", authority: "mcp", destination_port: None, headers: &[], principal: Some(p), backend: Some(0), time: None, jwt_claims: None };
    let mut g = c.benchmark_group("ephemeral");
    g.bench_function("decide/parent", |b| b.iter(|| e.decide(black_box(&req(ALICE)), Some(&op)).allowed));
    g.bench_function("decide/ephemeral", |b| b.iter(|| e.decide(black_box(&req(SUB)), Some(&op)).allowed));
    g.bench_function("check_alive", |b| b.iter(|| check_alive(black_box(1_000), 2_000, Some(990), 60)));
    let mut store = Map::default();
    let key = counter_key("tools/sub-1");
    g.bench_function("consume/in-memory-cas", |b| b.iter(|| consume(&mut store, black_box(&key), u32::MAX)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
