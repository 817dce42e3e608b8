//! `grantwall explain --model MODEL`: an LLM request (OpenAI-compatible or Anthropic) to an upstream a
//! GrantwallModelPolicy names, judged as the filter judges it (filter/src/http/llm.rs): the endpoint, an
//! ephemeral caller, the Gateway level, then the model grant, with the filter's audit record. Token budgets
//! are named with their limits; how much of them is spent is run-time state.

use super::{Ctx, Explanation};
use grantwall_core::audit::AuditRecord;
use grantwall_core::engine::{Engine, Request};
use grantwall_core::llm::policy::{LlmBackendId, ModelDecision};
use grantwall_core::llm::reply::{self, Refusal};
use grantwall_core::llm::Api;

/// The path explain assumes without `--path`.
pub(super) const DEFAULT_PATH: &str = "/v1/chat/completions";

pub(super) fn explain(engine: &Engine, ctx: &Ctx<'_>, request: &Request<'_>, backend: LlmBackendId, model: &str, base: AuditRecord<'_>) -> Result<Explanation, String> {
    let llm = engine.llm();
    let upstream = llm.backend_name(backend);
    let principal = request.principal;
    let Some(api) = Api::from_path(request.path) else {
        // Refused at the headers, before the body (and its model) is read.
        let why = reply::UNSUPPORTED_ENDPOINT;
        let record = AuditRecord { decision: "deny", reason: Refusal::UnsupportedEndpoint.reason(), detail: Some(why), ..base };
        let human = format!("DENY POST {} for {} on LLM upstream {upstream}\n  {why}\n  the client gets HTTP 404\n", request.path, ctx.who());
        return Ok(Explanation { allowed: false, record_json: record.to_json(), human });
    };
    let base = AuditRecord { mcp_method: Some(api.as_str()), backend: Some(upstream), model: Some(model), ..base };
    let headline = |verdict: &str| format!("{verdict} {} with model {model:?} for {} on LLM upstream {upstream}\n", api.as_str(), ctx.who());
    let refused = |refusal: Refusal, why: &str| {
        let record = AuditRecord { decision: "deny", reason: refusal.reason(), detail: Some(why), ..base.clone() };
        let human = format!("{}  {why}\n  the client gets HTTP {} in its API's error shape\n", headline("DENY"), refusal.status());
        Explanation { allowed: false, record_json: record.to_json(), human }
    };

    if engine.ephemeral(principal).is_some() {
        return Ok(refused(Refusal::Forbidden, reply::EPHEMERAL_REFUSED));
    }
    let gateway_request = Request { backend: None, ..*request };
    if !engine.decide(&gateway_request, None).allowed {
        return Ok(refused(Refusal::Forbidden, reply::GATEWAY_REFUSED));
    }
    let (record, grant) = match llm.decide_model(backend, principal, model) {
        ModelDecision::Denied => return Ok(refused(Refusal::ModelDenied, &reply::model_denied(model, principal, upstream))),
        ModelDecision::Granted { policy, rule } => (
            AuditRecord { decision: "allow", reason: "rule-matched", level: Some("backend"), policy: Some(policy), rule: Some(rule), ..base },
            format!("rule {rule} of GrantwallModelPolicy {policy} grants it"),
        ),
        ModelDecision::Unrestricted => (
            AuditRecord { decision: "allow", reason: "no-policy", level: Some("backend"), ..base },
            "no GrantwallModelPolicy on this upstream restricts models".to_string(),
        ),
    };
    let mut human = format!("{}  gateway level: allows\n  model grant: {grant}\n", headline("ALLOW"));
    let budgets = llm.budgets(backend, principal);
    if budgets.is_empty() {
        human.push_str("  token budgets: none applies to this caller\n");
    }
    for b in &budgets {
        human.push_str(&format!(
            "  token budget {} of {}: {} tokens per {} s{} — refused with 429 once spent (usage is run-time state, not explained)\n",
            b.budget,
            b.policy,
            b.tokens,
            b.window_seconds,
            if b.cap_max_tokens { ", max_tokens capped to what is left" } else { "" },
        ));
    }
    human.push_str("  not explained: gateway-wide limits and ExternalAuth (docs/llm.md)\n");
    Ok(Explanation { allowed: true, record_json: record.to_json(), human })
}
