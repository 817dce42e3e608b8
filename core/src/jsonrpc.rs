//! Strict JSON-RPC 2.0 envelope parser for MCP request bodies.
//!
//! Servers parse leniently ("last duplicate wins", case-insensitive keys in Go, BOM and UTF-16 tolerated), so a
//! gateway that authorizes what *it* parsed must refuse anything another parser could read differently. This
//! parser walks the whole body once, borrowing strings where it can, and refuses: invalid JSON or UTF-8, a BOM,
//! duplicate keys at any depth, batches, keys that differ from a field we read only by case or Unicode folding
//! or by control characters, ids that are not strings or integers, and anything that is not one JSON-RPC message.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// One parsed JSON-RPC message, borrowing from the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    pub kind: MessageKind,
    /// The id exactly as written in the body (`"abc"` with quotes, or `42`), to echo back with the same type.
    pub id: Option<&'a str>,
    /// Empty for responses.
    pub method: Cow<'a, str>,
    /// `params.name` (tools/call, prompts/get), `params.uri` (resources/*), or the `ref` of completion/complete.
    pub target: Option<Cow<'a, str>>,
    /// `params.protocolVersion` of `initialize`.
    pub protocol_version: Option<Cow<'a, str>>,
    /// `params.arguments` as raw JSON text, only when parsed with [`Options::capture_arguments`] (CEL rules
    /// that read `request.mcp.arguments`). Borrowed from the body: capturing allocates nothing.
    pub arguments: Option<&'a str>,
    /// `params` has a `task` member (a task-augmented request, 2025-11-25). Noted during the one strict pass
    /// so the filter need not parse the body again to find out.
    pub task_augmented: bool,
}

/// What the parser keeps beyond what every decision needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Keep `params.arguments` (raw) for CEL rules; costs one extra strict pass over the arguments.
    pub capture_arguments: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Request,
    Notification,
    /// A client's answer to a server-initiated request (sampling, elicitation, roots).
    Response,
}

/// Why a body was refused. Each maps to a JSON-RPC error code and a stable audit reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not valid UTF-8 JSON (includes BOMs, UTF-16, trailing data, lone surrogates, depth > 128).
    InvalidJson(String),
    DuplicateKey(String),
    /// A key that folds to a field Grantwall reads (`Name`, `nam\u017f`…) or carries control characters.
    AmbiguousKey(String),
    Batch,
    /// Valid JSON but not one well-formed JSON-RPC 2.0 message.
    InvalidRequest(&'static str),
    /// A method that needs a target (`params.name` / `params.uri`) lacks a usable one.
    InvalidParams(&'static str),
}

impl ParseError {
    /// JSON-RPC error code for the reply.
    pub fn code(&self) -> i32 {
        match self {
            ParseError::InvalidJson(_) => -32700,
            ParseError::InvalidParams(_) => -32602,
            _ => -32600,
        }
    }

    /// Stable reason for audit records and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ParseError::InvalidJson(_) => "malformed-json",
            ParseError::DuplicateKey(_) => "duplicate-key",
            ParseError::AmbiguousKey(_) => "ambiguous-key",
            ParseError::Batch => "batch-refused",
            ParseError::InvalidRequest(_) => "invalid-request",
            ParseError::InvalidParams(_) => "invalid-params",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::InvalidJson(e) => write!(f, "body is not valid JSON: {e}"),
            ParseError::DuplicateKey(k) => write!(f, "{DUPLICATE_KEY_PREFIX}{k:?}"),
            ParseError::AmbiguousKey(k) => write!(f, "ambiguous key {k:?}"),
            ParseError::Batch => f.write_str("JSON-RPC batches are not accepted"),
            ParseError::InvalidRequest(why) => write!(f, "invalid JSON-RPC request: {why}"),
            ParseError::InvalidParams(why) => write!(f, "invalid params: {why}"),
        }
    }
}

