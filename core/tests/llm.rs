//! LLM traffic: request parsing (strict), model grants, budgets and their windows, usage from responses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use grantwall_core::engine::Engine;
use grantwall_core::llm::reply::{error_body, Refusal};
use grantwall_core::llm::request::{parse, set_members, with_usage_opt_in};
use grantwall_core::llm::usage::{self, Usage};
use grantwall_core::llm::{policy::namespace_of, window, Api, LlmConfig, LlmPolicySet, ModelDecision};
use serde_json::{json, Value};

const PROD: &str = "spiffe://cluster.local/ns/production/sa/agent";
const DEV: &str = "spiffe://cluster.local/ns/development/sa/agent";

fn seeds() -> LlmConfig {
    serde_json::from_value(json!({
        "backends": [{
            "name": "ai/openai",
            "clusters": ["llm"],
            "authorities": ["llm.example.com"],
            "policies": [{
                "name": "ai/models",
                "rules": [
                    {"name": "production", "callers": ["spiffe://cluster.local/ns/production/sa/*"], "models": ["gpt-4*"]},
                    {"name": "development", "callers": ["spiffe://cluster.local/ns/development/sa/*"], "models": ["*"]}
                ],
                "budgets": [{"name": "daily", "tokens": 1000000, "windowSeconds": 86400, "per": "namespace"}],
                "capMaxTokens": true
            }]
        }]
    }))
    .unwrap()
}

#[test]
fn api_from_path() {
    assert_eq!(Api::from_path("/v1/chat/completions"), Some(Api::ChatCompletions));
    assert_eq!(Api::from_path("/v1/chat/completions?x=1"), Some(Api::ChatCompletions));
    assert_eq!(Api::from_path("/openai/v1/chat/completions"), Some(Api::ChatCompletions));
    assert_eq!(Api::from_path("/v1/completions"), Some(Api::Completions));
    assert_eq!(Api::from_path("/v1/responses"), Some(Api::Responses));
    assert_eq!(Api::from_path("/v1/embeddings"), Some(Api::Embeddings));
    assert_eq!(Api::from_path("/v1/messages"), Some(Api::AnthropicMessages));
    assert_eq!(Api::from_path("/v1/chat%2Fcompletions"), None);
    assert_eq!(Api::from_path("/v1/messages/batches"), None);
    assert_eq!(Api::from_path("/v1/models"), None);
}

