//! Token-bucket math, key derivation, slot choice and replies of core/src/limits.rs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use grantwall_core::config::DenialStyle;
use grantwall_core::limits::*;
use serde_json::{json, Value};

const SEC: u64 = 1_000_000_000;
/// A realistic wall clock (2026), so scaled values are as large as in production.
const T0: u64 = 1_795_000_000 * SEC;

/// Run `n` requests at `at` through one bucket state; count admitted.
fn run(b: &Bucket, tat: &mut u128, at: u64, n: u32) -> u32 {
    let mut ok = 0;
    for _ in 0..n {
        if let Admit::Yes { tat: t, .. } = b.admit(*tat, at) {
            *tat = t;
            ok += 1;
        }
    }
    ok
}

#[test]
fn burst_then_refill_at_the_configured_rate() {
    let b = Bucket::new(10, 1, 20);
    let mut tat = 0;
    assert_eq!(run(&b, &mut tat, T0, 100), 20, "a fresh bucket admits exactly its burst");
    assert_eq!(run(&b, &mut tat, T0 + SEC / 10 - 1, 5), 0, "nothing refilled before 1/rate");
    assert_eq!(run(&b, &mut tat, T0 + SEC / 10, 5), 1, "one token per 1/rate");
    assert_eq!(run(&b, &mut tat, T0 + 2 * SEC, 100), 19, "2 s refill 20, minus the one already taken");
}

#[test]
fn thirds_of_a_second_do_not_drift() {
    // 3 per second: 1/3 s is not a whole number of nanoseconds; a float or ns-rounded bucket drifts.
    // Burst 2 so a partly refilled token is never capped away by polling granularity.
    let b = Bucket::new(3, 1, 2);
    let mut tat = 0;
    let mut admitted = 0;
    // One attempt every ms for 1000 s: the burst of 2 at t=0, then one at each k/3 s for k = 1..=2999.
    for ms in 0..1_000_000u64 {
        admitted += run(&b, &mut tat, T0 + ms * 1_000_000, 1);
    }
    assert_eq!(admitted, 3001);
}

#[test]
fn refused_request_says_when_to_retry_exactly() {
    let b = Bucket::new(2, 60, 2);
    let mut tat = 0;
    assert_eq!(run(&b, &mut tat, T0, 2), 2);
    match b.admit(tat, T0) {
        Admit::No { retry_after_nanos } => {
            assert_eq!(retry_after_nanos, 30 * SEC);
            assert_eq!(retry_after_secs(retry_after_nanos), 30);
        }
        other => panic!("{other:?}"),
    }
    // Retrying at the advertised time works; one ns earlier does not.
    assert!(matches!(b.admit(tat, T0 + 30 * SEC - 1), Admit::No { retry_after_nanos: 1 }));
    assert!(matches!(b.admit(tat, T0 + 30 * SEC), Admit::Yes { remaining: 0, .. }));
    assert_eq!(retry_after_secs(1), 1, "never tell a client 0 seconds");
    assert_eq!(retry_after_secs(SEC + 1), 2, "round up");
}

#[test]
fn remaining_counts_down() {
    let b = Bucket::new(5, 1, 5);
    let mut tat = 0;
    let mut seen = vec![];
    for _ in 0..5 {
        match b.admit(tat, T0) {
            Admit::Yes { tat: t, remaining } => {
                tat = t;
                seen.push(remaining)
            }
            Admit::No { .. } => panic!(),
        }
    }
    assert_eq!(seen, vec![4, 3, 2, 1, 0]);
}

#[test]
fn clock_stepping_back_refills_nothing() {
    let b = Bucket::new(1, 1, 1);
    let mut tat = 0;
    assert_eq!(run(&b, &mut tat, T0 + 100 * SEC, 1), 1);
    assert_eq!(run(&b, &mut tat, T0, 10), 0, "going back in time gives no tokens");
    assert_eq!(run(&b, &mut tat, T0 + 101 * SEC, 10), 1);
}

