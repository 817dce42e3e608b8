//! A2A inspection: both naming generations, the REST binding, task/push extraction, grants, card filtering
//! (run natively and on 32-bit Wasm).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use grantwall_core::a2a::{
    classify_rest, filter_card, is_card_path, method_operation, parse_jsonrpc, push_url_allowed, response_task_ids,
    rest_call, rest_denial, jsonrpc_denial, filter_task_list, Agent, AgentConfig, AgentPolicy, AgentRule, Binding, CardOutcome, Operation,
    SignedCards, SkillView,
};
use serde_json::{json, Value};

fn rpc(method: &str, params: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params})).unwrap()
}

#[test]
fn both_generations_normalise_to_one_operation_set() {
    let pairs = [
        ("message/send", "SendMessage"),
        ("message/stream", "SendStreamingMessage"),
        ("tasks/get", "GetTask"),
        ("tasks/cancel", "CancelTask"),
        ("tasks/resubscribe", "SubscribeToTask"),
        ("tasks/pushNotificationConfig/set", "CreateTaskPushNotificationConfig"),
        ("tasks/pushNotificationConfig/get", "GetTaskPushNotificationConfig"),
        ("tasks/pushNotificationConfig/list", "ListTaskPushNotificationConfigs"),
        ("tasks/pushNotificationConfig/delete", "DeleteTaskPushNotificationConfig"),
        ("agent/getAuthenticatedExtendedCard", "GetExtendedAgentCard"),
    ];
    for (old, new) in pairs {
        let (a, legacy_a) = method_operation(old).unwrap();
        let (b, legacy_b) = method_operation(new).unwrap();
        assert_eq!(a, b, "{old} vs {new}");
        assert!(legacy_a && !legacy_b);
        assert_eq!(b.as_str(), new);
    }
    assert_eq!(method_operation("ListTasks"), Some((Operation::ListTasks, false)));
    for unknown in ["tasks/list", "sendMessage", "message/Send", "tools/call", "SendMessage ", ""] {
        assert_eq!(method_operation(unknown), None, "{unknown:?}");
    }
}

#[test]
fn jsonrpc_send_reads_task_references_and_push_urls() {
    let body = rpc(
        "message/send",
        json!({"message": {"role": "user", "messageId": "m1", "taskId": "t1", "referenceTaskIds": ["r1", "r2"],
                            "parts": [{"kind": "data", "data": {"taskId": "not-a-protocol-field"}}]},
               "configuration": {"pushNotificationConfig": {"url": "https://hooks.example/a"}}}),
    );
    let call = parse_jsonrpc(&body).unwrap();
    assert_eq!((call.op, call.legacy, call.binding), (Operation::SendMessage, true, Binding::JsonRpc));
    assert_eq!(call.id.as_deref(), Some("7"));
    assert_eq!(call.tasks, vec!["t1"]);
    assert_eq!(call.references, vec!["r1", "r2"]);
    assert_eq!(call.push_urls, vec!["https://hooks.example/a"]);

    // 1.0 shape and the protobuf (snake_case) spellings servers also accept.
    let body = rpc(
        "SendMessage",
        json!({"message": {"role": "ROLE_USER", "messageId": "m1", "task_id": "t9", "reference_task_ids": ["r9"]},
               "configuration": {"task_push_notification_config": {"url": "http://10.0.0.1/x"}}}),
    );
    let call = parse_jsonrpc(&body).unwrap();
    assert_eq!((call.op, call.legacy), (Operation::SendMessage, false));
    assert_eq!(call.tasks, vec!["t9"]);
    assert_eq!(call.references, vec!["r9"]);
    assert_eq!(call.push_urls, vec!["http://10.0.0.1/x"]);
}

