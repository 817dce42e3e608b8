//! `GrantwallModelPolicy` (grantwall.io/v1alpha1) → `config.llm`: model grants and token budgets for LLM
//! upstreams. The object has passed its CRD schema (defaults applied) before it gets here; this adds what
//! the schema cannot say: sources resolve to principals, windows parse, targets do not collide.
//!
//! Each target (a Service, an Envoy cluster, a host) becomes one LLM backend; policies naming the same
//! target share it (so a model policy and a budget policy on one upstream both apply).

use crate::diag::{Diags, FieldPath, Loc};
use crate::input::Object;
use crate::kan_types::Source;
use crate::policy::{self, Context};
use grantwall_core::llm::{Budget, BudgetKey, LlmBackend, LlmConfig, LlmPolicySet, ModelPolicy, ModelRule};
use serde_json::Value;
use std::collections::BTreeMap;

pub const GROUP: &str = "grantwall.io";
pub const KIND: &str = "GrantwallModelPolicy";

#[derive(Debug, Clone)]
pub struct ModelPolicyIr {
    pub location: Loc,
    /// (backend key, backend name, clusters, authorities) of each target.
    pub targets: Vec<TargetIr>,
    pub policy: ModelPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetIr {
    pub key: String,
    pub name: String,
    pub clusters: Vec<String>,
    pub authorities: Vec<String>,
}

/// Read one schema-validated object.
pub fn read(obj: &Object, ctx: &Context<'_>, cluster_domain: &str, diags: &mut Diags) -> Option<ModelPolicyIr> {
    let loc = obj.location();
    let before = diags.errors.len();
    let spec = obj.value.get("spec")?;
    let ns = obj.namespace.as_str();
    let strings = |field: &str| -> Vec<String> {
        spec.get(field).and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect()).unwrap_or_default()
    };
    let mut targets = Vec::new();
    for name in spec.get("targetRefs").and_then(Value::as_array).into_iter().flatten().filter_map(|r| r.get("name").and_then(Value::as_str)) {
        let authorities = vec![format!("{name}.{ns}"), format!("{name}.{ns}.svc"), format!("{name}.{ns}.svc.{cluster_domain}")];
        targets.push(TargetIr { key: format!("service:{ns}/{name}"), name: format!("{ns}/{name}"), clusters: vec![], authorities });
    }
    for c in strings("envoyClusters") {
        targets.push(TargetIr { key: format!("cluster:{c}"), name: format!("cluster {c}"), clusters: vec![c], authorities: vec![] });
    }
    for h in strings("hosts") {
        targets.push(TargetIr { key: format!("host:{h}"), name: h.clone(), clusters: vec![], authorities: vec![h] });
    }
    targets.dedup_by(|a, b| a.key == b.key);
    if targets.is_empty() {
        diags.error(&loc, "spec", "Required value: name the LLM upstream with targetRefs (Services), envoyClusters or hosts");
    }
    let root = FieldPath::root().field("spec");
    let mut rules = Vec::new();
    for (i, r) in spec.get("rules").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let path = root.field("rules").index(i);
        let name = r.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
        let callers = source(r.get("source"), ns, ctx, &path.field("source"), &loc, diags);
        let models: Vec<String> = r.get("models").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect();
        for (k, m) in models.iter().enumerate() {
            if m.find('*').is_some_and(|at| at + 1 != m.len()) {
                diags.error(&loc, path.field("models").index(k).as_str(), format!("Invalid value: {m:?}: '*' is allowed only at the end (gpt-4* matches every model starting with gpt-4)"));
            }
        }
        if rules.iter().any(|x: &ModelRule| x.name == name) {
            diags.error(&loc, path.field("name").as_str(), format!("Duplicate value: {name:?}"));
        }
        rules.push(ModelRule { name, callers, models });
    }
    let mut budgets = Vec::new();
    for (i, b) in spec.get("budgets").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let path = root.field("budgets").index(i);
        let name = b.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
        let window = b.get("window").and_then(Value::as_str).unwrap_or_default();
        let Some(window_seconds) = parse_window(window) else {
            diags.error(&loc, path.field("window").as_str(), format!("Invalid value: {window:?}: a window is a number with s, m, h or d, at most 366d"));
            continue;
        };
        let per = match b.get("per").and_then(Value::as_str) {
            Some("Identity") => BudgetKey::Identity,
            _ => BudgetKey::Namespace,
        };
        if budgets.iter().any(|x: &Budget| x.name == name) {
            diags.error(&loc, path.field("name").as_str(), format!("Duplicate value: {name:?}"));
        }
        let callers = source(b.get("source"), ns, ctx, &path.field("source"), &loc, diags);
        let tokens = b.get("tokens").and_then(Value::as_u64).unwrap_or(0);
        budgets.push(Budget { name, tokens, window_seconds, per, callers });
    }
    if rules.is_empty() && budgets.is_empty() {
        diags.warn(format!("{loc}: GrantwallModelPolicy has neither rules nor budgets: it changes nothing"));
    }
    let cap_max_tokens = spec.get("capMaxTokens").and_then(Value::as_bool).unwrap_or(false);
    if cap_max_tokens && budgets.is_empty() {
        diags.warn(format!("{loc}: capMaxTokens without budgets caps nothing"));
    }
    if diags.errors.len() > before {
        return None;
    }
    Some(ModelPolicyIr { location: loc, targets, policy: ModelPolicy { name: obj.ns_name(), rules, budgets, cap_max_tokens } })
}

