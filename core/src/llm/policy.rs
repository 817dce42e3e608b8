//! The LLM policy set, validated and indexed at config load.

use super::config::{Budget, BudgetKey, LlmConfig, ModelPolicy};
use std::collections::HashMap;

/// A caller pattern: one principal, or every service account of a namespace (`.../ns/<ns>/sa/*`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Caller {
    Exact(String),
    /// The prefix up to and including `/sa/`.
    Namespace(String),
}

impl Caller {
    fn matches(&self, principal: Option<&str>) -> bool {
        match (self, principal) {
            (Caller::Exact(p), Some(x)) => p == x,
            // The prefix ends in `/sa/`; the rest must be one non-empty path segment.
            (Caller::Namespace(prefix), Some(x)) => {
                x.strip_prefix(prefix.as_str()).is_some_and(|sa| !sa.is_empty() && !sa.contains('/'))
            }
            (_, None) => false,
        }
    }
}

/// A model pattern: exact, or a prefix (`gpt-4*`; `*` alone is any model).
#[derive(Debug, Clone, PartialEq, Eq)]
enum ModelPattern {
    Exact(String),
    Prefix(String),
}

impl ModelPattern {
    fn matches(&self, model: &str) -> bool {
        match self {
            ModelPattern::Exact(m) => m == model,
            ModelPattern::Prefix(p) => model.starts_with(p.as_str()),
        }
    }
}

struct CompiledRule {
    name: String,
    /// None: any caller.
    callers: Option<Vec<Caller>>,
    models: Vec<ModelPattern>,
}

struct CompiledBudget {
    name: String,
    tokens: u64,
    window_seconds: u64,
    per: BudgetKey,
    callers: Option<Vec<Caller>>,
}

struct CompiledPolicy {
    name: String,
    rules: Vec<CompiledRule>,
    budgets: Vec<CompiledBudget>,
    cap_max_tokens: bool,
}

struct CompiledBackend {
    name: String,
    policies: Vec<CompiledPolicy>,
    /// Some policy has rules: models are deny-by-default.
    grants_models: bool,
}

/// Indexed LLM policies; empty when the config has no `llm` section.
#[derive(Default)]
pub struct LlmPolicySet {
    backends: Vec<CompiledBackend>,
    clusters: HashMap<String, u32>,
    authorities: HashMap<String, u32>,
}

/// Index of an LLM backend.
pub type LlmBackendId = u32;

/// Whether the caller may use the model, and which grant said so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelDecision<'e> {
    /// No policy of the backend grants models: any model.
    Unrestricted,
    Granted { policy: &'e str, rule: &'e str },
    Denied,
}

impl ModelDecision<'_> {
    pub fn allowed(&self) -> bool {
        !matches!(self, ModelDecision::Denied)
    }
}

/// One budget that applies to a request: its counter key and limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetRef<'e> {
    /// `policy ns/name`, budget name and the caller key (identity or namespace) joined with `/`: unique per
    /// counter, and bounded by the authenticated callers (never by anything a request body says).
    pub key: String,
    pub policy: &'e str,
    pub budget: &'e str,
    pub tokens: u64,
    pub window_seconds: u64,
    /// The policy asks to cap the request's output tokens to what is left.
    pub cap_max_tokens: bool,
}

/// A config error: dotted path and message.
pub type LlmConfigError = (String, String);

