//! KAN ExternalAuth → the filter's `externalAuth`: both API versions, the backendRef → cluster mapping,
//! Grantwall's annotations, and KAN's one-per-target rule.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use common::*;
use grantwall_core::extauth::ExtAuthProtocol;
use grantwall_policy_compiler::compile::Options;

const ALICE: &str = "spiffe://cluster.local/ns/agents/sa/alice";

fn ext_policy(name: &str, created: &str, annotations: &str, external: &str) -> String {
    format!(
        "apiVersion: agentic.networking.x-k8s.io/v1alpha1
kind: XAccessPolicy
metadata: {{name: {name}, namespace: ns, creationTimestamp: \"{created}\"{annotations}}}
spec:
  targetRefs: [{{group: agentic.networking.x-k8s.io, kind: XBackend, name: b}}]
  action: ExternalAuth
  externalAuth: {external}
  rules:
  - name: alice
    source: {{type: ServiceAccount, serviceAccount: {{name: alice, namespace: agents}}}}
"
    )
}

const HTTP: &str = "{protocol: HTTP, backendRef: {name: guard, namespace: sec, port: 9000}, http: {path: /check, allowedHeaders: [X-Trace], allowedResponseHeaders: [X-User]}, forwardBody: {maxSize: 512}}";
const GRPC: &str = "{protocol: GRPC, backendRef: {name: authorino, port: 50051}, grpc: {allowedHeaders: [x-trace]}}";

#[test]
fn v1alpha1_external_auth_selects_by_its_rules_and_grants_nothing() {
    let c = compile_ok(&format!("{BACKEND}---\n{}", ext_policy("guard", "2026-01-01T00:00:00Z", "", HTTP)));
    let b = &c.backends[0];
    assert!(b.policies.is_empty(), "an ExternalAuth policy is not an Allow policy");
    let ea = b.external_auth.as_ref().unwrap();
    assert_eq!(ea.policy, "ns/guard");
    assert_eq!(ea.protocol, ExtAuthProtocol::Http);
    assert_eq!(ea.cluster, "outbound|9000||guard.sec.svc.cluster.local");
    assert_eq!(ea.authority, "guard.sec.svc.cluster.local:9000");
    assert_eq!(ea.path_prefix, "/check");
    assert_eq!(ea.allowed_headers, ["x-trace"]);
    assert_eq!(ea.allowed_response_headers, ["x-user"]);
    assert_eq!(ea.forward_body_max_bytes, Some(512));
    assert_eq!((ea.timeout_ms, ea.fail_open, ea.cache_ttl_ms), (200, false, 0));
    assert_eq!(ea.rules.len(), 1);
    assert_eq!(c.principals[ea.rules[0].principals.as_ref().unwrap()[0] as usize], ALICE);
}

#[test]
fn annotations_name_the_cluster_timeout_failure_mode_and_cache() {
    let annotations = ", annotations: {grantwall.io/extauth-cluster: my-authz, grantwall.io/extauth-timeout: 2s, grantwall.io/extauth-failure-mode: allow, grantwall.io/extauth-cache-ttl: 1m}";
    let c = compile_ok(&format!("{BACKEND}---\n{}", ext_policy("guard", "2026-01-01T00:00:00Z", annotations, GRPC)));
    let ea = c.backends[0].external_auth.as_ref().unwrap();
    assert_eq!(ea.cluster, "my-authz");
    assert_eq!(ea.authority, "authorino.ns.svc.cluster.local:50051");
    assert_eq!((ea.timeout_ms, ea.fail_open, ea.cache_ttl_ms), (2000, true, 60_000));
    assert_eq!(ea.allowed_headers, ["x-trace"]);
}

#[test]
fn bad_annotations_and_backend_refs_are_errors() {
    let annotations = ", annotations: {grantwall.io/extauth-timeout: soon, grantwall.io/extauth-failure-mode: maybe, grantwall.io/extauth-tiemout: 1s}";
    let errs = compile_err(&format!("{BACKEND}---\n{}", ext_policy("guard", "2026-01-01T00:00:00Z", annotations, HTTP)));
    let at = "in.yaml doc 2 XAccessPolicy ns/guard";
    assert_has(&errs, &format!("{at}: metadata.annotations[\"grantwall.io/extauth-timeout\"]: Invalid value: \"soon\": a duration such as 250ms, 2s or 1m"));
    assert_has(&errs, &format!("{at}: metadata.annotations[\"grantwall.io/extauth-failure-mode\"]: Invalid value: \"maybe\": deny (fail closed, the default) or allow"));
    assert!(errs.iter().any(|e| e.contains("grantwall.io/extauth-tiemout") && e.contains("unknown annotation")), "{errs:?}");
    let other_kind = "{protocol: GRPC, backendRef: {group: example.com, kind: Thing, name: x}, grpc: {}}";
    let errs = compile_err(&format!("{BACKEND}---\n{}", ext_policy("guard", "2026-01-01T00:00:00Z", "", other_kind)));
    assert!(errs.iter().any(|e| e.contains("spec.externalAuth.backendRef: unsupported backendRef Thing")), "{errs:?}");
    let protected = "{protocol: HTTP, backendRef: {name: g, port: 1}, http: {allowedResponseHeaders: [Content-Length]}}";
    let errs = compile_err(&format!("{BACKEND}---\n{}", ext_policy("guard", "2026-01-01T00:00:00Z", "", protected)));
    assert!(errs.iter().any(|e| e.contains("\"content-length\" may not be set by an authorization service")), "{errs:?}");
}

#[test]
fn one_external_auth_per_target_the_oldest_wins() {
    let text = format!(
        "{BACKEND}---\n{}---\n{}",
        ext_policy("newer", "2026-02-01T00:00:00Z", "", GRPC),
        ext_policy("older", "2026-01-01T00:00:00Z", "", HTTP)
    );
    let (c, warnings) = compile_with(&text, &Options::default()).unwrap();
    assert_eq!(c.backends[0].external_auth.as_ref().unwrap().policy, "ns/older");
    assert!(c.backends[0].policies.is_empty());
    assert_eq!(
        warnings,
        ["XBackend ns/b has more than one ExternalAuth; KAN supports one per target (oldest first by creationTimestamp, then name) and marks the rest not accepted: ns/older is enforced, not enforcing ns/newer"]
    );
}

#[test]
fn v0alpha0_external_auth_rule_delegates_its_source() {
    let c = compile_ok(&format!(
        "{BACKEND}---
apiVersion: agentic.networking.x-k8s.io/v0alpha0
kind: XAccessPolicy
metadata: {{name: old, namespace: ns}}
spec:
  targetRefs: [{{group: agentic.networking.x-k8s.io, kind: XBackend, name: b}}]
  rules:
  - name: bob-tools
    source: {{type: SPIFFE, spiffe: spiffe://x/bob}}
    authorization: {{type: InlineTools, tools: [echo]}}
  - name: alice-guarded
    source: {{type: SPIFFE, spiffe: spiffe://x/alice}}
    authorization: {{type: ExternalAuth, externalAuth: {GRPC}}}
"
    ));
    let b = &c.backends[0];
    let ea = b.external_auth.as_ref().unwrap();
    assert_eq!(ea.policy, "ns/old");
    assert_eq!(ea.rules.len(), 1);
    assert_eq!(c.principals[ea.rules[0].principals.as_ref().unwrap()[0] as usize], "spiffe://x/alice");
    // The delegating rule grants alice whatever the service allows: no MCP condition of its own.
    let rule = &b.policies[0].rules[1];
    assert_eq!(rule.name, "alice-guarded");
    assert!(rule.mcp.is_none() && rule.http.is_none() && rule.cel.is_none());
}

#[test]
fn a_gateway_level_external_auth_compiles_too() {
    let c = compile_ok(&format!(
        "{BACKEND}---
apiVersion: agentic.networking.x-k8s.io/v1alpha1
kind: XAccessPolicy
metadata: {{name: gw-guard, namespace: ns}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: gw}}]
  action: ExternalAuth
  externalAuth: {GRPC}
"
    ));
    let ea = c.gateway.external_auth.as_ref().unwrap();
    assert_eq!(ea.policy, "ns/gw-guard");
    assert!(ea.rules.is_empty(), "no rules: every request is checked");
    assert!(c.gateway.policies.is_empty());
}

#[test]
fn explain_says_the_service_is_asked_next() {
    use grantwall_policy_compiler::explain::{explain, ExplainRequest, TargetArg};
    let c = compile_ok(&format!("{BACKEND}---\n{}", ext_policy("guard", "2026-01-01T00:00:00Z", "", HTTP)));
    let json = serde_json::to_vec(&c).unwrap();
    let ask = |principal: &str| ExplainRequest {
        principal: Some(principal.into()),
        backend: Some("ns/b".into()),
        method: "POST".into(),
        mcp: Some("tools/call".into()),
        target: Some(TargetArg::Tool("get-sum".into())),
        ..ExplainRequest::default()
    };
    let alice = explain(&json, &ask(ALICE)).unwrap();
    assert!(alice.human.contains("then ExternalAuth ns/guard is asked (HTTP to Envoy cluster \"outbound|9000||guard.sec.svc.cluster.local\")"), "{}", alice.human);
    let bob = explain(&json, &ask("spiffe://cluster.local/ns/agents/sa/bob")).unwrap();
    assert!(!bob.human.contains("ExternalAuth"), "{}", bob.human);
}
