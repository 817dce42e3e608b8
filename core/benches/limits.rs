//! Cost of a limit check in the core (`cargo bench -p grantwall-core --bench limits`): deriving the keys a
//! request meets (SHA-256 fingerprints), and one bucket decision as the filter makes it per limit (decode
//! the two candidate slots, choose, GCRA, encode). The filter adds the shared-data host calls around this
//! (per rate limit: 2 reads + 1 CAS write; per fan-out cap: 2 reads + 1 write, and 1 read + 1 write at the
//! end of the stream). See docs/limits.md for the figures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use criterion::{criterion_group, criterion_main, Criterion};
use grantwall_core::limits::*;
use serde_json::json;
use std::hint::black_box;

const ALICE: &str = "spiffe://cluster.local/ns/agents/sa/alice";
const NOW: u64 = 1_795_000_000_000_000_000;

fn limits() -> Limits {
    let config: LimitsConfig = serde_json::from_value(json!({"rules": [
        {"name": "tools/agent-limits/per-tool", "backend": 0, "principals": [ALICE],
         "rateLimits": [{"key": "identityTool", "requests": 10, "periodSeconds": 1, "burst": 20}],
         "maxFanOut": 8, "contextBudgetBytes": 65536},
        {"name": "tools/agent-limits/per-agent", "backend": 0,
         "rateLimits": [{"key": "identity", "requests": 100, "periodSeconds": 60, "burst": 100}]}
    ]}))
    .unwrap();
    Limits::new(&config, 1).unwrap()
}

fn bench(c: &mut Criterion) {
    let limits = limits();
    let subject = Subject { principal: Some(ALICE), backend: Some(0), backend_name: Some("tools/mcp-server"), tool: Some("get-sum") };
    let mut g = c.benchmark_group("limits");
    g.bench_function("keys: 2 rate limits + 1 fan-out cap", |b| {
        b.iter(|| {
            let s = black_box(&subject);
            let rates = limits.rate_checks(s).fold(0u8, |acc, c| acc ^ c.fingerprint[0]);
            let fan = limits.fan_out_checks(s).fold(0u8, |acc, c| acc ^ c.fingerprint[0]);
            black_box((rates, fan))
        })
    });
    let check = limits.rate_checks(&subject).next().unwrap();
    let mine = encode_rate(&check.fingerprint, check.bucket.scaled(NOW), &check.bucket);
    let other = encode_rate(&[9; 16], check.bucket.scaled(NOW) + 5, &check.bucket);
    g.bench_function("one bucket decision (2 slots decoded, GCRA, encode)", |b| {
        b.iter(|| {
            let fp = black_box(&check.fingerprint);
            let states = [rate_slot_state(Some(black_box(&other[..])), fp, NOW), rate_slot_state(Some(black_box(&mine[..])), fp, NOW)];
            let i = choose_slot([states[0].0, states[1].0], true).unwrap();
            match check.bucket.admit(states[i].1, NOW) {
                Admit::Yes { tat, .. } => black_box(encode_rate(fp, tat, &check.bucket)),
                Admit::No { .. } => black_box(mine),
            }
        })
    });
    g.bench_function("context budget lookup", |b| b.iter(|| black_box(limits.context_budget(black_box(&subject)))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
