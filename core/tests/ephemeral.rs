//! Ephemeral identities: lifetime, the cross-worker request counter (CAS loop over a store that can conflict
//! or fail), and decisions (parent's grants AND the identity's own permissions).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use grantwall_core::config::*;
use grantwall_core::engine::{Engine, LevelOutcome, Request};
use grantwall_core::ephemeral::*;
use grantwall_core::mcp::McpOp;
use serde_json::json;
use std::collections::HashMap;

const ALICE: &str = "spiffe://cluster.local/ns/agents/sa/alice";
const SUB: &str = "oidc://issuer.test#sub-1";

// --- lifetime -------------------------------------------------------------------------------------------

#[test]
fn the_deadline_is_the_earlier_of_exp_and_iat_plus_ttl() {
    assert_eq!(deadline(1_000, Some(100), 60), Some(160));
    assert_eq!(deadline(150, Some(100), 60), Some(150));
    assert_eq!(deadline(1_000, None, 60), None);
    assert_eq!(deadline(u64::MAX, Some(u64::MAX - 1), 60), Some(u64::MAX), "no overflow");
}

#[test]
fn alive_until_the_deadline_second_then_expired_without_skew() {
    assert_eq!(check_alive(159, 1_000, Some(100), 60), Ok(()));
    assert_eq!(check_alive(160, 1_000, Some(100), 60), Err(Expired::Since { deadline: 160 }));
    assert_eq!(check_alive(149, 150, Some(100), 60), Ok(()));
    assert_eq!(check_alive(150, 150, Some(100), 60), Err(Expired::Since { deadline: 150 }));
    assert_eq!(check_alive(0, 1_000, None, 60), Err(Expired::NoIssuedAt));
    assert!(Expired::NoIssuedAt.message("tools/sub-1").contains("no iat"));
    assert!(Expired::Since { deadline: 160 }.message("tools/sub-1").contains("expired at 160"));
}

// --- the counter ----------------------------------------------------------------------------------------

/// Shared data as Envoy implements it: each write bumps the key's CAS token; a write with a stale token is
/// refused; CAS 0 writes unconditionally. `conflicts` simulates another worker winning the next N writes.
#[derive(Default)]
struct FakeShared {
    data: HashMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
    conflicts: u32,
    fail_get: bool,
    fail_set: bool,
    no_cas: bool,
    writes: u32,
}

impl CounterStore for FakeShared {
    fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        if self.fail_get {
            return Err(StoreError);
        }
        Ok(self.data.get(key).map(|(v, c)| (v.clone(), if self.no_cas { 0 } else { *c })))
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<bool, StoreError> {
        if self.fail_set {
            return Err(StoreError);
        }
        if self.conflicts > 0 {
            self.conflicts -= 1;
            // The other worker's increment lands first.
            let current = self.data.get(key).and_then(|(v, _)| decode_count(v)).unwrap_or(0);
            self.next_cas += 1;
            self.data.insert(key.to_owned(), (encode_count(current + 1).to_vec(), self.next_cas));
            return Ok(false);
        }
        if cas != 0 && self.data.get(key).is_some_and(|(_, c)| *c != cas) {
            return Ok(false);
        }
        self.next_cas += 1;
        self.writes += 1;
        self.data.insert(key.to_owned(), (value.to_vec(), self.next_cas));
        Ok(true)
    }
}

fn count(store: &FakeShared, key: &str) -> u64 {
    decode_count(&store.data[key].0).unwrap()
}

#[test]
fn counts_up_to_the_budget_then_refuses() {
    let mut s = FakeShared::default();
    let key = counter_key("tools/sub-1");
    assert_eq!(key, "grantwall/agent/tools/sub-1");
    for n in 1..=3 {
        assert_eq!(consume(&mut s, &key, 3), Budget::Counted { n });
    }
    assert_eq!(consume(&mut s, &key, 3), Budget::Exhausted);
    assert_eq!(consume(&mut s, &key, 3), Budget::Exhausted);
    assert_eq!(count(&s, &key), 3, "refused requests cost nothing");
}

#[test]
fn an_absent_counter_is_created_at_zero_then_incremented_under_cas() {
    let mut s = FakeShared::default();
    assert_eq!(consume(&mut s, "k", 5), Budget::Counted { n: 1 });
    assert_eq!(s.writes, 2, "create at 0 (CAS 0), then a conditional increment");
    let mut s = FakeShared::default();
    ensure_counter(&mut s, "k").unwrap();
    ensure_counter(&mut s, "k").unwrap();
    assert_eq!(count(&s, "k"), 0);
    assert_eq!(consume(&mut s, "k", 5), Budget::Counted { n: 1 });
    ensure_counter(&mut s, "k").unwrap();
    assert_eq!(count(&s, "k"), 1, "ensure keeps an existing count (config reload)");
}