#[test]
fn task_operations_name_their_task() {
    assert_eq!(parse_jsonrpc(&rpc("GetTask", json!({"id": "t1"}))).unwrap().tasks, vec!["t1"]);
    assert_eq!(parse_jsonrpc(&rpc("tasks/cancel", json!({"id": "t2"}))).unwrap().tasks, vec!["t2"]);
    assert_eq!(parse_jsonrpc(&rpc("tasks/resubscribe", json!({"id": "t3"}))).unwrap().op, Operation::SubscribeToTask);
    // 0.3 push get: `id` is the task; 1.0 push get: `taskId` is the task, `id` the config.
    assert_eq!(parse_jsonrpc(&rpc("tasks/pushNotificationConfig/get", json!({"id": "t4"}))).unwrap().tasks, vec!["t4"]);
    let call = parse_jsonrpc(&rpc("GetTaskPushNotificationConfig", json!({"taskId": "t5", "id": "cfg"}))).unwrap();
    assert_eq!(call.tasks, vec!["t5"]);
    // 1.0 create: the URL is at the top level.
    let call = parse_jsonrpc(&rpc("CreateTaskPushNotificationConfig", json!({"taskId": "t6", "url": "https://evil.example/"}))).unwrap();
    assert_eq!((call.tasks, call.push_urls), (vec!["t6".to_string()], vec!["https://evil.example/".to_string()]));
    let call = parse_jsonrpc(&rpc("tasks/pushNotificationConfig/set", json!({"taskId": "t7", "pushNotificationConfig": {"url": "https://h/"}}))).unwrap();
    assert_eq!((call.tasks, call.push_urls), (vec!["t7".to_string()], vec!["https://h/".to_string()]));
    // A task operation without a task, or with a non-string one, is refused.
    assert_eq!(parse_jsonrpc(&rpc("GetTask", json!({}))).unwrap_err().reason, "invalid-params");
    assert_eq!(parse_jsonrpc(&rpc("GetTask", json!({"id": 5}))).unwrap_err().reason, "invalid-params");
    assert_eq!(parse_jsonrpc(&rpc("SendMessage", json!({"message": {"taskId": ["x"]}}))).unwrap_err().reason, "invalid-params");
}

#[test]
fn strict_parsing_refuses_what_another_parser_reads_differently() {
    let dup = br#"{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":"mine","id":"yours"}}"#;
    assert_eq!(parse_jsonrpc(dup).unwrap_err().reason, "duplicate-key");
    let dup_method = br#"{"jsonrpc":"2.0","id":1,"method":"GetTask","method":"CancelTask","params":{"id":"a"}}"#;
    assert_eq!(parse_jsonrpc(dup_method).unwrap_err().reason, "duplicate-key");
    let bom = b"\xef\xbb\xbf{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"GetTask\",\"params\":{\"id\":\"a\"}}";
    assert!(parse_jsonrpc(bom).is_err());
    assert_eq!(parse_jsonrpc(b"[]").unwrap_err().reason, "batch-refused");
    let note = br#"{"jsonrpc":"2.0","method":"SendMessage","params":{}}"#;
    assert_eq!(parse_jsonrpc(note).unwrap_err().reason, "invalid-request");
    let unknown = br#"{"jsonrpc":"2.0","id":1,"method":"tasks/list","params":{}}"#;
    assert_eq!(parse_jsonrpc(unknown).unwrap_err().reason, "a2a-method-unknown");
}

#[test]
fn rest_paths_of_both_generations_and_tenants() {
    let cases: &[(&str, &str, Operation, bool, Option<&str>)] = &[
        ("POST", "/message:send", Operation::SendMessage, false, None),
        ("POST", "/v1/message:send", Operation::SendMessage, true, None),
        ("POST", "/acme/message:stream", Operation::SendStreamingMessage, false, None),
        ("POST", "/v1/message:stream?x=1", Operation::SendStreamingMessage, true, None),
        ("GET", "/tasks", Operation::ListTasks, false, None),
        ("GET", "/acme/tasks", Operation::ListTasks, false, None),
        ("GET", "/v1/tasks", Operation::ListTasks, false, None), // tenant "v1": 0.3 has no ListTasks
        ("GET", "/tasks/abc", Operation::GetTask, false, Some("abc")),
        ("GET", "/v1/tasks/abc", Operation::GetTask, true, Some("abc")),
        ("GET", "/acme/tasks/abc", Operation::GetTask, false, Some("abc")),
        ("GET", "/tasks/abc:cancel", Operation::GetTask, false, Some("abc:cancel")),
        ("POST", "/tasks/abc:cancel", Operation::CancelTask, false, Some("abc")),
        ("GET", "/tasks/abc:subscribe", Operation::SubscribeToTask, false, Some("abc")),
        ("POST", "/v1/tasks/abc:subscribe", Operation::SubscribeToTask, true, Some("abc")),
        ("POST", "/tasks/abc/pushNotificationConfigs", Operation::CreateTaskPushNotificationConfig, false, Some("abc")),
        ("GET", "/tasks/abc/pushNotificationConfigs", Operation::ListTaskPushNotificationConfigs, false, Some("abc")),
        ("GET", "/t/tasks/abc/pushNotificationConfigs/c1", Operation::GetTaskPushNotificationConfig, false, Some("abc")),
        ("DELETE", "/tasks/abc/pushNotificationConfigs/c1", Operation::DeleteTaskPushNotificationConfig, false, Some("abc")),
        ("GET", "/extendedAgentCard", Operation::GetExtendedAgentCard, false, None),
        ("GET", "/v1/card", Operation::GetExtendedAgentCard, true, None),
    ];
    for (method, path, op, legacy, task) in cases {
        let r = classify_rest(method, path).unwrap_or_else(|| panic!("{method} {path}"));
        assert_eq!((r.op, r.legacy, r.path_task.as_deref()), (*op, *legacy, *task), "{method} {path}");
    }
    for (method, path) in [
        ("GET", "/message:send"),
        ("POST", "/tasks/abc"),
        ("POST", "/message%3Asend"),
        ("GET", "/tasks/abc/"),
        ("GET", "/tasks//abc"),
        ("GET", "/a/b/tasks/abc"),
        ("GET", "/tasks/../tasks/abc"),
        ("PUT", "/tasks/abc"),
        ("GET", "/"),
        ("POST", "/tasks/:cancel"),
    ] {
        assert_eq!(classify_rest(method, path), None, "{method} {path}");
    }
    assert!(is_card_path("/.well-known/agent-card.json"));
    assert!(is_card_path("/.well-known/agent.json?x"));
    assert!(!is_card_path("/.well-known/agent-card.json/"));
}

