//! Fixed budget windows, aligned to the Unix epoch: window `k` covers `[k·len, (k+1)·len)` seconds, so a
//! 86400-second window is the UTC day and every Envoy worker (and every proxy with a synced clock) agrees
//! on where a window starts. A fixed window is cheap (one counter, no history) and its reset time is exact,
//! which is what `Retry-After` reports; the trade-off is that a caller can spend up to twice the budget
//! around a boundary (end of one window, start of the next).
//!
//! A counter is stored as `"<window start> <tokens used>"`; a value from an older window reads as zero.

/// Longest window accepted (a year): keeps every arithmetic step far from overflow.
pub const MAX_WINDOW_SECONDS: u64 = 366 * 86_400;

/// Start of the window holding `now` (seconds since the epoch).
pub fn window_start(now: u64, len: u64) -> u64 {
    if len == 0 {
        return now;
    }
    now - now % len
}

/// Seconds until the window holding `now` ends (at least 1: a `Retry-After: 0` invites a busy loop).
pub fn seconds_to_reset(now: u64, len: u64) -> u64 {
    let end = window_start(now, len).saturating_add(len);
    end.saturating_sub(now).max(1)
}

/// Tokens used in the current window according to a stored counter (absent, unreadable or older: 0).
pub fn used(stored: Option<&[u8]>, now: u64, len: u64) -> u64 {
    match stored.and_then(decode) {
        Some((start, used)) if start == window_start(now, len) => used,
        _ => 0,
    }
}

/// The counter after charging `tokens` now.
pub fn charge(stored: Option<&[u8]>, now: u64, len: u64, tokens: u64) -> Vec<u8> {
    let total = used(stored, now, len).saturating_add(tokens);
    encode(window_start(now, len), total)
}

pub fn encode(start: u64, used: u64) -> Vec<u8> {
    format!("{start} {used}").into_bytes()
}

pub fn decode(value: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(value).ok()?;
    let (start, used) = text.split_once(' ')?;
    Some((start.parse().ok()?, used.parse().ok()?))
}

/// What is left of a budget.
pub fn remaining(limit: u64, used: u64) -> u64 {
    limit.saturating_sub(used)
}
