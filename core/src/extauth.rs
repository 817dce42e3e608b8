//! External authorization (KAN `action: ExternalAuth`, Gateway API `HTTPExternalAuthFilter`): the call-out's
//! config, the check request the service receives, and the reading of its answer.
//!
//! Two wire contracts, so existing services work unchanged:
//! - **HTTP**: Envoy's ext_authz HTTP service contract. The check is the original method and path (behind
//!   `http.path`), the allowed headers, the body up to `forwardBody.maxSize`, plus the MCP context Grantwall
//!   has already parsed as `x-grantwall-*` headers. 200 allows (allowed response headers are merged into the
//!   upstream request); 5xx or no answer is "unavailable"; any other status denies, its body is the reason.
//! - **gRPC**: `envoy.service.auth.v3.Authorization/Check` (Authorino, OPA-Envoy). The MCP context is in
//!   `attributes.context_extensions` and, shaped like Envoy's MCP filter metadata, in
//!   `attributes.metadata_context.filter_metadata["mcp_proxy"]` (so KAN's Authorino AuthConfigs apply as is).
//!
//! Agentgateway's ext_authz runs before MCP parsing, so its service never sees the tool; here it always does.
//! Anything in an answer that cannot be read with certainty is an error, never an allow.

use crate::config::Rule;
use crate::mcp::McpOp;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Envoy's ext_authz default: a guardrail that needs longer says so in its policy.
pub const DEFAULT_TIMEOUT_MS: u32 = 200;

/// Largest value of an `x-grantwall-mcp-arguments` header; larger arguments are announced as omitted.
pub const MAX_ARGUMENTS_HEADER_BYTES: usize = 8 * 1024;

/// Longest reason taken from a denying service into the client's answer and the audit record.
pub const MAX_REASON_CHARS: usize = 256;

/// gRPC service and method of the check.
pub const GRPC_SERVICE: &str = "envoy.service.auth.v3.Authorization";
pub const GRPC_METHOD: &str = "Check";

/// Headers an authorization service may never set on the upstream request: they say how the already judged
/// body is to be read, or where the request goes. A service answer that tries is an error.
pub const PROTECTED_HEADERS: &[&str] =
    &["host", "content-length", "content-type", "content-encoding", "transfer-encoding", "x-forwarded-client-cert"];

/// One target's external authorization (at most one per Gateway or XBackend, as in KAN).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExternalAuth {
    /// `namespace/name` of the XAccessPolicy that configured it.
    pub policy: String,
    /// Which requests are sent to the service: those matching any rule (source, HTTP and MCP conditions,
    /// as for Allow rules). Empty: every request to the target.
    #[serde(default)]
    pub rules: Vec<Rule>,
    pub protocol: ExtAuthProtocol,
    /// The Envoy cluster the call goes to (from `backendRef`; see docs/extauth.md for the naming).
    pub cluster: String,
    /// `:authority` of the call (the backendRef's service host).
    pub authority: String,
    /// HTTP: prefix put before the original path (`http.path`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path_prefix: String,
    /// Lower-case request headers sent to the service besides `:method`, `:path`, `:authority` and
    /// `authorization` (always sent, as Envoy does).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_headers: Vec<String>,
    /// HTTP: lower-case headers of an allowing answer copied into the upstream request (gRPC: every header
    /// of `ok_response.headers` is applied).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_response_headers: Vec<String>,
    /// `forwardBody.maxSize`: the body is sent up to this many bytes (truncated beyond, flagged with
    /// `x-envoy-auth-partial-body: true`). Absent: no body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_body_max_bytes: Option<u32>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u32,
    /// Allow the request when the service is unavailable or answers something unreadable (never when it
    /// denies). Default false: fail closed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub fail_open: bool,
    /// Remember answers for this long per (identity, target, method, tool, arguments). 0: no cache.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_ttl_ms: u32,
}

