//! The whole pipeline: objects → validation → policies and backends → the filter's `Config`.
//! Everything that reaches the output is sorted by name or by a documented key, never by input order, so the
//! same objects always give the same bytes however the files and documents are arranged.

use crate::agent_identity;
use crate::crd_schema;
use crate::diag::Diags;
use crate::identity_crd::{self, ProviderIr};
use crate::limits_crd;
use crate::input::{self, Object, Source};
use crate::policy::{self, PolicyIr, TargetKey, GROUP};
use crate::routes::{self, BackendIr, PathAlias};
use grantwall_core::config::{
    self, Config, DenialStyle, ForwardedClientCert, IdentitySettings, Policy, Rule, Settings,
    Target, XfccTrust, CONFIG_VERSION, MAX_POLICIES_PER_TARGET,
};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone)]
pub struct Options {
    /// `namespace/name` of the Gateway whose gateway-level policies apply; `None`: infer.
    pub gateway: Option<String>,
    pub trust_domain: String,
    pub cluster_domain: String,
    pub default_namespace: String,
    pub denial: DenialStyle,
    pub max_body_bytes: u32,
    pub xfcc_trust: XfccTrust,
    pub xfcc_peers: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            gateway: None,
            trust_domain: "cluster.local".to_string(),
            cluster_domain: "cluster.local".to_string(),
            default_namespace: "default".to_string(),
            denial: DenialStyle::default(),
            max_body_bytes: config::DEFAULT_MAX_BODY_BYTES,
            xfcc_trust: XfccTrust::default(),
            xfcc_peers: vec![],
        }
    }
}

#[derive(Debug)]
pub struct Compiled {
    pub config: Config,
    pub warnings: Vec<String>,
    /// One line for `--check`.
    pub summary: String,
}