#[test]
fn idle_bucket_is_full_and_reusable() {
    let b = Bucket::new(10, 1, 10);
    let mut tat = 0;
    run(&b, &mut tat, T0, 10);
    assert!(!b.is_idle(tat, T0 + SEC / 2));
    assert!(b.is_idle(tat, T0 + SEC));
    // A full bucket behaves like a fresh one.
    let mut fresh = 0;
    assert_eq!(run(&b, &mut tat, T0 + 5 * SEC, 100), run(&b, &mut fresh, T0 + 5 * SEC, 100));
}

#[test]
fn extreme_parameters_do_not_overflow() {
    let b = Bucket::new(MAX_REQUESTS, MAX_PERIOD_SECONDS, MAX_REQUESTS);
    let mut tat = 0;
    assert_eq!(run(&b, &mut tat, u64::MAX - SEC, 3), 3);
    let b = Bucket::new(1, MAX_PERIOD_SECONDS, 1);
    let mut tat = 0;
    assert_eq!(run(&b, &mut tat, 0, 2), 1);
    assert!(matches!(b.admit(tat, 0), Admit::No { retry_after_nanos } if retry_after_nanos == u64::from(MAX_PERIOD_SECONDS) * SEC));
}

#[test]
fn values_round_trip_and_reject_other_layouts() {
    let fp = [7u8; 16];
    let b = Bucket::new(3, 1, 3);
    let tat = b.scaled(T0) + 12345u128;
    let v = encode_rate(&fp, tat, &b);
    let (f, t, idle_at) = decode_rate(&v).unwrap();
    assert_eq!((f, t), (fp, tat));
    assert!(idle_at >= T0 && idle_at <= T0 + SEC);
    assert!(decode_rate(&v[..v.len() - 1]).is_none());
    assert!(decode_rate(b"ok").is_none());
    let f = encode_fanout(&fp, 3, 1000);
    assert_eq!(decode_fanout(&f, 1000), Some((fp, 3)));
    assert_eq!(decode_fanout(&f, 1000 + FANOUT_STALE_SECS), Some((fp, 0)), "a leaked count heals");
    assert!(decode_fanout(&v, 1000).is_none());
}

#[test]
fn candidate_slots_are_two_distinct_slots_in_range() {
    for i in 0..=255u8 {
        let fp = [i; 16];
        let [a, b] = candidate_slots(&fp, RATE_SLOTS);
        assert!(a < RATE_SLOTS && b < RATE_SLOTS && a != b);
    }
    assert_eq!(candidate_slots(&[9; 16], 1), [0, 0]);
}

#[test]
fn slot_choice_prefers_own_then_free_then_least_loss() {
    use SlotState::*;
    assert_eq!(choose_slot([Taken { weight: 1 }, Mine], false), Some(1));
    assert_eq!(choose_slot([Taken { weight: 1 }, Free], false), Some(1));
    assert_eq!(choose_slot([Taken { weight: 1 }, Taken { weight: 2 }], false), None);
    assert_eq!(choose_slot([Taken { weight: 5 }, Taken { weight: 2 }], true), Some(1));
    let me = [1u8; 16];
    let other = [2u8; 16];
    let b = Bucket::new(1, 10, 1);
    let busy = encode_rate(&other, b.scaled(T0) + u128::from(10 * SEC), &b);
    assert!(matches!(rate_slot_state(Some(&busy), &me, T0).0, Taken { .. }));
    assert_eq!(rate_slot_state(Some(&busy), &me, T0 + 10 * SEC).0, Free, "foreign bucket full again: free");
    assert_eq!(rate_slot_state(Some(&busy), &other, T0).0, Mine);
    assert_eq!(rate_slot_state(None, &me, T0).0, Free);
    let f = encode_fanout(&other, 0, 5);
    assert_eq!(fanout_slot_state(Some(&f), &me, 5).0, Free, "zero in flight: free");
    let f = encode_fanout(&other, 2, 5);
    assert_eq!(fanout_slot_state(Some(&f), &me, 5).0, Taken { weight: 2 });
    assert_eq!(fanout_slot_state(Some(&f), &other, 5), (Mine, 2));
}

