//! Typed views of KAN objects, read only after `crd_schema` has defaulted and validated them, so these
//! structs can rely on required fields and defaults being present. Unknown fields were already refused.

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct XBackendSpec {
    pub mcp: McpBackend,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct McpBackend {
    #[serde(default)]
    pub service_name: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    pub port: u16,
    /// Defaulted to `/mcp` by the schema.
    pub path: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    pub group: String,
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub section_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub spiffe: Option<String>,
    #[serde(default)]
    pub service_account: Option<ServiceAccountRef>,
    /// GrantwallAccessPolicy only (its CRD is the only one whose schema admits it).
    #[serde(default)]
    pub oidc: Option<OidcRef>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OidcRef {
    pub issuer: String,
    pub subject: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountRef {
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
}

/// XAccessPolicy `agentic.networking.x-k8s.io/v1alpha1`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicySpecV1 {
    pub target_refs: Vec<TargetRef>,
    pub action: String,
    #[serde(default)]
    pub external_auth: Option<Value>,
    #[serde(default)]
    pub rules: Option<Vec<RuleV1>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleV1 {
    pub name: String,
    #[serde(default)]
    pub source: Option<Source>,
    #[serde(default)]
    pub authorization: Option<AuthorizationV1>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationV1 {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub paths: Vec<HttpPathV1>,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub headers: Vec<HttpHeaderV1>,
    #[serde(default)]
    pub ports: Vec<u16>,
    #[serde(default)]
    pub mcp: Option<McpAuthorizationV1>,
    #[serde(default)]
    pub cel: Option<CelRule>,
}

/// `authorization.cel` (v1alpha1: `expression`; v0alpha0 adds `message`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CelRule {
    pub expression: String,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpPathV1 {
    /// Defaulted to `PathPrefix`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Defaulted to `""`.
    pub value: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpHeaderV1 {
    pub name: String,
    /// Defaulted to `Exact`.
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct McpAuthorizationV1 {
    /// Defaulted to `SKIP_BASE_PROTOCOL_METHODS`.
    pub mcp_base_protocol_methods_option: String,
    /// `None` (omitted) and `Some([])` (explicitly empty) mean different things; see `compile`.
    #[serde(default)]
    pub methods: Option<Vec<McpMethodV1>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct McpMethodV1 {
    pub name: String,
    #[serde(default)]
    pub params: Vec<String>,
}

/// XAccessPolicy `agentic.networking.x-k8s.io/v0alpha0`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicySpecV0 {
    pub target_refs: Vec<TargetRef>,
    pub rules: Vec<RuleV0>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleV0 {
    pub name: String,
    pub source: Source,
    #[serde(default)]
    pub authorization: Option<AuthorizationV0>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationV0 {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub tools: Option<Vec<String>>,
    #[serde(default)]
    pub cel: Option<CelRule>,
    /// With `type: ExternalAuth` (read by extauth.rs).
    #[serde(default)]
    pub external_auth: Option<Value>,
}

/// Reads `value.spec` as `T`; after validation this only fails on a bug, reported as such.
pub fn spec<T: for<'de> Deserialize<'de>>(value: &Value) -> Result<T, String> {
    let spec = value.get("spec").cloned().unwrap_or(Value::Null);
    serde_json::from_value(spec).map_err(|e| format!("internal error reading validated spec: {e}"))
}
