//! A2A agents (backends compiled from GrantwallA2AAgent): requests are read as A2A, never as MCP.
//!
//! Request side: classify by method and path (JSON-RPC endpoint, HTTP+JSON binding, public card), hold the
//! body, judge the caller's grant for the canonical operation, the ownership of every task the request
//! names, and the push-notification URLs it registers. Anything not recognised as A2A is refused; gRPC
//! (`application/grpc`) is refused because its protobuf frames are not inspected.
//! Response side: task ids in message responses (JSON or SSE, as the events pass) are bound to the caller;
//! agent cards are filtered to the caller's skills and their interface URLs rewritten.

use super::{header_str, refusal, request_of, Captured, ExternalAsk, GrantwallHttp, Refusal, Speaks};
use crate::host;
use crate::shared;
use grantwall_core::a2a::{self, Binding, Call, CardOutcome, Operation, RestRoute};
use grantwall_core::engine::Engine;
use grantwall_core::sse::{self, SseSplitter};
use grantwall_core::respond::Reply;
use proxy_wasm::types::Action;

/// Largest response read for task ids or buffered for card filtering.
const MAX_READ_BYTES: usize = 8 * 1024 * 1024;

/// What the request side holds until the body is complete.
pub(super) enum Pending {
    /// A JSON-RPC request to the agent's endpoint.
    Rpc,
    /// An HTTP+JSON request (or a bodiless card/GET held because its headers did not end the stream).
    Rest(RestRoute),
    Card,
}

/// What the response side does for an allowed A2A request.
pub(super) enum Watch {
    /// Read created task ids (SendMessage / SendStreamingMessage) and bind them to the caller.
    Tasks { sse: bool, json: Vec<u8>, splitter: SseSplitter },
    /// Filter the agent card for the caller (JSON-RPC id when the card came as a JSON-RPC result).
    Card { id: Option<String>, active: bool },
    /// Keep only the caller's tasks in a ListTasks response.
    TaskList { id: Option<String>, active: bool },
}

/// Shared-data key of an A2A task: scoped by backend so one agent's ids cannot claim another's.
fn task_key(engine: &Engine, backend: Option<u32>, task: &str) -> String {
    let name = backend.and_then(|b| engine.backend_name(b)).unwrap_or("");
    format!("a2a/{name}/{task}")
}