fn limits(rules: Value) -> Limits {
    let config: LimitsConfig = serde_json::from_value(json!({ "rules": rules })).unwrap();
    Limits::new(&config, 2).unwrap()
}

fn rate(key: &str) -> Value {
    json!({"key": key, "requests": 1, "periodSeconds": 1, "burst": 1})
}

const ALICE: &str = "spiffe://cluster.local/ns/agents/sa/alice";
const BOB: &str = "spiffe://cluster.local/ns/agents/sa/bob";
const CAROL: &str = "spiffe://cluster.local/ns/other/sa/carol";

fn subject<'a>(principal: Option<&'a str>, backend: Option<u32>, tool: Option<&'a str>) -> Subject<'a> {
    Subject { principal, backend, backend_name: backend.map(|b| if b == 0 { "tools/a" } else { "tools/b" }), tool }
}

fn fps(l: &Limits, s: &Subject<'_>) -> Vec<Fingerprint> {
    l.rate_checks(s).map(|c| c.fingerprint).collect()
}

#[test]
fn keys_separate_what_they_should_and_share_what_they_should() {
    let l = limits(json!([{"name": "t/p/r", "rateLimits": [rate("identity"), rate("identityTool"), rate("namespace"), rate("backend")]}]));
    let a_echo = fps(&l, &subject(Some(ALICE), Some(0), Some("echo")));
    assert_eq!(a_echo.len(), 4);
    let a_sum = fps(&l, &subject(Some(ALICE), Some(0), Some("sum")));
    let b_echo = fps(&l, &subject(Some(BOB), Some(0), Some("echo")));
    let c_echo_b1 = fps(&l, &subject(Some(CAROL), Some(1), Some("echo")));
    // identity: same for alice's two tools, differs for bob.
    assert_eq!(a_echo[0], a_sum[0]);
    assert_ne!(a_echo[0], b_echo[0]);
    // identity×tool: differs per tool and per caller.
    assert_ne!(a_echo[1], a_sum[1]);
    assert_ne!(a_echo[1], b_echo[1]);
    // namespace: alice and bob share agents/, carol's other/ differs.
    assert_eq!(a_echo[2], b_echo[2]);
    assert_ne!(a_echo[2], c_echo_b1[2]);
    // backend: everyone on backend 0 shares; backend 1 differs.
    assert_eq!(a_echo[3], b_echo[3]);
    assert_ne!(a_echo[3], c_echo_b1[3]);
    // Each limit has its own keyspace: identity and namespace keys never coincide.
    let all: std::collections::BTreeSet<_> = a_echo.iter().collect();
    assert_eq!(all.len(), 4);
    // No tool (not a tools/call): the identity×tool limit does not count it.
    assert_eq!(fps(&l, &subject(Some(ALICE), Some(0), None)).len(), 3);
}

#[test]
fn anonymous_and_empty_principal_and_length_tricks_get_distinct_keys() {
    let l = limits(json!([{"name": "t/p/r", "rateLimits": [rate("identityTool")]}]));
    let a = fps(&l, &subject(None, None, Some("x")));
    let b = fps(&l, &subject(Some(""), None, Some("x")));
    let c = fps(&l, &subject(Some("ab"), None, Some("c")));
    let d = fps(&l, &subject(Some("a"), None, Some("bc")));
    assert_ne!(a, b);
    assert_ne!(c, d);
}

#[test]
fn changing_a_limit_or_rule_name_starts_fresh_keys() {
    let s = subject(Some(ALICE), Some(0), None);
    let one = fps(&limits(json!([{"name": "t/p/r", "rateLimits": [rate("identity")]}])), &s);
    let two = fps(&limits(json!([{"name": "t/p/r", "rateLimits": [{"key": "identity", "requests": 2, "periodSeconds": 1, "burst": 1}]}])), &s);
    let three = fps(&limits(json!([{"name": "t/p/q", "rateLimits": [rate("identity")]}])), &s);
    assert_ne!(one, two);
    assert_ne!(one, three);
}

