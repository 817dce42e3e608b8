//! Rate limits, fan-out caps and context budgets (GrantwallRateLimitPolicy), host-independent.
//!
//! - **Config** (`LimitsConfig`, the `limits` field of the compiled config) and its validated, indexed form
//!   [`Limits`], which answers "which limits apply to this request" without allocating.
//! - **Token buckets** as GCRA (generic cell rate algorithm) over one integer: the bucket's *theoretical
//!   arrival time* (TAT) in "scaled nanoseconds" (wall-clock nanoseconds × `requests`). One request costs
//!   `period` nanoseconds of scaled time, the bucket holds `burst` of them. All arithmetic is exact integer
//!   math on u128: no float drift, no rounding that accumulates across requests.
//! - **Fan-out counters**: in-flight calls per key, with a staleness bound so a count leaked by a crashed VM
//!   cannot lock a caller out forever.
//! - **Keys** are 128-bit SHA-256 fingerprints of (rule, limit, key kind, key parts): fixed size whatever the
//!   caller sends, and no collision a caller could craft with a chosen tool name. A fingerprint picks two
//!   candidate slots of a fixed table (bounded memory: Proxy-Wasm shared data cannot be deleted).
//!
//! Time: the Proxy-Wasm ABI only offers the host's wall clock. A clock that steps backwards refills nothing
//! until it catches up (the TAT is never moved back: conservative); a forward step refills at most `burst`.
//! A bucket whose TAT lies in the past is full, hence indistinguishable from a fresh one: evicting it loses
//! nothing — that is how idle keys expire.

use sha2::{Digest, Sha256};
use std::cmp::max;

/// Slots of the shared rate-bucket table (each value is [`RATE_VALUE_LEN`] bytes).
pub const RATE_SLOTS: u32 = 8192;
/// Slots of the shared fan-out table (keys are identities, not request-chosen strings).
pub const FANOUT_SLOTS: u32 = 4096;
/// A fan-out count nobody touched for this long is treated as zero (a leak after a VM crash heals).
pub const FANOUT_STALE_SECS: u64 = 3600;
/// Largest `requests` and `burst` a limit may name.
pub const MAX_REQUESTS: u32 = 1_000_000;
/// Longest period: one day.
pub const MAX_PERIOD_SECONDS: u32 = 86_400;

const NANOS: u128 = 1_000_000_000;

// ---------------------------------------------------------------------------------------------------------
// Compiled config (what `grantwall compile` writes under `limits`)
// ---------------------------------------------------------------------------------------------------------

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitsConfig {
    /// Every rule that applies to a request is enforced (all must admit it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<LimitRule>,
    /// Publish `x-grantwall-identity`, `x-grantwall-tool` and `x-grantwall-backend` request headers (after
    /// the body is judged) for Envoy's global rate-limit filter. Client-sent copies are always removed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub publish_headers: bool,
}

impl LimitsConfig {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && !self.publish_headers
    }
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitRule {
    /// `namespace/policy/rule`: audit records and the state key (renaming a rule starts fresh buckets).
    pub name: String,
    /// Backend index; absent: the Gateway (every request this filter sees).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<u32>,
    /// Callers (SPIFFE IDs or oidc:// principals), sorted. Absent: every caller, including anonymous ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principals: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rate_limits: Vec<RateLimit>,
    /// Most requests of one caller in flight at once (per identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fan_out: Option<u32>,
    /// Largest request body (bytes) a caller may send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_budget_bytes: Option<u32>,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RateLimit {
    pub key: LimitKey,
    /// Tokens added per period.
    pub requests: u32,
    pub period_seconds: u32,
    /// Bucket size (most requests at once after an idle period); at least 1.
    pub burst: u32,
    /// Count only `tools/call` to these tools (sorted). Absent: every request the rule covers (with
    /// `identityTool`: every `tools/call`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
}

/// What one bucket is shared by.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LimitKey {
    /// One bucket per caller.
    Identity,
    /// One bucket per caller and tool (counts `tools/call` only).
    IdentityTool,
    /// One bucket per caller namespace (`/ns/<namespace>/` of a SPIFFE ID; callers without one share one).
    Namespace,
    /// One bucket per backend, shared by every caller the rule covers.
    Backend,
}