/// Parse one JSON-RPC message from a complete request body.
pub fn parse(body: &[u8]) -> Result<Message<'_>, ParseError> {
    parse_with(body, Options::default())
}

/// [`parse`], keeping what `options` asks for.
pub fn parse_with(body: &[u8], options: Options) -> Result<Message<'_>, ParseError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(b'[') => return Err(ParseError::Batch),
        Some(b'{') => {}
        Some(_) | None => {
            // Includes a UTF-8 BOM (0xEF) and UTF-16 (0xFF/0xFE/0x00): refused, not guessed at.
            return match serde_json::from_slice::<IgnoredAny>(body) {
                Ok(_) => Err(ParseError::InvalidRequest("a JSON-RPC message must be a JSON object")),
                Err(e) => Err(ParseError::InvalidJson(e.to_string())),
            };
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut state = Envelope { capture_arguments: options.capture_arguments, ..Envelope::default() };
    let outcome = (&mut de).deserialize_map(EnvelopeVisitor { state: &mut state }).and_then(|()| de.end());
    if let Err(e) = outcome {
        // Our own checks travel as custom serde errors; recover them intact.
        return Err(state.refusal.take().unwrap_or_else(|| classify_serde_error(&e)));
    }
    state.finish()
}

fn required_str<'a>(field: Option<StrOrOther<'a>>, why: &'static str) -> Result<Cow<'a, str>, ParseError> {
    match field {
        Some(StrOrOther::Str(v)) => Ok(v),
        _ => Err(ParseError::InvalidParams(why)),
    }
}

/// Errors raised deep inside values (duplicate keys in tool arguments) arrive only as serde messages.
fn classify_serde_error(e: &serde_json::Error) -> ParseError {
    let text = e.to_string();
    match text.strip_prefix(DUPLICATE_KEY_PREFIX) {
        Some(rest) if e.is_data() => {
            let key = rest.split(" at line ").next().unwrap_or(rest);
            ParseError::DuplicateKey(key.trim_matches('"').to_owned())
        }
        _ => ParseError::InvalidJson(text),
    }
}

const DUPLICATE_KEY_PREFIX: &str = "duplicate key ";

#[derive(Default)]
struct Envelope<'a> {
    jsonrpc_ok: bool,
    id: Option<&'a str>,
    method: Option<Cow<'a, str>>,
    has_params: bool,
    has_result_or_error: bool,
    params: Params<'a>,
    refusal: Option<ParseError>,
    capture_arguments: bool,
}

#[derive(Default)]
struct Params<'a> {
    name: Option<StrOrOther<'a>>,
    uri: Option<StrOrOther<'a>>,
    protocol_version: Option<StrOrOther<'a>>,
    ref_target: Option<Cow<'a, str>>,
    arguments: Option<&'a str>,
    task: bool,
}

impl<'a> Envelope<'a> {
    fn refuse<E: de::Error>(&mut self, why: ParseError) -> E {
        refuse(&mut self.refusal, why)
    }

    fn finish(self) -> Result<Message<'a>, ParseError> {
        if !self.jsonrpc_ok {
            return Err(ParseError::InvalidRequest("\"jsonrpc\" must be \"2.0\""));
        }
        let kind = match (&self.method, self.id, self.has_result_or_error) {
            (Some(_), _, true) => return Err(ParseError::InvalidRequest("a message cannot have both method and result/error")),
            (Some(_), Some(_), false) => MessageKind::Request,
            (Some(_), None, false) => MessageKind::Notification,
            (None, Some(_), true) => MessageKind::Response,
            (None, _, _) => return Err(ParseError::InvalidRequest("missing \"method\"")),
        };
        if kind == MessageKind::Response && self.has_params {
            return Err(ParseError::InvalidRequest("a response cannot carry params"));
        }
        let method = self.method.unwrap_or(Cow::Borrowed(""));
        let params = self.params;
        let target = match method.as_ref() {
            "tools/call" | "prompts/get" => Some(required_str(params.name, "params.name must be a string")?),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                Some(required_str(params.uri, "params.uri must be a string")?)
            }
            "completion/complete" => params.ref_target,
            _ => None,
        };
        let protocol_version = match params.protocol_version {
            Some(StrOrOther::Str(v)) => Some(v),
            Some(StrOrOther::Other) if method == "initialize" => {
                return Err(ParseError::InvalidParams("params.protocolVersion must be a string"))
            }
            _ => None,
        };
        Ok(Message { kind, id: self.id, method, target, protocol_version, arguments: params.arguments, task_augmented: params.task })
    }
}

