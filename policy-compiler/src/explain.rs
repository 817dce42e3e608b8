//! `grantwall explain`: would the filter allow this request, and exactly why?
//!
//! The decision comes from the filter's own code, not a model of it: the compiled config is loaded with
//! `Engine::from_json` (as `on_configure` does), the request body is built as JSON-RPC text and read by the
//! filter's strict parser (`jsonrpc::parse`, `McpOp::from_message`), and the record is the filter's
//! `AuditRecord`. What is re-stated here is only the filter glue's order of steps (`filter/src/http.rs`:
//! route, skip targets without policy, classify GET/DELETE/POST, refuse what cannot be inspected); the e2e
//! test `tests/e2e/test_explain.py` holds the two to the same answers in real Envoy.
//!
//! The "why" (which rules name the caller, which part of a rule failed) is computed with the same engine too:
//! each part of a rule is evaluated alone in a one-rule config.

mod a2a;
mod llm;

use grantwall_core::audit::AuditRecord;
use grantwall_core::config::{Config, McpMatch, Policy, Rule, Target, CONFIG_VERSION};
use grantwall_core::engine::{Decision, Engine, LevelOutcome, Request, Route};
use grantwall_core::identity::{is_oidc_principal, is_spiffe_id, IdentitySource};
use grantwall_core::jsonrpc;
use grantwall_core::mcp::{self, McpOp, RoutingHeaders};

/// What the request names as its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetArg {
    Tool(String),
    Prompt(String),
    Uri(String),
}

/// The request to explain, as the filter would see it.
#[derive(Debug, Clone, Default)]
pub struct ExplainRequest {
    /// The caller's SPIFFE ID (from a verified mTLS certificate), or None for no identity.
    pub principal: Option<String>,
    /// XBackend `namespace/name`; otherwise the backend is found from `cluster` / `authority` like the filter.
    pub backend: Option<String>,
    pub cluster: Option<String>,
    pub authority: Option<String>,
    pub method: String,
    /// Default: the backend's MCP path, or `/mcp`.
    pub path: Option<String>,
    pub port: Option<u16>,
    /// Extra request headers, names lower-case.
    pub headers: Vec<(String, String)>,
    /// JSON-RPC method of the POST body.
    pub mcp: Option<String>,
    /// An A2A operation (canonical name) on a GrantwallA2AAgent, instead of `mcp`.
    pub a2a: Option<String>,
    /// The `model` of an LLM request to an upstream a GrantwallModelPolicy names (found by `cluster` /
    /// `authority`), instead of `mcp`.
    pub model: Option<String>,
    pub target: Option<TargetArg>,
    /// `params.arguments`, raw JSON text, passed through the parser; CEL rules read it as `request.mcp.arguments`.
    pub args: Option<String>,
    /// Claims of a verified bearer token (a JSON object): CEL's `jwt.claims`, as if the token had been
    /// verified; the caller's identity source becomes `jwt`. None: no token.
    pub claims: Option<serde_json::Value>,
}

#[derive(Debug, Clone)]
pub struct Explanation {
    pub allowed: bool,
    /// The filter's audit record for this request, as JSON (`--json`).
    pub record_json: String,
    /// What a person reads: the decision and why.
    pub human: String,
}