impl LimitKey {
    fn tag(self) -> u8 {
        match self {
            LimitKey::Identity => 1,
            LimitKey::IdentityTool => 2,
            LimitKey::Namespace => 3,
            LimitKey::Backend => 4,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Token bucket (GCRA) math
// ---------------------------------------------------------------------------------------------------------

/// Bucket parameters in scaled units: one request costs `cost`, the bucket holds `capacity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// `requests` per period: scaled time = nanoseconds × `rate`.
    rate: u128,
    /// `period` in nanoseconds: what one request costs in scaled time.
    cost: u128,
    /// `burst × cost`.
    capacity: u128,
}

/// Outcome of one bucket check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Admitted: the new TAT to store and the whole requests still available right now.
    Yes { tat: u128, remaining: u32 },
    /// Refused: nanoseconds until one request would be admitted.
    No { retry_after_nanos: u64 },
}

impl Bucket {
    /// `requests` per `period_seconds`, holding at most `burst`. Zero values are clamped to 1 (the
    /// config loader refuses them first).
    pub fn new(requests: u32, period_seconds: u32, burst: u32) -> Bucket {
        let rate = u128::from(requests.max(1));
        let cost = u128::from(period_seconds.max(1)) * NANOS;
        Bucket { rate, cost, capacity: u128::from(burst.max(1)) * cost }
    }

    /// Scaled "now".
    pub fn scaled(&self, now_nanos: u64) -> u128 {
        u128::from(now_nanos) * self.rate
    }

    /// Admit one request at `now_nanos` against a bucket whose TAT is `tat` (0 = never used).
    pub fn admit(&self, tat: u128, now_nanos: u64) -> Admit {
        let now = self.scaled(now_nanos);
        // A TAT in the past is a full bucket; a clock that stepped back keeps the stored TAT.
        let start = max(tat, now);
        let new_tat = start + self.cost;
        let debt = new_tat - now;
        if debt <= self.capacity {
            let remaining = (self.capacity - debt) / self.cost;
            Admit::Yes { tat: new_tat, remaining: u32::try_from(remaining).unwrap_or(u32::MAX) }
        } else {
            let wait = (debt - self.capacity).div_ceil(self.rate);
            Admit::No { retry_after_nanos: u64::try_from(wait).unwrap_or(u64::MAX) }
        }
    }

    /// A bucket with this TAT is full at `now_nanos`: same as never used, so its slot may be reused.
    pub fn is_idle(&self, tat: u128, now_nanos: u64) -> bool {
        tat <= self.scaled(now_nanos)
    }
}

/// Whole seconds to tell a client (`Retry-After`), rounded up, at least 1.
pub fn retry_after_secs(nanos: u64) -> u64 {
    nanos.div_ceil(1_000_000_000).max(1)
}

// ---------------------------------------------------------------------------------------------------------
// Shared-state values (fixed layouts, little-endian)
// ---------------------------------------------------------------------------------------------------------

/// 128-bit key fingerprint.
pub type Fingerprint = [u8; 16];

/// Rate slot value: `b"R1"`, fingerprint, TAT (u128, the owner's scaled units), and when the bucket is
/// full again in plain nanoseconds (u64) — what another key needs to know to reuse the slot.
pub const RATE_VALUE_LEN: usize = 2 + 16 + 16 + 8;
/// Fan-out slot value: `b"F1"`, fingerprint, count (u32), last change (unix seconds, u64).
pub const FANOUT_VALUE_LEN: usize = 2 + 16 + 4 + 8;

pub fn encode_rate(fp: &Fingerprint, tat: u128, bucket: &Bucket) -> [u8; RATE_VALUE_LEN] {
    let idle_at = u64::try_from(tat.div_ceil(bucket.rate)).unwrap_or(u64::MAX);
    let mut out = [0u8; RATE_VALUE_LEN];
    out[..2].copy_from_slice(b"R1");
    out[2..18].copy_from_slice(fp);
    out[18..34].copy_from_slice(&tat.to_le_bytes());
    out[34..].copy_from_slice(&idle_at.to_le_bytes());
    out
}

/// A rate slot's fingerprint, TAT and full-again time; None for anything else (unknown layout = empty).
pub fn decode_rate(value: &[u8]) -> Option<(Fingerprint, u128, u64)> {
    let v: &[u8; RATE_VALUE_LEN] = value.try_into().ok()?;
    if &v[..2] != b"R1" {
        return None;
    }
    let fp: Fingerprint = v[2..18].try_into().ok()?;
    let tat = u128::from_le_bytes(v[18..34].try_into().ok()?);
    let idle_at = u64::from_le_bytes(v[34..].try_into().ok()?);
    Some((fp, tat, idle_at))
}

pub fn encode_fanout(fp: &Fingerprint, count: u32, now_secs: u64) -> [u8; FANOUT_VALUE_LEN] {
    let mut out = [0u8; FANOUT_VALUE_LEN];
    out[..2].copy_from_slice(b"F1");
    out[2..18].copy_from_slice(fp);
    out[18..22].copy_from_slice(&count.to_le_bytes());
    out[22..].copy_from_slice(&now_secs.to_le_bytes());
    out
}

/// A fan-out slot's fingerprint and live count (0 once stale).
pub fn decode_fanout(value: &[u8], now_secs: u64) -> Option<(Fingerprint, u32)> {
    let v: &[u8; FANOUT_VALUE_LEN] = value.try_into().ok()?;
    if &v[..2] != b"F1" {
        return None;
    }
    let fp: Fingerprint = v[2..18].try_into().ok()?;
    let count = u32::from_le_bytes(v[18..22].try_into().ok()?);
    let touched = u64::from_le_bytes(v[22..].try_into().ok()?);
    let stale = now_secs.saturating_sub(touched) >= FANOUT_STALE_SECS;
    Some((fp, if stale { 0 } else { count }))
}

/// The two candidate slots of a fingerprint in a table of `slots` (distinct when `slots > 1`).
pub fn candidate_slots(fp: &Fingerprint, slots: u32) -> [u32; 2] {
    let a = u32::from_le_bytes([fp[0], fp[1], fp[2], fp[3]]) % slots;
    let b = u32::from_le_bytes([fp[4], fp[5], fp[6], fp[7]]) % slots;
    let b = if b == a && slots > 1 { (a + 1) % slots } else { b };
    [a, b]
}

// ---------------------------------------------------------------------------------------------------------
// Validated limits and per-request lookups
// ---------------------------------------------------------------------------------------------------------

/// Who is asking and for what: the facts limits are keyed on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Subject<'a> {
    pub principal: Option<&'a str>,
    pub backend: Option<u32>,
    /// `namespace/name` of the backend (Backend keys, published header).
    pub backend_name: Option<&'a str>,
    /// The tool of a `tools/call`.
    pub tool: Option<&'a str>,
}

