//! LLM request bodies: which API a path is, the fields policy reads, and the rewrites Grantwall makes.
//!
//! Parsing is as strict as for MCP (`jsonrpc.rs`): one JSON object, UTF-8 without BOM, no duplicate key at
//! any depth, no key that a lenient parser could fold onto a field Grantwall reads (`Model`, `model\u0000`),
//! and each field read has exactly the JSON type the API defines. `null` for an optional field is read as
//! "absent", as the OpenAI API does. Anything else is refused before the upstream sees it.

use crate::jsonrpc::{self, ParseError};
use crate::strict;
use std::borrow::Cow;
use std::fmt;

/// The inspected LLM APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// OpenAI `/v1/chat/completions`.
    ChatCompletions,
    /// OpenAI legacy `/v1/completions`.
    Completions,
    /// OpenAI `/v1/responses`.
    Responses,
    /// OpenAI `/v1/embeddings`.
    Embeddings,
    /// Anthropic `/v1/messages`.
    AnthropicMessages,
}

const PATHS: &[(&str, Api)] = &[
    ("/v1/chat/completions", Api::ChatCompletions),
    ("/v1/completions", Api::Completions),
    ("/v1/responses", Api::Responses),
    ("/v1/embeddings", Api::Embeddings),
    ("/v1/messages", Api::AnthropicMessages),
];

impl Api {
    /// The API of a request path (query ignored). The path must end with the API path, segment-wise, so a
    /// gateway prefix (`/openai/v1/chat/completions`) works; anything else (`/v1/chat%2Fcompletions`,
    /// `/v1/messages/batches`) is not one of these APIs.
    pub fn from_path(path: &str) -> Option<Api> {
        let path = path.split(['?', '#']).next().unwrap_or(path);
        PATHS.iter().find(|(p, _)| path.ends_with(p)).map(|(_, api)| *api)
    }

    /// Stable name for audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::ChatCompletions => "chat.completions",
            Api::Completions => "completions",
            Api::Responses => "responses",
            Api::Embeddings => "embeddings",
            Api::AnthropicMessages => "messages",
        }
    }

    /// The output-token limit field to add when capping a request that has none (embeddings: none).
    pub fn max_tokens_field(self) -> Option<&'static str> {
        match self {
            Api::ChatCompletions | Api::Completions | Api::AnthropicMessages => Some("max_tokens"),
            Api::Responses => Some("max_output_tokens"),
            Api::Embeddings => None,
        }
    }

    /// Whether a streaming response reports usage only when asked (`stream_options.include_usage`).
    pub fn usage_needs_opt_in(self) -> bool {
        matches!(self, Api::ChatCompletions | Api::Completions)
    }
}

/// Fields read from the body; near-misses of these are refused.
const FIELDS: &[&str] = &["model", "stream", "stream_options", "max_tokens", "max_completion_tokens", "max_output_tokens"];

/// Output-token limit fields, by API.
fn limit_fields(api: Api) -> &'static [&'static str] {
    match api {
        Api::ChatCompletions => &["max_tokens", "max_completion_tokens"],
        Api::Completions | Api::AnthropicMessages => &["max_tokens"],
        Api::Responses => &["max_output_tokens"],
        Api::Embeddings => &[],
    }
}

