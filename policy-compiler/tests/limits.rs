//! GrantwallRateLimitPolicy → config `limits`: CRD validation, defaults, targets, errors naming the field.

mod common;

use common::*;
use grantwall_core::engine::Engine;
use grantwall_core::limits::LimitKey;

const BACKENDS: &str = "
apiVersion: agentic.networking.x-k8s.io/v0alpha0
kind: XBackend
metadata: {name: mcp-server, namespace: tools}
spec:
  mcp: {serviceName: mcp-server, port: 8000, path: /mcp}
---
apiVersion: agentic.networking.x-k8s.io/v0alpha0
kind: XBackend
metadata: {name: other, namespace: tools}
spec:
  mcp: {serviceName: other, port: 8000, path: /mcp}
";

fn policy(targets: &str, rules: &str) -> String {
    format!(
        "{BACKENDS}---
apiVersion: grantwall.io/v1alpha1
kind: GrantwallRateLimitPolicy
metadata: {{name: limits, namespace: tools}}
spec:
  targetRefs: {targets}
  rules:
{rules}"
    )
}

const MCP_SERVER: &str = "[{group: agentic.networking.x-k8s.io, kind: XBackend, name: mcp-server}]";

#[test]
fn limits_compile_with_defaults_sources_and_targets() {
    let config = compile_ok(&policy(
        "[{group: agentic.networking.x-k8s.io, kind: XBackend, name: other}, {group: gateway.networking.k8s.io, kind: Gateway, name: gw}]",
        "  - name: per-agent-tool
    source: {type: ServiceAccount, serviceAccount: {name: alice, namespace: agents}}
    rateLimits:
    - {key: IdentityTool, requests: 10, period: 1m, tools: [get-sum, echo]}
    - {key: Namespace, requests: 100, period: 1h, burst: 20}
    maxFanOut: 4
  - name: everyone
    contextBudget: 65536
",
    ));
    let l = &config.limits;
    assert!(!l.publish_headers);
    let names: Vec<&str> = l.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "tools/limits/per-agent-tool@tools/other",
            "tools/limits/everyone@tools/other",
            "tools/limits/per-agent-tool@gateway:tools/gw",
            "tools/limits/everyone@gateway:tools/gw"
        ]
    );
    let r = &l.rules[0];
    assert_eq!(r.backend, Some(1), "backends are sorted by name: mcp-server, other");
    assert_eq!(l.rules[2].backend, None, "the Gateway: every request");
    assert_eq!(r.principals.as_deref(), Some(&["spiffe://cluster.local/ns/agents/sa/alice".to_string()][..]));
    assert_eq!(r.max_fan_out, Some(4));
    let a = &r.rate_limits[0];
    assert_eq!((a.key, a.requests, a.period_seconds, a.burst), (LimitKey::IdentityTool, 10, 60, 10), "burst defaults to requests");
    assert_eq!(a.tools.as_deref(), Some(&["echo".to_string(), "get-sum".to_string()][..]), "sorted");
    let b = &r.rate_limits[1];
    assert_eq!((b.key, b.period_seconds, b.burst), (LimitKey::Namespace, 3600, 20));
    assert_eq!(l.rules[1].principals, None);
    assert_eq!(l.rules[1].context_budget_bytes, Some(65536));
    // What the compiler writes, the filter loads.
    let json = serde_json::to_vec(&config).unwrap();
    let engine = Engine::from_json(&json).map_err(|e| e.message).unwrap();
    assert!(engine.limits().applies(Some(0)), "gateway rules cover every backend");
}

#[test]
fn one_target_keeps_plain_rule_names_and_publish_headers_is_filter_wide() {
    let text = policy(MCP_SERVER, "  - name: r\n    maxFanOut: 2\n").replace("  targetRefs:", "  publishHeaders: true\n  targetRefs:");
    let config = compile_ok(&text);
    assert!(config.limits.publish_headers);
    assert_eq!(config.limits.rules[0].name, "tools/limits/r");
    assert_eq!(config.limits.rules[0].backend, Some(0));
}

#[test]
fn errors_name_the_object_and_field() {
    let at = "in.yaml doc 3 GrantwallRateLimitPolicy tools/limits";
    let e = compile_err(&policy(MCP_SERVER, "  - name: nothing\n"));
    assert_has(&e, &format!("{at}: spec.rules[0]: Required value: a rule needs at least one of rateLimits, maxFanOut or contextBudget"));
    let e = compile_err(&policy(MCP_SERVER, "  - name: r\n    rateLimits: [{key: Identity, requests: 1, period: 25h}]\n"));
    assert_has(&e, &format!("{at}: spec.rules[0].rateLimits[0].period: Invalid value: \"25h\": at most 24h (86400s)"));
    let e = compile_err(&policy(MCP_SERVER, "  - name: r\n    rateLimits: [{key: Identity, requests: 1, period: 1d}]\n"));
    assert!(e.iter().any(|l| l.starts_with(&format!("{at}: spec.rules[0].rateLimits[0].period: Invalid value"))), "{e:?}");
    let e = compile_err(&policy(MCP_SERVER, "  - name: r\n    rateLimits: [{key: PerTool, requests: 1, period: 1s}]\n"));
    assert!(e.iter().any(|l| l.starts_with(&format!("{at}: spec.rules[0].rateLimits[0].key: Unsupported value"))), "{e:?}");
    let e = compile_err(&policy(MCP_SERVER, "  - name: r\n    maxFanout: 3\n"));
    assert!(e.iter().any(|l| l.starts_with(&format!("{at}: spec.rules[0].maxFanout: unknown field"))), "{e:?}");
    let e = compile_err(&policy(MCP_SERVER, "  - name: r\n    maxFanOut: 0\n"));
    assert!(e.iter().any(|l| l.starts_with(&format!("{at}: spec.rules[0].maxFanOut: less than"))), "{e:?}");
    let e = compile_err(&policy(MCP_SERVER, "  - name: r\n    maxFanOut: 1\n  - name: r\n    maxFanOut: 2\n"));
    assert_has(&e, &format!("{at}: spec.rules: Duplicate value: {{\"name\":\"r\"}}"));
    let e = compile_err(&policy(MCP_SERVER, "  - name: r\n    rateLimits: [{key: Identity, requests: 1, period: 1s, tools: [a, a]}]\n"));
    assert_has(&e, &format!("{at}: spec.rules[0].rateLimits[0].tools: Duplicate value: \"a\""));
    let e = compile_err(&policy(MCP_SERVER, "  - name: r\n    source: {type: SPIFFE}\n    maxFanOut: 1\n"));
    assert_has(&e, &format!("{at}: spec.rules[0].source.spiffe: Required value: type SPIFFE needs a spiffe ID"));
    let e = compile_err(&policy("[{group: agentic.networking.x-k8s.io, kind: XBackend, name: missing}]", "  - name: r\n    maxFanOut: 1\n"));
    assert_has(&e, &format!("{at}: spec.targetRefs[0]: XBackend tools/missing is not in the input: add the file that defines it (-f)"));
}