/// One bucket this request must pass.
#[derive(Debug, Clone, Copy)]
pub struct RateCheck<'a> {
    pub rule: &'a str,
    pub key: LimitKey,
    pub fingerprint: Fingerprint,
    pub bucket: Bucket,
}

/// One fan-out counter this request holds while in flight.
#[derive(Debug, Clone, Copy)]
pub struct FanOutCheck<'a> {
    pub rule: &'a str,
    pub fingerprint: Fingerprint,
    pub cap: u32,
}

#[derive(Debug, Clone)]
struct CompiledRate {
    key: LimitKey,
    bucket: Bucket,
    tools: Option<Vec<String>>,
    /// Hash state over (rule, limit index and parameters): cloned and fed the key parts per request.
    seed: Sha256,
}

#[derive(Debug, Clone)]
struct CompiledRule {
    name: String,
    backend: Option<u32>,
    principals: Option<Vec<String>>,
    rates: Vec<CompiledRate>,
    fan_out: Option<(u32, Sha256)>,
    budget: Option<u32>,
}

impl CompiledRule {
    fn applies(&self, s: &Subject<'_>) -> bool {
        let target = self.backend.is_none() || self.backend == s.backend;
        let caller = match (&self.principals, s.principal) {
            (None, _) => true,
            (Some(list), Some(p)) => list.binary_search_by(|x| x.as_str().cmp(p)).is_ok(),
            (Some(_), None) => false,
        };
        target && caller
    }
}

/// The validated limits of one config.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    rules: Vec<CompiledRule>,
    publish_headers: bool,
    /// Rules for the Gateway exist (then every request is subject to limits).
    gateway_rules: bool,
    /// Per backend index: some rule targets it.
    backend_rules: Vec<bool>,
}

