//! The compiled LLM section of the filter config (`Config.llm`).
//!
//! Callers are written as principal patterns: an exact SPIFFE ID (or `oidc://` principal), or
//! `spiffe://<trust-domain>/ns/<namespace>/sa/*` for any service account of a namespace.

use serde::{Deserialize, Serialize};

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LlmConfig {
    /// LLM upstreams with model policies. A request routed to none of them is not LLM traffic.
    #[serde(default)]
    pub backends: Vec<LlmBackend>,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LlmBackend {
    /// `namespace/name` of the target (a Service), for audit records.
    pub name: String,
    /// Envoy upstream cluster names routed to this backend (checked first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<String>,
    /// Lower-case request authorities (host without port) routed to this backend.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorities: Vec<String>,
    /// GrantwallModelPolicies on this backend, oldest first.
    pub policies: Vec<ModelPolicy>,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ModelPolicy {
    /// `namespace/name` of the GrantwallModelPolicy.
    pub name: String,
    /// Model grants. If any policy of a backend has rules, a request passes only if some rule of some policy
    /// grants its model to its caller; a policy with no rules (budgets only) restricts no model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<ModelRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<Budget>,
    /// Lower the request's output-token limit to what is left of the tightest budget.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cap_max_tokens: bool,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ModelRule {
    pub name: String,
    /// Principal patterns. Absent: any caller, including one with no identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callers: Option<Vec<String>>,
    /// Model patterns: exact (`gpt-4o`), prefix (`gpt-4*`) or `*` for any model.
    pub models: Vec<String>,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Budget {
    pub name: String,
    /// Tokens (input + output) per window.
    pub tokens: u64,
    /// Window length; windows are aligned to the Unix epoch, so 86400 is the UTC day.
    pub window_seconds: u64,
    /// Whose spending is counted together.
    pub per: BudgetKey,
    /// Principal patterns the budget applies to. Absent: every caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callers: Option<Vec<String>>,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BudgetKey {
    /// One counter per caller identity.
    Identity,
    /// One counter per Kubernetes namespace of the caller's SPIFFE ID (callers without one share a counter).
    Namespace,
}