#[test]
fn parses_the_fields_policy_reads() {
    let body = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":false},"max_tokens":50,"max_completion_tokens":70}"#;
    let r = parse(Api::ChatCompletions, body).unwrap();
    assert_eq!(r.model, "gpt-4o");
    assert!(r.stream);
    assert_eq!(r.include_usage, Some(false));
    assert_eq!(r.max_tokens, vec![("max_tokens", 50), ("max_completion_tokens", 70)]);
    let r = parse(Api::Responses, br#"{"model":"o3","input":"x","max_output_tokens":null}"#).unwrap();
    assert!(!r.stream);
    assert!(r.max_tokens.is_empty());
    let r = parse(Api::AnthropicMessages, br#"{"model":"claude-x","max_tokens":1024,"messages":[]}"#).unwrap();
    assert_eq!(r.max_tokens, vec![("max_tokens", 1024)]);
    // Escaped model names are read decoded.
    let r = parse(Api::Embeddings, br#"{"model":"gpt\u002d4","input":"x"}"#).unwrap();
    assert_eq!(r.model, "gpt-4");
}

#[test]
fn refuses_what_another_parser_could_read_differently() {
    let bad: &[&[u8]] = &[
        br#"{"model":"gpt-4o","model":"gpt-3.5"}"#,
        b"\xef\xbb\xbf{\"model\":\"gpt-4o\"}",
        br#"{"model":"gpt-4o","Model":"o3"}"#,
        br#"{"model":"gpt-4o","mod\u0065l":"o3"}"#,
        br#"{"model":"gpt-4o","model\u0000":"o3"}"#,
        br#"{"model":"gpt-4o","messages":[{"role":"user","role":"system"}]}"#,
        br#"{"model":["gpt-4o"]}"#,
        br#"{"model":4}"#,
        br#"{"model":""}"#,
        br#"{"messages":[]}"#,
        br#"[{"model":"gpt-4o"}]"#,
        br#"{"model":"gpt-4o"} {"model":"o3"}"#,
        br#"{"model":"gpt-4o","stream":"true"}"#,
        br#"{"model":"gpt-4o","max_tokens":1e3}"#,
        br#"{"model":"gpt-4o","max_tokens":-1}"#,
        br#"{"model":"gpt-4o","max_tokens":10.5}"#,
        br#"{"model":"gpt-4o","stream_options":{"include_usage":1}}"#,
        br#"{"model":"gpt-4o","stream_options":{"Include_usage":false}}"#,
        br#"{"model":"gpt-4o","stream_options":{"include_usage":true,"include_usage":false}}"#,
        b"{\"model\":\"gpt-4\xff\"}",
        b"",
    ];
    for body in bad {
        assert!(parse(Api::ChatCompletions, body).is_err(), "accepted {:?}", String::from_utf8_lossy(body));
    }
    assert!(parse(Api::Embeddings, br#"{"model":"e","input":"x","stream":true}"#).is_err());
}

#[test]
fn rewrites_keep_everything_else() {
    let body = r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"h\u00e9"}]}"#;
    let out: Value = serde_json::from_str(&with_usage_opt_in(body).unwrap()).unwrap();
    assert_eq!(out["stream_options"], json!({"include_usage": true}));
    assert_eq!(out["messages"][0]["content"], "hé");
    let body = r#"{"model":"m","stream_options":{"include_usage":false,"x":1}}"#;
    let out: Value = serde_json::from_str(&with_usage_opt_in(body).unwrap()).unwrap();
    assert_eq!(out["stream_options"], json!({"include_usage": true, "x": 1}));
    let out: Value = serde_json::from_str(&set_members(r#"{"model":"m","max_tokens":900}"#, &[("max_tokens", "12".into())]).unwrap()).unwrap();
    assert_eq!(out, json!({"model": "m", "max_tokens": 12}));
    // The rewritten body parses back to what policy decided on.
    let rewritten = with_usage_opt_in(r#"{"model":"gpt-4o","stream":true}"#).unwrap();
    let r = parse(Api::ChatCompletions, rewritten.as_bytes()).unwrap();
    assert_eq!(r.include_usage, Some(true));
}

#[test]
fn model_grants_per_namespace() {
    let set = LlmPolicySet::new(Some(&seeds())).unwrap();
    let b = set.route(Some("llm"), "whatever").unwrap();
    assert_eq!(set.route(None, "LLM.example.com:443"), Some(b));
    assert_eq!(set.route(Some("other"), "other"), None);
    assert!(matches!(set.decide_model(b, Some(PROD), "gpt-4o"), ModelDecision::Granted { rule: "production", .. }));
    assert!(matches!(set.decide_model(b, Some(PROD), "gpt-4"), ModelDecision::Granted { .. }));
    assert_eq!(set.decide_model(b, Some(PROD), "gpt-3.5-turbo"), ModelDecision::Denied);
    assert_eq!(set.decide_model(b, Some(PROD), "GPT-4o"), ModelDecision::Denied);
    assert!(matches!(set.decide_model(b, Some(DEV), "llama-3"), ModelDecision::Granted { rule: "development", .. }));
    assert_eq!(set.decide_model(b, None, "gpt-4o"), ModelDecision::Denied);
    // A namespace pattern covers one service-account segment, nothing deeper or in another trust domain.
    assert_eq!(set.decide_model(b, Some("spiffe://cluster.local/ns/production/sa/a/b"), "gpt-4o"), ModelDecision::Denied);
    assert_eq!(set.decide_model(b, Some("spiffe://evil/ns/production/sa/agent"), "gpt-4o"), ModelDecision::Denied);
    assert_eq!(set.decide_model(b, Some("spiffe://cluster.local/ns/productionx/sa/agent"), "gpt-4o"), ModelDecision::Denied);
}

#[test]
fn budget_only_policies_restrict_no_model() {
    let mut cfg = seeds();
    cfg.backends[0].policies[0].rules.clear();
    let set = LlmPolicySet::new(Some(&cfg)).unwrap();
    assert_eq!(set.decide_model(0, None, "anything"), ModelDecision::Unrestricted);
}

#[test]
fn budgets_are_keyed_by_namespace_or_identity() {
    let set = LlmPolicySet::new(Some(&seeds())).unwrap();
    let a = set.budgets(0, Some(PROD));
    let b = set.budgets(0, Some("spiffe://cluster.local/ns/production/sa/other"));
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].key, b[0].key, "one counter per namespace");
    assert_ne!(a[0].key, set.budgets(0, Some(DEV))[0].key);
    assert!(a[0].cap_max_tokens);
    let mut cfg = seeds();
    cfg.backends[0].policies[0].budgets[0].per = grantwall_core::llm::BudgetKey::Identity;
    let set = LlmPolicySet::new(Some(&cfg)).unwrap();
    assert_ne!(set.budgets(0, Some(PROD))[0].key, set.budgets(0, Some("spiffe://cluster.local/ns/production/sa/other"))[0].key);
    assert_eq!(namespace_of(PROD), Some("production"));
    assert_eq!(namespace_of("spiffe://td/ns/x/sa/"), None);
    assert_eq!(namespace_of("oidc://issuer/sub"), None);
}

#[test]
fn bad_configs_name_the_field() {
    let cases: &[(Value, &str)] = &[
        (json!({"backends":[{"name":"a/b","policies":[]}]}), "llm.backends[0]"),
        (json!({"backends":[{"name":"a/b","clusters":["c"],"policies":[{"name":"p","rules":[{"name":"r","models":["gpt-*-x"]}]}]}]}), "llm.backends[0].policies[0].rules[0].models[0]"),
        (json!({"backends":[{"name":"a/b","clusters":["c"],"policies":[{"name":"p","rules":[{"name":"r","models":[]}]}]}]}), "llm.backends[0].policies[0].rules[0].models"),
        (json!({"backends":[{"name":"a/b","clusters":["c"],"policies":[{"name":"p","rules":[{"name":"r","callers":["spiffe://td/ns/*"],"models":["*"]}]}]}]}), "llm.backends[0].policies[0].rules[0].callers[0]"),
        (json!({"backends":[{"name":"a/b","clusters":["c"],"policies":[{"name":"p","budgets":[{"name":"d","tokens":0,"windowSeconds":60,"per":"identity"}]}]}]}), "llm.backends[0].policies[0].budgets[0].tokens"),
        (json!({"backends":[{"name":"a/b","clusters":["c"],"policies":[{"name":"p","budgets":[{"name":"d","tokens":5,"windowSeconds":0,"per":"identity"}]}]}]}), "llm.backends[0].policies[0].budgets[0].windowSeconds"),
        (json!({"backends":[{"name":"a/b","authorities":["Host"],"policies":[]}]}), "llm.backends[0].authorities[0]"),
    ];
    for (llm, path) in cases {
        let config = json!({"version": "grantwall.io/v1alpha1", "llm": llm});
        let e = Engine::from_json(config.to_string().as_bytes()).err().unwrap_or_else(|| panic!("accepted {llm}"));
        assert_eq!(e.path, *path, "{e}");
    }
    // Unknown fields are refused with their path.
    let config = json!({"version": "grantwall.io/v1alpha1", "llm": {"backends": [{"name": "a", "clusters": ["c"], "policies": [{"name": "p", "budget": []}]}]}});
    let e = Engine::from_json(config.to_string().as_bytes()).err().unwrap();
    assert!(e.path.starts_with("llm.backends[0].policies[0]"), "{e}");
    // The seeds load through the engine.
    let config = json!({"version": "grantwall.io/v1alpha1", "llm": serde_json::to_value(seeds()).unwrap()});
    let engine = Engine::from_json(config.to_string().as_bytes()).unwrap();
    assert!(engine.llm().route(Some("llm"), "").is_some());
}

#[test]
fn fixed_windows_align_to_the_epoch() {
    let day = 86_400;
    let now = 1_700_000_123;
    assert_eq!(window::window_start(now, day) % day, 0);
    assert_eq!(window::seconds_to_reset(now, day), day - now % day);
    assert_eq!(window::seconds_to_reset(day * 5, day), day);
    let c = window::charge(None, now, 60, 100);
    assert_eq!(window::used(Some(&c), now, 60), 100);
    let c = window::charge(Some(&c), now + 1, 60, 50);
    assert_eq!(window::used(Some(&c), now + 1, 60), 150);
    // The next window starts from zero; an older value never counts.
    let next = window::window_start(now, 60) + 60;
    assert_eq!(window::used(Some(&c), next, 60), 0);
    assert_eq!(window::used(Some(b"garbage"), now, 60), 0);
    assert_eq!(window::remaining(100, 150), 0);
    assert_eq!(window::seconds_to_reset(59, 60), 1);
}

#[test]
fn usage_from_json_responses() {
    let openai = r#"{"id":"x","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":30,"total_tokens":42}}"#;
    assert_eq!(usage::from_json(openai).unwrap().unwrap().tokens(), Some(42));
    let responses = r#"{"id":"r","output":[],"usage":{"input_tokens":5,"output_tokens":7,"total_tokens":12,"output_tokens_details":{"reasoning_tokens":3}}}"#;
    assert_eq!(usage::from_json(responses).unwrap().unwrap().tokens(), Some(12));
    let anthropic = r#"{"type":"message","usage":{"input_tokens":10,"cache_read_input_tokens":4,"output_tokens":6}}"#;
    let u = usage::from_json(anthropic).unwrap().unwrap();
    assert_eq!((u.input, u.output, u.tokens()), (Some(14), Some(6), Some(20)));
    let embeddings = r#"{"data":[],"usage":{"prompt_tokens":8,"total_tokens":8}}"#;
    assert_eq!(usage::from_json(embeddings).unwrap().unwrap().tokens(), Some(8));
    assert_eq!(usage::from_json(r#"{"choices":[]}"#).unwrap(), None);
    assert!(usage::from_json(r#"{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":99}}"#).is_err());
    assert!(usage::from_json(r#"{"usage":{"prompt_tokens":"1"}}"#).is_err());
    assert!(usage::from_json(r#"{"usage":{"prompt_tokens":1,"input_tokens":2}}"#).is_err());
}

#[test]
fn usage_from_sse_events() {
    // OpenAI: every chunk says usage null; the last one has empty choices and the numbers.
    let chunk = r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"}}],"usage":null}"#;
    assert_eq!(usage::from_event(chunk).unwrap().usage, None);
    let last = r#"{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;
    let e = usage::from_event(last).unwrap();
    assert!(e.usage_only_chunk);
    assert_eq!(e.usage.unwrap().tokens(), Some(7));
    assert_eq!(usage::from_event("[DONE]").unwrap(), Default::default());
    // Anthropic: input in message_start, cumulative output in message_delta.
    let mut total = Usage::default();
    let start = r#"{"type":"message_start","message":{"id":"m","usage":{"input_tokens":25,"output_tokens":1}}}"#;
    let delta = r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}"#;
    for data in [start, r#"{"type":"content_block_delta","delta":{"text":"x"}}"#, delta] {
        if let Some(u) = usage::from_event(data).unwrap().usage {
            total.merge(u);
        }
    }
    assert_eq!(total.tokens(), Some(40));
    assert!(!usage::from_event(delta).unwrap().usage_only_chunk);
    // Responses API: response.completed carries response.usage.
    let done = r#"{"type":"response.completed","response":{"id":"r","usage":{"input_tokens":9,"output_tokens":11,"total_tokens":20}}}"#;
    assert_eq!(usage::from_event(done).unwrap().usage.unwrap().tokens(), Some(20));
    assert!(usage::from_event(r#"{"usage":{"total_tokens":1},"usage":null}"#).is_err());
    assert_eq!(usage::estimate(7, 0), 2);
}

#[test]
fn gateway_wide_refusals_in_each_api() {
    let cases = [
        (Refusal::RateLimited, 429, "rate-limited", "rate_limit_exceeded", "rate_limit_error"),
        (Refusal::IdentityExhausted, 403, "identity-exhausted", "identity_exhausted", "permission_error"),
    ];
    for (refusal, status, reason, openai_code, anthropic_type) in cases {
        assert_eq!((refusal.status(), refusal.reason()), (status, reason));
        let openai: Value = serde_json::from_str(&error_body(Some(Api::Responses), refusal, "why")).unwrap();
        assert_eq!((openai["error"]["code"].as_str(), openai["error"]["message"].as_str()), (Some(openai_code), Some("why")));
        let anthropic: Value = serde_json::from_str(&error_body(Some(Api::AnthropicMessages), refusal, "why")).unwrap();
        assert_eq!((anthropic["type"].as_str(), anthropic["error"]["type"].as_str()), (Some("error"), Some(anthropic_type)));
    }
}

#[test]
fn error_bodies_follow_each_api() {
    let body: Value = serde_json::from_str(&error_body(Some(Api::ChatCompletions), Refusal::ModelDenied, "no \"gpt-5\"")).unwrap();
    assert_eq!(body["error"]["code"], "model_not_allowed");
    assert_eq!(body["error"]["message"], "no \"gpt-5\"");
    assert_eq!(Refusal::ModelDenied.status(), 403);
    assert_eq!(Refusal::BudgetExhausted.status(), 429);
    let body: Value = serde_json::from_str(&error_body(Some(Api::AnthropicMessages), Refusal::BudgetExhausted, "spent")).unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "rate_limit_error");
}
