//! A2A (agent-to-agent) inspection: both protocol generations and both HTTP bindings, normalised to one
//! operation set; the grants a target agent carries; task ids and push-notification URLs a request names;
//! the agent card a caller may see.
//!
//! Names this module recognises (a2a-sdk 1.x serves all of them on one agent):
//! - JSON-RPC, A2A 1.0: `SendMessage`, `SendStreamingMessage`, `GetTask`, `ListTasks`, `CancelTask`,
//!   `SubscribeToTask`, `CreateTaskPushNotificationConfig`, `GetTaskPushNotificationConfig`,
//!   `ListTaskPushNotificationConfigs`, `DeleteTaskPushNotificationConfig`, `GetExtendedAgentCard`.
//! - JSON-RPC, A2A 0.3: `message/send`, `message/stream`, `tasks/get`, `tasks/cancel`, `tasks/resubscribe`,
//!   `tasks/pushNotificationConfig/{set,get,list,delete}`, `agent/getAuthenticatedExtendedCard`.
//! - HTTP+JSON (REST), 1.0: `POST /message:send`, `POST /message:stream`, `GET /tasks`, `GET /tasks/{id}`,
//!   `POST /tasks/{id}:cancel`, `GET|POST /tasks/{id}:subscribe`, `POST|GET /tasks/{id}/pushNotificationConfigs`,
//!   `GET|DELETE /tasks/{id}/pushNotificationConfigs/{configId}`, `GET /extendedAgentCard`, each also under
//!   one `/{tenant}` segment; 0.3: the same under `/v1` (no `ListTasks`), and `GET /v1/card`.
//! - The public card: `GET /.well-known/agent-card.json` and the older `/.well-known/agent.json`.
//!
//! Anything else on an A2A agent is not an A2A operation and is refused by the filter. Bodies are read with
//! the strict JSON-RPC parser's rules (duplicate keys, BOMs, batches refused). Servers also accept the
//! protobuf field names (`task_id` for `taskId`): both spellings are read, so neither hides a task id.

use crate::jsonrpc::{self, MessageKind, ParseError};
use crate::strict;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

/// The canonical A2A operations (A2A 1.0 names); grants name these.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Operation {
    SendMessage,
    SendStreamingMessage,
    GetTask,
    ListTasks,
    CancelTask,
    SubscribeToTask,
    CreateTaskPushNotificationConfig,
    GetTaskPushNotificationConfig,
    ListTaskPushNotificationConfigs,
    DeleteTaskPushNotificationConfig,
    GetExtendedAgentCard,
    /// `GET /.well-known/agent-card.json`: implied by any grant to the caller (the card is filtered).
    GetAgentCard,
}

impl Operation {
    pub const ALL: [Operation; 12] = [
        Operation::SendMessage,
        Operation::SendStreamingMessage,
        Operation::GetTask,
        Operation::ListTasks,
        Operation::CancelTask,
        Operation::SubscribeToTask,
        Operation::CreateTaskPushNotificationConfig,
        Operation::GetTaskPushNotificationConfig,
        Operation::ListTaskPushNotificationConfigs,
        Operation::DeleteTaskPushNotificationConfig,
        Operation::GetExtendedAgentCard,
        Operation::GetAgentCard,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::SendMessage => "SendMessage",
            Operation::SendStreamingMessage => "SendStreamingMessage",
            Operation::GetTask => "GetTask",
            Operation::ListTasks => "ListTasks",
            Operation::CancelTask => "CancelTask",
            Operation::SubscribeToTask => "SubscribeToTask",
            Operation::CreateTaskPushNotificationConfig => "CreateTaskPushNotificationConfig",
            Operation::GetTaskPushNotificationConfig => "GetTaskPushNotificationConfig",
            Operation::ListTaskPushNotificationConfigs => "ListTaskPushNotificationConfigs",
            Operation::DeleteTaskPushNotificationConfig => "DeleteTaskPushNotificationConfig",
            Operation::GetExtendedAgentCard => "GetExtendedAgentCard",
            Operation::GetAgentCard => "GetAgentCard",
        }
    }

    pub fn from_name(name: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|o| o.as_str() == name)
    }

    /// Whether the response may create tasks the caller then owns.
    pub fn creates_tasks(self) -> bool {
        matches!(self, Operation::SendMessage | Operation::SendStreamingMessage)
    }

    /// Whether the response is an agent card (filtered per caller).
    pub fn returns_card(self) -> bool {
        matches!(self, Operation::GetAgentCard | Operation::GetExtendedAgentCard)
    }

    /// Operations whose subject is one existing task (named in `id`/`taskId` or the REST path).
    fn needs_task(self) -> bool {
        matches!(
            self,
            Operation::GetTask
                | Operation::CancelTask
                | Operation::SubscribeToTask
                | Operation::CreateTaskPushNotificationConfig
                | Operation::GetTaskPushNotificationConfig
                | Operation::ListTaskPushNotificationConfigs
                | Operation::DeleteTaskPushNotificationConfig
        )
    }
}

