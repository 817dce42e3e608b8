//! The decision engine: KAN's evaluation semantics over the compiled config.
//!
//! - A target (the Gateway, or one XBackend) with no policy allows everything.
//! - A target with policies denies by default; a request passes if it matches ANY rule of ANY policy.
//! - Gateway level and backend level are ANDed.
//!
//! Lookups are by index: the caller's SPIFFE ID maps to a principal number once per request, and each target
//! keeps, per principal, the (policy, rule) pairs naming it, plus the rules open to any caller. Only those
//! candidates are checked, in policy order, so decision cost does not grow with the number of grants.

use crate::cel::{self, Activation, EvalError, Program, Timestamp};
use crate::config::{
    Backend, Config, HttpMatch, MatchKind, McpMatch, McpMethod, Policy, Settings, Target, CONFIG_VERSION,
};
use crate::identity::is_spiffe_id;
use crate::mcp::McpOp;
use regex_lite::Regex;
use std::collections::{HashMap, HashSet};
use std::fmt;

mod agent;

/// A config the filter cannot load, naming the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path into the config JSON, e.g. `backends[0].policies[1].rules[2].http.headers[0].value`.
    pub path: String,
    pub message: String,
}

/// [`Engine::decide_a2a`]: both levels must allow.
pub struct A2aDecision<'e> {
    pub allowed: bool,
    /// The Gateway level (and an ephemeral identity's permission).
    pub gateway: Decision<'e>,
    /// The agent's grant.
    pub grant: crate::a2a::Verdict<'e>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "invalid Grantwall config: {}", self.message)
        } else {
            write!(f, "invalid Grantwall config at {}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

fn config_error(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError { path: path.into(), message: message.into() }
}

/// Index of a backend in the config.
pub type BackendId = u32;

/// Where a request goes: its backend, and whether it is on the backend's MCP endpoint path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub backend: BackendId,
    pub mcp_endpoint: bool,
}

/// The request facts rules can look at, captured by the host glue.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// `:path` as received (query included; the engine ignores it).
    pub path: &'a str,
    /// `:authority` / Host as received (port included or not).
    pub authority: &'a str,
    pub destination_port: Option<u16>,
    /// Values of the headers named by [`Engine::header_names`], lower-case names.
    pub headers: &'a [(String, String)],
    /// The caller's SPIFFE ID, if any.
    pub principal: Option<&'a str>,
    pub backend: Option<BackendId>,
    /// When the request is decided (host clock), for CEL `request.time`; None if the host did not say.
    pub time: Option<Timestamp>,
    /// Claims of the verified bearer token (a JSON object), for CEL `jwt.claims`; None without a token.
    pub jwt_claims: Option<&'a serde_json::Value>,
}

/// What one level (Gateway or XBackend) said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelOutcome<'e> {
    /// The request has no backend, so there is no backend level.
    NotApplicable,
    /// No policy targets this level: allowed.
    NoPolicy,
    Matched { policy: &'e str, rule: &'e str },
    DefaultDeny,
}

impl LevelOutcome<'_> {
    pub fn allows(&self) -> bool {
        !matches!(self, LevelOutcome::DefaultDeny)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'e> {
    pub allowed: bool,
    pub gateway: LevelOutcome<'e>,
    pub backend: LevelOutcome<'e>,
    /// The first CEL rule whose evaluation failed (so it did not match), for "why was I denied?".
    pub cel_error: Option<CelFailure<'e>>,
}

/// A CEL rule that could not be evaluated for this request (and therefore did not match).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CelFailure<'e> {
    pub policy: &'e str,
    pub rule: &'e str,
    pub error: EvalError,
}

impl<'e> Decision<'e> {
    /// Stable reason for audit records and metrics.
    pub fn reason(&self) -> &'static str {
        if !self.allowed {
            "default-deny"
        } else if matches!(self.gateway, LevelOutcome::Matched { .. }) || matches!(self.backend, LevelOutcome::Matched { .. })
        {
            "rule-matched"
        } else {
            "no-policy"
        }
    }

    /// For a denial where a CEL rule failed to evaluate: which rule and why (audit `detail`).
    pub fn cel_detail(&self) -> Option<String> {
        let f = self.cel_error.filter(|_| !self.allowed)?;
        Some(format!("CEL rule {}/{}: {}", f.policy, f.rule, f.error))
    }

    /// The level and match that decided: the denying level, else the most specific matching one.
    pub fn deciding(&self) -> (&'static str, LevelOutcome<'e>) {
        if self.gateway == LevelOutcome::DefaultDeny {
            ("gateway", self.gateway)
        } else if self.backend == LevelOutcome::DefaultDeny || matches!(self.backend, LevelOutcome::Matched { .. }) {
            ("backend", self.backend)
        } else {
            ("gateway", self.gateway)
        }
    }
}

