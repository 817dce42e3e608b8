//! KAN ExternalAuth → the filter's `ExternalAuth` config (docs/extauth.md).
//!
//! - v1alpha1 `action: ExternalAuth` + `spec.externalAuth`: the policy's rules select which requests are sent
//!   to the service (no rules: all); the policy grants nothing itself.
//! - v0alpha0 rule `authorization.type: ExternalAuth`: requests from the rule's source are sent to the
//!   service, and the rule grants that source whatever the service allows.
//! - At most one ExternalAuth per target (KAN core support): the oldest wins, newer ones are reported and
//!   not enforced. It runs besides the Allow policies and must allow too.
//!
//! `backendRef` (a Service) names the Envoy cluster the filter calls: Istio's
//! `outbound|<port>||<name>.<namespace>.svc.<cluster-domain>` unless the policy's annotation
//! `grantwall.io/extauth-cluster` names one. Grantwall's extensions are annotations on the policy too:
//! `grantwall.io/extauth-timeout` (default 200ms), `grantwall.io/extauth-failure-mode` (`deny`, the default,
//! or `allow`), `grantwall.io/extauth-cache-ttl` (default off).

use crate::diag::{Diags, FieldPath, Loc};
use crate::input::Object;
use crate::policy::{PolicyIr, RuleIr, TargetKey};
use grantwall_core::extauth::{ExtAuthProtocol, ExternalAuth};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

pub const CLUSTER_ANNOTATION: &str = "grantwall.io/extauth-cluster";
pub const TIMEOUT_ANNOTATION: &str = "grantwall.io/extauth-timeout";
pub const FAILURE_MODE_ANNOTATION: &str = "grantwall.io/extauth-failure-mode";
pub const CACHE_TTL_ANNOTATION: &str = "grantwall.io/extauth-cache-ttl";
const KNOWN: [&str; 4] = [CLUSTER_ANNOTATION, TIMEOUT_ANNOTATION, FAILURE_MODE_ANNOTATION, CACHE_TTL_ANNOTATION];