/// The JSON-RPC method names of both generations: (name, operation, is the 0.3 name).
const METHODS: &[(&str, Operation, bool)] = &[
    ("SendMessage", Operation::SendMessage, false),
    ("SendStreamingMessage", Operation::SendStreamingMessage, false),
    ("GetTask", Operation::GetTask, false),
    ("ListTasks", Operation::ListTasks, false),
    ("CancelTask", Operation::CancelTask, false),
    ("SubscribeToTask", Operation::SubscribeToTask, false),
    ("CreateTaskPushNotificationConfig", Operation::CreateTaskPushNotificationConfig, false),
    ("GetTaskPushNotificationConfig", Operation::GetTaskPushNotificationConfig, false),
    ("ListTaskPushNotificationConfigs", Operation::ListTaskPushNotificationConfigs, false),
    ("DeleteTaskPushNotificationConfig", Operation::DeleteTaskPushNotificationConfig, false),
    ("GetExtendedAgentCard", Operation::GetExtendedAgentCard, false),
    ("message/send", Operation::SendMessage, true),
    ("message/stream", Operation::SendStreamingMessage, true),
    ("tasks/get", Operation::GetTask, true),
    ("tasks/cancel", Operation::CancelTask, true),
    ("tasks/resubscribe", Operation::SubscribeToTask, true),
    ("tasks/pushNotificationConfig/set", Operation::CreateTaskPushNotificationConfig, true),
    ("tasks/pushNotificationConfig/get", Operation::GetTaskPushNotificationConfig, true),
    ("tasks/pushNotificationConfig/list", Operation::ListTaskPushNotificationConfigs, true),
    ("tasks/pushNotificationConfig/delete", Operation::DeleteTaskPushNotificationConfig, true),
    ("agent/getAuthenticatedExtendedCard", Operation::GetExtendedAgentCard, true),
];

/// The operation a JSON-RPC method names, and whether it is the A2A 0.3 spelling.
pub fn method_operation(method: &str) -> Option<(Operation, bool)> {
    METHODS.iter().find(|(m, _, _)| *m == method).map(|(_, op, legacy)| (*op, *legacy))
}

/// How the request reached the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    JsonRpc,
    Rest,
    /// `GET /.well-known/agent-card.json` (or `agent.json`).
    Card,
}

/// One A2A request, as authorization sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub op: Operation,
    pub binding: Binding,
    /// The request used the A2A 0.3 names (`message/send`, `/v1/...`).
    pub legacy: bool,
    /// JSON-RPC id exactly as written (to echo with its type).
    pub id: Option<String>,
    /// Tasks the request acts on or continues (`params.id` of task operations, `taskId`, REST path ids):
    /// each must belong to the caller.
    pub tasks: Vec<String>,
    /// `referenceTaskIds`: each must belong to the caller too.
    pub references: Vec<String>,
    /// Push-notification webhook URLs the request registers: each must be on the agent's allowlist.
    pub push_urls: Vec<String>,
}

impl Call {
    pub fn new(op: Operation, binding: Binding, legacy: bool) -> Call {
        Call { op, binding, legacy, id: None, tasks: Vec::new(), references: Vec::new(), push_urls: Vec::new() }
    }

    /// Protocol label for audit records: `a2a/jsonrpc`, `a2a-0.3/rest`, …
    pub fn protocol(&self) -> &'static str {
        match (self.binding, self.legacy) {
            (Binding::JsonRpc, false) => "a2a/jsonrpc",
            (Binding::JsonRpc, true) => "a2a-0.3/jsonrpc",
            (Binding::Rest, false) => "a2a/rest",
            (Binding::Rest, true) => "a2a-0.3/rest",
            (Binding::Card, _) => "a2a/card",
        }
    }
}

/// A request Grantwall refuses before judging grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// JSON-RPC error code (also picks the REST status).
    pub code: i32,
    /// Stable audit reason.
    pub reason: &'static str,
    pub message: String,
}

fn refused(code: i32, reason: &'static str, message: impl Into<String>) -> Refused {
    Refused { code, reason, message: message.into() }
}

impl From<ParseError> for Refused {
    fn from(e: ParseError) -> Refused {
        refused(e.code(), e.reason(), e.to_string())
    }
}

fn invalid_params(message: impl Into<String>) -> Refused {
    refused(-32602, "invalid-params", message)
}