/// Compiles the sources; on any error returns every error (and the warnings) found.
pub fn compile(sources: &[Source], opts: &Options) -> Result<Compiled, Diags> {
    let mut diags = Diags::default();
    check_options(opts, &mut diags);
    let objects: Vec<Object> = sources
        .iter()
        .enumerate()
        .flat_map(|(i, s)| input::objects(s, i, &opts.default_namespace, &mut diags))
        .collect();
    let read = read_objects(objects, opts, &mut diags);
    let gateway = select_gateway(&read, opts, &mut diags);

    let mut backends = read.backends.clone();
    backends.sort_by(|a, b| a.ns_name.cmp(&b.ns_name));
    let (mut config_backends, routes) = routes::build(
        &backends,
        &read.aliases,
        &routes::RouteOptions {
            cluster_domain: &opts.cluster_domain,
        },
        &mut diags,
    );

    // Policies per target, oldest first; KAN accepts at most MAX_POLICIES_PER_TARGET of them.
    let mut per_target: BTreeMap<TargetKey, Vec<&PolicyIr>> = BTreeMap::new();
    for p in &read.policies {
        for (target, ref_path) in &p.targets {
            if let TargetKey::Backend(name) = target {
                if !read.backend_names.contains(name) {
                    let (ns, n) = name.split_once('/').unwrap_or(("", name));
                    diags.error(
                        &p.location,
                        ref_path.as_str(),
                        format!("XBackend {name} is not in the input: add the file that defines it (-f), or fix targetRefs name {n:?} (XBackends are looked up in the policy's namespace {ns:?})"),
                    );
                    continue;
                }
            }
            per_target.entry(target.clone()).or_default().push(p);
        }
    }
    let mut kept: BTreeMap<TargetKey, Vec<&PolicyIr>> = BTreeMap::new();
    for (target, mut list) in per_target {
        list.sort_by(|a, b| {
            (a.created.is_none(), a.created, &a.ns_name).cmp(&(
                b.created.is_none(),
                b.created,
                &b.ns_name,
            ))
        });
        if list.len() > MAX_POLICIES_PER_TARGET {
            let dropped: Vec<&str> = list[MAX_POLICIES_PER_TARGET..]
                .iter()
                .map(|p| p.ns_name.as_str())
                .collect();
            let applies = match &target {
                TargetKey::Gateway(g) => gateway.as_deref() == Some(g.as_str()),
                TargetKey::Backend(_) => true,
            };
            if applies {
                diags.warn(format!(
                    "{} has {} policies; KAN accepts at most {MAX_POLICIES_PER_TARGET} per target (oldest first by creationTimestamp, then name) and marks the rest not accepted: not enforcing {}",
                    describe(&target),
                    list.len(),
                    dropped.join(", ")
                ));
            }
            list.truncate(MAX_POLICIES_PER_TARGET);
        }
        kept.insert(target, list);
    }
    let applies = |t: &TargetKey| match t {
        TargetKey::Gateway(g) => gateway.as_deref() == Some(g.as_str()),
        TargetKey::Backend(_) => true,
    };
    let externals = crate::extauth::take_external(&mut kept, applies, describe, &mut diags);

    let gateway_policies: Vec<&PolicyIr> = gateway
        .as_ref()
        .and_then(|g| kept.get(&TargetKey::Gateway(g.clone())))
        .cloned()
        .unwrap_or_default();
    let backend_policies = |name: &str| {
        kept.get(&TargetKey::Backend(name.to_string()))
            .cloned()
            .unwrap_or_default()
    };

    // Intern every principal an emitted rule names.
    let mut principals: BTreeSet<String> = BTreeSet::new();
    let mut emitted: Vec<&PolicyIr> = gateway_policies.clone();
    for b in &config_backends {
        emitted.extend(backend_policies(&b.name));
    }
    for p in &emitted {
        principals.extend(p.rules.iter().filter_map(|r| r.principal.clone()));
    }
    let gateway_key = gateway.as_ref().map(|g| TargetKey::Gateway(g.clone()));
    let enforced_external = |key: &TargetKey| externals.get(key).and_then(|p| p.external.as_ref());
    for key in config_backends.iter().map(|b| TargetKey::Backend(b.name.clone())).chain(gateway_key.clone()) {
        if let Some(e) = enforced_external(&key) {
            principals.extend(e.rules.iter().filter_map(|r| r.principal.clone()));
        }
    }
    principals.extend(crate::a2a_crd::principals(&read.a2a_policies));
    // An OIDC source whose issuer no provider verifies can never match: say so.
    for p in principals.iter().filter(|p| p.starts_with("oidc://")) {
        let known = read.providers.iter().any(|ir| {
            ir.provider.kubernetes_trust_domain.is_none()
                && p.starts_with(&grantwall_core::jwt::oidc_principal(&ir.provider.issuer, ""))
        });
        if !known {
            diags.warn(format!("source {p}: no GrantwallIdentityProvider (tokenType OIDC) has this issuer, so no request can carry this identity"));
        }
    }
    let principals: Vec<String> = principals.into_iter().collect();
    let index: BTreeMap<&str, u32> = principals
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_str(), i as u32))
        .collect();
    let to_rules = |rules: &[policy::RuleIr]| -> Vec<Rule> {
        rules
            .iter()
            .map(|r| Rule {
                name: r.name.clone(),
                principals: r
                    .principal
                    .as_deref()
                    .and_then(|id| index.get(id))
                    .map(|i| vec![*i]),
                http: r.http.clone(),
                mcp: r.mcp.clone(),
                cel: r.cel.clone(),
            })
            .collect()
    };
    let to_policy = |p: &PolicyIr| Policy { name: p.ns_name.clone(), rules: to_rules(&p.rules) };
    let external_of = |key: &TargetKey| {
        enforced_external(key).map(|e| crate::extauth::finish(e, to_rules(&e.rules), &opts.cluster_domain))
    };
    apply_tool_pins(&read, &mut config_backends, &mut diags);
    for b in config_backends.iter_mut() {
        b.policies = backend_policies(&b.name)
            .into_iter()
            .map(to_policy)
            .collect();
        b.external_auth = external_of(&TargetKey::Backend(b.name.clone()));
    }
    crate::a2a_crd::apply(&read.a2a_agents, &read.a2a_policies, &mut config_backends, &index, &mut diags);
    let gateway_target = Target {
        name: gateway.clone().unwrap_or_default(),
        policies: gateway_policies.iter().map(|p| to_policy(p)).collect(),
        external_auth: gateway_key.as_ref().and_then(external_of),
    };

    let backend_names: Vec<String> = config_backends.iter().map(|b| b.name.clone()).collect();
    let a2a_agents: Vec<String> = read.a2a_agents.iter().map(|a| a.backend.ns_name.clone()).collect();
    let jwt = identity_crd::settings(&read.providers, gateway.as_deref(), &backend_names, &mut diags);
    let limits = limits_crd::build(&read.limits, gateway.as_deref(), &backend_names, &read.backend_names, &mut diags);
    let ephemeral = agent_identity::build(
        &read.agents,
        &agent_identity::Inputs {
            trust_domain: &opts.trust_domain,
            gateway_policies: &gateway_policies,
            backend_names: &backend_names,
            a2a_agents: &a2a_agents,
            backend_policies: &backend_policies,
            providers: &jwt.providers,
            policy_principals: &principals,
        },
        &mut diags,
    );
    let llm = crate::model_policy::build(&read.model_policies, &mut diags);

    if diags.has_errors() {
        diags.sort();
        return Err(diags);
    }
    let mut peers = opts.xfcc_peers.clone();
    peers.sort();
    peers.dedup();
    let config = Config {
        version: CONFIG_VERSION.to_string(),
        settings: Settings {
            denial: opts.denial,
            max_body_bytes: opts.max_body_bytes,
            identity: IdentitySettings {
                forwarded_client_cert: ForwardedClientCert {
                    trust: opts.xfcc_trust,
                    peers,
                },
                jwt,
                ephemeral,
            },
            audit_log: true,
        },
        principals,
        gateway: gateway_target,
        backends: config_backends,
        routes,
        limits,
        llm,
    };
    let summary = summary(&config, &read);
    Ok(Compiled {
        config,
        warnings: diags.warnings,
        summary,
    })
}