fn default_timeout_ms() -> u32 {
    DEFAULT_TIMEOUT_MS
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExtAuthProtocol {
    #[serde(rename = "HTTP")]
    Http,
    #[serde(rename = "GRPC")]
    Grpc,
}

/// Checks a loaded config cannot start with; the message names the field.
pub fn validate(ea: &ExternalAuth, at: &str) -> Result<(), (String, String)> {
    let err = |field: &str, m: String| Err((format!("{at}.externalAuth.{field}"), m));
    if ea.cluster.is_empty() {
        return err("cluster", "must name the Envoy cluster of the authorization service".into());
    }
    if !ea.path_prefix.is_empty() && !ea.path_prefix.starts_with('/') {
        return err("pathPrefix", format!("{:?} must start with '/'", ea.path_prefix));
    }
    if ea.timeout_ms == 0 {
        return err("timeoutMs", "must be at least 1".into());
    }
    for (field, list) in [("allowedHeaders", &ea.allowed_headers), ("allowedResponseHeaders", &ea.allowed_response_headers)] {
        for (i, h) in list.iter().enumerate() {
            if h.is_empty() || h.bytes().any(|b| !(b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.!#$%&'*+^`|~".contains(&b))) {
                return err(&format!("{field}[{i}]"), format!("{h:?} is not a lower-case header name"));
            }
        }
    }
    if let Some(h) = ea.allowed_response_headers.iter().find(|h| is_protected(h)) {
        return err("allowedResponseHeaders", format!("{h:?} may not be set by an authorization service"));
    }
    Ok(())
}

fn is_protected(name: &str) -> bool {
    name.starts_with(':') || name.starts_with("mcp-") || PROTECTED_HEADERS.contains(&name)
}

/// What the service is asked about: the request as the filter captured and parsed it.
#[derive(Debug, Clone, Copy)]
pub struct CheckInput<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub authority: &'a str,
    /// Captured request headers (lower-case names); only the allowed ones are sent.
    pub headers: &'a [(String, String)],
    /// The whole request body (the filter has buffered it); sent up to `forwardBody.maxSize`.
    pub body: &'a [u8],
    pub principal: Option<&'a str>,
    /// `namespace/name` of the XBackend, when there is one.
    pub backend: Option<&'a str>,
    /// The MCP operation; None for traffic that is not MCP.
    pub op: Option<&'a McpOp<'a>>,
    /// Raw JSON-RPC id of the request.
    pub id: Option<&'a str>,
    /// Context of traffic that is not MCP, sent like the MCP context: (`a2a-operation`, `SendMessage`),
    /// (`llm-api`, `chat.completions`), (`llm-model`, `gpt-4o`).
    pub protocol: &'a [(&'static str, String)],
}

/// An HTTP check: headers (pseudo-headers first) and body for `dispatch_http_call`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The service's answer, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed; these headers are set on the upstream request (`append`: added instead of replaced).
    Allow(Vec<HeaderMutation>),
    /// Denied; the service's reason (possibly empty).
    Deny(String),
    /// No usable answer in time: timeout, connection failure, 5xx, gRPC UNAVAILABLE/DEADLINE_EXCEEDED.
    Unavailable(String),
    /// An answer that cannot be read with certainty.
    Error(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMutation {
    pub name: String,
    pub value: String,
    pub append: bool,
}

impl Verdict {
    /// Audit and metric reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Verdict::Allow(_) => "extauth-allowed",
            Verdict::Deny(_) => "extauth-denied",
            Verdict::Unavailable(_) => "extauth-unavailable",
            Verdict::Error(_) => "extauth-error",
        }
    }
}

/// The request headers the filter must capture for this service.
pub fn forwarded_header_names(ea: &ExternalAuth) -> impl Iterator<Item = String> + '_ {
    std::iter::once("authorization".to_owned()).chain(ea.allowed_headers.iter().cloned())
}

/// Whether a header goes to the service. Never a client's `x-grantwall-*` or `x-envoy-auth-partial-body`:
/// those names carry what Grantwall says, and a client copy would sit next to it.
fn forwarded(ea: &ExternalAuth, name: &str) -> bool {
    let ours = name.starts_with("x-grantwall-") || name == "x-envoy-auth-partial-body";
    !ours && (name == "authorization" || ea.allowed_headers.iter().any(|h| h == name))
}

