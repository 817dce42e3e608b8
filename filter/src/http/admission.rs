//! After a request's own grant allowed it — MCP, A2A or LLM alike — the checks that apply to all traffic
//! through the gateway: the context budget, an ephemeral identity's request budget, rate limits and fan-out
//! caps (limits.rs), then ExternalAuth (extauth.rs), whose call-out holds the request until it answers.
//! Each refusal is answered in the shape of the protocol the request spoke.

use super::{a2a, subject_of, Captured, GrantwallHttp};
use crate::host;
use grantwall_core::audit::AuditRecord;
use grantwall_core::engine::Request;
use grantwall_core::mcp::McpOp;
use grantwall_core::respond::{self, Reply};
use proxy_wasm::types::Action;

/// The protocol a request spoke. A refusal by a gateway-wide check (rate limit, fan-out cap, ephemeral
/// budget, ExternalAuth) is answered in its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Speaks {
    Mcp,
    A2a(grantwall_core::a2a::Binding),
    Llm(grantwall_core::llm::Api),
}

/// What an external check is told about a request beyond its HTTP parts.
pub(super) struct ExternalAsk<'a> {
    pub(super) op: Option<&'a McpOp<'a>>,
    /// Raw JSON-RPC id.
    pub(super) id: Option<&'a str>,
    pub(super) speaks: Speaks,
    /// A2A and LLM context (`CheckInput::protocol`).
    pub(super) protocol: Vec<(&'static str, String)>,
    /// The backend to name when it is not an XBackend or A2A agent (an LLM upstream).
    pub(super) backend: Option<&'a str>,
}