#[test]
fn rules_apply_by_target_and_caller() {
    let l = limits(json!([
        {"name": "t/p/gw", "rateLimits": [rate("identity")]},
        {"name": "t/p/b1-alice", "backend": 1, "principals": [ALICE], "maxFanOut": 2, "contextBudgetBytes": 100},
        {"name": "t/p/b1-any", "backend": 1, "contextBudgetBytes": 500},
        {"name": "t/p/tools", "backend": 0, "rateLimits": [{"key": "identity", "requests": 1, "periodSeconds": 1, "burst": 1, "tools": ["a", "b"]}]}
    ]));
    assert!(l.applies(None) && l.applies(Some(0)) && l.applies(Some(1)));
    let alice_b1 = subject(Some(ALICE), Some(1), None);
    let bob_b1 = subject(Some(BOB), Some(1), None);
    assert_eq!(l.context_budget(&alice_b1), Some((100, "t/p/b1-alice")), "the smallest budget wins");
    assert_eq!(l.context_budget(&bob_b1), Some((500, "t/p/b1-any")));
    assert_eq!(l.context_budget(&subject(Some(ALICE), Some(0), None)), None);
    assert_eq!(l.fan_out_checks(&alice_b1).count(), 1);
    assert_eq!(l.fan_out_checks(&bob_b1).count(), 0);
    assert_eq!(l.fan_out_checks(&alice_b1).next().unwrap().cap, 2);
    // Tool-filtered limit: only tools/call to a listed tool counts.
    assert_eq!(l.rate_checks(&subject(Some(ALICE), Some(0), Some("a"))).count(), 2);
    assert_eq!(l.rate_checks(&subject(Some(ALICE), Some(0), Some("c"))).count(), 1);
    assert_eq!(l.rate_checks(&subject(Some(ALICE), Some(0), None)).count(), 1);
    let only_b = limits(json!([{"name": "t/p/r", "backend": 1, "maxFanOut": 1}]));
    assert!(!only_b.applies(None) && !only_b.applies(Some(0)) && only_b.applies(Some(1)));
}

#[test]
fn invalid_limits_name_the_field() {
    let bad = |rules: Value, field: &str| {
        let config: LimitsConfig = serde_json::from_value(json!({ "rules": rules })).unwrap();
        let (path, msg) = Limits::new(&config, 2).unwrap_err();
        assert_eq!(path, field, "{msg}");
    };
    bad(json!([{"name": "r", "backend": 2, "maxFanOut": 1}]), "limits.rules[0].backend");
    bad(json!([{"name": "r", "maxFanOut": 0}]), "limits.rules[0].maxFanOut");
    bad(json!([{"name": "r", "contextBudgetBytes": 0}]), "limits.rules[0].contextBudgetBytes");
    bad(json!([{"name": "r"}]), "limits.rules[0].rateLimits");
    bad(json!([{"name": "r", "maxFanOut": 1}, {"name": "r", "maxFanOut": 1}]), "limits.rules[1].name");
    bad(json!([{"name": "r", "rateLimits": [{"key": "identity", "requests": 0, "periodSeconds": 1, "burst": 1}]}]), "limits.rules[0].rateLimits[0].requests");
    bad(json!([{"name": "r", "rateLimits": [{"key": "identity", "requests": 1, "periodSeconds": 86401, "burst": 1}]}]), "limits.rules[0].rateLimits[0].periodSeconds");
    bad(json!([{"name": "r", "rateLimits": [{"key": "identity", "requests": 1, "periodSeconds": 1, "burst": 0}]}]), "limits.rules[0].rateLimits[0].burst");
    bad(json!([{"name": "r", "rateLimits": [{"key": "identity", "requests": 1, "periodSeconds": 1, "burst": 1, "tools": ["b", "a"]}]}]), "limits.rules[0].rateLimits[0].tools");
    bad(json!([{"name": "r", "principals": [BOB, ALICE], "maxFanOut": 1}]), "limits.rules[0].principals");
}