fn describe(t: &TargetKey) -> String {
    match t {
        TargetKey::Gateway(n) => format!("Gateway {n}"),
        TargetKey::Backend(n) => format!("XBackend {n}"),
    }
}

fn summary(c: &Config, read: &Read) -> String {
    let backend_policies: usize = c.backends.iter().map(|b| b.policies.len()).sum();
    let gateway = if c.gateway.name.is_empty() {
        "no gateway".to_string()
    } else {
        format!("gateway {}", c.gateway.name)
    };
    let externals = c.backends.iter().filter(|b| b.external_auth.is_some()).count()
        + usize::from(c.gateway.external_auth.is_some());
    let externals = if externals == 0 { String::new() } else { format!("; {externals} ExternalAuth") };
    format!(
        "ok: {}, {}; {gateway}: {}; backends: {}; {}; routes: {}, {}{externals}",
        plural(c.backends.len(), "XBackend", "XBackends"),
        plural(read.policies.len(), "XAccessPolicy", "XAccessPolicies"),
        plural(c.gateway.policies.len(), "policy", "policies"),
        plural(backend_policies, "policy", "policies"),
        plural(c.principals.len(), "principal", "principals"),
        plural(c.routes.clusters.len(), "cluster", "clusters"),
        plural(c.routes.authorities.len(), "authority", "authorities"),
    )
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn check_options(opts: &Options, diags: &mut Diags) {
    let dns = |s: &str| !s.is_empty() && s.split('.').all(policy::is_dns_label);
    // SPIFFE trust domain characters (the spec's, which the filter also accepts).
    let td = &opts.trust_domain;
    if td.is_empty()
        || !td
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-_".contains(&b))
    {
        let msg = format!("Invalid value: {td:?}: a SPIFFE trust domain is lower-case letters, digits, '.', '-', '_'");
        diags.error("--trust-domain", "", msg);
    }
    if !dns(&opts.cluster_domain) {
        diags.error(
            "--cluster-domain",
            "",
            format!(
                "Invalid value: {:?}: must be a lower-case DNS name",
                opts.cluster_domain
            ),
        );
    }
    if !policy::is_dns_label(&opts.default_namespace) {
        diags.error(
            "--namespace",
            "",
            format!(
                "Invalid value: {:?}: must be a lower-case DNS label",
                opts.default_namespace
            ),
        );
    }
    if opts.max_body_bytes == 0 {
        diags.error("--max-body-bytes", "", "must be greater than 0");
    }
    match (opts.xfcc_trust, opts.xfcc_peers.is_empty()) {
        (XfccTrust::FromPeers, true) => diags.error(
            "--trust-xfcc",
            "",
            "from-peers needs at least one --xfcc-peer SPIFFE_ID",
        ),
        (XfccTrust::Never | XfccTrust::Always, false) => diags.error(
            "--xfcc-peer",
            "",
            "only meaningful with --trust-xfcc from-peers",
        ),
        _ => {}
    }
    for p in &opts.xfcc_peers {
        if !is_spiffe_id(p) {
            diags.error(
                "--xfcc-peer",
                "",
                format!("Invalid value: {p:?}: must be a SPIFFE ID (spiffe://trust-domain/path)"),
            );
        }
    }
}

/// The pattern the KAN CRD uses for `source.spiffe`.
fn is_spiffe_id(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("spiffe://") else {
        return false;
    };
    let mut parts = rest.split('/');
    let domain_ok = parts.next().is_some_and(|d| {
        !d.is_empty()
            && d.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(&c))
    });
    domain_ok
        && parts.all(|seg| {
            !seg.is_empty()
                && seg
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
        })
}

