//! Decision counters. Names carry the decision and reason as dot-separated tags that Envoy's `stats_tags`
//! (see examples/envoy.yaml) turn into Prometheus labels:
//! `envoy_wasmcustom_grantwall_requests{decision="deny",reason="default_deny"}`. Every metric is defined at
//! configure time from a fixed reason list: nothing taken from a request ever names a metric.

use crate::host;

/// Reasons a request can be allowed.
const ALLOW_REASONS: &[&str] = &["rule-matched", "no-policy", "extauth-allowed", "extauth-fail-open", "card-signed-unfiltered"];

/// Reasons a request can be refused.
const DENY_REASONS: &[&str] = &[
    "default-deny",
    "malformed-json",
    "duplicate-key",
    "ambiguous-key",
    "batch-refused",
    "invalid-request",
    "invalid-params",
    "header-mismatch",
    "body-too-large",
    "unsupported-content-type",
    "unsupported-content-encoding",
    "identity-error",
    "identity-conflict",
    "token-missing",
    "invalid-token",
    "identity-expired",
    "identity-exhausted",
    "internal-error",
    "definition-changed",
    "list-unfilterable",
    "session-unknown",
    "session-identity-mismatch",
    "task-unknown",
    "task-foreign",
    "sampling-tool-denied",
    "elicitation-url-refused",
    "stream-unreadable",
    "rate-limited",
    "fan-out-exceeded",
    "context-budget-exceeded",
    "extauth-denied",
    "extauth-unavailable",
    "extauth-error",
    "model-denied",
    "budget-exhausted",
    "llm-invalid-body",
    "llm-unsupported-endpoint",
    "a2a-method-unknown",
    "a2a-grpc-refused",
    "push-url-refused",
    "reference-task-foreign",
    "reference-task-unknown",
    "card-signed-refused",
    "card-unfilterable",
];

pub struct Metrics {
    allow: Vec<(&'static str, u32)>,
    deny: Vec<(&'static str, u32)>,
    /// Counts any reason missing from the lists above, so nothing goes uncounted.
    other: Option<u32>,
    /// LLM tokens charged to budgets (one counter: never a label per model or caller).
    llm_tokens: Option<u32>,
}

impl Metrics {
    pub fn define() -> Metrics {
        let define = |decision: &str, reason: &'static str| {
            let name = format!("grantwall.requests.decision.{decision}.reason.{}", reason.replace('-', "_"));
            host::define_counter(&name).ok().map(|id| (reason, id))
        };
        Metrics {
            allow: ALLOW_REASONS.iter().filter_map(|r| define("allow", r)).collect(),
            deny: DENY_REASONS.iter().filter_map(|r| define("deny", r)).collect(),
            other: host::define_counter("grantwall.requests.decision.deny.reason.other").ok(),
            llm_tokens: host::define_counter("grantwall.llm.tokens").ok(),
        }
    }

    pub fn count_tokens(&self, tokens: u64) {
        if let Some(id) = self.llm_tokens {
            host::add(id, tokens);
        }
    }

    pub fn count(&self, allowed: bool, reason: &str) {
        let table = if allowed { &self.allow } else { &self.deny };
        match table.iter().find(|(r, _)| *r == reason) {
            Some((_, id)) => host::increment(*id),
            None => {
                if let Some(id) = self.other {
                    host::increment(id);
                }
            }
        }
    }
}
