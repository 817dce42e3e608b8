//! `GrantwallA2AAgent` and `GrantwallA2APolicy` (grantwall.io/v1alpha1) → an A2A backend in the filter
//! config: routing like an XBackend (Service or hostname + port), the agent's card and push options, and
//! its grants (source → operations, skills). Objects passed their CRD schema (defaults applied) before
//! they get here; this adds what the schema cannot say and names object and field in every error.

use crate::diag::{Diags, FieldPath, Loc};
use crate::input::Object;
use crate::kan_types::{McpBackend, Source};
use crate::policy::{self, is_dns_label};
use crate::routes::BackendIr;
use grantwall_core::a2a::{AgentConfig, AgentPolicy, AgentRule, Operation, SignedCards};
use grantwall_core::config::Backend;
use serde_json::Value;
use std::collections::BTreeMap;

pub const GROUP: &str = "grantwall.io";
pub const AGENT_KIND: &str = "GrantwallA2AAgent";
pub const POLICY_KIND: &str = "GrantwallA2APolicy";

/// One agent: how requests reach it (shared with XBackends) and its options.
#[derive(Debug, Clone)]
pub struct AgentIr {
    pub backend: BackendIr,
    pub config: AgentConfig,
}

#[derive(Debug, Clone)]
pub struct A2aPolicyIr {
    pub location: Loc,
    pub ns_name: String,
    /// Agents (`ns/name`) and the field naming each.
    pub targets: Vec<(String, String)>,
    pub rules: Vec<A2aRuleIr>,
}

#[derive(Debug, Clone)]
pub struct A2aRuleIr {
    pub name: String,
    pub principal: Option<String>,
    pub operations: Option<Vec<Operation>>,
    pub skills: Option<Vec<String>>,
}

pub fn is_ours(obj: &Object) -> bool {
    obj.group() == GROUP && matches!(obj.kind.as_str(), AGENT_KIND | POLICY_KIND)
}

/// Read a validated GrantwallA2AAgent.
pub fn read_agent(obj: &Object, diags: &mut Diags) -> Option<AgentIr> {
    let loc = obj.location();
    let before = diags.errors.len();
    let spec = obj.value.get("spec")?;
    let s = |p: &str| spec.pointer(p).and_then(Value::as_str).map(str::to_owned);
    let service_name = s("/serviceName");
    let hostname = s("/hostname").map(|h| h.to_ascii_lowercase());
    match (&service_name, &hostname) {
        (Some(svc), None) if !is_dns_label(svc) => {
            diags.error(&loc, "spec.serviceName", format!("Invalid value: {svc:?}: a Service name must be a lower-case DNS label"));
        }
        (None, Some(h)) if !(h.len() <= 253 && h.split('.').all(is_dns_label)) => {
            diags.error(&loc, "spec.hostname", format!("Invalid value: {h:?}: must be a DNS name without port or scheme"));
        }
        (Some(_), None) | (None, Some(_)) => {}
        _ => diags.error(&loc, "spec", "Required value: exactly one of serviceName and hostname"),
    }
    let port = spec.get("port").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok()).unwrap_or(0);
    let path = s("/path").unwrap_or_else(|| "/".into());
    let prefixes: Vec<String> = spec
        .pointer("/pushNotifications/urlPrefixes")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    let signed_cards = match s("/card/signedCards").as_deref() {
        Some("PassUnfiltered") => SignedCards::PassUnfiltered,
        _ => SignedCards::Refuse,
    };
    let config = AgentConfig { rpc_path: path.clone(), public_url: s("/card/publicUrl"), signed_cards, push_url_prefixes: prefixes, policies: vec![] };
    // The filter's own loader is the judge of paths and URLs; map its field names back onto the object's.
    if let Err((at, why)) = config.validate("a2a", 0) {
        let field = at
            .replace("a2a.rpcPath", "spec.path")
            .replace("a2a.publicUrl", "spec.card.publicUrl")
            .replace("a2a.pushUrlPrefixes", "spec.pushNotifications.urlPrefixes");
        diags.error(&loc, field, why);
    }
    if diags.errors.len() > before {
        return None;
    }
    let mcp = McpBackend { service_name, hostname, port, path };
    let backend = BackendIr { location: loc, ns_name: obj.ns_name(), mcp, extra_clusters: extra_clusters(obj) };
    Some(AgentIr { backend, config })
}