impl Limits {
    /// Validate `config` for a config with `backend_count` backends. Errors: (field path, message).
    pub fn new(config: &LimitsConfig, backend_count: usize) -> Result<Limits, (String, String)> {
        let mut backend_rules = vec![false; backend_count];
        let mut gateway_rules = false;
        let mut rules = Vec::with_capacity(config.rules.len());
        for (i, r) in config.rules.iter().enumerate() {
            let at = format!("limits.rules[{i}]");
            let err = |field: &str, msg: &str| Err((format!("{at}.{field}"), msg.to_owned()));
            if r.name.is_empty() {
                return err("name", "must not be empty");
            }
            if config.rules.iter().take(i).any(|o| o.name == r.name) {
                return err("name", "is listed twice");
            }
            match r.backend {
                None => gateway_rules = true,
                Some(b) => match backend_rules.get_mut(b as usize) {
                    Some(flag) => *flag = true,
                    None => return err("backend", &format!("backend {b} does not exist")),
                },
            }
            if let Some(p) = &r.principals {
                if !strictly_sorted(p) {
                    return err("principals", "must be sorted and unique");
                }
            }
            if r.max_fan_out == Some(0) {
                return err("maxFanOut", "must be at least 1");
            }
            if r.context_budget_bytes == Some(0) {
                return err("contextBudgetBytes", "must be at least 1");
            }
            let mut rates = Vec::with_capacity(r.rate_limits.len());
            for (j, l) in r.rate_limits.iter().enumerate() {
                let field = |f: &str| format!("rateLimits[{j}].{f}");
                if l.requests == 0 || l.requests > MAX_REQUESTS {
                    return err(&field("requests"), &format!("must be between 1 and {MAX_REQUESTS}"));
                }
                if l.burst == 0 || l.burst > MAX_REQUESTS {
                    return err(&field("burst"), &format!("must be between 1 and {MAX_REQUESTS}"));
                }
                if l.period_seconds == 0 || l.period_seconds > MAX_PERIOD_SECONDS {
                    return err(&field("periodSeconds"), &format!("must be between 1 and {MAX_PERIOD_SECONDS}"));
                }
                if let Some(t) = &l.tools {
                    if t.is_empty() || !strictly_sorted(t) {
                        return err(&field("tools"), "must be non-empty, sorted and unique");
                    }
                }
                // The parameters are part of the key: changing a limit starts fresh buckets.
                let mut seed = Sha256::new();
                feed(&mut seed, b"rate");
                feed(&mut seed, r.name.as_bytes());
                feed(&mut seed, &(j as u32).to_le_bytes());
                feed(&mut seed, &[l.key.tag()]);
                feed(&mut seed, &l.requests.to_le_bytes());
                feed(&mut seed, &l.period_seconds.to_le_bytes());
                feed(&mut seed, &l.burst.to_le_bytes());
                rates.push(CompiledRate {
                    key: l.key,
                    bucket: Bucket::new(l.requests, l.period_seconds, l.burst),
                    tools: l.tools.clone(),
                    seed,
                });
            }
            let fan_out = r.max_fan_out.map(|cap| {
                let mut seed = Sha256::new();
                feed(&mut seed, b"fanout");
                feed(&mut seed, r.name.as_bytes());
                (cap, seed)
            });
            if rates.is_empty() && fan_out.is_none() && r.context_budget_bytes.is_none() {
                return err("rateLimits", "the rule sets no limit: give rateLimits, maxFanOut or contextBudgetBytes");
            }
            rules.push(CompiledRule {
                name: r.name.clone(),
                backend: r.backend,
                principals: r.principals.clone(),
                rates,
                fan_out,
                budget: r.context_budget_bytes,
            });
        }
        Ok(Limits { rules, publish_headers: config.publish_headers, gateway_rules, backend_rules })
    }

    /// Whether requests for this backend (None: no backend) meet any limit, so must be inspected.
    pub fn applies(&self, backend: Option<u32>) -> bool {
        self.gateway_rules || backend.and_then(|b| self.backend_rules.get(b as usize)).copied().unwrap_or(false)
    }

    /// Which shared tables the filter must prepare: (rate buckets, fan-out counters).
    pub fn tables_needed(&self) -> (bool, bool) {
        (self.rules.iter().any(|r| !r.rates.is_empty()), self.rules.iter().any(|r| r.fan_out.is_some()))
    }

    pub fn publish_headers(&self) -> bool {
        self.publish_headers
    }

    /// The smallest context budget of the rules that apply, with the rule that sets it.
    pub fn context_budget(&self, s: &Subject<'_>) -> Option<(u32, &str)> {
        self.rules
            .iter()
            .filter(|r| r.applies(s))
            .filter_map(|r| r.budget.map(|b| (b, r.name.as_str())))
            .min_by_key(|(b, _)| *b)
    }