/// Fields of the envelope and of `params` that authorization reads; near-misses of these are refused.
const ENVELOPE_FIELDS: &[&str] = &["jsonrpc", "id", "method", "params", "result", "error"];
const PARAMS_FIELDS: &[&str] = &["name", "uri", "protocolVersion", "ref", "arguments", "_meta"];
const REF_FIELDS: &[&str] = &["type", "name", "uri"];

/// Refuse a key that is not one of `known` but would match one under a lenient parser's rules
/// (ASCII/Unicode case folding as in Go's encoding/json, or a trailing NUL/control character).
pub(crate) fn check_near_miss(key: &str, known: &[&str]) -> Result<(), ParseError> {
    if known.contains(&key) {
        return Ok(());
    }
    if key.chars().any(|c| c.is_control()) {
        return Err(ParseError::AmbiguousKey(key.to_owned()));
    }
    if known.iter().any(|k| folds_equal(key, k)) {
        return Err(ParseError::AmbiguousKey(key.to_owned()));
    }
    Ok(())
}

/// Case-insensitive equality including the non-ASCII letters that simple-fold onto ASCII (ſ → s, K → k).
fn folds_equal(candidate: &str, known_ascii: &str) -> bool {
    let mut a = candidate.chars();
    let mut b = known_ascii.chars();
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) => {
                let x = match x {
                    '\u{017F}' => 's',
                    '\u{212A}' => 'k',
                    other => other.to_ascii_lowercase(),
                };
                if x != y.to_ascii_lowercase() {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// A JSON object key, borrowed from the body when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(CowStrVisitor).map(Key)
    }
}

struct CowStrVisitor;

impl<'de> Visitor<'de> for CowStrVisitor {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// A string field we read, or a note that it had another JSON type.
enum StrOrOther<'a> {
    Str(Cow<'a, str>),
    Other,
}

struct StrOrOtherSeed;

impl<'de> DeserializeSeed<'de> for StrOrOtherSeed {
    type Value = StrOrOther<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(StrOrOtherVisitor)
    }
}

struct StrOrOtherVisitor;

impl<'de> Visitor<'de> for StrOrOtherVisitor {
    type Value = StrOrOther<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(StrOrOther::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(StrOrOther::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(StrOrOther::Str(Cow::Owned(v)))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(StrOrOther::Other)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(StrOrOther::Other)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(StrOrOther::Other)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(StrOrOther::Other)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(StrOrOther::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        StrictValueVisitor.visit_map(map).map(|()| StrOrOther::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        StrictValueVisitor.visit_seq(seq).map(|()| StrOrOther::Other)
    }
}

/// Walk one raw JSON value with the same strict rules as a request body (duplicate keys refused at any
/// depth), without building it. Used by other request parsers (llm.rs).
pub(crate) fn check_value(raw: &str) -> Result<(), ParseError> {
    let mut de = serde_json::Deserializer::from_str(raw);
    StrictValue.deserialize(&mut de).and_then(|()| de.end()).map_err(|e| classify_serde_error(&e))
}

/// Walks any JSON value, refusing duplicate keys in every object at every depth.
struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(StrictValueVisitor)
    }
}

struct StrictValueVisitor;

/// Objects up to this many keys are checked for duplicates by linear scan; larger ones by sorting.
const LINEAR_DUPLICATE_SCAN: usize = 16;

impl<'de> Visitor<'de> for StrictValueVisitor {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(StrictValue)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys: Vec<Cow<'de, str>> = Vec::new();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if keys.len() < LINEAR_DUPLICATE_SCAN && keys.contains(&key) {
                return Err(de::Error::custom(ParseError::DuplicateKey(key.into_owned())));
            }
            keys.push(key);
            map.next_value_seed(StrictValue)?;
        }
        if keys.len() > LINEAR_DUPLICATE_SCAN {
            keys.sort_unstable();
            if let Some(pair) = keys.windows(2).find(|w| w.first() == w.get(1)) {
                let key = pair.first().map(|k| k.to_string()).unwrap_or_default();
                return Err(de::Error::custom(ParseError::DuplicateKey(key)));
            }
        }
        Ok(())
    }
}

