//! KAN → config semantics and every error class, through the library API.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use common::*;
use grantwall_core::config::{
    HeaderMatch, HttpMatch, MatchKind, McpMatch, McpMethod, MethodGrant, PathMatch,
};
use grantwall_policy_compiler::compile::Options;

const V1: &str = "agentic.networking.x-k8s.io/v1alpha1";
const V0: &str = "agentic.networking.x-k8s.io/v0alpha0";

/// A v1alpha1 policy `p` in namespace `ns` on XBackend `b`, with the given rules block (already indented).
fn policy_on_b(rules: &str) -> String {
    format!(
        "apiVersion: {V1}
kind: XAccessPolicy
metadata: {{name: p, namespace: ns}}
spec:
  targetRefs: [{{group: agentic.networking.x-k8s.io, kind: XBackend, name: b}}]
  action: Allow
{rules}"
    )
}

fn with_backend(doc: &str) -> String {
    format!("{BACKEND}---\n{doc}")
}

fn first_rule(c: &grantwall_core::config::Config) -> &grantwall_core::config::Rule {
    &c.backends[0].policies[0].rules[0]
}

fn grant(method: McpMethod, names: Option<&[&str]>) -> MethodGrant {
    MethodGrant {
        method,
        names: names.map(|n| n.iter().map(|s| s.to_string()).collect()),
    }
}