/// Position of a rule: policy index within its target, rule index within the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct RuleRef {
    policy: u32,
    rule: u32,
}

/// Rule number standing for "this policy has no rules, so it matches all traffic".
const WHOLE_POLICY: u32 = u32::MAX;

struct CompiledTarget {
    name: String,
    policies: Vec<CompiledPolicy>,
    by_principal: HashMap<u32, Vec<RuleRef>>,
    open_to_all: Vec<RuleRef>,
}

struct CompiledPolicy {
    name: String,
    rules: Vec<CompiledRule>,
}

struct CompiledRule {
    name: String,
    http: Option<CompiledHttp>,
    mcp: Option<CompiledMcp>,
    cel: Option<Program>,
}

struct CompiledHttp {
    methods: Vec<String>,
    paths: Vec<(MatchKind, String, Option<Regex>)>,
    hosts: Vec<String>,
    headers: Vec<(String, Option<String>, Option<Regex>)>,
    ports: Vec<u16>,
}

struct CompiledMcp {
    base_protocol: bool,
    /// None: every non-base method. Some: per method, the names granted (None = any name).
    methods: Option<HashMap<McpMethod, Option<HashSet<String>>>>,
}

struct CompiledBackend {
    paths: Vec<String>,
    tool_pins: HashMap<String, String>,
    elicitation_url_hosts: Vec<String>,
    a2a: Option<crate::a2a::Agent>,
}

/// A loaded, validated and indexed config, ready to decide.
pub struct Engine {
    settings: Settings,
    principal_ids: HashMap<String, u32>,
    /// `targets[0]` is the gateway; `targets[1 + i]` is backend `i`.
    targets: Vec<CompiledTarget>,
    backends: Vec<CompiledBackend>,
    clusters: HashMap<String, BackendId>,
    authorities: HashMap<String, BackendId>,
    header_names: Vec<String>,
    /// Some CEL rule reads `request.mcp.arguments`: only then does the parser keep them.
    needs_arguments: bool,
    /// Some CEL rule reads `request.time`: only then does the glue ask the host for the clock.
    needs_time: bool,
    /// Some rule matches on the destination port: only then does the glue read it.
    uses_ports: bool,
    /// LLM model grants and budgets (empty without `llm` in the config).
    llm: crate::llm::LlmPolicySet,
    /// Ephemeral identities (GrantwallAgentIdentity), by principal.
    agents: agent::Agents,
    limits: crate::limits::Limits,
    /// ExternalAuth per target, indexed like `targets` (docs/extauth.md).
    external: Vec<Option<CompiledExternal>>,
}

/// A target's ExternalAuth: which requests go to the service (its rules, compiled like an Allow policy's),
/// and how to call it.
struct CompiledExternal {
    selector: CompiledTarget,
    config: crate::extauth::ExternalAuth,
}

