//! LLM traffic glue (core/src/llm/ decides): a POST to an LLM backend is held until its body is complete,
//! then its model is checked against the caller's grants and its budgets against the shared counters; an
//! allowed request may be rewritten (usage opt-in for streams, output-token cap) before it goes upstream.
//! The response is read as it passes (JSON buffered as a bounded copy, SSE event by event) for the usage it
//! reports, which is charged to every budget that applies when the response ends (or the stream is cut).
//!
//! Counters live in Proxy-Wasm shared data under `grantwall/llm/`, one key per (policy, budget, caller key),
//! valued `"<window start> <tokens>"` and updated with CAS: every worker of the Envoy instance agrees, and
//! the counters outlive a config update (shared data belongs to the VM, not to a root context).

use super::{is_json_media_type, Captured, ExternalAsk, GrantwallHttp, Speaks};
use crate::host::{self, CasWrite, HostError};
use grantwall_core::engine::Request;
use grantwall_core::llm::policy::{LlmBackendId, ModelDecision};
use grantwall_core::llm::reply::{self, error_body, Refusal};
use grantwall_core::llm::usage::{self, Usage};
use grantwall_core::llm::{request, window, Api};
use grantwall_core::sse::{self, SseSplitter};
use proxy_wasm::types::Action;

const BUDGET_PREFIX: &str = "grantwall/llm/budget/";
/// Largest JSON response (or single SSE event) kept to read its usage; beyond it usage is estimated.
const MAX_USAGE_JSON_BYTES: usize = 8 * 1024 * 1024;
/// When a capping policy adds an output limit to a request that had none, it does so only below this many
/// tokens: a larger value could exceed what a model accepts and turn a fine request into an upstream 400.
const CAP_ADD_THRESHOLD: u64 = 16_384;

/// One LLM request's state, from its headers to the end of its response.
pub struct LlmFlow {
    backend: LlmBackendId,
    api: Api,
    model: String,
    /// (counter key, window length) of every budget this request is charged to.
    budgets: Vec<(String, u64)>,
    request_bytes: usize,
    /// Grantwall asked for usage on a stream the client did not: remove the usage-only chunk.
    strip_usage_chunk: bool,
    /// The request went upstream: its response is counted.
    forwarded: bool,
    counting: bool,
    sse: bool,
    splitter: SseSplitter,
    json: Vec<u8>,
    json_too_large: bool,
    usage: Usage,
    usage_unreadable: Option<String>,
    response_bytes: usize,
    charged: bool,
}

impl LlmFlow {
    fn new(backend: LlmBackendId, api: Api) -> Self {
        LlmFlow {
            backend,
            api,
            model: String::new(),
            budgets: Vec::new(),
            request_bytes: 0,
            strip_usage_chunk: false,
            forwarded: false,
            counting: false,
            sse: false,
            splitter: SseSplitter::new(),
            json: Vec::new(),
            json_too_large: false,
            usage: Usage::default(),
            usage_unreadable: None,
            response_bytes: 0,
            charged: false,
        }
    }
}

fn budget_key(key: &str) -> String {
    format!("{BUDGET_PREFIX}{key}")
}

/// Tokens used in the current window of a budget counter.
fn used(key: &str, now: u64, window_seconds: u64) -> Result<u64, HostError> {
    let stored = host::shared_data(&budget_key(key))?;
    Ok(window::used(stored.as_ref().map(|(v, _)| v.as_slice()), now, window_seconds))
}

/// Add tokens to a budget counter (CAS; a conflict re-reads and retries).
fn charge(key: &str, now: u64, window_seconds: u64, tokens: u64) -> Result<(), HostError> {
    let key = budget_key(key);
    for _ in 0..8 {
        let stored = host::shared_data(&key)?;
        let cas = stored.as_ref().map_or(0, |(_, cas)| *cas);
        let value = window::charge(stored.as_ref().map(|(v, _)| v.as_slice()), now, window_seconds, tokens);
        if host::set_shared_data(&key, &value, cas)? == CasWrite::Written {
            return Ok(());
        }
    }
    Err(HostError(host::STATUS_CAS_RETRIES))
}

