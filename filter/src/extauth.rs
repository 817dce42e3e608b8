//! The external-authorization call-out (docs/extauth.md): after the request is parsed and the Allow
//! policies allowed it, ask each selected level's service (Gateway first, then the XBackend) and hold the
//! request until the answers are in. The wire formats live in `grantwall_core::extauth`; this module only
//! dispatches, reads the host's answer buffers without panicking, and applies allowed header mutations.

use crate::host::{self, HostError};
use grantwall_core::config::McpMethod;
use grantwall_core::engine::Engine;
use grantwall_core::extauth::{self, CheckInput, ExtAuthProtocol, HeaderMutation, Verdict};
use grantwall_core::mcp::McpOp;
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

/// Most answers remembered per worker (each Envoy worker has its own VM, so its own cache).
const CACHE_CAPACITY: usize = 4096;

thread_local! {
    /// Decision cache (policy `grantwall.io/extauth-cache-ttl`): key → (expiry in host nanoseconds, verdict).
    /// Only allows and denials are remembered, never failures.
    static CACHE: RefCell<HashMap<String, (u64, Verdict)>> = RefCell::new(HashMap::new());
}

fn cache_get(key: &str, now: u64) -> Option<Verdict> {
    CACHE.with(|c| c.borrow().get(key).filter(|(expires, _)| *expires > now).map(|(_, v)| v.clone()))
}

fn cache_put(key: String, ttl_ms: u32, verdict: &Verdict) {
    let Ok(now) = host::current_time_nanos() else { return };
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= CACHE_CAPACITY {
            c.retain(|_, (expires, _)| *expires > now);
            if c.len() >= CACHE_CAPACITY {
                c.clear();
            }
        }
        c.insert(key, (now.saturating_add(u64::from(ttl_ms) * 1_000_000), verdict.clone()));
    });
}


/// Everything a check needs, owned: the request outlives the callback that started it.
pub struct Snapshot {
    pub method: String,
    pub path: String,
    pub authority: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub principal: Option<String>,
    pub backend: Option<String>,
    pub op_name: Option<String>,
    pub op_target: Option<String>,
    pub op_arguments: Option<String>,
    pub op_method: Option<McpMethod>,
    pub op_base: bool,
    /// Raw JSON-RPC id.
    pub id: Option<String>,
    /// Context of A2A and LLM requests (`CheckInput::protocol`), and the shape their refusal takes.
    pub protocol: Vec<(&'static str, String)>,
    pub speaks: crate::http::Speaks,
    /// The model of an LLM request, for the audit record.
    pub model: Option<String>,
    /// For the audit record: how the caller was identified, and the Allow rule that matched.
    pub identity_source: Option<&'static str>,
    pub allow_level: Option<&'static str>,
    pub allow_policy: Option<String>,
    pub allow_rule: Option<String>,
}

impl Snapshot {
    pub fn from_op(op: Option<&McpOp<'_>>) -> (Option<String>, Option<String>, Option<String>, Option<McpMethod>, bool) {
        match op {
            None => (None, None, None, None, false),
            Some(o) => (Some(o.name.to_owned()), o.target.map(str::to_owned), o.arguments.map(str::to_owned), o.method, o.base),
        }
    }