/// A policy's ExternalAuth before principals are interned and the cluster domain is known.
#[derive(Debug, Clone)]
pub struct ExternalIr {
    /// Which requests go to the service (no rules: all).
    pub rules: Vec<RuleIr>,
    /// Whether the policy is an Allow policy too (v0alpha0); a v1alpha1 ExternalAuth policy grants nothing.
    pub also_allow: bool,
    spec: ExternalAuth,
    /// `(namespace, name, port)` of the backendRef Service, for the default cluster name.
    service: (String, String, u16),
    cluster_override: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    protocol: String,
    backend_ref: BackendRef,
    #[serde(default)]
    http: Option<HttpSpec>,
    #[serde(default)]
    grpc: Option<GrpcSpec>,
    #[serde(default)]
    forward_body: Option<ForwardBody>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BackendRef {
    #[serde(default)]
    group: String,
    #[serde(default)]
    kind: Option<String>,
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    port: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HttpSpec {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    allowed_headers: Vec<String>,
    #[serde(default)]
    allowed_response_headers: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GrpcSpec {
    #[serde(default)]
    allowed_headers: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ForwardBody {
    #[serde(default)]
    max_size: Option<i64>,
}

/// Reads `externalAuth` (at `path`) of a validated policy; `rules` select the traffic sent to the service.
pub fn read(
    obj: &Object,
    value: &Value,
    path: &FieldPath,
    rules: Vec<RuleIr>,
    also_allow: bool,
    loc: &Loc,
    diags: &mut Diags,
) -> Option<ExternalIr> {
    let spec: Spec = match serde_json::from_value(value.clone()) {
        Ok(s) => s,
        Err(e) => {
            diags.error(loc, path.as_str(), format!("internal error reading validated externalAuth: {e}"));
            return None;
        }
    };
    let before = diags.errors.len();
    let b = &spec.backend_ref;
    if !b.group.is_empty() || b.kind.as_deref().is_some_and(|k| k != "Service") {
        diags.error(loc, path.field("backendRef").as_str(), format!("unsupported backendRef {} in group {:?}: only a core Service (the Envoy cluster is derived from it, or named by the annotation {CLUSTER_ANNOTATION})", b.kind.as_deref().unwrap_or("Service"), b.group));
    }
    let port = b.port.unwrap_or(0);
    let namespace = b.namespace.clone().unwrap_or_else(|| obj.namespace.clone());
    let protocol = match spec.protocol.as_str() {
        "HTTP" => ExtAuthProtocol::Http,
        "GRPC" => ExtAuthProtocol::Grpc,
        other => {
            diags.error(loc, path.field("protocol").as_str(), format!("unknown protocol {other:?}: HTTP or GRPC"));
            return None;
        }
    };
    let http = spec.http.unwrap_or_default();
    let allowed_source = match protocol {
        ExtAuthProtocol::Http => http.allowed_headers.clone(),
        ExtAuthProtocol::Grpc => spec.grpc.as_ref().map(|g| g.allowed_headers.clone()).unwrap_or_default(),
    };
    let allowed = allowed_source.iter().map(|h| h.to_ascii_lowercase()).collect();
    let forward_body_max_bytes = match spec.forward_body.and_then(|f| f.max_size) {
        None | Some(0) => None,
        Some(n) if n < 0 => {
            diags.error(loc, path.field("forwardBody").field("maxSize").as_str(), format!("Invalid value: {n}: must not be negative"));
            None
        }
        Some(n) => Some(u32::try_from(n).unwrap_or(u32::MAX)),
    };
    let annotations = obj.value.pointer("/metadata/annotations").and_then(Value::as_object);
    let annotation = |key: &str| annotations.and_then(|a| a.get(key)).and_then(Value::as_str);
    let apath = |key: &str| format!("metadata.annotations[{key:?}]");
    if let Some(a) = annotations {
        for key in a.keys().filter(|k| k.starts_with("grantwall.io/extauth-") && !KNOWN.contains(&k.as_str())) {
            diags.error(loc, apath(key), format!("unknown annotation; known: {}", KNOWN.join(", ")));
        }
    }
    let duration = |key: &str, default: u32, diags: &mut Diags| match annotation(key) {
        None => default,
        Some(text) => parse_duration_ms(text).unwrap_or_else(|| {
            diags.error(loc, apath(key), format!("Invalid value: {text:?}: a duration such as 250ms, 2s or 1m"));
            default
        }),
    };
    let timeout_ms = duration(TIMEOUT_ANNOTATION, grantwall_core::extauth::DEFAULT_TIMEOUT_MS, diags);
    if timeout_ms == 0 {
        diags.error(loc, apath(TIMEOUT_ANNOTATION), "must be longer than 0");
    }
    let cache_ttl_ms = duration(CACHE_TTL_ANNOTATION, 0, diags);
    let fail_open = match annotation(FAILURE_MODE_ANNOTATION) {
        None | Some("deny") => false,
        Some("allow") => true,
        Some(other) => {
            diags.error(loc, apath(FAILURE_MODE_ANNOTATION), format!("Invalid value: {other:?}: deny (fail closed, the default) or allow"));
            false
        }
    };
    let cluster = annotation(CLUSTER_ANNOTATION).map(str::to_owned);
    if cluster.is_none() && port == 0 {
        diags.error(loc, path.field("backendRef").field("port").as_str(), "Required value: the Envoy cluster name needs the port");
    }
    let spec = ExternalAuth {
        policy: obj.ns_name(),
        rules: Vec::new(),
        protocol,
        cluster: cluster.clone().unwrap_or_default(),
        authority: String::new(),
        path_prefix: http.path.unwrap_or_default(),
        allowed_headers: allowed,
        allowed_response_headers: http.allowed_response_headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
        forward_body_max_bytes,
        timeout_ms,
        fail_open,
        cache_ttl_ms,
    };
    let mut probe = spec.clone();
    probe.cluster = "probe".into();
    if let Err((field, why)) = grantwall_core::extauth::validate(&probe, "spec") {
        diags.error(loc, path.as_str(), format!("{field}: {why}"));
    }
    if diags.errors.len() > before {
        return None;
    }
    Some(ExternalIr {
        rules,
        also_allow,
        spec,
        service: (namespace, b.name.clone(), port),
        cluster_override: cluster.is_some(),
    })
}

/// `250ms`, `2s`, `1m`: whole numbers only.
fn parse_duration_ms(text: &str) -> Option<u32> {
    let t = text.trim();
    let (digits, factor) = if let Some(d) = t.strip_suffix("ms") {
        (d, 1)
    } else if let Some(d) = t.strip_suffix('s') {
        (d, 1000)
    } else if let Some(d) = t.strip_suffix('m') {
        (d, 60_000)
    } else {
        return None;
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u32>().ok()?.checked_mul(factor)
}

/// Per target: removes the policies that only configure an ExternalAuth from the Allow lists and returns
/// the ExternalAuth that applies (the oldest); newer ones are reported and not enforced.
pub fn take_external<'p>(
    kept: &mut BTreeMap<TargetKey, Vec<&'p PolicyIr>>,
    applies: impl Fn(&TargetKey) -> bool,
    describe: impl Fn(&TargetKey) -> String,
    diags: &mut Diags,
) -> BTreeMap<TargetKey, &'p PolicyIr> {
    let mut out = BTreeMap::new();
    for (target, list) in kept.iter_mut() {
        let mut with_external = list.iter().filter(|p| p.external.is_some());
        if let Some(first) = with_external.next() {
            let newer: Vec<&PolicyIr> = with_external.copied().collect();
            if applies(target) {
                for p in newer.iter().filter(|p| p.external.as_ref().is_some_and(|e| e.also_allow)) {
                    // Its delegating rule would grant the source everything without the check: refuse.
                    diags.error(&p.location, "spec.rules", format!("{} already has ExternalAuth {} (older); KAN supports one per target, and this v0alpha0 ExternalAuth rule cannot be enforced: remove it or the older policy", describe(target), first.ns_name));
                }
                let names: Vec<&str> = newer.iter().filter(|p| !p.external.as_ref().is_some_and(|e| e.also_allow)).map(|p| p.ns_name.as_str()).collect();
                if !names.is_empty() {
                    diags.warn(format!(
                        "{} has more than one ExternalAuth; KAN supports one per target (oldest first by creationTimestamp, then name) and marks the rest not accepted: {} is enforced, not enforcing {}",
                        describe(target),
                        first.ns_name,
                        names.join(", ")
                    ));
                }
            }
            out.insert(target.clone(), *first);
        }
        // A v1alpha1 ExternalAuth policy grants nothing: it is not one of the target's Allow policies.
        list.retain(|p| match &p.external {
            None => true,
            Some(e) => e.also_allow,
        });
    }
    out
}

/// The filter's config for an enforced ExternalAuth, its selector rules already compiled.
pub fn finish(ir: &ExternalIr, rules: Vec<grantwall_core::config::Rule>, cluster_domain: &str) -> ExternalAuth {
    let (ns, name, port) = &ir.service;
    let host = format!("{name}.{ns}.svc.{cluster_domain}");
    let mut out = ir.spec.clone();
    if !ir.cluster_override {
        out.cluster = format!("outbound|{port}||{host}");
    }
    out.authority = if *port == 0 { host } else { format!("{host}:{port}") };
    out.rules = rules;
    out
}
