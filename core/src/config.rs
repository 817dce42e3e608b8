//! The compiled plugin configuration.
//!
//! This is the one set of types that `grantwall compile` writes and the filter reads. The JSON form is
//! versioned (`version`), normalised (every CRD default applied, every ServiceAccount resolved to a SPIFFE ID)
//! and indexed: callers are interned in `principals` and rules refer to them by number; `routes` maps an Envoy
//! cluster name or an `:authority` straight to a backend. `docs/config-schema.json` is generated from these
//! types by `grantwall schema` (schemars), and a test keeps the committed file current.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The only config version this build reads. A config with any other version is refused at load.
pub const CONFIG_VERSION: &str = "grantwall.io/v1alpha1";

/// Default cap on a request body the filter will buffer and inspect (1 MiB).
pub const DEFAULT_MAX_BODY_BYTES: u32 = 1024 * 1024;

/// Most policies KAN accepts on one target; the compiler keeps the oldest and reports the rest.
pub const MAX_POLICIES_PER_TARGET: usize = 5;

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// Must equal [`CONFIG_VERSION`].
    pub version: String,
    #[serde(default)]
    pub settings: Settings,
    /// Every caller identity a rule names, as a SPIFFE ID, sorted and unique. Rules refer to them by index.
    #[serde(default)]
    pub principals: Vec<String>,
    /// Gateway-level policies: they apply to every request this filter sees, ANDed with the backend's.
    #[serde(default)]
    pub gateway: Target,
    /// XBackends, in the order `routes` refers to them.
    #[serde(default)]
    pub backends: Vec<Backend>,
    /// How a request finds its backend.
    #[serde(default)]
    pub routes: Routes,
    /// Rate limits, fan-out caps and context budgets (GrantwallRateLimitPolicy; core/src/limits.rs).
    #[serde(default, skip_serializing_if = "crate::limits::LimitsConfig::is_empty")]
    pub limits: crate::limits::LimitsConfig,
    /// LLM upstreams: model grants and token budgets (GrantwallModelPolicy, core/src/llm/).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<crate::llm::LlmConfig>,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
    /// The shape of a per-request denial.
    #[serde(default)]
    pub denial: DenialStyle,
    /// Largest request body inspected; larger bodies are refused with HTTP 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u32,
    #[serde(default)]
    pub identity: IdentitySettings,
    /// Write one JSON audit line per decision to the proxy log.
    #[serde(default = "default_true")]
    pub audit_log: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            denial: DenialStyle::default(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            identity: IdentitySettings::default(),
            audit_log: true,
        }
    }
}

fn default_max_body_bytes() -> u32 {
    DEFAULT_MAX_BODY_BYTES
}

fn default_true() -> bool {
    true
}

/// How a denied MCP request is answered.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DenialStyle {
    /// KAN-compatible: HTTP 200 with a JSON-RPC error, code 403, "Access to this tool is forbidden.".
    #[default]
    JsonrpcError,
    /// HTTP 200 with `result.isError: true` and the reason as text: the model sees why.
    ToolError,
    /// HTTP 403 with the JSON-RPC error body. Note: Python `mcp` 1.x ends the session on any 4xx.
    Http,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IdentitySettings {
    /// Whether the `x-forwarded-client-cert` header may name the caller.
    #[serde(default)]
    pub forwarded_client_cert: ForwardedClientCert,
    /// Bearer tokens (JWT): providers, where a token is required, precedence over the mTLS peer.
    #[serde(default, skip_serializing_if = "is_default")]
    pub jwt: crate::jwt::JwtSettings,
    /// Ephemeral agent identities (GrantwallAgentIdentity): a parent, a lifetime, a request budget and
    /// permissions no wider than the parent's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ephemeral: Vec<crate::ephemeral::EphemeralIdentity>,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ForwardedClientCert {
    #[serde(default)]
    pub trust: XfccTrust,
    /// With `trust: fromPeers`: the SPIFFE IDs of the proxies allowed to set the header (mTLS peer identity).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum XfccTrust {
    /// Ignore the header: a client can write anything into it.
    #[default]
    Never,
    /// Believe it only when the mTLS peer is one of `peers` (e.g. an Istio ingress gateway).
    FromPeers,
    /// Believe it always: only when every path to this proxy crosses a proxy that overwrites the header.
    Always,
}