    fn with_input<R>(&self, f: impl FnOnce(&CheckInput<'_>) -> R) -> R {
        let op = self.op_name.as_deref().map(|name| McpOp {
            name,
            base: self.op_base,
            method: self.op_method,
            target: self.op_target.as_deref(),
            arguments: self.op_arguments.as_deref(),
        });
        let input = CheckInput {
            method: &self.method,
            path: &self.path,
            authority: &self.authority,
            headers: &self.headers,
            body: &self.body,
            principal: self.principal.as_deref(),
            backend: self.backend.as_deref(),
            op: op.as_ref(),
            id: self.id.as_deref(),
            protocol: &self.protocol,
        };
        f(&input)
    }
}

/// A call in flight.
pub struct Pending {
    pub token: u32,
    pub level: u32,
    /// The backend level, still to ask after the Gateway's allowed.
    pub next: Option<u32>,
    pub snapshot: Snapshot,
    /// Header mutations of the levels that allowed so far.
    pub merged: Vec<HeaderMutation>,
    /// Fail-open levels that failed: recorded on the final allow.
    pub failed_open: Option<String>,
    /// The decision-cache key of the level being asked, when its policy caches answers.
    cache_key: Option<String>,
    /// Levels answered from the cache (audit detail).
    pub cached: bool,
}

/// Where a call-out stands after an answer.
pub enum Step {
    /// Waiting for the next level's answer.
    Asked(Pending),
    /// Every level allowed: apply `merged` and continue (`failed_open`: allowed by a fail-open policy).
    Allowed(Pending),
    /// Refused: audit reason, the policy (`namespace/name`) and its detail.
    Refused { reason: &'static str, policy: String, detail: String, snapshot: Snapshot },
}

/// Ask the first selected level. `Err` when the call could not even be dispatched (its verdict).
pub fn start(engine: &Engine, levels: [Option<u32>; 2], snapshot: Snapshot) -> Step {
    let mut it = levels.into_iter().flatten();
    let Some(first) = it.next() else {
        return Step::Allowed(Pending {
            token: 0,
            level: 0,
            next: None,
            snapshot,
            merged: Vec::new(),
            failed_open: None,
            cache_key: None,
            cached: false,
        });
    };
    let pending = Pending {
        token: 0,
        level: first,
        next: it.next(),
        snapshot,
        merged: Vec::new(),
        failed_open: None,
        cache_key: None,
        cached: false,
    };
    ask(engine, pending)
}

fn ask(engine: &Engine, mut pending: Pending) -> Step {
    let Some(ea) = engine.external_level(pending.level) else {
        return Step::Refused { reason: "extauth-error", policy: String::new(), detail: "ExternalAuth vanished".into(), snapshot: pending.snapshot };
    };
    pending.cache_key = None;
    if ea.cache_ttl_ms > 0 {
        let level = pending.level;
        let key = pending.snapshot.with_input(|input| extauth::cache_key(level, input));
        // The policy and cluster are part of the key: a new config never reuses another service's answer.
        let key = format!("{}|{}|{key}", ea.policy, ea.cluster);
        if let Some(verdict) = host::current_time_nanos().ok().and_then(|now| cache_get(&key, now)) {
            pending.cached = true;
            return answer(engine, pending, verdict);
        }
        pending.cache_key = Some(key);
    }
    let timeout = Duration::from_millis(u64::from(ea.timeout_ms));
    let dispatched = match ea.protocol {
        ExtAuthProtocol::Http => {
            let check = pending.snapshot.with_input(|input| extauth::http_check(ea, input));
            let headers: Vec<(&str, &str)> = check.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            proxy_wasm::hostcalls::dispatch_http_call(&ea.cluster, headers, Some(&check.body), Vec::new(), timeout)
        }
        ExtAuthProtocol::Grpc => {
            let message = pending.snapshot.with_input(|input| extauth::grpc_check(ea, input));
            let service = extauth::grpc_service(ea);
            // The host takes the GrpcService as bytes; they are not UTF-8 text, but the SDK only passes them on.
            match std::str::from_utf8(&service) {
                Ok(service) => proxy_wasm::hostcalls::dispatch_grpc_call(
                    service,
                    extauth::GRPC_SERVICE,
                    extauth::GRPC_METHOD,
                    Vec::new(),
                    Some(&message),
                    timeout,
                ),
                // Not UTF-8 (a cluster name byte ≥ 0x80 in a length prefix): the bare cluster name works too.
                Err(_) => proxy_wasm::hostcalls::dispatch_grpc_call(
                    &ea.cluster,
                    extauth::GRPC_SERVICE,
                    extauth::GRPC_METHOD,
                    Vec::new(),
                    Some(&message),
                    timeout,
                ),
            }
        }
    };
    match dispatched {
        Ok(token) => {
            pending.token = token;
            Step::Asked(pending)
        }
        Err(status) => {
            let verdict = Verdict::Unavailable(format!("could not dispatch to cluster {:?} (host status {status:?}): is it defined in Envoy?", ea.cluster));
            answer(engine, pending, verdict)
        }
    }
}

/// Apply one level's verdict: ask the next level, finish, or refuse.
pub fn answer(engine: &Engine, mut pending: Pending, verdict: Verdict) -> Step {
    let Some(ea) = engine.external_level(pending.level) else {
        return Step::Refused { reason: "extauth-error", policy: String::new(), detail: "ExternalAuth vanished".into(), snapshot: pending.snapshot };
    };
    let policy = ea.policy.clone();
    if let Some(key) = pending.cache_key.take() {
        if matches!(verdict, Verdict::Allow(_) | Verdict::Deny(_)) {
            cache_put(key, ea.cache_ttl_ms, &verdict);
        }
    }
    match verdict {
        Verdict::Allow(mutations) => pending.merged.extend(mutations),
        Verdict::Deny(why) => return Step::Refused { reason: "extauth-denied", policy, detail: why, snapshot: pending.snapshot },
        Verdict::Unavailable(why) | Verdict::Error(why) if ea.fail_open => {
            pending.failed_open = Some(format!("{policy}: {why}"));
        }
        other => {
            let reason = other.reason();
            let why = match other {
                Verdict::Unavailable(w) | Verdict::Error(w) => w,
                _ => String::new(),
            };
            return Step::Refused { reason, policy, detail: why, snapshot: pending.snapshot };
        }
    }
    match pending.next.take() {
        Some(level) => {
            pending.level = level;
            ask(engine, pending)
        }
        None => Step::Allowed(pending),
    }
}

/// The HTTP answer as the host holds it (no `:status`: the call failed or timed out).
pub fn http_verdict(engine: &Engine, pending: &Pending, body_size: usize) -> Verdict {
    let Some(ea) = engine.external_level(pending.level) else { return Verdict::Error("ExternalAuth vanished".into()) };
    let headers = match call_response_headers() {
        Ok(h) => h,
        Err(_) => return Verdict::Error("answer headers unreadable".into()),
    };
    let status = headers.iter().find(|(k, _)| k == ":status").map(|(_, v)| v.as_str());
    let body = match answer_bytes(body_size, host::http_call_response_body) {
        Ok(b) => b,
        Err(_) => return Verdict::Error("answer body unreadable".into()),
    };
    extauth::http_verdict(ea, status, &headers, &body)
}

pub fn grpc_verdict(status: u32, size: usize) -> Verdict {
    if status != 0 {
        return extauth::grpc_verdict(status, &[]);
    }
    match answer_bytes(size, host::grpc_receive_buffer) {
        Ok(message) => extauth::grpc_verdict(0, &message),
        Err(_) => Verdict::Error("answer unreadable".into()),
    }
}

/// An answer's body: nothing to ask the host for when it is empty.
fn answer_bytes(size: usize, read: fn(usize) -> Result<Option<Vec<u8>>, HostError>) -> Result<Vec<u8>, HostError> {
    if size == 0 {
        return Ok(Vec::new());
    }
    read(size).map(Option::unwrap_or_default)
}

/// The answer's headers as UTF-8 pairs; a non-UTF-8 header makes the whole answer unreadable.
fn call_response_headers() -> Result<Vec<(String, String)>, HostError> {
    host::http_call_response_headers()?
        .pairs()
        .map(|(k, v)| match (std::str::from_utf8(k), std::str::from_utf8(v)) {
            (Ok(k), Ok(v)) => Ok((k.to_ascii_lowercase(), v.to_owned())),
            _ => Err(HostError(u32::MAX)),
        })
        .collect()
}

/// Set (or add) the allowed headers on the held request, then let it continue.
pub fn apply_and_resume(mutations: &[HeaderMutation]) -> Result<(), HostError> {
    for m in mutations {
        if m.append {
            host::add_request_header(&m.name, &m.value)?;
        } else {
            host::set_request_header(&m.name, &m.value)?;
        }
    }
    host::continue_request()
}