#[test]
fn a_conflict_rereads_and_counts_the_other_workers_request() {
    let mut s = FakeShared::default();
    ensure_counter(&mut s, "k").unwrap();
    s.conflicts = 2;
    // Two other requests landed while we retried: ours is the third.
    assert_eq!(consume(&mut s, "k", 10), Budget::Counted { n: 3 });
    // With the budget taken by the other worker, we are refused rather than over-counting.
    let mut s = FakeShared::default();
    ensure_counter(&mut s, "k").unwrap();
    s.conflicts = 1;
    assert_eq!(consume(&mut s, "k", 1), Budget::Exhausted);
    assert_eq!(count(&s, "k"), 1);
}

#[test]
fn a_host_that_cannot_count_refuses() {
    let mut s = FakeShared::default();
    ensure_counter(&mut s, "k").unwrap();
    s.conflicts = MAX_CAS_ATTEMPTS;
    assert_eq!(consume(&mut s, "k", 1_000), Budget::Uncountable, "CAS retries are bounded");
    let mut s = FakeShared { fail_get: true, ..FakeShared::default() };
    assert_eq!(consume(&mut s, "k", 5), Budget::Uncountable);
    let mut s = FakeShared::default();
    ensure_counter(&mut s, "k").unwrap();
    s.fail_set = true;
    assert_eq!(consume(&mut s, "k", 5), Budget::Uncountable);
    let mut s = FakeShared::default();
    ensure_counter(&mut s, "k").unwrap();
    s.no_cas = true;
    assert_eq!(consume(&mut s, "k", 5), Budget::Uncountable, "no CAS token: the increment cannot be atomic");
    let mut s = FakeShared::default();
    s.data.insert("k".into(), (b"garbage".to_vec(), 7));
    assert_eq!(consume(&mut s, "k", 5), Budget::Uncountable, "a value we did not write");
}

// --- decisions ------------------------------------------------------------------------------------------

fn grant(tools: &[&str], base: bool) -> serde_json::Value {
    json!({"baseProtocol": base, "methods": [{"method": "tools/call", "names": tools}]})
}

/// alice may call get-sum and echo on backend 0; the sub-agent's permissions are `perm_rules` on backend 0.
fn engine_with(perm_rules: serde_json::Value, extra: serde_json::Value) -> Engine {
    let mut eph = json!({
        "name": "tools/sub-1", "principal": SUB, "parent": ALICE, "ttlSeconds": 60, "maxRequests": 5,
        "permissions": [{"backend": 0, "rules": perm_rules}]
    });
    if let (Some(e), Some(x)) = (eph.as_object_mut(), extra.as_object()) {
        e.extend(x.clone());
    }
    let config = json!({
        "version": CONFIG_VERSION,
        "settings": {"identity": {"ephemeral": [eph]}},
        "principals": [ALICE],
        "backends": [
            {"name": "tools/mcp", "paths": ["/mcp"], "policies": [{"name": "tools/p", "rules": [
                {"name": "alice", "principals": [0], "mcp": grant(&["echo", "get-sum"], true)}]}]},
            {"name": "tools/open", "paths": ["/mcp"], "policies": []}
        ],
    });
    Engine::from_json(config.to_string().as_bytes()).unwrap()
}

fn req(principal: &str, backend: u32) -> Request<'_> {
    Request { method: "POST", path: "/mcp", authority: "mcp", destination_port: None, headers: &[], principal: Some(principal), backend: Some(backend), time: None, jwt_claims: None }
}

fn call(tool: &str) -> McpOp<'_> {
    McpOp { name: "tools/call", base: false, method: Some(McpMethod::ToolsCall), target: Some(tool), arguments: None }
}

#[test]
fn the_child_gets_its_permissions_and_never_more_than_the_parent() {
    let e = engine_with(json!([{"name": "echo-only", "mcp": grant(&["echo", "delete-everything"], true)}]), json!({}));
    assert_eq!(e.ephemeral(Some(SUB)).map(|a| a.name.as_str()), Some("tools/sub-1"));
    assert!(e.ephemeral(Some(ALICE)).is_none());
    let d = e.decide(&req(SUB, 0), Some(&call("echo")));
    assert!(d.allowed);
    assert_eq!(d.backend, LevelOutcome::Matched { policy: "tools/sub-1", rule: "echo-only" });
    // The parent may, the child may not.
    let d = e.decide(&req(SUB, 0), Some(&call("get-sum")));
    assert!(!d.allowed);
    assert_eq!((d.reason(), d.deciding().0), ("default-deny", "backend"));
    // The child's permission names a tool the parent lacks (a config the compiler would refuse): still denied.
    assert!(!e.decide(&req(SUB, 0), Some(&call("delete-everything"))).allowed);
    assert!(e.decide(&req(ALICE, 0), Some(&call("get-sum"))).allowed, "the parent is unaffected");
    // Listing follows the same rule.
    assert!(e.decide_listing(&req(SUB, 0), &call("echo")).allowed);
    assert!(!e.decide_listing(&req(SUB, 0), &call("get-sum")).allowed);
}

