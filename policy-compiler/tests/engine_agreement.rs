//! The compiler's output loads in the filter's own engine (grantwall-core) and means what the policies say:
//! guards against the two sides drifting apart on field shapes or semantics.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use common::*;
use grantwall_core::config::McpMethod;
use grantwall_core::engine::{Engine, Request};
use grantwall_core::mcp::McpOp;

fn call(tool: &str) -> McpOp<'_> {
    McpOp {
        name: "tools/call",
        base: false,
        method: Some(McpMethod::ToolsCall),
        target: Some(tool),
        arguments: None,
    }
}

const INITIALIZE: McpOp<'static> = McpOp {
    name: "initialize",
    base: true,
    method: None,
    target: None,
    arguments: None,
};

#[test]
fn quickstart_output_loads_and_decides_as_kan_says() {
    let text =
        std::fs::read_to_string(fixtures().join("kan-examples/quickstart/e2e.yaml")).unwrap();
    let config = compile_ok(&text);
    let engine = Engine::from_json(&serde_json::to_vec(&config).unwrap()).unwrap();

    let cluster = "outbound|3001||mcp-everything-svc.quickstart-ns.svc.cluster.local";
    let local = engine
        .route(Some(cluster), "gateway.example", "/mcp")
        .unwrap();
    assert!(local.mcp_endpoint);
    assert_eq!(
        engine.backend_name(local.backend),
        Some("quickstart-ns/local-mcp-backend")
    );
    // The HTTPRoute alias: the filter sees the path before Envoy's rewrite.
    assert_eq!(
        engine.route(
            None,
            "mcp-everything-svc.quickstart-ns:3001",
            "/local/mcp/x"
        ),
        Some(local)
    );
    let remote = engine.route(None, "mcp.deepwiki.com", "/remote/mcp").unwrap();
    assert_eq!((remote.backend, remote.mcp_endpoint), (1, true));
    // Off the MCP path the backend (and its policies) still applies; it is just not MCP endpoint traffic.
    let off_path = engine.route(None, "mcp.deepwiki.com", "/elsewhere").unwrap();
    assert_eq!((off_path.backend, off_path.mcp_endpoint), (1, false));

    let agent = "spiffe://cluster.local/ns/quickstart-ns/sa/adk-agent-sa";
    let other = "spiffe://cluster.local/ns/quickstart-ns/sa/other";
    let request = |principal| Request {
        method: "POST",
        path: "/mcp",
        authority: "mcp-everything-svc",
        destination_port: Some(3001),
        headers: &[],
        principal,
        backend: Some(local.backend),
        time: None,
        jwt_claims: None,
    };
    assert!(
        engine
            .decide(&request(Some(agent)), Some(&call("get-sum")))
            .allowed
    );
    assert!(
        engine
            .decide(&request(Some(agent)), Some(&INITIALIZE))
            .allowed,
        "MATCH_BASE_PROTOCOL_METHODS"
    );
    assert!(
        !engine
            .decide(&request(Some(agent)), Some(&call("echo")))
            .allowed
    );
    assert!(
        !engine
            .decide(&request(Some(other)), Some(&call("get-sum")))
            .allowed
    );
    assert!(!engine.decide(&request(None), Some(&INITIALIZE)).allowed);
}

#[test]
fn every_compiled_feature_loads_in_the_engine() {
    let text = format!(
        r#"{BACKEND}---
apiVersion: agentic.networking.x-k8s.io/v1alpha1
kind: XAccessPolicy
metadata: {{name: p, namespace: ns}}
spec:
  targetRefs: [{{group: agentic.networking.x-k8s.io, kind: XBackend, name: b}}]
  action: Allow
  rules:
  - name: http
    source: {{type: SPIFFE, spiffe: spiffe://example.org/a}}
    authorization:
      type: Inline
      methods: [POST]
      paths: [{{}}, {{type: Exact, value: /mcp}}, {{type: RegularExpression, value: '/v[0-9]+(/.*)?'}}]
      hosts: ['*.example.com', svc.example.com]
      headers: [{{name: X-Tenant, value: a}}, {{name: X-Env, type: RegularExpression, value: 'prod|stage'}}]
      ports: [8080]
      mcp:
        mcpBaseProtocolMethodsOption: MATCH_BASE_PROTOCOL_METHODS
        methods: [{{name: tools}}, {{name: resources/read, params: ['file:///a']}}, {{name: prompts/get, params: [p]}}]
  - name: nothing
    authorization: {{type: Inline, mcp: {{methods: []}}}}
---
apiVersion: agentic.networking.x-k8s.io/v0alpha0
kind: XAccessPolicy
metadata: {{name: old, namespace: ns}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: gw}}]
  rules:
  - name: tools
    source: {{type: ServiceAccount, serviceAccount: {{name: agent}}}}
    authorization: {{type: InlineTools, tools: [sum]}}
"#
    );
    let config = compile_ok(&text);
    let engine = Engine::from_json(&serde_json::to_vec(&config).unwrap());
    assert!(engine.is_ok(), "{:?}", engine.err());
    assert_eq!(engine.unwrap().header_names(), ["x-env", "x-tenant"]);
}
