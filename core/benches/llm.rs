//! Per-request cost of the LLM checks: strict parse of a chat/completions body, the model grant and the
//! budgets that apply (the shared-data reads are host calls, measured in Envoy, not here).
//! `cargo bench -p grantwall-core --bench llm`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{criterion_group, criterion_main, Criterion};
use grantwall_core::llm::{request, Api, LlmConfig, LlmPolicySet};
use serde_json::json;
use std::hint::black_box;

fn policy_set() -> LlmPolicySet {
    let config: LlmConfig = serde_json::from_value(json!({"backends": [{"name": "ai/openai", "clusters": ["llm"], "policies": [
        {"name": "ai/models", "rules": [
            {"name": "production", "callers": ["spiffe://cluster.local/ns/production/sa/*"], "models": ["gpt-4*"]},
            {"name": "development", "callers": ["spiffe://cluster.local/ns/development/sa/*"], "models": ["*"]}]},
        {"name": "ai/budget", "budgets": [{"name": "daily", "tokens": 1000000, "windowSeconds": 86400, "per": "namespace"}]}
    ]}]}))
    .unwrap();
    LlmPolicySet::new(Some(&config)).unwrap()
}

fn body() -> String {
    let messages: Vec<_> = (0..8)
        .map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": "Summarise the quarterly report in three bullet points, please. ".repeat(2)}))
        .collect();
    json!({"model": "gpt-4o", "messages": messages, "stream": true, "max_tokens": 512, "temperature": 0.2}).to_string()
}

fn check(c: &mut Criterion) {
    let set = policy_set();
    let body = body();
    let caller = "spiffe://cluster.local/ns/production/sa/agent";
    let mut g = c.benchmark_group("llm");
    g.bench_function(format!("parse+grant+budgets ({} B body)", body.len()), |b| {
        b.iter(|| {
            let r = request::parse(Api::ChatCompletions, black_box(body.as_bytes())).unwrap();
            let backend = set.route(Some("llm"), "").unwrap();
            let d = set.decide_model(backend, Some(caller), &r.model);
            let budgets = set.budgets(backend, Some(caller));
            black_box((d.allowed(), budgets.len()))
        })
    });
    g.bench_function("usage opt-in rewrite", |b| b.iter(|| request::with_usage_opt_in(black_box(&body)).unwrap().len()));
    g.finish();
}

criterion_group!(benches, check);
criterion_main!(benches);