impl Engine {
    /// Parse, validate and index a config. Errors name the field.
    pub fn from_json(json: &[u8]) -> Result<Engine, ConfigError> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let config: Config = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| config_error(e.path().to_string().trim_start_matches('.'), e.inner().to_string()))?;
        de.end().map_err(|e| config_error("", e.to_string()))?;
        Engine::new(config)
    }

    pub fn new(config: Config) -> Result<Engine, ConfigError> {
        if config.version != CONFIG_VERSION {
            return Err(config_error(
                "version",
                format!("unsupported version {:?}; this filter reads {CONFIG_VERSION:?} (recompile the policies with a matching grantwall)", config.version),
            ));
        }
        validate_settings(&config.settings)?;
        let mut principal_ids = HashMap::with_capacity(config.principals.len());
        for (i, p) in config.principals.iter().enumerate() {
            if !is_spiffe_id(p) && !crate::identity::is_oidc_principal(p) {
                return Err(config_error(format!("principals[{i}]"), format!("{p:?} is not a SPIFFE ID or oidc:// principal")));
            }
            if principal_ids.insert(p.clone(), index_u32(i)).is_some() {
                return Err(config_error(format!("principals[{i}]"), format!("{p:?} is listed twice")));
            }
        }
        let principal_count = config.principals.len();
        let mut targets = Vec::with_capacity(1 + config.backends.len());
        targets.push(compile_target(&config.gateway, "gateway", principal_count)?);
        let mut external = vec![compile_external(config.gateway.external_auth.as_ref(), "gateway", principal_count)?];
        let mut backends = Vec::with_capacity(config.backends.len());
        for (i, backend) in config.backends.iter().enumerate() {
            let at = format!("backends[{i}]");
            validate_backend(backend, &at)?;
            let target = Target { name: backend.name.clone(), policies: backend.policies.clone(), external_auth: None };
            targets.push(compile_target(&target, &at, principal_count)?);
            external.push(compile_external(backend.external_auth.as_ref(), &at, principal_count)?);
            let tool_pins = crate::pinning::validate_pins(&backend.tool_pins, &at).map_err(|(p, m)| config_error(p, m))?;
            crate::pinning::validate_hosts(&backend.elicitation_url_hosts, &at).map_err(|(p, m)| config_error(p, m))?;
            if let Some(agent) = &backend.a2a {
                agent.validate(&format!("{at}.a2a"), principal_count).map_err(|(p, m)| config_error(p, m))?;
            }
            backends.push(CompiledBackend {
                paths: backend.paths.clone(),
                tool_pins,
                elicitation_url_hosts: backend.elicitation_url_hosts.clone(),
                a2a: backend.a2a.clone().map(crate::a2a::Agent::new),
            });
        }
        let backend_count = backends.len();
        let limits = crate::limits::Limits::new(&config.limits, backend_count).map_err(|(p, m)| config_error(p, m))?;
        let check_route = |kind: &str, key: &String, idx: u32| {
            if (idx as usize) < backend_count {
                Ok(())
            } else {
                Err(config_error(format!("routes.{kind}[{key:?}]"), format!("backend {idx} does not exist")))
            }
        };
        for (k, v) in &config.routes.clusters {
            check_route("clusters", k, *v)?;
        }
        for (k, v) in &config.routes.authorities {
            check_route("authorities", k, *v)?;
            if k.chars().any(|c| c.is_ascii_uppercase()) || k.contains(':') {
                return Err(config_error(format!("routes.authorities[{k:?}]"), "must be a lower-case host without port"));
            }
        }
        let agents = agent::Agents::compile(&config.settings.identity.ephemeral, backend_count)?;
        let selectors = external.iter().flatten().map(|e| &e.selector);
        let rules = || targets.iter().chain(selectors.clone()).chain(agents.targets()).flat_map(|t| t.policies.iter()).flat_map(|p| p.rules.iter());
        let mut header_names: Vec<String> = rules()
            .filter_map(|r| r.http.as_ref())
            .flat_map(|h| h.headers.iter().map(|(name, _, _)| name.clone()))
            .chain(rules().filter_map(|r| r.cel.as_ref()).flat_map(Program::header_names))
            .chain(external.iter().flatten().flat_map(|e| crate::extauth::forwarded_header_names(&e.config)))
            .collect();
        header_names.sort();
        header_names.dedup();
        // The service is told the tool's arguments.
        let needs_arguments =
            rules().filter_map(|r| r.cel.as_ref()).any(Program::uses_arguments) || external.iter().any(Option::is_some);
        let needs_time = rules().filter_map(|r| r.cel.as_ref()).any(|p| p.expr().uses(cel::Var::RequestTime));
        let uses_ports = rules().any(|r| r.http.as_ref().is_some_and(|h| !h.ports.is_empty()));
        let llm = crate::llm::LlmPolicySet::new(config.llm.as_ref()).map_err(|(at, why)| config_error(at, why))?;
        Ok(Engine {
            settings: config.settings,
            principal_ids,
            targets,
            backends,
            clusters: config.routes.clusters.into_iter().collect(),
            authorities: config.routes.authorities.into_iter().collect(),
            header_names,
            needs_arguments,
            needs_time,
            uses_ports,
            limits,
            external,
            agents,
            llm,
        })
    }

    /// Rate limits, fan-out caps and context budgets.
    pub fn limits(&self) -> &crate::limits::Limits {
        &self.limits
    }

    /// LLM model grants and token budgets.
    pub fn llm(&self) -> &crate::llm::LlmPolicySet {
        &self.llm
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Whether any rule matches on the destination port: if not, the glue need not read it.
    pub fn uses_ports(&self) -> bool {
        self.uses_ports
    }

    /// Request headers some rule looks at: the glue captures only these.
    pub fn header_names(&self) -> &[String] {
        &self.header_names
    }

    /// Whether the body parser must keep `params.arguments` (some CEL rule reads `request.mcp.arguments`).
    pub fn needs_arguments(&self) -> bool {
        self.needs_arguments
    }

    /// Whether decisions need the clock (some CEL rule reads `request.time`).
    pub fn needs_time(&self) -> bool {
        self.needs_time
    }

    pub fn gateway_name(&self) -> &str {
        self.targets.first().map(|t| t.name.as_str()).unwrap_or("")
    }

    pub fn backend_name(&self, id: BackendId) -> Option<&str> {
        self.targets.get(1 + id as usize).map(|t| t.name.as_str())
    }

    /// Which backend a request is for: by upstream cluster first (the route chose it), else by authority.
    /// `mcp_endpoint` says whether the path lies under one of the backend's MCP paths; the backend's
    /// policies apply either way (off its MCP path a request is judged as traffic to the backend, not waved
    /// through to the gateway level only).
    pub fn route(&self, cluster: Option<&str>, authority: &str, path: &str) -> Option<Route> {
        let by_cluster = cluster.and_then(|c| self.clusters.get(c)).copied();
        let backend = match by_cluster {
            Some(id) => id,
            None => {
                let host = host_of(authority);
                let lowered;
                let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
                    lowered = host.to_ascii_lowercase();
                    lowered.as_str()
                } else {
                    host
                };
                *self.authorities.get(host)?
            }
        };
        self.backend_route(backend, path)
    }

    /// The route of a request already known to be for `backend` (`grantwall explain --backend`): whether
    /// `path` is on its MCP endpoint, decided exactly as [`Engine::route`] does. None if there is no such backend.
    pub fn backend_route(&self, backend: BackendId, path: &str) -> Option<Route> {
        let paths = &self.backends.get(backend as usize)?.paths;
        let path = path_only(path);
        Some(Route { backend, mcp_endpoint: paths.iter().any(|prefix| path_has_prefix(path, prefix)) })
    }

    /// The pinned definition hash of a backend's tool, if the tool is pinned.
    pub fn tool_pin(&self, backend: BackendId, tool: &str) -> Option<&str> {
        self.backends.get(backend as usize)?.tool_pins.get(tool).map(String::as_str)
    }

    /// Hosts a URL elicitation from this backend may name (empty: none).
    pub fn elicitation_url_hosts(&self, backend: BackendId) -> &[String] {
        self.backends.get(backend as usize).map_or(&[], |b| b.elicitation_url_hosts.as_slice())
    }

    /// Whether a backend pins any tool definition.
    pub fn has_tool_pins(&self, backend: BackendId) -> bool {
        self.backends.get(backend as usize).is_some_and(|b| !b.tool_pins.is_empty())
    }

    /// Whether any policy applies to a request for this backend; if not, it is allowed without inspection.
    pub fn has_policies(&self, backend: Option<BackendId>) -> bool {
        let backend_id = backend;
        let gateway = self.targets.first().is_some_and(|t| !t.policies.is_empty());
        let backend = backend
            .and_then(|id| self.targets.get(1 + id as usize))
            .is_some_and(|t| !t.policies.is_empty());
        let has_external = self.external_level(0).is_some()
            || backend_id.is_some_and(|id| self.external_level(1 + id).is_some());
        let agent = backend_a2a(self, backend_id).is_some_and(crate::a2a::Agent::has_policies);
        gateway || backend || has_external || agent
    }

    /// The A2A agent a backend is, if it is one (its requests are read as A2A, not MCP).
    pub fn a2a(&self, backend: Option<BackendId>) -> Option<&crate::a2a::Agent> {
        backend_a2a(self, backend)
    }

    /// An A2A call's grant: the Gateway level (KAN policies; for an ephemeral identity its parent's decision
    /// AND its permission on the agent) and the agent's own GrantwallA2APolicy grant — judged for the parent
    /// when the caller is an ephemeral identity, so a rule naming the sub-agent itself grants it nothing.
    /// None when the backend is not an A2A agent. Push URLs and task ownership are judged by the filter on
    /// the call's body and its run-time task table.
    pub fn decide_a2a(&self, req: &Request<'_>, op: crate::a2a::Operation) -> Option<A2aDecision<'_>> {
        let agent = self.a2a(req.backend)?;
        let gateway = self.decide(req, None);
        let grantee = self.ephemeral(req.principal).map_or(req.principal, |e| Some(e.parent.as_str()));
        let grant = agent.decide(self.principal_index(grantee), op);
        Some(A2aDecision { allowed: gateway.allowed && grant.allowed, gateway, grant })
    }

    /// The caller's index in the config's principals (what A2A rules name).
    pub fn principal_index(&self, principal: Option<&str>) -> Option<u32> {
        principal.and_then(|p| self.principal_ids.get(p)).copied()
    }

    /// The ExternalAuth of a level (0: the Gateway, 1 + i: backend i).
    pub fn external_level(&self, level: u32) -> Option<&crate::extauth::ExternalAuth> {
        self.external.get(level as usize)?.as_ref().map(|e| &e.config)
    }

    /// The levels whose ExternalAuth must be asked about this request, Gateway first: those whose rules
    /// select it. KAN: ExternalAuth runs besides the Allow policies and must allow too.
    /// An ephemeral identity is selected as its parent: it acts for the parent, and must not slip past a
    /// guardrail that selects the parent.
    pub fn external_checks(&self, req: &Request<'_>, op: Option<&McpOp<'_>>) -> [Option<u32>; 2] {
        let mut out = [None, None];
        if self.external.iter().all(Option::is_none) {
            return out;
        }
        let selected_as = self.ephemeral(req.principal).map_or(req.principal, |e| Some(e.parent.as_str()));
        let principal = selected_as.and_then(|p| self.principal_ids.get(p)).copied();
        let act = activation(req, op, false);
        let mut cel_error = None;
        let mut ctx = RuleCtx { req, op, act: &act, cel_error: &mut cel_error };
        let levels = [Some(0u32), req.backend.map(|id| 1 + id)];
        for (slot, level) in out.iter_mut().zip(levels) {
            let Some(level) = level else { continue };
            let Some(Some(ext)) = self.external.get(level as usize) else { continue };
            if matches!(evaluate(&ext.selector, principal, &mut ctx), LevelOutcome::Matched { .. }) {
                *slot = Some(level);
            }
        }
        out
    }

    /// Decide a request. `op` is the MCP operation, or None for traffic that is not MCP.
    pub fn decide(&self, req: &Request<'_>, op: Option<&McpOp<'_>>) -> Decision<'_> {
        self.decide_with(req, op, false)
    }

    /// Would the caller be allowed to use a listed item (`op` synthesized from a list entry, no arguments
    /// yet)? Like [`Engine::decide`], except that a CEL rule whose outcome depends on the call's arguments
    /// counts as a match: some call might pass, so the item is listed, and each real call is still judged
    /// with its arguments.
    pub fn decide_listing(&self, req: &Request<'_>, op: &McpOp<'_>) -> Decision<'_> {
        self.decide_with(req, Some(op), true)
    }

    fn decide_with(&self, req: &Request<'_>, op: Option<&McpOp<'_>>, listing: bool) -> Decision<'_> {
        if let Some(agent) = self.agents.get(req.principal) {
            return self.decide_agent(agent, req, op, listing);
        }
        let principal = req.principal.and_then(|p| self.principal_ids.get(p)).copied();
        let act = activation(req, op, listing);
        let mut cel_error = None;
        let mut ctx = RuleCtx { req, op, act: &act, cel_error: &mut cel_error };
        let gateway = match self.targets.first() {
            Some(t) => evaluate(t, principal, &mut ctx),
            None => LevelOutcome::NoPolicy,
        };
        let backend = match req.backend.and_then(|id| self.targets.get(1 + id as usize)) {
            Some(t) => evaluate(t, principal, &mut ctx),
            None => LevelOutcome::NotApplicable,
        };
        Decision { allowed: gateway.allows() && backend.allows(), gateway, backend, cel_error }
    }
}

