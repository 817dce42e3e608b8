//! Token usage reported by the upstream, read from a JSON response or from SSE events.
//!
//! - OpenAI chat/completions, completions, embeddings: `usage{prompt_tokens, completion_tokens, total_tokens}`
//!   (streaming: in a last chunk with `"choices": []`, only with `stream_options.include_usage`).
//! - OpenAI Responses: `usage{input_tokens, output_tokens, total_tokens}`; streaming: `response.usage` of
//!   the `response.completed` event.
//! - Anthropic messages: `usage{input_tokens, output_tokens, cache_*_input_tokens}`; streaming:
//!   `message.usage` of `message_start`, then cumulative `usage.output_tokens` in `message_delta`.
//!
//! Later reports overwrite earlier ones field by field, which is right for all three stream shapes.
//! Duplicate keys or wrong types make usage unreadable (the caller falls back to an estimate).

use crate::strict;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: Option<u64>,
    pub output: Option<u64>,
    pub total: Option<u64>,
}

impl Usage {
    /// Tokens to charge: the reported total, or input + output, whichever is larger; None if nothing known.
    pub fn tokens(&self) -> Option<u64> {
        let sum = match (self.input, self.output) {
            (None, None) => None,
            (i, o) => Some(i.unwrap_or(0).saturating_add(o.unwrap_or(0))),
        };
        match (sum, self.total) {
            (Some(s), Some(t)) => Some(s.max(t)),
            (s, t) => s.or(t),
        }
    }

    /// Overwrite the fields `later` reports.
    pub fn merge(&mut self, later: Usage) {
        self.input = later.input.or(self.input);
        self.output = later.output.or(self.output);
        self.total = later.total.or(self.total);
    }
}

/// What one SSE event says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventUsage {
    pub usage: Option<Usage>,
    /// An OpenAI chunk carrying only usage (`"choices": []`): the one Grantwall removes when it asked for
    /// usage on the client's behalf.
    pub usage_only_chunk: bool,
}

/// Usage of a complete JSON response body (None: the body reports none).
pub fn from_json(body: &str) -> Result<Option<Usage>, String> {
    let members = strict::members(body.trim_start()).map_err(|e| format!("response body: {e}"))?;
    match members.get("usage") {
        Some(raw) => usage_object(raw.get()),
        None => Ok(None),
    }
}

/// Usage in one SSE event's data. Events that cannot carry usage are not parsed at all.
pub fn from_event(data: &str) -> Result<EventUsage, String> {
    if !data.contains("usage") {
        return Ok(EventUsage::default());
    }
    let members = strict::members(data.trim_start()).map_err(|e| format!("SSE event: {e}"))?;
    let mut usage = match members.get("usage") {
        Some(raw) => usage_object(raw.get())?,
        None => None,
    };
    // Anthropic message_start (`message.usage`) and Responses API events (`response.usage`).
    for outer in ["message", "response"] {
        if let Some(raw) = members.get(outer).filter(|r| r.get().trim_start().starts_with('{')) {
            let inner = strict::members(raw.get()).map_err(|e| format!("SSE event {outer}: {e}"))?;
            if let Some(u) = inner.get("usage") {
                if let Some(found) = usage_object(u.get())? {
                    usage.get_or_insert_with(Usage::default).merge(found);
                }
            }
        }
    }
    let usage_only_chunk = usage.is_some() && members.get("choices").is_some_and(|c| c.get().trim() == "[]");
    Ok(EventUsage { usage, usage_only_chunk })
}

/// A `usage` member: an object, or null (None).
fn usage_object(raw: &str) -> Result<Option<Usage>, String> {
    if raw.trim() == "null" {
        return Ok(None);
    }
    let members = strict::members(raw).map_err(|e| format!("usage: {e}"))?;
    let mut u = Usage::default();
    let mut cached = 0u64;
    for (key, value) in &members.0 {
        let slot = match key.as_ref() {
            "prompt_tokens" | "input_tokens" => &mut u.input,
            "completion_tokens" | "output_tokens" => &mut u.output,
            "total_tokens" => &mut u.total,
            "cache_creation_input_tokens" | "cache_read_input_tokens" => {
                cached = cached.saturating_add(count(value.get(), key)?.unwrap_or(0));
                continue;
            }
            _ => continue,
        };
        if let Some(n) = count(value.get(), key)? {
            if slot.replace(n).is_some() {
                return Err(format!("usage reports {key} twice"));
            }
        }
    }
    if cached > 0 {
        u.input = Some(u.input.unwrap_or(0).saturating_add(cached));
    }
    Ok(Some(u))
}

fn count(raw: &str, key: &str) -> Result<Option<u64>, String> {
    let raw = raw.trim();
    if raw == "null" {
        return Ok(None);
    }
    raw.parse::<u64>().map(Some).map_err(|_| format!("usage.{key} is not a non-negative integer"))
}

/// A rough token estimate when the upstream reported no usage: four bytes per token (OpenAI's rule of
/// thumb for English text), rounded up, of request and response bodies together.
pub fn estimate(request_bytes: usize, response_bytes: usize) -> u64 {
    let bytes = request_bytes.saturating_add(response_bytes) as u64;
    bytes.div_ceil(4)
}