/// What policy reads from an LLM request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmRequest<'a> {
    pub api: Api,
    pub model: Cow<'a, str>,
    pub stream: bool,
    /// `stream_options.include_usage` as sent (None: not sent).
    pub include_usage: Option<bool>,
    /// Output-token limits present in the body: (field, value).
    pub max_tokens: Vec<(&'static str, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError(pub String);

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err(msg: impl Into<String>) -> RequestError {
    RequestError(msg.into())
}

fn strict_error(e: ParseError) -> RequestError {
    match e {
        ParseError::DuplicateKey(k) => err(format!("duplicate key {k:?} in the request body")),
        ParseError::AmbiguousKey(k) => err(format!("ambiguous key {k:?} in the request body")),
        other => err(other.to_string()),
    }
}

/// Parse a complete request body for `api`.
pub fn parse(api: Api, body: &[u8]) -> Result<LlmRequest<'_>, RequestError> {
    let text = std::str::from_utf8(body).map_err(|_| err("the request body is not UTF-8"))?;
    if !text.trim_start_matches([' ', '\t', '\r', '\n']).starts_with('{') {
        // Includes a BOM, UTF-16 and arrays: refused, not guessed at.
        return Err(err("the request body must be one JSON object (UTF-8, no byte-order mark)"));
    }
    let members = strict::members(text).map_err(|e| match e.to_string() {
        m if m.starts_with("duplicate key") => err(format!("{m} in the request body")),
        m => err(format!("the request body is not valid JSON: {m}")),
    })?;
    let mut model = None;
    let mut stream = false;
    let mut include_usage = None;
    let mut max_tokens = Vec::new();
    for (key, raw) in &members.0 {
        jsonrpc::check_near_miss(key, FIELDS).map_err(strict_error)?;
        jsonrpc::check_value(raw.get()).map_err(strict_error)?;
        let raw = raw.get();
        match key.as_ref() {
            "model" => match strict::string(raw_value(raw)?) {
                Some(m) if !m.is_empty() => model = Some(m),
                _ => return Err(err("\"model\" must be a non-empty string")),
            },
            "stream" => stream = optional_bool(raw, "stream")?.unwrap_or(false),
            "stream_options" if raw.trim() != "null" => {
                let opts = strict::members(raw).map_err(|_| err("\"stream_options\" must be an object"))?;
                for (k, v) in &opts.0 {
                    jsonrpc::check_near_miss(k, &["include_usage"]).map_err(strict_error)?;
                    if k == "include_usage" {
                        include_usage = optional_bool(v.get(), "stream_options.include_usage")?;
                    }
                }
            }
            field if limit_fields(api).contains(&field) => {
                if let Some(n) = optional_count(raw, field)? {
                    let name = FIELDS.iter().copied().find(|f| *f == field).unwrap_or("max_tokens");
                    max_tokens.push((name, n));
                }
            }
            _ => {}
        }
    }
    let model = model.ok_or_else(|| err("the request has no \"model\""))?;
    if api == Api::Embeddings && stream {
        return Err(err("embeddings requests cannot stream"));
    }
    Ok(LlmRequest { api, model, stream, include_usage, max_tokens })
}

fn raw_value(raw: &str) -> Result<&serde_json::value::RawValue, RequestError> {
    serde_json::from_str(raw).map_err(|e| err(e.to_string()))
}

fn optional_bool(raw: &str, field: &str) -> Result<Option<bool>, RequestError> {
    match raw.trim() {
        "true" => Ok(Some(true)),
        "false" => Ok(Some(false)),
        "null" => Ok(None),
        _ => Err(err(format!("\"{field}\" must be true or false"))),
    }
}

fn optional_count(raw: &str, field: &str) -> Result<Option<u64>, RequestError> {
    let raw = raw.trim();
    if raw == "null" {
        return Ok(None);
    }
    // Digits only: no sign, fraction or exponent (a server may read 1e9 or 10.5 differently).
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err(format!("\"{field}\" must be a non-negative integer")));
    }
    raw.parse::<u64>().map(Some).map_err(|_| err(format!("\"{field}\" is too large")))
}

/// The body with top-level members set (replaced in place, or appended): `(key, raw JSON value)`.
pub fn set_members(body: &str, set: &[(&str, String)]) -> Result<String, RequestError> {
    let members = strict::members(body).map_err(|e| err(e.to_string()))?;
    let mut out = String::with_capacity(body.len() + 64);
    out.push('{');
    let mut first = true;
    let mut push = |out: &mut String, key: &str, value: &str| {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(&serde_json::to_string(key).unwrap_or_default());
        out.push(':');
        out.push_str(value);
    };
    for (key, raw) in &members.0 {
        let value = set.iter().find(|(k, _)| *k == key.as_ref()).map_or(raw.get(), |(_, v)| v.as_str());
        push(&mut out, key, value);
    }
    for (key, value) in set {
        if members.get(key).is_none() {
            push(&mut out, key, value);
        }
    }
    out.push('}');
    Ok(out)
}

/// The body asking a streaming chat/completions upstream to report usage in a last chunk
/// (`stream_options.include_usage: true`), other stream options kept.
pub fn with_usage_opt_in(body: &str) -> Result<String, RequestError> {
    let members = strict::members(body).map_err(|e| err(e.to_string()))?;
    let options = match members.get("stream_options").map(|r| r.get()).filter(|r| r.trim() != "null") {
        Some(raw) => set_members(raw, &[("include_usage", "true".into())])?,
        None => r#"{"include_usage":true}"#.to_owned(),
    };
    set_members(body, &[("stream_options", options)])
}