/// `grantwall.io/envoy-clusters` on the agent, as on an XBackend.
fn extra_clusters(obj: &Object) -> Vec<String> {
    obj.value
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(crate::routes::CLUSTERS_ANNOTATION))
        .and_then(Value::as_str)
        .map(|s| s.split(',').map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Read a validated GrantwallA2APolicy.
pub fn read_policy(obj: &Object, ctx: &policy::Context<'_>, diags: &mut Diags) -> Option<A2aPolicyIr> {
    let loc = obj.location();
    let before = diags.errors.len();
    let spec = obj.value.get("spec")?;
    let targets = spec
        .get("targetRefs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, r)| {
            let name = r.get("name").and_then(Value::as_str)?;
            Some((format!("{}/{name}", obj.namespace), format!("spec.targetRefs[{i}].name")))
        })
        .collect();
    let mut rules = Vec::new();
    for (i, r) in spec.get("rules").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let at = FieldPath::root().field("spec").field("rules").index(i);
        let name = r.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
        let principal = match r.get("source") {
            None => None,
            Some(v) => match serde_json::from_value::<Source>(v.clone()) {
                Ok(source) => policy::principal(Some(&source), &obj.namespace, ctx, &at.field("source"), &loc, diags),
                Err(e) => {
                    diags.error(&loc, at.field("source").as_str(), e.to_string());
                    None
                }
            },
        };
        let operations = r.get("operations").and_then(Value::as_array).map(|ops| {
            let mut out: Vec<Operation> = ops.iter().filter_map(Value::as_str).filter_map(Operation::from_name).collect();
            out.sort();
            out.dedup();
            out
        });
        let skills = r.get("skills").and_then(Value::as_array).map(|s| {
            let mut out: Vec<String> = s.iter().filter_map(Value::as_str).map(str::to_owned).collect();
            out.sort();
            out.dedup();
            out
        });
        rules.push(A2aRuleIr { name, principal, operations, skills });
    }
    if diags.errors.len() > before {
        return None;
    }
    Some(A2aPolicyIr { location: loc, ns_name: obj.ns_name(), targets, rules })
}

/// Every principal an A2A rule names (interned with the rest).
pub fn principals(policies: &[A2aPolicyIr]) -> impl Iterator<Item = String> + '_ {
    policies.iter().flat_map(|p| p.rules.iter()).filter_map(|r| r.principal.clone())
}

/// Put each agent's options and grants on its backend. A policy naming an agent not in the input is an error.
pub fn apply(agents: &[AgentIr], policies: &[A2aPolicyIr], backends: &mut [Backend], index: &BTreeMap<&str, u32>, diags: &mut Diags) {
    for p in policies {
        for (target, field) in &p.targets {
            if !agents.iter().any(|a| &a.backend.ns_name == target) {
                diags.error(&p.location, field.as_str(), format!("GrantwallA2AAgent {target} is not in the input: add the file that defines it (-f), or fix the name (agents are looked up in the policy's namespace)"));
            }
        }
    }
    for agent in agents {
        let Some(b) = backends.iter_mut().find(|b| b.name == agent.backend.ns_name) else { continue };
        let mut on_agent: Vec<&A2aPolicyIr> = policies.iter().filter(|p| p.targets.iter().any(|(t, _)| t == &b.name)).collect();
        on_agent.sort_by(|a, b| a.ns_name.cmp(&b.ns_name));
        let mut config = agent.config.clone();
        config.policies = on_agent
            .into_iter()
            .map(|p| AgentPolicy {
                name: p.ns_name.clone(),
                rules: p
                    .rules
                    .iter()
                    .map(|r| AgentRule {
                        name: r.name.clone(),
                        principals: r.principal.as_deref().and_then(|id| index.get(id)).map(|i| vec![*i]),
                        operations: r.operations.clone(),
                        skills: r.skills.clone(),
                    })
                    .collect(),
            })
            .collect();
        b.a2a = Some(config);
    }
}