/// Parse a JSON-RPC request body sent to the agent's JSON-RPC endpoint.
pub fn parse_jsonrpc(body: &[u8]) -> Result<Call, Refused> {
    let message = jsonrpc::parse(body)?;
    if message.kind != MessageKind::Request {
        // A2A has no notifications and no server-to-client requests a client could answer.
        return Err(refused(-32600, "invalid-request", "A2A accepts only JSON-RPC requests with an id"));
    }
    let Some((op, legacy)) = method_operation(&message.method) else {
        return Err(refused(-32601, "a2a-method-unknown", format!("{:?} is not an A2A method", message.method)));
    };
    let mut call = Call::new(op, Binding::JsonRpc, legacy);
    call.id = message.id.map(str::to_owned);
    // The strict pass above refused duplicates and malformed JSON; read `params` again for the A2A fields.
    let text = std::str::from_utf8(body).map_err(|_| invalid_params("body is not UTF-8"))?;
    let envelope = strict::members(text.trim()).map_err(|e| invalid_params(e.to_string()))?;
    let params = envelope.get("params");
    read_body(&mut call, params)?;
    Ok(call)
}

/// The REST operation a method and path name, before the body is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestRoute {
    pub op: Operation,
    pub legacy: bool,
    /// The task id in the path (`/tasks/{id}…`).
    pub path_task: Option<String>,
    /// Whether the request carries a JSON body to inspect (POST); others must carry none.
    pub has_body: bool,
}

/// The public agent card paths.
pub fn is_card_path(path: &str) -> bool {
    matches!(path_only(path), "/.well-known/agent-card.json" | "/.well-known/agent.json")
}

/// Classify an HTTP+JSON request by method and path, in the order a2a-sdk's router tries them (0.3 `/v1`
/// routes, then 1.0 routes, then 1.0 routes under one `/{tenant}` segment). None: not an A2A operation.
/// Percent-escapes, empty and dot segments are refused (None): the server would decode or normalise them
/// into a path other than the one judged here.
pub fn classify_rest(method: &str, path: &str) -> Option<RestRoute> {
    let path = path_only(path);
    let rest = path.strip_prefix('/')?;
    if path.contains(['%', '\\']) {
        return None;
    }
    let segments: Vec<&str> = rest.split('/').collect();
    if segments.iter().any(|s| s.is_empty() || *s == "." || *s == "..") {
        return None;
    }
    if let Some(("v1", tail)) = segments.split_first().map(|(h, t)| (*h, t)) {
        if let Some(route) = match_routes(method, tail, true) {
            return Some(route);
        }
    }
    if let Some(route) = match_routes(method, &segments, false) {
        return Some(route);
    }
    let (_tenant, tail) = segments.split_first()?;
    match_routes(method, tail, false)
}

fn match_routes(method: &str, seg: &[&str], legacy: bool) -> Option<RestRoute> {
    let route = |op, path_task: Option<&str>, has_body| {
        Some(RestRoute { op, legacy, path_task: path_task.map(str::to_owned), has_body })
    };
    match (method, seg) {
        ("POST", ["message:send"]) => route(Operation::SendMessage, None, true),
        ("POST", ["message:stream"]) => route(Operation::SendStreamingMessage, None, true),
        ("GET", ["tasks"]) if !legacy => route(Operation::ListTasks, None, false),
        ("GET", ["card"]) if legacy => route(Operation::GetExtendedAgentCard, None, false),
        ("GET", ["extendedAgentCard"]) if !legacy => route(Operation::GetExtendedAgentCard, None, false),
        ("POST", ["tasks", id]) if id.len() > 7 && id.ends_with(":cancel") => {
            route(Operation::CancelTask, id.strip_suffix(":cancel"), true)
        }
        ("GET" | "POST", ["tasks", id]) if id.len() > 10 && id.ends_with(":subscribe") => {
            route(Operation::SubscribeToTask, id.strip_suffix(":subscribe"), method == "POST")
        }
        ("GET", ["tasks", id]) => route(Operation::GetTask, Some(id), false),
        ("POST", ["tasks", id, "pushNotificationConfigs"]) => {
            route(Operation::CreateTaskPushNotificationConfig, Some(id), true)
        }
        ("GET", ["tasks", id, "pushNotificationConfigs"]) => route(Operation::ListTaskPushNotificationConfigs, Some(id), false),
        ("GET", ["tasks", id, "pushNotificationConfigs", _]) => route(Operation::GetTaskPushNotificationConfig, Some(id), false),
        ("DELETE", ["tasks", id, "pushNotificationConfigs", _]) if !legacy => {
            route(Operation::DeleteTaskPushNotificationConfig, Some(id), false)
        }
        _ => None,
    }
}

