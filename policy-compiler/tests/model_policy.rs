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

#[test]
fn explain_judges_llm_requests_with_the_filters_code() {
    use grantwall_policy_compiler::explain::{explain, ExplainRequest};
    let spec = "  envoyClusters: [\"outbound|443||api.openai.com\"]\n  rules:\n  - name: prod-gpt4\n    source: {type: Namespace, namespace: production}\n    models: [\"gpt-4*\"]\n  budgets:\n  - {name: daily, tokens: 1000, window: 24h, source: {type: Namespace, namespace: production}}\n";
    let json = serde_json::to_vec(&run(&policy(spec)).unwrap()).unwrap();
    let ask = |ns: &str, model: &str, path: Option<&str>| ExplainRequest {
        principal: Some(format!("spiffe://cluster.local/ns/{ns}/sa/agent")),
        cluster: Some("outbound|443||api.openai.com".into()),
        method: "POST".into(),
        path: path.map(str::to_owned),
        model: Some(model.into()),
        ..ExplainRequest::default()
    };
    let record = |x: &grantwall_policy_compiler::explain::Explanation| serde_json::from_str::<serde_json::Value>(&x.record_json).unwrap();

    let x = explain(&json, &ask("production", "gpt-4o", None)).unwrap();
    assert!(x.allowed, "{}", x.human);
    let r = record(&x);
    assert_eq!((r["mcpMethod"].as_str(), r["model"].as_str(), r["rule"].as_str()), (Some("chat.completions"), Some("gpt-4o"), Some("prod-gpt4")));
    assert!(x.human.contains("token budget daily of ai/models: 1000 tokens per 86400 s"), "{}", x.human);

    let x = explain(&json, &ask("production", "o3", Some("/v1/responses"))).unwrap();
    assert!(!x.allowed);
    let r = record(&x);
    assert_eq!((r["reason"].as_str(), r["mcpMethod"].as_str()), (Some("model-denied"), Some("responses")));
    assert_eq!(r["detail"], "model \"o3\" is not granted to spiffe://cluster.local/ns/production/sa/agent on cluster outbound|443||api.openai.com");

    let x = explain(&json, &ask("production", "gpt-4o", Some("/v1/audio/speech"))).unwrap();
    assert_eq!((x.allowed, record(&x)["reason"].as_str()), (false, Some("llm-unsupported-endpoint")));

    // The upstream is found as the filter finds it; a POST to it needs --model, --model needs an upstream.
    let elsewhere = ExplainRequest { cluster: Some("outbound|443||other".into()), ..ask("production", "gpt-4o", None) };
    assert!(explain(&json, &elsewhere).unwrap_err().contains("no LLM upstream of a GrantwallModelPolicy matches"));
    let no_model = ExplainRequest { model: None, ..ask("production", "gpt-4o", None) };
    assert!(explain(&json, &no_model).unwrap_err().contains("say which model with --model"));
}