impl LlmPolicySet {
    pub fn new(config: Option<&LlmConfig>) -> Result<LlmPolicySet, LlmConfigError> {
        let mut set = LlmPolicySet::default();
        let Some(config) = config else { return Ok(set) };
        for (bi, backend) in config.backends.iter().enumerate() {
            let at = format!("llm.backends[{bi}]");
            let id = u32::try_from(bi).map_err(|_| (at.clone(), "too many backends".to_string()))?;
            if backend.clusters.is_empty() && backend.authorities.is_empty() {
                return Err((at, "needs at least one cluster or authority: no request could reach its policies".into()));
            }
            for (i, c) in backend.clusters.iter().enumerate() {
                if set.clusters.insert(c.clone(), id).is_some() {
                    return Err((format!("{at}.clusters[{i}]"), format!("cluster {c:?} is routed to two LLM backends")));
                }
            }
            for (i, a) in backend.authorities.iter().enumerate() {
                if a.is_empty() || a.contains(':') || a.bytes().any(|b| b.is_ascii_uppercase()) {
                    return Err((format!("{at}.authorities[{i}]"), "must be a lower-case host without port".into()));
                }
                if set.authorities.insert(a.clone(), id).is_some() {
                    return Err((format!("{at}.authorities[{i}]"), format!("authority {a:?} is routed to two LLM backends")));
                }
            }
            let policies = backend
                .policies
                .iter()
                .enumerate()
                .map(|(pi, p)| compile_policy(p, &format!("{at}.policies[{pi}]")))
                .collect::<Result<Vec<_>, _>>()?;
            let grants_models = policies.iter().any(|p| !p.rules.is_empty());
            set.backends.push(CompiledBackend { name: backend.name.clone(), policies, grants_models });
        }
        Ok(set)
    }

    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }

    /// The LLM backend of a request: by upstream cluster first, else by authority (host part, any case).
    pub fn route(&self, cluster: Option<&str>, authority: &str) -> Option<LlmBackendId> {
        if self.backends.is_empty() {
            return None;
        }
        if let Some(id) = cluster.and_then(|c| self.clusters.get(c)) {
            return Some(*id);
        }
        let host = host_of(authority);
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.authorities.get(&host.to_ascii_lowercase()).copied();
        }
        self.authorities.get(host).copied()
    }

    pub fn backend_name(&self, id: LlmBackendId) -> &str {
        self.backends.get(id as usize).map_or("", |b| b.name.as_str())
    }

    /// May `principal` use `model` on this backend? First granting rule in policy order.
    pub fn decide_model(&self, id: LlmBackendId, principal: Option<&str>, model: &str) -> ModelDecision<'_> {
        let Some(backend) = self.backends.get(id as usize) else { return ModelDecision::Denied };
        if !backend.grants_models {
            return ModelDecision::Unrestricted;
        }
        for policy in &backend.policies {
            for rule in &policy.rules {
                let caller_ok = rule.callers.as_ref().is_none_or(|cs| cs.iter().any(|c| c.matches(principal)));
                if caller_ok && rule.models.iter().any(|m| m.matches(model)) {
                    return ModelDecision::Granted { policy: &policy.name, rule: &rule.name };
                }
            }
        }
        ModelDecision::Denied
    }

    /// Every budget of this backend that applies to `principal`, with the counter key for it.
    pub fn budgets(&self, id: LlmBackendId, principal: Option<&str>) -> Vec<BudgetRef<'_>> {
        let Some(backend) = self.backends.get(id as usize) else { return Vec::new() };
        let mut out = Vec::new();
        for policy in &backend.policies {
            for b in &policy.budgets {
                if !b.callers.as_ref().is_none_or(|cs| cs.iter().any(|c| c.matches(principal))) {
                    continue;
                }
                let who = match b.per {
                    BudgetKey::Identity => principal.unwrap_or("-"),
                    BudgetKey::Namespace => principal.and_then(namespace_of).unwrap_or("-"),
                };
                out.push(BudgetRef {
                    key: format!("{}/{}/{}/{who}", policy.name, b.name, b.per.tag()),
                    policy: &policy.name,
                    budget: &b.name,
                    tokens: b.tokens,
                    window_seconds: b.window_seconds,
                    cap_max_tokens: policy.cap_max_tokens,
                });
            }
        }
        out
    }
}

impl BudgetKey {
    fn tag(self) -> &'static str {
        match self {
            BudgetKey::Identity => "id",
            BudgetKey::Namespace => "ns",
        }
    }
}

/// The Kubernetes namespace of a SPIFFE ID of the form `spiffe://<td>/ns/<ns>/sa/<sa>`.
pub fn namespace_of(principal: &str) -> Option<&str> {
    let rest = principal.strip_prefix("spiffe://")?;
    let (_, path) = rest.split_once('/')?;
    let mut parts = path.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("ns"), Some(ns), Some("sa"), Some(sa), None) if !ns.is_empty() && !sa.is_empty() => Some(ns),
        _ => None,
    }
}