/// A set of policies attached to one target (the Gateway or one XBackend).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Target {
    /// `namespace/name` of the Gateway or XBackend, for audit records.
    #[serde(default)]
    pub name: String,
    /// Allow policies, oldest first. Empty: no policy, everything is allowed at this level.
    #[serde(default)]
    pub policies: Vec<Policy>,
    /// KAN `action: ExternalAuth`: consulted before the Allow policies, and must allow too (docs/extauth.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_auth: Option<crate::extauth::ExternalAuth>,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Backend {
    /// `namespace/name` of the XBackend.
    pub name: String,
    /// Path prefixes (segment-wise) of the backend's MCP endpoint; the first one is the XBackend's own
    /// `path`, others come from HTTPRoutes that rewrite onto it. Requests for the backend off these paths
    /// still meet its policies, as non-MCP traffic.
    pub paths: Vec<String>,
    #[serde(default)]
    pub policies: Vec<Policy>,
    /// Tool-definition pins (GrantwallToolPolicy): tool name → SHA-256 (64 lower-case hex digits) of the
    /// JCS form of its definition (core/src/pinning.rs). A listed tool whose hash differs is dropped from
    /// `tools/list` and later calls to it are refused with `definition-changed`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tool_pins: BTreeMap<String, String>,
    /// Hosts (exact, or `*.suffix`) a URL-mode `elicitation/create` from this backend may point to; any
    /// other URL elicitation is removed from the stream. Empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub elicitation_url_hosts: Vec<String>,
    /// KAN `action: ExternalAuth` on this XBackend (docs/extauth.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_auth: Option<crate::extauth::ExternalAuth>,
    /// Set when this backend is an A2A agent (GrantwallA2AAgent): requests are read as A2A, not MCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub a2a: Option<crate::a2a::AgentConfig>,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Routes {
    /// Envoy upstream cluster name → backend index. Checked first: the route already chose the cluster.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub clusters: BTreeMap<String, u32>,
    /// Lower-case request authority without port → backend index.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub authorities: BTreeMap<String, u32>,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Policy {
    /// `namespace/name` of the XAccessPolicy.
    pub name: String,
    /// A request passes this policy if it matches any rule. A policy with no rules matches every request.
    pub rules: Vec<Rule>,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rule {
    pub name: String,
    /// Indexes into [`Config::principals`]. Absent: any caller, including one with no identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principals: Option<Vec<u32>>,
    /// HTTP-level conditions (all must hold). Absent: no HTTP condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpMatch>,
    /// MCP-level conditions. Absent: any request, MCP or not. Present: only MCP requests can match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp: Option<McpMatch>,
    /// A compiled CEL condition (KAN `authorization.type: CEL`): the rule matches only when it evaluates to
    /// true; any evaluation error is "no match". See docs/cel.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cel: Option<crate::cel::Expr>,
}

/// HTTP conditions of a rule. Each non-empty list must match (OR within a list, AND across lists).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpMatch {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<PathMatch>,
    /// Exact host names or `*.suffix` wildcards, lower case.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// All must match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatch>,
    /// Destination (listener) ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PathMatch {
    #[serde(rename = "type")]
    pub kind: MatchKind,
    pub value: String,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HeaderMatch {
    /// Lower-case header name.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: MatchKind,
    pub value: String,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MatchKind {
    Exact,
    /// Path prefix, segment-wise (`/a` matches `/a` and `/a/b`, not `/ab`). Paths only.
    Prefix,
    /// Whole-value regular expression (RE2 syntax subset, linear time).
    Regex,
}

/// MCP conditions of a rule.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct McpMatch {
    /// `MATCH_BASE_PROTOCOL_METHODS`: the rule also grants initialize, ping, tools/list, completion/*,
    /// logging/*, notifications/*, server/discover, JSON-RPC responses, the GET stream and session DELETE.
    #[serde(default)]
    pub base_protocol: bool,
    /// Functional methods granted. Absent: every non-base MCP method. Present and empty: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<MethodGrant>>,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MethodGrant {
    pub method: McpMethod,
    /// Tool or prompt names (`params.name`) or resource URIs (`params.uri`), sorted. Absent: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<Vec<String>>,
}

/// The MCP methods a grant can name (KAN's functional methods).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum McpMethod {
    #[serde(rename = "tools/list")]
    ToolsList,
    #[serde(rename = "tools/call")]
    ToolsCall,
    #[serde(rename = "prompts/list")]
    PromptsList,
    #[serde(rename = "prompts/get")]
    PromptsGet,
    #[serde(rename = "resources/list")]
    ResourcesList,
    #[serde(rename = "resources/templates/list")]
    ResourcesTemplatesList,
    #[serde(rename = "resources/read")]
    ResourcesRead,
    #[serde(rename = "resources/subscribe")]
    ResourcesSubscribe,
    #[serde(rename = "resources/unsubscribe")]
    ResourcesUnsubscribe,
}

impl McpMethod {
    pub const ALL: [McpMethod; 9] = [
        McpMethod::ToolsList,
        McpMethod::ToolsCall,
        McpMethod::PromptsList,
        McpMethod::PromptsGet,
        McpMethod::ResourcesList,
        McpMethod::ResourcesTemplatesList,
        McpMethod::ResourcesRead,
        McpMethod::ResourcesSubscribe,
        McpMethod::ResourcesUnsubscribe,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            McpMethod::ToolsList => "tools/list",
            McpMethod::ToolsCall => "tools/call",
            McpMethod::PromptsList => "prompts/list",
            McpMethod::PromptsGet => "prompts/get",
            McpMethod::ResourcesList => "resources/list",
            McpMethod::ResourcesTemplatesList => "resources/templates/list",
            McpMethod::ResourcesRead => "resources/read",
            McpMethod::ResourcesSubscribe => "resources/subscribe",
            McpMethod::ResourcesUnsubscribe => "resources/unsubscribe",
        }
    }

    pub fn from_name(name: &str) -> Option<McpMethod> {
        McpMethod::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// Whether grants for this method may name targets, and what the name is matched against.
    pub fn target_field(self) -> Option<&'static str> {
        match self {
            McpMethod::ToolsCall | McpMethod::PromptsGet => Some("name"),
            McpMethod::ResourcesRead | McpMethod::ResourcesSubscribe | McpMethod::ResourcesUnsubscribe => {
                Some("uri")
            }
            _ => None,
        }
    }

    /// Bit for method sets.
    pub fn bit(self) -> u16 {
        1 << (self as u16)
    }
}
