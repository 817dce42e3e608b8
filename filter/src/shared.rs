//! State shared by all Envoy worker threads, in Proxy-Wasm shared data.
//!
//! Keys start with `grantwall/` (Istio leaves `vm_id` empty, so other plugins may share the namespace).
//! Pin state: one key per (backend, pinned hash, tool) — bounded by the number of pins in the config — whose
//! value says whether the last `tools/list` showed that tool with another definition. The pinned hash is in
//! the key, so re-pinning a tool starts from a clean state. Writes use CAS and retry on conflict.
//! Session state: a fixed table of slots (grantwall_core::session), each holding one binding.

use crate::host::{self, CasWrite, HostError};
use grantwall_core::session;

const PIN_PREFIX: &str = "grantwall/pin/";
const CHANGED: &[u8] = b"changed";
const SAME: &[u8] = b"ok";

fn pin_key(backend: &str, pinned: &str, tool: &str) -> String {
    format!("{PIN_PREFIX}{backend}/{pinned}/{tool}")
}

/// Whether a `tools/list` seen by any worker showed this pinned tool with a different definition.
pub fn pin_changed(backend: &str, pinned: &str, tool: &str) -> Result<bool, HostError> {
    Ok(host::shared_data(&pin_key(backend, pinned, tool))?.is_some_and(|(v, _)| v == CHANGED))
}

/// Record what a `tools/list` showed for a pinned tool.
pub fn record_pin(backend: &str, pinned: &str, tool: &str, changed: bool) -> Result<(), HostError> {
    let key = pin_key(backend, pinned, tool);
    let value = if changed { CHANGED } else { SAME };
    for _ in 0..4 {
        let cas = match host::shared_data(&key)? {
            Some((current, _)) if current == value => return Ok(()),
            Some((_, cas)) => cas,
            None => 0,
        };
        if host::set_shared_data(&key, value, cas)? == CasWrite::Written {
            return Ok(());
        }
    }
    Err(HostError(host::STATUS_CAS_RETRIES))
}

/// What a binding table holds: MCP sessions, or tasks (same slot table design, own key prefix).
#[derive(Debug, Clone, Copy)]
pub enum Table {
    Session,
    Task,
}

fn slot_key(table: Table, id: &str) -> String {
    let prefix = match table {
        Table::Session => "grantwall/session/",
        Table::Task => "grantwall/task/",
    };
    format!("{prefix}{}", session::slot(id))
}

fn session_key(session_id: &str) -> String {
    slot_key(Table::Session, session_id)
}

/// Bind a new session to the identity that initialized it (a newer session takes the slot).
pub fn bind_session(session_id: &str, principal: Option<&str>) -> Result<(), HostError> {
    bind(Table::Session, session_id, principal)
}

/// Bind an id (session or task) to the identity that created it.
pub fn bind(table: Table, id: &str, principal: Option<&str>) -> Result<(), HostError> {
    let record = session::encode(id, principal, host::now_secs()?);
    let key = slot_key(table, id);
    for _ in 0..4 {
        let cas = host::shared_data(&key)?.map_or(0, |(_, cas)| cas);
        if host::set_shared_data(&key, &record, cas)? == CasWrite::Written {
            return Ok(());
        }
    }
    Err(HostError(host::STATUS_CAS_RETRIES))
}

/// Whether `caller` may use this session: Ok(None) yes; Ok(Some(reason)) no.
pub fn session_refusal(session_id: &str, caller: Option<&str>) -> Result<Option<&'static str>, HostError> {
    let now = host::now_secs()?;
    let record = host::shared_data(&session_key(session_id))?.map(|(v, _)| v).unwrap_or_default();
    let owner = session::owner(&record, session_id, now);
    Ok(match owner {
        session::Owner::Unknown => Some("session-unknown"),
        _ if session::may_use(&owner, caller) => None,
        _ => Some("session-identity-mismatch"),
    })
}

/// Whether `caller` may use this task: Ok(None) yes; Ok(Some(reason)) no (unknown or someone else's).
pub fn task_refusal(task_id: &str, caller: Option<&str>) -> Result<Option<&'static str>, HostError> {
    let now = host::now_secs()?;
    let record = host::shared_data(&slot_key(Table::Task, task_id))?.map(|(v, _)| v).unwrap_or_default();
    let owner = session::owner(&record, task_id, now);
    Ok(match owner {
        session::Owner::Unknown => Some("task-unknown"),
        _ if session::may_use(&owner, caller) => None,
        _ => Some("task-foreign"),
    })
}