/// What the input contributed, before target selection.
#[derive(Default)]
struct Read {
    backends: Vec<BackendIr>,
    /// Every XBackend `ns/name` in the input, valid or not: a policy on an invalid backend should not also
    /// get a "not in the input" error.
    backend_names: BTreeSet<String>,
    policies: Vec<PolicyIr>,
    aliases: Vec<PathAlias>,
    gateways: BTreeSet<String>,
    /// GrantwallToolPolicy pins: (backend ns/name, tool, sha256, where it was written).
    pins: Vec<(String, String, String, String, String)>,
    /// GrantwallToolPolicy elicitation URL hosts: (backend ns/name, host).
    url_hosts: Vec<(String, String)>,
    providers: Vec<ProviderIr>,
    /// GrantwallRateLimitPolicy objects.
    limits: Vec<limits_crd::LimitPolicyIr>,
    /// GrantwallAgentIdentity objects (schema-validated), compiled once the policies in force are known.
    agents: Vec<Object>,
    model_policies: Vec<crate::model_policy::ModelPolicyIr>,
    a2a_agents: Vec<crate::a2a_crd::AgentIr>,
    a2a_policies: Vec<crate::a2a_crd::A2aPolicyIr>,
}

fn read_objects(objects: Vec<Object>, opts: &Options, diags: &mut Diags) -> Read {
    let mut read = Read::default();
    let mut seen: BTreeMap<(String, String, String), String> = BTreeMap::new();
    let ctx = policy::Context {
        trust_domain: &opts.trust_domain,
    };
    for mut obj in objects {
        let ours = matches!(obj.kind.as_str(), "XBackend" | "XAccessPolicy")
            || (obj.kind == TOOL_POLICY_KIND && obj.group() == TOOL_POLICY_GROUP)
            || (obj.group() == identity_crd::GROUP
                && matches!(obj.kind.as_str(), identity_crd::KIND | identity_crd::POLICY_KIND | agent_identity::KIND))
            || (obj.group() == limits_crd::GROUP && obj.kind == limits_crd::KIND)
            || (obj.kind == crate::model_policy::KIND && obj.group() == crate::model_policy::GROUP)
            || crate::a2a_crd::is_ours(&obj);
        let gateway_api =
            routes::is_gateway_api(&obj, "Gateway") || routes::is_gateway_api(&obj, "HTTPRoute");
        if !ours && !gateway_api {
            if obj.group() == GROUP {
                diags.warn(format!(
                    "{}: kind {} is not one Grantwall reads (XBackend, XAccessPolicy): ignored",
                    obj.location(),
                    obj.kind
                ));
            }
            continue;
        }
        if obj.name.is_empty() {
            diags.error(obj.location(), "metadata.name", "Required value");
            continue;
        }
        // Names end up in SPIFFE IDs, authorities and audit records: hold them to Kubernetes' own rules.
        if !policy::is_dns_subdomain(&obj.name) {
            let msg = format!(
                "Invalid value: {:?}: must be a lower-case DNS subdomain",
                obj.name
            );
            diags.error(obj.location(), "metadata.name", msg);
            continue;
        }
        if !policy::is_dns_label(&obj.namespace) {
            let msg = format!(
                "Invalid value: {:?}: must be a lower-case DNS label",
                obj.namespace
            );
            diags.error(obj.location(), "metadata.namespace", msg);
            continue;
        }
        // The same object twice would make the output depend on which copy came first.
        let key = (obj.group().to_string(), obj.kind.clone(), obj.ns_name());
        if let Some(first) = seen.get(&key) {
            diags.error(
                obj.location(),
                "",
                format!("defined twice (first at {first})"),
            );
            continue;
        }
        seen.insert(key, obj.origin.to_string());
        if gateway_api {
            if obj.kind == "Gateway" {
                read.gateways.insert(obj.ns_name());
            } else {
                read.aliases.extend(routes::read_httproute(&obj, diags));
            }
            continue;
        }
        if obj.kind == "XBackend" {
            read.backend_names.insert(obj.ns_name());
        }
        let crd = match crd_schema::find(&obj.kind, &obj.api_version) {
            Ok(Some(crd)) => crd,
            Ok(None) => {
                let served = crd_schema::served_versions(&obj.kind)
                    .unwrap_or_default()
                    .join(", ");
                diags.error(
                    obj.location(),
                    "apiVersion",
                    format!(
                        "Unsupported value: {:?}: {} is served as {served}",
                        obj.api_version, obj.kind
                    ),
                );
                continue;
            }
            Err(e) => {
                diags.error(obj.location(), "", e);
                continue;
            }
        };
        let violations = crd_schema::validate_object(crd, &mut obj.value);
        if !violations.is_empty() {
            for v in violations {
                diags.error(obj.location(), v.path, v.message);
            }
            continue;
        }
        if obj.kind == TOOL_POLICY_KIND && obj.group() == TOOL_POLICY_GROUP {
            read_tool_pins(&obj, &mut read.pins, &mut read.url_hosts);
        } else if obj.kind == identity_crd::KIND {
            let file = obj.origin.file.clone();
            if let Some(p) = identity_crd::read(&obj, &file, &opts.trust_domain, diags) {
                read.providers.push(p);
            }
        } else if obj.kind == limits_crd::KIND {
            if let Some(p) = limits_crd::read(&obj, &ctx, diags) {
                read.limits.push(p);
            }
        } else if obj.kind == agent_identity::KIND {
            read.agents.push(obj);
        } else if obj.kind == crate::model_policy::KIND {
            if let Some(p) = crate::model_policy::read(&obj, &ctx, &opts.cluster_domain, diags) {
                read.model_policies.push(p);
            }
        } else if crate::a2a_crd::is_ours(&obj) && obj.kind == crate::a2a_crd::AGENT_KIND {
            if let Some(agent) = crate::a2a_crd::read_agent(&obj, diags) {
                read.backends.push(agent.backend.clone());
                read.a2a_agents.push(agent);
            }
        } else if crate::a2a_crd::is_ours(&obj) {
            if let Some(p) = crate::a2a_crd::read_policy(&obj, &ctx, diags) {
                read.a2a_policies.push(p);
            }
        } else if obj.kind == "XBackend" {
            if let Some(b) = routes::read_backend(&obj, diags) {
                read.backends.push(b);
            }
        } else if let Some(p) = policy::read(&obj, &ctx, diags) {
            read.policies.push(p);
        }
    }
    read
}

