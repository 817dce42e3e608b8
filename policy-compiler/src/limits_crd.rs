//! `GrantwallRateLimitPolicy` (grantwall.io/v1alpha1) → `limits` of the filter config (core/src/limits.rs).
//! The object has passed its CRD schema (defaults applied) before it gets here; this adds what the schema
//! cannot say: sources resolve to principals, periods fit a day, targets exist, every rule limits something.

use crate::diag::{Diags, FieldPath, Loc};
use crate::input::Object;
use crate::kan_types::{Source, TargetRef};
use crate::policy::{self, TargetKey};
use grantwall_core::limits::{LimitKey, LimitRule, LimitsConfig, RateLimit, MAX_PERIOD_SECONDS};
use serde_json::Value;

pub const GROUP: &str = "grantwall.io";
pub const KIND: &str = "GrantwallRateLimitPolicy";

/// One policy after reading: its targets and rules, not yet tied to backend indexes.
#[derive(Debug, Clone)]
pub struct LimitPolicyIr {
    pub location: Loc,
    pub ns_name: String,
    pub targets: Vec<(TargetKey, String)>,
    pub publish_headers: bool,
    /// Rules with `backend: None`; the target sets it when the config is built.
    pub rules: Vec<LimitRule>,
}

/// Read one validated object; errors go to `diags`.
pub fn read(obj: &Object, ctx: &policy::Context<'_>, diags: &mut Diags) -> Option<LimitPolicyIr> {
    let before = diags.errors.len();
    let loc = obj.location();
    let spec = obj.value.get("spec")?;
    let spec_path = FieldPath::root().field("spec");
    let refs: Vec<TargetRef> = serde_json::from_value(spec.get("targetRefs").cloned().unwrap_or(Value::Null)).unwrap_or_default();
    let targets = policy::targets(&refs, &obj.namespace, &spec_path.field("targetRefs"), &loc, diags);
    let empty = Vec::new();
    let rules_json = spec.get("rules").and_then(Value::as_array).unwrap_or(&empty);
    let mut rules = Vec::with_capacity(rules_json.len());
    for (i, r) in rules_json.iter().enumerate() {
        let path = spec_path.field("rules").index(i);
        let name = r.get("name").and_then(Value::as_str).unwrap_or_default();
        let source: Option<Source> = match r.get("source") {
            None => None,
            Some(v) => match serde_json::from_value(v.clone()) {
                Ok(s) => Some(s),
                Err(e) => {
                    diags.error(&loc, path.field("source").as_str(), e.to_string());
                    continue;
                }
            },
        };
        let principal = policy::principal(source.as_ref(), &obj.namespace, ctx, &path.field("source"), &loc, diags);
        let mut rate_limits = Vec::new();
        for (j, l) in r.get("rateLimits").and_then(Value::as_array).unwrap_or(&empty).iter().enumerate() {
            let lpath = path.field("rateLimits").index(j);
            let key = match l.get("key").and_then(Value::as_str) {
                Some("Identity") => LimitKey::Identity,
                Some("IdentityTool") => LimitKey::IdentityTool,
                Some("Namespace") => LimitKey::Namespace,
                _ => LimitKey::Backend,
            };
            let requests = l.get("requests").and_then(Value::as_u64).unwrap_or(1) as u32;
            let period = l.get("period").and_then(Value::as_str).unwrap_or_default();
            let Some(period_seconds) = period_seconds(period) else {
                diags.error(&loc, lpath.field("period").as_str(), format!("Invalid value: {period:?}: at most 24h (86400s)"));
                continue;
            };
            let burst = l.get("burst").and_then(Value::as_u64).map_or(requests, |b| b as u32);
            let tools = l.get("tools").and_then(Value::as_array).map(|t| {
                let mut t: Vec<String> = t.iter().filter_map(Value::as_str).map(str::to_owned).collect();
                t.sort();
                t.dedup();
                t
            });
            rate_limits.push(RateLimit { key, requests, period_seconds, burst, tools });
        }
        let max_fan_out = r.get("maxFanOut").and_then(Value::as_u64).map(|n| n as u32);
        let context_budget_bytes = r.get("contextBudget").and_then(Value::as_u64).map(|n| n as u32);
        if rate_limits.is_empty() && max_fan_out.is_none() && context_budget_bytes.is_none() {
            diags.error(&loc, path.as_str(), "Required value: a rule needs at least one of rateLimits, maxFanOut or contextBudget");
            continue;
        }
        rules.push(LimitRule {
            name: format!("{}/{name}", obj.ns_name()),
            backend: None,
            principals: principal.map(|p| vec![p]),
            rate_limits,
            max_fan_out,
            context_budget_bytes,
        });
    }
    if diags.errors.len() > before {
        return None;
    }
    Some(LimitPolicyIr {
        location: loc,
        ns_name: obj.ns_name(),
        targets,
        publish_headers: spec.get("publishHeaders").and_then(Value::as_bool).unwrap_or(false),
        rules,
    })
}

