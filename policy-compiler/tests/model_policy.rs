//! GrantwallModelPolicy → `config.llm`: the docs' seed policies compile, and mistakes are errors naming the
//! object and the field.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use grantwall_core::llm::BudgetKey;
use grantwall_policy_compiler::compile::{compile, Options};
use grantwall_policy_compiler::input::Source;

fn run(text: &str) -> Result<grantwall_core::config::Config, Vec<String>> {
    let sources = [Source { name: "policy.yaml".into(), text: text.into() }];
    compile(&sources, &Options::default())
        .map(|c| c.config)
        .map_err(|d| d.errors.iter().map(ToString::to_string).collect())
}

fn policy(spec: &str) -> String {
    format!("apiVersion: grantwall.io/v1alpha1\nkind: GrantwallModelPolicy\nmetadata:\n  name: models\n  namespace: ai\nspec:\n{spec}")
}

#[test]
fn the_docs_seed_policies_compile() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/llm.md")).unwrap();
    let blocks: Vec<&str> = docs
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .filter(|b| b.contains("kind: GrantwallModelPolicy"))
        .collect();
    assert_eq!(blocks.len(), 2);
    let config = run(&blocks.join("---\n")).unwrap();
    let llm = config.llm.unwrap();
    assert_eq!(llm.backends.len(), 1, "both policies name the same cluster: one backend");
    let b = &llm.backends[0];
    assert_eq!(b.clusters, ["outbound|443||api.openai.com"]);
    assert_eq!(b.policies.len(), 2);
    let budget = &b.policies[0].budgets[0];
    assert_eq!((budget.tokens, budget.window_seconds, budget.per), (1_000_000, 86_400, BudgetKey::Namespace));
    let rules = &b.policies[1].rules;
    assert_eq!(rules[0].callers.as_deref(), Some(&["spiffe://cluster.local/ns/production/sa/*".to_string()][..]));
    assert_eq!(rules[0].models, ["gpt-4*"]);
}

#[test]
fn service_targets_become_authorities() {
    let config = run(&policy("  targetRefs:\n  - {group: \"\", kind: Service, name: openai}\n  rules:\n  - name: any\n    models: [\"*\"]\n")).unwrap();
    let b = &config.llm.unwrap().backends[0];
    assert_eq!(b.name, "ai/openai");
    assert_eq!(b.authorities, ["openai.ai", "openai.ai.svc", "openai.ai.svc.cluster.local"]);
    assert!(b.policies[0].rules[0].callers.is_none());
}

#[test]
fn mistakes_name_the_object_and_field() {
    let cases = [
        ("  hosts: [llm.example.com]\n  rules:\n  - name: r\n    models: [\"gpt-*-mini\"]\n", "spec.rules[0].models[0]"),
        ("  hosts: [llm.example.com]\n  rules:\n  - name: r\n    models: []\n", "spec.rules[0].models"),
        ("  hosts: [llm.example.com]\n  budgets:\n  - {name: d, tokens: 10, window: 10w}\n", "spec.budgets[0].window"),
        ("  hosts: [llm.example.com]\n  budgets:\n  - {name: d, tokens: 0, window: 1h}\n", "spec.budgets[0].tokens"),
        ("  hosts: [llm.example.com]\n  budgets:\n  - {name: d, tokens: 5, window: 1h}\n  - {name: d, tokens: 5, window: 2h}\n", "spec.budgets[1].name"),
        ("  hosts: [llm.example.com]\n  rules:\n  - name: r\n    source: {type: Namespace}\n    models: [\"*\"]\n", "spec.rules[0].source.namespace"),
        ("  hosts: [llm.example.com]\n  rules:\n  - name: r\n    source: {type: SPIFFE, namespace: x, spiffe: \"spiffe://td/x\"}\n    models: [\"*\"]\n", "spec.rules[0].source.namespace"),
        ("  rules:\n  - name: r\n    models: [\"*\"]\n", "spec"),
        ("  hosts: [LLM.example.com]\n", "spec.hosts[0]"),
        ("  hosts: [llm.example.com]\n  budget: []\n", "spec.budget"),
    ];
    for (spec, field) in cases {
        let errors = run(&policy(spec)).expect_err(spec);
        assert!(
            errors.iter().any(|e| e.contains("GrantwallModelPolicy ai/models") && e.contains(&format!(": {field}:"))),
            "{spec}\nwanted {field}, got {errors:?}"
        );
    }
}