const TOOL_POLICY_KIND: &str = "GrantwallToolPolicy";
const TOOL_POLICY_GROUP: &str = "grantwall.io";

/// Pins of a (schema-validated) GrantwallToolPolicy, one per target backend and tool.
fn read_tool_pins(
    obj: &Object,
    out: &mut Vec<(String, String, String, String, String)>,
    url_hosts: &mut Vec<(String, String)>,
) {
    let spec = obj.value.get("spec");
    let refs = spec.and_then(|s| s.get("targetRefs")).and_then(|v| v.as_array()).cloned().unwrap_or_default();
    let pins = spec.and_then(|s| s.get("pins")).and_then(|v| v.as_array()).cloned().unwrap_or_default();
    for r in &refs {
        let Some(name) = r.get("name").and_then(|n| n.as_str()) else { continue };
        let backend = format!("{}/{name}", obj.namespace);
        let hosts = spec
            .and_then(|s| s.pointer("/elicitation/urlHosts"))
            .and_then(|v| v.as_array())
            .cloned()
            .unwrap_or_default();
        for h in hosts.iter().filter_map(|h| h.as_str()) {
            url_hosts.push((backend.clone(), h.to_string()));
        }
        for (i, p) in pins.iter().enumerate() {
            let (Some(tool), Some(sha)) = (p.get("tool").and_then(|v| v.as_str()), p.get("sha256").and_then(|v| v.as_str())) else {
                continue;
            };
            out.push((backend.clone(), tool.to_string(), sha.to_string(), obj.location().to_string(), format!("spec.pins[{i}]")));
        }
    }
}