/// The body as sent: at most `forwardBody.maxSize` bytes, cut at a UTF-8 boundary (gRPC carries it as a
/// proto3 string); `true` when cut.
fn forwarded_body<'b>(ea: &ExternalAuth, body: &'b [u8]) -> Option<(&'b str, bool)> {
    let max = ea.forward_body_max_bytes? as usize;
    // The filter only forwards bodies its JSON parser accepted, which are UTF-8; anything else sends none.
    let text = std::str::from_utf8(body).ok()?;
    if text.len() <= max {
        return Some((text, false));
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    Some((text.get(..cut).unwrap_or(""), true))
}

/// The MCP context every check carries, then the A2A/LLM context: (name, value) with the `x-grantwall-` /
/// `grantwall.` names documented in docs/extauth.md. Arguments are compact JSON.
fn mcp_context(input: &CheckInput<'_>) -> Vec<(&'static str, Cow<'static, str>)> {
    let mut out: Vec<(&'static str, Cow<'static, str>)> = Vec::new();
    if let Some(p) = input.principal {
        out.push(("identity", Cow::Owned(p.to_owned())));
    }
    if let Some(b) = input.backend {
        out.push(("backend", Cow::Owned(b.to_owned())));
    }
    if let Some(op) = input.op {
        out.push(("mcp-method", Cow::Owned(op.name.to_owned())));
        if let Some(t) = op.target {
            out.push(("mcp-target", Cow::Owned(t.to_owned())));
        }
        if let Some(args) = op.arguments.and_then(compact_json) {
            out.push(("mcp-arguments", Cow::Owned(args)));
        }
    }
    out.extend(input.protocol.iter().map(|(name, value)| (*name, Cow::Owned(value.clone()))));
    out
}

fn compact_json(raw: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(raw).ok().map(|v| v.to_string())
}

/// Header values must be visible ASCII: `%`, controls and non-ASCII bytes are percent-encoded (decode with
/// any URL decoder). A tool name with CR/LF in it cannot inject a header.
pub fn header_value(s: &str) -> Cow<'_, str> {
    let plain = |b: u8| (0x20..0x7f).contains(&b) && b != b'%';
    if s.bytes().all(plain) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if plain(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Cow::Owned(out)
}

/// The HTTP check request (Envoy ext_authz HTTP service contract, plus `x-grantwall-*`).
pub fn http_check(ea: &ExternalAuth, input: &CheckInput<'_>) -> HttpCheck {
    let mut headers: Vec<(String, String)> = vec![
        (":method".into(), input.method.into()),
        (":path".into(), format!("{}{}", ea.path_prefix.trim_end_matches('/'), input.path)),
        (":authority".into(), input.authority.into()),
    ];
    for (name, value) in input.headers.iter().filter(|(n, _)| forwarded(ea, n)) {
        headers.push((name.clone(), value.clone()));
    }
    let body = forwarded_body(ea, input.body);
    let bytes = body.map_or(&[][..], |(b, _)| b.as_bytes()).to_vec();
    if let Some((_, partial)) = body {
        headers.push(("x-envoy-auth-partial-body".into(), partial.to_string()));
    }
    headers.push(("content-length".into(), bytes.len().to_string()));
    for (name, value) in mcp_context(input) {
        if name == "mcp-arguments" && value.len() > MAX_ARGUMENTS_HEADER_BYTES {
            headers.push(("x-grantwall-mcp-arguments-omitted".into(), value.len().to_string()));
            continue;
        }
        headers.push((format!("x-grantwall-{name}"), header_value(&value).into_owned()));
    }
    HttpCheck { headers, body: bytes }
}

/// Read an HTTP check answer. `status` is `:status` (None: the host had no response: timeout, reset).
pub fn http_verdict(ea: &ExternalAuth, status: Option<&str>, headers: &[(String, String)], body: &[u8]) -> Verdict {
    let Some(status) = status else { return Verdict::Unavailable("no answer (timeout or connection failure)".into()) };
    let Ok(code) = status.trim().parse::<u16>() else { return Verdict::Error(format!("unreadable :status {status:?}")) };
    match code {
        200 => {
            let mut merged = Vec::new();
            for (name, value) in headers {
                let name = name.to_ascii_lowercase();
                if ea.allowed_response_headers.contains(&name) {
                    merged.push(HeaderMutation { name, value: value.clone(), append: false });
                }
            }
            Verdict::Allow(merged)
        }
        500..=599 => Verdict::Unavailable(format!("HTTP {code}: {}", reason_text(body))),
        100..=199 => Verdict::Error(format!("HTTP {code} is not an answer")),
        _ => {
            let text = reason_text(body);
            Verdict::Deny(if text.is_empty() { format!("HTTP {code}") } else { text })
        }
    }
}

/// A service's reason, fit for a JSON string and a log line: one line, at most [`MAX_REASON_CHARS`].
pub fn reason_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.trim().chars().map(|c| if c.is_control() { ' ' } else { c }).take(MAX_REASON_CHARS).collect();
    if text.trim().chars().count() > MAX_REASON_CHARS {
        out.push('…');
    }
    out
}

