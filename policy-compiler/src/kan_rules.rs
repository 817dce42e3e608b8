//! The CRDs' `x-kubernetes-validations` (CEL) rules, re-implemented in Rust and looked up by the rule's exact
//! text. We do not embed a CEL interpreter for 17 short rules: hand-written checks are easy to review, and the
//! exact-text key means an upstream change to any rule makes `crd_schema::embedded()` fail until it is ported.
//!
//! Each check receives the node the rule is attached to (`self`), after defaulting. A field that is missing
//! or has the wrong type makes the rule pass: the schema's own `required`/`type` errors already report it.

use serde_json::Value;

/// A rule's Rust implementation: true when `self` satisfies it.
pub type Check = fn(&Value) -> bool;

/// Every rule text in the embedded CRDs with its implementation.
pub const RULES: &[(&str, Check)] = &[
    (
        "[has(self.serviceName),has(self.hostname)].filter(x,x==true).size() == 1",
        |s| has(s, "serviceName") as u8 + has(s, "hostname") as u8 == 1,
    ),
    ("self.type == 'InlineTools' ? has(self.tools) : true", |s| implies_has(s, "type", "InlineTools", "tools")),
    ("self.type == 'ExternalAuth' ? has(self.externalAuth) : true", |s| {
        implies_has(s, "type", "ExternalAuth", "externalAuth")
    }),
    ("self.type == 'CEL' ? has(self.cel) : true", |s| implies_has(s, "type", "CEL", "cel")),
    ("self.type == 'Inline' ? !has(self.cel) : true", |s| str_field(s, "type") != Some("Inline") || !has(s, "cel")),
    ("[has(self.tools), has(self.externalAuth), has(self.cel)].filter(x, x).size() <= 1", |s| {
        has(s, "tools") as u8 + has(s, "externalAuth") as u8 + has(s, "cel") as u8 <= 1
    }),
    ("self.protocol == 'GRPC' ? has(self.grpc) : true", |s| implies_has(s, "protocol", "GRPC", "grpc")),
    ("has(self.grpc) ? self.protocol == 'GRPC' : true", |s| !has(s, "grpc") || str_field(s, "protocol") == Some("GRPC")),
    ("self.protocol == 'HTTP' ? has(self.http) : true", |s| implies_has(s, "protocol", "HTTP", "http")),
    ("has(self.http) ? self.protocol == 'HTTP' : true", |s| !has(s, "http") || str_field(s, "protocol") == Some("HTTP")),
    ("(size(self.group) == 0 && self.kind == 'Service') ? has(self.port) : true", |s| {
        // group and kind are defaulted ("" and "Service") before rules run.
        let core_service = str_field(s, "group").unwrap_or("").is_empty() && str_field(s, "kind") == Some("Service");
        !core_service || has(s, "port")
    }),
    ("self.action == 'ExternalAuth' ? has(self.externalAuth) : true", |s| {
        implies_has(s, "action", "ExternalAuth", "externalAuth")
    }),
    (
        "self.all(x, (x.group == 'agentic.networking.x-k8s.io' && x.kind == 'XBackend') || (x.group == 'gateway.networking.k8s.io' && x.kind == 'Gateway'))",
        |s| {
            items(s).iter().all(|x| {
                matches!(
                    (str_field(x, "group"), str_field(x, "kind")),
                    (Some("agentic.networking.x-k8s.io"), Some("XBackend"))
                        | (Some("gateway.networking.k8s.io"), Some("Gateway"))
                        | (None, _)
                        | (_, None)
                )
            })
        },
    ),
    ("self.all(ref, ref.kind == self[0].kind)", |s| {
        let refs = items(s);
        let first = refs.first().and_then(|r| str_field(r, "kind"));
        refs.iter().all(|r| str_field(r, "kind").is_none() || str_field(r, "kind") == first)
    }),
    ("self.all(r, self.filter(x, x.name == r.name).size() == 1)", |s| {
        let names: Vec<&str> = items(s).iter().filter_map(|r| str_field(r, "name")).collect();
        names.iter().enumerate().all(|(i, n)| !names[..i].contains(n))
    }),
    ("self.filter(r, has(r.authorization) && r.authorization.type == 'ExternalAuth').size() <= 1", |s| {
        items(s)
            .iter()
            .filter(|r| r.get("authorization").and_then(|a| str_field(a, "type")) == Some("ExternalAuth"))
            .count()
            <= 1
    }),
    (
        "has(self.params) && self.params.size() > 0 ? self.name in ['prompts/get', 'tools/call', 'resources/subscribe', 'resources/unsubscribe', 'resources/read'] : true",
        |s| {
            let has_params = s.get("params").and_then(Value::as_array).is_some_and(|p| !p.is_empty());
            !has_params
                || matches!(
                    str_field(s, "name"),
                    Some("prompts/get" | "tools/call" | "resources/subscribe" | "resources/unsubscribe" | "resources/read")
                        | None
                )
        },
    ),
];

