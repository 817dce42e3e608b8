//! Error bodies an LLM client understands: OpenAI's `{"error":{"message","type","code"}}`, or Anthropic's
//! `{"type":"error","error":{"type","message"}}` on `/v1/messages`. SDKs turn the status into their own
//! exception (403 → PermissionDenied, 429 → RateLimit, 400 → BadRequest) and show the message.

use super::request::Api;

/// Why an LLM request was refused; each maps to a status and error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The caller may not use the model.
    ModelDenied,
    /// A token budget is spent.
    BudgetExhausted,
    /// The body could not be parsed with certainty.
    InvalidBody,
    /// A POST to a path on an LLM backend that Grantwall does not inspect.
    UnsupportedEndpoint,
    /// Gateway-level policy refused the caller.
    Forbidden,
    /// Grantwall could not read or write its own state.
    Internal,
    /// A gateway-wide rate limit or fan-out cap (GrantwallRateLimitPolicy) refused the caller.
    RateLimited,
    /// An ephemeral identity spent its request budget.
    IdentityExhausted,
}

impl Refusal {
    pub fn status(self) -> u32 {
        match self {
            Refusal::ModelDenied | Refusal::Forbidden | Refusal::IdentityExhausted => 403,
            Refusal::BudgetExhausted | Refusal::RateLimited => 429,
            Refusal::InvalidBody => 400,
            Refusal::UnsupportedEndpoint => 404,
            Refusal::Internal => 500,
        }
    }

    /// Stable audit/metric reason.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::ModelDenied => "model-denied",
            Refusal::BudgetExhausted => "budget-exhausted",
            Refusal::InvalidBody => "llm-invalid-body",
            Refusal::UnsupportedEndpoint => "llm-unsupported-endpoint",
            Refusal::Forbidden => "default-deny",
            Refusal::Internal => "internal-error",
            Refusal::RateLimited => "rate-limited",
            Refusal::IdentityExhausted => "identity-exhausted",
        }
    }

    fn openai_type_code(self) -> (&'static str, &'static str) {
        match self {
            Refusal::ModelDenied => ("invalid_request_error", "model_not_allowed"),
            Refusal::BudgetExhausted => ("insufficient_quota", "token_budget_exceeded"),
            Refusal::InvalidBody => ("invalid_request_error", "invalid_request_body"),
            Refusal::UnsupportedEndpoint => ("invalid_request_error", "unsupported_endpoint"),
            Refusal::Forbidden => ("invalid_request_error", "forbidden"),
            Refusal::Internal => ("server_error", "internal_error"),
            Refusal::RateLimited => ("requests", "rate_limit_exceeded"),
            Refusal::IdentityExhausted => ("invalid_request_error", "identity_exhausted"),
        }
    }

    fn anthropic_type(self) -> &'static str {
        match self {
            Refusal::ModelDenied | Refusal::Forbidden | Refusal::IdentityExhausted => "permission_error",
            Refusal::BudgetExhausted | Refusal::RateLimited => "rate_limit_error",
            Refusal::InvalidBody => "invalid_request_error",
            Refusal::UnsupportedEndpoint => "not_found_error",
            Refusal::Internal => "api_error",
        }
    }
}

/// Why a POST to an LLM upstream on a path Grantwall does not inspect is refused (HTTP 404).
pub const UNSUPPORTED_ENDPOINT: &str =
    "this endpoint is not one Grantwall inspects on an LLM backend (chat/completions, completions, responses, embeddings, messages)";

/// Why a caller the Gateway-level policies refuse is refused (the audit detail and the error message).
pub const GATEWAY_REFUSED: &str = "the gateway's access policies do not allow this caller";

/// Why an ephemeral identity is refused: its permissions name XBackends and A2A agents, never an LLM upstream.
pub const EPHEMERAL_REFUSED: &str =
    "an ephemeral identity may not call LLM APIs through the gateway (its permissions cannot name an LLM upstream); its parent can";

/// Why a model is refused (the audit detail and the error message).
pub fn model_denied(model: &str, principal: Option<&str>, backend: &str) -> String {
    format!("model {model:?} is not granted to {} on {backend}", principal.unwrap_or("an unauthenticated caller"))
}

/// The body for a refusal, in the API family's own error shape.
pub fn error_body(api: Option<Api>, refusal: Refusal, message: &str) -> String {
    let msg = serde_json::to_string(message).unwrap_or_else(|_| "\"\"".into());
    if api == Some(Api::AnthropicMessages) {
        return format!(r#"{{"type":"error","error":{{"type":"{}","message":{msg}}}}}"#, refusal.anthropic_type());
    }
    let (kind, code) = refusal.openai_type_code();
    format!(r#"{{"error":{{"message":{msg},"type":"{kind}","param":null,"code":"{code}"}}}}"#)
}
