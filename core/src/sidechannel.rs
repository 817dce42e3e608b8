//! Server→client side channels: what the filter reads in them.
//!
//! - Sampling with tools: a client's JSON-RPC *response* to `sampling/createMessage` may carry `tool_use`
//!   blocks that the server will then execute, bypassing `tools/call` authorization. The filter judges each
//!   named tool as a `tools/call` by the same caller and refuses the response if any is not granted.
//! - URL elicitation: `elicitation/create` with `mode: "url"` asks the client to open a URL; only hosts on
//!   the backend's allowlist get through (`https` only, no userinfo, exact host or `*.suffix`).
//! - Tasks (2025-11-25): the `taskId` a task-augmented request created, and the one `tasks/get|result|cancel`
//!   name, so the filter can bind tasks to their creator.
//!
//! Everything is read strictly (duplicate keys refuse), and anything unreadable is refused by the caller.

use crate::strict;
use serde_json::value::RawValue;

/// Names of the `tool_use` blocks in a client's response (`result.content`, one block or an array).
pub fn tool_use_names(body: &[u8]) -> Result<Vec<String>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "not UTF-8".to_string())?;
    let envelope = strict::members(text.trim()).map_err(|e| e.to_string())?;
    let Some(result) = envelope.get("result") else { return Ok(Vec::new()) };
    let result = strict::members(result.get()).map_err(|e| e.to_string())?;
    let Some(content) = result.get("content") else { return Ok(Vec::new()) };
    let blocks: Vec<&RawValue> = if content.get().trim_start().starts_with('[') {
        strict::elements(content.get()).map_err(|e| e.to_string())?
    } else {
        vec![content]
    };
    let mut names = Vec::new();
    for block in blocks {
        let block = strict::members(block.get()).map_err(|e| e.to_string())?;
        if block.get("type").and_then(strict::string).as_deref() == Some("tool_use") {
            let name = block.get("name").and_then(strict::string).ok_or("a tool_use block without a string name")?;
            names.push(name.into_owned());
        }
    }
    Ok(names)
}

/// Whether an SSE event's data might be a URL elicitation and must be parsed (no escapes, no method name:
/// certainly not; JSON escapes such as `\/` could hide the method name from a plain substring test).
pub fn may_be_elicitation(data: &str) -> bool {
    data.contains('\\') || data.contains("elicitation/create")
}

/// The URL of a URL-mode `elicitation/create` request, or None for any other message.
pub fn elicitation_url(data: &str) -> Result<Option<String>, String> {
    let envelope = strict::members(data.trim()).map_err(|e| e.to_string())?;
    if envelope.get("method").and_then(strict::string).as_deref() != Some("elicitation/create") {
        return Ok(None);
    }
    let params = envelope.get("params").ok_or("elicitation/create without params")?;
    let params = strict::members(params.get()).map_err(|e| e.to_string())?;
    if params.get("mode").and_then(strict::string).as_deref() != Some("url") {
        return Ok(None);
    }
    let url = params.get("url").and_then(strict::string).ok_or("URL elicitation without a string url")?;
    Ok(Some(url.into_owned()))
}

/// Whether a URL may be shown to the user: `https://`, no userinfo, host on the allowlist.
pub fn url_host_allowed(url: &str, allowed: &[String]) -> bool {
    let Some(rest) = url.strip_prefix("https://") else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains(['@', '\\', '%']) || authority.is_empty() {
        return false;
    }
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if !h.contains(']') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    allowed.iter().any(|a| match a.strip_prefix("*.") {
        Some(suffix) => host.strip_suffix(suffix).is_some_and(|label| label.len() > 1 && label.ends_with('.')),
        None => host == *a,
    })
}

/// Whether a request's `params` has a `task` member (task-augmented request, 2025-11-25).
pub fn is_task_augmented(body: &[u8]) -> Result<bool, String> {
    Ok(params_member(body, "task")?.is_some())
}

/// `params.taskId` of `tasks/get|result|cancel`.
pub fn task_id_param(body: &[u8]) -> Result<Option<String>, String> {
    Ok(params_member(body, "taskId")?.and_then(|raw| strict::string(&raw).map(|s| s.into_owned())))
}

fn params_member(body: &[u8], key: &str) -> Result<Option<Box<RawValue>>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "not UTF-8".to_string())?;
    let envelope = strict::members(text.trim()).map_err(|e| e.to_string())?;
    let Some(params) = envelope.get("params") else { return Ok(None) };
    let params = strict::members(params.get()).map_err(|e| e.to_string())?;
    Ok(params.get(key).map(|v| v.to_owned()))
}

/// `result.task.taskId` of the response with our id (a created task), or None.
pub fn created_task_id(message: &str, expected_id: &str) -> Option<String> {
    let envelope = strict::members(message.trim()).ok()?;
    if !strict::same_id(envelope.get("id")?.get(), expected_id) {
        return None;
    }
    let result = strict::members(envelope.get("result")?.get()).ok()?;
    let task = strict::members(result.get("task")?.get()).ok()?;
    task.get("taskId").and_then(strict::string).map(|s| s.into_owned())
}