/// Complete a REST call with its body (None or empty for bodiless requests).
pub fn rest_call(route: &RestRoute, body: Option<&[u8]>) -> Result<Call, Refused> {
    let mut call = Call::new(route.op, Binding::Rest, route.legacy);
    call.tasks.extend(route.path_task.iter().cloned());
    let body = body.filter(|b| !b.is_empty());
    match (route.has_body, body) {
        (false, Some(_)) => {
            return Err(refused(-32600, "invalid-request", format!("{} must not carry a body", route.op.as_str())))
        }
        (true, Some(body)) => {
            let text = std::str::from_utf8(body).map_err(|_| refused(-32700, "malformed-json", "body is not UTF-8"))?;
            let first = text.trim_start().chars().next();
            if first != Some('{') {
                return Err(refused(-32600, "invalid-request", "an A2A REST body must be a JSON object"));
            }
            // The strict value reader refuses duplicate keys at any depth.
            strict::value(text).map_err(|e| refused(-32700, "malformed-json", e.to_string()))?;
            let raw: &RawValue = serde_json::from_str(text).map_err(|e| refused(-32700, "malformed-json", e.to_string()))?;
            read_body(&mut call, Some(raw))?;
        }
        (true, None) if matches!(route.op, Operation::SendMessage | Operation::SendStreamingMessage) => {
            return Err(invalid_params("a message request needs a body"))
        }
        _ => {}
    }
    if call.op.needs_task() && call.tasks.is_empty() {
        return Err(invalid_params("the request names no task"));
    }
    Ok(call)
}

/// Subtrees that carry user content, never protocol fields.
const CONTENT_KEYS: &[&str] = &["parts", "metadata", "artifacts", "history", "data"];

/// Read the task ids, reference ids and push URLs of a request's params (JSON-RPC) or body (REST).
fn read_body(call: &mut Call, params: Option<&RawValue>) -> Result<(), Refused> {
    let members = match params {
        None => strict::Members(Vec::new()),
        Some(raw) => strict::members(raw.get()).map_err(|_| invalid_params("params must be a JSON object"))?,
    };
    // The task a task operation names: `id` (1.0 task methods; every 0.3 task method but `set`).
    let id_is_task = match call.op {
        Operation::GetTask | Operation::CancelTask | Operation::SubscribeToTask => true,
        Operation::GetTaskPushNotificationConfig
        | Operation::ListTaskPushNotificationConfigs
        | Operation::DeleteTaskPushNotificationConfig => call.legacy && call.binding == Binding::JsonRpc,
        _ => false,
    };
    // REST bodies of task operations may repeat the path's id: it must be the caller's task as well.
    if id_is_task || (call.binding == Binding::Rest && call.op.needs_task() && call.op != Operation::GetTaskPushNotificationConfig) {
        if let Some(v) = members.get("id") {
            match strict::string(v) {
                Some(s) => call.tasks.push(s.into_owned()),
                None if v.get() == "null" => {}
                None => return Err(invalid_params("id must be a string")),
            }
        }
    }
    // A config created by CreateTaskPushNotificationConfig sits at the top level (1.0: `url`).
    let whole_is_push = call.op == Operation::CreateTaskPushNotificationConfig;
    scan_object(&members, whole_is_push, call, 0)?;
    if call.binding == Binding::JsonRpc && call.op.needs_task() && call.tasks.is_empty() {
        return Err(invalid_params("the request names no task"));
    }
    Ok(())
}

fn scan_object(members: &strict::Members<'_>, in_push: bool, call: &mut Call, depth: u32) -> Result<(), Refused> {
    if depth > 64 {
        return Err(invalid_params("params nested too deeply"));
    }
    for (key, value) in &members.0 {
        let key: &str = key.as_ref();
        match key {
            k if CONTENT_KEYS.contains(&k) => {}
            "taskId" | "task_id" => match strict::string(value) {
                Some(s) => call.tasks.push(s.into_owned()),
                None if value.get() == "null" => {}
                None => return Err(invalid_params(format!("{key} must be a string"))),
            },
            "referenceTaskIds" | "reference_task_ids" => {
                if value.get() == "null" {
                    continue;
                }
                let items = strict::elements(value.get()).map_err(|_| invalid_params(format!("{key} must be an array")))?;
                for item in items {
                    let id = strict::string(item).ok_or_else(|| invalid_params(format!("{key} must hold strings")))?;
                    call.references.push(id.into_owned());
                }
            }
            "url" if in_push => match strict::string(value) {
                Some(s) => call.push_urls.push(s.into_owned()),
                None if value.get() == "null" => {}
                None => return Err(invalid_params("a push-notification url must be a string")),
            },
            _ => {
                let push = in_push || key.to_ascii_lowercase().contains("push");
                scan_value(value, push, call, depth + 1)?;
            }
        }
    }
    Ok(())
}

