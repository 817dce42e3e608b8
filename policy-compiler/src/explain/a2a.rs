//! `grantwall explain --a2a OPERATION`: an A2A call to a GrantwallA2AAgent, judged by
//! `Engine::decide_a2a` — the code the filter runs (filter/src/http/a2a.rs) — with the filter's audit
//! record. Push-notification URLs and task ownership depend on the call's body and the filter's task table:
//! they are named, not judged.

use super::{Ctx, Explanation};
use grantwall_core::a2a::{AgentPolicy, Operation};
use grantwall_core::audit::AuditRecord;
use grantwall_core::engine::{Engine, Request};

/// The binding explain assumes: A2A 1.0 JSON-RPC (the filter's audit `detail` names the binding).
const BINDING: &str = "a2a/jsonrpc";

/// The operation named by `--a2a` (a 1.0 or 0.3 method name, as the filter reads them), or an error
/// listing the valid names.
pub(super) fn operation(name: &str) -> Result<Operation, String> {
    let op = grantwall_core::a2a::method_operation(name).map(|(op, _legacy)| op).or_else(|| Operation::from_name(name));
    op.ok_or_else(|| {
        let all: Vec<&str> = Operation::ALL.iter().map(|o| o.as_str()).collect();
        format!("--a2a {name:?}: not an A2A operation; use a 1.0 name ({}) or its 0.3 form (message/send, tasks/get, ...)", all.join(", "))
    })
}

pub(super) fn explain(engine: &Engine, ctx: &Ctx<'_>, request: &Request<'_>, op: Operation, base: AuditRecord<'_>) -> Result<Explanation, String> {
    let decision = engine.decide_a2a(request, op).ok_or("internal: the backend is not an A2A agent")?;
    let base = AuditRecord { mcp_method: Some(op.as_str()), detail: Some(BINDING), ..base };
    // The records the filter writes: the Gateway decision, then the agent's rule when one granted it.
    let record = if decision.allowed {
        let mut r = base.with_decision(&decision.gateway);
        if let Some((policy, rule)) = decision.grant.matched {
            (r.level, r.policy, r.rule, r.reason) = (Some("backend"), Some(policy), Some(rule), "rule-matched");
        }
        r
    } else {
        AuditRecord { decision: "deny", reason: "default-deny", level: Some("backend"), ..base }
    };

    let grantee = engine.ephemeral(request.principal).map(|e| e.parent.as_str());
    let verdict = if decision.allowed { "ALLOW" } else { "DENY" };
    let mut human = format!("{verdict} A2A {} for {} on agent {}\n", op.as_str(), ctx.who(), ctx.target_desc());
    human.push_str(&format!(
        "  gateway level: {}\n",
        if decision.gateway.allowed { "allows" } else { "refuses (KAN policies at the Gateway, or an ephemeral identity's permissions)" }
    ));
    let judged_as = grantee.map_or_else(|| ctx.who(), str::to_owned);
    let policies = agent_policies(ctx, request);
    human.push_str(&match (decision.grant.allowed, decision.grant.matched) {
        (true, Some((policy, rule))) => format!("  agent grant: rule {rule} of GrantwallA2APolicy {policy} grants {} to {judged_as}\n", op.as_str()),
        (true, None) => "  agent grant: no GrantwallA2APolicy targets this agent (every caller, every operation)\n".to_string(),
        (false, _) => format!("  agent grant: no rule grants {} to {judged_as}\n{}", op.as_str(), rules_naming(engine, policies, grantee.or(request.principal))),
    });
    if let Some(parent) = grantee {
        human.push_str(&format!("  {} is an ephemeral identity: the agent's grant is its parent's ({parent}); a rule naming it grants nothing more\n", ctx.who()));
    }
    if decision.allowed {
        human.push_str("  then, on the call itself: push-notification URLs must start with one of the agent's urlPrefixes, and every task it names must be the caller's (bound when the task was created through Grantwall)\n");
        human.push_str("  not explained: gateway-wide limits, budgets and ExternalAuth (docs/a2a.md#gateway-wide-checks)\n");
    }
    Ok(Explanation { allowed: decision.allowed, record_json: record.to_json(), human })
}

fn agent_policies<'a>(ctx: &Ctx<'a>, request: &Request<'_>) -> &'a [AgentPolicy] {
    request
        .backend
        .and_then(|b| ctx.config.backends.get(b as usize))
        .and_then(|b| b.a2a.as_ref())
        .map_or(&[][..], |a| a.policies.as_slice())
}

/// The rules that name the caller or are open to every caller, with what each grants.
fn rules_naming(engine: &Engine, policies: &[AgentPolicy], principal: Option<&str>) -> String {
    let index = engine.principal_index(principal);
    let mut out = String::new();
    for policy in policies {
        for rule in &policy.rules {
            let names_caller = match &rule.principals {
                None => true,
                Some(list) => index.is_some_and(|i| list.contains(&i)),
            };
            if !names_caller {
                continue;
            }
            let ops = rule.operations.as_ref().map_or("every operation".to_string(), |ops| ops.iter().map(|o| o.as_str()).collect::<Vec<_>>().join(", "));
            out.push_str(&format!("    rule {} of {} names the caller, and grants: {ops}\n", rule.name, policy.name));
        }
    }
    if out.is_empty() {
        out.push_str("    no rule names the caller (once a policy targets an agent, what no rule grants is denied)\n");
    }
    out
}