impl GrantwallHttp {
    /// Headers of a POST routed to an LLM backend (other methods — model lists, retrieving a stored
    /// response — carry no model and go on to the regular checks).
    pub(super) fn llm_headers(
        &mut self,
        captured: Captured,
        backend: LlmBackendId,
        content_type: Option<&str>,
        encoding: Option<&str>,
        content_length: Option<&str>,
        end_of_stream: bool,
    ) -> Action {
        let Some(api) = Api::from_path(&captured.path) else {
            return self.llm_refuse(&captured, None, None, Refusal::UnsupportedEndpoint, reply::UNSUPPORTED_ENDPOINT, None);
        };
        let bad = if !content_type.is_some_and(is_json_media_type) {
            Some("LLM requests must be Content-Type: application/json")
        } else if encoding.is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity")) {
            Some("compressed request bodies are not accepted")
        } else if end_of_stream {
            Some("empty request body")
        } else {
            None
        };
        let limit = u64::from(self.engine.settings().max_body_bytes);
        let bad = bad.or_else(|| {
            content_length
                .is_some_and(|len| len.trim().parse::<u64>().map_or(true, |n| n > limit))
                .then_some("request body larger than the configured limit")
        });
        if let Some(why) = bad {
            return self.llm_refuse(&captured, Some(api), None, Refusal::InvalidBody, why, None);
        }
        // The body may be rewritten (usage opt-in, token cap): its length is not known yet. And the usage must
        // be readable in the response: ask the upstream for an uncompressed one.
        if host::remove_request_header("content-length").is_err() || host::remove_request_header("accept-encoding").is_err() {
            return self.llm_refuse(&captured, Some(api), None, Refusal::Internal, "could not prepare the request", None);
        }
        self.llm = Some(LlmFlow::new(backend, api));
        self.pending = Some(captured);
        Action::Pause
    }

    /// The complete body of an LLM request: decide, maybe rewrite, forward or answer.
    pub(super) fn llm_body(&mut self, captured: &Captured, size: usize) -> Action {
        let Some(flow) = self.llm.as_ref() else { return Action::Continue };
        let (backend, api) = (flow.backend, flow.api);
        let limit = self.engine.settings().max_body_bytes as usize;
        if size > limit {
            return self.llm_refuse(captured, Some(api), None, Refusal::InvalidBody, "request body larger than the configured limit", None);
        }
        let body = match host::request_body(size) {
            Ok(b) => b.unwrap_or_default(),
            Err(_) => return self.llm_refuse(captured, Some(api), None, Refusal::Internal, "request body unavailable", None),
        };
        let parsed = match request::parse(api, &body) {
            Ok(p) => p,
            Err(e) => return self.llm_refuse(captured, Some(api), None, Refusal::InvalidBody, &e.0, None),
        };
        let engine = std::rc::Rc::clone(&self.engine);
        let principal = captured.identity.as_ref().map(|i| i.principal.as_str());
        // Gateway-level XAccessPolicies apply to all traffic through the gateway, LLM requests included.
        let gateway_request = Request { backend: None, ..super::request_of(&engine, captured) };
        if engine.ephemeral(principal).is_some() {
            return self.llm_refuse(captured, Some(api), Some(&parsed.model), Refusal::Forbidden, reply::EPHEMERAL_REFUSED, None);
        }
        if !engine.decide(&gateway_request, None).allowed {
            return self.llm_refuse(captured, Some(api), Some(&parsed.model), Refusal::Forbidden, reply::GATEWAY_REFUSED, None);
        }
        let llm = engine.llm();
        let decision = llm.decide_model(backend, principal, &parsed.model);
        if !decision.allowed() {
            let why = reply::model_denied(&parsed.model, principal, llm.backend_name(backend));
            return self.llm_refuse(captured, Some(api), Some(&parsed.model), Refusal::ModelDenied, &why, None);
        }
        let budgets = llm.budgets(backend, principal);
        let now = match host::now_secs() {
            Ok(n) => n,
            Err(_) => return self.llm_refuse(captured, Some(api), Some(&parsed.model), Refusal::Internal, "no clock", None),
        };
        let mut cap: Option<u64> = None;
        let mut spent: Option<(String, u64)> = None;
        for b in &budgets {
            let Ok(used) = used(&b.key, now, b.window_seconds) else {
                return self.llm_refuse(captured, Some(api), Some(&parsed.model), Refusal::Internal, "budget state unavailable", None);
            };
            let left = window::remaining(b.tokens, used);
            if left == 0 {
                let reset = window::seconds_to_reset(now, b.window_seconds);
                if spent.as_ref().is_none_or(|(_, r)| reset > *r) {
                    spent = Some((format!("token budget {} of {} is spent ({used} of {} tokens in this window); it resets in {reset} s", b.budget, b.policy, b.tokens), reset));
                }
            } else if b.cap_max_tokens {
                cap = Some(cap.map_or(left, |c| c.min(left)));
            }
        }
        if let Some((why, reset)) = spent {
            return self.llm_refuse(captured, Some(api), Some(&parsed.model), Refusal::BudgetExhausted, &why, Some(reset));
        }
        // What applies to all traffic through the gateway: context budget, rate limits, fan-out caps.
        if let Some(action) = self.gateway_admission(captured, Speaks::Llm(api), api.as_str(), None, Some(&parsed.model), Some(size)) {
            self.llm = None;
            return action;
        }

        // Rewrites: the output cap, then the usage opt-in for streams.
        let mut edits: Vec<(&str, String)> = Vec::new();
        if let Some(cap) = cap {
            for (field, value) in &parsed.max_tokens {
                if *value > cap {
                    edits.push((field, cap.to_string()));
                }
            }
            if parsed.max_tokens.is_empty() && cap < CAP_ADD_THRESHOLD {
                if let Some(field) = api.max_tokens_field() {
                    edits.push((field, cap.to_string()));
                }
            }
        }
        let opt_in = api.usage_needs_opt_in() && parsed.stream && parsed.include_usage != Some(true);
        let model = parsed.model.clone().into_owned();
        let capped = !edits.is_empty();
        drop(parsed);
        let mut new_body: Option<String> = None;
        if capped || opt_in {
            let text = String::from_utf8_lossy(&body);
            let step1 = if capped { request::set_members(&text, &edits) } else { Ok(text.into_owned()) };
            let step2 = match step1 {
                Ok(b) if opt_in => request::with_usage_opt_in(&b),
                other => other,
            };
            match step2 {
                Ok(b) => new_body = Some(b),
                Err(e) => return self.llm_refuse(captured, Some(api), Some(&model), Refusal::Internal, &e.0, None),
            }
        }
        if let Some(b) = &new_body {
            if host::set_request_body(size, b.as_bytes()).is_err() {
                return self.llm_refuse(captured, Some(api), Some(&model), Refusal::Internal, "could not rewrite the request body", None);
            }
        }
        let mut record = self.base_record(captured, Some(api.as_str()), None);
        record.decision = "allow";
        match decision {
            ModelDecision::Granted { policy, rule } => {
                record.reason = "rule-matched";
                record.policy = Some(policy);
                record.rule = Some(rule);
            }
            _ => record.reason = "no-policy",
        }
        record.level = Some("backend");
        record.backend = Some(llm.backend_name(backend));
        record.model = Some(&model);
        let detail = capped.then(|| format!("output tokens capped to {}", cap.unwrap_or(0)));
        record.detail = detail.as_deref();
        let ask = ExternalAsk {
            op: None,
            id: None,
            speaks: Speaks::Llm(api),
            protocol: vec![("llm-api", api.as_str().to_owned()), ("llm-model", model.clone())],
            backend: Some(llm.backend_name(backend)),
        };
        let external = self.external_checks(captured, &gateway_request, &record, ask);
        if external.is_none() {
            self.emit(&record);
        }
        // Set up as forwarded; an ExternalAuth refusal drops the flow again (nothing is charged).
        let budget_keys: Vec<(String, u64)> = budgets.iter().map(|b| (b.key.clone(), b.window_seconds)).collect();
        if let Some(flow) = self.llm.as_mut() {
            flow.model = model;
            flow.budgets = budget_keys;
            flow.request_bytes = new_body.as_ref().map_or(size, String::len);
            flow.strip_usage_chunk = opt_in;
            flow.forwarded = true;
        }
        if let Some((levels, snapshot)) = external {
            let step = crate::extauth::start(&engine, levels, snapshot);
            return self.extauth_resolve(step, false);
        }
        Action::Continue
    }

    /// Response headers: count 2xx JSON and SSE responses; a stream that may lose a chunk loses its length.
    pub(super) fn llm_response_headers(&mut self) {
        let Some(flow) = self.llm.as_mut().filter(|f| f.forwarded) else { return };
        let header = |name: &str| host::response_header(name).ok().flatten().and_then(|v| String::from_utf8(v).ok());
        let success = header(":status").is_some_and(|s| s.starts_with('2'));
        let media = header("content-type").unwrap_or_default();
        let media = media.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        flow.counting = success;
        flow.sse = media == "text/event-stream";
        if header("content-encoding").is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity")) {
            // Compressed anyway: usage cannot be read, so the response is charged an estimate.
            flow.usage_unreadable = Some("the response is compressed".into());
            flow.strip_usage_chunk = false;
            flow.sse = false;
            flow.json_too_large = true;
        }
        if success && flow.sse && flow.strip_usage_chunk {
            let _ = host::remove_response_header("content-length");
        }
    }

    /// One response body chunk: read usage as it passes; remove the usage chunk the client did not ask for.
    pub(super) fn llm_response_body(&mut self, body_size: usize, end_of_stream: bool) {
        let Some(flow) = self.llm.as_mut().filter(|f| f.counting && !f.charged) else { return };
        let chunk = match host::response_body(body_size) {
            Ok(c) => c,
            Err(_) => {
                flow.usage_unreadable = Some("response body unavailable".into());
                Vec::new()
            }
        };
        flow.response_bytes = flow.response_bytes.saturating_add(chunk.len());
        if flow.sse {
            flow.splitter.push(&chunk);
            let mut out = Vec::with_capacity(chunk.len());
            while let Some(raw) = flow.splitter.next_event() {
                on_event(flow, &raw, &mut out);
            }
            if end_of_stream {
                let rest = flow.splitter.take_rest();
                if !rest.is_empty() {
                    on_event(flow, &rest, &mut out);
                }
            } else if flow.splitter.pending() > MAX_USAGE_JSON_BYTES {
                // One event this large is no usage report: pass it on unread rather than hold it.
                out.extend_from_slice(&flow.splitter.take_rest());
                flow.usage_unreadable = Some("an SSE event larger than the limit".into());
            }
            if flow.strip_usage_chunk && out != chunk && host::set_response_body(body_size, &out).is_err() {
                log::error!("grantwall: could not rewrite an LLM response stream");
            }
        } else if !flow.json_too_large {
            if flow.json.len() + chunk.len() > MAX_USAGE_JSON_BYTES {
                flow.json_too_large = true;
                flow.json = Vec::new();
            } else {
                flow.json.extend_from_slice(&chunk);
            }
        }
        if end_of_stream {
            if !flow.sse && !flow.json_too_large {
                let text = String::from_utf8_lossy(&flow.json);
                match usage::from_json(&text) {
                    Ok(Some(u)) => flow.usage.merge(u),
                    Ok(None) => {}
                    Err(e) => flow.usage_unreadable = Some(e),
                }
            }
            self.llm_finish();
        }
    }

    /// Charge what the response used to every budget (once): at its end, or when the stream is cut.
    pub(super) fn llm_finish(&mut self) {
        let Some(flow) = self.llm.as_mut().filter(|f| f.counting && !f.charged) else { return };
        flow.charged = true;
        let reported = flow.usage.tokens().filter(|_| flow.usage_unreadable.is_none());
        let tokens = reported.unwrap_or_else(|| usage::estimate(flow.request_bytes, flow.response_bytes));
        let now = host::now_secs().unwrap_or(0);
        let mut failed = false;
        for (key, window_seconds) in &flow.budgets {
            if charge(key, now, *window_seconds, tokens).is_err() {
                failed = true;
            }
        }
        if failed {
            log::error!("grantwall: could not charge an LLM token budget");
        }
        let (usage, unreadable, model, api) = (flow.usage, flow.usage_unreadable.clone(), flow.model.clone(), flow.api);
        let backend = self.engine.llm().backend_name(flow.backend).to_owned();
        self.metrics.count_tokens(tokens);
        let Some(captured) = self.response_ctx.as_ref() else { return };
        let mut record = self.base_record(captured, Some(api.as_str()), None);
        record.decision = "allow";
        record.reason = "llm-usage";
        record.backend = Some(&backend);
        record.model = Some(&model);
        record.tokens_in = usage.input;
        record.tokens_out = usage.output;
        record.tokens_charged = Some(tokens);
        let detail = match (&unreadable, reported) {
            (Some(why), _) => Some(format!("usage unreadable ({why}); charged an estimate")),
            (None, None) => Some("the upstream reported no usage; charged an estimate".to_owned()),
            _ => None,
        };
        record.detail = detail.as_deref();
        // A usage record is not a decision: log it, keep the decision in filter state and metrics.
        if self.engine.settings().audit_log {
            log::info!("grantwall audit {}", record.to_json());
        }
    }

    /// Answer an LLM request locally, in its API's error shape; 429s say when to retry.
    fn llm_refuse(&mut self, captured: &Captured, api: Option<Api>, model: Option<&str>, refusal: Refusal, why: &str, retry_after: Option<u64>) -> Action {
        let mut record = self.base_record(captured, api.map(Api::as_str), None);
        record.decision = "deny";
        record.reason = refusal.reason();
        record.detail = Some(why);
        record.model = model;
        if let Some(flow) = self.llm.as_ref() {
            record.backend = Some(self.engine.llm().backend_name(flow.backend));
        }
        self.emit(&record);
        self.llm = None;
        let body = error_body(api, refusal, why);
        let retry = retry_after.map(|s| s.to_string());
        let mut headers = vec![("content-type", "application/json"), ("cache-control", "no-store")];
        if let Some(r) = retry.as_deref() {
            headers.push(("retry-after", r));
        }
        if host::send_response(refusal.status(), &headers, body.as_bytes()).is_err() {
            log::error!("grantwall: could not send local reply (status {})", refusal.status());
        }
        Action::Pause
    }
}

/// One complete SSE event of an LLM stream: note its usage; keep it unless it is the usage-only chunk
/// Grantwall asked for on the client's behalf.
fn on_event(flow: &mut LlmFlow, raw: &[u8], out: &mut Vec<u8>) {
    let event = match sse::parse_event(raw) {
        Ok(e) => e,
        Err(_) => {
            flow.usage_unreadable = Some("an SSE event is not UTF-8".into());
            out.extend_from_slice(raw);
            return;
        }
    };
    let Some(data) = event.data.as_deref() else {
        out.extend_from_slice(raw);
        return;
    };
    match usage::from_event(data) {
        Ok(found) => {
            if let Some(u) = found.usage {
                flow.usage.merge(u);
            }
            if found.usage_only_chunk && flow.strip_usage_chunk {
                return;
            }
        }
        Err(e) => flow.usage_unreadable = Some(e),
    }
    out.extend_from_slice(raw);
}