#[test]
fn service_account_and_spiffe_sources_become_interned_principals() {
    let c = compile_ok(&with_backend(&policy_on_b(
        "  rules:
  - name: sa-default-ns
    source: {type: ServiceAccount, serviceAccount: {name: agent}}
  - name: sa-other-ns
    source: {type: ServiceAccount, serviceAccount: {name: agent, namespace: other}}
  - name: spiffe
    source: {type: SPIFFE, spiffe: spiffe://example.org/agent}
  - name: again
    source: {type: SPIFFE, spiffe: spiffe://example.org/agent}
  - name: anyone
",
    )));
    assert_eq!(
        c.principals,
        [
            "spiffe://cluster.local/ns/ns/sa/agent",
            "spiffe://cluster.local/ns/other/sa/agent",
            "spiffe://example.org/agent"
        ]
    );
    let rules = &c.backends[0].policies[0].rules;
    let p: Vec<Option<Vec<u32>>> = rules.iter().map(|r| r.principals.clone()).collect();
    assert_eq!(
        p,
        [
            Some(vec![0]),
            Some(vec![1]),
            Some(vec![2]),
            Some(vec![2]),
            None
        ]
    );
    // A rule without authorization: no HTTP or MCP condition.
    assert!(rules.iter().all(|r| r.http.is_none() && r.mcp.is_none()));
}

#[test]
fn trust_domain_option_applies_to_service_accounts() {
    let opts = Options {
        trust_domain: "corp.example".into(),
        ..Options::default()
    };
    let (c, _) = compile_with(
        &with_backend(&policy_on_b("  rules:\n  - name: r\n    source: {type: ServiceAccount, serviceAccount: {name: a}}\n")),
        &opts,
    )
    .unwrap();
    assert_eq!(c.principals, ["spiffe://corp.example/ns/ns/sa/a"]);
}

#[test]
fn source_consistency_errors() {
    let errs = compile_err(&with_backend(&policy_on_b(
        "  rules:
  - name: spiffe-without-id
    source: {type: SPIFFE}
  - name: spiffe-with-sa
    source: {type: SPIFFE, spiffe: spiffe://x/y, serviceAccount: {name: a}}
  - name: sa-without-sa
    source: {type: ServiceAccount}
  - name: sa-with-spiffe
    source: {type: ServiceAccount, spiffe: spiffe://x/y, serviceAccount: {name: a}}
  - name: no-type
    source: {serviceAccount: {name: a}}
  - name: bad-sa-name
    source: {type: ServiceAccount, serviceAccount: {name: a/b}}
",
    )));
    let at = "in.yaml doc 2 XAccessPolicy ns/p: spec.rules";
    assert_eq!(
        errs,
        [
            format!("{at}[0].source.spiffe: Required value: type SPIFFE needs a spiffe ID"),
            format!("{at}[1].source.serviceAccount: must not be set when type is SPIFFE"),
            format!("{at}[2].source.serviceAccount: Required value: type ServiceAccount needs serviceAccount"),
            format!("{at}[3].source.spiffe: must not be set when type is ServiceAccount"),
            format!("{at}[4].source.type: Required value: set ServiceAccount or SPIFFE (omit source entirely to match any caller)"),
            format!("{at}[5].source.serviceAccount.name: Invalid value: \"a/b\": a ServiceAccount name must be a lower-case DNS subdomain"),
        ]
    );
}

#[test]
fn omitted_rules_compile_to_an_empty_rule_list() {
    let c = compile_ok(&with_backend(&policy_on_b("")));
    assert_eq!(c.backends[0].policies[0].rules, []);
    assert!(c.principals.is_empty());
}

#[test]
fn inline_http_conditions() {
    let c = compile_ok(&with_backend(&policy_on_b(
        r#"  rules:
  - name: r
    authorization:
      type: Inline
      methods: [POST, GET]
      paths:
      - {}
      - {type: Exact, value: /mcp}
      - {type: RegularExpression, value: "/v[0-9]+/.*"}
      hosts: ["*.example.com", mcp.example.com]
      headers:
      - {name: X-Tenant, value: a}
      - {name: X-Env, type: RegularExpression, value: "prod|stage"}
      ports: [443, 8080]
  - name: empty-inline
    authorization: {type: Inline}
"#,
    )));
    let rules = &c.backends[0].policies[0].rules;
    assert_eq!(
        rules[0].http,
        Some(HttpMatch {
            methods: vec!["POST".into(), "GET".into()],
            paths: vec![
                PathMatch {
                    kind: MatchKind::Prefix,
                    value: "/".into()
                },
                PathMatch {
                    kind: MatchKind::Exact,
                    value: "/mcp".into()
                },
                PathMatch {
                    kind: MatchKind::Regex,
                    value: "/v[0-9]+/.*".into()
                },
            ],
            hosts: vec!["*.example.com".into(), "mcp.example.com".into()],
            headers: vec![
                HeaderMatch {
                    name: "x-tenant".into(),
                    kind: MatchKind::Exact,
                    value: "a".into()
                },
                HeaderMatch {
                    name: "x-env".into(),
                    kind: MatchKind::Regex,
                    value: "prod|stage".into()
                },
            ],
            ports: vec![443, 8080],
        })
    );
    assert_eq!(rules[0].mcp, None);
    assert_eq!(
        (rules[1].http.as_ref(), rules[1].mcp.as_ref()),
        (None, None)
    );
}

#[test]
fn mcp_methods_expand_merge_and_sort() {
    let c = compile_ok(&with_backend(&policy_on_b(
        "  rules:
  - name: families
    authorization:
      type: Inline
      mcp:
        methods:
        - name: tools/call
          params: [zeta, alpha, zeta2]
        - name: resources
        - name: prompts/get
          params: [p]
        - name: prompts
  - name: merged-names
    authorization:
      type: Inline
      mcp:
        mcpBaseProtocolMethodsOption: MATCH_BASE_PROTOCOL_METHODS
        methods:
        - name: tools/call
          params: [b]
        - name: tools
  - name: omitted
    authorization: {type: Inline, mcp: {}}
  - name: explicit-empty
    authorization: {type: Inline, mcp: {methods: []}}
",
    )));
    let rules = &c.backends[0].policies[0].rules;
    use McpMethod::*;
    assert_eq!(
        rules[0].mcp,
        Some(McpMatch {
            base_protocol: false,
            methods: Some(vec![
                grant(ToolsCall, Some(&["alpha", "zeta", "zeta2"])),
                grant(PromptsList, None),
                grant(PromptsGet, None),
                grant(ResourcesList, None),
                grant(ResourcesTemplatesList, None),
                grant(ResourcesRead, None),
                grant(ResourcesSubscribe, None),
                grant(ResourcesUnsubscribe, None),
            ]),
        })
    );
    // `tools` (any name) absorbs `tools/call` with params.
    assert_eq!(
        rules[1].mcp,
        Some(McpMatch {
            base_protocol: true,
            methods: Some(vec![grant(ToolsList, None), grant(ToolsCall, None)])
        })
    );
    assert_eq!(
        rules[2].mcp,
        Some(McpMatch {
            base_protocol: false,
            methods: None
        })
    );
    assert_eq!(
        rules[3].mcp,
        Some(McpMatch {
            base_protocol: false,
            methods: Some(vec![])
        })
    );
}

#[test]
fn merged_params_are_a_sorted_union() {
    // methods is a map list keyed by name, so the same method twice is refused by the schema; the union
    // comes from a family plus a method with params only when the family has no names: covered above. Here:
    // resources/read names are URIs, kept verbatim and sorted.
    let c = compile_ok(&with_backend(&policy_on_b(
        "  rules:
  - name: r
    authorization:
      type: Inline
      mcp:
        methods:
        - {name: resources/read, params: ['file:///b', 'file:///a']}
",
    )));
    assert_eq!(
        first_rule(&c).mcp.as_ref().unwrap().methods,
        Some(vec![grant(
            McpMethod::ResourcesRead,
            Some(&["file:///a", "file:///b"])
        )])
    );
}

#[test]
fn v0alpha0_inline_tools() {
    let c = compile_ok(&with_backend(&format!(
        "apiVersion: {V0}
kind: XAccessPolicy
metadata: {{name: old, namespace: ns}}
spec:
  targetRefs: [{{group: agentic.networking.x-k8s.io, kind: XBackend, name: b}}]
  rules:
  - name: tools
    source: {{type: ServiceAccount, serviceAccount: {{name: a}}}}
    authorization: {{type: InlineTools, tools: [sum, echo]}}
  - name: no-tools
    source: {{type: SPIFFE, spiffe: spiffe://x/y}}
    authorization: {{type: InlineTools, tools: []}}
  - name: everything
    source: {{type: SPIFFE, spiffe: spiffe://x/y}}
"
    )));
    let rules = &c.backends[0].policies[0].rules;
    assert_eq!(
        rules[0].mcp,
        Some(McpMatch {
            base_protocol: true,
            methods: Some(vec![grant(McpMethod::ToolsCall, Some(&["echo", "sum"]))])
        })
    );
    assert_eq!(
        rules[1].mcp,
        Some(McpMatch {
            base_protocol: true,
            methods: Some(vec![])
        })
    );
    assert_eq!(rules[2].mcp, None);
    assert_eq!(
        c.principals,
        ["spiffe://cluster.local/ns/ns/sa/a", "spiffe://x/y"]
    );
}

#[test]
fn a_second_external_auth_that_would_grant_unchecked_is_an_error() {
    let errs = compile_err(&with_backend(&format!(
        "apiVersion: {V1}
kind: XAccessPolicy
metadata: {{name: ext, namespace: ns}}
spec:
  targetRefs: [{{group: agentic.networking.x-k8s.io, kind: XBackend, name: b}}]
  action: ExternalAuth
  externalAuth: {{protocol: HTTP, http: {{}}, backendRef: {{name: authz, port: 80}}}}
---
apiVersion: {V1}
kind: XAccessPolicy
metadata: {{name: cel, namespace: ns}}
spec:
  targetRefs: [{{group: agentic.networking.x-k8s.io, kind: XBackend, name: b}}]
  action: Allow
  rules:
  - name: r
    authorization: {{type: CEL, cel: {{expression: 'true'}}}}
---
apiVersion: {V0}
kind: XAccessPolicy
metadata: {{name: old, namespace: ns}}
spec:
  targetRefs: [{{group: agentic.networking.x-k8s.io, kind: XBackend, name: b}}]
  rules:
  - name: cel
    source: {{type: SPIFFE, spiffe: spiffe://x/y}}
    authorization: {{type: CEL, cel: {{expression: 'true'}}}}
  - name: ext
    source: {{type: SPIFFE, spiffe: spiffe://x/y}}
    authorization: {{type: ExternalAuth, externalAuth: {{protocol: GRPC, grpc: {{}}, backendRef: {{name: a, port: 9}}}}}}
"
    )));
    assert_eq!(
        errs,
        [
            // ns/ext is older (same timestamp: by name) and wins; ns/old's v0alpha0 rule would grant its source
            // everything without the service's check, so it is refused rather than dropped.
            "in.yaml doc 4 XAccessPolicy ns/old: spec.rules: XBackend ns/b already has ExternalAuth ns/ext (older); KAN supports one per target, and this v0alpha0 ExternalAuth rule cannot be enforced: remove it or the older policy",
        ]
    );
}

#[test]
fn regexes_must_load_in_the_filter_engine() {
    // \p{L} is valid RE2 and valid for the `regex` crate, but regex-lite has no Unicode classes.
    let errs = compile_err(&with_backend(&policy_on_b(
        r#"  rules:
  - name: r
    authorization:
      type: Inline
      paths: [{type: RegularExpression, value: '/\p{L}+'}]
      headers: [{name: x, type: RegularExpression, value: '(unclosed'}]
"#,
    )));
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].starts_with("in.yaml doc 2 XAccessPolicy ns/p: spec.rules[0].authorization.paths[0].value: Invalid value: \"/\\\\p{L}+\": not a regular expression the filter (regex-lite) accepts"), "{}", errs[0]);
    assert!(errs[1].starts_with("in.yaml doc 2 XAccessPolicy ns/p: spec.rules[0].authorization.headers[0].value: Invalid value: \"(unclosed\""), "{}", errs[1]);
}

#[test]
fn missing_target_backend_says_how_to_fix() {
    let errs = compile_err(&policy_on_b(""));
    assert_eq!(
        errs,
        ["in.yaml doc 1 XAccessPolicy ns/p: spec.targetRefs[0]: XBackend ns/b is not in the input: add the file that defines it (-f), or fix targetRefs name \"b\" (XBackends are looked up in the policy's namespace \"ns\")"]
    );
}

#[test]
fn backends_claiming_the_same_authority_or_cluster_conflict() {
    let errs = compile_err(&format!(
        "{BACKEND}---
apiVersion: {V0}
kind: XBackend
metadata: {{name: c, namespace: ns}}
spec:
  mcp: {{serviceName: svc, port: 9090}}
---
apiVersion: {V0}
kind: XBackend
metadata:
  name: d
  namespace: ns
  annotations: {{grantwall.io/envoy-clusters: 'outbound|8080||svc.ns.svc.cluster.local'}}
spec:
  mcp: {{hostname: other.example.com, port: 443}}
"
    ));
    assert_has(
        &errs,
        "in.yaml doc 2 XBackend ns/c: spec.mcp.serviceName: authority \"svc\" is also claimed by XBackend ns/b (in.yaml doc 1 XBackend ns/b): the filter could not tell which backend's policies apply",
    );
    assert_has(
        &errs,
        "in.yaml doc 3 XBackend ns/d: metadata.annotations[\"grantwall.io/envoy-clusters\"]: cluster \"outbound|8080||svc.ns.svc.cluster.local\" is also claimed by XBackend ns/b (in.yaml doc 1 XBackend ns/b): the filter could not tell which backend's policies apply",
    );
    assert_eq!(errs.len(), 5, "4 authorities of svc + 1 cluster: {errs:#?}");
}

#[test]
fn one_service_name_in_two_namespaces_drops_only_the_ambiguous_short_authority() {
    let c = compile_ok(&format!(
        "{BACKEND}---
apiVersion: {V0}
kind: XBackend
metadata: {{name: b, namespace: other}}
spec:
  mcp: {{serviceName: svc, port: 8080}}
"
    ));
    let authorities: Vec<&str> = c.routes.authorities.keys().map(String::as_str).collect();
    assert!(!authorities.contains(&"svc"), "{authorities:?}");
    assert!(authorities.contains(&"svc.ns") && authorities.contains(&"svc.other"), "{authorities:?}");
    assert_eq!(c.routes.clusters.len(), 2);
}

#[test]
fn hostname_backends_and_cluster_annotation() {
    let c = compile_ok(&format!(
        "apiVersion: {V0}
kind: XBackend
metadata:
  name: remote
  namespace: ns
  annotations: {{grantwall.io/envoy-clusters: ' mcp_remote , mcp_remote_tls ,'}}
spec:
  mcp: {{hostname: MCP.Example.COM, port: 443, path: /v1/mcp}}
"
    ));
    assert_eq!(c.backends[0].paths, ["/v1/mcp"]);
    let clusters: Vec<(&str, u32)> = c
        .routes
        .clusters
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        clusters,
        [
            ("mcp_remote", 0),
            ("mcp_remote_tls", 0),
            ("outbound|443||mcp.example.com", 0)
        ]
    );
    let authorities: Vec<&str> = c.routes.authorities.keys().map(String::as_str).collect();
    assert_eq!(authorities, ["mcp.example.com"]);
}

#[test]
fn cluster_domain_option() {
    let opts = Options {
        cluster_domain: "corp.internal".into(),
        ..Options::default()
    };
    let (c, _) = compile_with(BACKEND, &opts).unwrap();
    assert!(c
        .routes
        .clusters
        .contains_key("outbound|8080||svc.ns.svc.corp.internal"));
    assert!(c
        .routes
        .authorities
        .contains_key("svc.ns.svc.corp.internal"));
}

#[test]
fn httproute_prefix_rewrites_become_path_aliases() {
    let c = compile_ok(&format!(
        "{BACKEND}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r1, namespace: ns}}
spec:
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /z/mcp}}}}, {{path: {{type: PathPrefix, value: /a/mcp}}}}, {{path: {{type: Exact, value: /exact}}}}]
    filters: [{{type: URLRewrite, urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /mcp}}}}}}]
    backendRefs: [{{group: agentic.networking.x-k8s.io, kind: XBackend, name: b}}]
  - matches: [{{path: {{type: PathPrefix, value: /other}}}}]
    filters: [{{type: URLRewrite, urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /elsewhere}}}}}}]
    backendRefs: [{{group: agentic.networking.x-k8s.io, kind: XBackend, name: b}}]
  - matches: [{{path: {{type: PathPrefix, value: /no-rewrite}}}}]
    backendRefs: [{{group: agentic.networking.x-k8s.io, kind: XBackend, name: b}}]
  - matches: [{{path: {{type: PathPrefix, value: /a-service}}}}]
    filters: [{{type: URLRewrite, urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /mcp}}}}}}]
    backendRefs: [{{name: b, port: 80}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r2, namespace: ns}}
