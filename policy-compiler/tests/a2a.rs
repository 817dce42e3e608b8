//! GrantwallA2AAgent + GrantwallA2APolicy → backends[].a2a: routing, options, grants, and errors that name
//! object and field.

mod common;

use common::*;
use grantwall_core::a2a::{Operation, SignedCards};
use grantwall_core::engine::Engine;

const AGENT: &str = "
apiVersion: grantwall.io/v1alpha1
kind: GrantwallA2AAgent
metadata: {name: agent-b, namespace: agents}
spec:
  serviceName: agent-b
  port: 9999
  card: {publicUrl: https://gw.example/agents/b, signedCards: PassUnfiltered}
  pushNotifications: {urlPrefixes: [https://hooks.example.com/a2a/]}
";

const POLICY: &str = "
---
apiVersion: grantwall.io/v1alpha1
kind: GrantwallA2APolicy
metadata: {name: b-callers, namespace: agents}
spec:
  targetRefs: [{group: grantwall.io, kind: GrantwallA2AAgent, name: agent-b}]
  rules:
  - name: alice
    source: {type: ServiceAccount, serviceAccount: {name: alice}}
    operations: [SendMessage, GetTask, SendMessage]
    skills: [summarize]
  - name: anyone-reads
    operations: [GetTask]
";

#[test]
fn agent_and_policy_compile_to_an_a2a_backend() {
    let config = compile_ok(&format!("{AGENT}{POLICY}"));
    let b = &config.backends[0];
    assert_eq!(b.name, "agents/agent-b");
    assert_eq!(config.routes.clusters.get("outbound|9999||agent-b.agents.svc.cluster.local"), Some(&0));
    let a2a = b.a2a.as_ref().expect("an A2A backend");
    assert_eq!(a2a.rpc_path, "/");
    assert_eq!(a2a.public_url.as_deref(), Some("https://gw.example/agents/b"));
    assert_eq!(a2a.signed_cards, SignedCards::PassUnfiltered);
    assert_eq!(a2a.push_url_prefixes, ["https://hooks.example.com/a2a/"]);
    let rules = &a2a.policies[0].rules;
    assert_eq!(a2a.policies[0].name, "agents/b-callers");
    assert_eq!(config.principals[rules[0].principals.as_ref().unwrap()[0] as usize], "spiffe://cluster.local/ns/agents/sa/alice");
    assert_eq!(rules[0].operations.as_deref(), Some(&[Operation::SendMessage, Operation::GetTask][..]));
    assert_eq!(rules[1].principals, None);
    // The filter loads what the compiler writes.
    let engine = Engine::new(config).unwrap();
    assert!(engine.has_policies(Some(0)) && engine.a2a(Some(0)).is_some());
}

#[test]
fn an_agent_without_policy_allows_everything_and_is_not_inspected() {
    let config = compile_ok(AGENT);
    assert!(config.backends[0].a2a.as_ref().unwrap().policies.is_empty());
    assert!(!Engine::new(config).unwrap().has_policies(Some(0)));
}

#[test]
fn errors_name_object_and_field() {
    let errs = compile_err(&AGENT.replace("serviceName: agent-b", "hostname: b.example\n  serviceName: agent-b"));
    assert_has(&errs, "in.yaml doc 1 GrantwallA2AAgent agents/agent-b: spec: Required value: exactly one of serviceName and hostname");
    let errs = compile_err(&AGENT.replace("https://hooks.example.com/a2a/", "https://hooks.example.com"));
    assert!(errs.iter().any(|e| e.contains("GrantwallA2AAgent agents/agent-b: spec.pushNotifications.urlPrefixes[0]")), "{errs:?}");
    let errs = compile_err(&format!("{AGENT}{}", POLICY.replace("operations: [GetTask]", "operations: [tasks/get]")));
    assert!(errs.iter().any(|e| e.contains("GrantwallA2APolicy agents/b-callers: spec.rules[1].operations[0]")), "{errs:?}");
    let errs = compile_err(&POLICY.replace("name: agent-b}", "name: agent-x}"));
    assert!(errs.iter().any(|e| e.contains("GrantwallA2APolicy agents/b-callers: spec.targetRefs[0].name: GrantwallA2AAgent agents/agent-x is not in the input")), "{errs:?}");
    let errs = compile_err(&format!("{AGENT}{}", POLICY.replace("{type: ServiceAccount, serviceAccount: {name: alice}}", "{type: SPIFFE}")));
    assert!(errs.iter().any(|e| e.contains("spec.rules[0].source.spiffe: Required value")), "{errs:?}");
    let errs = compile_err(&format!("{AGENT}{}", POLICY.replace("  - name: anyone-reads", "  - name: alice")));
    assert!(errs.iter().any(|e| e.contains("spec.rules: AccessRule names must be unique")), "{errs:?}");
}

#[test]
fn explain_judges_a2a_calls_with_the_filters_code() {
    use grantwall_policy_compiler::explain::{explain, ExplainRequest};
    let json = serde_json::to_vec(&compile_ok(&format!("{AGENT}{POLICY}"))).unwrap();
    let alice = "spiffe://cluster.local/ns/agents/sa/alice";
    let ask = |principal: Option<&str>, op: &str| ExplainRequest {
        principal: principal.map(str::to_owned),
        backend: Some("agents/agent-b".into()),
        method: "POST".into(),
        a2a: Some(op.into()),
        ..ExplainRequest::default()
    };
    let record = |x: &grantwall_policy_compiler::explain::Explanation| serde_json::from_str::<serde_json::Value>(&x.record_json).unwrap();

    let x = explain(&json, &ask(Some(alice), "SendMessage")).unwrap();
    assert!(x.allowed, "{}", x.human);
    let r = record(&x);
    assert_eq!((r["reason"].as_str(), r["policy"].as_str(), r["rule"].as_str()), (Some("rule-matched"), Some("agents/b-callers"), Some("alice")));
    assert_eq!((r["mcpMethod"].as_str(), r["detail"].as_str(), r["level"].as_str()), (Some("SendMessage"), Some("a2a/jsonrpc"), Some("backend")));
    // 0.3 names are the same operation, as in the filter.
    assert_eq!(explain(&json, &ask(Some(alice), "message/send")).unwrap().record_json, x.record_json);

    // The open rule grants reading to anyone; nothing else.
    let bob = "spiffe://cluster.local/ns/agents/sa/bob";
    assert!(explain(&json, &ask(Some(bob), "GetTask")).unwrap().allowed);
    let x = explain(&json, &ask(Some(bob), "CancelTask")).unwrap();
    assert!(!x.allowed);
    assert_eq!((record(&x)["decision"].as_str(), record(&x)["reason"].as_str()), (Some("deny"), Some("default-deny")));
    assert!(x.human.contains("rule anyone-reads of agents/b-callers names the caller, and grants: GetTask"), "{}", x.human);

    // Misuse is an error that says what to do.
    let mut mcp = ask(Some(alice), "SendMessage");
    (mcp.a2a, mcp.mcp) = (None, Some("tools/list".into()));
    assert!(explain(&json, &mcp).unwrap_err().contains("is a GrantwallA2AAgent: its requests are read as A2A, never as MCP"));
    assert!(explain(&json, &ask(Some(alice), "SendMail")).unwrap_err().contains("not an A2A operation"));
}