/// Explains `req` against a compiled config (the JSON `grantwall compile` writes).
pub fn explain(config_json: &[u8], req: &ExplainRequest) -> Result<Explanation, String> {
    let engine = Engine::from_json(config_json).map_err(|e| format!("the filter would refuse this config: {e}"))?;
    let config: Config = serde_json::from_slice(config_json).map_err(|e| format!("config: {e}"))?;
    if let Some(p) = &req.principal {
        if !is_spiffe_id(p) && !is_oidc_principal(p) {
            return Err(format!("--as {p:?}: not a SPIFFE ID (spiffe://trust-domain/path) or an oidc://ISSUER#SUBJECT principal"));
        }
    }
    if req.claims.as_ref().is_some_and(|c| !c.is_object()) {
        return Err("--claims: must be a JSON object (the token's claims)".into());
    }
    let method = req.method.to_ascii_uppercase();
    if req.mcp.is_some() && method != "POST" {
        return Err(format!("--mcp names a JSON-RPC message, which travels in a POST body, not a {method}"));
    }
    if req.mcp.is_none() && (req.target.is_some() || req.args.is_some()) {
        return Err("--tool, --prompt, --uri and --args describe a JSON-RPC message: add --mcp METHOD".into());
    }

    // As the filter: a POST to an LLM upstream is read as an LLM request before any XBackend routing.
    let llm_backend = if method == "POST" { engine.llm().route(req.cluster.as_deref(), req.authority.as_deref().unwrap_or("")) } else { None };
    match (&req.model, llm_backend) {
        (Some(_), _) if req.backend.is_some() || req.mcp.is_some() || req.a2a.is_some() => {
            return Err("--model describes an LLM request: find its upstream with --cluster or --authority (not --backend), without --mcp or --a2a".into())
        }
        (Some(_), None) => {
            return Err(format!("--model: no LLM upstream of a GrantwallModelPolicy matches this {method} (give its Envoy --cluster or --authority)"))
        }
        (None, Some(id)) => {
            return Err(format!("this POST goes to LLM upstream {}: say which model with --model MODEL", engine.llm().backend_name(id)))
        }
        _ => {}
    }
    let backend_id = match &req.backend {
        Some(name) => Some(
            config
                .backends
                .iter()
                .position(|b| &b.name == name)
                .and_then(|i| u32::try_from(i).ok())
                .ok_or_else(|| {
                    let known: Vec<&str> = config.backends.iter().map(|b| b.name.as_str()).collect();
                    format!("--backend {name}: no such XBackend in the config (it has: {})", list_or_none(&known))
                })?,
        ),
        None => None,
    };
    let path = req.path.clone().unwrap_or_else(|| {
        if llm_backend.is_some() {
            return llm::DEFAULT_PATH.to_string();
        }
        backend_id
            .and_then(|id| config.backends.get(id as usize))
            .and_then(|b| b.paths.first().cloned())
            .unwrap_or_else(|| "/mcp".to_string())
    });
    let authority = req.authority.clone().unwrap_or_default();
    let route: Option<Route> = match backend_id {
        Some(id) => engine.backend_route(id, &path),
        None => engine.route(req.cluster.as_deref(), &authority, &path),
    };
    let backend = route.map(|r| r.backend);
    let header = |name: &str| req.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());

    let principal = req.principal.as_deref();
    let gateway_name = Some(engine.gateway_name()).filter(|g| !g.is_empty());
    let backend_name = backend.and_then(|b| engine.backend_name(b));
    let base = AuditRecord {
        identity: principal,
        // Claims, or an `oidc://` principal, can only come from a token; anything else is read as a certificate.
        identity_source: principal.map(|p| {
            let by_token = req.claims.is_some() || is_oidc_principal(p);
            if by_token { IdentitySource::Jwt } else { IdentitySource::MtlsPeer }.as_str()
        }),
        gateway: gateway_name,
        backend: backend_name,
        http_method: &method,
        path: &path,
        ..AuditRecord::default()
    };
    let ctx = Ctx { config: &config, req, principal, backend_name, gateway_name, method: &method, path: &path };
    // An A2A agent's requests are read as A2A, never as MCP (filter/src/http/a2a.rs).
    let a2a_op = match (&req.a2a, engine.a2a(backend).is_some()) {
        (Some(op), true) if req.mcp.is_none() => Some(a2a::operation(op)?),
        (Some(_), true) => return Err("--a2a and --mcp: an A2A call carries an A2A operation, not an MCP message".into()),
        (Some(_), false) => return Err(format!("--a2a names an A2A operation, but {} is not a GrantwallA2AAgent: name one with --backend NAMESPACE/NAME", ctx.target_desc())),
        (None, true) => {
            let why = if req.mcp.is_some() { "its requests are read as A2A, never as MCP" } else { "say which operation" };
            return Err(format!("{} is a GrantwallA2AAgent: {why}; use --a2a OPERATION (SendMessage, GetTask, ...)", ctx.target_desc()));
        }
        (None, false) => None,
    };

    let captured_headers: Vec<(String, String)> = engine
        .header_names()
        .iter()
        .filter_map(|n| header(n).map(|v| (n.clone(), v.to_string())))
        .collect();
    let request = Request {
        method: &method,
        path: &path,
        authority: &authority,
        destination_port: req.port,
        headers: &captured_headers,
        principal,
        backend,
        // The filter reads the proxy's clock only when a CEL rule needs `request.time`; so does explain.
        time: if engine.needs_time() { now() } else { None },
        // The claims given with --claims, as if their token had been verified; without, an empty map.
        jwt_claims: req.claims.as_ref(),
    };
    if let (Some(model), Some(id)) = (&req.model, llm_backend) {
        return llm::explain(&engine, &ctx, &request, id, model, base);
    }
    // As the filter: a request no policy applies to is allowed without inspection (never an ephemeral
    // identity's: it has only its permissions).
    if !engine.has_policies(backend) && engine.ephemeral(principal).is_none() {
        let record = AuditRecord { decision: "allow", reason: "no-policy", ..base };
        return Ok(Explanation { allowed: true, record_json: record.to_json(), human: ctx.no_policy() });
    }

    if let Some(op) = a2a_op {
        return a2a::explain(&engine, &ctx, &request, op, base);
    }
    let on_mcp_path = route.is_some_and(|r| r.mcp_endpoint);
    let content_type = header("content-type").or(req.mcp.as_ref().map(|_| "application/json"));
    let is_json = content_type.is_some_and(is_json_media_type);

    let body;
    let message;
    let op: Option<McpOp<'_>> = match method.as_str() {
        "POST" if on_mcp_path || is_json => {
            let refused = |reason: &'static str, detail: String| {
                let record = AuditRecord { decision: "deny", reason, detail: Some(&detail), ..base.clone() };
                Ok(Explanation { allowed: false, record_json: record.to_json(), human: ctx.refused(reason, &detail) })
            };
            if !is_json {
                return refused("unsupported-content-type", "MCP requests must be Content-Type: application/json".into());
            }
            if header("content-encoding").is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity")) {
                return refused("unsupported-content-encoding", "compressed request bodies are not accepted".into());
            }
            let Some(rpc_method) = &req.mcp else {
                return refused("malformed-json", "empty request body (say which JSON-RPC message with --mcp METHOD)".into());
            };
            body = jsonrpc_body(rpc_method, req.target.as_ref(), req.args.as_deref())?;
            let options = jsonrpc::Options { capture_arguments: engine.needs_arguments() };
            message = match jsonrpc::parse_with(body.as_bytes(), options) {
                Ok(m) => m,
                Err(e) => return refused(e.reason(), e.to_string()),
            };
            let routing = RoutingHeaders {
                protocol_version: header("mcp-protocol-version"),
                mcp_method: header("mcp-method"),
                mcp_name: header("mcp-name"),
            };
            if let Err(mismatch) = mcp::check_routing_headers(&message, &routing) {
                let detail = mismatch.message();
                let record = AuditRecord {
                    decision: "deny",
                    reason: "header-mismatch",
                    detail: Some(detail),
                    mcp_method: Some(message.method.as_ref()),
                    ..base.clone()
                };
                return Ok(Explanation { allowed: false, record_json: record.to_json(), human: ctx.refused("header-mismatch", detail) });
            }
            Some(McpOp::from_message(&message))
        }
        "GET" if on_mcp_path => Some(McpOp::STREAM),
        "DELETE" if on_mcp_path && header("mcp-session-id").is_some() => Some(McpOp::SESSION_END),
        _ => None,
    };

    let decision = engine.decide(&request, op.as_ref());
    // As the filter: a denial a CEL rule contributed to says which rule failed to evaluate, and why.
    let cel_detail = decision.cel_detail();
    let record = AuditRecord {
        mcp_method: op.map(|o| o.name),
        target: op.and_then(|o| o.target),
        detail: cel_detail.as_deref(),
        ..base
    }
    .with_decision(&decision);
    let mut human = match engine.ephemeral(principal) {
        None => ctx.decided(&decision, &request, op.as_ref()),
        Some(agent) => {
            // The run-time rule: the parent's decision (without the token's claims), then the own permissions.
            let parent_req = Request { principal: Some(agent.parent.as_str()), jwt_claims: None, ..request };
            let parent = engine.decide(&parent_req, op.as_ref());
            let parent_ctx = Ctx { principal: Some(agent.parent.as_str()), ..ctx };
            let own = match (parent.allowed, decision.backend) {
                (false, _) => "not consulted (the parent is refused)".to_string(),
                (true, LevelOutcome::Matched { rule, .. }) => format!("permission {rule} matches"),
                (true, _) => "no permission on this XBackend matches".to_string(),
            };
            let mut out = format!(
                "{}: ephemeral identity {} (GrantwallAgentIdentity) — allowed only if its parent is and one of its own permissions matches\n  own permissions: {own}\n  parent {}:\n",
                ctx.headline(if decision.allowed { "ALLOW" } else { "DENY" }, op.as_ref()),
                agent.name,
                agent.parent,
            );
            for line in parent_ctx.decided(&parent, &parent_req, op.as_ref()).lines() {
                out.push_str(&format!("    {line}\n"));
            }
            out.push_str(&format!(
                "  not explained: its lifetime (ttl {} s from iat, or exp) and request budget ({}), run-time state of the filter\n",
                agent.ttl_seconds,
                agent.max_requests.map_or("none".to_string(), |m| format!("{m} requests")),
            ));
            out
        }
    };
    if decision.allowed {
        // The filter would now ask the external service(s): explain cannot, so it says so.
        for ea in engine.external_checks(&request, op.as_ref()).into_iter().flatten().filter_map(|l| engine.external_level(l)) {
            human.push_str(&format!(
                "then ExternalAuth {} is asked ({} to Envoy cluster {:?}): the request passes only if it allows too (docs/extauth.md)\n",
                ea.policy,
                match ea.protocol {
                    grantwall_core::extauth::ExtAuthProtocol::Http => "HTTP",
                    grantwall_core::extauth::ExtAuthProtocol::Grpc => "gRPC",
                },
                ea.cluster
            ));
        }
    }
    Ok(Explanation { allowed: decision.allowed, record_json: record.to_json(), human })
}