spec:
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /a/mcp}}}}]
    filters: [{{type: URLRewrite, urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /mcp}}}}}}]
    backendRefs: [{{group: agentic.networking.x-k8s.io, kind: XBackend, name: b, namespace: ns}}]
"
    ));
    assert_eq!(c.backends[0].paths, ["/mcp", "/a/mcp", "/z/mcp"]);
}

#[test]
fn httproute_shape_errors_name_the_field() {
    let errs = compile_err(&format!(
        "{BACKEND}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: ns}}
spec:
  rules:
  - backendRefs: {{not: a-list}}
"
    ));
    assert_eq!(
        errs,
        ["in.yaml doc 2 HTTPRoute ns/r: spec.rules[0].backendRefs: must be a sequence"]
    );
}

fn gateway_policy(name: &str, gateway: &str, ns: &str) -> String {
    format!(
        "apiVersion: {V1}
kind: XAccessPolicy
metadata: {{name: {name}, namespace: {ns}}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: {gateway}}}]
  action: Allow
  rules:
  - name: r
    source: {{type: SPIFFE, spiffe: spiffe://td/{name}}}
"
    )
}

#[test]
fn gateway_is_inferred_when_only_one_is_named() {
    let c = compile_ok(&gateway_policy("p", "gw", "infra"));
    assert_eq!(c.gateway.name, "infra/gw");
    assert_eq!(c.gateway.policies.len(), 1);
    assert_eq!(c.gateway.policies[0].name, "infra/p");
    assert_eq!(c.principals, ["spiffe://td/p"]);

    let c = compile_ok("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: infra}\n");
    assert_eq!(
        (c.gateway.name.as_str(), c.gateway.policies.len()),
        ("infra/gw", 0)
    );

    let c = compile_ok(BACKEND);
    assert_eq!(c.gateway.name, "");
}