/// The implementation of `rule`, if we have one.
pub fn lookup(rule: &str) -> Option<Check> {
    RULES
        .iter()
        .find(|(text, _)| *text == rule)
        .map(|(_, check)| *check)
}

/// CEL `has(self.f)`: the field is present (the API server has already pruned nulls).
fn has(s: &Value, field: &str) -> bool {
    s.get(field).is_some_and(|v| !v.is_null())
}

fn str_field<'a>(s: &'a Value, field: &str) -> Option<&'a str> {
    s.get(field).and_then(Value::as_str)
}

fn items(s: &Value) -> &[Value] {
    s.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// `self.<field> == '<value>' ? has(self.<required>) : true`
fn implies_has(s: &Value, field: &str, value: &str, required: &str) -> bool {
    str_field(s, field) != Some(value) || has(s, required)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd_schema;
    use serde_json::json;

    #[test]
    fn every_crd_rule_is_implemented_and_every_implementation_is_used() {
        let mut used = Vec::new();
        for v in crd_schema::embedded().unwrap() {
            let mut rules = Vec::new();
            v.schema.rules("", &mut rules);
            for (path, r) in rules {
                assert!(lookup(&r.rule).is_some(), "{} {path}: {}", v.kind, r.rule);
                used.push(r.rule);
            }
        }
        for (text, _) in RULES {
            assert!(used.iter().any(|u| u == text), "unused rule {text}");
        }
    }

    fn rule(text_start: &str) -> Check {
        let found: Vec<_> = RULES
            .iter()
            .filter(|(t, _)| t.starts_with(text_start))
            .collect();
        assert_eq!(found.len(), 1, "{text_start}");
        found[0].1
    }

    #[test]
    fn checks_behave_like_the_cel() {
        let one_of = rule("[has(self.serviceName)");
        assert!(one_of(&json!({"serviceName": "s"})));
        assert!(!one_of(&json!({"serviceName": "s", "hostname": "h"})));
        assert!(!one_of(&json!({})));

        let port = rule("(size(self.group)");
        assert!(!port(&json!({"group": "", "kind": "Service", "name": "x"})));
        assert!(port(
            &json!({"group": "", "kind": "Service", "name": "x", "port": 1})
        ));
        assert!(port(
            &json!({"group": "example.com", "kind": "Thing", "name": "x"})
        ));

        let unique = rule("self.all(r, self.filter");
        assert!(unique(&json!([{"name": "a"}, {"name": "b"}])));
        assert!(!unique(&json!([{"name": "a"}, {"name": "a"}])));

        let same_kind = rule("self.all(ref");
        assert!(!same_kind(
            &json!([{"kind": "Gateway"}, {"kind": "XBackend"}])
        ));
        assert!(same_kind(
            &json!([{"kind": "XBackend"}, {"kind": "XBackend"}])
        ));

        let target = rule("self.all(x, (x.group");
        assert!(!target(
            &json!([{"group": "gateway.networking.k8s.io", "kind": "XBackend"}])
        ));
        assert!(target(
            &json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway"}])
        ));

        let params = rule("has(self.params)");
        assert!(!params(&json!({"name": "prompts/list", "params": ["x"]})));
        assert!(params(&json!({"name": "prompts/list", "params": []})));
        assert!(params(&json!({"name": "resources/read", "params": ["x"]})));

        let one_ext = rule("self.filter(r,");
        let ext = json!({"authorization": {"type": "ExternalAuth"}});
        assert!(one_ext(&json!([ext.clone(), {"name": "x"}])));
        assert!(!one_ext(&json!([ext.clone(), ext])));
    }
}