#[test]
fn engine_loads_limits_and_refuses_bad_ones_with_the_path() {
    use grantwall_core::engine::Engine;
    let ok = json!({"version": "grantwall.io/v1alpha1", "limits": {"publishHeaders": true, "rules": [{"name": "t/p/r", "maxFanOut": 3}]}});
    let e = Engine::from_json(ok.to_string().as_bytes()).unwrap();
    assert!(e.limits().publish_headers() && e.limits().applies(None));
    let bad = json!({"version": "grantwall.io/v1alpha1", "limits": {"rules": [{"name": "t/p/r", "backend": 0, "maxFanOut": 3}]}});
    let Err(err) = Engine::from_json(bad.to_string().as_bytes()) else { panic!("accepted") };
    assert_eq!(err.path, "limits.rules[0].backend");
    let unknown = json!({"version": "grantwall.io/v1alpha1", "limits": {"rules": [{"name": "t/p/r", "maxFanout": 3}]}});
    assert!(Engine::from_json(unknown.to_string().as_bytes()).is_err(), "misspelt fields are refused");
}

#[test]
fn spiffe_namespaces() {
    assert_eq!(spiffe_namespace(ALICE), Some("agents"));
    assert_eq!(spiffe_namespace("spiffe://td/ns//sa/x"), None);
    assert_eq!(spiffe_namespace("spiffe://td/workload"), None);
    assert_eq!(spiffe_namespace("oidc://issuer#sub"), None);
}

fn body(s: &str) -> Value {
    serde_json::from_str(s).unwrap()
}

#[test]
fn over_limit_replies_keep_mcp_sessions_alive_and_say_when_to_retry() {
    let refused = Refused { reason: "rate-limited", rule: "t/p/r", retry_after_secs: 7 };
    let r = over_limit_reply(DenialStyle::JsonrpcError, Some("\"x\""), Some("tools/call"), Some("echo"), &refused);
    assert_eq!(r.status, 200);
    let b = body(&r.body);
    assert_eq!(b["id"], json!("x"));
    assert_eq!(b["error"]["code"], json!(RATE_LIMITED_CODE));
    assert_eq!(b["error"]["data"], json!({"reason": "rate-limited", "retryAfterSeconds": 7, "limit": "t/p/r"}));
    let r = over_limit_reply(DenialStyle::ToolError, Some("3"), Some("tools/call"), Some("echo"), &refused);
    assert_eq!(r.status, 200);
    let b = body(&r.body);
    assert_eq!(b["result"]["isError"], json!(true));
    assert!(b["result"]["content"][0]["text"].as_str().unwrap().contains("retry after 7 s"));
    let r = over_limit_reply(DenialStyle::Http, Some("3"), Some("tools/call"), Some("echo"), &refused);
    assert_eq!(r.status, 429);
    // Not MCP, or nothing to answer in JSON-RPC: 429.
    let r = over_limit_reply(DenialStyle::JsonrpcError, None, None, None, &refused);
    assert_eq!(r.status, 429);
    assert_eq!(body(&r.body)["id"], Value::Null);
    let r = over_limit_reply(DenialStyle::JsonrpcError, None, Some("notifications/initialized"), None, &refused);
    assert_eq!(r.status, 429);
}

#[test]
fn over_budget_reply_is_413_json_rpc() {
    let r = over_budget_reply(Some("5"), 2000, 1000, "t/p/r");
    assert_eq!(r.status, 413);
    let b = body(&r.body);
    assert_eq!(b["id"], json!(5));
    assert_eq!(b["error"]["data"]["reason"], json!("context-budget-exceeded"));
    assert_eq!(b["error"]["data"]["limitBytes"], json!(1000));
}

#[test]
fn header_values_are_always_legal_and_injective() {
    let mut out = String::new();
    header_value("get-sum", &mut out);
    assert_eq!(out, "get-sum");
    header_value("a b\r\nx-evil: 1", &mut out);
    assert_eq!(out, "a%20b%0D%0Ax-evil%3A%201".replace("%3A", ":"));
    header_value("naïve%", &mut out);
    assert_eq!(out, "na%C3%AFve%25");
    assert!(out.bytes().all(|b| b.is_ascii_graphic()));
}
