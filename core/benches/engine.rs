//! Micro-benchmarks of the core, natively (`cargo bench -p grantwall-core`): the strict parser by body size,
//! the decision by policy size, and one request's whole core path as the filter runs it (identity from
//! XFCC, route, parse, header check, decide, audit record). The filter runs this same code compiled to Wasm
//! under V8, so absolute Wasm numbers are higher; these show where the core's time goes and that decision
//! cost does not grow with the number of grants.
//!
//! Policies and bodies have the shape bench/policies.py gives the load benchmark: a grant is one
//! (caller, tool) pair, N grants are N/10 callers with one rule each for ten tools, and the caller is
//! the middle one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use grantwall_core::audit::AuditRecord;
use grantwall_core::config::McpMethod;
use grantwall_core::engine::{Engine, Request};
use grantwall_core::identity;
use grantwall_core::jsonrpc;
use grantwall_core::mcp::{self, McpOp, RoutingHeaders};
use grantwall_core::respond;
use serde_json::json;
use std::hint::black_box;

const TOOLS_PER_CALLER: usize = 10;
const CLUSTER: &str = "bench_upstream";

fn principal(i: usize) -> String {
    format!("spiffe://cluster.local/ns/agents/sa/agent-{i:06}")
}

fn config_json(grants: usize) -> Vec<u8> {
    let callers = grants / TOOLS_PER_CALLER;
    let tools: Vec<String> = (0..TOOLS_PER_CALLER).map(|j| format!("tool-{j:02}")).collect();
    let rules: Vec<_> = (0..callers)
        .map(|i| json!({"name": format!("rule-{i:06}"), "principals": [i], "mcp": {"methods": [{"method": "tools/call", "names": tools}]}}))
        .collect();
    json!({
        "version": "grantwall.io/v1alpha1",
        "settings": {"identity": {"forwardedClientCert": {"trust": "always"}}, "auditLog": false},
        "principals": (0..callers).map(principal).collect::<Vec<_>>(),
        "backends": [{"name": "bench/mcp-server", "paths": ["/mcp"], "policies": [{"name": "bench/grants", "rules": rules}]}],
        "routes": {"clusters": {CLUSTER: 0}}
    })
    .to_string()
    .into_bytes()
}

fn engine(grants: usize) -> Engine {
    Engine::from_json(&config_json(grants)).unwrap()
}

fn body(size: usize, tool: &str) -> Vec<u8> {
    let render = |pad: usize| {
        json!({"jsonrpc": "2.0", "id": 42, "method": "tools/call", "params": {"name": tool, "arguments": {"text": "x".repeat(pad)}}})
            .to_string()
    };
    let pad = size - render(0).len();
    let out = render(pad).into_bytes();
    assert_eq!(out.len(), size);
    out
}

fn xfcc(grants: usize) -> String {
    let caller = principal(grants / TOOLS_PER_CALLER / 2);
    format!("By=spiffe://cluster.local/ns/gateway/sa/ingress;Hash={};URI={caller}", "ab".repeat(32))
}

const SIZES: [(usize, &str); 4] = [(256, "256B"), (1024, "1KiB"), (64 * 1024, "64KiB"), (1024 * 1024, "1MiB")];
const GRANTS: [usize; 3] = [10, 1_000, 100_000];

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    for (size, label) in SIZES {
        let b = body(size, "tool-03");
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(label), &b, |bench, b| {
            bench.iter(|| jsonrpc::parse(black_box(b)).unwrap().target.is_some())
        });
    }
    group.finish();
}

fn decide(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide");
    for grants in GRANTS {
        let e = engine(grants);
        let caller = principal(grants / TOOLS_PER_CALLER / 2);
        let backend = e.route(Some(CLUSTER), "127.0.0.1", "/mcp").map(|r| r.backend);
        for (verdict, tool) in [("allow", "tool-03"), ("deny", "tool-99")] {
            let op = McpOp { name: "tools/call", base: false, method: Some(McpMethod::ToolsCall), target: Some(tool), arguments: None };
            let req = Request { method: "POST", path: "/mcp", authority: "127.0.0.1", destination_port: None, headers: &[], principal: Some(&caller), backend, time: None, jwt_claims: None };
            assert_eq!(e.decide(&req, Some(&op)).allowed, verdict == "allow");
            group.bench_function(BenchmarkId::new(verdict, format!("{grants} grants")), |bench| {
                bench.iter(|| e.decide(black_box(&req), black_box(Some(&op))).allowed)
            });
        }
    }
    group.finish();
}

/// Everything the filter asks of the core for one POST, minus the host calls.
fn core_request(e: &Engine, xfcc: &str, body: &[u8]) -> usize {
    let trust = &e.settings().identity.forwarded_client_cert;
    let who = identity::resolve(None, Some(xfcc), trust).unwrap();
    let route = e.route(Some(CLUSTER), "127.0.0.1:10000", "/mcp");
    let msg = jsonrpc::parse(body).unwrap();
    mcp::check_routing_headers(&msg, &RoutingHeaders::default()).unwrap();
    let op = McpOp::from_message(&msg);
    let req = Request {
        method: "POST",
        path: "/mcp",
        authority: "127.0.0.1:10000",
        destination_port: None,
        headers: &[],
        principal: who.as_ref().map(|i| i.principal.as_str()),
        backend: route.map(|r| r.backend),
        time: None,
        jwt_claims: None,
    };
    let decision = e.decide(&req, Some(&op));
    let record = AuditRecord {
        identity: req.principal,
        identity_source: who.as_ref().map(|i| i.source.as_str()),
        backend: req.backend.and_then(|b| e.backend_name(b)),
        http_method: "POST",
        path: "/mcp",
        mcp_method: Some(op.name),
        target: op.target,
        ..AuditRecord::default()
    }
    .with_decision(&decision);
    let mut n = record.to_json().len();
    if !decision.allowed {
        n += respond::forbidden(e.settings().denial, msg.id, Some(op.name), op.target, decision.reason()).body.len();
    }
    n
}

fn request(c: &mut Criterion) {
    let mut group = c.benchmark_group("request");
    let e = engine(10);
    let x = xfcc(10);
    for (size, label) in SIZES.into_iter().take(3) {
        for (verdict, tool) in [("allow", "tool-03"), ("deny", "tool-99")] {
            let b = body(size, tool);
            group.bench_function(BenchmarkId::new(verdict, label), |bench| bench.iter(|| core_request(&e, black_box(&x), black_box(&b))));
        }
    }
    group.finish();
}

fn load(c: &mut Criterion) {
    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    for grants in GRANTS {
        let json = config_json(grants);
        group.throughput(Throughput::Bytes(json.len() as u64));
        group.bench_function(BenchmarkId::from_parameter(format!("{grants} grants")), |bench| {
            bench.iter_batched(|| json.clone(), |j| Engine::from_json(&j).is_ok(), BatchSize::LargeInput)
        });
    }
    group.finish();
}

criterion_group!(benches, parse, decide, request, load);
criterion_main!(benches);
