//! Ephemeral agent identities (`GrantwallAgentIdentity`): a sub-agent known by its short-lived token, tied to
//! a parent identity, with a lifetime and a request budget.
//!
//! - **Grants**: the engine allows a request from an ephemeral identity only if the *parent* would be allowed
//!   the same request (evaluated without token claims) **and** one of the identity's own permission rules on
//!   the request's XBackend matches (`engine/agent.rs`). The compiler also refuses permissions wider than the
//!   parent's; the run-time intersection means a gap in that static check can never widen anything.
//! - **Lifetime**: `min(exp, iat + ttl)`, with no clock-skew tolerance ([`deadline`], [`check_alive`]).
//! - **Budget**: one counter per identity in shared data, shared by every worker. Each request the filter
//!   forwards costs one; refused requests cost nothing. [`consume`] is the CAS loop, over a [`CounterStore`]
//!   the glue implements with Proxy-Wasm shared data (tests use a map).
//!
//! Nothing here talks to a host.

use crate::config::Rule;
use serde::{Deserialize, Serialize};

/// Most CAS attempts for one increment before giving up (and refusing: fail closed).
pub const MAX_CAS_ATTEMPTS: u32 = 8;

/// Longest `ttl` the compiler accepts (a day): longer-lived agents are not ephemeral.
pub const MAX_TTL_SECONDS: u32 = 86_400;

/// Shared-data key prefix of the request counters (Istio leaves `vm_id` empty: prefix every key).
pub const COUNTER_PREFIX: &str = "grantwall/agent/";

/// `settings.identity.ephemeral[]` of the compiled config: one `GrantwallAgentIdentity`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EphemeralIdentity {
    /// `namespace/name` of the GrantwallAgentIdentity: audit records, and the counter's key.
    pub name: String,
    /// The principal its token names (`oidc://<issuer>#<sub>`).
    pub principal: String,
    /// The parent's principal (SPIFFE ID or `oidc://…`): the ephemeral identity never gets more than it.
    pub parent: String,
    /// Seconds from the token's `iat` after which it is refused (`identity-expired`), even before `exp`.
    pub ttl_seconds: u32,
    /// Requests forwarded for this identity, across all workers, before it is refused (`identity-exhausted`).
    /// Absent: no budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u32>,
    /// Its own grants, per XBackend. A request for any other target is refused.
    pub permissions: Vec<Permission>,
}

/// The rules of one XBackend an ephemeral identity may use (any rule matches; `principals` must be absent).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Permission {
    /// Backend index.
    pub backend: u32,
    pub rules: Vec<Rule>,
}

/// When an ephemeral token stops being usable: `min(exp, iat + ttl)` (Unix seconds). A token without `iat`
/// has no provable age, so it has no lifetime at all (None: refuse).
pub fn deadline(exp: u64, iat: Option<u64>, ttl_seconds: u32) -> Option<u64> {
    let iat = iat?;
    Some(exp.min(iat.saturating_add(u64::from(ttl_seconds))))
}

/// Why an ephemeral identity is refused before any policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expired {
    /// The token carries no `iat`: its age, and so the ttl, cannot be checked.
    NoIssuedAt,
    /// `now` is at or past the deadline.
    Since { deadline: u64 },
}

impl Expired {
    /// For the audit `detail` and the 401's `error_description`.
    pub fn message(&self, name: &str) -> String {
        match self {
            Expired::NoIssuedAt => format!("ephemeral identity {name}: the token has no iat, so its ttl cannot be enforced"),
            Expired::Since { deadline } => format!("ephemeral identity {name} expired at {deadline} (min of exp and iat + ttl)"),
        }
    }
}

/// Is the identity still alive at `now`? Strict: at the deadline second it is over, no skew tolerance (the
/// ttl is the policy's own bound, not the issuer's clock).
pub fn check_alive(now: u64, exp: u64, iat: Option<u64>, ttl_seconds: u32) -> Result<(), Expired> {
    match deadline(exp, iat, ttl_seconds) {
        None => Err(Expired::NoIssuedAt),
        Some(deadline) if now >= deadline => Err(Expired::Since { deadline }),
        Some(_) => Ok(()),
    }
}

/// The shared-data key of an identity's request counter.
pub fn counter_key(name: &str) -> String {
    format!("{COUNTER_PREFIX}{name}")
}

/// A counter value: 8 bytes, little-endian. Anything else is not a count we wrote.
pub fn decode_count(bytes: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_le_bytes)
}

pub fn encode_count(n: u64) -> [u8; 8] {
    n.to_le_bytes()
}