/// A rule's or budget's source as principal patterns (None: any caller).
fn source(value: Option<&Value>, ns: &str, ctx: &Context<'_>, path: &FieldPath, loc: &Loc, diags: &mut Diags) -> Option<Vec<String>> {
    let value = value?;
    let namespace = value.get("namespace").and_then(Value::as_str);
    if value.get("type").and_then(Value::as_str) == Some("Namespace") {
        let Some(n) = namespace else {
            diags.error(loc, path.field("namespace").as_str(), "Required value: type Namespace needs namespace");
            return Some(vec![]);
        };
        return Some(vec![format!("spiffe://{}/ns/{n}/sa/*", ctx.trust_domain)]);
    }
    if namespace.is_some() {
        diags.error(loc, path.field("namespace").as_str(), "must only be set when type is Namespace");
    }
    let parsed: Source = match serde_json::from_value(value.clone()) {
        Ok(s) => s,
        Err(e) => {
            diags.error(loc, path.as_str(), format!("internal error reading validated source: {e}"));
            return Some(vec![]);
        }
    };
    // An unresolvable source matches nobody (and the error stops compilation anyway).
    Some(policy::principal(Some(&parsed), ns, ctx, path, loc, diags).into_iter().collect())
}

/// `90s`, `15m`, `24h`, `1d` → seconds (at most 366 days).
pub fn parse_window(text: &str) -> Option<u64> {
    let unit = match text.chars().last()? {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    let n: u64 = text.get(..text.len() - 1)?.parse().ok()?;
    let seconds = n.checked_mul(unit)?;
    (seconds > 0 && seconds <= grantwall_core::llm::window::MAX_WINDOW_SECONDS).then_some(seconds)
}

/// One LLM backend per target, each with the policies naming it (sorted by namespace/name).
pub fn build(policies: &[ModelPolicyIr], diags: &mut Diags) -> Option<LlmConfig> {
    if policies.is_empty() {
        return None;
    }
    let mut sorted: Vec<&ModelPolicyIr> = policies.iter().collect();
    sorted.sort_by(|a, b| a.policy.name.cmp(&b.policy.name));
    let mut backends: BTreeMap<&str, LlmBackend> = BTreeMap::new();
    for p in sorted {
        for t in &p.targets {
            let b = backends.entry(&t.key).or_insert_with(|| LlmBackend {
                name: t.name.clone(),
                clusters: t.clusters.clone(),
                authorities: t.authorities.clone(),
                policies: vec![],
            });
            b.policies.push(p.policy.clone());
        }
    }
    let config = LlmConfig { backends: backends.into_values().collect() };
    // The filter's own checks (a cluster or host claimed by two targets, …), reported at compile time.
    if let Err((at, why)) = LlmPolicySet::new(Some(&config)) {
        let loc = policies.first().map(|p| p.location.clone());
        match loc {
            Some(l) => diags.error(&l, at, why),
            None => diags.warn(format!("{at}: {why}")),
        }
    }
    Some(config)
}

#[cfg(test)]
mod tests {
    use super::parse_window;

    #[test]
    fn windows() {
        assert_eq!(parse_window("24h"), Some(86_400));
        assert_eq!(parse_window("5s"), Some(5));
        assert_eq!(parse_window("1d"), Some(86_400));
        assert_eq!(parse_window("367d"), None);
        assert_eq!(parse_window("0s"), None);
        assert_eq!(parse_window("h"), None);
        assert_eq!(parse_window("10w"), None);
    }
}