fn scan_value(value: &RawValue, in_push: bool, call: &mut Call, depth: u32) -> Result<(), Refused> {
    match value.get().trim_start().as_bytes().first() {
        Some(b'{') => {
            let m = strict::members(value.get()).map_err(|e| invalid_params(e.to_string()))?;
            scan_object(&m, in_push, call, depth)
        }
        Some(b'[') => {
            for item in strict::elements(value.get()).map_err(|e| invalid_params(e.to_string()))? {
                scan_value(item, in_push, call, depth + 1)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Strip query and fragment.
fn path_only(path: &str) -> &str {
    path.split(['?', '#']).next().unwrap_or(path)
}

/// Whether a push-notification URL may be registered: it must start with one of the allowed prefixes,
/// each a full `https://host[:port]/…` prefix (so `https://hooks.example` cannot be extended to
/// `https://hooks.example.evil`). No userinfo, backslashes or percent-escapes in the authority.
pub fn push_url_allowed(url: &str, prefixes: &[String]) -> bool {
    let Some(rest) = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")) else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains(['@', '\\', '%']) || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    prefixes.iter().any(|p| url.starts_with(p.as_str()))
}

// ---------------------------------------------------------------------------------------------------------
// Configuration (compiled from GrantwallA2AAgent / GrantwallA2APolicy) and grants.

/// What to do with a signed agent card that filtering would change.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignedCards {
    /// Replace the card with an error: never emit a card whose signature no longer verifies.
    #[default]
    Refuse,
    /// Forward the signed card unchanged (every skill visible) and write an audit warning.
    PassUnfiltered,
}

/// An A2A agent behind this backend: its JSON-RPC endpoint, card options, push allowlist and grants.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentConfig {
    /// The JSON-RPC endpoint path (exact). Other paths are read as the HTTP+JSON binding or the card.
    pub rpc_path: String,
    /// The gateway's public base URL: interface URLs in the card are rewritten onto it (their path kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    #[serde(default)]
    pub signed_cards: SignedCards,
    /// URL prefixes a push-notification webhook may start with. Empty: no webhook may be registered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub push_url_prefixes: Vec<String>,
    /// GrantwallA2APolicies on this agent, oldest first. Empty: no policy, every caller allowed.
    #[serde(default)]
    pub policies: Vec<AgentPolicy>,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentPolicy {
    /// `namespace/name` of the GrantwallA2APolicy.
    pub name: String,
    pub rules: Vec<AgentRule>,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentRule {
    pub name: String,
    /// Indexes into `Config::principals`. Absent: any caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principals: Option<Vec<u32>>,
    /// Operations granted. Absent: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operations: Option<Vec<Operation>>,
    /// Skill ids the caller sees in the card. Absent: all skills.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skills: Option<Vec<String>>,
}

/// The outcome of judging an A2A call against an agent's grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict<'a> {
    pub allowed: bool,
    /// The policy and rule that granted it (None: no policy on the agent, or denied).
    pub matched: Option<(&'a str, &'a str)>,
}

/// Skills a caller may see: None = all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkillView<'a>(pub Option<Vec<&'a str>>);

impl SkillView<'_> {
    pub fn allows(&self, skill: &str) -> bool {
        self.0.as_ref().is_none_or(|s| s.contains(&skill))
    }
}

impl AgentConfig {
    /// Check what the schema cannot: paths, URLs, principal indexes. Errors: (field path, message).
    pub fn validate(&self, at: &str, principal_count: usize) -> Result<(), (String, String)> {
        if !self.rpc_path.starts_with('/') {
            return Err((format!("{at}.rpcPath"), format!("{:?} must start with '/'", self.rpc_path)));
        }
        if let Some(u) = &self.public_url {
            if !(u.starts_with("https://") || u.starts_with("http://")) || u.contains(['?', '#', '@']) {
                return Err((format!("{at}.publicUrl"), format!("{u:?} must be an http(s) URL without query or userinfo")));
            }
        }
        for (i, p) in self.push_url_prefixes.iter().enumerate() {
            let Some(rest) = p.strip_prefix("https://").or_else(|| p.strip_prefix("http://")) else {
                return Err((format!("{at}.pushUrlPrefixes[{i}]"), format!("{p:?} must start with https:// or http://")));
            };
            // The host must be closed by a '/', so the prefix cannot be extended into another host name.
            match rest.split_once('/') {
                Some((host, _)) if !host.is_empty() && !host.contains(['@', '%', '\\']) => {}
                _ => {
                    return Err((
                        format!("{at}.pushUrlPrefixes[{i}]"),
                        format!("{p:?} must name a host and end it with '/' (e.g. https://hooks.example.com/)"),
                    ))
                }
            }
        }
        for (pi, policy) in self.policies.iter().enumerate() {
            for (ri, rule) in policy.rules.iter().enumerate() {
                for (k, p) in rule.principals.iter().flatten().enumerate() {
                    if *p as usize >= principal_count {
                        return Err((format!("{at}.policies[{pi}].rules[{ri}].principals[{k}]"), format!("principal {p} does not exist")));
                    }
                }
            }
        }
        Ok(())
    }

    pub fn has_policies(&self) -> bool {
        !self.policies.is_empty()
    }
}

/// An agent's config indexed for decisions: per principal, the (policy, rule) positions naming it, plus the
/// rules open to any caller, both in policy order — so a decision looks only at the caller's own rules.
#[derive(Debug, Clone)]
pub struct Agent {
    pub config: AgentConfig,
    by_principal: std::collections::HashMap<u32, Vec<(u32, u32)>>,
    open: Vec<(u32, u32)>,
    /// A policy with no rules matches everything (KAN): its index, if any.
    whole_policy: Option<u32>,
}

impl Agent {
    pub fn new(config: AgentConfig) -> Agent {
        let mut by_principal: std::collections::HashMap<u32, Vec<(u32, u32)>> = std::collections::HashMap::new();
        let mut open = Vec::new();
        let mut whole_policy = None;
        for (pi, policy) in config.policies.iter().enumerate() {
            let pi = u32::try_from(pi).unwrap_or(u32::MAX);
            if policy.rules.is_empty() && whole_policy.is_none() {
                whole_policy = Some(pi);
            }
            for (ri, rule) in policy.rules.iter().enumerate() {
                let at = (pi, u32::try_from(ri).unwrap_or(u32::MAX));
                match &rule.principals {
                    None => open.push(at),
                    Some(list) => {
                        for p in list {
                            by_principal.entry(*p).or_default().push(at);
                        }
                    }
                }
            }
        }
        for refs in by_principal.values_mut() {
            refs.dedup();
        }
        Agent { config, by_principal, open, whole_policy }
    }

    pub fn has_policies(&self) -> bool {
        self.config.has_policies()
    }

    /// The caller's candidate rules, merged with the open ones, in policy order.
    fn candidates(&self, principal: Option<u32>) -> impl Iterator<Item = (&AgentPolicy, &AgentRule)> + '_ {
        let named: &[(u32, u32)] = principal.and_then(|p| self.by_principal.get(&p)).map_or(&[], Vec::as_slice);
        let open = self.open.as_slice();
        // Both lists are built in policy order: merge them without allocating.
        crate::sorted::merged(named, open).filter_map(move |(p, r)| {
            let policy = self.config.policies.get(p as usize)?;
            Some((policy, policy.rules.get(r as usize)?))
        })
    }

    /// Judge `op` for the caller (its index in `Config::principals`; None: unnamed or no identity).
    /// No policy: allowed. Otherwise the first rule (policy order) naming the caller and granting `op`.
    /// `GetAgentCard` is granted by any rule naming the caller.
    pub fn decide(&self, principal: Option<u32>, op: Operation) -> Verdict<'_> {
        if self.config.policies.is_empty() {
            return Verdict { allowed: true, matched: None };
        }
        let whole = self.whole_policy.and_then(|p| self.config.policies.get(p as usize));
        let hit = self.candidates(principal).find(|(_, rule)| rule_grants(rule, op));
        match (hit, whole) {
            (Some((policy, rule)), _) => Verdict { allowed: true, matched: Some((&policy.name, &rule.name)) },
            (None, Some(policy)) => Verdict { allowed: true, matched: Some((&policy.name, "*")) },
            (None, None) => Verdict { allowed: false, matched: None },
        }
    }

    /// The skills the caller sees in the card: the union over rules naming it (any rule without `skills`
    /// shows all).
    pub fn skills_for(&self, principal: Option<u32>) -> SkillView<'_> {
        if self.config.policies.is_empty() || self.whole_policy.is_some() {
            return SkillView(None);
        }
        let mut out: Vec<&str> = Vec::new();
        for (_, rule) in self.candidates(principal) {
            match &rule.skills {
                None => return SkillView(None),
                Some(list) => out.extend(list.iter().map(String::as_str)),
            }
        }
        SkillView(Some(out))
    }
}