/// `30s`, `5m`, `1h` → seconds; None above a day.
fn period_seconds(text: &str) -> Option<u32> {
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    let n: u32 = digits.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        _ => return None,
    };
    (1..=MAX_PERIOD_SECONDS).contains(&secs).then_some(secs)
}

/// The Gateways limit policies target (for choosing the Gateway this filter runs in).
pub fn gateways(policies: &[LimitPolicyIr]) -> impl Iterator<Item = &String> {
    policies.iter().flat_map(|p| &p.targets).filter_map(|(t, _)| match t {
        TargetKey::Gateway(g) => Some(g),
        TargetKey::Backend(_) => None,
    })
}

/// The config's `limits`: one rule per (policy rule, target), policies in name order. A target backend
/// must be in the input; a Gateway other than this filter's is not enforced here (warning).
pub fn build(policies: &[LimitPolicyIr], gateway: Option<&str>, backend_names: &[String], all_backends: &std::collections::BTreeSet<String>, diags: &mut Diags) -> LimitsConfig {
    let mut sorted: Vec<&LimitPolicyIr> = policies.iter().collect();
    sorted.sort_by(|a, b| a.ns_name.cmp(&b.ns_name));
    let mut out = LimitsConfig { publish_headers: sorted.iter().any(|p| p.publish_headers), rules: Vec::new() };
    for p in sorted {
        for (target, ref_path) in &p.targets {
            let backend = match target {
                TargetKey::Gateway(g) if gateway == Some(g.as_str()) => None,
                TargetKey::Gateway(g) => {
                    diags.warn(format!("{}: {ref_path}: Gateway {g} is not the Gateway this filter runs in: its limits are not enforced here", p.location));
                    continue;
                }
                TargetKey::Backend(b) => match backend_names.iter().position(|n| n == b) {
                    Some(i) => Some(i as u32),
                    None => {
                        if !all_backends.contains(b) {
                            diags.error(&p.location, ref_path.as_str(), format!("XBackend {b} is not in the input: add the file that defines it (-f)"));
                        }
                        continue;
                    }
                },
            };
            let suffix = |name: &str| match target {
                // One policy on several targets: the same rule name would share buckets; keep them apart.
                _ if p.targets.len() == 1 => name.to_owned(),
                TargetKey::Gateway(g) => format!("{name}@gateway:{g}"),
                TargetKey::Backend(b) => format!("{name}@{b}"),
            };
            for r in &p.rules {
                out.rules.push(LimitRule { name: suffix(&r.name), backend, ..r.clone() });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::period_seconds;

    #[test]
    fn periods() {
        assert_eq!(period_seconds("1s"), Some(1));
        assert_eq!(period_seconds("30s"), Some(30));
        assert_eq!(period_seconds("5m"), Some(300));
        assert_eq!(period_seconds("24h"), Some(86400));
        assert_eq!(period_seconds("25h"), None);
        assert_eq!(period_seconds("1d"), None);
        assert_eq!(period_seconds(""), None);
    }
}
