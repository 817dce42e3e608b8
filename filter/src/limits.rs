//! Rate limits, fan-out caps and context budgets, enforced across all Envoy workers.
//!
//! State lives in Proxy-Wasm shared data (one store per VM id, shared by every worker) in two fixed slot
//! tables: `grantwall/limits/rate/<n>` ([`RATE_SLOTS`]) and `grantwall/limits/fanout/<n>` ([`FANOUT_SLOTS`]).
//! The math and the value layouts are in `grantwall_core::limits`; this module only reads, decides and writes
//! back with compare-and-swap, retrying on conflict, so concurrent workers never lose an update.
//!
//! Envoy treats a CAS token of 0 as "write unconditionally", and a key that does not exist yet has no token:
//! two workers creating the same slot at once could overwrite each other. So every slot is created (empty)
//! at configure time, before traffic, and request-time writes are always conditional.
//!
//! A fan-out count is held by a [`FanOutLease`] owned by the request's context; dropping the lease (on_log,
//! or the context's destruction on any other path) gives the count back.

use crate::host::{self, CasWrite, HostError};
use grantwall_core::limits::{
    candidate_slots, choose_slot, decode_fanout, encode_fanout, encode_rate, fanout_slot_state, rate_slot_state,
    retry_after_secs, Admit, FanOutCheck, Fingerprint, Limits, RateCheck, Refused, SlotState, Subject,
    FANOUT_SLOTS, RATE_SLOTS,
};

const RATE_PREFIX: &str = "grantwall/limits/rate/";
const FANOUT_PREFIX: &str = "grantwall/limits/fanout/";
/// Conflicts to ride out before giving up (a worker that loses a race re-reads and decides again).
const CAS_ATTEMPTS: usize = 64;
/// What a refused fan-out tells the client to wait (calls in flight end at their own pace).
const FAN_OUT_RETRY_SECS: u64 = 1;

/// Headers published for Envoy's global rate-limit filter (descriptors on `request_headers`).
pub const IDENTITY_HEADER: &str = "x-grantwall-identity";
pub const TOOL_HEADER: &str = "x-grantwall-tool";
pub const BACKEND_HEADER: &str = "x-grantwall-backend";

fn slot_key(prefix: &str, slot: u32) -> String {
    format!("{prefix}{slot}")
}

/// Create the slot tables the config needs (absent slots only). Runs at configure time, before traffic.
pub fn prepare(limits: &Limits) -> Result<(), HostError> {
    let (rate, fan_out) = limits.tables_needed();
    let tables = [(rate, RATE_PREFIX, RATE_SLOTS), (fan_out, FANOUT_PREFIX, FANOUT_SLOTS)];
    for (_, prefix, slots) in tables.into_iter().filter(|(needed, _, _)| *needed) {
        for slot in 0..slots {
            let key = slot_key(prefix, slot);
            if host::shared_data(&key)?.is_none() {
                host::set_shared_data(&key, b"", 0)?;
            }
        }
    }
    Ok(())
}

/// Publish who is calling what, for descriptors of Envoy's `envoy.filters.http.ratelimit`.
pub fn publish_headers(s: &Subject<'_>) -> Result<(), HostError> {
    let mut value = String::new();
    grantwall_core::limits::header_value(s.principal.unwrap_or("anonymous"), &mut value);
    host::set_request_header(IDENTITY_HEADER, &value)?;
    grantwall_core::limits::header_value(s.backend_name.unwrap_or("none"), &mut value);
    host::set_request_header(BACKEND_HEADER, &value)?;
    if let Some(tool) = s.tool {
        grantwall_core::limits::header_value(tool, &mut value);
        host::set_request_header(TOOL_HEADER, &value)?;
    }
    Ok(())
}

/// Counts held by one request while it is in flight; given back when dropped.
#[derive(Default)]
pub struct FanOutLease {
    held: Vec<Fingerprint>,
}

impl Drop for FanOutLease {
    fn drop(&mut self) {
        for fp in &self.held {
            if release(fp).is_err() {
                log::error!("grantwall: could not release a fan-out count (it heals after {} s idle)", grantwall_core::limits::FANOUT_STALE_SECS);
            }
        }
    }
}