fn rule_grants(rule: &AgentRule, op: Operation) -> bool {
    op == Operation::GetAgentCard || rule.operations.as_ref().is_none_or(|ops| ops.contains(&op))
}

// ---------------------------------------------------------------------------------------------------------
// Responses: task ids created, agent cards.

/// Task ids a response (JSON body or one SSE event's data) reports, across both generations and bindings:
/// 1.0 `{task:{id}}`, `{statusUpdate:{taskId}}`, `{artifactUpdate:{taskId}}`, `{message:{taskId}}`;
/// 0.3 `{kind:"task", id}` and `{taskId}` of status/artifact updates and messages; JSON-RPC wraps them in
/// `result`. Unreadable input yields nothing (the caller then owns no task, which only ever denies).
pub fn response_task_ids(data: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(envelope) = strict::members(data.trim()) else { return out };
    let body = match envelope.get("result") {
        Some(result) => match strict::members(result.get()) {
            Ok(m) => m,
            Err(_) => return out,
        },
        None if envelope.get("error").is_some() => return out,
        None => envelope,
    };
    collect_task_ids(&body, &mut out);
    for key in ["task", "statusUpdate", "artifactUpdate", "message", "status_update", "artifact_update", "msg"] {
        if let Some(inner) = body.get(key).and_then(|v| strict::members(v.get()).ok()) {
            collect_task_ids(&inner, &mut out);
            if key == "task" {
                if let Some(id) = inner.get("id").and_then(strict::string) {
                    out.push(id.into_owned());
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn collect_task_ids(m: &strict::Members<'_>, out: &mut Vec<String>) {
    for key in ["taskId", "task_id"] {
        if let Some(id) = m.get(key).and_then(strict::string) {
            out.push(id.into_owned());
        }
    }
    if m.get("kind").and_then(strict::string).as_deref() == Some("task") {
        if let Some(id) = m.get("id").and_then(strict::string) {
            out.push(id.into_owned());
        }
    }
}

/// Keep only the caller's tasks in a `ListTasks` response (JSON-RPC `result.tasks` or the REST body's
/// `tasks`); `totalSize` becomes the number kept. Ok(None): an error response, nothing to filter.
pub fn filter_task_list(body: &[u8], keep: &mut dyn FnMut(&str) -> bool) -> Result<Option<(Vec<u8>, usize, usize)>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the task list is not UTF-8".to_string())?;
    let mut doc = strict::value(text).map_err(|e| format!("the task list is not strict JSON: {e}"))?;
    let is_rpc = doc.get("jsonrpc").is_some();
    if is_rpc && doc.get("result").is_none() {
        return Ok(None);
    }
    let list = if is_rpc { doc.get_mut("result") } else { Some(&mut doc) };
    let Some(Value::Object(list)) = list else { return Err("the task list is not a JSON object".into()) };
    let (mut kept, mut dropped) = (0, 0);
    match list.get_mut("tasks") {
        None | Some(Value::Null) => {}
        Some(Value::Array(tasks)) => {
            let mut out = Vec::with_capacity(tasks.len());
            for task in tasks.drain(..) {
                let id = task.get("id").and_then(Value::as_str).ok_or("a listed task without a string id")?;
                if keep(id) {
                    out.push(task);
                } else {
                    dropped += 1;
                }
            }
            kept = out.len();
            *tasks = out;
        }
        Some(_) => return Err("tasks is not an array".into()),
    }
    for key in ["totalSize", "total_size"] {
        if list.contains_key(key) {
            list.insert(key.to_owned(), Value::from(kept));
        }
    }
    let body = serde_json::to_vec(&doc).map_err(|e| e.to_string())?;
    Ok(Some((body, kept, dropped)))
}

/// What card filtering did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardOutcome {
    /// The card to send (filtered and rewritten), with counts of skills kept and dropped.
    Rewritten { body: Vec<u8>, kept: usize, dropped: usize },
    /// Nothing needed changing: forward the card as it is.
    Unchanged,
    /// Signed and filtering would change it; configured to pass it unfiltered (audit warning).
    SignedPassed,
    /// Signed and filtering would change it; configured to refuse.
    SignedRefused,
}

/// Filter a card (or a JSON-RPC response carrying one in `result`): keep the skills the caller may see,
/// rewrite interface URLs onto `public_url` (path kept). Duplicate keys anywhere make it unreadable.
pub fn filter_card(body: &[u8], view: &SkillView<'_>, public_url: Option<&str>, signed: SignedCards) -> Result<CardOutcome, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the card is not UTF-8".to_string())?;
    let mut doc = strict::value(text).map_err(|e| format!("the card is not strict JSON: {e}"))?;
    let is_rpc = doc.get("jsonrpc").is_some();
    if is_rpc && doc.get("result").is_none() {
        return Ok(CardOutcome::Unchanged); // a JSON-RPC error: no card in it
    }
    let card = if is_rpc { doc.get_mut("result") } else { Some(&mut doc) };
    let Some(Value::Object(card)) = card else { return Err("the card is not a JSON object".into()) };
    let mut changed = false;
    let (mut kept, mut dropped) = (0, 0);
    match card.get_mut("skills") {
        None | Some(Value::Null) => {}
        Some(Value::Array(skills)) => {
            let mut keep = Vec::with_capacity(skills.len());
            for skill in skills.drain(..) {
                let id = skill.get("id").and_then(Value::as_str).ok_or("a skill without a string id")?;
                if view.allows(id) {
                    keep.push(skill);
                } else {
                    dropped += 1;
                }
            }
            kept = keep.len();
            *skills = keep;
            changed |= dropped > 0;
        }
        Some(_) => return Err("skills is not an array".into()),
    }
    if let Some(base) = public_url {
        let base = base.trim_end_matches('/');
        if let Some(url) = card.get_mut("url") {
            changed |= rewrite_url(url, base)?;
        }
        for list in ["supportedInterfaces", "additionalInterfaces", "supported_interfaces", "additional_interfaces"] {
            match card.get_mut(list) {
                None | Some(Value::Null) => {}
                Some(Value::Array(items)) => {
                    for item in items {
                        if let Some(url) = item.get_mut("url") {
                            changed |= rewrite_url(url, base)?;
                        }
                    }
                }
                Some(_) => return Err(format!("{list} is not an array")),
            }
        }
    }
    if !changed {
        return Ok(CardOutcome::Unchanged);
    }
    let signed_card = match card.get("signatures") {
        None | Some(Value::Null) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(_) => true,
    };
    if signed_card {
        return Ok(match signed {
            SignedCards::Refuse => CardOutcome::SignedRefused,
            SignedCards::PassUnfiltered => CardOutcome::SignedPassed,
        });
    }
    let body = serde_json::to_vec(&doc).map_err(|e| e.to_string())?;
    Ok(CardOutcome::Rewritten { body, kept, dropped })
}

/// `https://agent.internal:9999/a2a` → `<base>/a2a`. True if the value changed.
fn rewrite_url(url: &mut Value, base: &str) -> Result<bool, String> {
    let Value::String(s) = url else { return Err("an interface url is not a string".into()) };
    let after_scheme = s.split_once("://").map(|(_, r)| r).ok_or("an interface url without a scheme")?;
    let path = after_scheme.find('/').and_then(|i| after_scheme.get(i..)).unwrap_or("");
    let new = format!("{base}{path}");
    let changed = *s != new;
    *s = new;
    Ok(changed)
}

/// The body replacing a response Grantwall cannot show this caller (a card, a task list): a JSON-RPC error
/// with the request's id, or a REST error.
pub fn unfilterable_body(id: Option<&str>, message: &str, reason: &str) -> Vec<u8> {
    match id {
        Some(id) => format!(
            r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32603,"message":{}}}}}"#,
            serde_json::to_string(message).unwrap_or_default()
        )
        .into_bytes(),
        None => rest_error_body(502, "UNAVAILABLE", message, reason),
    }
}