impl GrantwallHttp {
    /// Headers of a request for an A2A agent with policies.
    pub(super) fn a2a_on_headers(&mut self, mut captured: Captured, headers: &host::HeaderMap, end_of_stream: bool) -> Result<Action, Refusal> {
        let engine = std::rc::Rc::clone(&self.engine);
        let Some(agent) = engine.a2a(captured.backend) else { return Ok(self.decide(&captured, None, None)) };
        let content_type = header_str(headers, "content-type")?;
        let media = content_type.as_deref().and_then(|c| c.split(';').next()).map(str::trim).unwrap_or("");
        if media.len() >= 16 && media.get(..16).is_some_and(|m| m.eq_ignore_ascii_case("application/grpc")) {
            return Err(refusal(415, -32600, "a2a-grpc-refused", "A2A over gRPC is not inspected by Grantwall: use JSON-RPC or HTTP+JSON"));
        }
        let path_only = captured.path.split(['?', '#']).next().unwrap_or("");
        let pending = if captured.method == "POST" && path_only == agent.config.rpc_path {
            Pending::Rpc
        } else if captured.method == "GET" && a2a::is_card_path(&captured.path) {
            Pending::Card
        } else {
            match a2a::classify_rest(&captured.method, &captured.path) {
                Some(route) => Pending::Rest(route),
                None => {
                    self.a2a_deny(&captured, Binding::Rest, None, None, "a2a-method-unknown", Some("not an A2A operation on this agent"));
                    return Ok(Action::Pause);
                }
            }
        };
        let has_body = match &pending {
            Pending::Rpc => true,
            Pending::Rest(r) => r.has_body,
            Pending::Card => false,
        };
        if has_body {
            if !super::is_json_media_type(content_type.as_deref().unwrap_or("")) {
                return Err(refusal(415, -32600, "unsupported-content-type", "A2A requests must be Content-Type: application/json"));
            }
            let encoding = header_str(headers, "content-encoding")?;
            if encoding.as_deref().is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity")) {
                return Err(refusal(415, -32600, "unsupported-content-encoding", "compressed request bodies are not accepted"));
            }
        }
        if end_of_stream {
            let action = match pending {
                Pending::Rpc => return Err(refusal(400, -32700, "malformed-json", "empty request body")),
                Pending::Rest(route) => match a2a::rest_call(&route, None) {
                    Ok(call) => self.a2a_decide(&captured, &call, None),
                    Err(e) => return Err(refusal(400, e.code, e.reason, &e.message)),
                },
                Pending::Card => self.a2a_decide(&captured, &card_call(), None),
            };
            if self.a2a_watch.is_some() {
                self.response_ctx = Some(captured);
            }
            return Ok(action);
        }
        captured.a2a = Some(pending);
        self.pending = Some(captured);
        Ok(Action::Pause)
    }

    /// The whole body of a held A2A request is here.
    pub(super) fn a2a_on_body(&mut self, captured: &Captured, pending: &Pending, size: usize) -> Result<Action, Refusal> {
        let limit = self.engine.settings().max_body_bytes as usize;
        if size > limit {
            return Err(refusal(413, -32600, "body-too-large", &format!("request body larger than {limit} bytes")));
        }
        let body = host::request_body(size)
            .map_err(|_| refusal(500, -32603, "internal-error", "request body unavailable"))?
            .unwrap_or_default();
        let parsed = match pending {
            Pending::Rpc => a2a::parse_jsonrpc(&body),
            Pending::Rest(route) => a2a::rest_call(route, Some(&body)),
            Pending::Card if body.is_empty() => Ok(card_call()),
            Pending::Card => return Err(refusal(400, -32600, "invalid-request", "a card request must not carry a body")),
        };
        match parsed {
            Ok(call) => Ok(self.a2a_decide(captured, &call, Some(size))),
            // Unknown methods and bad params are answered in A2A's JSON-RPC shape with the request's id.
            Err(e) if matches!(pending, Pending::Rpc) && e.code != -32700 => {
                let id = grantwall_core::jsonrpc::parse(&body).ok().and_then(|m| m.id.map(str::to_owned));
                self.a2a_deny(captured, Binding::JsonRpc, id.as_deref(), None, e.reason, Some(&e.message));
                Ok(Action::Pause)
            }
            Err(e) => Err(refusal(400, e.code, e.reason, &e.message)),
        }
    }

    /// Judge an A2A call: the Gateway level (KAN policies), the agent's grant, push URLs, task ownership;
    /// then the gateway-wide checks (`call_size`: its body, when it has one).
    fn a2a_decide(&mut self, captured: &Captured, call: &Call, call_size: Option<usize>) -> Action {
        let engine = std::rc::Rc::clone(&self.engine);
        let Some(agent) = engine.a2a(captured.backend) else { return Action::Pause };
        let request = request_of(&engine, captured);
        let Some(decision) = engine.decide_a2a(&request, call.op) else { return Action::Pause };
        let (gateway, verdict) = (decision.gateway, decision.grant);
        let refusal = if !decision.allowed {
            Some("default-deny")
        } else if call.push_urls.iter().any(|u| !a2a::push_url_allowed(u, &agent.config.push_url_prefixes)) {
            Some("push-url-refused")
        } else {
            self.a2a_task_refusal(captured, call)
        };
        if let Some(reason) = refusal {
            let detail = call.push_urls.iter().find(|u| !a2a::push_url_allowed(u, &agent.config.push_url_prefixes)).map(String::as_str);
            let detail = detail.filter(|_| reason == "push-url-refused").unwrap_or(call.protocol());
            self.a2a_deny(captured, call.binding, call.id.as_deref(), Some(call.op), reason, Some(detail));
            return Action::Pause;
        }
        let speaks = Speaks::A2a(call.binding);
        if let Some(action) = self.gateway_admission(captured, speaks, call.op.as_str(), call.id.as_deref(), None, call_size) {
            return action;
        }
        // Set up as allowed; an ExternalAuth refusal drops the watch again.
        self.a2a_watch = if call.op.creates_tasks() {
            Some(Watch::Tasks { sse: false, json: Vec::new(), splitter: SseSplitter::new() })
        } else if call.op.returns_card() {
            Some(Watch::Card { id: call.id.clone(), active: false })
        } else if call.op == Operation::ListTasks {
            Some(Watch::TaskList { id: call.id.clone(), active: false })
        } else {
            None
        };
        let mut record = self.base_record(captured, Some(call.op.as_str()), None).with_decision(&gateway);
        if let Some((policy, rule)) = verdict.matched {
            record.level = Some("backend");
            record.policy = Some(policy);
            record.rule = Some(rule);
            record.reason = "rule-matched";
        }
        record.detail = Some(call.protocol());
        let ask = ExternalAsk {
            op: None,
            id: call.id.as_deref(),
            speaks,
            protocol: vec![("a2a-operation", call.op.as_str().to_owned()), ("a2a-binding", call.protocol().to_owned())],
            backend: None,
        };
        if let Some((levels, snapshot)) = self.external_checks(captured, &request, &record, ask) {
            let step = crate::extauth::start(&engine, levels, snapshot);
            return self.extauth_resolve(step, false);
        }
        if let Some(action) = self.spend_budget(request.principal, speaks, call.id.as_deref(), Some(call.op.as_str()), None, &mut record) {
            self.a2a_watch = None;
            return action;
        }
        self.emit(&record);
        Action::Continue
    }

    /// Every task the call acts on or references must be the caller's (bound when its response passed).
    fn a2a_task_refusal(&self, captured: &Captured, call: &Call) -> Option<&'static str> {
        let caller = captured.identity.as_ref().map(|i| i.principal.as_str());
        for task in &call.tasks {
            match shared::task_refusal(&task_key(&self.engine, captured.backend, task), caller) {
                Ok(None) => {}
                Ok(Some(why)) => return Some(why),
                Err(_) => return Some("internal-error"),
            }
        }
        for task in &call.references {
            match shared::task_refusal(&task_key(&self.engine, captured.backend, task), caller) {
                Ok(None) => {}
                Ok(Some("task-foreign")) => return Some("reference-task-foreign"),
                Ok(Some(_)) => return Some("reference-task-unknown"),
                Err(_) => return Some("internal-error"),
            }
        }
        None
    }

    /// Answer a refused A2A call in its binding's shape, and record why.
    fn a2a_deny(&self, captured: &Captured, binding: Binding, id: Option<&str>, op: Option<Operation>, reason: &'static str, detail: Option<&str>) {
        let mut record = self.base_record(captured, op.map(Operation::as_str), None);
        record.decision = "deny";
        record.reason = reason;
        record.level = Some("backend");
        record.detail = detail;
        self.emit(&record);
        self.reply(&denial_reply(binding, id, reason), None);
    }

    /// Response headers of an allowed A2A request.
    pub(super) fn a2a_response_headers(&mut self) {
        let header = |name: &str| host::response_header(name).ok().flatten().and_then(|v| String::from_utf8(v).ok());
        let status = header(":status");
        let success = status.as_deref().is_some_and(|s| s.starts_with('2'));
        let content_type = header("content-type");
        let media = content_type.as_deref().and_then(|c| c.split(';').next()).map(str::trim).unwrap_or("").to_ascii_lowercase();
        match self.a2a_watch.as_mut() {
            Some(Watch::Tasks { sse, .. }) => {
                *sse = media == "text/event-stream";
                if !success || !(*sse || media == "application/json") {
                    self.a2a_watch = None;
                }
            }
            Some(Watch::Card { active, .. } | Watch::TaskList { active, .. }) => {
                if success {
                    // Filtered or replaced: the length changes, and a replaced body is JSON.
                    *active = true;
                    let _ = host::remove_response_header("content-length");
                    if media != "application/json" {
                        let _ = host::set_response_header("content-type", "application/json");
                    }
                    let _ = host::remove_response_header("content-encoding");
                    // The body differs per caller: no shared caching, and no server ETag a client could
                    // revalidate into another caller's view.
                    let _ = host::remove_response_header("etag");
                    let _ = host::set_response_header("cache-control", "private, no-store");
                } else {
                    self.a2a_watch = None;
                }
            }
            None => {}
        }
    }

    /// Response body of an allowed A2A request.
    pub(super) fn a2a_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match self.a2a_watch.as_ref() {
            Some(Watch::Tasks { .. }) => {
                self.a2a_read_tasks(body_size, end_of_stream);
                Action::Continue
            }
            Some(Watch::Card { .. }) => self.a2a_filter_card(body_size, end_of_stream),
            Some(Watch::TaskList { .. }) => self.a2a_filter_task_list(body_size, end_of_stream),
            None => Action::Continue,
        }
    }

    fn a2a_read_tasks(&mut self, body_size: usize, end_of_stream: bool) {
        let Ok(chunk) = host::response_body(body_size) else { return };
        let mut found: Vec<String> = Vec::new();
        if let Some(Watch::Tasks { sse, json, splitter }) = self.a2a_watch.as_mut() {
            if *sse {
                splitter.push(&chunk);
                while let Some(raw) = splitter.next_event() {
                    if let Ok(event) = sse::parse_event(&raw) {
                        if let Some(data) = event.data.as_deref() {
                            found.extend(a2a::response_task_ids(data));
                        }
                    }
                }
                if splitter.pending() > MAX_READ_BYTES {
                    let _ = splitter.take_rest();
                }
            } else {
                if json.len() + chunk.len() <= MAX_READ_BYTES {
                    json.extend_from_slice(&chunk);
                }
                if end_of_stream {
                    found.extend(a2a::response_task_ids(&String::from_utf8_lossy(json)));
                }
            }
        }
        if found.is_empty() {
            return;
        }
        let Some(captured) = self.response_ctx.as_ref() else { return };
        let caller = captured.identity.as_ref().map(|i| i.principal.as_str());
        for task in found {
            let key = task_key(&self.engine, captured.backend, &task);
            // First creator wins: a task already bound to someone is never re-bound by a later response.
            match shared::task_refusal(&key, caller) {
                Ok(Some("task-unknown")) => {
                    if shared::bind(shared::Table::Task, &key, caller).is_err() {
                        log::error!("grantwall: could not record an A2A task binding");
                    }
                }
                Ok(Some(_)) => {
                    let mut record = self.base_record(captured, Some("SendMessage"), Some(&task));
                    record.decision = "deny";
                    record.reason = "task-foreign";
                    record.detail = Some("a response named a task bound to another identity: not re-bound");
                    self.emit(&record);
                }
                Ok(None) | Err(_) => {}
            }
        }
    }

    fn a2a_filter_card(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(Watch::Card { id, active }) = self.a2a_watch.as_ref() else { return Action::Continue };
        if !*active {
            return Action::Continue;
        }
        if !end_of_stream {
            // Buffer the whole card (Envoy keeps it); a card larger than the limit is refused at the end.
            return Action::Pause;
        }
        let id = id.clone();
        let engine = std::rc::Rc::clone(&self.engine);
        let Some(captured) = self.response_ctx.as_ref() else { return Action::Continue };
        let Some(agent) = engine.a2a(captured.backend) else { return Action::Continue };
        let principal = engine.principal_index(captured.identity.as_ref().map(|i| i.principal.as_str()));
        let view = agent.skills_for(principal);
        let outcome = if body_size > MAX_READ_BYTES {
            Err("the card is larger than the limit".to_string())
        } else {
            match host::response_body(body_size) {
                Ok(body) => a2a::filter_card(&body, &view, agent.config.public_url.as_deref(), agent.config.signed_cards),
                Err(_) => Err("response body unavailable".to_string()),
            }
        };
        let (replacement, reason, detail): (Option<Vec<u8>>, Option<&'static str>, String) = match outcome {
            Ok(CardOutcome::Unchanged) => (None, None, String::new()),
            Ok(CardOutcome::Rewritten { body, kept, dropped }) => (Some(body), None, format!("skills kept {kept}, dropped {dropped}")),
            Ok(CardOutcome::SignedPassed) => (None, Some("card-signed-unfiltered"), "signed card passed unfiltered (configured): the caller sees every skill".into()),
            Ok(CardOutcome::SignedRefused) => (
                Some(a2a::unfilterable_body(id.as_deref(), "The agent card is signed and cannot be filtered for this caller.", "card-signed-refused")),
                Some("card-signed-refused"),
                "signed card refused: filtering would invalidate its signature".into(),
            ),
            Err(why) => (Some(a2a::unfilterable_body(id.as_deref(), "The agent card could not be read.", "card-unfilterable")), Some("card-unfilterable"), why),
        };
        if let Some(bytes) = &replacement {
            if host::set_response_body(body_size, bytes).is_err() {
                log::error!("grantwall: could not rewrite an agent card");
            }
        }
        if let Some(reason) = reason {
            let mut record = self.base_record(captured, Some("GetAgentCard"), None);
            record.decision = if reason == "card-signed-unfiltered" { "allow" } else { "deny" };
            record.reason = reason;
            record.detail = Some(&detail);
            self.emit(&record);
        } else if !detail.is_empty() {
            log::debug!("grantwall: agent card filtered: {detail}");
        }
        self.a2a_watch = None;
        Action::Continue
    }
}

