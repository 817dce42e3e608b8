//! Per-caller list filtering: rewrite a `tools/list`, `prompts/list`, `resources/list` or
//! `resources/templates/list` response so that it lists only what the caller could use.
//!
//! The caller's judge decides each item (the filter asks the engine whether `tools/call` of that name,
//! `prompts/get` of that name or `resources/read` of that URI would be allowed). Templates have no URI a
//! grant can name, so the filter keeps a template only when an unrestricted `resources/read` grant exists.
//! Everything else in the response (`nextCursor`, `_meta`, unknown members) is copied byte for byte, and
//! `cacheScope` is forced to `"private"` so a shared cache can never hand one caller's list to another.
//!
//! The body is read strictly (duplicate keys refuse it, at the envelope, result and item level): a list
//! Grantwall cannot read with certainty is replaced by a JSON-RPC error, never passed on unfiltered.

use crate::strict::{self, Members};
use serde_json::value::RawValue;

/// The list methods whose responses are filtered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
    ResourceTemplates,
    /// `tasks/list` (2025-11-25): only the caller's own tasks.
    Tasks,
}

impl ListKind {
    pub fn from_method(method: &str) -> Option<ListKind> {
        match method {
            "tools/list" => Some(ListKind::Tools),
            "prompts/list" => Some(ListKind::Prompts),
            "resources/list" => Some(ListKind::Resources),
            "resources/templates/list" => Some(ListKind::ResourceTemplates),
            "tasks/list" => Some(ListKind::Tasks),
            _ => None,
        }
    }

    /// The result member holding the list.
    pub fn array_key(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::ResourceTemplates => "resourceTemplates",
            ListKind::Tasks => "tasks",
        }
    }

    /// The item member the judge needs (`name` or `uri`; templates: `uriTemplate`).
    pub fn key_field(self) -> &'static str {
        match self {
            ListKind::Tools | ListKind::Prompts => "name",
            ListKind::Resources => "uri",
            ListKind::ResourceTemplates => "uriTemplate",
            ListKind::Tasks => "taskId",
        }
    }
}

/// One listed item as the judge sees it.
pub struct ListItem<'a> {
    /// Tool/prompt name, resource URI or URI template.
    pub key: &'a str,
    /// The item's raw JSON (for definition hashing).
    pub raw: &'a RawValue,
}

/// Why a list response could not be filtered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListError(pub String);

/// What became of one message.
#[derive(Debug)]
pub enum Filtered {
    /// Not the response to the list request (another id, a request or notification): leave it alone.
    NotOurs,
    /// An error response for our id: nothing to filter.
    ErrorResponse,
    Rewritten { body: Vec<u8>, kept: usize, dropped: usize },
}

/// Filter one JSON-RPC message if it is the response to our list request (`expected_id` as written in the
/// request). `force_private` sets `result.cacheScope` to `"private"` (2026-07-28 caching hints).
pub fn filter_message(
    kind: ListKind,
    expected_id: &str,
    body: &[u8],
    force_private: bool,
    mut judge: impl FnMut(&ListItem<'_>) -> bool,
) -> Result<Filtered, ListError> {
    let text = std::str::from_utf8(body).map_err(|_| err("response is not UTF-8"))?;
    let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
    let envelope = strict::members(text).map_err(|e| err(&format!("response is not one JSON object: {e}")))?;
    if envelope.get("method").is_some() {
        return Ok(Filtered::NotOurs);
    }
    match envelope.get("id") {
        Some(id) if strict::same_id(id.get(), expected_id) => {}
        _ => return Ok(Filtered::NotOurs),
    }
    let Some(result) = envelope.get("result") else {
        return if envelope.get("error").is_some() { Ok(Filtered::ErrorResponse) } else { Err(err("response has no result")) };
    };
    if envelope.get("error").is_some() {
        return Err(err("response has both result and error"));
    }
    let result = strict::members(result.get()).map_err(|e| err(&format!("result is not an object: {e}")))?;
    let key = kind.array_key();
    let array = result.get(key).ok_or_else(|| err(&format!("result has no {key:?} array")))?;
    let items = strict::elements(array.get()).map_err(|e| err(&format!("{key} is not an array: {e}")))?;

    let mut out = Vec::with_capacity(body.len());
    out.push(b'{');
    let mut first = true;
    let (mut kept, mut dropped) = (0usize, 0usize);
    for (k, v) in &envelope.0 {
        member_prefix(&mut out, &mut first, k);
        if k == "result" {
            write_result(&mut out, kind, &result, &items, force_private, &mut judge, &mut kept, &mut dropped)?;
        } else {
            out.extend_from_slice(v.get().as_bytes());
        }
    }
    out.push(b'}');
    Ok(Filtered::Rewritten { body: out, kept, dropped })
}

#[allow(clippy::too_many_arguments)]
fn write_result(
    out: &mut Vec<u8>,
    kind: ListKind,
    result: &Members<'_>,
    items: &[&RawValue],
    force_private: bool,
    judge: &mut impl FnMut(&ListItem<'_>) -> bool,
    kept: &mut usize,
    dropped: &mut usize,
) -> Result<(), ListError> {
    out.push(b'{');
    let mut first = true;
    let mut saw_scope = false;
    for (k, v) in &result.0 {
        member_prefix(out, &mut first, k);
        if k == kind.array_key() {
            out.push(b'[');
            let mut first_item = true;
            for item in items {
                // One pass: the key member, and no duplicate keys (the client would read the last one).
                let key = strict::string_member(item.get(), kind.key_field())
                    .map_err(|e| err(&format!("a listed item is not a well-formed object: {e}")))?
                    .ok_or_else(|| err(&format!("a listed item has no string {:?}", kind.key_field())))?;
                if judge(&ListItem { key: &key, raw: item }) {
                    if !first_item {
                        out.push(b',');
                    }
                    first_item = false;
                    out.extend_from_slice(item.get().as_bytes());
                    *kept += 1;
                } else {
                    *dropped += 1;
                }
            }
            out.push(b']');
        } else if k == "cacheScope" && force_private {
            saw_scope = true;
            out.extend_from_slice(b"\"private\"");
        } else {
            out.extend_from_slice(v.get().as_bytes());
        }
    }
    if force_private && !saw_scope {
        member_prefix(out, &mut first, "cacheScope");
        out.extend_from_slice(b"\"private\"");
    }
    out.push(b'}');
    Ok(())
}

fn member_prefix(out: &mut Vec<u8>, first: &mut bool, key: &str) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    let _ = serde_json::to_writer(&mut *out, key);
    out.push(b':');
}

fn err(msg: &str) -> ListError {
    ListError(msg.to_owned())
}

/// The JSON-RPC error that replaces a list response Grantwall could not filter.
pub fn unfilterable_reply(id: &str) -> Vec<u8> {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32603,"message":"Grantwall could not filter this list response","data":{{"reason":"list-unfilterable"}}}}}}"#
    )
    .into_bytes()
}