/// `request.mcp.method`: the JSON-RPC method of a request or notification; not the GET stream, session DELETE
/// or a client's JSON-RPC response, which have none.
fn mcp_method_name<'a>(op: &McpOp<'a>) -> Option<&'a str> {
    (!matches!(op.name, "response" | "GET" | "DELETE")).then_some(op.name)
}

/// Everything a rule looks at, plus where to note the first CEL failure.
struct RuleCtx<'r, 'e> {
    req: &'r Request<'r>,
    op: Option<&'r McpOp<'r>>,
    act: &'r Activation<'r>,
    cel_error: &'r mut Option<CelFailure<'e>>,
}

/// What CEL rules see of a request; building it costs nothing until a CEL rule reads a variable.
/// `listing`: judging a listed item, whose call arguments are not known yet.
fn activation<'a>(req: &Request<'a>, op: Option<&'a McpOp<'a>>, listing: bool) -> Activation<'a> {
    let mut act = Activation::new(
        req.method,
        req.path,
        req.authority,
        req.headers,
        req.principal,
        req.time,
        op.and_then(mcp_method_name),
        op.filter(|o| o.method == Some(McpMethod::ToolsCall)).and_then(|o| o.target),
        op.and_then(|o| o.arguments),
    );
    act.jwt_claims = req.jwt_claims;
    if listing {
        act.with_unknown_arguments()
    } else {
        act
    }
}

