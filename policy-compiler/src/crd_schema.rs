//! A generic validator for a CRD's `openAPIV3Schema`, doing what the Kubernetes API server does on create:
//! prune non-nullable nulls, apply `default`s, then check type, required, enum, pattern, lengths, item counts,
//! bounds, `x-kubernetes-list-type` and the `x-kubernetes-validations` rules (hand-written in `kan_rules`).
//!
//! One deliberate difference: the API server silently drops unknown fields (structural pruning); we refuse
//! them, because a misspelt field in an access policy would otherwise widen access without anyone noticing.

use crate::diag::FieldPath;
use crate::kan_rules;
use crate::yaml;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::OnceLock;

const XBACKEND_CRD: &str = include_str!("../crds/kan/agentic.networking.x-k8s.io_xbackends.yaml");
const XACCESSPOLICY_CRD: &str =
    include_str!("../crds/kan/agentic.networking.x-k8s.io_xaccesspolicies.yaml");
/// Grantwall's own extension (shipped for `kubectl apply` under crds/).
const TOOLPOLICY_CRD: &str = include_str!("../../crds/grantwall.io_grantwalltoolpolicies.yaml");
/// Grantwall's own kinds, in KAN's style.
const IDENTITY_PROVIDER_CRD: &str =
    include_str!("../../crds/grantwall.io_grantwallidentityproviders.yaml");
const ACCESS_POLICY_CRD: &str =
    include_str!("../../crds/grantwall.io_grantwallaccesspolicies.yaml");
const RATE_LIMIT_POLICY_CRD: &str =
    include_str!("../../crds/grantwall.io_grantwallratelimitpolicies.yaml");
const AGENT_IDENTITY_CRD: &str =
    include_str!("../../crds/grantwall.io_grantwallagentidentities.yaml");
const MODEL_POLICY_CRD: &str = include_str!("../../crds/grantwall.io_grantwallmodelpolicies.yaml");
/// A2A agents and agent-to-agent grants (docs/a2a.md).
const A2A_AGENT_CRD: &str = include_str!("../../crds/grantwall.io_grantwalla2aagents.yaml");
const A2A_POLICY_CRD: &str = include_str!("../../crds/grantwall.io_grantwalla2apolicies.yaml");

/// One node of an OpenAPI v3 structural schema, with exactly the keywords our CRDs use: a keyword we do not
/// implement makes loading fail (`deny_unknown_fields`) rather than being ignored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Schema {
    #[serde(rename = "type")]
    pub ty: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub properties: BTreeMap<String, Schema>,
    #[serde(default)]
    pub items: Option<Box<Schema>>,
    #[serde(default)]
    pub required: Vec<String>,
    #[serde(default, rename = "enum")]
    pub enum_values: Option<Vec<Value>>,
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub min_length: Option<u64>,
    #[serde(default)]
    pub max_length: Option<u64>,
    #[serde(default)]
    pub min_items: Option<u64>,
    #[serde(default)]
    pub max_items: Option<u64>,
    #[serde(default)]
    pub minimum: Option<f64>,
    #[serde(default)]
    pub maximum: Option<f64>,
    #[serde(default)]
    pub default: Option<Value>,
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub nullable: bool,
    #[serde(default, rename = "x-kubernetes-list-type")]
    pub list_type: Option<String>,
    #[serde(default, rename = "x-kubernetes-list-map-keys")]
    pub list_map_keys: Vec<String>,
    #[serde(default, rename = "x-kubernetes-validations")]
    pub validations: Vec<ValidationRule>,
    #[serde(skip)]
    pattern_re: Option<regex::Regex>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationRule {
    pub rule: String,
    pub message: String,
}

/// One served version of one of our kinds.
#[derive(Debug)]
pub struct CrdVersion {
    pub group: String,
    pub kind: String,
    pub version: String,
    pub schema: Schema,
}

impl CrdVersion {
    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }
}