#[test]
fn several_gateways_need_the_gateway_option() {
    let text = format!(
        "{}---\n{}---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: third, namespace: infra}}\n",
        gateway_policy("p1", "gw1", "infra"),
        gateway_policy("p2", "gw2", "infra")
    );
    assert_eq!(
        compile_err(&text),
        ["the input names several Gateways (infra/gw1, infra/gw2, infra/third): choose the one this filter runs in with --gateway NAMESPACE/NAME"]
    );
    let opts = Options {
        gateway: Some("infra/gw2".into()),
        ..Options::default()
    };
    let (c, warnings) = compile_with(&text, &opts).unwrap();
    assert_eq!(c.gateway.name, "infra/gw2");
    let names: Vec<&str> = c.gateway.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["infra/p2"]);
    // Principals only of policies that are emitted.
    assert_eq!(c.principals, ["spiffe://td/p2"]);
    assert!(warnings.is_empty());

    let opts = Options {
        gateway: Some("nowhere".into()),
        ..Options::default()
    };
    let (c, warnings) = compile_with(&text, &opts).unwrap();
    assert_eq!(c.gateway.name, "default/nowhere");
    assert!(c.gateway.policies.is_empty());
    assert_eq!(warnings, ["--gateway default/nowhere: no Gateway of that name is defined in the input or targeted by a policy"]);
}