#[test]
fn rest_bodies_are_read_like_params() {
    let route = classify_rest("POST", "/message:send").unwrap();
    let body = br#"{"message":{"messageId":"m","taskId":"t1","referenceTaskIds":["r1"]}}"#;
    let call = rest_call(&route, Some(body)).unwrap();
    assert_eq!((call.tasks, call.references), (vec!["t1".to_string()], vec!["r1".to_string()]));
    let route = classify_rest("POST", "/tasks/t2/pushNotificationConfigs").unwrap();
    let call = rest_call(&route, Some(br#"{"taskId":"t3","url":"https://x/"}"#)).unwrap();
    assert_eq!(call.tasks, vec!["t2", "t3"]);
    assert_eq!(call.push_urls, vec!["https://x/"]);
    // A GET carries no body; a duplicate key is refused.
    let route = classify_rest("GET", "/tasks/t2").unwrap();
    assert_eq!(rest_call(&route, Some(b"{}")).unwrap_err().reason, "invalid-request");
    assert_eq!(rest_call(&route, None).unwrap().tasks, vec!["t2"]);
    let route = classify_rest("POST", "/message:send").unwrap();
    assert_eq!(rest_call(&route, Some(br#"{"message":{"taskId":"a","taskId":"b"}}"#)).unwrap_err().reason, "malformed-json");
}

#[test]
fn push_urls_must_match_a_closed_prefix() {
    let allow = vec!["https://hooks.example.com/a2a/".to_string()];
    assert!(push_url_allowed("https://hooks.example.com/a2a/cb?x=1", &allow));
    assert!(!push_url_allowed("https://hooks.example.com.evil/a2a/", &allow));
    assert!(!push_url_allowed("https://hooks.example.com@evil/a2a/", &allow));
    assert!(!push_url_allowed("http://169.254.169.254/latest", &allow));
    assert!(!push_url_allowed("https://hooks.example.com/a2a/ x", &allow));
    assert!(!push_url_allowed("https://hooks.example.com/a2a/", &[]));
    let bad = AgentConfig { rpc_path: "/".into(), push_url_prefixes: vec!["https://hooks.example.com".into()], ..AgentConfig::default() };
    assert_eq!(bad.validate("backends[0].a2a", 0).unwrap_err().0, "backends[0].a2a.pushUrlPrefixes[0]");
}

fn agent() -> Agent {
    Agent::new(AgentConfig {
        rpc_path: "/".into(),
        policies: vec![AgentPolicy {
            name: "agents/b-grants".into(),
            rules: vec![
                AgentRule {
                    name: "a-sends".into(),
                    principals: Some(vec![0]),
                    operations: Some(vec![Operation::SendMessage, Operation::GetTask]),
                    skills: Some(vec!["summarize".into()]),
                },
                AgentRule { name: "ops-all".into(), principals: Some(vec![2]), operations: None, skills: None },
                AgentRule { name: "anyone-gets".into(), principals: None, operations: Some(vec![Operation::GetTask]), skills: Some(vec!["status".into()]) },
            ],
        }],
        ..AgentConfig::default()
    })
}

#[test]
fn grants_are_default_deny_per_operation() {
    let a = agent();
    assert!(a.decide(Some(0), Operation::SendMessage).allowed);
    assert_eq!(a.decide(Some(0), Operation::GetTask).matched, Some(("agents/b-grants", "a-sends")));
    assert!(!a.decide(Some(0), Operation::CancelTask).allowed);
    assert!(a.decide(Some(0), Operation::GetAgentCard).allowed, "any grant implies the card");
    assert!(!a.decide(Some(1), Operation::SendMessage).allowed);
    assert_eq!(a.decide(Some(1), Operation::GetTask).matched, Some(("agents/b-grants", "anyone-gets")));
    assert!(!a.decide(None, Operation::SendMessage).allowed);
    assert!(a.decide(None, Operation::GetAgentCard).allowed, "a rule open to any caller shows the card");
    assert!(a.decide(Some(2), Operation::DeleteTaskPushNotificationConfig).allowed);
    assert!(Agent::new(AgentConfig { rpc_path: "/".into(), ..AgentConfig::default() }).decide(None, Operation::CancelTask).allowed);
    assert_eq!(a.skills_for(Some(0)), SkillView(Some(vec!["summarize", "status"])));
    assert_eq!(a.skills_for(Some(2)), SkillView(None));
    assert_eq!(a.skills_for(Some(1)), SkillView(Some(vec!["status"])));
    // Only rules naming the caller (or open to all) are looked at, in policy order.
    let closed = Agent::new(AgentConfig {
        rpc_path: "/".into(),
        policies: vec![AgentPolicy {
            name: "p".into(),
            rules: vec![AgentRule { name: "r".into(), principals: Some(vec![0]), operations: None, skills: None }],
        }],
        ..AgentConfig::default()
    });
    assert!(!closed.decide(Some(1), Operation::GetAgentCard).allowed);
    assert!(!closed.decide(None, Operation::GetAgentCard).allowed);
}

fn card(signed: bool) -> Vec<u8> {
    let mut c = json!({
        "name": "B", "version": "1",
        "supportedInterfaces": [{"url": "http://127.0.0.1:9999/", "protocolBinding": "JSONRPC"},
                                {"url": "http://127.0.0.1:9999/rest", "protocolBinding": "HTTP+JSON"}],
        "skills": [{"id": "summarize", "name": "S"}, {"id": "delete-all", "name": "D"}]
    });
    if signed {
        c["signatures"] = json!([{"protected": "e30", "signature": "sig"}]);
    }
    serde_json::to_vec(&c).unwrap()
}

#[test]
fn card_keeps_granted_skills_and_rewrites_interfaces() {
    let view = SkillView(Some(vec!["summarize"]));
    let CardOutcome::Rewritten { body, kept, dropped } = filter_card(&card(false), &view, Some("https://gw.example/b/"), SignedCards::Refuse).unwrap() else {
        panic!("expected a rewrite")
    };
    assert_eq!((kept, dropped), (1, 1));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["skills"], json!([{"id": "summarize", "name": "S"}]));
    assert_eq!(v["supportedInterfaces"][0]["url"], "https://gw.example/b/");
    assert_eq!(v["supportedInterfaces"][1]["url"], "https://gw.example/b/rest");
    // Everything visible and no rewrite: unchanged (the bytes pass as they are).
    assert_eq!(filter_card(&card(false), &SkillView(None), None, SignedCards::Refuse).unwrap(), CardOutcome::Unchanged);
    // Signed: never emitted altered.
    assert_eq!(filter_card(&card(true), &view, None, SignedCards::Refuse).unwrap(), CardOutcome::SignedRefused);
    assert_eq!(filter_card(&card(true), &view, None, SignedCards::PassUnfiltered).unwrap(), CardOutcome::SignedPassed);
    assert_eq!(filter_card(&card(true), &SkillView(None), None, SignedCards::Refuse).unwrap(), CardOutcome::Unchanged);
    // A JSON-RPC extended card is filtered inside `result`; duplicates make it unreadable.
    let rpc = format!(r#"{{"jsonrpc":"2.0","id":3,"result":{}}}"#, String::from_utf8(card(false)).unwrap());
    let CardOutcome::Rewritten { body, .. } = filter_card(rpc.as_bytes(), &view, None, SignedCards::Refuse).unwrap() else { panic!() };
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["result"]["skills"].as_array().unwrap().len(), 1);
    assert!(filter_card(br#"{"skills":[],"skills":[{"id":"x"}]}"#, &view, None, SignedCards::Refuse).is_err());
}

#[test]
fn created_tasks_are_read_from_every_response_shape() {
    assert_eq!(response_task_ids(r#"{"jsonrpc":"2.0","id":1,"result":{"task":{"id":"t1","contextId":"c"}}}"#), vec!["t1"]);
    assert_eq!(response_task_ids(r#"{"jsonrpc":"2.0","id":1,"result":{"kind":"task","id":"t2"}}"#), vec!["t2"]);
    assert_eq!(response_task_ids(r#"{"jsonrpc":"2.0","id":1,"result":{"kind":"status-update","taskId":"t3"}}"#), vec!["t3"]);
    assert_eq!(response_task_ids(r#"{"statusUpdate":{"taskId":"t4","status":{}}}"#), vec!["t4"]);
    assert_eq!(response_task_ids(r#"{"message":{"messageId":"m","taskId":"t5"}}"#), vec!["t5"]);
    assert!(response_task_ids(r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"x"}}"#).is_empty());
    assert!(response_task_ids("not json").is_empty());
}

#[test]
fn denials_follow_a2a_conventions() {
    let v: Value = serde_json::from_slice(&jsonrpc_denial(Some("\"a\""), "task-foreign")).unwrap();
    assert_eq!((v["id"].as_str(), v["error"]["code"].as_i64()), (Some("a"), Some(-32001)));
    let v: Value = serde_json::from_slice(&jsonrpc_denial(Some("4"), "default-deny")).unwrap();
    assert_eq!((v["id"].as_i64(), v["error"]["code"].as_i64()), (Some(4), Some(403)));
    let (status, body) = rest_denial("default-deny");
    assert_eq!(status, 403);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["error"]["status"], "PERMISSION_DENIED");
    assert_eq!(rest_denial("task-foreign").0, 404);
}

#[test]
fn over_limit_is_429_in_either_binding() {
    let refused = grantwall_core::limits::Refused { reason: "rate-limited", rule: "limits/agents.per-caller", retry_after_secs: 7 };
    let (status, body) = grantwall_core::a2a::over_limit_denial(Binding::JsonRpc, Some("\"r1\""), &refused);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 429);
    assert_eq!((v["id"].as_str(), v["error"]["code"].as_i64()), (Some("r1"), Some(429)));
    assert_eq!(v["error"]["data"], json!({"reason": "rate-limited", "retryAfterSeconds": 7, "limit": "limits/agents.per-caller"}));
    // No id could be read (a REST call, a notification): JSON null, still well-formed.
    let (_, body) = grantwall_core::a2a::over_limit_denial(Binding::JsonRpc, None, &refused);
    assert!(serde_json::from_slice::<Value>(&body).unwrap()["id"].is_null());
    for binding in [Binding::Rest, Binding::Card] {
        let fan_out = grantwall_core::limits::Refused { reason: "fan-out-exceeded", ..refused };
        let (status, body) = grantwall_core::a2a::over_limit_denial(binding, None, &fan_out);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((status, v["error"]["code"].as_u64()), (429, Some(429)));
        assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED");
        assert_eq!(v["error"]["details"][0]["reason"], "fan-out-exceeded");
        assert!(v["error"]["message"].as_str().unwrap().contains("retry after 7 s"), "{v}");
    }
}

#[test]
fn task_lists_keep_only_the_callers_tasks() {
    let body = br#"{"jsonrpc":"2.0","id":1,"result":{"tasks":[{"id":"mine"},{"id":"theirs"}],"totalSize":2,"nextPageToken":""}}"#;
    let (out, kept, dropped) = filter_task_list(body, &mut |id| id == "mine").unwrap().unwrap();
    assert_eq!((kept, dropped), (1, 1));
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["result"]["tasks"], json!([{"id": "mine"}]));
    assert_eq!(v["result"]["totalSize"], 1);
    let (out, ..) = filter_task_list(br#"{"tasks":[{"id":"theirs"}]}"#, &mut |id| id == "mine").unwrap().unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&out).unwrap()["tasks"], json!([]));
    assert!(filter_task_list(br#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}}"#, &mut |_| true).unwrap().is_none());
    assert!(filter_task_list(br#"{"tasks":[{"id":"a","id":"b"}]}"#, &mut |_| true).is_err());
}