/// The embedded CRDs, parsed once.
pub fn embedded() -> Result<&'static [CrdVersion], String> {
    static CRDS: OnceLock<Result<Vec<CrdVersion>, String>> = OnceLock::new();
    CRDS.get_or_init(|| {
        let mut all = load_crd(XBACKEND_CRD)?;
        all.extend(load_crd(XACCESSPOLICY_CRD)?);
        all.extend(load_crd(TOOLPOLICY_CRD)?);
        all.extend(load_crd(IDENTITY_PROVIDER_CRD)?);
        all.extend(load_crd(ACCESS_POLICY_CRD)?);
        all.extend(load_crd(RATE_LIMIT_POLICY_CRD)?);
        all.extend(load_crd(AGENT_IDENTITY_CRD)?);
        all.extend(load_crd(MODEL_POLICY_CRD)?);
        all.extend(load_crd(A2A_AGENT_CRD)?);
        all.extend(load_crd(A2A_POLICY_CRD)?);
        Ok(all)
    })
    .as_deref()
    .map_err(|e| format!("internal error: embedded CRD: {e}"))
}

/// The schema for `kind` served as `api_version`, if any.
pub fn find(kind: &str, api_version: &str) -> Result<Option<&'static CrdVersion>, String> {
    Ok(embedded()?
        .iter()
        .find(|v| v.kind == kind && v.api_version() == api_version))
}

/// The apiVersions under which `kind` is served, if it is one of ours.
pub fn served_versions(kind: &str) -> Result<Vec<String>, String> {
    Ok(embedded()?
        .iter()
        .filter(|v| v.kind == kind)
        .map(CrdVersion::api_version)
        .collect())
}

fn load_crd(text: &str) -> Result<Vec<CrdVersion>, String> {
    let docs = yaml::parse_documents(text).map_err(|e| e.to_string())?;
    let crd = docs.into_iter().next().ok_or("empty CRD file")?.value;
    let spec = crd.get("spec").ok_or("CRD without spec")?;
    let group = spec
        .get("group")
        .and_then(Value::as_str)
        .ok_or("CRD without spec.group")?;
    let kind = spec
        .pointer("/names/kind")
        .and_then(Value::as_str)
        .ok_or("CRD without spec.names.kind")?;
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .ok_or("CRD without spec.versions")?;
    let mut out = Vec::new();
    for v in versions {
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .ok_or("CRD version without name")?;
        if v.get("served") != Some(&Value::Bool(true)) {
            continue;
        }
        let raw = v
            .pointer("/schema/openAPIV3Schema")
            .ok_or("CRD version without schema")?;
        let mut schema: Schema = serde_json::from_value(raw.clone())
            .map_err(|e| format!("{kind} {name}: unsupported schema: {e}"))?;
        schema.prepare(&format!("{kind} {name}"))?;
        out.push(CrdVersion {
            group: group.to_string(),
            kind: kind.to_string(),
            version: name.to_string(),
            schema,
        });
    }
    Ok(out)
}

impl Schema {
    /// Compiles patterns and checks that every CEL rule has a Rust implementation.
    fn prepare(&mut self, at: &str) -> Result<(), String> {
        if let Some(p) = &self.pattern {
            self.pattern_re =
                Some(regex::Regex::new(p).map_err(|e| format!("{at}: pattern {p:?}: {e}"))?);
        }
        for v in &self.validations {
            if kan_rules::lookup(&v.rule).is_none() {
                return Err(format!(
                    "{at}: no implementation for x-kubernetes-validations rule {:?}",
                    v.rule
                ));
            }
        }
        for (name, p) in self.properties.iter_mut() {
            p.prepare(&format!("{at}.{name}"))?;
        }
        if let Some(items) = self.items.as_mut() {
            items.prepare(&format!("{at}[]"))?;
        }
        Ok(())
    }

    /// Every (path, rule) pair of the schema, for documentation and tests.
    pub fn rules(&self, path: &str, out: &mut Vec<(String, ValidationRule)>) {
        for v in &self.validations {
            out.push((path.to_string(), v.clone()));
        }
        for (name, p) in &self.properties {
            p.rules(&format!("{path}.{name}"), out);
        }
        if let Some(items) = &self.items {
            items.rules(&format!("{path}[]"), out);
        }
    }
}

