//! Per-request glue: capture what the engine needs from headers, hold the request until the whole body is
//! here, decide once, then forward untouched or answer locally.
//!
//! Requests whose target has no policy are not buffered at all. Everything that needs inspection is held at
//! the headers phase (`Action::Pause`, which needs `allow_on_headers_stop_iteration: true` in Envoy) so a
//! denied request never reaches the upstream.
//!
//! This file holds the MCP path and the hooks; `a2a` and `llm` the other protocols' paths; `admission` what
//! every allowed request meets afterwards (limits, budgets, ExternalAuth).

mod a2a;
mod admission;

use crate::agent;
use crate::auth::{self, Tokens};
use crate::host;
use crate::metrics::Metrics;
use crate::response::{BodyStep, ListStats, ListWatch, StreamFindings, StreamWatch};
use crate::shared;
use grantwall_core::audit::AuditRecord;
use grantwall_core::cel::Timestamp;
use grantwall_core::engine::{BackendId, Engine, Request};
use grantwall_core::identity::{self, Identity};
use grantwall_core::jsonrpc::{self, ParseError};
use grantwall_core::jwt::TokenIdentity;
use grantwall_core::listfilter::{ListItem, ListKind};
use grantwall_core::mcp::{self, McpOp, RoutingHeaders, HEADER_MISMATCH_CODE};
use grantwall_core::respond::{self, Reply};
use grantwall_core::sidechannel;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

mod llm;

pub(crate) use admission::Speaks;
use admission::ExternalAsk;

/// Filter state key (Envoy: `%FILTER_STATE(wasm.grantwall_audit:PLAIN)%`).
const AUDIT_PROPERTY: &str = "grantwall_audit";

pub struct GrantwallHttp {
    engine: Rc<Engine>,
    tokens: Rc<Tokens>,
    metrics: Rc<Metrics>,
    /// Set while the body of an inspected POST is being buffered.
    pending: Option<Captured>,
    #[cfg(feature = "trap-test")]
    trap: crate::trap::Trap,
    /// An allowed list request: its response is filtered for the same caller (response.rs).
    list: Option<ListWatch>,
    /// The request facts the response side judges list items with.
    response_ctx: Option<Captured>,
    /// An allowed `initialize`: bind the session id in its response to the caller.
    bind_session: bool,
    /// Any other allowed MCP response: URL elicitations checked, created tasks bound (response.rs).
    stream: Option<StreamWatch>,
    /// A side-channel refusal found in the body before the engine decided (tasks, sampling tool_use).
    side_refusal: Option<&'static str>,
    /// Fan-out counts this request holds while in flight; dropping it (on_log, or with the context on any
    /// other end of the stream) gives them back (limits.rs).
    lease: std::cell::Cell<Option<crate::limits::FanOutLease>>,
    /// An external authorization call in flight: the request is held until it answers (extauth.rs).
    extauth: Option<crate::extauth::Pending>,
    /// A POST to an LLM backend: model grant, budgets, usage counting (http/llm.rs).
    llm: Option<llm::LlmFlow>,
    /// An allowed A2A request: created tasks bound, or the agent card filtered (http/a2a.rs).
    a2a_watch: Option<a2a::Watch>,
}

/// Everything read at the headers phase; request headers cannot be read once the filter has continued.
struct Captured {
    method: String,
    path: String,
    authority: String,
    destination_port: Option<u16>,
    headers: Vec<(String, String)>,
    identity: Option<Identity>,
    /// The verified bearer token; its claims are CEL's `jwt.claims`.
    token: Option<Rc<TokenIdentity>>,
    backend: Option<BackendId>,
    protocol_version: Option<String>,
    mcp_method: Option<String>,
    mcp_name: Option<String>,
    /// A GET/DELETE held because its headers did not end the stream: decided as this operation only if
    /// no body byte arrives. Its body would otherwise reach the upstream uninspected under a base grant.
    bodiless: Option<McpOp<'static>>,
    /// `Mcp-Session-Id` of a request on a backend's MCP path (checked against the session's owner).
    session_id: Option<String>,
    /// An A2A request held for its body (http/a2a.rs).
    a2a: Option<a2a::Pending>,
}

/// A refusal before the engine could decide (bad input, host failure).
struct Refusal {
    status: u32,
    code: i32,
    reason: &'static str,
    message: String,
    /// For 401: the Bearer challenge.
    www_authenticate: Option<String>,
}

impl GrantwallHttp {
    pub fn new(engine: Rc<Engine>, tokens: Rc<Tokens>, metrics: Rc<Metrics>) -> Self {
        GrantwallHttp {
            engine,
            tokens,
            metrics,
            pending: None,
            #[cfg(feature = "trap-test")]
            trap: crate::trap::Trap::Never,
            list: None,
            response_ctx: None,
            bind_session: false,
            stream: None,
            side_refusal: None,
            lease: std::cell::Cell::new(None),
            extauth: None,
            llm: None,
            a2a_watch: None,
        }
    }

