//! One validated XAccessPolicy (v1alpha1 or v0alpha0) → its targets and compiled rules, with the semantic
//! checks the CRD cannot express (source consistency, regexes the filter must load, unsupported features).

use crate::diag::{Diags, FieldPath, Loc};
use crate::input::Object;
use crate::kan_types::{
    self, AuthorizationV0, AuthorizationV1, McpAuthorizationV1, PolicySpecV0, PolicySpecV1, Source,
    TargetRef,
};
use crate::timestamp::{self, Instant};
use grantwall_core::cel::Expr;
use grantwall_core::config::{
    HeaderMatch, HttpMatch, MatchKind, McpMatch, McpMethod, MethodGrant, PathMatch,
};
use std::collections::{BTreeMap, BTreeSet};

pub const GROUP: &str = "agentic.networking.x-k8s.io";
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// What a policy attaches to: `namespace/name` of a Gateway or an XBackend (same namespace as the policy).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum TargetKey {
    Gateway(String),
    Backend(String),
}

#[derive(Debug, Clone)]
pub struct PolicyIr {
    pub location: Loc,
    pub ns_name: String,
    pub created: Option<Instant>,
    /// Each target once, with the path of the targetRef that named it (for "not found" errors).
    pub targets: Vec<(TargetKey, String)>,
    pub rules: Vec<RuleIr>,
    /// An ExternalAuth this policy configures (v1alpha1 `action: ExternalAuth`, or a v0alpha0 rule).
    pub external: Option<crate::extauth::ExternalIr>,
}

/// A rule before principals are interned.
#[derive(Debug, Clone)]
pub struct RuleIr {
    pub name: String,
    /// SPIFFE ID; `None` = any caller.
    pub principal: Option<String>,
    pub http: Option<HttpMatch>,
    pub mcp: Option<McpMatch>,
    /// Compiled `authorization.cel.expression`.
    pub cel: Option<Expr>,
}

pub struct Context<'a> {
    pub trust_domain: &'a str,
}

/// Reads a policy that passed schema validation. Errors go to `diags`; `None` if there were any.
pub fn read(obj: &Object, ctx: &Context<'_>, diags: &mut Diags) -> Option<PolicyIr> {
    let before = diags.errors.len();
    let loc = obj.location();
    let spec = FieldPath::root().field("spec");
    let created = creation_timestamp(obj, diags);
    let mut external = None;
    let (target_refs, rules) = if obj.api_version.ends_with("/v0alpha0") {
        let s: PolicySpecV0 = match kan_types::spec(&obj.value) {
            Ok(s) => s,
            Err(e) => return fail(diags, &loc, e),
        };
        let rules = s
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let p = spec.field("rules").index(i);
                let principal = principal(
                    Some(&r.source),
                    &obj.namespace,
                    ctx,
                    &p.field("source"),
                    &loc,
                    diags,
                );
                let (mcp, cel) = match &r.authorization {
                    Some(a) => authorization_v0(a, &p.field("authorization"), &loc, diags),
                    None => (None, None),
                };
                RuleIr {
                    name: r.name.clone(),
                    principal,
                    http: None,
                    mcp,
                    cel,
                }
            })
            .collect::<Vec<RuleIr>>();
        // The CRD allows one ExternalAuth rule per policy: its source's requests go to the service, and the
        // rule grants what the service allows.
        for (i, r) in s.rules.iter().enumerate() {
            let Some(ext) = r.authorization.as_ref().filter(|a| a.kind == "ExternalAuth") else { continue };
            let (Some(value), Some(rule)) = (ext.external_auth.as_ref(), rules.get(i)) else { continue };
            let selector = RuleIr { mcp: None, cel: None, http: None, ..rule.clone() };
            let path = spec.field("rules").index(i).field("authorization").field("externalAuth");
            external = crate::extauth::read(obj, value, &path, vec![selector], true, &loc, diags);
        }
        (s.target_refs, rules)
    } else {
        let s: PolicySpecV1 = match kan_types::spec(&obj.value) {
            Ok(s) => s,
            Err(e) => return fail(diags, &loc, e),
        };
        match s.action.as_str() {
            "Allow" => {
                if s.external_auth.is_some() {
                    diags.warn(format!(
                        "{loc}: spec.externalAuth: ignored, because action is Allow"
                    ));
                }
            }
            "ExternalAuth" => {}
            other => diags.error(
                &loc,
                spec.field("action").as_str(),
                format!("unknown action {other:?}"),
            ),
        }
        if s.rules.as_ref().is_some_and(Vec::is_empty) {
            diags.warn(format!(
                "{loc}: spec.rules: an explicit empty list grants nothing, so this policy denies all traffic at its targets; omit `rules` to allow all traffic"
            ));
        }
        let explicit_empty = s.rules.as_ref().is_some_and(Vec::is_empty);
        let mut rules: Vec<RuleIr> = s
            .rules
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let p = spec.field("rules").index(i);
                let principal = principal(
                    r.source.as_ref(),
                    &obj.namespace,
                    ctx,
                    &p.field("source"),
                    &loc,
                    diags,
                );
                let (http, mcp, cel) = match &r.authorization {
                    Some(a) => authorization_v1(a, &p.field("authorization"), &loc, diags),
                    None => (None, None, None),
                };
                RuleIr {
                    name: r.name.clone(),
                    principal,
                    http,
                    mcp,
                    cel,
                }
            })
            .collect();
        if explicit_empty {
            rules.push(matches_nothing());
        }
        if s.action == "ExternalAuth" {
            // Its rules select what is sent to the service; the policy grants nothing (extauth.rs).
            let value = s.external_auth.clone().unwrap_or(serde_json::Value::Null);
            external = crate::extauth::read(obj, &value, &spec.field("externalAuth"), rules.clone(), false, &loc, diags);
        }
        (s.target_refs, rules)
    };
    let targets = targets(
        &target_refs,
        &obj.namespace,
        &spec.field("targetRefs"),
        &loc,
        diags,
    );
    if diags.errors.len() > before {
        return None;
    }
    Some(PolicyIr {
        location: loc,
        ns_name: obj.ns_name(),
        created,
        targets,
        rules,
        external,
    })
}

