//! Ephemeral identities at run time (the logic is grantwall-core `ephemeral`): the lifetime check at the
//! headers phase (401 `identity-expired`) and the request budget in shared data, counted once a request is
//! allowed and about to be forwarded (`identity-exhausted`).

use crate::host::{self, CasWrite};
use grantwall_core::engine::Engine;
use grantwall_core::ephemeral::{self, Budget, CounterStore, EphemeralIdentity, StoreError};
use grantwall_core::jwt::TokenIdentity;

/// Proxy-Wasm shared data as the CAS store of the counters (all workers of the VM see it).
struct SharedData;

impl CounterStore for SharedData {
    fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        host::shared_data(key).map_err(|_| StoreError)
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<bool, StoreError> {
        host::set_shared_data(key, value, cas).map(|w| w == CasWrite::Written).map_err(|_| StoreError)
    }
}

/// Why an ephemeral caller is refused at the headers phase: the message for the 401.
pub fn expired(agent: &EphemeralIdentity, token: Option<&TokenIdentity>) -> Option<String> {
    // An ephemeral principal only ever comes from a token; without one, fail closed.
    let Some(token) = token else { return Some(format!("ephemeral identity {} needs its token", agent.name)) };
    let now = match host::now_secs() {
        Ok(n) => n,
        Err(_) => return Some(format!("ephemeral identity {}: the proxy clock is unavailable", agent.name)),
    };
    let iat = token.claims.get("iat").and_then(|v| v.as_u64());
    ephemeral::check_alive(now, token.expires_at, iat, agent.ttl_seconds).err().map(|e| e.message(&agent.name))
}

/// Count one forwarded request; the refusal reason if the budget is spent or cannot be counted.
pub fn budget_refusal(agent: &EphemeralIdentity) -> Option<&'static str> {
    let max = agent.max_requests?;
    match ephemeral::consume(&mut SharedData, &ephemeral::counter_key(&agent.name), max) {
        Budget::Counted { .. } => None,
        Budget::Exhausted => Some("identity-exhausted"),
        Budget::Uncountable => {
            log::error!("grantwall: could not count a request of ephemeral identity {}: refused", agent.name);
            Some("internal-error")
        }
    }
}

/// Create every budgeted identity's counter before requests arrive (kept if it exists: a config reload
/// does not reset a budget).
pub fn ensure_counters(engine: &Engine) {
    for agent in engine.settings().identity.ephemeral.iter().filter(|a| a.max_requests.is_some()) {
        if ephemeral::ensure_counter(&mut SharedData, &ephemeral::counter_key(&agent.name)).is_err() {
            log::error!("grantwall: could not create the request counter of {}", agent.name);
        }
    }
}