fn evaluate<'e>(target: &'e CompiledTarget, principal: Option<u32>, ctx: &mut RuleCtx<'_, 'e>) -> LevelOutcome<'e> {
    if target.policies.is_empty() {
        return LevelOutcome::NoPolicy;
    }
    let named: &[RuleRef] = principal.and_then(|p| target.by_principal.get(&p)).map(Vec::as_slice).unwrap_or(&[]);
    let open = target.open_to_all.as_slice();
    // Both lists are sorted; walk them merged so the first match in policy order is reported.
    for next in crate::sorted::merged(named, open) {
        let Some(policy) = target.policies.get(next.policy as usize) else { continue };
        if next.rule == WHOLE_POLICY {
            return LevelOutcome::Matched { policy: &policy.name, rule: "*" };
        }
        let Some(rule) = policy.rules.get(next.rule as usize) else { continue };
        if rule_matches(rule, ctx.req, ctx.op) && cel_allows(rule, &policy.name, ctx) {
            return LevelOutcome::Matched { policy: &policy.name, rule: &rule.name };
        }
    }
    LevelOutcome::DefaultDeny
}

fn rule_matches(rule: &CompiledRule, req: &Request<'_>, op: Option<&McpOp<'_>>) -> bool {
    if let Some(http) = &rule.http {
        if !http_matches(http, req) {
            return false;
        }
    }
    match (&rule.mcp, op) {
        (None, _) => true,
        // MCP conditions can only be met by MCP traffic.
        (Some(_), None) => false,
        (Some(mcp), Some(op)) => mcp_grants(mcp, op),
    }
}