/// The JSON-RPC text a client would send. `args` is inserted verbatim so the filter's parser judges it
/// exactly as it would judge the client's bytes (duplicate keys and all).
fn jsonrpc_body(method: &str, target: Option<&TargetArg>, args: Option<&str>) -> Result<String, String> {
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut params = Vec::new();
    match target {
        Some(TargetArg::Tool(n) | TargetArg::Prompt(n)) => params.push(format!("\"name\":{}", quote(n))),
        Some(TargetArg::Uri(u)) => params.push(format!("\"uri\":{}", quote(u))),
        None => {}
    }
    if let Some(a) = args {
        let value: serde_json::Value =
            serde_json::from_str(a).map_err(|e| format!("--args: not JSON ({e}); give the tool arguments as a JSON object, e.g. '{{\"a\":1}}'"))?;
        if !value.is_object() {
            return Err("--args: must be a JSON object (MCP tool arguments are named)".into());
        }
        params.push(format!("\"arguments\":{}", a.trim()));
    }
    // Notifications carry no id; everything else is a request.
    let id = if method.starts_with("notifications/") { String::new() } else { "\"id\":1,".to_string() };
    Ok(format!("{{\"jsonrpc\":\"2.0\",{id}\"method\":{},\"params\":{{{}}}}}", quote(method), params.join(",")))
}

