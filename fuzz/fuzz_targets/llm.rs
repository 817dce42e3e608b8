//! LLM requests and responses: `llm::request::parse` for every API (the model a grant is judged on), the
//! `stream_options.include_usage` and `max_tokens` rewrites, and usage read from JSON bodies and SSE events.
//! The first byte picks the API.
//!
//! Oracles beyond "no panic": the model Grantwall reads is the model a lenient JSON reader sees; a rewritten
//! body parses again with the same model and stream flag, and asks for usage.
#![no_main]

use grantwall_core::llm::request::{self, Api};
use grantwall_core::llm::usage;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const APIS: [Api; 5] = [Api::ChatCompletions, Api::Completions, Api::Responses, Api::Embeddings, Api::AnthropicMessages];

fuzz_target!(|data: &[u8]| {
    let (head, body) = data.split_at(data.len().min(1));
    let api = APIS[usize::from(head.first().copied().unwrap_or(0)) % APIS.len()];
    if let Ok(req) = request::parse(api, body) {
        let v: Value = serde_json::from_slice(body).expect("strict LLM parse accepted what serde_json refuses");
        assert_eq!(v["model"].as_str(), Some(req.model.as_ref()), "model differs from a lenient reading");
        if req.stream && api.usage_needs_opt_in() {
            let text = std::str::from_utf8(body).expect("parsed bodies are UTF-8");
            if let Ok(out) = request::with_usage_opt_in(text) {
                let again = request::parse(api, out.as_bytes()).expect("the usage opt-in rewrite must parse");
                assert_eq!((again.model.as_ref(), again.stream), (req.model.as_ref(), req.stream));
                assert_eq!(again.include_usage, Some(true));
            }
        }
        if let (Some(field), Ok(text)) = (api.max_tokens_field(), std::str::from_utf8(body)) {
            if let Ok(out) = request::set_members(text, &[(field, "16".to_owned())]) {
                let again = request::parse(api, out.as_bytes()).expect("the max_tokens rewrite must parse");
                assert_eq!(again.model.as_ref(), req.model.as_ref());
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = usage::from_json(text);
        let _ = usage::from_event(text);
    }
});