/// The rule's CEL condition, evaluated last (after the cheap checks): true only for `Ok(true)`.
fn cel_allows<'e>(rule: &'e CompiledRule, policy: &'e str, ctx: &mut RuleCtx<'_, 'e>) -> bool {
    let Some(program) = &rule.cel else { return true };
    match cel::evaluate(program, ctx.act) {
        Ok(b) => b,
        // Only when judging a listed item: the outcome waits for the real call's arguments.
        Err(cel::EvalError::DependsOnArguments) => true,
        Err(error) => {
            ctx.cel_error.get_or_insert(CelFailure { policy, rule: &rule.name, error });
            false
        }
    }
}

fn mcp_grants(grant: &CompiledMcp, op: &McpOp<'_>) -> bool {
    if op.base && grant.base_protocol {
        return true;
    }
    match (&grant.methods, op.method) {
        // No method list: every non-base MCP method (tools/list is both, so it is covered too).
        (None, Some(_)) => true,
        (None, None) => !op.base,
        (Some(methods), Some(method)) => match methods.get(&method) {
            None => false,
            Some(None) => true,
            Some(Some(names)) => op.target.is_some_and(|t| names.contains(t)),
        },
        (Some(_), None) => false,
    }
}

fn http_matches(http: &CompiledHttp, req: &Request<'_>) -> bool {
    if !http.methods.is_empty() && !http.methods.iter().any(|m| m == req.method) {
        return false;
    }
    if !http.paths.is_empty() {
        let path = path_only(req.path);
        let hit = http.paths.iter().any(|(kind, value, re)| match kind {
            MatchKind::Exact => path == value,
            MatchKind::Prefix => path_has_prefix(path, value),
            MatchKind::Regex => re.as_ref().is_some_and(|re| re.is_match(path)),
        });
        if !hit {
            return false;
        }
    }
    if !http.hosts.is_empty() {
        let host = host_of(req.authority).to_ascii_lowercase();
        if !http.hosts.iter().any(|h| host_matches(h, &host)) {
            return false;
        }
    }
    for (name, exact, re) in &http.headers {
        let Some((_, value)) = req.headers.iter().find(|(n, _)| n == name) else { return false };
        let ok = match (exact, re) {
            (Some(e), _) => value == e,
            (None, Some(re)) => re.is_match(value),
            (None, None) => false,
        };
        if !ok {
            return false;
        }
    }
    if !http.ports.is_empty() && !req.destination_port.is_some_and(|p| http.ports.contains(&p)) {
        return false;
    }
    true
}