    /// The buckets this request must pass. `tool` counts only for `tools/call`.
    pub fn rate_checks<'a: 's, 's>(&'a self, s: &'s Subject<'s>) -> impl Iterator<Item = RateCheck<'a>> + 's {
        self.rules.iter().filter(move |r| r.applies(s)).flat_map(move |r| {
            r.rates.iter().filter_map(move |l| {
                if let Some(tools) = &l.tools {
                    let listed = s.tool.is_some_and(|t| tools.binary_search_by(|x| x.as_str().cmp(t)).is_ok());
                    if !listed {
                        return None;
                    }
                }
                let mut h = l.seed.clone();
                match l.key {
                    LimitKey::Identity => feed_opt(&mut h, s.principal),
                    LimitKey::IdentityTool => {
                        feed_opt(&mut h, s.principal);
                        feed(&mut h, s.tool?.as_bytes());
                    }
                    LimitKey::Namespace => feed_opt(&mut h, s.principal.and_then(spiffe_namespace)),
                    LimitKey::Backend => feed_opt(&mut h, s.backend_name),
                }
                Some(RateCheck { rule: &r.name, key: l.key, fingerprint: finish(h), bucket: l.bucket })
            })
        })
    }

    /// The fan-out counters this request takes (per identity).
    pub fn fan_out_checks<'a: 's, 's>(&'a self, s: &'s Subject<'s>) -> impl Iterator<Item = FanOutCheck<'a>> + 's {
        self.rules.iter().filter(move |r| r.applies(s)).filter_map(move |r| {
            let (cap, seed) = r.fan_out.as_ref()?;
            let mut h = seed.clone();
            feed_opt(&mut h, s.principal);
            Some(FanOutCheck { rule: &r.name, fingerprint: finish(h), cap: *cap })
        })
    }
}

fn strictly_sorted(v: &[String]) -> bool {
    v.windows(2).all(|w| matches!(w, [a, b] if a < b))
}

/// Length-prefixed, so ("ab","c") and ("a","bc") differ.
fn feed(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// Absent and empty differ too.
fn feed_opt(h: &mut Sha256, v: Option<&str>) {
    match v {
        None => h.update([0u8]),
        Some(s) => {
            h.update([1u8]);
            feed(h, s.as_bytes());
        }
    }
}

fn finish(h: Sha256) -> Fingerprint {
    let digest = h.finalize();
    let mut fp = [0u8; 16];
    for (out, byte) in fp.iter_mut().zip(digest.iter()) {
        *out = *byte;
    }
    fp
}

/// The namespace of `spiffe://<td>/ns/<namespace>/…`, if the principal has that shape.
pub fn spiffe_namespace(principal: &str) -> Option<&str> {
    let rest = principal.strip_prefix("spiffe://")?;
    let (_, path) = rest.split_once('/')?;
    let rest = path.strip_prefix("ns/")?;
    let ns = rest.split('/').next()?;
    (!ns.is_empty()).then_some(ns)
}

// ---------------------------------------------------------------------------------------------------------
// Slot choice: which of the two candidate slots a key uses
// ---------------------------------------------------------------------------------------------------------

/// What a candidate slot holds, as far as choosing goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// This key's own state.
    Mine,
    /// Empty, unreadable, or another key's state that carries no information (full bucket, zero count).
    Free,
    /// Another key's live state; `weight` = how much it would lose if evicted (smaller: evict first).
    Taken { weight: u128 },
}

/// Which candidate to use: the key's own slot, else a free one, else (with `evict`) the one whose owner
/// loses least. None: both taken and eviction not allowed.
pub fn choose_slot(states: [SlotState; 2], evict: bool) -> Option<usize> {
    if let Some(i) = states.iter().position(|s| *s == SlotState::Mine) {
        return Some(i);
    }
    if let Some(i) = states.iter().position(|s| *s == SlotState::Free) {
        return Some(i);
    }
    if !evict {
        return None;
    }
    match states {
        [SlotState::Taken { weight: a }, SlotState::Taken { weight: b }] => Some(if b < a { 1 } else { 0 }),
        _ => Some(0),
    }
}

/// The state of a rate slot for key `fp` and this key's TAT (0 unless Mine). A foreign bucket is free once
/// full again; otherwise its weight is how long until it is (evicting it forgives that much debt).
pub fn rate_slot_state(value: Option<&[u8]>, fp: &Fingerprint, now_nanos: u64) -> (SlotState, u128) {
    let Some((owner, tat, idle_at)) = value.and_then(decode_rate) else { return (SlotState::Free, 0) };
    if &owner == fp {
        (SlotState::Mine, tat)
    } else if idle_at <= now_nanos {
        (SlotState::Free, 0)
    } else {
        (SlotState::Taken { weight: u128::from(idle_at - now_nanos) }, 0)
    }
}