/// The host could not read or write shared data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreError;

/// Compare-and-swap storage (Proxy-Wasm shared data). `cas` 0 means "no check" (the key was absent).
pub trait CounterStore {
    /// The value and its CAS token, None if the key is absent. Err: the host failed.
    fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError>;
    /// Write if the key's CAS token is still `cas` (0: unconditionally). Ok(false): someone wrote first.
    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<bool, StoreError>;
}

/// What one request's budget check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Counted: this is request number `n` (1-based) of at most `max`.
    Counted { n: u64 },
    /// `max` requests were already forwarded.
    Exhausted,
    /// The host could not count (failure, unreadable value, CAS retries used up): refuse, fail closed.
    Uncountable,
}

/// Count one request against `max`, atomically across workers: read, refuse if the budget is spent, else
/// write count + 1 under the CAS token read; on a conflict re-read, at most [`MAX_CAS_ATTEMPTS`] times.
/// An absent key is created at 0 first (with CAS 0, which cannot be conditional) and then incremented under
/// the CAS token the host gives it, so two first requests on two workers cannot both write "1".
pub fn consume(store: &mut dyn CounterStore, key: &str, max: u32) -> Budget {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let current = match store.get(key) {
            Err(StoreError) => return Budget::Uncountable,
            Ok(None) => {
                // Create at 0 only; the increment below is then conditional.
                if store.set(key, &encode_count(0), 0).is_err() {
                    return Budget::Uncountable;
                }
                continue;
            }
            Ok(Some(v)) => v,
        };
        let (value, cas) = current;
        let Some(count) = decode_count(&value) else { return Budget::Uncountable };
        if count >= u64::from(max) {
            return Budget::Exhausted;
        }
        if cas == 0 {
            // A host that hands out no CAS token cannot make the increment atomic.
            return Budget::Uncountable;
        }
        match store.set(key, &encode_count(count + 1), cas) {
            Ok(true) => return Budget::Counted { n: count + 1 },
            Ok(false) => continue,
            Err(StoreError) => return Budget::Uncountable,
        }
    }
    Budget::Uncountable
}

/// Make sure a counter exists (at 0) before requests arrive, so the first increment is already a CAS
/// (called at configure time; an existing count is kept across config reloads).
pub fn ensure_counter(store: &mut dyn CounterStore, key: &str) -> Result<(), StoreError> {
    match store.get(key)? {
        Some(_) => Ok(()),
        None => store.set(key, &encode_count(0), 0).map(|_| ()),
    }
}

/// Checks the engine makes when loading: names and principals well formed, rules carry no principals.
pub fn validate(list: &[EphemeralIdentity], backend_count: usize) -> Result<(), (String, String)> {
    for (i, e) in list.iter().enumerate() {
        let at = format!("settings.identity.ephemeral[{i}]");
        if e.name.is_empty() || e.name.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err((format!("{at}.name"), "must be a non-empty namespace/name".into()));
        }
        if !crate::identity::is_oidc_principal(&e.principal) {
            return Err((format!("{at}.principal"), format!("{:?} is not an oidc:// principal", e.principal)));
        }
        if !crate::identity::is_spiffe_id(&e.parent) && !crate::identity::is_oidc_principal(&e.parent) {
            return Err((format!("{at}.parent"), format!("{:?} is not a SPIFFE ID or oidc:// principal", e.parent)));
        }
        if list.iter().any(|o| o.principal == e.parent) {
            return Err((format!("{at}.parent"), "the parent must not itself be an ephemeral identity".into()));
        }
        if list.iter().take(i).any(|o| o.principal == e.principal || o.name == e.name) {
            return Err((format!("{at}.principal"), format!("{:?} is configured twice", e.principal)));
        }
        if e.ttl_seconds == 0 || e.ttl_seconds > MAX_TTL_SECONDS {
            return Err((format!("{at}.ttlSeconds"), format!("must be between 1 and {MAX_TTL_SECONDS}")));
        }
        if e.max_requests == Some(0) {
            return Err((format!("{at}.maxRequests"), "must be at least 1".into()));
        }
        for (j, p) in e.permissions.iter().enumerate() {
            if p.backend as usize >= backend_count {
                return Err((format!("{at}.permissions[{j}].backend"), format!("backend {} does not exist", p.backend)));
            }
            if let Some(k) = p.rules.iter().position(|r| r.principals.is_some()) {
                return Err((
                    format!("{at}.permissions[{j}].rules[{k}].principals"),
                    "must be absent: the rule is for this identity only".into(),
                ));
            }
        }
    }
    Ok(())
}