    fn on_headers(&mut self, end_of_stream: bool) -> Result<Action, Refusal> {
        let engine = Rc::clone(&self.engine);
        let headers = host::request_headers()
            .map_err(|_| refusal(500, -32603, "internal-error", "could not read the request headers"))?;
        let header_str = |name: &str| header_str(&headers, name);
        for name in [crate::limits::IDENTITY_HEADER, crate::limits::TOOL_HEADER, crate::limits::BACKEND_HEADER] {
            // Only the filter may set what Envoy's global rate-limit descriptors read.
            if headers.get(name).is_some() && host::remove_request_header(name).is_err() {
                return Err(refusal(500, -32603, "internal-error", "could not remove a client-sent x-grantwall header"));
            }
        }
        let method = header_str(":method")?.unwrap_or_default();
        let path = header_str(":path")?.unwrap_or_default();
        let authority = header_str(":authority")?.unwrap_or_default();
        let cluster = property_str(&["xds", "cluster_name"])?;
        let route = engine.route(cluster.as_deref(), &authority, &path);
        let backend = route.map(|r| r.backend);
        let xfcc = header_str("x-forwarded-client-cert")?;
        let trust = &engine.settings().identity.forwarded_client_cert;
        // Property reads are among the costliest host calls: skip the peer certificate when a trusted XFCC
        // header decides the caller anyway.
        let peer = if identity::peer_needed(trust, xfcc.is_some()) {
            property_str(&["connection", "uri_san_peer_certificate"])?
        } else {
            None
        };
        let identity = identity::resolve(peer.as_deref(), xfcc.as_deref(), trust)
            .map_err(|e| refusal(400, -32600, "identity-error", e.message()))?;
        let jwt = &engine.settings().identity.jwt;
        let token = match auth::authenticate(&self.tokens, jwt, backend.and_then(|b| engine.backend_name(b)), &headers) {
            Ok(token) => token,
            Err(Ok(ch)) => {
                return Err(Refusal { status: 401, code: -32001, reason: ch.reason, message: ch.message, www_authenticate: Some(ch.www_authenticate) })
            }
            Err(Err(_)) => return Err(refusal(500, -32603, "internal-error", "could not read or strip the bearer token")),
        };
        let precedence = token.as_ref().and_then(|t| jwt.providers.get(t.provider)).map(|p| p.precedence).unwrap_or_default();
        let identity = identity::with_token(peer.as_deref(), identity, token.as_ref().map(|t| t.principal.as_str()), &jwt.forwarding_peers, precedence)
            .map_err(|e| refusal(403, -32600, "identity-conflict", e.message()))?;
        let mut captured = Captured {
            method,
            path,
            authority,
            destination_port: None,
            headers: Vec::new(),
            identity,
            token,
            backend,
            protocol_version: None,
            mcp_method: None,
            mcp_name: None,
            bodiless: None,
            session_id: None,
            a2a: None,
        };

        // An ephemeral identity: its lifetime is checked first, and it is never waved through unjudged.
        let ephemeral = engine.ephemeral(captured.identity.as_ref().map(|i| i.principal.as_str()));
        if let Some(why) = ephemeral.and_then(|a| agent::expired(a, captured.token.as_deref())) {
            let challenge = auth::expired_challenge(&why);
            let r = Refusal { status: 401, code: -32001, reason: "identity-expired", message: why, www_authenticate: Some(challenge) };
            return Ok(self.refuse(Some(&captured), &r));
        }
        if captured.method == "POST" {
            if let Some(id) = engine.llm().route(cluster.as_deref(), &captured.authority) {
                let (ct, ce, cl) = (header_str("content-type")?, header_str("content-encoding")?, header_str("content-length")?);
                return Ok(self.llm_headers(captured, id, ct.as_deref(), ce.as_deref(), cl.as_deref(), end_of_stream));
            }
        }
        if !engine.has_policies(backend) && !engine.limits().applies(backend) && ephemeral.is_none() {
            self.finish_allowed(&captured, None);
            if engine.limits().publish_headers() && crate::limits::publish_headers(&subject_of(&engine, &captured, None)).is_err() {
                return Err(refusal(500, -32603, "internal-error", "could not publish the x-grantwall headers"));
            }
            return Ok(Action::Continue);
        }
        if engine.uses_ports() {
            captured.destination_port = property_u64(&["destination", "port"])?.and_then(|p| u16::try_from(p).ok());
        }
        for name in engine.header_names() {
            if let Some(value) = header_str(name)? {
                captured.headers.push((name.clone(), value));
            }
        }
        if engine.a2a(backend).is_some() {
            return self.a2a_on_headers(captured, &headers, end_of_stream);
        }

        let content_type = header_str("content-type")?;
        let is_json = content_type.as_deref().is_some_and(is_json_media_type);
        let on_mcp_path = route.is_some_and(|r| r.mcp_endpoint);
        if on_mcp_path {
            captured.session_id = header_str("mcp-session-id")?;
        }
        match captured.method.as_str() {
            "POST" if on_mcp_path || is_json => {
                if !is_json {
                    return Err(refusal(415, -32600, "unsupported-content-type", "MCP requests must be Content-Type: application/json"));
                }
                let encoding = header_str("content-encoding")?;
                if encoding.as_deref().is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity")) {
                    return Err(refusal(415, -32600, "unsupported-content-encoding", "compressed request bodies are not accepted"));
                }
                let limit = u64::from(engine.settings().max_body_bytes);
                if let Some(len) = header_str("content-length")? {
                    if len.trim().parse::<u64>().map_or(true, |n| n > limit) {
                        return Err(refusal(413, -32600, "body-too-large", &format!("request body larger than {limit} bytes")));
                    }
                }
                if end_of_stream {
                    return Err(refusal(400, -32700, "malformed-json", "empty request body"));
                }
                captured.protocol_version = header_str("mcp-protocol-version")?;
                captured.mcp_method = header_str("mcp-method")?;
                captured.mcp_name = header_str("mcp-name")?;
                self.pending = Some(captured);
                Ok(Action::Pause)
            }
            "GET" if on_mcp_path => Ok(self.bodiless(captured, McpOp::STREAM, end_of_stream)),
            "DELETE" if on_mcp_path && header_str("mcp-session-id")?.is_some() => {
                Ok(self.bodiless(captured, McpOp::SESSION_END, end_of_stream))
            }
            _ => Ok(self.decide(&captured, None, None)),
        }
    }

    /// GET (stream) and DELETE (session end) carry no body. Decide now if the headers ended the request;
    /// otherwise hold it: an empty body is decided as `op`, any body byte is refused.
    fn bodiless(&mut self, mut captured: Captured, op: McpOp<'static>, end_of_stream: bool) -> Action {
        if end_of_stream {
            let action = self.decide(&captured, Some(&op), None);
            if self.watch_server_stream(&captured, &op, action) {
                self.response_ctx = Some(captured);
            }
            return action;
        }
        captured.bodiless = Some(op);
        self.pending = Some(captured);
        Action::Pause
    }

    /// An allowed GET stream carries server requests (elicitations): watch it. True when watching.
    fn watch_server_stream(&mut self, captured: &Captured, op: &McpOp<'_>, action: Action) -> bool {
        let watch = (action == Action::Continue || self.extauth.is_some()) && op.name == McpOp::STREAM.name && captured.backend.is_some();
        if watch {
            self.stream = Some(StreamWatch::new(None));
        }
        watch
    }

    fn on_complete_body(&mut self, captured: &Captured, size: usize) -> Result<Action, Refusal> {
        if self.llm.is_some() {
            return Ok(self.llm_body(captured, size));
        }
        if let Some(pending) = captured.a2a.as_ref() {
            return self.a2a_on_body(captured, pending, size);
        }
        if let Some(op) = captured.bodiless {
            if size > 0 {
                return Err(refusal(400, -32600, "invalid-request", &format!("{} on the MCP endpoint must not carry a body", op.name)));
            }
            let action = self.decide(captured, Some(&op), None);
            self.watch_server_stream(captured, &op, action);
            return Ok(action);
        }
        let limit = self.engine.settings().max_body_bytes as usize;
        if size > limit {
            return Err(refusal(413, -32600, "body-too-large", &format!("request body larger than {limit} bytes")));
        }
        let body = host::request_body(size)
            .map_err(|_| refusal(500, -32603, "internal-error", "request body unavailable"))?
            .unwrap_or_default();
        let options = jsonrpc::Options { capture_arguments: self.engine.needs_arguments() };
        let message = jsonrpc::parse_with(&body, options).map_err(|e| parse_refusal(&e))?;
        if let Some(action) = self.over_context_budget(captured, size, message.id, message.method.as_ref()) {
            return Ok(action);
        }
        let routing = RoutingHeaders {
            protocol_version: captured.protocol_version.as_deref(),
            mcp_method: captured.mcp_method.as_deref(),
            mcp_name: captured.mcp_name.as_deref(),
        };
        if let Err(mismatch) = mcp::check_routing_headers(&message, &routing) {
            let reply = respond::error_reply(400, message.id, HEADER_MISMATCH_CODE, mismatch.message(), Some("header-mismatch"));
            self.audit_refusal(captured, "header-mismatch", mismatch.message(), Some(message.method.as_ref()));
            self.reply(&reply, None);
            return Ok(Action::Pause);
        }
        let op = McpOp::from_message(&message);
        self.side_refusal = self.side_channel_refusal(captured, &message, &body);
        let action = self.decide(captured, Some(&op), message.id);
        self.side_refusal = None;
        // Held for an external check: set up as allowed; a refusal clears it (extauth_resolve).
        if action == Action::Continue || self.extauth.is_some() {
            self.bind_session = op.name == "initialize" && captured.backend.is_some();
            // Remember the list request so its response is filtered for this caller.
            if let (Some(kind), Some(id)) = (ListKind::from_method(op.name), message.id) {
                let modern = captured.protocol_version.as_deref().is_some_and(|v| v >= mcp::HEADER_ROUTING_REVISION);
                self.list = Some(ListWatch::new(kind, id, modern));
            } else if captured.backend.is_some() {
                let task = message.id.filter(|_| message.task_augmented);
                self.stream = Some(StreamWatch::new(task.map(str::to_owned)));
            }
        }
        Ok(action)
    }

    /// Ask the engine, record the decision, and either continue or answer with the configured denial.
    fn decide(&mut self, captured: &Captured, op: Option<&McpOp<'_>>, id: Option<&str>) -> Action {
        let engine = Rc::clone(&self.engine);
        let request = Request {
            method: &captured.method,
            path: &captured.path,
            authority: &captured.authority,
            destination_port: captured.destination_port,
            headers: &captured.headers,
            principal: captured.identity.as_ref().map(|i| i.principal.as_str()),
            backend: captured.backend,
            time: if self.engine.needs_time() { now() } else { None },
            jwt_claims: captured.token.as_ref().map(|t| &t.claims),
        };
        let decision = engine.decide(&request, op);
        let cel_detail = decision.cel_detail();
        let mut record =
            self.base_record(captured, op.map(|o| o.name), op.and_then(|o| o.target)).with_decision(&decision);
        record.detail = cel_detail.as_deref();
        let mut reason = decision.reason();
        if decision.allowed {
            let refusal = self
                .pin_refusal(captured, op)
                .or_else(|| self.session_refusal(captured, op))
                .or(self.side_refusal);
            match refusal {
                None => {
                    if let Some(action) = self.enforce_limits(captured, op, id, &mut record, Speaks::Mcp) {
                        return action;
                    }
                    let ask = ExternalAsk { op, id, speaks: Speaks::Mcp, protocol: Vec::new(), backend: None };
                    if let Some((levels, snapshot)) = self.external_checks(captured, &request, &record, ask) {
                        let step = crate::extauth::start(&engine, levels, snapshot);
                        return self.extauth_resolve(step, false);
                    }
                    if let Some(action) = self.spend_budget(request.principal, Speaks::Mcp, id, op.map(|o| o.name), op.and_then(|o| o.target), &mut record) {
                        return action;
                    }
                    self.emit(&record);
                    return Action::Continue;
                }
                Some(why) => {
                    record.decision = "deny";
                    record.reason = why;
                    reason = why;
                }
            }
        }
        self.emit(&record);
        if reason == "session-unknown" {
            // 404 is what tells an MCP client to start a new session (what the server itself answers).
            let reply = respond::error_reply(404, id, -32001, "Session not found", Some(reason));
            self.reply(&reply, None);
            return Action::Pause;
        }
        let reply = respond::forbidden(
            self.engine.settings().denial,
            id,
            op.map(|o| o.name),
            op.and_then(|o| o.target),
            reason,
        );
        self.reply(&reply, None);
        Action::Pause
    }

    /// A call to a pinned tool whose listed definition changed (seen by any worker) is refused.
    fn pin_refusal(&self, captured: &Captured, op: Option<&McpOp<'_>>) -> Option<&'static str> {
        let op = op.filter(|o| o.name == "tools/call")?;
        let backend = captured.backend?;
        let tool = op.target?;
        let pinned = self.engine.tool_pin(backend, tool)?;
        let name = self.engine.backend_name(backend).unwrap_or("");
        match shared::pin_changed(name, pinned, tool) {
            Ok(false) => None,
            Ok(true) => Some("definition-changed"),
            // Cannot tell: fail closed.
            Err(_) => Some("internal-error"),
        }
    }

    /// What the body shows on the side channels: a task that is not the caller's, or a sampling response
    /// whose `tool_use` names a tool the caller could not call itself.
    fn side_channel_refusal(&self, captured: &Captured, message: &jsonrpc::Message<'_>, body: &[u8]) -> Option<&'static str> {
        let caller = captured.identity.as_ref().map(|i| i.principal.as_str());
        if message.kind == jsonrpc::MessageKind::Response {
            let names = match sidechannel::tool_use_names(body) {
                Ok(n) => n,
                Err(_) => return Some("sampling-tool-denied"),
            };
            let request = request_of(&self.engine, captured);
            let denied = names.iter().any(|name| {
                let op = McpOp { name: "tools/call", base: false, method: Some(grantwall_core::config::McpMethod::ToolsCall), target: Some(name), arguments: None };
                !self.engine.decide(&request, Some(&op)).allowed
            });
            return denied.then_some("sampling-tool-denied");
        }
        if matches!(message.method.as_ref(), "tasks/get" | "tasks/result" | "tasks/cancel") {
            let Ok(Some(task_id)) = sidechannel::task_id_param(body) else { return Some("task-unknown") };
            return shared::task_refusal(&task_id, caller).unwrap_or(Some("internal-error"));
        }
        None
    }

    /// A session is usable only by the identity that initialized it (all workers agree: shared data).
    fn session_refusal(&self, captured: &Captured, op: Option<&McpOp<'_>>) -> Option<&'static str> {
        let session_id = captured.session_id.as_deref()?;
        op.filter(|o| o.name != "initialize")?;
        captured.backend?;
        let caller = captured.identity.as_ref().map(|i| i.principal.as_str());
        shared::session_refusal(session_id, caller).unwrap_or(Some("internal-error"))
    }

    fn finish_allowed(&self, captured: &Captured, op: Option<&McpOp<'_>>) {
        let mut record = self.base_record(captured, op.map(|o| o.name), None);
        record.decision = "allow";
        record.reason = "no-policy";
        self.emit(&record);
    }

    fn base_record<'a>(&'a self, c: &'a Captured, mcp_method: Option<&'a str>, target: Option<&'a str>) -> AuditRecord<'a> {
        AuditRecord {
            identity: c.identity.as_ref().map(|i| i.principal.as_str()),
            identity_source: c.identity.as_ref().map(|i| i.source.as_str()),
            gateway: Some(self.engine.gateway_name()).filter(|g| !g.is_empty()),
            backend: c.backend.and_then(|b| self.engine.backend_name(b)),
            http_method: &c.method,
            path: &c.path,
            mcp_method,
            target,
            ..AuditRecord::default()
        }
    }

    fn audit_refusal(&self, captured: &Captured, reason: &'static str, detail: &str, mcp_method: Option<&str>) {
        let mut record = self.base_record(captured, mcp_method, None);
        record.decision = "deny";
        record.reason = reason;
        record.detail = Some(detail);
        self.emit(&record);
    }

    fn emit(&self, record: &AuditRecord<'_>) {
        self.metrics.count(record.decision == "allow", record.reason);
        let line = record.to_json();
        if self.engine.settings().audit_log {
            log::info!("grantwall audit {line}");
        }
        let _ = host::set_property(&[AUDIT_PROPERTY], line.as_bytes());
    }

    fn reply(&self, reply: &Reply, www_authenticate: Option<&str>) {
        let mut headers = vec![("content-type", "application/json"), ("cache-control", "no-store")];
        if let Some(challenge) = www_authenticate {
            headers.push(("www-authenticate", challenge));
        }
        if host::send_response(reply.status, &headers, reply.body.as_bytes()).is_err() {
            log::error!("grantwall: could not send local reply (status {})", reply.status);
        }
    }

    /// Refuse input the engine never saw; fail closed whatever happens.
    fn refuse(&self, captured: Option<&Captured>, r: &Refusal) -> Action {
        match captured {
            Some(c) => self.audit_refusal(c, r.reason, &r.message, None),
            None => {
                let record = AuditRecord { decision: "deny", reason: r.reason, detail: Some(&r.message), ..AuditRecord::default() };
                self.emit(&record);
            }
        }
        let reply = respond::error_reply(r.status, None, r.code, &r.message, Some(r.reason));
        self.reply(&reply, r.www_authenticate.as_deref());
        Action::Pause
    }
}

impl Context for GrantwallHttp {
    fn on_http_call_response(&mut self, token: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        let Some(pending) = self.extauth.take_if(|p| p.token == token) else { return };
        let engine = Rc::clone(&self.engine);
        let verdict = crate::extauth::http_verdict(&engine, &pending, body_size);
        let step = crate::extauth::answer(&engine, pending, verdict);
        self.extauth_resolve(step, true);
    }

    fn on_grpc_call_response(&mut self, token: u32, status_code: u32, response_size: usize) {
        let Some(pending) = self.extauth.take_if(|p| p.token == token) else { return };
        let engine = Rc::clone(&self.engine);
        let verdict = crate::extauth::grpc_verdict(status_code, response_size);
        let step = crate::extauth::answer(&engine, pending, verdict);
        self.extauth_resolve(step, true);
    }
}

impl HttpContext for GrantwallHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        #[cfg(feature = "trap-test")]
        {
            self.trap = crate::trap::at_headers();
        }
        match self.on_headers(end_of_stream) {
            Ok(action) => action,
            Err(r) => self.refuse(None, &r),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.extauth.is_some() {
            // Held for an external check: nothing moves until it answers.
            return Action::Pause;
        }
        let Some(captured) = self.pending.as_ref() else { return Action::Continue };
        if body_size > self.engine.settings().max_body_bytes as usize {
            let captured = self.pending.take();
            let r = refusal(413, -32600, "body-too-large", "request body larger than the configured limit");
            return self.refuse(captured.as_ref(), &r);
        }
        if !end_of_stream {
            // Keep buffering: never decide on a partial body.
            return Action::Pause;
        }
        let _ = captured;
        #[cfg(feature = "trap-test")]
        crate::trap::at_body(self.trap);
        let Some(captured) = self.pending.take() else { return Action::Continue };
        let action = match self.on_complete_body(&captured, body_size) {
            Ok(action) => action,
            Err(r) => self.refuse(Some(&captured), &r),
        };
        self.keep_for_response(captured);
        action
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if self.extauth.is_some() {
            return Action::Pause;
        }
        // With trailers the body callback never reports end of stream: the body is complete now.
        let Some(captured) = self.pending.take() else { return Action::Continue };
        let size = self.engine.settings().max_body_bytes as usize + 1;
        let action = match self.on_complete_body_from_trailers(&captured, size) {
            Ok(action) => action,
            Err(r) => self.refuse(Some(&captured), &r),
        };
        self.keep_for_response(captured);
        action
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.llm.is_some() {
            self.llm_response_headers();
            return Action::Continue;
        }
        if self.a2a_watch.is_some() {
            self.a2a_response_headers();
            return Action::Continue;
        }
        if self.bind_session {
            self.bind_new_session();
        }
        if let Some(stream) = self.stream.as_mut() {
            let header = |name: &str| host::response_header(name).ok().flatten().and_then(|v| String::from_utf8(v).ok());
            if !stream.on_headers(header(":status").as_deref(), header("content-type").as_deref()) {
                self.stream = None;
            } else if stream.is_sse() {
                // Events may be removed: the length is no longer known.
                let _ = host::remove_response_header("content-length");
            }
            return Action::Continue;
        }
        let Some(watch) = self.list.as_mut() else { return Action::Continue };
        let header = |name: &str| host::response_header(name).ok().flatten().and_then(|v| String::from_utf8(v).ok());
        watch.on_headers(header(":status").as_deref(), header("content-type").as_deref(), header("content-encoding").as_deref());
        if watch.passes_through() {
            self.list = None;
            return Action::Continue;
        }
        // The body is rewritten: its length changes (Envoy re-frames it), and a replaced body is JSON.
        let _ = host::remove_response_header("content-length");
        if watch.replaces_body() {
            let _ = host::remove_response_header("content-encoding");
            let _ = host::set_response_header("content-type", "application/json");
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.llm.is_some() {
            self.llm_response_body(body_size, end_of_stream);
            return Action::Continue;
        }
        if self.a2a_watch.is_some() {
            return self.a2a_response_body(body_size, end_of_stream);
        }
        if self.stream.is_some() {
            self.watch_stream_body(body_size, end_of_stream);
            return Action::Continue;
        }
        if self.list.is_none() {
            return Action::Continue;
        }
        self.filter_list_body(body_size, end_of_stream)
    }

    fn on_log(&mut self) {
        // The stream is over, however it ended: give back its fan-out counts, and charge an LLM stream
        // cut before its end for what passed.
        drop(self.lease.take());
        self.llm_finish();
    }
}

impl GrantwallHttp {
    fn drop_response_watches(&mut self) {
        self.list = None;
        self.stream = None;
        self.a2a_watch = None;
        self.llm = None;
        self.bind_session = false;
        self.response_ctx = None;
    }

    fn keep_for_response(&mut self, captured: Captured) {
        if self.list.is_some() || self.bind_session || self.stream.is_some() || self.llm.is_some() || self.a2a_watch.is_some() {
            self.response_ctx = Some(captured);
        }
    }

    /// An allowed MCP response: forward events as they complete, minus refused URL elicitations; bind the
    /// task a task-augmented request created to the caller.
    fn watch_stream_body(&mut self, body_size: usize, end_of_stream: bool) {
        let (Some(watch), Some(captured)) = (self.stream.as_mut(), self.response_ctx.as_ref()) else { return };
        let hosts = captured.backend.map_or(&[][..], |b| self.engine.elicitation_url_hosts(b));
        let mut found = StreamFindings::default();
        let Ok(chunk) = host::response_body(body_size) else {
            // Cannot see what passes: stop the stream's content rather than forward it unread.
            let _ = host::set_response_body(body_size, b"");
            return;
        };
        if let Some(out) = watch.on_chunk(&chunk, end_of_stream, hosts, &mut found) {
            if out != chunk && host::set_response_body(body_size, &out).is_err() {
                log::error!("grantwall: could not rewrite a response stream");
            }
        }
        let caller = captured.identity.as_ref().map(|i| i.principal.as_str());
        for task in &found.created_tasks {
            if shared::bind(shared::Table::Task, task, caller).is_err() {
                log::error!("grantwall: could not record a task binding");
            }
        }
        for url in &found.refused_urls {
            let mut record = self.base_record(captured, Some("elicitation/create"), None);
            record.decision = "deny";
            record.reason = "elicitation-url-refused";
            record.detail = Some(url);
            self.emit(&record);
        }
        if let Some(why) = &found.unreadable {
            self.audit_refusal(captured, "stream-unreadable", why, None);
        }
    }

    /// The server created a session for an allowed `initialize`: remember whose it is.
    fn bind_new_session(&mut self) {
        self.bind_session = false;
        let Ok(Some(id)) = host::response_header("mcp-session-id") else { return };
        let Ok(id) = String::from_utf8(id) else { return };
        let caller = self.response_ctx.as_ref().and_then(|c| c.identity.as_ref()).map(|i| i.principal.as_str());
        if shared::bind_session(&id, caller).is_err() {
            // Unbound, the session is unknown to every worker: its requests get 404, never someone else's.
            log::error!("grantwall: could not record a session binding");
        }
    }

    /// Filter the list response for the caller that asked (response.rs does the framing).
    fn filter_list_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let (Some(watch), Some(captured)) = (self.list.as_mut(), self.response_ctx.as_ref()) else { return Action::Continue };
        let engine = Rc::clone(&self.engine);
        let chunk = host::response_body(body_size).ok();
        let request = request_of(&engine, captured);
        let kind = watch.kind;
        let mut changed: Vec<(String, String)> = Vec::new();
        let mut judge = |item: &ListItem<'_>| judge_item(&engine, &request, kind, item, &mut changed);
        let mut stats = ListStats::default();
        let (replacement, step) = match &chunk {
            Some(bytes) => watch.on_body(bytes, end_of_stream, &mut stats, &mut judge),
            // Cannot read what we must filter: fail closed.
            None => {
                stats.unfilterable = Some("response body unavailable".into());
                (Some(grantwall_core::listfilter::unfilterable_reply(&watch.id)), BodyStep::Forward)
            }
        };
        if matches!(step, BodyStep::Buffer) {
            return Action::Pause;
        }
        if let Some(bytes) = replacement {
            if host::set_response_body(body_size, &bytes).is_err() {
                log::error!("grantwall: could not rewrite a list response body");
            }
        }
        let captured = self.response_ctx.as_ref();
        if let Some(c) = captured {
            for (tool, detail) in &changed {
                let mut record = self.base_record(c, Some("tools/list"), Some(tool));
                record.decision = "deny";
                record.reason = "definition-changed";
                record.detail = Some(detail);
                self.emit(&record);
            }
            if let Some(why) = &stats.unfilterable {
                self.audit_refusal(c, "list-unfilterable", why, Some("tools/list"));
            } else if stats.kept + stats.dropped > 0 {
                log::debug!("grantwall: list filtered: kept {}, dropped {}", stats.kept, stats.dropped);
            }
        }
        Action::Continue
    }

    fn on_complete_body_from_trailers(&mut self, captured: &Captured, max: usize) -> Result<Action, Refusal> {
        let body = host::request_body(max).map_err(|_| refusal(400, -32600, "invalid-request", "request body unavailable with trailers"))?;
        let size = body.as_ref().map_or(0, Vec::len);
        if size == 0 {
            return Err(refusal(400, -32600, "invalid-request", "request body unavailable with trailers"));
        }
        self.on_complete_body(captured, size)
    }
}

/// The host clock as a CEL timestamp; None (so `request.time` is absent and CEL rules reading it do not match)
/// if the host cannot say.
fn now() -> Option<Timestamp> {
    let nanos = host::current_time_nanos().ok()?;
    let seconds = i64::try_from(nanos / 1_000_000_000).ok()?;
    Some(Timestamp { seconds, nanos: (nanos % 1_000_000_000) as u32 })
}

fn refusal(status: u32, code: i32, reason: &'static str, message: &str) -> Refusal {
    Refusal { status, code, reason, message: message.to_owned(), www_authenticate: None }
}

fn parse_refusal(e: &ParseError) -> Refusal {
    refusal(400, e.code(), e.reason(), &e.to_string())
}

/// A request header as UTF-8; a non-UTF-8 value is refused rather than guessed at, and so is a header the
/// filter reads that appears twice: Envoy's lookup returns the first value, an upstream may act on another.
fn header_str(headers: &host::HeaderMap, name: &str) -> Result<Option<String>, Refusal> {
    if headers.count(name) > 1 {
        return Err(refusal(400, -32600, "invalid-request", &format!("header {name} appears more than once")));
    }
    match headers.get(name) {
        None => Ok(None),
        Some(bytes) => std::str::from_utf8(bytes)
            .map(|s| Some(s.to_owned()))
            .map_err(|_| refusal(400, -32600, "invalid-request", &format!("header {name} is not valid UTF-8"))),
    }
}

fn property_str(path: &[&str]) -> Result<Option<String>, Refusal> {
    match host::property(path) {
        Ok(None) => Ok(None),
        Ok(Some(bytes)) => Ok(String::from_utf8(bytes).ok()),
        Err(_) => Err(refusal(500, -32603, "internal-error", &format!("could not read property {}", path.join(".")))),
    }
}

/// Integer properties arrive as 8 little-endian bytes.
fn property_u64(path: &[&str]) -> Result<Option<u64>, Refusal> {
    match host::property(path) {
        Ok(Some(bytes)) => Ok(<[u8; 8]>::try_from(bytes.as_slice()).ok().map(u64::from_le_bytes)),
        Ok(None) | Err(_) => Ok(None),
    }
}

/// `application/json`, optionally with `charset=utf-8`; any other charset is refused.
fn is_json_media_type(value: &str) -> bool {
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return false;
    }
    parts.all(|p| match p.split_once('=') {
        Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => {
            v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        }
        _ => true,
    })
}

