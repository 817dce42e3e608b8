//! `GrantwallAgentIdentity` (grantwall.io/v1alpha1) → `settings.identity.ephemeral[]`: an ephemeral
//! sub-agent known by its token's issuer + subject, tied to a parent, with a ttl, a request budget and
//! permissions that must be provably narrower than the parent's on every level that has policies.
//!
//! "Narrower" is decided per grant atom: each permission rule is split into atoms (the base protocol; every
//! functional method; one method with any name; one method with one tool/prompt name or resource URI; "any
//! request") and every atom must be granted to the parent by a single rule of the target's policies whose
//! source is the parent (or any caller), whose HTTP conditions the permission repeats or narrows, and whose
//! CEL condition the permission repeats verbatim. Anything that cannot be proved narrower is a widening.

use crate::diag::{Diags, FieldPath};
use crate::input::Object;
use crate::kan_types::Source;
use crate::policy::{self, PolicyIr, RuleIr, TargetKey};
use grantwall_core::config::{HttpMatch, MatchKind, McpMatch, McpMethod, PathMatch, Rule};
use grantwall_core::engine::path_has_prefix;
use grantwall_core::ephemeral::{EphemeralIdentity, Permission, MAX_TTL_SECONDS};
use grantwall_core::jwt::{oidc_principal, JwtProvider};
use serde_json::{json, Value};

pub const GROUP: &str = "grantwall.io";
pub const KIND: &str = "GrantwallAgentIdentity";

/// What the rest of the compile gives this pass.
pub struct Inputs<'a> {
    pub trust_domain: &'a str,
    /// Gateway-level policies in force (empty: no policy at that level).
    pub gateway_policies: &'a [&'a PolicyIr],
    /// Config backend names, in config order (index = backend id).
    pub backend_names: &'a [String],
    /// Which of them are A2A agents (GrantwallA2AAgent `ns/name`).
    pub a2a_agents: &'a [String],
    /// Policies in force on a backend (by `ns/name`).
    pub backend_policies: &'a dyn Fn(&str) -> Vec<&'a PolicyIr>,
    pub providers: &'a [JwtProvider],
    /// Every principal an emitted policy rule names.
    pub policy_principals: &'a [String],
}

/// Compile every GrantwallAgentIdentity, refusing widenings. Sorted by `ns/name`.
pub fn build(objects: &[Object], inp: &Inputs<'_>, diags: &mut Diags) -> Vec<EphemeralIdentity> {
    let tokens: Vec<String> = objects.iter().map(token_principal).collect();
    let mut out: Vec<EphemeralIdentity> = objects.iter().filter_map(|o| read(o, inp, &tokens, diags)).collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    for (i, e) in out.iter().enumerate() {
        if let Some(other) = out.iter().take(i).find(|o| o.principal == e.principal) {
            diags.error(format!("GrantwallAgentIdentity {}", e.name), "spec.token", format!("{} is already the token of GrantwallAgentIdentity {}", e.principal, other.name));
        }
    }
    for e in &out {
        if inp.policy_principals.contains(&e.principal) {
            diags.warn(format!("GrantwallAgentIdentity {}: a policy rule names {} as its source; that rule is ignored for it (an ephemeral identity gets only its parent's grants narrowed by its permissions)", e.name, e.principal));
        }
    }
    out
}

/// The principal an identity's token names (`oidc://<issuer>#<subject>`).
fn token_principal(obj: &Object) -> String {
    let s = |p: &str| obj.value.pointer(p).and_then(Value::as_str).unwrap_or_default();
    oidc_principal(s("/spec/token/issuer"), s("/spec/token/subject"))
}

