//! One structured record per decision: who, what, which backend, allowed or not, and exactly why.
//! The filter writes it to the proxy log and to Envoy filter state (`wasm.grantwall_audit`) for access logs.

use crate::engine::{Decision, LevelOutcome};
use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord<'a> {
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// Stable reason: `rule-matched`, `no-policy`, `default-deny`, or why the request could not be inspected.
    pub reason: &'a str,
    pub identity: Option<&'a str>,
    /// `mtls` or `xfcc`.
    pub identity_source: Option<&'static str>,
    pub gateway: Option<&'a str>,
    pub backend: Option<&'a str>,
    pub http_method: &'a str,
    pub path: &'a str,
    pub mcp_method: Option<&'a str>,
    /// Tool or prompt name, or resource URI.
    pub target: Option<&'a str>,
    /// The level that decided: `gateway` or `backend`.
    pub level: Option<&'static str>,
    /// The matching policy (`namespace/name`) and rule, when a rule decided.
    pub policy: Option<&'a str>,
    pub rule: Option<&'a str>,
    /// Extra detail for refusals (parse error text).
    pub detail: Option<&'a str>,
    /// LLM requests: the model asked for, and the tokens the response used (absent elsewhere).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_in: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_out: Option<u64>,
    /// Tokens charged to budgets (the reported total, or an estimate when the upstream reported none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_charged: Option<u64>,
}

impl<'a> AuditRecord<'a> {
    /// Fill decision, reason, level, policy and rule from an engine decision.
    pub fn with_decision(mut self, decision: &Decision<'a>) -> Self {
        self.decision = if decision.allowed { "allow" } else { "deny" };
        self.reason = decision.reason();
        let (level, outcome) = decision.deciding();
        self.level = Some(level);
        if let LevelOutcome::Matched { policy, rule } = outcome {
            self.policy = Some(policy);
            self.rule = Some(rule);
        }
        self
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{\"decision\":\"deny\",\"reason\":\"audit-encoding\"}"))
    }
}