/// Would the caller be allowed to use this listed item? Templates: only with an unrestricted
/// `resources/read` grant (no URI a grant names can match a template). Pinned tools whose definition
/// hash differs are dropped and recorded for every worker.
fn judge_item(engine: &Engine, request: &Request<'_>, kind: ListKind, item: &ListItem<'_>, changed: &mut Vec<(String, String)>) -> bool {
    use grantwall_core::config::McpMethod;
    let (name, method, target) = match kind {
        // Tasks: only the caller's own (bound when they were created).
        ListKind::Tasks => return matches!(shared::task_refusal(item.key, request.principal), Ok(None)),
        ListKind::Tools => ("tools/call", McpMethod::ToolsCall, Some(item.key)),
        ListKind::Prompts => ("prompts/get", McpMethod::PromptsGet, Some(item.key)),
        ListKind::Resources => ("resources/read", McpMethod::ResourcesRead, Some(item.key)),
        ListKind::ResourceTemplates => ("resources/read", McpMethod::ResourcesRead, None),
    };
    // A listed tool is judged as a call whose arguments are not known yet: listed if some call could pass.
    let op = McpOp { name, base: false, method: Some(method), target, arguments: None };
    if !engine.decide_listing(request, &op).allowed {
        return false;
    }
    let (ListKind::Tools, Some(backend)) = (kind, request.backend) else { return true };
    let Some(pinned) = engine.tool_pin(backend, item.key) else { return true };
    let listed = grantwall_core::pinning::tool_hash(item.raw.get());
    let is_changed = !listed.as_deref().is_ok_and(|h| h == pinned);
    let backend_name = engine.backend_name(backend).unwrap_or("");
    if shared::record_pin(backend_name, pinned, item.key, is_changed).is_err() {
        log::error!("grantwall: could not record pin state for a tool");
    }
    if is_changed {
        let detail = match listed {
            Ok(h) => format!("pinned sha256 {pinned}, listed {h}"),
            Err(e) => format!("pinned sha256 {pinned}, listed definition unreadable: {e}"),
        };
        changed.push((item.key.to_owned(), detail));
    }
    !is_changed
}

