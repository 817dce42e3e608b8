//! XBackends → `config.backends` (paths) and `config.routes` (how the filter finds a request's backend:
//! by Envoy cluster first, then by `:authority`), plus the path aliases HTTPRoutes create by rewriting a
//! public prefix onto the backend's MCP path.

use crate::diag::{Diags, FieldPath, Loc};
use crate::input::Object;
use crate::kan_types::{self, McpBackend, XBackendSpec};
use crate::policy::{is_dns_label, GATEWAY_GROUP, GROUP};
use grantwall_core::config::{Backend, Routes};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Annotation on an XBackend naming extra Envoy clusters (comma-separated) that route to it, for plain Envoy
/// setups whose cluster names do not follow Istio's `outbound|port||host` convention.
pub const CLUSTERS_ANNOTATION: &str = "grantwall.io/envoy-clusters";

#[derive(Debug, Clone)]
pub struct BackendIr {
    pub location: Loc,
    pub ns_name: String,
    pub mcp: McpBackend,
    pub extra_clusters: Vec<String>,
}

/// A public path prefix an HTTPRoute rewrites onto `replacement` before sending to `backend` (`ns/name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathAlias {
    pub backend: String,
    pub prefix: String,
    pub replacement: String,
}

/// Reads a validated XBackend, with the checks the CRD leaves out.
pub fn read_backend(obj: &Object, diags: &mut Diags) -> Option<BackendIr> {
    let loc = obj.location();
    let before = diags.errors.len();
    let spec: XBackendSpec = match kan_types::spec(&obj.value) {
        Ok(s) => s,
        Err(e) => {
            diags.error(loc, "spec", e);
            return None;
        }
    };
    let mut mcp = spec.mcp;
    if !mcp.path.starts_with('/') {
        diags.error(
            &loc,
            "spec.mcp.path",
            format!("Invalid value: {:?}: must start with '/'", mcp.path),
        );
    }
    if let Some(svc) = &mcp.service_name {
        if !is_dns_label(svc) {
            diags.error(
                &loc,
                "spec.mcp.serviceName",
                format!("Invalid value: {svc:?}: a Service name must be a lower-case DNS label"),
            );
        }
    }
    if let Some(host) = &mcp.hostname {
        let lower = host.to_ascii_lowercase();
        let valid = lower.len() <= 253 && lower.split('.').all(is_dns_label);
        if !valid {
            diags.error(
                &loc,
                "spec.mcp.hostname",
                format!("Invalid value: {host:?}: must be a DNS name without port or scheme"),
            );
        }
        mcp.hostname = Some(lower);
    }
    let annotation_path = format!("metadata.annotations[{CLUSTERS_ANNOTATION:?}]");
    let extra_clusters = match obj
        .value
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(CLUSTERS_ANNOTATION))
    {
        None => vec![],
        Some(Value::String(s)) => {
            let names: Vec<String> = s
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect();
            if let Some(bad) = names.iter().find(|c| c.chars().any(char::is_whitespace)) {
                diags.error(
                    &loc,
                    annotation_path.as_str(),
                    format!("Invalid value: cluster name {bad:?} contains whitespace"),
                );
            }
            names
        }
        Some(other) => {
            diags.error(
                &loc,
                annotation_path.as_str(),
                format!("must be a string, got {other}"),
            );
            vec![]
        }
    };
    if diags.errors.len() > before {
        return None;
    }
    Some(BackendIr {
        location: loc,
        ns_name: obj.ns_name(),
        mcp,
        extra_clusters,
    })
}