/// Gateway API host matching: `*.example.com` matches any name with one or more labels before the suffix.
fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        None => pattern == host,
    }
}

/// Strip query and fragment.
fn path_only(path: &str) -> &str {
    path.split(['?', '#']).next().unwrap_or(path)
}

/// Segment-wise prefix: `/mcp` matches `/mcp`, `/mcp/`, `/mcp/x`, not `/mcpx`.
pub fn path_has_prefix(path: &str, prefix: &str) -> bool {
    let prefix = if prefix.len() > 1 { prefix.trim_end_matches('/') } else { prefix };
    if prefix == "/" {
        return path.starts_with('/');
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The host part of an authority: `svc.ns:8080` → `svc.ns`, `[::1]:443` → `[::1]`.
fn host_of(authority: &str) -> &str {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => authority.get(..=end).unwrap_or(authority),
            None => authority,
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

fn index_u32(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

fn validate_settings(settings: &Settings) -> Result<(), ConfigError> {
    if settings.max_body_bytes == 0 {
        return Err(config_error("settings.maxBodyBytes", "must be greater than 0"));
    }
    let xfcc = &settings.identity.forwarded_client_cert;
    for (i, peer) in xfcc.peers.iter().enumerate() {
        if !is_spiffe_id(peer) {
            return Err(config_error(
                format!("settings.identity.forwardedClientCert.peers[{i}]"),
                format!("{peer:?} is not a SPIFFE ID"),
            ));
        }
    }
    if xfcc.trust == crate::config::XfccTrust::FromPeers && xfcc.peers.is_empty() {
        return Err(config_error(
            "settings.identity.forwardedClientCert.peers",
            "trust: fromPeers needs at least one peer SPIFFE ID",
        ));
    }
    // Token keys are parsed here too, so `grantwall compile` refuses a key the filter would refuse.
    crate::jwt::Verifier::new(&settings.identity.jwt).map_err(|(at, why)| config_error(at, why))?;
    Ok(())
}

fn validate_backend(backend: &Backend, at: &str) -> Result<(), ConfigError> {
    if backend.paths.is_empty() {
        return Err(config_error(format!("{at}.paths"), "needs at least one path"));
    }
    for (i, p) in backend.paths.iter().enumerate() {
        if !p.starts_with('/') {
            return Err(config_error(format!("{at}.paths[{i}]"), format!("{p:?} must start with '/'")));
        }
    }
    Ok(())
}

fn compile_target(target: &Target, at: &str, principal_count: usize) -> Result<CompiledTarget, ConfigError> {
    if target.policies.len() >= WHOLE_POLICY as usize {
        return Err(config_error(format!("{at}.policies"), "too many policies"));
    }
    let mut by_principal: HashMap<u32, Vec<RuleRef>> = HashMap::new();
    let mut open_to_all = Vec::new();
    let mut policies = Vec::with_capacity(target.policies.len());
    for (pi, policy) in target.policies.iter().enumerate() {
        let pat = format!("{at}.policies[{pi}]");
        let policy_no = u32::try_from(pi).map_err(|_| config_error(&pat, "too many policies"))?;
        if policy.rules.is_empty() {
            open_to_all.push(RuleRef { policy: policy_no, rule: WHOLE_POLICY });
        }
        policies.push(compile_policy(policy, &pat, principal_count, policy_no, &mut by_principal, &mut open_to_all)?);
    }
    // Every list must be in policy order for first-match reporting.
    open_to_all.sort();
    for refs in by_principal.values_mut() {
        refs.sort();
        refs.dedup();
    }
    Ok(CompiledTarget { name: target.name.clone(), policies, by_principal, open_to_all })
}

/// An ExternalAuth's selector compiles like a target with one policy: its rules (none: all traffic).
fn compile_external(
    ea: Option<&crate::extauth::ExternalAuth>,
    at: &str,
    principal_count: usize,
) -> Result<Option<CompiledExternal>, ConfigError> {
    let Some(ea) = ea else { return Ok(None) };
    crate::extauth::validate(ea, at).map_err(|(p, m)| config_error(p, m))?;
    let selector = Target {
        name: String::new(),
        policies: vec![Policy { name: ea.policy.clone(), rules: ea.rules.clone() }],
        external_auth: None,
    };
    let selector = compile_target(&selector, &format!("{at}.externalAuth"), principal_count)?;
    Ok(Some(CompiledExternal { selector, config: ea.clone() }))
}

fn compile_policy(
    policy: &Policy,
    at: &str,
    principal_count: usize,
    policy_no: u32,
    by_principal: &mut HashMap<u32, Vec<RuleRef>>,
    open_to_all: &mut Vec<RuleRef>,
) -> Result<CompiledPolicy, ConfigError> {
    let mut rules = Vec::with_capacity(policy.rules.len());
    for (ri, rule) in policy.rules.iter().enumerate() {
        let rat = format!("{at}.rules[{ri}]");
        let rule_no = u32::try_from(ri).ok().filter(|n| *n != WHOLE_POLICY).ok_or_else(|| config_error(&rat, "too many rules"))?;
        let here = RuleRef { policy: policy_no, rule: rule_no };
        match &rule.principals {
            None => open_to_all.push(here),
            Some(list) => {
                for (k, p) in list.iter().enumerate() {
                    if *p as usize >= principal_count {
                        return Err(config_error(format!("{rat}.principals[{k}]"), format!("principal {p} does not exist")));
                    }
                    by_principal.entry(*p).or_default().push(here);
                }
            }
        }
        let http = rule.http.as_ref().map(|h| compile_http(h, &format!("{rat}.http"))).transpose()?;
        let mcp = rule.mcp.as_ref().map(compile_mcp);
        let cel = match &rule.cel {
            Some(expr) => Some(Program::new(expr.clone()).map_err(|e| config_error(format!("{rat}.cel"), e))?),
            None => None,
        };
        rules.push(CompiledRule { name: rule.name.clone(), http, mcp, cel });
    }
    Ok(CompiledPolicy { name: policy.name.clone(), rules })
}

fn compile_regex(pattern: &str, at: &str) -> Result<Regex, ConfigError> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| config_error(at, format!("invalid regular expression: {e}")))
}

fn compile_http(http: &HttpMatch, at: &str) -> Result<CompiledHttp, ConfigError> {
    let mut paths = Vec::with_capacity(http.paths.len());
    for (i, p) in http.paths.iter().enumerate() {
        let re = match p.kind {
            MatchKind::Regex => Some(compile_regex(&p.value, &format!("{at}.paths[{i}].value"))?),
            _ => None,
        };
        paths.push((p.kind, p.value.clone(), re));
    }
    let mut headers = Vec::with_capacity(http.headers.len());
    for (i, h) in http.headers.iter().enumerate() {
        if h.name.is_empty() || h.name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(config_error(format!("{at}.headers[{i}].name"), "must be a non-empty lower-case header name"));
        }
        let entry = match h.kind {
            MatchKind::Exact => (h.name.clone(), Some(h.value.clone()), None),
            MatchKind::Regex => (h.name.clone(), None, Some(compile_regex(&h.value, &format!("{at}.headers[{i}].value"))?)),
            MatchKind::Prefix => {
                return Err(config_error(format!("{at}.headers[{i}].type"), "headers match by exact or regex only"))
            }
        };
        headers.push(entry);
    }
    for (i, h) in http.hosts.iter().enumerate() {
        if h.is_empty() || h.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(config_error(format!("{at}.hosts[{i}]"), "must be a non-empty lower-case host name"));
        }
    }
    Ok(CompiledHttp {
        methods: http.methods.clone(),
        paths,
        hosts: http.hosts.clone(),
        headers,
        ports: http.ports.clone(),
    })
}

fn compile_mcp(mcp: &McpMatch) -> CompiledMcp {
    let methods = mcp.methods.as_ref().map(|grants| {
        let mut map: HashMap<McpMethod, Option<HashSet<String>>> = HashMap::new();
        for g in grants {
            let names = g.names.as_ref().map(|n| n.iter().cloned().collect::<HashSet<_>>());
            match (map.get_mut(&g.method), names) {
                (None, names) => {
                    map.insert(g.method, names);
                }
                // Two grants for one method: union; "any name" wins.
                (Some(slot), None) => *slot = None,
                (Some(Some(existing)), Some(more)) => existing.extend(more),
                (Some(None), Some(_)) => {}
            }
        }
        map
    });
    CompiledMcp { base_protocol: mcp.base_protocol, methods }
}

fn backend_a2a(engine: &Engine, backend: Option<BackendId>) -> Option<&crate::a2a::Agent> {
    engine.backends.get(backend? as usize)?.a2a.as_ref()
}