fn compile_policy(p: &ModelPolicy, at: &str) -> Result<CompiledPolicy, LlmConfigError> {
    let mut rules = Vec::with_capacity(p.rules.len());
    for (ri, r) in p.rules.iter().enumerate() {
        let rat = format!("{at}.rules[{ri}]");
        if r.models.is_empty() {
            return Err((format!("{rat}.models"), "needs at least one model pattern (use \"*\" for any model)".into()));
        }
        let models = r
            .models
            .iter()
            .enumerate()
            .map(|(i, m)| model_pattern(m).map_err(|e| (format!("{rat}.models[{i}]"), e)))
            .collect::<Result<Vec<_>, _>>()?;
        let callers = compile_callers(r.callers.as_deref(), &format!("{rat}.callers"))?;
        rules.push(CompiledRule { name: r.name.clone(), callers, models });
    }
    let mut budgets = Vec::with_capacity(p.budgets.len());
    for (bi, b) in p.budgets.iter().enumerate() {
        let bat = format!("{at}.budgets[{bi}]");
        check_budget(b, &bat)?;
        if p.budgets.iter().take(bi).any(|o| o.name == b.name) {
            return Err((format!("{bat}.name"), format!("budget name {:?} is used twice in this policy", b.name)));
        }
        budgets.push(CompiledBudget {
            name: b.name.clone(),
            tokens: b.tokens,
            window_seconds: b.window_seconds,
            per: b.per,
            callers: compile_callers(b.callers.as_deref(), &format!("{bat}.callers"))?,
        });
    }
    Ok(CompiledPolicy { name: p.name.clone(), rules, budgets, cap_max_tokens: p.cap_max_tokens })
}

fn check_budget(b: &Budget, at: &str) -> Result<(), LlmConfigError> {
    if b.name.is_empty() || b.name.contains('/') {
        return Err((format!("{at}.name"), "must be a non-empty name without '/'".into()));
    }
    if b.tokens == 0 {
        return Err((format!("{at}.tokens"), "must be greater than 0".into()));
    }
    if b.window_seconds == 0 || b.window_seconds > super::window::MAX_WINDOW_SECONDS {
        return Err((
            format!("{at}.windowSeconds"),
            format!("must be between 1 and {} (one year)", super::window::MAX_WINDOW_SECONDS),
        ));
    }
    Ok(())
}

fn model_pattern(m: &str) -> Result<ModelPattern, String> {
    if m.is_empty() {
        return Err("must not be empty".into());
    }
    match m.find('*') {
        None => Ok(ModelPattern::Exact(m.to_owned())),
        Some(i) if i + 1 == m.len() => Ok(ModelPattern::Prefix(m.get(..i).unwrap_or_default().to_owned())),
        Some(_) => Err(format!("{m:?}: '*' is allowed only at the end (a prefix pattern)")),
    }
}

fn compile_callers(callers: Option<&[String]>, at: &str) -> Result<Option<Vec<Caller>>, LlmConfigError> {
    let Some(list) = callers else { return Ok(None) };
    let mut out = Vec::with_capacity(list.len());
    for (i, c) in list.iter().enumerate() {
        let caller = match c.strip_suffix('*') {
            Some(prefix) if prefix.ends_with("/sa/") && namespace_of(&format!("{prefix}x")).is_some() => {
                Caller::Namespace(prefix.to_owned())
            }
            Some(_) => {
                return Err((
                    format!("{at}[{i}]"),
                    format!("{c:?}: a wildcard caller must be spiffe://<trust-domain>/ns/<namespace>/sa/*"),
                ))
            }
            None if crate::identity::is_spiffe_id(c) || crate::identity::is_oidc_principal(c) => Caller::Exact(c.clone()),
            None => return Err((format!("{at}[{i}]"), format!("{c:?} is not a SPIFFE ID or oidc:// principal"))),
        };
        out.push(caller);
    }
    Ok(Some(out))
}

/// The host part of an authority: `svc.ns:8080` → `svc.ns`.
fn host_of(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.find(']').and_then(|end| authority.get(..=end)).unwrap_or(authority);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}