/// The compiled form of `rules: []`: a rule no request can match. (An empty `rules` in the config means
/// "no rules, all traffic", KAN's reading of an omitted field; an explicit empty list must not mean that.)
fn matches_nothing() -> RuleIr {
    RuleIr {
        name: "explicit-empty-rules".to_string(),
        principal: None,
        http: None,
        // MCP conditions that grant no method: non-MCP traffic cannot meet them, MCP traffic is not granted.
        mcp: Some(McpMatch { base_protocol: false, methods: Some(Vec::new()) }),
        cel: None,
    }
}

fn fail(diags: &mut Diags, loc: &Loc, e: String) -> Option<PolicyIr> {
    diags.error(loc, "spec", e);
    None
}

fn creation_timestamp(obj: &Object, diags: &mut Diags) -> Option<Instant> {
    let raw = obj.value.get("metadata")?.get("creationTimestamp")?;
    if raw.is_null() {
        return None;
    }
    let parsed = raw.as_str().and_then(timestamp::parse_rfc3339);
    if parsed.is_none() {
        diags.error(
            obj.location(),
            "metadata.creationTimestamp",
            format!("Invalid value: {raw}: must be an RFC 3339 date-time"),
        );
    }
    parsed
}

pub(crate) fn targets(
    refs: &[TargetRef],
    ns: &str,
    path: &FieldPath,
    loc: &Loc,
    diags: &mut Diags,
) -> Vec<(TargetKey, String)> {
    let mut out: Vec<(TargetKey, String)> = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        let p = path.index(i);
        if r.section_name.is_some() {
            // Applying it to the whole target would change what the policy means; refuse instead.
            diags.error(loc, p.field("sectionName").as_str(), "sectionName is not supported: Grantwall applies policies to a whole Gateway or XBackend");
            continue;
        }
        let key = match (r.group.as_str(), r.kind.as_str()) {
            (GROUP, "XBackend") => TargetKey::Backend(format!("{ns}/{}", r.name)),
            (GATEWAY_GROUP, "Gateway") => TargetKey::Gateway(format!("{ns}/{}", r.name)),
            (g, k) => {
                diags.error(loc, p.as_str(), format!("unsupported target {k} in group {g:?}: only {GROUP} XBackend and {GATEWAY_GROUP} Gateway"));
                continue;
            }
        };
        if !out.iter().any(|(k, _)| *k == key) {
            out.push((key, p.to_string()));
        }
    }
    out
}