/// Put pins on their backends; a pin for a backend not in the input, or two different pins for one tool, is
/// an error (either would silently leave a tool unguarded or make the outcome depend on input order).
fn apply_tool_pins(read: &Read, backends: &mut [config::Backend], diags: &mut Diags) {
    for (backend, host) in &read.url_hosts {
        if let Some(b) = backends.iter_mut().find(|b| &b.name == backend) {
            if !b.elicitation_url_hosts.contains(host) {
                b.elicitation_url_hosts.push(host.clone());
                b.elicitation_url_hosts.sort();
            }
        }
    }
    for (backend, tool, sha, at, path) in &read.pins {
        let Some(b) = backends.iter_mut().find(|b| &b.name == backend) else {
            if !read.backend_names.contains(backend) {
                diags.error(at.as_str(), path.as_str(), format!("XBackend {backend} is not in the input: add the file that defines it (-f)"));
            }
            continue;
        };
        match b.tool_pins.get(tool) {
            Some(existing) if existing != sha => {
                diags.error(at.as_str(), path.as_str(), format!("tool {tool:?} on {backend} is pinned twice with different hashes"));
            }
            _ => {
                b.tool_pins.insert(tool.clone(), sha.clone());
            }
        }
    }
}

/// `--gateway`, or the one Gateway the input names (defined, or targeted by a policy).
fn select_gateway(read: &Read, opts: &Options, diags: &mut Diags) -> Option<String> {
    let targeted: BTreeSet<String> = read
        .policies
        .iter()
        .flat_map(|p| &p.targets)
        .filter_map(|(t, _)| match t {
            TargetKey::Gateway(g) => Some(g.clone()),
            TargetKey::Backend(_) => None,
        })
        .chain(limits_crd::gateways(&read.limits).cloned())
        .collect();
    let known: BTreeSet<String> = targeted.union(&read.gateways).cloned().collect();
    if let Some(g) = &opts.gateway {
        let g = if g.contains('/') {
            g.clone()
        } else {
            format!("{}/{g}", opts.default_namespace)
        };
        let valid = g.split_once('/').is_some_and(|(ns, name)| {
            policy::is_dns_label(ns) && !name.is_empty() && !name.contains('/')
        });
        if !valid {
            diags.error(
                "--gateway",
                "",
                format!("Invalid value: {g:?}: expected NAMESPACE/NAME"),
            );
            return None;
        }
        if !known.contains(&g) {
            diags.warn(format!("--gateway {g}: no Gateway of that name is defined in the input or targeted by a policy"));
        }
        return Some(g);
    }
    match known.len() {
        0 => None,
        1 => known.into_iter().next(),
        _ => {
            let list: Vec<String> = known.into_iter().collect();
            diags.error("", "", format!("the input names several Gateways ({}): choose the one this filter runs in with --gateway NAMESPACE/NAME", list.join(", ")));
            None
        }
    }
}