#[test]
fn a_policy_with_several_target_refs_goes_to_each() {
    let c = compile_ok(&format!(
        "{BACKEND}---
apiVersion: {V0}
kind: XBackend
metadata: {{name: c, namespace: ns}}
spec:
  mcp: {{serviceName: svc2, port: 8080}}
---
apiVersion: {V1}
kind: XAccessPolicy
metadata: {{name: both, namespace: ns}}
spec:
  targetRefs:
  - {{group: agentic.networking.x-k8s.io, kind: XBackend, name: c}}
  - {{group: agentic.networking.x-k8s.io, kind: XBackend, name: b}}
  - {{group: agentic.networking.x-k8s.io, kind: XBackend, name: b}}
  action: Allow
"
    ));
    for b in &c.backends {
        let names: Vec<&str> = b.policies.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["ns/both"], "{}", b.name);
    }
}

fn timed_policy(name: &str, created: Option<&str>) -> String {
    let ts = created
        .map(|t| format!(", creationTimestamp: '{t}'"))
        .unwrap_or_default();
    format!(
        "apiVersion: {V1}
kind: XAccessPolicy
metadata: {{name: {name}, namespace: ns{ts}}}
spec:
  targetRefs: [{{group: agentic.networking.x-k8s.io, kind: XBackend, name: b}}]
  action: Allow
"
    )
}