/// The SPIFFE ID (or `oidc://` principal) a source names; `None` for "any caller" (no source) or after an
/// error. Grantwall's own kinds that share KAN's source types call it too.
pub fn principal(
    source: Option<&Source>,
    policy_ns: &str,
    ctx: &Context<'_>,
    path: &FieldPath,
    loc: &Loc,
    diags: &mut Diags,
) -> Option<String> {
    let s = source?;
    if s.oidc.is_some() && s.kind.as_deref() != Some("OIDC") {
        diags.error(loc, path.field("oidc").as_str(), "must only be set when type is OIDC");
    }
    match s.kind.as_deref() {
        Some("SPIFFE") => {
            if s.service_account.is_some() {
                diags.error(
                    loc,
                    path.field("serviceAccount").as_str(),
                    "must not be set when type is SPIFFE",
                );
            }
            match &s.spiffe {
                Some(id) => Some(id.clone()),
                None => {
                    diags.error(
                        loc,
                        path.field("spiffe").as_str(),
                        "Required value: type SPIFFE needs a spiffe ID",
                    );
                    None
                }
            }
        }
        Some("ServiceAccount") => {
            if s.spiffe.is_some() {
                diags.error(
                    loc,
                    path.field("spiffe").as_str(),
                    "must not be set when type is ServiceAccount",
                );
            }
            let Some(sa) = &s.service_account else {
                diags.error(
                    loc,
                    path.field("serviceAccount").as_str(),
                    "Required value: type ServiceAccount needs serviceAccount",
                );
                return None;
            };
            let sa_path = path.field("serviceAccount");
            let ns = sa.namespace.as_deref().unwrap_or(policy_ns);
            let mut ok = true;
            if !is_dns_subdomain(&sa.name) {
                diags.error(loc, sa_path.field("name").as_str(), format!("Invalid value: {:?}: a ServiceAccount name must be a lower-case DNS subdomain", sa.name));
                ok = false;
            }
            if !is_dns_label(ns) {
                diags.error(
                    loc,
                    sa_path.field("namespace").as_str(),
                    format!("Invalid value: {ns:?}: a namespace must be a lower-case DNS label"),
                );
                ok = false;
            }
            ok.then(|| format!("spiffe://{}/ns/{ns}/sa/{}", ctx.trust_domain, sa.name))
        }
        Some("OIDC") => {
            for (field, set) in [("spiffe", s.spiffe.is_some()), ("serviceAccount", s.service_account.is_some())] {
                if set {
                    diags.error(loc, path.field(field).as_str(), "must not be set when type is OIDC");
                }
            }
            match &s.oidc {
                Some(o) => Some(grantwall_core::jwt::oidc_principal(&o.issuer, &o.subject)),
                None => {
                    diags.error(loc, path.field("oidc").as_str(), "Required value: type OIDC needs oidc{issuer, subject}");
                    None
                }
            }
        }
        Some(other) => {
            diags.error(
                loc,
                path.field("type").as_str(),
                format!("unknown source type {other:?}"),
            );
            None
        }
        None => {
            diags.error(loc, path.field("type").as_str(), "Required value: set ServiceAccount or SPIFFE (omit source entirely to match any caller)");
            None
        }
    }
}

/// RFC 1123 label: what Kubernetes accepts as a namespace name.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn authorization_v1(
    a: &AuthorizationV1,
    path: &FieldPath,
    loc: &Loc,
    diags: &mut Diags,
) -> (Option<HttpMatch>, Option<McpMatch>, Option<Expr>) {
    let (http, mcp) = inline_v1(a, path, loc, diags);
    if a.kind != "CEL" {
        return (http, mcp, None);
    }
    let Some(rule) = &a.cel else {
        // The CRD rule `self.type == 'CEL' ? has(self.cel) : true` has already reported this.
        return (http, mcp, None);
    };
    let cel = compile_cel(&rule.expression, &path.field("cel").field("expression"), loc, diags);
    // KAN evaluates a CEL rule on tools/call only; an explicit `mcp` block (a Grantwall extension) says
    // which MCP requests the expression is evaluated on instead.
    (http, Some(mcp.unwrap_or_else(cel_scope)), cel)
}