/// `application/json`, optionally `charset=utf-8` (the filter's rule, `filter/src/http.rs`).
fn is_json_media_type(value: &str) -> bool {
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("application/json")
        && parts.all(|p| match p.split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8"),
            _ => true,
        })
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// Facts for the human-readable text.
struct Ctx<'a> {
    config: &'a Config,
    req: &'a ExplainRequest,
    principal: Option<&'a str>,
    backend_name: Option<&'a str>,
    gateway_name: Option<&'a str>,
    method: &'a str,
    path: &'a str,
}

/// Which parts of one rule hold for the request.
struct RuleCheck {
    source: bool,
    http: bool,
    mcp: bool,
    /// Why the rule's CEL expression does not hold (false, or the evaluation error); None if it holds.
    cel: Option<String>,
}

impl Ctx<'_> {
    fn who(&self) -> String {
        match self.principal {
            Some(p) => p.to_string(),
            None => "a caller without identity".to_string(),
        }
    }

    fn target_desc(&self) -> String {
        match self.backend_name {
            Some(b) => b.to_string(),
            None => match self.gateway_name {
                Some(g) => format!("gateway {g} (no XBackend matched the request)"),
                None => "no XBackend (none matched the request)".to_string(),
            },
        }
    }

    fn what(&self, op: Option<&McpOp<'_>>) -> String {
        match op {
            Some(op) if op.name == "GET" => format!("GET {} (MCP stream)", self.path),
            Some(op) if op.name == "DELETE" => format!("DELETE {} (MCP session end)", self.path),
            Some(op) => match op.target {
                Some(t) => format!("{} {t}", op.name),
                None => op.name.to_string(),
            },
            None => match &self.req.mcp {
                Some(m) => m.clone(),
                None => format!("{} {} (not MCP)", self.method, self.path),
            },
        }
    }

    fn headline(&self, verdict: &str, op: Option<&McpOp<'_>>) -> String {
        format!("{verdict} {} for {} on {}", self.what(op), self.who(), self.target_desc())
    }

    fn notes(&self) -> String {
        let mut out = String::new();
        if self.req.args.is_some() {
            let uses = self.config.backends.iter().flat_map(|b| &b.policies).chain(&self.config.gateway.policies)
                .flat_map(|p| &p.rules)
                .any(|r| r.cel.as_ref().is_some_and(|c| c.uses(grantwall_core::cel::Var::McpArguments)));
            out.push_str(if uses {
                "\n  note: --args went through the filter's parser; CEL rules read them as request.mcp.arguments"
            } else {
                "\n  note: --args went through the filter's parser; no rule of this config reads tool arguments"
            });
        }
        if self.principal.is_some() {
            out.push_str("\n  note: assumes the identity comes from a verified mTLS certificate (or a trusted x-forwarded-client-cert)");
        }
        out
    }

    fn no_policy(&self) -> String {
        let where_ = match self.backend_name {
            Some(b) => format!("neither the Gateway nor XBackend {b} has an Allow policy"),
            None => "no policy targets the Gateway, and no XBackend matched".to_string(),
        };
        format!("{}: no-policy — {where_}; KAN allows traffic to targets without policies{}\n", self.headline("ALLOW", None), self.notes())
    }

    fn refused(&self, reason: &str, detail: &str) -> String {
        format!(
            "{}: refused before any policy — {reason}: {detail}\n  (the filter refuses what it cannot inspect with certainty; see docs/semantics.md section 3){}\n",
            self.headline("DENY", None),
            self.notes()
        )
    }

    fn decided(&self, d: &Decision<'_>, request: &Request<'_>, op: Option<&McpOp<'_>>) -> String {
        let (level, outcome) = d.deciding();
        let mut out = String::new();
        if d.allowed {
            let why = match outcome {
                LevelOutcome::Matched { policy, rule } => format!("rule {} of policy {policy} ({level} level)", rule_label(rule)),
                _ => "no policy at either level".to_string(),
            };
            out.push_str(&format!("{}: {why}", self.headline("ALLOW", op)));
            let other = if level == "backend" { ("gateway", d.gateway) } else { ("backend", d.backend) };
            match other.1 {
                LevelOutcome::Matched { policy, rule } => {
                    out.push_str(&format!("; {} level: rule {} of policy {policy}", other.0, rule_label(rule)))
                }
                LevelOutcome::NoPolicy => out.push_str(&format!("; {} level has no policy", other.0)),
                _ => {}
            }
            out.push('\n');
        } else {
            let target = self.level_target(level);
            let policies: Vec<&str> = target.as_ref().map(|t| t.policies.iter().map(|p| p.name.as_str()).collect()).unwrap_or_default();
            out.push_str(&format!(
                "{}: {level} level default-deny — no rule of policies [{}] grants it",
                self.headline("DENY", op),
                policies.join(", ")
            ));
            if let Some(t) = &target {
                out.push_str(&self.caller_summary(t, request, op));
            }
            out.push('\n');
        }
        for (lvl, name, outcome) in [("gateway", self.gateway_name, d.gateway), ("backend", self.backend_name, d.backend)] {
            let name = name.map(|n| format!(" {n}")).unwrap_or_default();
            let text = match outcome {
                LevelOutcome::NotApplicable => continue,
                LevelOutcome::NoPolicy => "no policy: allows".to_string(),
                LevelOutcome::Matched { policy, rule } => format!("allows: rule {} of policy {policy}", rule_label(rule)),
                LevelOutcome::DefaultDeny => "denies: no rule matched (default deny)".to_string(),
            };
            out.push_str(&format!("  {lvl} level{name}: {text}\n"));
            if outcome == LevelOutcome::DefaultDeny {
                if let Some(t) = self.level_target(lvl) {
                    out.push_str(&self.rule_lines(&t, request, op));
                }
            }
        }
        out.push_str(self.notes().trim_start_matches('\n'));
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out
    }

    fn level_target(&self, level: &str) -> Option<Target> {
        if level == "gateway" {
            return Some(self.config.gateway.clone());
        }
        let name = self.backend_name?;
        self.config.backends.iter().find(|b| b.name == name).map(|b| Target { name: b.name.clone(), policies: b.policies.clone(), external_auth: None })
    }

    /// "; the caller is named by rule X (grants …)" or "; no rule names the caller".
    fn caller_summary(&self, target: &Target, request: &Request<'_>, op: Option<&McpOp<'_>>) -> String {
        let mut named = Vec::new();
        for policy in &target.policies {
            for rule in &policy.rules {
                let check = self.check(rule, request, op);
                if check.source && rule.principals.is_some() {
                    named.push(format!("rule {} (grants {})", rule.name, grant_text(rule)));
                }
            }
        }
        if !named.is_empty() {
            format!("; the caller is named by {}", named.join(", "))
        } else if self.principal.is_some() {
            "; no rule names the caller".to_string()
        } else {
            "; the caller has no identity, so only rules without a source could match".to_string()
        }
    }

    fn rule_lines(&self, target: &Target, request: &Request<'_>, op: Option<&McpOp<'_>>) -> String {
        let mut out = String::new();
        for policy in &target.policies {
            out.push_str(&format!("    policy {}:\n", policy.name));
            if policy.rules.is_empty() {
                out.push_str("      (no rules: matches everything)\n");
            }
            for rule in &policy.rules {
                let c = self.check(rule, request, op);
                let why = if !c.source {
                    format!("not for this caller (source: {})", self.sources(rule))
                } else if !c.http {
                    "its HTTP conditions do not match this request".to_string()
                } else if !c.mcp {
                    format!("grants {}; not {}", grant_text(rule), self.what(op))
                } else if let Some(why) = c.cel {
                    why
                } else {
                    "matches".to_string()
                };
                out.push_str(&format!("      rule {}: {why}\n", rule.name));
            }
        }
        out
    }

    fn sources(&self, rule: &Rule) -> String {
        match &rule.principals {
            None => "any caller".into(),
            Some(ids) => ids
                .iter()
                .map(|i| self.config.principals.get(*i as usize).cloned().unwrap_or_else(|| format!("principal {i}")))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// Each part of `rule` judged alone by the engine (a one-rule config), so the explanation cannot drift from
    /// the decision.
    fn check(&self, rule: &Rule, request: &Request<'_>, op: Option<&McpOp<'_>>) -> RuleCheck {
        let source = match (&rule.principals, self.principal) {
            (None, _) => true,
            (Some(ids), Some(p)) => ids.iter().any(|i| self.config.principals.get(*i as usize).is_some_and(|q| q == p)),
            (Some(_), None) => false,
        };
        let decide_alone = |part: Rule| -> Option<(bool, Option<String>)> {
            let config = Config {
                version: CONFIG_VERSION.to_string(),
                settings: Default::default(),
                principals: vec![],
                gateway: Target { name: String::new(), policies: vec![Policy { name: "p".into(), rules: vec![part] }], external_auth: None },
                backends: vec![],
                routes: Default::default(),
                limits: Default::default(),
                llm: None,
            };
            let e = Engine::new(config).ok()?;
            let req = Request { principal: None, backend: None, ..*request };
            let d = e.decide(&req, op);
            Some((matches!(d.gateway, LevelOutcome::Matched { .. }), d.cel_error.map(|f| f.error.to_string())))
        };
        let alone = |part: Rule| decide_alone(part).is_some_and(|(matched, _)| matched);
        let part = |http, mcp, cel| Rule { name: rule.name.clone(), principals: None, http, mcp, cel };
        let http = rule.http.is_none() || alone(part(rule.http.clone(), None, None));
        let mcp = rule.mcp.is_none() || alone(part(None, rule.mcp.clone(), None));
        let cel = match rule.cel.clone().map(|c| decide_alone(part(None, None, Some(c)))) {
            None | Some(Some((true, _))) => None,
            Some(Some((false, Some(error)))) => Some(format!("its CEL expression could not be evaluated: {error}")),
            Some(_) => Some("its CEL expression is false for this request".to_string()),
        };
        RuleCheck { source, http, mcp, cel }
    }
}

fn rule_label(rule: &str) -> String {
    if rule == "*" {
        "(none: the policy has no rules)".to_string()
    } else {
        rule.to_string()
    }
}

/// What a rule grants, in KAN's words.
fn grant_text(rule: &Rule) -> String {
    let mut parts = Vec::new();
    match &rule.mcp {
        None => parts.push("all traffic".to_string()),
        Some(McpMatch { base_protocol, methods }) => {
            if *base_protocol {
                parts.push("the base protocol".to_string());
            }
            match methods {
                None => parts.push("every MCP method".to_string()),
                Some(list) if list.is_empty() => parts.push("no MCP method".to_string()),
                Some(list) => {
                    for g in list {
                        match &g.names {
                            Some(names) => parts.push(format!("{} [{}]", g.method.as_str(), names.join(", "))),
                            None => parts.push(g.method.as_str().to_string()),
                        }
                    }
                }
            }
        }
    }
    let mut text = parts.join(", ");
    if rule.http.is_some() {
        text.push_str(" under HTTP conditions");
    }
    if rule.cel.is_some() {
        text.push_str(" when its CEL expression holds");
    }
    text
}

/// The host clock as the filter reads it, for `request.time`.
fn now() -> Option<grantwall_core::cel::Timestamp> {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(grantwall_core::cel::Timestamp { seconds: i64::try_from(d.as_secs()).ok()?, nanos: d.subsec_nanos() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_what_a_client_sends() {
        let b = jsonrpc_body("tools/call", Some(&TargetArg::Tool("echo".into())), Some("{\"m\":\"x\"}")).unwrap();
        assert_eq!(b, r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"m":"x"}}}"#);
        let n = jsonrpc_body("notifications/initialized", None, None).unwrap();
        assert_eq!(n, r#"{"jsonrpc":"2.0","method":"notifications/initialized","params":{}}"#);
        assert!(jsonrpc_body("tools/call", None, Some("[1]")).unwrap_err().contains("JSON object"));
        assert!(jsonrpc_body("tools/call", None, Some("{")).unwrap_err().contains("not JSON"));
    }
}