fn read(obj: &Object, inp: &Inputs<'_>, tokens: &[String], diags: &mut Diags) -> Option<EphemeralIdentity> {
    let before = diags.errors.len();
    let loc = obj.location();
    let spec = obj.value.get("spec")?;
    let root = FieldPath::root().field("spec");

    let source: Option<Source> = spec.get("parent").cloned().and_then(|v| serde_json::from_value(v).ok());
    let ctx = policy::Context { trust_domain: inp.trust_domain };
    let parent = policy::principal(source.as_ref(), &obj.namespace, &ctx, &root.field("parent"), &loc, diags);

    let issuer = spec.pointer("/token/issuer").and_then(Value::as_str).unwrap_or_default();
    let subject = spec.pointer("/token/subject").and_then(Value::as_str).unwrap_or_default();
    let principal = oidc_principal(issuer, subject);
    if !inp.providers.iter().any(|p| p.issuer == issuer && p.kubernetes_trust_domain.is_none()) {
        diags.error(&loc, "spec.token.issuer", format!("no GrantwallIdentityProvider with tokenType OIDC has issuer {issuer:?}: tokens of this identity could never be verified"));
    }
    let ttl_text = spec.get("ttl").and_then(Value::as_str).unwrap_or_default();
    let ttl = match parse_duration(ttl_text) {
        Some(s) if (1..=u64::from(MAX_TTL_SECONDS)).contains(&s) => s as u32,
        _ => {
            diags.error(&loc, "spec.ttl", format!("Invalid value: {ttl_text:?}: a duration between 1s and 24h, e.g. 60s, 5m, 1h30m"));
            0
        }
    };
    let max_requests = spec.get("maxRequests").and_then(Value::as_u64).map(|n| n.min(u64::from(u32::MAX)) as u32);

    // The permissions are read as a GrantwallAccessPolicy (same rule shape), so every rule check applies.
    // A GrantwallA2AAgent reference is read as an XBackend one (agents and XBackends share the config's
    // backend list); which references named an agent is kept to check each names the right kind.
    let mut agent_refs: Vec<String> = Vec::new();
    let target_refs: Option<Value> = spec.get("targetRefs").map(|refs| {
        let mut refs = refs.clone();
        for r in refs.as_array_mut().into_iter().flatten() {
            if r.get("group").and_then(Value::as_str) == Some(GROUP) && r.get("kind").and_then(Value::as_str) == Some(crate::a2a_crd::AGENT_KIND) {
                agent_refs.push(format!("{}/{}", obj.namespace, r.get("name").and_then(Value::as_str).unwrap_or_default()));
                r["group"] = json!(policy::GROUP);
                r["kind"] = json!("XBackend");
            }
        }
        refs
    });
    let as_policy = Object {
        origin: obj.origin.clone(),
        api_version: format!("{GROUP}/v1alpha1"),
        kind: "GrantwallAccessPolicy".into(),
        namespace: obj.namespace.clone(),
        name: obj.name.clone(),
        value: json!({
            "apiVersion": format!("{GROUP}/v1alpha1"),
            "kind": "GrantwallAccessPolicy",
            "metadata": {"name": obj.name, "namespace": obj.namespace},
            "spec": {"targetRefs": target_refs, "action": "Allow", "rules": spec.get("permissions")},
        }),
    };
    let mark = diags.errors.len();
    let ir = policy::read(&as_policy, &ctx, diags);
    for d in diags.errors.iter_mut().skip(mark) {
        d.location = loc.text.clone();
        d.path = d.path.replacen("spec.rules", "spec.permissions", 1);
    }
    let (Some(parent), Some(ir)) = (parent, ir) else { return None };
    if tokens.contains(&parent) {
        diags.error(&loc, "spec.parent", format!("the parent {parent} is itself an ephemeral identity: name the long-lived agent instead"));
    }
    if diags.errors.len() > before {
        return None;
    }

    let mut permissions = Vec::new();
    for (target, ref_path) in &ir.targets {
        let TargetKey::Backend(backend) = target else {
            diags.error(&loc, ref_path.as_str(), "an ephemeral identity's permissions target XBackends (group agentic.networking.x-k8s.io, kind XBackend) and A2A agents (group grantwall.io, kind GrantwallA2AAgent); the Gateway level is checked through the parent");
            continue;
        };
        let (named_agent, is_agent) = (agent_refs.contains(backend), inp.a2a_agents.contains(backend));
        let kind = if named_agent { crate::a2a_crd::AGENT_KIND } else { "XBackend" };
        let index = inp.backend_names.iter().position(|b| b == backend).filter(|_| named_agent == is_agent);
        let Some(index) = index else {
            let why = match (named_agent, is_agent) {
                (false, true) => format!("{backend} is a GrantwallA2AAgent, not an XBackend: reference it as {{group: grantwall.io, kind: GrantwallA2AAgent, name: ...}}"),
                (true, false) if inp.backend_names.contains(backend) => format!("{backend} is an XBackend, not a GrantwallA2AAgent: reference it as {{group: agentic.networking.x-k8s.io, kind: XBackend, name: ...}}"),
                _ => format!("{kind} {backend} is not in the input: add the file that defines it (-f)"),
            };
            diags.error(&loc, ref_path.as_str(), why);
            continue;
        };
        if is_agent {
            // Naming an agent is the permission: an A2A call carries no MCP method or tool, so the permission
            // rules (about XBackends) do not apply, and the operations are the parent's GrantwallA2APolicy
            // grants (the filter judges the agent's grant as the parent).
            let rule = Rule { name: format!("targetRefs: {backend}"), principals: None, http: None, mcp: None, cel: None };
            permissions.push(Permission { backend: index as u32, rules: vec![rule] });
            continue;
        }
        let levels = [
            ("the Gateway level".to_string(), inp.gateway_policies.to_vec()),
            (format!("{kind} {backend}"), (inp.backend_policies)(backend)),
        ];
        for (i, rule) in ir.rules.iter().enumerate() {
            for (level, policies) in &levels {
                if policies.is_empty() {
                    continue; // no policy at this level: the parent may do anything there
                }
                if let Err(why) = covered(rule, &parent, policies) {
                    diags.error(
                        &loc,
                        format!("spec.permissions[{i}]"),
                        format!("widens the parent {parent}: {why} on {level}; an ephemeral identity's permissions must be narrower than its parent's"),
                    );
                }
            }
        }
        let rules = ir
            .rules
            .iter()
            .map(|r| Rule { name: r.name.clone(), principals: None, http: r.http.clone(), mcp: r.mcp.clone(), cel: r.cel.clone() })
            .collect();
        permissions.push(Permission { backend: index as u32, rules });
    }
    permissions.sort_by_key(|p| p.backend);
    if diags.errors.len() > before {
        return None;
    }
    Some(EphemeralIdentity { name: obj.ns_name(), principal, parent, ttl_seconds: ttl, max_requests, permissions })
}