impl GrantwallHttp {
    /// A ListTasks response: the agent lists every task it has; the caller sees only its own.
    fn a2a_filter_task_list(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(Watch::TaskList { id, active }) = self.a2a_watch.as_ref() else { return Action::Continue };
        if !*active {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let id = id.clone();
        let Some(captured) = self.response_ctx.as_ref() else { return Action::Continue };
        let caller = captured.identity.as_ref().map(|i| i.principal.as_str());
        let engine = std::rc::Rc::clone(&self.engine);
        let mut keep = |task: &str| matches!(shared::task_refusal(&task_key(&engine, captured.backend, task), caller), Ok(None));
        let outcome = if body_size > MAX_READ_BYTES {
            Err("the task list is larger than the limit".to_string())
        } else {
            host::response_body(body_size).map_err(|_| "response body unavailable".to_string()).and_then(|b| a2a::filter_task_list(&b, &mut keep))
        };
        let replacement = match outcome {
            Ok(None) => None,
            Ok(Some((body, kept, dropped))) => {
                log::debug!("grantwall: task list filtered: kept {kept}, dropped {dropped}");
                Some(body)
            }
            Err(why) => {
                self.audit_refusal(captured, "list-unfilterable", &why, Some("ListTasks"));
                Some(a2a::unfilterable_body(id.as_deref(), "The task list could not be filtered for this caller.", "list-unfilterable"))
            }
        };
        if let Some(bytes) = replacement {
            if host::set_response_body(body_size, &bytes).is_err() {
                log::error!("grantwall: could not rewrite a task list");
            }
        }
        self.a2a_watch = None;
        Action::Continue
    }
}

/// A refused A2A call in its binding's shape.
pub(super) fn denial_reply(binding: Binding, id: Option<&str>, reason: &str) -> Reply {
    let (status, body) = match binding {
        // A per-call denial on HTTP 200 keeps the client's connection and session usable (as for MCP).
        Binding::JsonRpc => (200, a2a::jsonrpc_denial(id, reason)),
        Binding::Rest | Binding::Card => a2a::rest_denial(reason),
    };
    Reply { status, body: String::from_utf8_lossy(&body).into_owned() }
}

fn card_call() -> Call {
    Call::new(Operation::GetAgentCard, Binding::Card, false)
}