/// A schema violation at a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub path: String,
    pub message: String,
}

/// Defaults and validates a whole object of this version in place. `metadata` and `status` are only
/// required to be objects: the API server handles metadata itself, and status is written by controllers.
pub fn validate_object(crd: &CrdVersion, object: &mut Value) -> Vec<Violation> {
    let mut out = Vec::new();
    let schema = &crd.schema;
    let Some(map) = object.as_object_mut() else {
        out.push(Violation {
            path: String::new(),
            message: "must be a mapping".to_string(),
        });
        return out;
    };
    let label = format!("{} {}", crd.kind, crd.version);
    let root = FieldPath::root();
    for required in &schema.required {
        if matches!(map.get(required), None | Some(Value::Null)) {
            out.push(Violation {
                path: root.field(required).to_string(),
                message: "Required value".to_string(),
            });
        }
    }
    for (key, value) in map.iter_mut() {
        let path = root.field(key);
        match (key.as_str(), schema.properties.get(key)) {
            ("metadata" | "status", _) => {
                if !value.is_object() {
                    out.push(Violation {
                        path: path.to_string(),
                        message: "must be a mapping".to_string(),
                    });
                }
            }
            (_, Some(prop)) => {
                default_node(prop, value);
                validate_node(prop, value, &path, &label, &mut out);
            }
            (_, None) => out.push(unknown_field(&path, &label)),
        }
    }
    out
}

fn unknown_field(path: &FieldPath, label: &str) -> Violation {
    Violation {
        path: path.to_string(),
        message: format!(
            "unknown field (not in the {label} schema; the API server would drop it silently)"
        ),
    }
}