/// The serialized `CheckRequest`.
pub fn grpc_check(ea: &ExternalAuth, input: &CheckInput<'_>) -> Vec<u8> {
    use prost::Message;
    let mut headers = BTreeMap::new();
    headers.insert(":method".to_owned(), input.method.to_owned());
    headers.insert(":path".to_owned(), input.path.to_owned());
    headers.insert(":authority".to_owned(), input.authority.to_owned());
    for (name, value) in input.headers.iter().filter(|(n, _)| forwarded(ea, n)) {
        headers.insert(name.clone(), value.clone());
    }
    let body = forwarded_body(ea, input.body);
    if let Some((_, partial)) = body {
        headers.insert("x-envoy-auth-partial-body".into(), partial.to_string());
    }
    let (path, query) = match input.path.split_once('?') {
        Some((p, q)) => (p, q),
        None => (input.path, ""),
    };
    let context: BTreeMap<String, String> =
        mcp_context(input).into_iter().map(|(k, v)| (format!("grantwall.{k}"), v.into_owned())).collect();
    let request = pb::CheckRequest {
        attributes: Some(pb::AttributeContext {
            source: Some(pb::Peer { principal: input.principal.unwrap_or_default().to_owned() }),
            request: Some(pb::Request {
                http: Some(pb::HttpRequest {
                    method: input.method.to_owned(),
                    headers,
                    path: path.to_owned(),
                    host: input.authority.to_owned(),
                    query: query.to_owned(),
                    size: i64::try_from(input.body.len()).unwrap_or(i64::MAX),
                    body: body.map(|(b, _)| b.to_owned()).unwrap_or_default(),
                    ..Default::default()
                }),
            }),
            context_extensions: context,
            metadata_context: input.op.map(|op| pb::Metadata {
                filter_metadata: BTreeMap::from([("mcp_proxy".to_owned(), mcp_proxy_metadata(op, input.id))]),
            }),
        }),
    };
    request.encode_to_vec()
}

/// `filter_metadata["mcp_proxy"]` as Envoy's MCP filter writes it: `method`, `id`, `params.name` / `params.uri`,
/// `params.arguments` (as a Struct).
fn mcp_proxy_metadata(op: &McpOp<'_>, id: Option<&str>) -> pb::Struct {
    let mut fields = BTreeMap::new();
    fields.insert("method".to_owned(), pb::Value::string(op.name));
    if let Some(id) = id.and_then(|raw| serde_json::from_str::<serde_json::Value>(raw).ok()) {
        fields.insert("id".to_owned(), pb::Value::from_json(&id));
    }
    let mut params = BTreeMap::new();
    if let Some(t) = op.target {
        let key = op.method.and_then(|m| m.target_field()).unwrap_or("name");
        params.insert(key.to_owned(), pb::Value::string(t));
    }
    if let Some(args) = op.arguments.and_then(|raw| serde_json::from_str::<serde_json::Value>(raw).ok()) {
        params.insert("arguments".to_owned(), pb::Value::from_json(&args));
    }
    if !params.is_empty() {
        fields.insert("params".to_owned(), pb::Value { kind: Some(pb::value::Kind::StructValue(pb::Struct { fields: params })) });
    }
    pb::Struct { fields }
}