struct EnvelopeVisitor<'s, 'a> {
    state: &'s mut Envelope<'a>,
}

impl<'de> Visitor<'de> for EnvelopeVisitor<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-RPC message object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let st = self.state;
        let mut seen: Vec<Cow<'de, str>> = Vec::with_capacity(4);
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if seen.contains(&key) {
                return Err(st.refuse(ParseError::DuplicateKey(key.into_owned())));
            }
            if let Err(why) = check_near_miss(&key, ENVELOPE_FIELDS) {
                return Err(st.refuse(why));
            }
            match key.as_ref() {
                "jsonrpc" => match map.next_value_seed(StrOrOtherSeed)? {
                    StrOrOther::Str(v) if v == "2.0" => st.jsonrpc_ok = true,
                    _ => return Err(st.refuse(ParseError::InvalidRequest("\"jsonrpc\" must be \"2.0\""))),
                },
                "id" => {
                    let raw: &'de serde_json::value::RawValue = map.next_value()?;
                    let text = raw.get();
                    if !is_string_or_integer(text) {
                        return Err(st.refuse(ParseError::InvalidRequest("\"id\" must be a string or an integer")));
                    }
                    st.id = Some(text);
                }
                "method" => match map.next_value_seed(StrOrOtherSeed)? {
                    StrOrOther::Str(v) => st.method = Some(v),
                    StrOrOther::Other => return Err(st.refuse(ParseError::InvalidRequest("\"method\" must be a string"))),
                },
                "params" => {
                    st.has_params = true;
                    let mut params = Params::default();
                    let seed = ParamsSeed { params: &mut params, refusal: &mut st.refusal, capture_arguments: st.capture_arguments };
                    let outcome = map.next_value_seed(seed);
                    outcome?;
                    st.params = params;
                }
                "result" | "error" => {
                    st.has_result_or_error = true;
                    map.next_value_seed(StrictValue)?;
                }
                _ => {
                    return Err(st.refuse(ParseError::InvalidRequest("unknown top-level member")));
                }
            }
            seen.push(key);
        }
        Ok(())
    }
}

/// `"abc"` or `-12`: the id types MCP allows (no null, no fractions or exponents).
fn is_string_or_integer(raw: &str) -> bool {
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    raw.starts_with('"')
        || (!digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !(digits.len() > 1 && digits.starts_with('0')))
}

struct ParamsSeed<'s, 'a> {
    params: &'s mut Params<'a>,
    refusal: &'s mut Option<ParseError>,
    capture_arguments: bool,
}