#[test]
fn at_most_five_policies_per_target_oldest_first() {
    let docs = [
        timed_policy("no-ts-b", None),
        timed_policy("no-ts-a", None),
        timed_policy("newest", Some("2025-06-01T00:00:00Z")),
        timed_policy("oldest", Some("2024-01-01T00:00:00Z")),
        timed_policy("tie-b", Some("2024-06-01T00:00:00Z")),
        timed_policy("tie-a", Some("2024-06-01T00:00:00Z")),
        // Same instant as 2024-03-01T00:00:00Z: ordered by instant, not text.
        timed_policy("offset", Some("2024-03-01T02:00:00+02:00")),
    ];
    let text = format!("{BACKEND}---\n{}", docs.join("---\n"));
    let (c, warnings) = compile_with(&text, &Options::default()).unwrap();
    let names: Vec<&str> = c.backends[0]
        .policies
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "ns/oldest",
            "ns/offset",
            "ns/tie-a",
            "ns/tie-b",
            "ns/newest"
        ]
    );
    assert_eq!(
        warnings,
        ["XBackend ns/b has 7 policies; KAN accepts at most 5 per target (oldest first by creationTimestamp, then name) and marks the rest not accepted: not enforcing ns/no-ts-a, ns/no-ts-b"]
    );
}

#[test]
fn bad_creation_timestamp_is_an_error() {
    let errs = compile_err(&format!(
        "{BACKEND}---\n{}",
        timed_policy("p", Some("yesterday"))
    ));
    assert_eq!(errs, ["in.yaml doc 2 XAccessPolicy ns/p: metadata.creationTimestamp: Invalid value: \"yesterday\": must be an RFC 3339 date-time"]);
}

#[test]
fn unknown_api_version_unknown_field_and_duplicate_keys() {
    let errs = compile_err(&format!(
        "{BACKEND}---
apiVersion: agentic.networking.x-k8s.io/v9
kind: XAccessPolicy
metadata: {{name: future, namespace: ns}}
spec: {{}}
---
apiVersion: {V1}
kind: XAccessPolicy
metadata: {{name: typo, namespace: ns}}
spec:
  targetRefs: [{{group: agentic.networking.x-k8s.io, kind: XBackend, name: b}}]
  action: Allow
  rule: []
"
    ));
    assert_eq!(
        errs,
        [
            "in.yaml doc 2 XAccessPolicy ns/future: apiVersion: Unsupported value: \"agentic.networking.x-k8s.io/v9\": XAccessPolicy is served as agentic.networking.x-k8s.io/v0alpha0, agentic.networking.x-k8s.io/v1alpha1",
            "in.yaml doc 3 XAccessPolicy ns/typo: spec.rule: unknown field (not in the XAccessPolicy v1alpha1 schema; the API server would drop it silently)",
        ]
    );
    let errs = compile_err(&format!("{BACKEND}---\nkind: XBackend\nkind: XBackend\n"));
    assert_eq!(errs, ["in.yaml: line 8 column 1: duplicate key \"kind\""]);
}

#[test]
fn the_same_object_twice_is_an_error() {
    let errs = compile_err(&format!("{BACKEND}---\n{BACKEND}"));
    assert_eq!(
        errs,
        ["in.yaml doc 2 XBackend ns/b: defined twice (first at in.yaml doc 1)"]
    );
}

#[test]
fn section_name_is_refused_rather_than_widened() {
    let errs = compile_err(&format!(
        "apiVersion: {V1}
kind: XAccessPolicy
metadata: {{name: p, namespace: ns}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: gw, sectionName: https}}]
  action: Allow
"
    ));
    assert_eq!(errs, ["in.yaml doc 1 XAccessPolicy ns/p: spec.targetRefs[0].sectionName: sectionName is not supported: Grantwall applies policies to a whole Gateway or XBackend"]);
}

#[test]
fn list_kinds_and_default_namespace() {
    let text = format!(
        "apiVersion: v1
kind: List
items:
- apiVersion: {V0}
  kind: XBackend
  metadata: {{name: b}}
  spec: {{mcp: {{serviceName: svc, port: 80}}}}
- apiVersion: {V1}
  kind: XAccessPolicy
  metadata: {{name: p}}
  spec:
    targetRefs: [{{group: agentic.networking.x-k8s.io, kind: XBackend, name: b}}]
    action: Allow
    rules: [{{name: r, source: {{type: ServiceAccount, serviceAccount: {{name: a}}}}}}]
"
    );
    let opts = Options {
        default_namespace: "team".into(),
        ..Options::default()
    };
    let (c, _) = compile_with(&text, &opts).unwrap();
    assert_eq!(c.backends[0].name, "team/b");
    assert_eq!(c.backends[0].policies[0].name, "team/p");
    assert_eq!(c.principals, ["spiffe://cluster.local/ns/team/sa/a"]);

    let errs = compile_err("apiVersion: v1\nkind: List\nitems:\n- apiVersion: agentic.networking.x-k8s.io/v0alpha0\n  kind: XBackend\n  metadata: {name: b}\n  spec: {mcp: {port: 80}}\n");
    assert_eq!(errs, ["in.yaml doc 1 items[0] XBackend default/b: spec.mcp: exactly one of the fields in [serviceName hostname] must be set"]);
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let errs = compile_err(
        "apiVersion: agentic.networking.x-k8s.io/v0alpha0
kind: XBackend
metadata: {name: b1}
spec: {mcp: {serviceName: s, port: 0}}
---
apiVersion: agentic.networking.x-k8s.io/v0alpha0
kind: XBackend
metadata: {name: b2}
spec: {mcp: {hostname: h, port: 70000, path: relative}}
",
    );
    assert_eq!(
        errs,
        [
            "in.yaml doc 1 XBackend default/b1: spec.mcp.port: less than 1",
            "in.yaml doc 2 XBackend default/b2: spec.mcp.port: greater than 65535",
        ]
    );
}