/// The path aliases of one HTTPRoute. HTTPRoutes are not validated as a whole (they are not our CRD); only the
/// fields read here must have the right shape, and a wrong one is an error naming it.
pub fn read_httproute(obj: &Object, diags: &mut Diags) -> Vec<PathAlias> {
    let mut out = Vec::new();
    let loc = obj.location();
    let mut err = |path: &FieldPath, msg: &str| diags.error(&loc, path.as_str(), msg.to_string());
    let spec = FieldPath::root().field("spec");
    let rules_path = spec.field("rules");
    let Some(rules) = array_at(
        obj.value.get("spec").and_then(|s| s.get("rules")),
        &rules_path,
        &mut err,
    ) else {
        return out;
    };
    for (ri, rule) in rules.iter().enumerate() {
        let rp = rules_path.index(ri);
        let backends = array_at(rule.get("backendRefs"), &rp.field("backendRefs"), &mut err)
            .unwrap_or_default();
        let mut targets = Vec::new();
        for (bi, b) in backends.iter().enumerate() {
            let group = b.get("group").and_then(Value::as_str).unwrap_or("");
            let kind = b.get("kind").and_then(Value::as_str).unwrap_or("Service");
            if group != GROUP || kind != "XBackend" {
                continue;
            }
            let Some(name) = b.get("name").and_then(Value::as_str) else {
                err(
                    &rp.field("backendRefs").index(bi).field("name"),
                    "Required value",
                );
                continue;
            };
            let ns = b
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or(&obj.namespace);
            targets.push(format!("{ns}/{name}"));
        }
        if targets.is_empty() {
            continue;
        }
        let replacements = prefix_rewrites(rule, &rp, &mut err);
        if replacements.is_empty() {
            continue;
        }
        // Gateway API: a rule without matches matches every path (PathPrefix "/").
        let matches =
            array_at(rule.get("matches"), &rp.field("matches"), &mut err).unwrap_or_default();
        let default_match = [Value::Null];
        let matches = if matches.is_empty() {
            &default_match[..]
        } else {
            matches
        };
        for m in matches {
            let path = m.get("path");
            let kind = path
                .and_then(|p| p.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("PathPrefix");
            let value = path
                .and_then(|p| p.get("value"))
                .and_then(Value::as_str)
                .unwrap_or("/");
            if kind != "PathPrefix" || !value.starts_with('/') {
                continue;
            }
            for backend in &targets {
                for replacement in &replacements {
                    out.push(PathAlias {
                        backend: backend.clone(),
                        prefix: value.to_string(),
                        replacement: replacement.clone(),
                    });
                }
            }
        }
    }
    out
}

/// `replacePrefixMatch` values of the rule's URLRewrite filters.
fn prefix_rewrites(
    rule: &Value,
    rp: &FieldPath,
    err: &mut impl FnMut(&FieldPath, &str),
) -> Vec<String> {
    let filters = array_at(rule.get("filters"), &rp.field("filters"), err).unwrap_or_default();
    filters
        .iter()
        .filter(|f| f.get("type").and_then(Value::as_str) == Some("URLRewrite"))
        .filter_map(|f| f.pointer("/urlRewrite/path"))
        .filter(|p| p.get("type").and_then(Value::as_str) == Some("ReplacePrefixMatch"))
        .filter_map(|p| p.get("replacePrefixMatch").and_then(Value::as_str))
        .map(str::to_string)
        .collect()
}

fn array_at<'a>(
    v: Option<&'a Value>,
    path: &FieldPath,
    err: &mut impl FnMut(&FieldPath, &str),
) -> Option<&'a [Value]> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(a.as_slice()),
        Some(_) => {
            err(path, "must be a sequence");
            None
        }
    }
}

/// Whether an object is a Gateway API kind we read.
pub fn is_gateway_api(obj: &Object, kind: &str) -> bool {
    obj.kind == kind && obj.group() == GATEWAY_GROUP
}

pub struct RouteOptions<'a> {
    pub cluster_domain: &'a str,
}