/// API server defaulting: a missing property, or a null one that is not nullable, takes the schema default;
/// other non-nullable nulls are removed. Applied top-down, so defaults inside defaults also apply.
fn default_node(schema: &Schema, value: &mut Value) {
    match value {
        Value::Object(map) => {
            default_properties(schema, map);
            for (key, child) in map.iter_mut() {
                if let Some(prop) = schema.properties.get(key) {
                    default_node(prop, child);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = &schema.items {
                for item in items.iter_mut() {
                    default_node(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

fn default_properties(schema: &Schema, map: &mut Map<String, Value>) {
    for (key, prop) in &schema.properties {
        let is_null = map.get(key).is_some_and(Value::is_null);
        if is_null && !prop.nullable {
            map.remove(key);
        }
        if !map.contains_key(key) {
            if let Some(d) = &prop.default {
                map.insert(key.clone(), d.clone());
            }
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(expected: &str, v: &Value) -> bool {
    match expected {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        _ => false,
    }
}

/// Shows a value the way Kubernetes error messages do: strings quoted, others as JSON.
fn show(v: &Value) -> String {
    v.to_string()
}

fn validate_node(
    schema: &Schema,
    value: &Value,
    path: &FieldPath,
    label: &str,
    out: &mut Vec<Violation>,
) {
    if value.is_null() && schema.nullable {
        return;
    }
    let mut here: Vec<String> = Vec::new();
    if let Some(ty) = &schema.ty {
        if !type_matches(ty, value) {
            here.push(format!("must be of type {ty}, got {}", type_name(value)));
            flush(path, here, out);
            return;
        }
    }
    if let Some(allowed) = &schema.enum_values {
        if !allowed.contains(value) {
            let list: Vec<String> = allowed.iter().map(show).collect();
            here.push(format!(
                "Unsupported value: {}: supported values: {}",
                show(value),
                list.join(", ")
            ));
        }
    }
    match value {
        Value::String(s) => validate_string(schema, s, &mut here),
        Value::Number(n) => validate_number(schema, n, &mut here),
        Value::Array(items) => validate_array(schema, items, &mut here),
        Value::Object(_) | Value::Null | Value::Bool(_) => {}
    }
    flush(path, here, out);
    match value {
        Value::Array(items) => {
            if let Some(item_schema) = &schema.items {
                for (i, item) in items.iter().enumerate() {
                    validate_node(item_schema, item, &path.index(i), label, out);
                }
            }
        }
        Value::Object(map) => {
            for required in &schema.required {
                if matches!(map.get(required), None | Some(Value::Null)) {
                    out.push(Violation {
                        path: path.field(required).to_string(),
                        message: "Required value".to_string(),
                    });
                }
            }
            for (key, child) in map {
                let child_path = path.field(key);
                match schema.properties.get(key) {
                    Some(prop) => validate_node(prop, child, &child_path, label, out),
                    None => out.push(unknown_field(&child_path, label)),
                }
            }
        }
        _ => {}
    }
    // CEL rules run on the node as defaulted; the Rust checks treat missing or mistyped fields as "rule does
    // not apply", leaving those to the structural errors above, so one mistake is not reported twice.
    for rule in &schema.validations {
        if let Some(check) = kan_rules::lookup(&rule.rule) {
            if !check(value) {
                out.push(Violation {
                    path: path.to_string(),
                    message: rule.message.clone(),
                });
            }
        }
    }
}

fn flush(path: &FieldPath, messages: Vec<String>, out: &mut Vec<Violation>) {
    out.extend(messages.into_iter().map(|message| Violation {
        path: path.to_string(),
        message,
    }));
}

fn validate_string(schema: &Schema, s: &str, msgs: &mut Vec<String>) {
    let chars = s.chars().count() as u64;
    if let Some(max) = schema.max_length {
        if chars > max {
            msgs.push(format!("longer than {max}"));
        }
    }
    if let Some(min) = schema.min_length {
        if chars < min {
            msgs.push(format!("shorter than {min}"));
        }
    }
    if let (Some(re), Some(p)) = (&schema.pattern_re, &schema.pattern) {
        if !re.is_match(s) {
            msgs.push(format!(
                "Invalid value: {}: should match '{p}'",
                show(&Value::String(s.to_string()))
            ));
        }
    }
}

fn validate_number(schema: &Schema, n: &serde_json::Number, msgs: &mut Vec<String>) {
    let Some(f) = n.as_f64() else { return };
    if let Some(max) = schema.maximum {
        if f > max {
            msgs.push(format!("greater than {max}"));
        }
    }
    if let Some(min) = schema.minimum {
        if f < min {
            msgs.push(format!("less than {min}"));
        }
    }
    let in_range = match schema.format.as_deref() {
        Some("int32") => n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
        Some("int64") => n.as_i64().is_some(),
        _ => true,
    };
    if !in_range {
        msgs.push(format!(
            "out of range for {}",
            schema.format.as_deref().unwrap_or_default()
        ));
    }
}

fn validate_array(schema: &Schema, items: &[Value], msgs: &mut Vec<String>) {
    let n = items.len() as u64;
    if let Some(max) = schema.max_items {
        if n > max {
            msgs.push(format!("has {n} items, more than {max}"));
        }
    }
    if let Some(min) = schema.min_items {
        if n < min {
            msgs.push(format!("has {n} items, fewer than {min}"));
        }
    }
    match schema.list_type.as_deref() {
        Some("set") => {
            for (i, item) in items.iter().enumerate() {
                if items[..i].contains(item) {
                    msgs.push(format!("Duplicate value: {}", show(item)));
                }
            }
        }
        Some("map") => {
            let key_of = |item: &Value| -> Value {
                let mut key = Map::new();
                for k in &schema.list_map_keys {
                    key.insert(k.clone(), item.get(k).cloned().unwrap_or(Value::Null));
                }
                Value::Object(key)
            };
            let keys: Vec<Value> = items.iter().map(key_of).collect();
            for (i, key) in keys.iter().enumerate() {
                if keys[..i].contains(key) {
                    msgs.push(format!("Duplicate value: {}", show(key)));
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(kind: &str, api_version: &str, mut v: Value) -> (Value, Vec<String>) {
        let crd = find(kind, api_version).unwrap().unwrap();
        let errs = validate_object(crd, &mut v)
            .into_iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect();
        (v, errs)
    }

    #[test]
    fn embedded_crds_load_with_every_rule_implemented() {
        let all = embedded().unwrap();
        let names: Vec<String> = all
            .iter()
            .map(|v| format!("{} {}", v.kind, v.api_version()))
            .collect();
        assert_eq!(
            names,
            [
                "XBackend agentic.networking.x-k8s.io/v0alpha0",
                "XAccessPolicy agentic.networking.x-k8s.io/v0alpha0",
                "XAccessPolicy agentic.networking.x-k8s.io/v1alpha1",
                "GrantwallToolPolicy grantwall.io/v1alpha1",
                "GrantwallIdentityProvider grantwall.io/v1alpha1",
                "GrantwallAccessPolicy grantwall.io/v1alpha1",
                "GrantwallRateLimitPolicy grantwall.io/v1alpha1",
                "GrantwallAgentIdentity grantwall.io/v1alpha1",
                "GrantwallModelPolicy grantwall.io/v1alpha1",
                "GrantwallA2AAgent grantwall.io/v1alpha1",
                "GrantwallA2APolicy grantwall.io/v1alpha1",
            ]
        );
    }

    #[test]
    fn defaults_are_applied_before_validation() {
        let (v, errs) = check(
            "XBackend",
            "agentic.networking.x-k8s.io/v0alpha0",
            json!({"apiVersion": "x", "kind": "XBackend", "metadata": {"name": "b"}, "spec": {"mcp": {"serviceName": "s", "port": 80, "path": null}}}),
        );
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(v.pointer("/spec/mcp/path"), Some(&json!("/mcp")));
    }

    #[test]
    fn structural_errors_name_the_field() {
        let (_, errs) = check(
            "XAccessPolicy",
            "agentic.networking.x-k8s.io/v1alpha1",
            json!({"spec": {
                "action": "Deny",
                "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "", "extra": 1}],
                "rules": [{"name": "r", "authorization": {"type": "Inline", "ports": [0, 80, 80], "mcp": {"methods": [
                    {"name": "tools/call", "params": ["a", "bbbbbbbbbbbbbbbbbbbbbbbbb"]}, {"name": "tools/call"}
                ]}}}],
                "bogus": true
            }}),
        );
        assert_eq!(
            errs,
            [
                "spec.action: Unsupported value: \"Deny\": supported values: \"Allow\", \"ExternalAuth\"",
                "spec.bogus: unknown field (not in the XAccessPolicy v1alpha1 schema; the API server would drop it silently)",
                "spec.rules[0].authorization.mcp.methods: Duplicate value: {\"name\":\"tools/call\"}",
                "spec.rules[0].authorization.mcp.methods[0].params[1]: longer than 20",
                "spec.rules[0].authorization.ports: Duplicate value: 80",
                "spec.rules[0].authorization.ports[0]: less than 1",
                "spec.targetRefs[0].extra: unknown field (not in the XAccessPolicy v1alpha1 schema; the API server would drop it silently)",
                "spec.targetRefs[0].name: shorter than 1",
            ]
        );
    }

    #[test]
    fn types_required_and_patterns() {
        let (_, errs) = check(
            "XAccessPolicy",
            "agentic.networking.x-k8s.io/v0alpha0",
            json!({"metadata": {"anything": {"goes": 1}}, "status": {"free": 1}, "spec": {
                "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": 5}],
                "rules": [{"name": "Bad_Name", "source": {"type": "SPIFFE", "spiffe": "http://x"}}]
            }}),
        );
        assert_eq!(
            errs,
            [
                "spec.rules[0].name: Invalid value: \"Bad_Name\": should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'",
                "spec.rules[0].source.spiffe: Invalid value: \"http://x\": should match '^spiffe://[a-z0-9._-]+(?:/[A-Za-z0-9._-]+)*$'",
                "spec.targetRefs[0].name: must be of type string, got integer",
            ]
        );
        let (_, errs) = check(
            "XAccessPolicy",
            "agentic.networking.x-k8s.io/v0alpha0",
            json!({"spec": {"rules": []}}),
        );
        assert_eq!(
            errs,
            [
                "spec.targetRefs: Required value",
                "spec.rules: has 0 items, fewer than 1"
            ]
        );
    }
}