/// Gateway API duration (`1h30m`, `90s`) in seconds; None if malformed or a unit repeats.
pub fn parse_duration(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let (mut total, mut digits, mut seen) = (0u64, String::new(), String::new());
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        if digits.is_empty() || seen.contains(c) {
            return None;
        }
        seen.push(c);
        total = total.checked_add(digits.parse::<u64>().ok()?.checked_mul(unit)?)?;
        digits.clear();
    }
    digits.is_empty().then_some(total)
}

/// One indivisible grant of a permission rule.
#[derive(Debug, Clone, Copy)]
enum Atom<'a> {
    /// No MCP conditions: any request, MCP or not.
    AnyRequest,
    /// MATCH_BASE_PROTOCOL_METHODS.
    Base,
    /// MCP conditions without a methods list: every functional method.
    EveryMethod,
    /// One method, any name.
    Method(McpMethod),
    /// One method, one tool/prompt name or resource URI.
    Named(McpMethod, &'a str),
}

impl Atom<'_> {
    fn describe(&self) -> String {
        match self {
            Atom::AnyRequest => "every request (the permission has no MCP conditions)".into(),
            Atom::Base => "the MCP base protocol (MATCH_BASE_PROTOCOL_METHODS)".into(),
            Atom::EveryMethod => "every MCP method (no methods list)".into(),
            Atom::Method(m) => format!("{} of any name", m.as_str()),
            Atom::Named(m, n) => format!("{} of {n:?}", m.as_str()),
        }
    }
}

fn atoms(rule: &RuleIr) -> Vec<Atom<'_>> {
    let Some(mcp) = &rule.mcp else { return vec![Atom::AnyRequest] };
    let mut out = Vec::new();
    if mcp.base_protocol {
        out.push(Atom::Base);
    }
    match &mcp.methods {
        None => out.push(Atom::EveryMethod),
        Some(grants) => {
            for g in grants {
                match &g.names {
                    None => out.push(Atom::Method(g.method)),
                    Some(names) => out.extend(names.iter().map(|n| Atom::Named(g.method, n.as_str()))),
                }
            }
        }
    }
    out
}

