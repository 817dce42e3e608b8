//! GrantwallIdentityProvider → settings.identity.jwt: CRD validation, JWKS checks, targets.

mod common;

use common::*;
use grantwall_core::jwt::TokenPrecedence;

const RSA: &str = r#"{"kty":"RSA","kid":"k8s-1","n":"1r_fpjH7GZPQv2zTZkCThOx6lYKS8HXRPgTy4loFNGZgFofpfYs5UL2DvMVPrlUSKJVrFKfzZx6JUuw3o7X1gMYZQDt10xKxi8fd3Qwnrmn74wSoAd_HTpWThJek--r9cTNCYL02QFxAmpOddh7SOy1xzLICshOMt4diTXfwx2Ql_5SqFjCqXALVdC_B0pth6uR5xby7afrKlt6xA6hVz50198UIPIGSWE0lRT4jruC4R6BeVOalv-LQECrcJvtvu2YqVGbIiqvz7wyBie66CvZZzWcZgjJGvqujOP9WpNrA2WW0Berhi3vqLW_JSarEouArmMxj3aZulljgfBK1pQ","e":"AQAB","use":"sig"}"#;
const EC: &str = r#"{"kty":"EC","crv":"P-256","kid":"idp-1","x":"sEItgdZXhiEoPos5CL4f3VJFeaZBZWeH--unyWtxBC8","y":"p3eNXMhTrc9zOnEXbICua1r1hoGrOIFT0wYfD3mtRW0"}"#;

const BACKEND: &str = "
apiVersion: agentic.networking.x-k8s.io/v0alpha0
kind: XBackend
metadata: {name: mcp-server, namespace: tools}
spec:
  mcp: {serviceName: mcp-server, port: 8000, path: /mcp}
";