impl<'de> DeserializeSeed<'de> for ParamsSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ParamsSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("params object")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        // By-position params: nothing for us to read; targets are then missing and refused where required.
        StrictValueVisitor.visit_seq(seq)
    }
    // JSON-RPC: params, when present, is an object or an array. Anything else is valid JSON but an invalid
    // request (it used to surface as serde's type error, i.e. "malformed-json" / -32700).
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(refuse(self.refusal, PARAMS_NOT_STRUCTURED))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(refuse(self.refusal, PARAMS_NOT_STRUCTURED))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(refuse(self.refusal, PARAMS_NOT_STRUCTURED))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(refuse(self.refusal, PARAMS_NOT_STRUCTURED))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(refuse(self.refusal, PARAMS_NOT_STRUCTURED))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(refuse(self.refusal, PARAMS_NOT_STRUCTURED))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen: Vec<Cow<'de, str>> = Vec::with_capacity(4);
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let problem = if seen.len() < LINEAR_DUPLICATE_SCAN && seen.contains(&key) {
                Some(ParseError::DuplicateKey(key.to_string()))
            } else {
                check_near_miss(&key, PARAMS_FIELDS).err()
            };
            if let Some(why) = problem {
                return Err(refuse(self.refusal, why));
            }
            match key.as_ref() {
                "name" => self.params.name = Some(map.next_value_seed(StrOrOtherSeed)?),
                "uri" => self.params.uri = Some(map.next_value_seed(StrOrOtherSeed)?),
                "protocolVersion" => self.params.protocol_version = Some(map.next_value_seed(StrOrOtherSeed)?),
                "ref" => {
                    let seed = RefSeed { target: &mut self.params.ref_target, refusal: self.refusal };
                    map.next_value_seed(seed)?;
                }
                "arguments" if self.capture_arguments => {
                    // Kept raw (borrowed), then walked once more with the same strict rules as any other value:
                    // a CEL rule must never read an object the strict pass did not see.
                    let raw: &'de serde_json::value::RawValue = map.next_value()?;
                    let mut inner = serde_json::Deserializer::from_str(raw.get());
                    if let Err(e) = StrictValue.deserialize(&mut inner) {
                        return Err(refuse(self.refusal, classify_serde_error(&e)));
                    }
                    self.params.arguments = Some(raw.get());
                }
                "task" => {
                    self.params.task = true;
                    map.next_value_seed(StrictValue)?
                }
                _ => map.next_value_seed(StrictValue)?,
            }
            seen.push(key);
        }
        // Large objects skip the per-key scan above; a duplicate (even of a field we read) is caught here,
        // before any decision is made on the overwritten value.
        if seen.len() > LINEAR_DUPLICATE_SCAN {
            seen.sort_unstable();
            if let Some(pair) = seen.windows(2).find(|w| w.first() == w.get(1)) {
                let key = pair.first().map(|k| k.to_string()).unwrap_or_default();
                return Err(refuse(self.refusal, ParseError::DuplicateKey(key)));
            }
        }
        Ok(())
    }
}

const PARAMS_NOT_STRUCTURED: ParseError = ParseError::InvalidRequest("\"params\" must be an object or an array");

/// Record why a body is refused and turn it into a serde error that stops the parse.
fn refuse<E: de::Error>(slot: &mut Option<ParseError>, why: ParseError) -> E {
    let msg = why.to_string();
    *slot = Some(why);
    E::custom(msg)
}

/// `completion/complete`'s `ref`: `{type: "ref/prompt", name}` or `{type: "ref/resource", uri}`.
struct RefSeed<'s, 'a> {
    target: &'s mut Option<Cow<'a, str>>,
    refusal: &'s mut Option<ParseError>,
}

impl<'de> DeserializeSeed<'de> for RefSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RefSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a completion ref object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen: Vec<Cow<'de, str>> = Vec::with_capacity(3);
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let problem = if seen.contains(&key) {
                Some(ParseError::DuplicateKey(key.to_string()))
            } else {
                check_near_miss(&key, REF_FIELDS).err()
            };
            if let Some(why) = problem {
                return Err(refuse(self.refusal, why));
            }
            if let ("name" | "uri", StrOrOther::Str(v)) = (key.as_ref(), map.next_value_seed(StrOrOtherSeed)?) {
                *self.target = Some(v);
            }
            seen.push(key);
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        StrictValueVisitor.visit_seq(seq)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
}
