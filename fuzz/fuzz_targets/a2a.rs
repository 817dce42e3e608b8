//! A2A requests and responses: JSON-RPC inspection (`a2a::parse_jsonrpc`, both naming generations), the
//! HTTP+JSON/REST binding (`classify_rest` + `rest_call`), task ids learned from responses, task-list
//! filtering and agent-card filtering. The first byte picks the HTTP method and splits path from body.
//!
//! Oracles beyond "no panic": an accepted JSON-RPC call names the operation a lenient reading of `method`
//! gives; a filtered card or task list is strict JSON again and never gains skills or tasks.
#![no_main]

use grantwall_core::a2a::{self, CardOutcome, SignedCards, SkillView};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if let Ok(call) = a2a::parse_jsonrpc(data) {
        let v: Value = serde_json::from_slice(data).expect("strict A2A parse accepted what serde_json refuses");
        let method = v["method"].as_str().expect("an accepted call has a string method");
        assert_eq!(a2a::method_operation(method), Some((call.op, call.legacy)));
    }

    let (head, rest) = data.split_at(data.len().min(1));
    let method = match head.first().map(|b| b % 4) {
        Some(0) => "GET",
        Some(1) => "POST",
        Some(2) => "DELETE",
        _ => "PUT",
    };
    let split = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
    let (path, body) = rest.split_at(split);
    if let Ok(path) = std::str::from_utf8(path) {
        if let Some(route) = a2a::classify_rest(method, path) {
            let body = body.get(1..).filter(|b| !b.is_empty());
            let _ = a2a::rest_call(&route, body);
        }
    }

    if let Ok(text) = std::str::from_utf8(data) {
        let _ = a2a::response_task_ids(text);
    }
    if let Ok(Some((out, kept, _))) = a2a::filter_task_list(data, &mut |id: &str| id.len() % 2 == 0) {
        let v: Value = serde_json::from_slice(&out).expect("a filtered task list is JSON");
        let list = if v.get("jsonrpc").is_some() { &v["result"] } else { &v };
        let tasks = list["tasks"].as_array().cloned().unwrap_or_default();
        assert_eq!(tasks.len(), kept, "the kept count is the list's length");
        for t in &tasks {
            let id = t["id"].as_str().unwrap_or_default();
            assert!(id.len() % 2 == 0, "a filtered task list kept task {id:?}");
        }
    }

    let view = SkillView(Some(vec!["search", "summarize"]));
    for signed in [SignedCards::Refuse, SignedCards::PassUnfiltered] {
        if let Ok(CardOutcome::Rewritten { body, .. }) = a2a::filter_card(data, &view, Some("https://gw.example/a2a"), signed) {
            let v: Value = serde_json::from_slice(&body).expect("a filtered card is JSON");
            let card = v.get("result").unwrap_or(&v);
            for skill in card["skills"].as_array().into_iter().flatten() {
                let id = skill["id"].as_str().unwrap_or_default();
                assert!(view.allows(id), "a filtered card kept skill {id:?}");
            }
        }
    }
});