impl GrantwallHttp {
    /// Rate limits and fan-out caps of an allowed request (limits.rs), and the headers published for
    /// Envoy's global rate limiting. Some(action) when the request is refused (reply sent, audit written).
    pub(super) fn enforce_limits<'a>(&'a self, c: &'a Captured, op: Option<&McpOp<'_>>, id: Option<&str>, record: &mut AuditRecord<'a>, speaks: Speaks) -> Option<Action> {
        let limits = self.engine.limits();
        if !limits.publish_headers() && !limits.applies(c.backend) {
            return None;
        }
        let subject = subject_of(&self.engine, c, op);
        let outcome = match crate::limits::admit(limits, &subject) {
            Ok(Ok(lease)) if !limits.publish_headers() || crate::limits::publish_headers(&subject).is_ok() => {
                self.lease.set(lease);
                return None;
            }
            Ok(Ok(_)) => Err("could not publish the x-grantwall headers"),
            Ok(Err(refused)) => Ok(refused),
            Err(_) => Err("could not read or update the shared rate-limit state"),
        };
        record.decision = "deny";
        let (reply, retry_after) = match outcome {
            Ok(refused) => {
                record.reason = refused.reason;
                record.detail = Some(refused.rule);
                let reply = match speaks {
                    Speaks::Mcp => {
                        let tool = op.filter(|o| o.name == "tools/call").and_then(|o| o.target);
                        let style = self.engine.settings().denial;
                        grantwall_core::limits::over_limit_reply(style, id, op.map(|o| o.name), tool, &refused)
                    }
                    Speaks::A2a(binding) => {
                        let (status, body) = grantwall_core::a2a::over_limit_denial(binding, id, &refused);
                        Reply { status, body: String::from_utf8_lossy(&body).into_owned() }
                    }
                    Speaks::Llm(api) => {
                        let refusal = grantwall_core::llm::reply::Refusal::RateLimited;
                        let why = format!("{} (limit {}); retry after {} s", refused.reason, refused.rule, refused.retry_after_secs);
                        Reply { status: refusal.status(), body: grantwall_core::llm::reply::error_body(Some(api), refusal, &why) }
                    }
                };
                (reply, Some(refused.retry_after_secs.to_string()))
            }
            Err(why) => {
                // Cannot tell whether the caller is within its limits: fail closed.
                record.reason = "internal-error";
                record.detail = Some(why);
                (respond::error_reply(500, id, -32603, why, Some("internal-error")), None)
            }
        };
        self.emit(record);
        let mut headers = vec![("content-type", "application/json"), ("cache-control", "no-store")];
        if let Some(secs) = retry_after.as_deref() {
            headers.push(("retry-after", secs));
        }
        if host::send_response(reply.status, &headers, reply.body.as_bytes()).is_err() {
            log::error!("grantwall: could not send local reply (status {})", reply.status);
        }
        Some(Action::Pause)
    }

    /// An allowed A2A or LLM request meets the checks that apply to all traffic through the gateway, as
    /// MCP requests do: the context budget (`size`: the body, when there is one), then rate limits and
    /// fan-out caps (which set the stream's fan-out lease). Some(action): refused, reply sent and audited.
    /// ExternalAuth is asked after this (`external_checks`), once the caller has set up its response watch;
    /// an ephemeral identity's budget is spent last (`spend_budget`).
    pub(super) fn gateway_admission(&self, c: &Captured, speaks: Speaks, op_label: &str, id: Option<&str>, model: Option<&str>, size: Option<usize>) -> Option<Action> {
        let subject = subject_of(&self.engine, c, None);
        let over = size.and_then(|size| {
            let (limit, rule) = self.engine.limits().context_budget(&subject)?;
            (size > limit as usize).then_some((size, limit, rule))
        });
        if let Some((size, limit, rule)) = over {
            let mut record = self.base_record(c, Some(op_label), None);
            record.decision = "deny";
            record.reason = "context-budget-exceeded";
            record.detail = Some(rule);
            record.model = model;
            self.emit(&record);
            let message = format!("request body of {size} bytes exceeds the context budget of {limit} bytes");
            let reply = match speaks {
                Speaks::Mcp | Speaks::A2a(grantwall_core::a2a::Binding::JsonRpc) => grantwall_core::limits::over_budget_reply(id, size, limit, rule),
                Speaks::A2a(_) => {
                    let body = grantwall_core::a2a::rest_error_body(413, "INVALID_ARGUMENT", &message, "context-budget-exceeded");
                    Reply { status: 413, body: String::from_utf8_lossy(&body).into_owned() }
                }
                Speaks::Llm(api) => {
                    Reply { status: 413, body: grantwall_core::llm::reply::error_body(Some(api), grantwall_core::llm::reply::Refusal::InvalidBody, &message) }
                }
            };
            self.reply(&reply, None);
            return Some(Action::Pause);
        }
        let mut record = self.base_record(c, Some(op_label), None);
        record.model = model;
        self.enforce_limits(c, None, id, &mut record, speaks)
    }

    /// An ephemeral identity's request budget is spent last, only by a request about to be forwarded: one
    /// refused by a grant, a limit or ExternalAuth costs nothing. Some(action): refused — `record`, the
    /// request's decision record, becomes the denial (emitted) and the reply is sent in the request's shape.
    pub(super) fn spend_budget(&self, principal: Option<&str>, speaks: Speaks, id: Option<&str>, op_name: Option<&str>, target: Option<&str>, record: &mut AuditRecord<'_>) -> Option<Action> {
        let why = self.engine.ephemeral(principal).and_then(crate::agent::budget_refusal)?;
        record.decision = "deny";
        record.reason = why;
        self.emit(record);
        let reply = match speaks {
            Speaks::Mcp => respond::forbidden(self.engine.settings().denial, id, op_name, target, why),
            Speaks::A2a(binding) => a2a::denial_reply(binding, id, why),
            // LLM APIs are refused to ephemeral identities before this (http/llm.rs); fail closed all the same.
            Speaks::Llm(api) => {
                let refusal = grantwall_core::llm::reply::Refusal::IdentityExhausted;
                Reply { status: refusal.status(), body: grantwall_core::llm::reply::error_body(Some(api), refusal, why) }
            }
        };
        self.reply(&reply, None);
        Some(Action::Pause)
    }

    /// A request body larger than the caller's context budget: 413 with a JSON-RPC error.
    pub(super) fn over_context_budget(&self, c: &Captured, size: usize, id: Option<&str>, method: &str) -> Option<Action> {
        let subject = subject_of(&self.engine, c, None);
        let (budget, rule) = self.engine.limits().context_budget(&subject)?;
        if size <= budget as usize {
            return None;
        }
        let mut record = self.base_record(c, Some(method), None);
        record.decision = "deny";
        record.reason = "context-budget-exceeded";
        record.detail = Some(rule);
        self.emit(&record);
        let reply = grantwall_core::limits::over_budget_reply(id, size, budget, rule);
        self.reply(&reply, None);
        Some(Action::Pause)
    }

    /// The ExternalAuth levels that select this allowed request (none: forward it now), with what their
    /// checks need from it, owned: the request outlives this callback.
    pub(super) fn external_checks(&self, c: &Captured, request: &Request<'_>, record: &AuditRecord<'_>, ask: ExternalAsk<'_>) -> Option<([Option<u32>; 2], crate::extauth::Snapshot)> {
        let engine = &self.engine;
        let levels = engine.external_checks(request, ask.op);
        if levels.iter().all(Option::is_none) {
            return None;
        }
        let wants_body = levels.iter().flatten().filter_map(|l| engine.external_level(*l)).any(|ea| ea.forward_body_max_bytes.is_some());
        Some((levels, self.extauth_snapshot(c, ask, record, wants_body)))
    }

    fn extauth_snapshot(&self, c: &Captured, ask: ExternalAsk<'_>, record: &AuditRecord<'_>, wants_body: bool) -> crate::extauth::Snapshot {
        let ExternalAsk { op, id, speaks, protocol, backend } = ask;
        let (op_name, op_target, op_arguments, op_method, op_base) = crate::extauth::Snapshot::from_op(op);
        // Only with forwardBody, and only a body-phase decision has a body (at the headers phase there is
        // none): MCP requests with an operation, A2A and LLM POSTs (always decided on their body).
        let body_phase = op.is_some() || speaks != Speaks::Mcp;
        let body = if wants_body && body_phase && c.method == "POST" {
            host::request_body(self.engine.settings().max_body_bytes as usize).ok().flatten().unwrap_or_default()
        } else {
            Vec::new()
        };
        crate::extauth::Snapshot {
            method: c.method.clone(),
            path: c.path.clone(),
            authority: c.authority.clone(),
            headers: c.headers.clone(),
            body,
            principal: c.identity.as_ref().map(|i| i.principal.clone()),
            backend: backend.or_else(|| c.backend.and_then(|b| self.engine.backend_name(b))).map(str::to_owned),
            op_name,
            op_target,
            op_arguments,
            op_method,
            op_base,
            id: id.map(str::to_owned),
            protocol,
            speaks,
            model: record.model.map(str::to_owned),
            identity_source: c.identity.as_ref().map(|i| i.source.as_str()),
            allow_level: record.level,
            allow_policy: record.policy.map(str::to_owned),
            allow_rule: record.rule.map(str::to_owned),
        }
    }

    /// Act on where the call-out stands. `resumed`: we are in the host's answer callback, so an allowed
    /// request must be resumed explicitly (in a request callback, returning Continue does it).
    pub(super) fn extauth_resolve(&mut self, step: crate::extauth::Step, resumed: bool) -> Action {
        use crate::extauth::Step;
        match step {
            Step::Asked(pending) => {
                self.extauth = Some(pending);
                Action::Pause
            }
            Step::Allowed(pending) => {
                let s = &pending.snapshot;
                let (reason, detail) = match &pending.failed_open {
                    Some(why) => ("extauth-fail-open", Some(why.as_str())),
                    None if pending.cached => ("extauth-allowed", Some("from the decision cache")),
                    None => ("extauth-allowed", None),
                };
                let mut record = self.snapshot_record(s, "allow", reason, detail);
                record.level = s.allow_level;
                record.policy = s.allow_policy.as_deref();
                record.rule = s.allow_rule.as_deref();
                let op_name = record.mcp_method;
                if let Some(action) = self.spend_budget(s.principal.as_deref(), s.speaks, s.id.as_deref(), op_name, s.op_target.as_deref(), &mut record) {
                    self.drop_response_watches();
                    return action;
                }
                self.emit(&record);
                if !resumed {
                    return Action::Continue;
                }
                if crate::extauth::apply_and_resume(&pending.merged).is_err() {
                    let record = self.snapshot_record(s, "deny", "internal-error", Some("could not apply the authorization service's headers"));
                    self.emit(&record);
                    self.drop_response_watches();
                    self.reply(&respond::error_reply(500, None, -32603, "internal error", Some("internal-error")), None);
                }
                Action::Continue
            }
            Step::Refused { reason, policy, detail, snapshot } => {
                let s = &snapshot;
                let mut record = self.snapshot_record(s, "deny", reason, Some(&detail));
                record.policy = Some(&policy);
                self.emit(&record);
                self.drop_response_watches();
                // The client learns the service's reason for a denial, not the details of a failure.
                let why = match reason {
                    "extauth-denied" if !detail.is_empty() => format!("{reason}: {detail}"),
                    _ => reason.to_owned(),
                };
                let reply = match s.speaks {
                    Speaks::Mcp => respond::forbidden(self.engine.settings().denial, s.id.as_deref(), s.op_name.as_deref(), s.op_target.as_deref(), &why),
                    Speaks::A2a(binding) => a2a::denial_reply(binding, s.id.as_deref(), &why),
                    Speaks::Llm(api) => {
                        let refusal = grantwall_core::llm::reply::Refusal::Forbidden;
                        Reply { status: refusal.status(), body: grantwall_core::llm::reply::error_body(Some(api), refusal, &why) }
                    }
                };
                self.reply(&reply, None);
                Action::Pause
            }
        }
    }

    fn snapshot_record<'a>(&'a self, s: &'a crate::extauth::Snapshot, decision: &'static str, reason: &'static str, detail: Option<&'a str>) -> AuditRecord<'a> {
        AuditRecord {
            decision,
            reason,
            identity: s.principal.as_deref(),
            identity_source: s.identity_source,
            gateway: Some(self.engine.gateway_name()).filter(|g| !g.is_empty()),
            backend: s.backend.as_deref(),
            model: s.model.as_deref(),
            http_method: &s.method,
            path: &s.path,
            // A2A and LLM requests: their operation or API.
            mcp_method: s.op_name.as_deref().or_else(|| s.protocol.iter().find(|(k, _)| matches!(*k, "a2a-operation" | "llm-api")).map(|(_, v)| v.as_str())),
            target: s.op_target.as_deref(),
            detail,
            ..AuditRecord::default()
        }
    }
}