#[test]
fn targets_without_a_permission_are_refused_even_without_policies() {
    let e = engine_with(json!([{"name": "echo-only", "mcp": grant(&["echo"], false)}]), json!({}));
    // Backend 1 has no policy: alice may do anything there, the child nothing.
    assert!(e.decide(&req(ALICE, 1), Some(&call("echo"))).allowed);
    assert!(!e.decide(&req(SUB, 1), Some(&call("echo"))).allowed);
    let no_backend = Request { backend: None, ..req(SUB, 0) };
    assert!(!e.decide(&no_backend, Some(&call("echo"))).allowed);
}

#[test]
fn the_parent_is_judged_without_the_childs_token_claims() {
    // alice's only grant is conditional on a claim; the child's token carries it, but claims are the child's.
    let config = json!({
        "version": CONFIG_VERSION,
        "settings": {"identity": {"ephemeral": [{"name": "tools/sub-1", "principal": SUB, "parent": ALICE,
            "ttlSeconds": 60, "permissions": [{"backend": 0, "rules": [{"name": "any"}]}]}]}},
        "principals": [ALICE],
        "backends": [{"name": "tools/mcp", "paths": ["/mcp"], "policies": [{"name": "tools/p", "rules": [
            {"name": "admins", "principals": [0],
             "cel": {"eq": [{"select": [{"var": "jwt.claims"}, "team"]}, {"string": "admin"}]}}]}]}],
    });
    let e = Engine::from_json(config.to_string().as_bytes()).unwrap();
    let claims = json!({"team": "admin"});
    // The parent with that claim is allowed (the rule works) ...
    assert!(e.decide(&Request { jwt_claims: Some(&claims), ..req(ALICE, 0) }, Some(&call("echo"))).allowed);
    // ... the child presenting it is not: its claims are not the parent's.
    assert!(!e.decide(&Request { jwt_claims: Some(&claims), ..req(SUB, 0) }, Some(&call("echo"))).allowed);
}

#[test]
fn bad_ephemeral_configs_are_refused_naming_the_field() {
    let cases = [
        (json!({"ttlSeconds": 0}), "settings.identity.ephemeral[0].ttlSeconds"),
        (json!({"ttlSeconds": MAX_TTL_SECONDS + 1}), "settings.identity.ephemeral[0].ttlSeconds"),
        (json!({"maxRequests": 0}), "settings.identity.ephemeral[0].maxRequests"),
        (json!({"principal": "spiffe://cluster.local/ns/a/sa/b"}), "settings.identity.ephemeral[0].principal"),
        (json!({"parent": SUB}), "settings.identity.ephemeral[0].parent"),
        (json!({"parent": "nobody"}), "settings.identity.ephemeral[0].parent"),
        (json!({"permissions": [{"backend": 9, "rules": []}]}), "settings.identity.ephemeral[0].permissions[0].backend"),
        (
            json!({"permissions": [{"backend": 0, "rules": [{"name": "x", "principals": [0]}]}]}),
            "settings.identity.ephemeral[0].permissions[0].rules[0].principals",
        ),
        (
            json!({"permissions": [{"backend": 0, "rules": []}, {"backend": 0, "rules": []}]}),
            "settings.identity.ephemeral[0].permissions[1].backend",
        ),
    ];
    for (extra, path) in cases {
        let mut eph = json!({"name": "tools/sub-1", "principal": SUB, "parent": ALICE, "ttlSeconds": 60, "permissions": []});
        eph.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let config = json!({
            "version": CONFIG_VERSION,
            "settings": {"identity": {"ephemeral": [eph]}},
            "principals": [ALICE],
            "backends": [{"name": "tools/mcp", "paths": ["/mcp"], "policies": []}],
        });
        let err = Engine::from_json(config.to_string().as_bytes()).err().unwrap_or_else(|| panic!("{path}: accepted"));
        assert_eq!(err.path, path, "{err}");
    }
}