fn provider(name: &str, issuer: &str, extra: &str, keys: &str) -> String {
    format!(
        "---
apiVersion: grantwall.io/v1alpha1
kind: GrantwallIdentityProvider
metadata: {{name: {name}, namespace: tools}}
spec:
  oidc: {{issuerUrl: \"{issuer}\", audiences: [mcp-gateway]}}
  jwks:
    inline: '{{\"keys\":[{keys}]}}'
{extra}"
    )
}

#[test]
fn providers_compile_with_defaults_and_requirements() {
    let k8s = provider(
        "kubernetes",
        "https://kubernetes.default.svc.cluster.local",
        "  tokenType: ServiceAccount
  requireToken:
    targetRefs: [{group: agentic.networking.x-k8s.io, kind: XBackend, name: mcp-server}]
    resourceMetadata: https://gw.example/.well-known/oauth-protected-resource
  forwardingPeers: [spiffe://cluster.local/ns/istio-system/sa/ingress]
",
        RSA,
    );
    let idp = provider("corp", "https://login.example.com", "  token: {header: X-Agent-Token, prefix: ''}\n", EC);
    let config = compile_ok(&format!("{BACKEND}{k8s}{idp}"));
    let jwt = &config.settings.identity.jwt;
    assert_eq!(jwt.providers.len(), 2);
    let corp = &jwt.providers[0];
    assert_eq!((corp.name.as_str(), corp.header.as_str(), corp.prefix.as_str()), ("tools/corp", "x-agent-token", ""));
    assert_eq!((corp.clock_skew_seconds, corp.forward_token, corp.kubernetes_trust_domain.as_deref()), (60, false, None));
    let k = &jwt.providers[1];
    assert_eq!(k.kubernetes_trust_domain.as_deref(), Some("cluster.local"));
    assert_eq!(k.keys[0].alg.as_deref(), Some("RS256"), "RSA without alg is RS256");
    assert_eq!((k.header.as_str(), k.prefix.as_str()), ("authorization", "Bearer "));
    assert_eq!(jwt.required.len(), 1);
    assert_eq!(jwt.required[0].backend.as_deref(), Some("tools/mcp-server"));
    assert_eq!(jwt.forwarding_peers, ["spiffe://cluster.local/ns/istio-system/sa/ingress"]);
    assert!(jwt.providers.iter().all(|p| p.precedence == TokenPrecedence::Agree), "Agree by default");
}

#[test]
fn identity_precedence_reaches_the_provider_and_bad_values_are_refused() {
    for (value, expect) in [("Token", TokenPrecedence::Token), ("Connection", TokenPrecedence::Connection), ("Agree", TokenPrecedence::Agree)] {
        let idp = provider("corp", "https://login.example.com", &format!("  identityPrecedence: {value}\n"), EC);
        let config = compile_ok(&format!("{BACKEND}{idp}"));
        assert_eq!(config.settings.identity.jwt.providers[0].precedence, expect, "{value}");
    }
    let errors = compile_err(&format!("{BACKEND}{}", provider("corp", "https://login.example.com", "  identityPrecedence: Peer\n", EC)));
    assert!(errors.iter().any(|e| e.contains("spec.identityPrecedence") && e.contains("Agree")), "{errors:#?}");
}

#[test]
fn unusable_keys_and_ambiguous_providers_are_errors() {
    let private = RSA.replace("\"use\":\"sig\"", "\"d\":\"AAAA\"");
    let cases = [
        (provider("a", "https://i.example", "", &private), "private key"),
        (provider("a", "https://i.example", "", &format!("{EC},{EC}")), "share a kid"),
        (provider("a", "https://i.example", "", r#"{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}"#), "spec.jwks"),
        (provider("a", "https://i.example", "", r#"{"kty":"oct","k":"c2VjcmV0"}"#), "oct keys need alg HS256"),
        (provider("a", "http://i.example", "", EC), "spec.oidc.issuerUrl"),
        (format!("{}{}", provider("a", "https://i.example", "", EC), provider("b", "https://i.example", "", EC)), "already defined"),
        (
            provider("a", "https://i.example", "  requireToken:\n    targetRefs: [{group: agentic.networking.x-k8s.io, kind: XBackend, name: nope}]\n", EC),
            "XBackend tools/nope is not in the input",
        ),
        (provider("a", "https://i.example", "  clockSkewSeconds: 3600\n", EC), "spec.clockSkewSeconds"),
        (provider("a", "https://i.example", "  tokenType: Magic\n", EC), "spec.tokenType"),
    ];
    for (yaml, expect) in cases {
        let errors = compile_err(&format!("{BACKEND}{yaml}"));
        assert!(errors.iter().any(|e| e.contains(expect)), "{expect}: {errors:#?}");
    }
}

#[test]
fn jwks_from_a_file_beside_the_yaml() {
    let dir = temp_dir("jwks");
    write(&dir, "keys/idp.json", &format!("{{\"keys\":[{EC}]}}"));
    let yaml = format!(
        "{BACKEND}---
apiVersion: grantwall.io/v1alpha1
kind: GrantwallIdentityProvider
metadata: {{name: corp, namespace: tools}}
spec:
  oidc: {{issuerUrl: https://login.example.com, audiences: [a]}}
  jwks: {{file: keys/idp.json}}
"
    );
    let path = write(&dir, "policies/../policy.yaml", &yaml);
    let out = grantwall(&dir, &["compile", "-f", path.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("\"kid\":\"idp-1\""));
    let missing = grantwall(&dir, &["compile", "-f", "-"], Some(&yaml.replace("keys/idp.json", "nope.json")));
    assert!(stderr(&missing).contains("cannot read"), "{}", stderr(&missing));
}

const OIDC_POLICY: &str = "---
apiVersion: grantwall.io/v1alpha1
kind: GrantwallAccessPolicy
metadata: {name: idp-agents, namespace: tools}
spec:
  targetRefs: [{group: agentic.networking.x-k8s.io, kind: XBackend, name: mcp-server}]
  action: Allow
  rules:
  - name: agent-7-echo
    source: {type: OIDC, oidc: {issuer: 'https://login.example.com', subject: agent-7}}
    authorization:
      type: Inline
      mcp:
        mcpBaseProtocolMethodsOption: MATCH_BASE_PROTOCOL_METHODS
        methods: [{name: tools/call, params: [echo]}]
";

#[test]
fn grantwall_access_policy_names_oidc_callers() {
    let idp = provider("corp", "https://login.example.com", "", EC);
    let (config, warnings) = compile_with(&format!("{BACKEND}{idp}{OIDC_POLICY}"), &Default::default()).unwrap();
    assert_eq!(config.principals, ["oidc://login.example.com#agent-7"]);
    assert_eq!(config.backends[0].policies[0].name, "tools/idp-agents");
    assert!(warnings.is_empty(), "{warnings:?}");
    // Without a provider for the issuer the rule can never match: a warning.
    let (_, warnings) = compile_with(&format!("{BACKEND}{OIDC_POLICY}"), &Default::default()).unwrap();
    assert!(warnings.iter().any(|w| w.contains("no GrantwallIdentityProvider")), "{warnings:?}");
    // OIDC is Grantwall's: KAN's XAccessPolicy keeps its fixed source types.
    let kan = OIDC_POLICY.replace("apiVersion: grantwall.io/v1alpha1\nkind: GrantwallAccessPolicy", "apiVersion: agentic.networking.x-k8s.io/v1alpha1\nkind: XAccessPolicy");
    let errors = compile_err(&format!("{BACKEND}{idp}{kan}"));
    assert!(errors.iter().any(|e| e.contains("source.type")), "{errors:#?}");
    let mixed = OIDC_POLICY.replace("oidc: {issuer", "spiffe: spiffe://cluster.local/x, oidc: {issuer");
    assert!(!compile_err(&format!("{BACKEND}{idp}{mixed}")).is_empty());
}

#[test]
fn cel_rules_read_the_verified_claims() {
    use grantwall_core::engine::{Engine, Request};
    use grantwall_core::jsonrpc;
    use grantwall_core::mcp::McpOp;
    let policy = "---
apiVersion: agentic.networking.x-k8s.io/v1alpha1
kind: XAccessPolicy
metadata: {name: by-claims, namespace: tools}
spec:
  targetRefs: [{group: agentic.networking.x-k8s.io, kind: XBackend, name: mcp-server}]
  action: Allow
  rules:
  - name: admins
    authorization:
      type: CEL
      cel: {expression: \"'mcp-admins' in jwt.claims.groups && jwt.claims['kubernetes.io'].namespace == 'agents'\"}
";
    let config = compile_ok(&format!("{BACKEND}{policy}"));
    let engine = Engine::new(config).unwrap();
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;
    let msg = jsonrpc::parse(body).unwrap();
    let op = McpOp::from_message(&msg);
    let decide = |claims: Option<&serde_json::Value>| {
        let req = Request {
            method: "POST",
            path: "/mcp",
            authority: "mcp-server.tools",
            destination_port: None,
            headers: &[],
            principal: None,
            backend: Some(0),
            time: None,
            jwt_claims: claims,
        };
        engine.decide(&req, Some(&op)).allowed
    };
    let admin = serde_json::json!({"sub": "a", "groups": ["mcp-admins"], "kubernetes.io": {"namespace": "agents"}});
    let other = serde_json::json!({"sub": "a", "groups": ["readers"], "kubernetes.io": {"namespace": "agents"}});
    assert!(decide(Some(&admin)));
    assert!(!decide(Some(&other)));
    assert!(!decide(None), "no token: jwt.claims is empty, the rule cannot match");
}