#[test]
fn backend_semantic_checks() {
    let errs = compile_err(
        "apiVersion: agentic.networking.x-k8s.io/v0alpha0
kind: XBackend
metadata: {name: b}
spec: {mcp: {hostname: 'https://x.example.com:443', port: 443, path: mcp}}
",
    );
    assert_eq!(
        errs,
        [
            "in.yaml doc 1 XBackend default/b: spec.mcp.path: Invalid value: \"mcp\": must start with '/'",
            "in.yaml doc 1 XBackend default/b: spec.mcp.hostname: Invalid value: \"https://x.example.com:443\": must be a DNS name without port or scheme",
        ]
    );
}

#[test]
fn unrelated_kinds_are_skipped_and_unknown_kan_kinds_warned() {
    let text = format!(
        "{BACKEND}---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: d}}
spec: {{anything: [goes]}}
---
apiVersion: agentic.networking.x-k8s.io/v1alpha1
kind: XMcpServer
metadata: {{name: m}}
"
    );
    let (_, warnings) = compile_with(&text, &Options::default()).unwrap();
    assert_eq!(warnings, ["in.yaml doc 3 XMcpServer default/m: kind XMcpServer is not one Grantwall reads (XBackend, XAccessPolicy): ignored"]);
}

#[test]
fn options_are_validated() {
    let opts = Options {
        trust_domain: "Bad Domain".into(),
        xfcc_trust: grantwall_core::config::XfccTrust::FromPeers,
        max_body_bytes: 0,
        ..Options::default()
    };
    let errs = compile_with(BACKEND, &opts).err().unwrap();
    assert_eq!(
        errs,
        [
            "--trust-domain: Invalid value: \"Bad Domain\": a SPIFFE trust domain is lower-case letters, digits, '.', '-', '_'",
            "--max-body-bytes: must be greater than 0",
            "--trust-xfcc: from-peers needs at least one --xfcc-peer SPIFFE_ID",
        ]
    );
}