/// Read a gRPC check answer: `grpc_status` of the call, `message` the response bytes.
pub fn grpc_verdict(grpc_status: u32, message: &[u8]) -> Verdict {
    use prost::Message;
    match grpc_status {
        0 => {}
        // DEADLINE_EXCEEDED, UNAVAILABLE: the service could not be asked.
        4 | 14 => return Verdict::Unavailable(format!("gRPC status {grpc_status}")),
        other => return Verdict::Error(format!("gRPC status {other}")),
    }
    let response = match pb::CheckResponse::decode(message) {
        Ok(r) => r,
        Err(e) => return Verdict::Error(format!("not a CheckResponse: {e}")),
    };
    // Envoy reads a missing status as OK; an answer without one is not read as an allow here.
    let Some(status) = response.status else { return Verdict::Error("CheckResponse without status".into()) };
    if status.code != 0 {
        let denied_body = response.denied_response.as_ref().map(|d| reason_text(d.body.as_bytes())).unwrap_or_default();
        let reason = if !denied_body.is_empty() { denied_body } else { reason_text(status.message.as_bytes()) };
        return Verdict::Deny(reason);
    }
    let Some(ok) = response.ok_response else { return Verdict::Allow(Vec::new()) };
    if !ok.headers_to_remove.is_empty() || !ok.query_parameters_to_set.is_empty() || !ok.query_parameters_to_remove.is_empty() {
        return Verdict::Error("ok_response asks to remove headers or change the query: not supported".into());
    }
    let mut merged = Vec::with_capacity(ok.headers.len());
    for option in ok.headers {
        let Some(h) = option.header else { return Verdict::Error("ok_response header without a header".into()) };
        let name = h.key.to_ascii_lowercase();
        let value = if h.raw_value.is_empty() {
            h.value
        } else {
            match String::from_utf8(h.raw_value) {
                Ok(v) => v,
                Err(_) => return Verdict::Error(format!("ok_response header {name}: value is not UTF-8")),
            }
        };
        if name.is_empty() || is_protected(&name) || value.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
            return Verdict::Error(format!("ok_response header {name:?} may not be set"));
        }
        // Replace unless the service explicitly says `append: true`: appending would leave a client-sent
        // value first, and the first value is what most readers take.
        let append = option.append.is_some_and(|b| b.value);
        merged.push(HeaderMutation { name, value, append });
    }
    Verdict::Allow(merged)
}