/// What a KAN CEL rule applies to: `tools/call` (any tool; the expression decides), as KAN's reference
/// implementation does (RBAC permission `tools/call` plus the CEL condition).
fn cel_scope() -> McpMatch {
    McpMatch {
        base_protocol: false,
        methods: Some(vec![MethodGrant {
            method: McpMethod::ToolsCall,
            names: None,
        }]),
    }
}

fn compile_cel(source: &str, path: &FieldPath, loc: &Loc, diags: &mut Diags) -> Option<Expr> {
    match crate::cel::compile(source) {
        Ok(expr) => Some(expr),
        Err(e) => {
            diags.error(loc, path.as_str(), e.to_string());
            None
        }
    }
}

/// The Inline conditions of a v1alpha1 authorization (also enforced alongside a CEL expression).
fn inline_v1(
    a: &AuthorizationV1,
    path: &FieldPath,
    loc: &Loc,
    diags: &mut Diags,
) -> (Option<HttpMatch>, Option<McpMatch>) {
    let mut http = HttpMatch {
        methods: a.methods.clone(),
        hosts: a.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
        ports: a.ports.clone(),
        ..HttpMatch::default()
    };
    for (i, p) in a.paths.iter().enumerate() {
        let vp = path.field("paths").index(i).field("value");
        let value = if p.value.is_empty() {
            "/".to_string()
        } else {
            p.value.clone()
        };
        let kind = match p.kind.as_str() {
            "Exact" => MatchKind::Exact,
            "RegularExpression" => MatchKind::Regex,
            _ => MatchKind::Prefix,
        };
        if kind == MatchKind::Regex {
            check_regex(&value, &vp, loc, diags);
        } else if !value.starts_with('/') {
            diags.error(
                loc,
                vp.as_str(),
                format!("Invalid value: {value:?}: a path must start with '/'"),
            );
        }
        http.paths.push(PathMatch { kind, value });
    }
    for (i, h) in a.headers.iter().enumerate() {
        let kind = if h.kind == "RegularExpression" {
            MatchKind::Regex
        } else {
            MatchKind::Exact
        };
        if kind == MatchKind::Regex {
            check_regex(
                &h.value,
                &path.field("headers").index(i).field("value"),
                loc,
                diags,
            );
        }
        http.headers.push(HeaderMatch {
            name: h.name.to_ascii_lowercase(),
            kind,
            value: h.value.clone(),
        });
    }
    let http_empty = http == HttpMatch::default();
    let mcp = a
        .mcp
        .as_ref()
        .map(|m| mcp_v1(m, &path.field("mcp"), loc, diags));
    ((!http_empty).then_some(http), mcp)
}

/// The filter matches whole values with `regex-lite`, compiling `^(?:PATTERN)$`; a pattern it cannot load
/// would make the filter refuse the whole config, so check the very same string here.
fn check_regex(value: &str, path: &FieldPath, loc: &Loc, diags: &mut Diags) {
    if let Err(e) = regex_lite::Regex::new(&format!("^(?:{value})$")) {
        // regex-lite's message spans lines (pattern, caret, reason); the last line is the reason.
        let text = e.to_string();
        let reason = text.lines().last().unwrap_or_default().trim();
        diags.error(
            loc,
            path.as_str(),
            format!("Invalid value: {value:?}: not a regular expression the filter (regex-lite) accepts: {reason}"),
        );
    }
}

fn mcp_v1(m: &McpAuthorizationV1, path: &FieldPath, loc: &Loc, diags: &mut Diags) -> McpMatch {
    let base_protocol = m.mcp_base_protocol_methods_option == "MATCH_BASE_PROTOCOL_METHODS";
    let methods = m.methods.as_ref().map(|list| {
        let mut grants: BTreeMap<McpMethod, Option<BTreeSet<String>>> = BTreeMap::new();
        for (i, entry) in list.iter().enumerate() {
            let names: Option<BTreeSet<String>> =
                (!entry.params.is_empty()).then(|| entry.params.iter().cloned().collect());
            let expanded: Vec<McpMethod> = match entry.name.as_str() {
                "tools" => vec![McpMethod::ToolsList, McpMethod::ToolsCall],
                "prompts" => vec![McpMethod::PromptsList, McpMethod::PromptsGet],
                "resources" => vec![
                    McpMethod::ResourcesList,
                    McpMethod::ResourcesTemplatesList,
                    McpMethod::ResourcesRead,
                    McpMethod::ResourcesSubscribe,
                    McpMethod::ResourcesUnsubscribe,
                ],
                one => match McpMethod::from_name(one) {
                    Some(m) => vec![m],
                    None => {
                        diags.error(
                            loc,
                            path.field("methods").index(i).field("name").as_str(),
                            format!("unknown MCP method {one:?}"),
                        );
                        vec![]
                    }
                },
            };
            for method in expanded {
                merge_grant(&mut grants, method, names.clone());
            }
        }
        grants
            .into_iter()
            .map(|(method, names)| MethodGrant {
                method,
                names: names.map(|n| n.into_iter().collect()),
            })
            .collect()
    });
    // KAN's reference implementation grants only the base protocol for MATCH_BASE_PROTOCOL_METHODS without
    // `methods` (its e2e "allow-base-mcp" rules rely on it: the tools stay denied). Without MATCH, omitted
    // `methods` keeps the CRD's meaning: every functional method.
    let methods = match methods {
        None if base_protocol => Some(Vec::new()),
        other => other,
    };
    McpMatch {
        base_protocol,
        methods,
    }
}

