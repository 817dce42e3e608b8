//! GrantwallAgentIdentity → settings.identity.ephemeral: a valid identity compiles; every way of granting
//! more than the parent has is refused, naming the object, the field and the grant; bad ttl, unknown issuer,
//! Gateway targets are errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use grantwall_core::engine::Engine;

const EC: &str = r#"{"kty":"EC","crv":"P-256","kid":"idp-1","x":"sEItgdZXhiEoPos5CL4f3VJFeaZBZWeH--unyWtxBC8","y":"p3eNXMhTrc9zOnEXbICua1r1hoGrOIFT0wYfD3mtRW0"}"#;

fn base() -> String {
    format!(
        "
apiVersion: agentic.networking.x-k8s.io/v0alpha0
kind: XBackend
metadata: {{name: mcp-server, namespace: tools}}
spec:
  mcp: {{serviceName: mcp-server, port: 8000, path: /mcp}}
---
apiVersion: agentic.networking.x-k8s.io/v1alpha1
kind: XAccessPolicy
metadata: {{name: agent-tools, namespace: tools}}
spec:
  targetRefs: [{{group: agentic.networking.x-k8s.io, kind: XBackend, name: mcp-server}}]
  action: Allow
  rules:
  - name: alice
    source: {{type: ServiceAccount, serviceAccount: {{name: alice, namespace: agents}}}}
    authorization:
      type: Inline
      mcp:
        mcpBaseProtocolMethodsOption: MATCH_BASE_PROTOCOL_METHODS
        methods: [{{name: tools/call, params: [get-sum, echo]}}, {{name: prompts/get}}]
  - name: alice-cel
    source: {{type: ServiceAccount, serviceAccount: {{name: alice, namespace: agents}}}}
    authorization:
      type: CEL
      cel: {{expression: \"request.mcp.tool_name == 'get-tiny-image'\"}}
---
apiVersion: grantwall.io/v1alpha1
kind: GrantwallIdentityProvider
metadata: {{name: corp-idp, namespace: tools}}
spec:
  oidc: {{issuerUrl: \"https://issuer.test\", audiences: [mcp-gateway]}}
  jwks:
    inline: '{{\"keys\":[{EC}]}}'
"
    )
}

/// A GrantwallAgentIdentity for alice with `body` as the rest of its spec (indented two spaces).
fn agent(name: &str, body: &str) -> String {
    format!(
        "---
apiVersion: grantwall.io/v1alpha1
kind: GrantwallAgentIdentity
metadata: {{name: {name}, namespace: tools}}
spec:
  parent: {{type: ServiceAccount, serviceAccount: {{name: alice, namespace: agents}}}}
  token: {{issuer: \"https://issuer.test\", subject: {name}}}
  targetRefs: [{{group: agentic.networking.x-k8s.io, kind: XBackend, name: mcp-server}}]
{body}"
    )
}

const ECHO_ONLY: &str = "  ttl: 90s
  maxRequests: 5
  permissions:
  - name: echo-only
    authorization:
      type: Inline
      mcp:
        mcpBaseProtocolMethodsOption: MATCH_BASE_PROTOCOL_METHODS
        methods: [{name: tools/call, params: [echo]}]
";

#[test]
fn a_narrower_identity_compiles_and_loads() {
    let config = compile_ok(&format!("{}{}", base(), agent("sub-1", ECHO_ONLY)));
    let e = &config.settings.identity.ephemeral;
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].name, "tools/sub-1");
    assert_eq!(e[0].principal, "oidc://issuer.test#sub-1");
    assert_eq!(e[0].parent, "spiffe://cluster.local/ns/agents/sa/alice");
    assert_eq!((e[0].ttl_seconds, e[0].max_requests), (90, Some(5)));
    assert_eq!(e[0].permissions.len(), 1);
    assert_eq!(e[0].permissions[0].backend, 0);
    assert_eq!(e[0].permissions[0].rules[0].name, "echo-only");
    assert!(e[0].permissions[0].rules[0].principals.is_none());
    // The filter's loader accepts what the compiler wrote.
    Engine::from_json(&serde_json::to_vec(&config).unwrap()).unwrap();
}

#[test]
fn narrower_forms_are_accepted() {
    let cases = [
        // same CEL condition as the parent's rule
        "  ttl: 1m
  permissions:
  - name: image
    authorization:
      type: CEL
      cel: {expression: \"request.mcp.tool_name == 'get-tiny-image'\"}
",
        // one prompt of the parent's any-prompt grant, plus extra HTTP conditions
        "  ttl: 1h30m
  permissions:
  - name: one-prompt
    authorization:
      type: Inline
      methods: [POST]
      mcp:
        methods: [{name: prompts/get, params: [greeting]}]
",
        // tools/list through the parent's base protocol
        "  ttl: 24h
  permissions:
  - name: list
    authorization:
      type: Inline
      mcp:
        methods: [{name: tools/list}]
",
    ];
    for body in cases {
        compile_ok(&format!("{}{}", base(), agent("sub-1", body)));
    }
}

#[test]
fn widenings_are_refused_naming_object_field_and_grant() {
    let cases = [
        (
            "  ttl: 60s
  permissions:
  - name: sum-and-delete
    authorization:
      type: Inline
      mcp:
        methods: [{name: tools/call, params: [get-sum, delete-everything]}]
",
            "GrantwallAgentIdentity tools/sub-1: spec.permissions[0]: widens the parent spiffe://cluster.local/ns/agents/sa/alice: tools/call of \"delete-everything\" is not granted to the parent unconditionally, only by rules whose HTTP or CEL conditions this permission does not repeat (alice-cel;",
        ),
        (
            "  ttl: 60s
  permissions:
  - name: any-tool
    authorization:
      type: Inline
      mcp:
        methods: [{name: tools/call}]
",
            "tools/call of any name is not granted to the parent",
        ),
        (
            "  ttl: 60s
  permissions:
  - name: everything
    authorization:
      type: Inline
      mcp: {}
",
            "every MCP method (no methods list) is not granted to the parent",
        ),
        ("  ttl: 60s\n  permissions:\n  - name: no-conditions\n", "every request (the permission has no MCP conditions) is not granted"),
        (
            "  ttl: 60s
  permissions:
  - name: image-without-cel
    authorization:
      type: Inline
      mcp:
        methods: [{name: tools/call, params: [get-tiny-image]}]
",
            "tools/call of \"get-tiny-image\" is not granted",
        ),
        (
            "  ttl: 60s
  permissions:
  - name: other-cel
    authorization:
      type: CEL
      cel: {expression: \"request.mcp.tool_name == 'delete-everything'\"}
",
            "tools/call of any name is not granted to the parent unconditionally, only by rules whose HTTP or CEL conditions this permission does not repeat (alice-cel;",
        ),
        (
            "  ttl: 60s
  permissions:
  - name: resources
    authorization:
      type: Inline
      mcp:
        methods: [{name: resources/read, params: [mem://secret/keys]}]
",
            "resources/read of \"mem://secret/keys\" is not granted",
        ),
    ];
    for (body, expect) in cases {
        let errors = compile_err(&format!("{}{}", base(), agent("sub-1", body)));
        assert!(errors.iter().any(|e| e.contains(expect)), "{expect}: {errors:#?}");
    }
}

#[test]
fn gateway_level_grants_are_checked_too() {
    let gateway = "---
apiVersion: agentic.networking.x-k8s.io/v1alpha1
kind: XAccessPolicy
metadata: {name: gw, namespace: tools}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
  action: Allow
  rules:
  - name: alice-sum-only
    source: {type: ServiceAccount, serviceAccount: {name: alice, namespace: agents}}
    authorization:
      type: Inline
      mcp:
        mcpBaseProtocolMethodsOption: MATCH_BASE_PROTOCOL_METHODS
        methods: [{name: tools/call, params: [get-sum]}]
";
    let errors = compile_err(&format!("{}{gateway}{}", base(), agent("sub-1", ECHO_ONLY)));
    assert!(errors.iter().any(|e| e.contains("tools/call of \"echo\" is not granted to the parent on the Gateway level")), "{errors:#?}");
}

#[test]
fn bad_ttl_issuer_targets_and_parents_are_errors() {
    let perms = "  permissions:\n  - name: echo\n    authorization:\n      type: Inline\n      mcp:\n        methods: [{name: tools/call, params: [echo]}]\n";
    let cases = [
        (agent("sub-1", &format!("  ttl: 0s\n{perms}")), "spec.ttl: Invalid value: \"0s\""),
        (agent("sub-1", &format!("  ttl: 25h\n{perms}")), "spec.ttl: Invalid value: \"25h\""),
        (agent("sub-1", &format!("  ttl: 1d\n{perms}")), "spec.ttl"),
        (agent("sub-1", perms), "spec.ttl"),
        (agent("sub-1", &format!("  ttl: 60s\n  maxRequests: 0\n{perms}")), "spec.maxRequests"),
        (agent("sub-1", "  ttl: 60s\n  permissions: []\n"), "spec.permissions"),
        (
            agent("sub-1", &format!("  ttl: 60s\n{perms}")).replace("https://issuer.test", "https://other.test"),
            "spec.token.issuer: no GrantwallIdentityProvider with tokenType OIDC has issuer \"https://other.test\"",
        ),
        (
            agent("sub-1", &format!("  ttl: 60s\n{perms}"))
                .replace("{group: agentic.networking.x-k8s.io, kind: XBackend, name: mcp-server}", "{group: gateway.networking.k8s.io, kind: Gateway, name: gw}"),
            "spec.targetRefs[0]: an ephemeral identity's permissions target XBackends",
        ),
        (
            agent("sub-1", &format!("  ttl: 60s\n{perms}")).replace("name: mcp-server}", "name: nope}"),
            "XBackend tools/nope is not in the input",
        ),
        (
            agent("sub-1", &format!("  ttl: 60s\n{perms}")).replace("name: alice, namespace: agents", "name: bob, namespace: agents"),
            "widens the parent spiffe://cluster.local/ns/agents/sa/bob",
        ),
        (
            format!("{}{}", agent("sub-1", ECHO_ONLY), agent("sub-2", ECHO_ONLY).replace("subject: sub-2", "subject: sub-1")),
            "is already the token of GrantwallAgentIdentity tools/sub-1",
        ),
        (
            agent("sub-2", ECHO_ONLY).replace("{type: ServiceAccount, serviceAccount: {name: alice, namespace: agents}}", "{type: OIDC, oidc: {issuer: \"https://issuer.test\", subject: sub-1}}")
                + &agent("sub-1", ECHO_ONLY),
            "is itself an ephemeral identity",
        ),
        (agent("sub-1", &format!("  ttl: 60s\n  surprise: 1\n{perms}")), "spec.surprise"),
    ];
    for (yaml, expect) in cases {
        let errors = compile_err(&format!("{}{yaml}", base()));
        assert!(errors.iter().any(|e| e.contains(expect)), "{expect}: {errors:#?}");
    }
}

#[test]
fn an_oidc_parent_works() {
    let parent_policy = "---
apiVersion: grantwall.io/v1alpha1
kind: GrantwallAccessPolicy
metadata: {name: idp-agents, namespace: tools}
spec:
  targetRefs: [{group: agentic.networking.x-k8s.io, kind: XBackend, name: mcp-server}]
  action: Allow
  rules:
  - name: agent-7
    source: {type: OIDC, oidc: {issuer: \"https://issuer.test\", subject: agent-7}}
    authorization:
      type: Inline
      mcp:
        mcpBaseProtocolMethodsOption: MATCH_BASE_PROTOCOL_METHODS
        methods: [{name: tools/call, params: [echo]}]
";
    let yaml = agent("sub-7", ECHO_ONLY)
        .replace("{type: ServiceAccount, serviceAccount: {name: alice, namespace: agents}}", "{type: OIDC, oidc: {issuer: \"https://issuer.test\", subject: agent-7}}");
    let config = compile_ok(&format!("{}{parent_policy}{yaml}", base()));
    assert_eq!(config.settings.identity.ephemeral[0].parent, "oidc://issuer.test#agent-7");
}

#[test]
fn explain_takes_token_callers_and_claims() {
    use grantwall_policy_compiler::explain::{explain, ExplainRequest, TargetArg};
    let claims_rule = "---
apiVersion: agentic.networking.x-k8s.io/v1alpha1
kind: XAccessPolicy
metadata: {name: by-claim, namespace: tools}
spec:
  targetRefs: [{group: agentic.networking.x-k8s.io, kind: XBackend, name: mcp-server}]
  action: Allow
  rules:
  - name: admins
    authorization:
      type: CEL
      cel: {expression: \"'mcp-admins' in jwt.claims.groups && request.mcp.tool_name == 'delete-everything'\"}
";
    let config = compile_ok(&format!("{}{claims_rule}{}", base(), agent("sub-1", ECHO_ONLY)));
    let json = serde_json::to_vec(&config).unwrap();
    let ask = |who: &str, tool: &str, claims: Option<serde_json::Value>| {
        let req = ExplainRequest {
            principal: Some(who.to_string()),
            backend: Some("tools/mcp-server".into()),
            method: "POST".into(),
            mcp: Some("tools/call".into()),
            target: Some(TargetArg::Tool(tool.into())),
            claims,
            ..ExplainRequest::default()
        };
        explain(&json, &req).unwrap()
    };
    let sub = "oidc://issuer.test#sub-1";
    let echo = ask(sub, "echo", Some(serde_json::json!({"sub": "sub-1"})));
    assert!(echo.allowed, "{}", echo.human);
    let record: serde_json::Value = serde_json::from_str(&echo.record_json).unwrap();
    assert_eq!((record["policy"].as_str(), record["rule"].as_str(), record["identitySource"].as_str()), (Some("tools/sub-1"), Some("echo-only"), Some("jwt")));
    assert!(echo.human.contains("ephemeral identity tools/sub-1"), "{}", echo.human);
    let sum = ask(sub, "get-sum", None);
    assert!(!sum.allowed, "the parent may, the sub-agent may not: {}", sum.human);
    // Claims reach CEL: with the group, anyone (here an unknown OIDC caller) may call the tool the rule names.
    let other = "oidc://issuer.test#agent-9";
    assert!(ask(other, "delete-everything", Some(serde_json::json!({"groups": ["mcp-admins"]}))).allowed);
    assert!(!ask(other, "delete-everything", Some(serde_json::json!({"groups": ["users"]}))).allowed);
    assert!(!ask(other, "delete-everything", None).allowed);
    // The sub-agent presenting the group is still bound by its parent and permissions.
    assert!(!ask(sub, "delete-everything", Some(serde_json::json!({"groups": ["mcp-admins"]}))).allowed);
}

const AGENT_B: &str = "---
apiVersion: grantwall.io/v1alpha1
kind: GrantwallA2AAgent
metadata: {name: agent-b, namespace: tools}
spec: {hostname: agent-b.example, port: 9999}
";

/// An identity for alice whose targetRefs are `refs` (YAML flow list) and whose one permission is `rule`.
fn agent_with_refs(refs: &str, rule: &str) -> String {
    format!(
        "---
apiVersion: grantwall.io/v1alpha1
kind: GrantwallAgentIdentity
metadata: {{name: sub-a2a, namespace: tools}}
spec:
  parent: {{type: ServiceAccount, serviceAccount: {{name: alice, namespace: agents}}}}
  token: {{issuer: \"https://issuer.test\", subject: sub-a2a}}
  ttl: 60s
  targetRefs: {refs}
  permissions:
{rule}"
    )
}

#[test]
fn a2a_agents_are_targets_of_their_own_kind() {
    let a2a_ref = "{group: grantwall.io, kind: GrantwallA2AAgent, name: agent-b}";
    // Both kinds in one identity: the permission rules narrow the XBackend; naming the agent lets the
    // sub-agent call it with its parent's A2A operations.
    let refs = format!("[{a2a_ref}, {{group: agentic.networking.x-k8s.io, kind: XBackend, name: mcp-server}}]");
    let echo_rule = ECHO_ONLY.split_once("  permissions:\n").unwrap().1;
    let config = compile_ok(&format!("{}{AGENT_B}{}", base(), agent_with_refs(&refs, echo_rule)));
    let names: Vec<&str> = config.backends.iter().map(|b| b.name.as_str()).collect();
    let agent_index = names.iter().position(|n| *n == "tools/agent-b").unwrap() as u32;
    let permissions = &config.settings.identity.ephemeral[0].permissions;
    assert_eq!(permissions.len(), 2);
    let on_agent = permissions.iter().find(|p| p.backend == agent_index).unwrap();
    assert!(on_agent.rules.len() == 1 && on_agent.rules[0].mcp.is_none() && on_agent.rules[0].http.is_none(), "{on_agent:?}");
    let on_tools = permissions.iter().find(|p| p.backend != agent_index).unwrap();
    assert_eq!(on_tools.rules[0].name, "echo-only");
    Engine::from_json(&serde_json::to_vec(&config).unwrap()).unwrap();

    // The agent named as an XBackend, or an XBackend named as an agent: the error says which kind to use.
    let any_call = "  - name: talk\n    authorization: {type: Inline}\n";
    let as_xbackend = "[{group: agentic.networking.x-k8s.io, kind: XBackend, name: agent-b}]";
    let errors = compile_err(&format!("{}{AGENT_B}{}", base(), agent_with_refs(as_xbackend, any_call)));
    assert!(errors.iter().any(|e| e.contains("spec.targetRefs[0]") && e.contains("tools/agent-b is a GrantwallA2AAgent, not an XBackend")), "{errors:?}");
    let as_agent = "[{group: grantwall.io, kind: GrantwallA2AAgent, name: mcp-server}]";
    let errors = compile_err(&format!("{}{AGENT_B}{}", base(), agent_with_refs(as_agent, any_call)));
    assert!(errors.iter().any(|e| e.contains("tools/mcp-server is an XBackend, not a GrantwallA2AAgent")), "{errors:?}");
    let missing = "[{group: grantwall.io, kind: GrantwallA2AAgent, name: agent-z}]";
    let errors = compile_err(&format!("{}{AGENT_B}{}", base(), agent_with_refs(missing, any_call)));
    assert!(errors.iter().any(|e| e.contains("GrantwallA2AAgent tools/agent-z is not in the input")), "{errors:?}");
}