#[test]
fn output_is_independent_of_document_order() {
    let docs = [
        BACKEND.to_string(),
        format!("apiVersion: {V0}\nkind: XBackend\nmetadata: {{name: a, namespace: ns}}\nspec: {{mcp: {{hostname: a.example.com, port: 443}}}}\n"),
        timed_policy("p1", Some("2024-01-01T00:00:00Z")),
        timed_policy("p2", None),
        gateway_policy("g1", "gw", "ns"),
        policy_on_b("  rules:\n  - name: r\n    source: {type: ServiceAccount, serviceAccount: {name: z}}\n").replace("name: p,", "name: p3,"),
        format!("apiVersion: {V1}\nkind: XAccessPolicy\nmetadata: {{name: pa, namespace: ns}}\nspec:\n  targetRefs: [{{group: agentic.networking.x-k8s.io, kind: XBackend, name: a}}]\n  action: Allow\n  rules: [{{name: r, source: {{type: SPIFFE, spiffe: spiffe://a/b}}}}]\n"),
    ];
    let render = |order: &[usize]| {
        let text: Vec<&str> = order.iter().map(|&i| docs[i].as_str()).collect();
        serde_json::to_vec(&compile_ok(&text.join("---\n"))).unwrap()
    };
    let base = render(&[0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(base, render(&[0, 1, 2, 3, 4, 5, 6]));
    for order in [
        [6, 5, 4, 3, 2, 1, 0],
        [3, 0, 6, 1, 5, 2, 4],
        [2, 4, 6, 0, 1, 3, 5],
    ] {
        assert_eq!(base, render(&order), "{order:?}");
    }
}

#[test]
fn object_names_follow_kubernetes_rules() {
    let errs = compile_err(
        "apiVersion: agentic.networking.x-k8s.io/v0alpha0
kind: XBackend
metadata: {name: Bad_Name}
spec: {mcp: {serviceName: s, port: 80}}
---
apiVersion: agentic.networking.x-k8s.io/v0alpha0
kind: XBackend
metadata: {name: b, namespace: 'Team A'}
spec: {mcp: {serviceName: s, port: 80}}
---
apiVersion: agentic.networking.x-k8s.io/v0alpha0
kind: XBackend
metadata: {name: 7}
spec: {mcp: {serviceName: s, port: 80}}
---
apiVersion: agentic.networking.x-k8s.io/v0alpha0
kind: XBackend
metadata: {namespace: x}
spec: {mcp: {serviceName: s, port: 80}}
",
    );
    assert_eq!(
        errs,
        [
            "in.yaml doc 1 XBackend default/Bad_Name: metadata.name: Invalid value: \"Bad_Name\": must be a lower-case DNS subdomain",
            "in.yaml doc 2 XBackend Team A/b: metadata.namespace: Invalid value: \"Team A\": must be a lower-case DNS label",
            "in.yaml doc 3 XBackend: metadata.name: must be a string, got a number",
            "in.yaml doc 4 XBackend: metadata.name: Required value",
        ]
    );
}

#[test]
fn v1alpha1_targets_must_be_xbackends_or_gateways() {
    // v0alpha0 has a CEL rule for this; v1alpha1 does not, so Grantwall checks it itself.
    let errs = compile_err(&format!(
        "apiVersion: {V1}
kind: XAccessPolicy
metadata: {{name: p, namespace: ns}}
spec:
  targetRefs: [{{group: '', kind: Service, name: svc}}]
  action: Allow
"
    ));
    assert_eq!(
        errs,
        ["in.yaml doc 1 XAccessPolicy ns/p: spec.targetRefs[0]: unsupported target Service in group \"\": only agentic.networking.x-k8s.io XBackend and gateway.networking.k8s.io Gateway"]
    );
    let errs = compile_err(&format!(
        "apiVersion: {V0}
kind: XAccessPolicy
metadata: {{name: p, namespace: ns}}
spec:
  targetRefs: [{{group: '', kind: Service, name: svc}}]
  rules: [{{name: r, source: {{type: SPIFFE, spiffe: spiffe://x/y}}}}]
"
    ));
    assert_eq!(
        errs,
        ["in.yaml doc 1 XAccessPolicy ns/p: spec.targetRefs: TargetRef must have group agentic.networking.x-k8s.io and kind XBackend, or group gateway.networking.k8s.io and kind Gateway"]
    );
}

#[test]
fn explicit_empty_rules_deny_all_while_omitted_rules_allow_all() {
    let policy = |rules: &str| {
        format!(
            "{BACKEND}---
apiVersion: agentic.networking.x-k8s.io/v1alpha1
kind: XAccessPolicy
metadata: {{name: p, namespace: ns}}
spec:
  targetRefs: [{{group: agentic.networking.x-k8s.io, kind: XBackend, name: b}}]
  action: Allow
{rules}"
        )
    };
    let engine = |c: &grantwall_core::config::Config| {
        grantwall_core::engine::Engine::from_json(&serde_json::to_vec(c).unwrap()).unwrap()
    };
    let request = grantwall_core::engine::Request {
        method: "POST",
        path: "/mcp",
        authority: "svc.ns",
        destination_port: None,
        headers: &[],
        principal: None,
        backend: Some(0),
        time: None,
        jwt_claims: None,
    };
    let call = grantwall_core::mcp::McpOp {
        name: "tools/call",
        base: false,
        method: Some(grantwall_core::config::McpMethod::ToolsCall),
        target: Some("x"),
        arguments: None,
    };
    let omitted = compile_ok(&policy(""));
    assert!(engine(&omitted).decide(&request, Some(&call)).allowed);
    let explicit = compile_ok(&policy("  rules: []\n"));
    let e = engine(&explicit);
    assert!(!e.decide(&request, Some(&call)).allowed);
    assert!(!e.decide(&request, None).allowed);
}

#[test]
fn match_base_protocol_without_methods_grants_only_the_base_protocol() {
    // KAN's reference implementation (and its e2e "allow-base-mcp" rules, which sit next to tool rules that
    // must still deny) read MATCH_BASE_PROTOCOL_METHODS without `methods` as "the base protocol only".
    let c = compile_ok(&with_backend(&policy_on_b(
        "  rules:
  - name: base
    authorization: {type: Inline, mcp: {mcpBaseProtocolMethodsOption: MATCH_BASE_PROTOCOL_METHODS}}
  - name: skip
    authorization: {type: Inline, mcp: {}}
",
    )));
    let rules = &c.backends[0].policies[0].rules;
    assert_eq!(
        rules[0].mcp,
        Some(McpMatch {
            base_protocol: true,
            methods: Some(vec![])
        })
    );
    // Without MATCH, omitted methods keep the CRD's meaning: every functional method.
    assert_eq!(
        rules[1].mcp,
        Some(McpMatch {
            base_protocol: false,
            methods: None
        })
    );
}