/// A cache key: identity, target, method, tool and a hash of the arguments (not the arguments themselves).
pub fn cache_key(level: u32, input: &CheckInput<'_>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [input.principal.unwrap_or(""), input.backend.unwrap_or("")] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    if let Some(op) = input.op {
        h.update(op.name.as_bytes());
        h.update([0]);
        h.update(op.target.unwrap_or("").as_bytes());
        h.update([0]);
        h.update(op.arguments.and_then(compact_json).unwrap_or_default().as_bytes());
    } else {
        h.update(input.method.as_bytes());
        h.update([0]);
        h.update(input.path.as_bytes());
    }
    let digest = h.finalize();
    let mut out = format!("{level}:");
    for b in digest.iter().take(16) {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Hand-written mirrors of the protobuf messages the check uses (field numbers from
/// envoy/service/auth/v3/{external_auth,attribute_context}.proto, envoy/config/core/v3/{base,grpc_service}.proto,
/// google/rpc/status.proto, google/protobuf/struct.proto). Only the fields Grantwall reads or writes; prost
/// skips unknown ones when decoding.
pub mod pb {
    use std::collections::BTreeMap;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CheckRequest {
        #[prost(message, optional, tag = "1")]
        pub attributes: Option<AttributeContext>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AttributeContext {
        #[prost(message, optional, tag = "1")]
        pub source: Option<Peer>,
        #[prost(message, optional, tag = "4")]
        pub request: Option<Request>,
        #[prost(btree_map = "string, string", tag = "10")]
        pub context_extensions: BTreeMap<String, String>,
        #[prost(message, optional, tag = "11")]
        pub metadata_context: Option<Metadata>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Peer {
        #[prost(string, tag = "4")]
        pub principal: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Request {
        #[prost(message, optional, tag = "2")]
        pub http: Option<HttpRequest>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HttpRequest {
        #[prost(string, tag = "1")]
        pub id: String,
        #[prost(string, tag = "2")]
        pub method: String,
        #[prost(btree_map = "string, string", tag = "3")]
        pub headers: BTreeMap<String, String>,
        #[prost(string, tag = "4")]
        pub path: String,
        #[prost(string, tag = "5")]
        pub host: String,
        #[prost(string, tag = "6")]
        pub scheme: String,
        #[prost(string, tag = "7")]
        pub query: String,
        #[prost(int64, tag = "9")]
        pub size: i64,
        #[prost(string, tag = "10")]
        pub protocol: String,
        #[prost(string, tag = "11")]
        pub body: String,
    }

    /// envoy.config.core.v3.Metadata
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metadata {
        #[prost(btree_map = "string, message", tag = "1")]
        pub filter_metadata: BTreeMap<String, Struct>,
    }

    /// google.protobuf.Struct
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Struct {
        #[prost(btree_map = "string, message", tag = "1")]
        pub fields: BTreeMap<String, Value>,
    }

    /// google.protobuf.Value
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Value {
        #[prost(oneof = "value::Kind", tags = "1, 2, 3, 4, 5, 6")]
        pub kind: Option<value::Kind>,
    }

    pub mod value {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Kind {
            #[prost(int32, tag = "1")]
            NullValue(i32),
            #[prost(double, tag = "2")]
            NumberValue(f64),
            #[prost(string, tag = "3")]
            StringValue(String),
            #[prost(bool, tag = "4")]
            BoolValue(bool),
            #[prost(message, tag = "5")]
            StructValue(super::Struct),
            #[prost(message, tag = "6")]
            ListValue(super::ListValue),
        }
    }

    /// google.protobuf.ListValue
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListValue {
        #[prost(message, repeated, tag = "1")]
        pub values: Vec<Value>,
    }

    impl Value {
        pub fn string(s: &str) -> Value {
            Value { kind: Some(value::Kind::StringValue(s.to_owned())) }
        }

        /// JSON → Struct value (numbers become doubles, as protobuf's JSON mapping does).
        pub fn from_json(v: &serde_json::Value) -> Value {
            use serde_json::Value as J;
            let kind = match v {
                J::Null => value::Kind::NullValue(0),
                J::Bool(b) => value::Kind::BoolValue(*b),
                J::Number(n) => value::Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
                J::String(s) => value::Kind::StringValue(s.clone()),
                J::Array(a) => value::Kind::ListValue(ListValue { values: a.iter().map(Value::from_json).collect() }),
                J::Object(o) => value::Kind::StructValue(Struct {
                    fields: o.iter().map(|(k, v)| (k.clone(), Value::from_json(v))).collect(),
                }),
            };
            Value { kind: Some(kind) }
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CheckResponse {
        #[prost(message, optional, tag = "1")]
        pub status: Option<RpcStatus>,
        #[prost(message, optional, tag = "2")]
        pub denied_response: Option<DeniedHttpResponse>,
        #[prost(message, optional, tag = "3")]
        pub ok_response: Option<OkHttpResponse>,
    }

    /// google.rpc.Status
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RpcStatus {
        #[prost(int32, tag = "1")]
        pub code: i32,
        #[prost(string, tag = "2")]
        pub message: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DeniedHttpResponse {
        #[prost(message, optional, tag = "1")]
        pub status: Option<HttpStatus>,
        #[prost(message, repeated, tag = "2")]
        pub headers: Vec<HeaderValueOption>,
        #[prost(string, tag = "3")]
        pub body: String,
    }

    /// envoy.type.v3.HttpStatus
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HttpStatus {
        #[prost(int32, tag = "1")]
        pub code: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct OkHttpResponse {
        #[prost(message, repeated, tag = "2")]
        pub headers: Vec<HeaderValueOption>,
        #[prost(string, repeated, tag = "5")]
        pub headers_to_remove: Vec<String>,
        #[prost(message, repeated, tag = "7")]
        pub query_parameters_to_set: Vec<QueryParameter>,
        #[prost(string, repeated, tag = "8")]
        pub query_parameters_to_remove: Vec<String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct QueryParameter {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    /// envoy.config.core.v3.HeaderValueOption
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HeaderValueOption {
        #[prost(message, optional, tag = "1")]
        pub header: Option<HeaderValue>,
        /// google.protobuf.BoolValue
        #[prost(message, optional, tag = "2")]
        pub append: Option<BoolValue>,
        #[prost(int32, tag = "3")]
        pub append_action: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BoolValue {
        #[prost(bool, tag = "1")]
        pub value: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HeaderValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(string, tag = "2")]
        pub value: String,
        #[prost(bytes = "vec", tag = "3")]
        pub raw_value: Vec<u8>,
    }

    /// envoy.config.core.v3.GrpcService, as `proxy_grpc_call` takes it: `envoy_grpc { cluster_name, authority }`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GrpcService {
        #[prost(message, optional, tag = "1")]
        pub envoy_grpc: Option<EnvoyGrpc>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EnvoyGrpc {
        #[prost(string, tag = "1")]
        pub cluster_name: String,
        #[prost(string, tag = "2")]
        pub authority: String,
    }
}

/// The `GrpcService` bytes `proxy_grpc_call` takes (a bare cluster name is ambiguous: Envoy first tries to
/// parse it as this message).
pub fn grpc_service(ea: &ExternalAuth) -> Vec<u8> {
    use prost::Message;
    pb::GrpcService { envoy_grpc: Some(pb::EnvoyGrpc { cluster_name: ea.cluster.clone(), authority: ea.authority.clone() }) }
        .encode_to_vec()
}