/// An HTTP+JSON (REST) error body in the google.rpc.Status shape a2a-sdk's REST client reads.
pub fn rest_error_body(code: u32, status: &str, message: &str, reason: &str) -> Vec<u8> {
    let message = serde_json::to_string(message).unwrap_or_default();
    let reason = serde_json::to_string(reason).unwrap_or_default();
    format!(
        r#"{{"error":{{"code":{code},"status":"{status}","message":{message},"details":[{{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":{reason},"domain":"grantwall.io"}}]}}}}"#
    )
    .into_bytes()
}

/// The reply to an A2A call over a rate limit or fan-out cap: HTTP 429 in either binding (A2A clients keep
/// their connection on a 429, unlike MCP's; the caller adds `Retry-After`). JSON-RPC carries the same
/// error object as an MCP rate limit; REST a `RESOURCE_EXHAUSTED` status.
pub fn over_limit_denial(binding: Binding, id: Option<&str>, refused: &crate::limits::Refused<'_>) -> (u32, Vec<u8>) {
    match binding {
        Binding::JsonRpc => {
            let reply = crate::limits::over_limit_reply(crate::config::DenialStyle::Http, Some(id.unwrap_or("null")), None, None, refused);
            (429, reply.body.into_bytes())
        }
        Binding::Rest | Binding::Card => {
            let message = format!("{} (limit {}); retry after {} s", crate::limits::RATE_LIMITED_MESSAGE, refused.rule, refused.retry_after_secs);
            (429, rest_error_body(429, "RESOURCE_EXHAUSTED", &message, refused.reason))
        }
    }
}

