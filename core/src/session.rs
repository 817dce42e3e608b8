//! Session binding (MCP 2025-11-25 `Mcp-Session-Id`): which identity initialized a session.
//!
//! The filter stores one record per session in Proxy-Wasm shared data (shared by all workers). Shared data
//! cannot be enumerated or deleted, so the store is a fixed table: a session id hashes to one of
//! [`SESSION_SLOTS`] slots, and a newer session overwrites an older one in its slot. A record expires
//! [`SESSION_TTL_SECS`] after `initialize`. A session whose record is gone (evicted, expired, or created
//! before Grantwall saw it) is unknown: the filter answers 404, which tells MCP clients to initialize a
//! new session — never a guess about who owns it.

/// Size of the session table (bounded memory: about `SESSION_SLOTS` × 300 bytes at most).
pub const SESSION_SLOTS: u32 = 16384;

/// How long a binding lives after `initialize`.
pub const SESSION_TTL_SECS: u64 = 24 * 3600;

/// The slot of a session id (FNV-1a; session ids are chosen by the server, not the caller).
pub fn slot(session_id: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in session_id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % SESSION_SLOTS
}

/// Encode a binding: `v1`, expiry (unix seconds), session id, principal (empty: no identity).
pub fn encode(session_id: &str, principal: Option<&str>, now_secs: u64) -> Vec<u8> {
    format!("v1\n{}\n{session_id}\n{}", now_secs.saturating_add(SESSION_TTL_SECS), principal.unwrap_or("")).into_bytes()
}

/// Who a session belongs to, from the record in its slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner<'a> {
    /// No live record for this session id.
    Unknown,
    /// Bound to this principal (None: initialized without identity).
    Bound(Option<&'a str>),
}

pub fn owner<'a>(record: &'a [u8], session_id: &str, now_secs: u64) -> Owner<'a> {
    let Ok(text) = std::str::from_utf8(record) else { return Owner::Unknown };
    let mut parts = text.splitn(4, '\n');
    let (Some("v1"), Some(expiry), Some(id), Some(principal)) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Owner::Unknown;
    };
    match expiry.parse::<u64>() {
        Ok(e) if e > now_secs && id == session_id => Owner::Bound(Some(principal).filter(|p| !p.is_empty())),
        _ => Owner::Unknown,
    }
}

/// Whether a caller may use a session with this owner.
pub fn may_use(owner: &Owner<'_>, caller: Option<&str>) -> bool {
    matches!(owner, Owner::Bound(p) if *p == caller)
}