/// Service names used by XBackends in more than one namespace. The bare `<svc>` authority would be
/// ambiguous for them (a client in either namespace may use it), so it is left out, with a warning, and
/// those backends are reachable by `<svc>.<ns>` and longer forms (and by cluster) only.
fn ambiguous_short_names<'b>(backends: &'b [BackendIr], diags: &mut Diags) -> BTreeSet<&'b str> {
    let mut namespaces: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for b in backends {
        if let Some(svc) = &b.mcp.service_name {
            let ns = b.ns_name.split_once('/').map(|(n, _)| n).unwrap_or_default();
            namespaces.entry(svc.as_str()).or_default().insert(ns);
        }
    }
    let ambiguous: BTreeSet<&str> = namespaces.iter().filter(|(_, ns)| ns.len() > 1).map(|(svc, _)| *svc).collect();
    for svc in &ambiguous {
        let list: Vec<&str> = namespaces.get(svc).map(|n| n.iter().copied().collect()).unwrap_or_default();
        diags.warn(format!(
            "Service name {svc:?} is used by XBackends in namespaces {}: the bare authority {svc:?} is ambiguous and is not routed; use {svc}.<namespace> (or the Envoy cluster) to reach them",
            list.join(", ")
        ));
    }
    ambiguous
}

/// Builds `config.backends` (without policies) and `config.routes`. `backends` must be sorted by name: the
/// index is the position, and conflicts are reported on the later one.
pub fn build(
    backends: &[BackendIr],
    aliases: &[PathAlias],
    opts: &RouteOptions<'_>,
    diags: &mut Diags,
) -> (Vec<Backend>, Routes) {
    let mut routes = Routes::default();
    let mut claimed_by: BTreeMap<(bool, String), usize> = BTreeMap::new();
    let ambiguous_short = ambiguous_short_names(backends, diags);
    let mut out = Vec::new();
    for (index, b) in backends.iter().enumerate() {
        let idx = index as u32;
        let mut claim = |is_cluster: bool, key: String, field: &str, diags: &mut Diags| {
            match claimed_by.get(&(is_cluster, key.clone())) {
                Some(&other) if other != index => {
                    let (what, owner) = (
                        if is_cluster { "cluster" } else { "authority" },
                        backends.get(other),
                    );
                    let owner = owner
                        .map(|o| format!("{} ({})", o.ns_name, o.location))
                        .unwrap_or_default();
                    diags.error(&b.location, field, format!("{what} {key:?} is also claimed by XBackend {owner}: the filter could not tell which backend's policies apply"));
                }
                Some(_) => {}
                None => {
                    claimed_by.insert((is_cluster, key.clone()), index);
                    let map = if is_cluster {
                        &mut routes.clusters
                    } else {
                        &mut routes.authorities
                    };
                    map.insert(key, idx);
                }
            }
        };
        let port = b.mcp.port;
        if let Some(svc) = &b.mcp.service_name {
            let ns = b
                .ns_name
                .split_once('/')
                .map(|(n, _)| n)
                .unwrap_or_default();
            let fqdn = format!("{svc}.{ns}.svc.{}", opts.cluster_domain);
            let short = (!ambiguous_short.contains(svc.as_str())).then(|| svc.clone());
            for authority in short.into_iter().chain([format!("{svc}.{ns}"), format!("{svc}.{ns}.svc"), fqdn.clone()]) {
                claim(false, authority, "spec.mcp.serviceName", diags);
            }
            claim(
                true,
                format!("outbound|{port}||{fqdn}"),
                "spec.mcp.serviceName",
                diags,
            );
        }
        if let Some(host) = &b.mcp.hostname {
            claim(false, host.clone(), "spec.mcp.hostname", diags);
            claim(
                true,
                format!("outbound|{port}||{host}"),
                "spec.mcp.hostname",
                diags,
            );
        }
        let annotation_path = format!("metadata.annotations[{CLUSTERS_ANNOTATION:?}]");
        for c in &b.extra_clusters {
            claim(true, c.clone(), &annotation_path, diags);
        }
        let alias_paths: BTreeSet<&str> = aliases
            .iter()
            .filter(|a| {
                a.backend == b.ns_name && a.replacement == b.mcp.path && a.prefix != b.mcp.path
            })
            .map(|a| a.prefix.as_str())
            .collect();
        let mut paths = vec![b.mcp.path.clone()];
        paths.extend(alias_paths.into_iter().map(str::to_string));
        out.push(Backend {
            name: b.ns_name.clone(),
            paths,
            policies: vec![],
            tool_pins: Default::default(),
            elicitation_url_hosts: Vec::new(),
            external_auth: None,
            a2a: None,
        });
    }
    (out, routes)
}
