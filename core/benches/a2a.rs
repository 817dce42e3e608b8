//! Micro-benchmarks of A2A inspection (`cargo bench -p grantwall-core --bench a2a`): the strict parse of a
//! SendMessage body (0.3 and 1.0 names), REST classification, the grant decision, and card filtering.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use criterion::{criterion_group, criterion_main, Criterion};
use grantwall_core::a2a::{self, Agent, AgentConfig, AgentPolicy, AgentRule, Operation, SignedCards, SkillView};
use serde_json::json;
use std::hint::black_box;

fn send_body(method: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": {
        "message": {"role": "ROLE_USER", "messageId": "9f1c", "taskId": "5e0b1c5a-0d7e-4f1b-9d7a-3c1f0e2a9b11",
                    "referenceTaskIds": ["a1", "b2"], "parts": [{"text": "summarise the attached report, please"}]},
        "configuration": {"taskPushNotificationConfig": {"url": "https://hooks.example.com/a2a/cb"}}}}))
    .unwrap()
}

fn agent(rules: usize) -> Agent {
    let rules = (0..rules as u32)
        .map(|i| AgentRule { name: format!("r{i}"), principals: Some(vec![i]), operations: Some(vec![Operation::SendMessage, Operation::GetTask]), skills: Some(vec!["echo".into()]) })
        .collect();
    Agent::new(AgentConfig { rpc_path: "/".into(), policies: vec![AgentPolicy { name: "p".into(), rules }], ..AgentConfig::default() })
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("a2a");
    for method in ["SendMessage", "message/send"] {
        let body = send_body(method);
        g.bench_function(format!("parse {method} ({} bytes)", body.len()), |b| b.iter(|| a2a::parse_jsonrpc(black_box(&body)).unwrap()));
    }
    g.bench_function("classify REST /tenant/tasks/{id}:cancel", |b| b.iter(|| a2a::classify_rest(black_box("POST"), black_box("/acme/tasks/5e0b1c5a:cancel")).unwrap()));
    let a = agent(10_000);
    g.bench_function("decide (10000 rules, last caller)", |b| b.iter(|| a.decide(black_box(Some(9_999)), black_box(Operation::GetTask))));
    let card = serde_json::to_vec(&json!({"name": "b", "supportedInterfaces": [{"url": "http://10.0.0.7:9999/", "protocolBinding": "JSONRPC"}],
        "skills": (0..20).map(|i| json!({"id": format!("skill-{i}"), "name": "S", "description": "does things", "tags": ["t"]})).collect::<Vec<_>>()})).unwrap();
    let view = SkillView(Some(vec!["skill-3", "skill-7"]));
    g.bench_function(format!("filter card (20 skills, {} bytes)", card.len()), |b| {
        b.iter(|| a2a::filter_card(black_box(&card), &view, Some("https://gw.example/b"), SignedCards::Refuse).unwrap())
    });
    g.finish();
}

criterion_group!(a2a_benches, benches);
criterion_main!(a2a_benches);