/// Admit a request against every limit that applies: Ok(Ok(lease)) admitted (the lease holds its fan-out
/// counts), Ok(Err(refusal)) over a limit. Host failures are Err: the caller fails closed.
pub fn admit<'a>(limits: &'a Limits, s: &Subject<'_>) -> Result<Result<Option<FanOutLease>, Refused<'a>>, HostError> {
    let now = host::current_time_nanos()?;
    let mut lease: Option<FanOutLease> = None;
    // Fan-out first: it can be given back, a token cannot.
    for check in limits.fan_out_checks(s) {
        if !acquire(&check, now / 1_000_000_000)? {
            // Dropping the lease releases what was already taken.
            return Ok(Err(Refused { reason: "fan-out-exceeded", rule: check.rule, retry_after_secs: FAN_OUT_RETRY_SECS }));
        }
        lease.get_or_insert_with(FanOutLease::default).held.push(check.fingerprint);
    }
    // Rates: look at every bucket before taking from any, so a refusal by one limit costs no other.
    // Keys are SHA-256 fingerprints: derive them once for both passes.
    let checks: Vec<RateCheck<'a>> = limits.rate_checks(s).collect();
    for check in &checks {
        if let Some(refused) = take_token(check, now, false)? {
            return Ok(Err(refused));
        }
    }
    for check in &checks {
        if let Some(refused) = take_token(check, now, true)? {
            return Ok(Err(refused));
        }
    }
    Ok(Ok(lease))
}

/// One token from one bucket (`commit: false` only looks). Some(refusal) when the bucket is empty.
fn take_token<'a>(check: &RateCheck<'a>, now: u64, commit: bool) -> Result<Option<Refused<'a>>, HostError> {
    let slots = candidate_slots(&check.fingerprint, RATE_SLOTS);
    let keys = [slot_key(RATE_PREFIX, slots[0]), slot_key(RATE_PREFIX, slots[1])];
    for _ in 0..CAS_ATTEMPTS {
        let values = [host::shared_data(&keys[0])?, host::shared_data(&keys[1])?];
        let read = |i: usize| {
            let v = values[i].as_ref().map(|(v, _)| v.as_slice());
            rate_slot_state(v, &check.fingerprint, now)
        };
        let states = [read(0), read(1)];
        // Both candidates live for other keys: reuse the one nearest to full (bounded table; see docs).
        let i = choose_slot([states[0].0, states[1].0], true).unwrap_or(0);
        let tat = if states[i].0 == SlotState::Mine { states[i].1 } else { 0 };
        match check.bucket.admit(tat, now) {
            Admit::No { retry_after_nanos } => {
                return Ok(Some(Refused { reason: "rate-limited", rule: check.rule, retry_after_secs: retry_after_secs(retry_after_nanos) }));
            }
            Admit::Yes { .. } if !commit => return Ok(None),
            Admit::Yes { tat, .. } => {
                let cas = values[i].as_ref().map_or(0, |(_, cas)| *cas);
                let value = encode_rate(&check.fingerprint, tat, &check.bucket);
                if host::set_shared_data(&keys[i], &value, cas)? == CasWrite::Written {
                    return Ok(None);
                }
            }
        }
    }
    Err(HostError(host::STATUS_CAS_RETRIES))
}

/// Take one in-flight slot; false when the caller is at its cap (or the table has no room for it).
fn acquire(check: &FanOutCheck<'_>, now_secs: u64) -> Result<bool, HostError> {
    let slots = candidate_slots(&check.fingerprint, FANOUT_SLOTS);
    let keys = [slot_key(FANOUT_PREFIX, slots[0]), slot_key(FANOUT_PREFIX, slots[1])];
    for _ in 0..CAS_ATTEMPTS {
        let values = [host::shared_data(&keys[0])?, host::shared_data(&keys[1])?];
        let read = |i: usize| fanout_slot_state(values[i].as_ref().map(|(v, _)| v.as_slice()), &check.fingerprint, now_secs);
        let states = [read(0), read(1)];
        // Never evict a live count: that would let its owner exceed the cap. A full table refuses.
        let Some(i) = choose_slot([states[0].0, states[1].0], false) else { return Ok(false) };
        let count = states[i].1;
        if count >= check.cap {
            return Ok(false);
        }
        let cas = values[i].as_ref().map_or(0, |(_, cas)| *cas);
        if host::set_shared_data(&keys[i], &encode_fanout(&check.fingerprint, count + 1, now_secs), cas)? == CasWrite::Written {
            return Ok(true);
        }
    }
    Err(HostError(host::STATUS_CAS_RETRIES))
}

/// Give one in-flight slot back. A slot no longer this key's (stale and reused) is left alone.
fn release(fp: &Fingerprint) -> Result<(), HostError> {
    let now_secs = host::now_secs()?;
    for slot in candidate_slots(fp, FANOUT_SLOTS) {
        let key = slot_key(FANOUT_PREFIX, slot);
        for _ in 0..CAS_ATTEMPTS {
            let Some((value, cas)) = host::shared_data(&key)? else { break };
            let Some((owner, count)) = decode_fanout(&value, now_secs) else { break };
            if &owner != fp {
                break;
            }
            let value = encode_fanout(fp, count.saturating_sub(1), now_secs);
            if host::set_shared_data(&key, &value, cas)? == CasWrite::Written {
                return Ok(());
            }
        }
    }
    // Not found in either candidate: the count went stale and its slot was reused; nothing to give back.
    Ok(())
}