/// What limits are keyed on: caller, backend, and the tool of a `tools/call`.
/// What limits see of a request. An ephemeral identity counts as its parent: it spends its parent's
/// allowance, so sub-agents cannot multiply a limit.
fn subject_of<'a>(engine: &'a Engine, c: &'a Captured, op: Option<&McpOp<'a>>) -> grantwall_core::limits::Subject<'a> {
    let principal = c.identity.as_ref().map(|i| i.principal.as_str());
    grantwall_core::limits::Subject {
        principal: engine.ephemeral(principal).map_or(principal, |e| Some(e.parent.as_str())),
        backend: c.backend,
        backend_name: c.backend.and_then(|b| engine.backend_name(b)),
        tool: op.filter(|o| o.name == "tools/call").and_then(|o| o.target),
    }
}

/// The engine's view of a captured request.
fn request_of<'a>(engine: &Engine, c: &'a Captured) -> Request<'a> {
    Request {
        method: &c.method,
        path: &c.path,
        authority: &c.authority,
        destination_port: c.destination_port,
        headers: &c.headers,
        principal: c.identity.as_ref().map(|i| i.principal.as_str()),
        backend: c.backend,
        time: if engine.needs_time() { now() } else { None },
        // A listing is filtered for the same caller, token claims included.
        jwt_claims: c.token.as_ref().map(|t| &t.claims),
    }
}