/// Two grants of one method: "any name" wins, otherwise the names add up.
fn merge_grant(
    grants: &mut BTreeMap<McpMethod, Option<BTreeSet<String>>>,
    method: McpMethod,
    names: Option<BTreeSet<String>>,
) {
    match grants.get_mut(&method) {
        None => {
            grants.insert(method, names);
        }
        Some(existing) => match (existing.as_mut(), names) {
            (Some(have), Some(add)) => have.extend(add),
            _ => *existing = None,
        },
    }
}

/// v0alpha0 `authorization`: its MCP conditions and, for `type: CEL`, the compiled expression.
fn authorization_v0(
    a: &AuthorizationV0,
    path: &FieldPath,
    loc: &Loc,
    diags: &mut Diags,
) -> (Option<McpMatch>, Option<Expr>) {
    if a.kind != "CEL" {
        return (mcp_v0(a, path, loc, diags), None);
    }
    let Some(rule) = &a.cel else {
        return (None, None);
    };
    if rule.message.is_some() {
        diags.warn(format!(
            "{loc}: {}: ignored: denials carry KAN's standard message (\"Access to this tool is forbidden.\") and the audit record says which rule failed",
            path.field("cel").field("message")
        ));
    }
    let cel = compile_cel(&rule.expression, &path.field("cel").field("expression"), loc, diags);
    (Some(cel_scope()), cel)
}

/// v0alpha0 predates the base-protocol option; its implementation let every session initialise and list, so
/// an InlineTools rule grants the base protocol plus `tools/call` of exactly the listed tools.
fn mcp_v0(a: &AuthorizationV0, path: &FieldPath, loc: &Loc, diags: &mut Diags) -> Option<McpMatch> {
    match a.kind.as_str() {
        "InlineTools" => {
            let tools: BTreeSet<String> = a.tools.iter().flatten().cloned().collect();
            let methods = if tools.is_empty() {
                vec![]
            } else {
                vec![MethodGrant {
                    method: McpMethod::ToolsCall,
                    names: Some(tools.into_iter().collect()),
                }]
            };
            Some(McpMatch {
                base_protocol: true,
                methods: Some(methods),
            })
        }
        // No MCP condition: the rule grants its source everything the external service allows.
        "ExternalAuth" => None,
        other => {
            diags.error(
                loc,
                path.field("type").as_str(),
                format!("unknown authorization type {other:?}"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert!(is_dns_label("quickstart-ns"));
        assert!(!is_dns_label("Bad"));
        assert!(!is_dns_label("-x"));
        assert!(!is_dns_label(""));
        assert!(is_dns_subdomain("a.b-c"));
        assert!(!is_dns_subdomain("a/b"));
    }

    #[test]
    fn grants_merge() {
        let mut g = BTreeMap::new();
        let set = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>());
        merge_grant(&mut g, McpMethod::ToolsCall, set(&["b"]));
        merge_grant(&mut g, McpMethod::ToolsCall, set(&["a"]));
        assert_eq!(g.get(&McpMethod::ToolsCall), Some(&set(&["a", "b"])));
        merge_grant(&mut g, McpMethod::ToolsCall, None);
        merge_grant(&mut g, McpMethod::ToolsCall, set(&["c"]));
        assert_eq!(g.get(&McpMethod::ToolsCall), Some(&None));
    }
}