/// Is every atom of `rule` granted to `parent` by one rule of `policies` (a level's policies in force)?
/// Err says which atom is not, and why.
fn covered(rule: &RuleIr, parent: &str, policies: &[&PolicyIr]) -> Result<(), String> {
    // A policy without rules matches all traffic at its target.
    if policies.iter().any(|p| p.rules.is_empty()) {
        return Ok(());
    }
    let parents: Vec<&RuleIr> = policies
        .iter()
        .flat_map(|p| p.rules.iter())
        .filter(|r| r.principal.as_deref().is_none_or(|p| p == parent))
        .collect();
    for atom in atoms(rule) {
        let by_method: Vec<&&RuleIr> = parents.iter().filter(|p| mcp_covers(p.mcp.as_ref(), atom)).collect();
        if by_method.is_empty() {
            return Err(format!("{} is not granted to the parent", atom.describe()));
        }
        let conditions_ok = by_method.iter().any(|p| http_covers(rule.http.as_ref(), p.http.as_ref()) && cel_covers(rule, p));
        if !conditions_ok {
            let names: Vec<&str> = by_method.iter().map(|p| p.name.as_str()).collect();
            return Err(format!(
                "{} is not granted to the parent unconditionally, only by rules whose HTTP or CEL conditions this permission does not repeat ({}; repeat or narrow them to prove it narrower)",
                atom.describe(),
                names.join(", ")
            ));
        }
    }
    Ok(())
}

/// Does the parent's MCP match grant this atom? (Compiled semantics: `methods: None` is every functional
/// method; KAN's "base protocol without methods" is already `Some([])` here.)
fn mcp_covers(parent: Option<&McpMatch>, atom: Atom<'_>) -> bool {
    let Some(p) = parent else { return true };
    let Some(grants) = &p.methods else {
        return !matches!(atom, Atom::AnyRequest) && (p.base_protocol || !matches!(atom, Atom::Base));
    };
    match atom {
        Atom::AnyRequest | Atom::EveryMethod => false,
        Atom::Base => p.base_protocol,
        // tools/list is a base-protocol method too.
        Atom::Method(McpMethod::ToolsList) | Atom::Named(McpMethod::ToolsList, _) if p.base_protocol => true,
        Atom::Method(m) => grants.iter().any(|g| g.method == m && g.names.is_none()),
        Atom::Named(m, name) => {
            grants.iter().any(|g| g.method == m && g.names.as_ref().is_none_or(|ns| ns.iter().any(|n| n == name)))
        }
    }
}

fn cel_covers(rule: &RuleIr, parent: &RuleIr) -> bool {
    match &parent.cel {
        None => true,
        Some(expr) => rule.cel.as_ref() == Some(expr),
    }
}

/// Every condition of the parent's HTTP match holds for every request the permission's HTTP match admits.
fn http_covers(rule: Option<&HttpMatch>, parent: Option<&HttpMatch>) -> bool {
    let Some(p) = parent else { return true };
    let empty = HttpMatch::default();
    let r = rule.unwrap_or(&empty);
    let subset = |rs: &[String], ps: &[String]| ps.is_empty() || (!rs.is_empty() && rs.iter().all(|x| ps.contains(x)));
    let hosts_ok = p.hosts.is_empty()
        || (!r.hosts.is_empty() && r.hosts.iter().all(|h| p.hosts.iter().any(|ph| ph == h || host_under(ph, h))));
    let paths_ok = p.paths.is_empty() || (!r.paths.is_empty() && r.paths.iter().all(|rp| p.paths.iter().any(|pp| path_under(pp, rp))));
    let ports_ok = p.ports.is_empty() || (!r.ports.is_empty() && r.ports.iter().all(|x| p.ports.contains(x)));
    subset(&r.methods, &p.methods) && hosts_ok && paths_ok && ports_ok && p.headers.iter().all(|h| r.headers.contains(h))
}

/// `pattern` (`*.suffix`) admits the exact host `host`.
fn host_under(pattern: &str, host: &str) -> bool {
    !host.starts_with('*') && pattern.strip_prefix('*').is_some_and(|suffix| host.len() > suffix.len() && host.ends_with(suffix))
}

/// Every path `rule` admits is admitted by `parent`.
fn path_under(parent: &PathMatch, rule: &PathMatch) -> bool {
    if parent == rule {
        return true;
    }
    match (parent.kind, rule.kind) {
        (MatchKind::Prefix, MatchKind::Exact | MatchKind::Prefix) => path_has_prefix(&rule.value, &parent.value),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s"), Some(60));
        assert_eq!(parse_duration("1h30m"), Some(5400));
        assert_eq!(parse_duration("2m5s"), Some(125));
        assert_eq!(parse_duration("0s"), Some(0));
        for bad in ["", "5", "s", "1d", "1m1m", "1.5s", "-1s", "10ms"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