/// A JSON-RPC denial in A2A's conventions: a foreign or unknown task is `TaskNotFoundError` (-32001, so a
/// task's existence is not revealed), an unknown method -32601, anything else KAN's 403.
pub fn jsonrpc_denial(id: Option<&str>, reason: &str) -> Vec<u8> {
    let (code, message) = denial_code(reason);
    let id = id.unwrap_or("null");
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{},"data":{{"reason":{}}}}}}}"#,
        serde_json::to_string(message).unwrap_or_default(),
        serde_json::to_string(reason).unwrap_or_default()
    )
    .into_bytes()
}

fn denial_code(reason: &str) -> (i32, &'static str) {
    match reason {
        "task-foreign" | "task-unknown" | "reference-task-foreign" | "reference-task-unknown" => (-32001, "Task not found"),
        "a2a-method-unknown" => (-32601, "Method not found"),
        "malformed-json" => (-32700, "Parse error"),
        "invalid-params" => (-32602, "Invalid params"),
        "invalid-request" | "batch-refused" | "duplicate-key" | "ambiguous-key" => (-32600, "Invalid request"),
        _ => (crate::respond::FORBIDDEN_CODE, "Access to this agent operation is forbidden."),
    }
}

/// The HTTP status and body of a REST denial: 404 for a foreign task (as if it did not exist), 403 else.
pub fn rest_denial(reason: &str) -> (u32, Vec<u8>) {
    match denial_code(reason) {
        (-32001, m) => (404, rest_error_body(404, "NOT_FOUND", m, reason)),
        (-32601, m) => (404, rest_error_body(404, "NOT_FOUND", m, reason)),
        (-32700 | -32602 | -32600, m) => (400, rest_error_body(400, "INVALID_ARGUMENT", m, reason)),
        (_, m) => (403, rest_error_body(403, "PERMISSION_DENIED", m, reason)),
    }
}