/// The state of a fan-out slot for key `fp`, and this key's live count (0 unless Mine).
pub fn fanout_slot_state(value: Option<&[u8]>, fp: &Fingerprint, now_secs: u64) -> (SlotState, u32) {
    let Some((owner, count)) = value.and_then(|v| decode_fanout(v, now_secs)) else { return (SlotState::Free, 0) };
    if &owner == fp {
        (SlotState::Mine, count)
    } else if count == 0 {
        (SlotState::Free, 0)
    } else {
        (SlotState::Taken { weight: u128::from(count) }, 0)
    }
}

// ---------------------------------------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------------------------------------

/// JSON-RPC error code of a rate-limit or fan-out refusal (HTTP's 429, as KAN uses 403 for "forbidden").
pub const RATE_LIMITED_CODE: i32 = 429;
pub const RATE_LIMITED_MESSAGE: &str = "Rate limit exceeded.";

/// Why a limit refused a request, for the reply and the audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused<'a> {
    /// `rate-limited`, `fan-out-exceeded`.
    pub reason: &'static str,
    pub rule: &'a str,
    pub retry_after_secs: u64,
}

/// The reply to a request over a rate limit or fan-out cap. MCP requests with an id get the configured
/// denial shape (HTTP 200 by default: MCP clients end the session on a 429); anything else gets 429.
/// The caller adds `Retry-After: <retry_after_secs>` in every case.
pub fn over_limit_reply(
    style: crate::config::DenialStyle,
    id: Option<&str>,
    op_name: Option<&str>,
    tool: Option<&str>,
    refused: &Refused<'_>,
) -> crate::respond::Reply {
    use crate::config::DenialStyle;
    let data = format!(
        r#"{{"reason":{},"retryAfterSeconds":{},"limit":{}}}"#,
        json_string(refused.reason),
        refused.retry_after_secs,
        json_string(refused.rule)
    );
    let error = |status: u32, id: &str| crate::respond::Reply {
        status,
        body: format!(
            r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{RATE_LIMITED_CODE},"message":{},"data":{data}}}}}"#,
            json_string(RATE_LIMITED_MESSAGE)
        ),
    };
    match (style, id) {
        (DenialStyle::ToolError, Some(id)) if op_name == Some("tools/call") => {
            let text = format!(
                "Grantwall refused this call to tool {}: {} (limit {}); retry after {} s.",
                json_string(tool.unwrap_or("")),
                refused.reason,
                refused.rule,
                refused.retry_after_secs
            );
            crate::respond::Reply {
                status: 200,
                body: format!(
                    r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[{{"type":"text","text":{}}}],"isError":true}}}}"#,
                    json_string(&text)
                ),
            }
        }
        (DenialStyle::Http, Some(id)) => error(429, id),
        (_, Some(id)) if op_name.is_some() => error(200, id),
        (_, id) => error(429, id.unwrap_or("null")),
    }
}

/// The reply to a request body over its context budget: HTTP 413 with a JSON-RPC error.
pub fn over_budget_reply(id: Option<&str>, size: usize, budget: u32, rule: &str) -> crate::respond::Reply {
    let message = format!("request body of {size} bytes exceeds the context budget of {budget} bytes");
    crate::respond::Reply {
        status: 413,
        body: format!(
            r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":-32600,"message":{},"data":{{"reason":"context-budget-exceeded","limitBytes":{budget},"limit":{}}}}}}}"#,
            id.unwrap_or("null"),
            json_string(&message),
            json_string(rule)
        ),
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

/// A header value for a request-derived string (tool names are arbitrary JSON strings): bytes outside
/// `A-Za-z0-9-._~:/@+` are percent-encoded, so the value is always a legal header and distinct inputs stay
/// distinct. Written into `out` (reused, no allocation once large enough).
pub fn header_value(raw: &str, out: &mut String) {
    out.clear();
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:/@+".contains(&b) {
            out.push(char::from(b));
        } else {
            let hex = |n: u8| char::from_digit(u32::from(n), 16).unwrap_or('0').to_ascii_uppercase();
            out.push('%');
            out.push(hex(b >> 4));
            out.push(hex(b & 15));
        }
    }
}
