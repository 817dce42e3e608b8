//! CEL expressions: what compiles and to what, what is refused (with the column and what is unsupported), and
//! that compiled policies decide in the filter's engine as KAN's e2e CEL cases expect.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use common::*;
use grantwall_core::cel::{Expr, Program, LIMITS};
use grantwall_core::engine::{Engine, Request};
use grantwall_core::jsonrpc::{self, Options};
use grantwall_core::mcp::McpOp;
use grantwall_policy_compiler::cel::compile;
use serde_json::{json, Value};

fn lowered(src: &str) -> Value {
    let expr = compile(src).unwrap_or_else(|e| panic!("{src}: {e}"));
    serde_json::to_value(expr).unwrap()
}

fn refused(src: &str) -> String {
    match compile(src) {
        Ok(e) => panic!("{src} compiled to {e:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn kan_upstream_expressions_lower_to_the_tree() {
    assert_eq!(
        lowered("request.mcp.tool_name == 'get-sum'"),
        json!({"eq": [{"var": "request.mcp.tool_name"}, {"string": "get-sum"}]})
    );
    assert_eq!(
        lowered("request.path.startsWith('/mc') &&\nrequest.headers['mcp-protocol-version'].contains('2025') &&\nrequest.mcp.tool_name.matches('^get-[a-z]+$')"),
        json!({"and": [
            {"call": ["startsWith", [{"var": "request.path"}, {"string": "/mc"}]]},
            {"call": ["contains", [{"header": "mcp-protocol-version"}, {"string": "2025"}]]},
            {"matches": [{"var": "request.mcp.tool_name"}, "^get-[a-z]+$"]}
        ]})
    );
    assert_eq!(
        lowered("request.time.getFullYear() >= 2025"),
        json!({"ge": [{"call": ["getFullYear", [{"var": "request.time"}]]}, {"int": 2025}]})
    );
}

#[test]
fn every_variable_compiles() {
    for src in [
        "request.path == '/mcp'",
        "request.url_path.endsWith('/mcp')",
        "request.method == 'POST'",
        "request.host.endsWith('.svc')",
        "request.headers['x-team'] == 'blue'",
        "request.headers.authorization.startsWith('Bearer ')",
        "has(request.headers.x_team) || 'x-team' in request.headers",
        "request.time < timestamp('2030-01-01T00:00:00Z')",
        "request.time.getDayOfWeek() in [1, 2, 3, 4, 5] && request.time.getHours() < 18",
        "request.mcp.tool_name in ['get-sum', 'echo']",
        "request.mcp.method == 'tools/call'",
        "request.mcp.arguments.a < 100",
        "request.mcp.arguments['message'].startsWith('hello')",
        "has(request.mcp.arguments.path) && request.mcp.arguments.path.startsWith('/workspace/')",
        "request.mcp.arguments.paths.all(p, p.startsWith('/workspace/'))",
        "request.mcp.arguments.items.exists_one(i, i.kind == 'admin')",
        "size(request.mcp.arguments) <= 3 && request.mcp.arguments.amount * 2 <= 1000",
        "source.spiffe_id.startsWith('spiffe://cluster.local/')",
        "source.namespace == 'agents' && source.service_account != 'bob'",
        "!has(jwt.claims.sub) || jwt.claims.sub == 'x'",
        "request.mcp.tool_name.lowerAscii() == 'get-sum' ? true : false",
        "-request.mcp.arguments.delta < 5 && request.mcp.arguments.n % 2 == 0",
        ".request.path == '/mcp' // a comment",
        "r'\\d+' == '\\\\d+' && \"\\u00e9\" == 'é' && '''a'b''' == \"a'b\"",
        "0x10 == 16 && 3u == 3u && 1.5e2 == 150.0 && null == null",
    ] {
        let expr = compile(src).unwrap_or_else(|e| panic!("{src}: {e}"));
        Program::new(expr).unwrap_or_else(|e| panic!("{src}: filter refuses: {e}"));
    }
}

#[test]
fn refusals_name_the_column_and_what_is_unsupported() {
    let cases: &[(&str, &str)] = &[
        ("request.mcp.tool_name.startsWith(", "CEL column 34: unexpected the end of the expression"),
        ("request.mcp.tool_name == 'a' )", "CEL column 30: unexpected ')' after the end of the expression"),
        ("request.unrecognized == 'bar'", "CEL column 9: unknown variable request.unrecognized; variables are: jwt.claims,"),
        ("source.unknown == 'foo'", "CEL column 8: unknown variable source.unknown"),
        ("unknown_variable.foo == 'bar'", "CEL column 1: unknown identifier 'unknown_variable'"),
        ("request == 'x'", "CEL column 1: 'request' is not a value by itself"),
        ("request.path", "CEL column 9: the expression must evaluate to a bool, but it is a string"),
        ("request.path == 1", "CEL column 14: '==' between string and int is never true"),
        ("request.path + 'x' == 'y'", "CEL column 14: string and list concatenation are not supported"),
        ("request.time.getFullYear('Europe/Paris') == 2026", "CEL column 14: getFullYear() with a time zone is not supported"),
        ("request.path.getFullYear() == 2026", "CEL column 14: getFullYear() applies to a timestamp, not a string"),
        ("int(request.mcp.arguments.a) < 5", "CEL column 1: the conversion function int() is not supported"),
        ("request.mcp.arguments.xs.map(x, x + 1) == [1]", "CEL column 26: the map() macro is not supported"),
        ("request.path.replace('a', 'b') == 'x'", "CEL column 14: method replace() is not supported"),
        ("{'a': 1}.a == 1", "CEL column 1: map literals and message construction ({...}) are not supported"),
        ("b'abc' == b'abc'", "CEL column 1: bytes literals are not supported"),
        ("request.headers['X-Team'] == 'a'", "CEL column 17: request.headers keys are lower-case: write 'x-team'"),
        ("request.headers[request.path] == 'a'", "CEL column 25: request.headers must be indexed with a string literal"),
        ("size(request.headers) > 0", "CEL column 14: request.headers can only be read by a constant name"),
        ("request.path.matches(request.mcp.tool_name)", "CEL column 34: matches() needs a string literal pattern"),
        ("request.path.matches('(a)\\\\1')", "not a regular expression the filter (regex-lite) accepts"),
        ("request.path.matches('(?=x)')", "not a regular expression the filter (regex-lite) accepts"),
        ("has(request.mcp.tool_name)", "CEL column 17: has() tests a key of a map value"),
        ("request.mcp.arguments.xs.all(request, true)", "CEL column 30: 'request' cannot be used as a comprehension variable"),
        ("request.mcp.tool_name == 'a\nb'", "CEL column 26: unterminated string literal (newline inside quotes)"),
        ("request.path == '/mcp' &&\n  request.method == 1", "CEL line 2 column 18: '==' between string and int"),
        ("99999999999999999999 > 1", "CEL column 1: int literal 99999999999999999999 out of range"),
        ("request.path == '\\q'", "CEL column 17: unknown escape sequence \\q"),
        ("request.path ~ 'x'", "CEL column 14: unexpected character '~'"),
    ];
    for (src, want) in cases {
        let got = refused(src);
        assert!(got.starts_with(want) || got.contains(want), "{src}\n  got:  {got}\n  want: {want}");
    }
}

#[test]
fn adversarial_expressions_are_bounded() {
    // Deep nesting: refused while parsing, at the column where the limit is crossed, without deep recursion.
    let deep = format!("{}true{}", "(".repeat(100_000), ")".repeat(100_000));
    assert!(refused(&deep).contains("characters; at most 4096"), "source length first");
    let deep = format!("{}true{}", "(".repeat(40), ")".repeat(40));
    assert_eq!(refused(&deep), "CEL column 33: expression is nested deeper than 32 levels");
    let nots = format!("{}true", "!".repeat(40));
    assert!(refused(&nots).contains("nested deeper than 32"));
    let chain = format!("1{} == 40", " + 1".repeat(39));
    assert!(refused(&chain).contains("nested deeper than 32"));
    // Wide but shallow: `||` chains are flattened, so they meet the node limit instead.
    let wide = vec!["1==1"; 300].join(" || ");
    assert!(refused(&wide).contains("more than 512 nodes"), "{}", refused(&wide));
    // Huge literals and lists.
    let big = format!("request.path == '{}'", "a".repeat(LIMITS.string_bytes + 1));
    assert!(refused(&big).contains("string literal is 1025 bytes"));
    let list: Vec<String> = (0..65).map(|i| i.to_string()).collect();
    assert!(refused(&format!("1 in [{}]", list.join(","))).contains("list literal has 65 items"));
    // Nested comprehensions beyond two.
    let nested = "request.mcp.arguments.a.all(x, request.mcp.arguments.b.all(y, request.mcp.arguments.c.all(z, true)))";
    assert!(refused(nested).contains("more than 2 nested"));
    // Catastrophic patterns compile (regex-lite is linear) or are refused; never exponential.
    assert!(compile("request.mcp.tool_name.matches('^(a+)+$')").is_ok());
    let long_pattern = format!("request.path.matches('{}')", "a".repeat(LIMITS.pattern_bytes + 1));
    assert!(refused(&long_pattern).contains("matches pattern is 257 bytes"));
}

const POLICIES: &str = r#"
apiVersion: agentic.networking.x-k8s.io/v0alpha0
kind: XBackend
metadata: {name: mcp, namespace: tools}
spec: {mcp: {serviceName: mcp, port: 8000}}
---
apiVersion: agentic.networking.x-k8s.io/v1alpha1
kind: XAccessPolicy
metadata: {name: cel, namespace: tools}
spec:
  targetRefs: [{group: agentic.networking.x-k8s.io, kind: XBackend, name: mcp}]
  action: Allow
  rules:
  - name: alice-sum-below-100
    source: {type: ServiceAccount, serviceAccount: {name: alice, namespace: agents}}
    authorization:
      type: CEL
      cel: {expression: "request.mcp.tool_name == 'get-sum' && request.mcp.arguments.a < 100"}
  - name: alice-polite-echo
    source: {type: ServiceAccount, serviceAccount: {name: alice, namespace: agents}}
    authorization:
      type: CEL
      cel: {expression: "request.mcp.tool_name == 'echo' && request.mcp.arguments.message.startsWith('hello')"}
  - name: allow-base-mcp
    source: {type: ServiceAccount, serviceAccount: {name: alice, namespace: agents}}
    authorization:
      type: Inline
      mcp: {mcpBaseProtocolMethodsOption: MATCH_BASE_PROTOCOL_METHODS}
  - name: prompts-by-cel
    source: {type: ServiceAccount, serviceAccount: {name: bob, namespace: agents}}
    authorization:
      type: CEL
      mcp: {methods: [{name: prompts/get}]}
      cel: {expression: "request.mcp.method == 'prompts/get' && source.service_account == 'bob'"}
"#;

#[test]
fn compiled_policies_decide_in_the_engine() {
    let config = compile_ok(POLICIES);
    let engine = Engine::from_json(&serde_json::to_vec(&config).unwrap()).unwrap();
    assert!(engine.needs_arguments());
    let alice = "spiffe://cluster.local/ns/agents/sa/alice";
    let bob = "spiffe://cluster.local/ns/agents/sa/bob";
    let decide = |principal: &str, body: &str| {
        let msg = jsonrpc::parse_with(body.as_bytes(), Options { capture_arguments: true }).unwrap();
        let op = McpOp::from_message(&msg);
        let request = Request {
            method: "POST",
            path: "/mcp",
            authority: "mcp.tools",
            destination_port: None,
            headers: &[],
            principal: Some(principal),
            backend: Some(0),
            time: None,
            jwt_claims: None,
        };
        engine.decide(&request, Some(&op)).allowed
    };
    let call = |tool: &str, args: Value| {
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": args}}).to_string()
    };
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}"#;
    assert!(decide(alice, init));
    assert!(decide(alice, &call("get-sum", json!({"a": 2, "b": 3}))));
    assert!(!decide(alice, &call("get-sum", json!({"a": 200, "b": 3}))));
    assert!(decide(alice, &call("echo", json!({"message": "hello there"}))));
    assert!(!decide(alice, &call("echo", json!({"message": "goodbye"}))));
    // The base-protocol rule does not grant tools (KAN: MATCH without methods is the plumbing only).
    assert!(!decide(alice, &call("delete-everything", json!({}))));
    // An mcp block on a CEL rule sets its scope: bob's prompts, not tools, and not the base protocol.
    let prompt = r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"greeting"}}"#;
    assert!(decide(bob, prompt));
    assert!(!decide(bob, &call("echo", json!({"message": "hello"}))));
    assert!(!decide(bob, init));
    assert!(!decide(alice, prompt));
}

#[test]
fn cel_policy_errors_point_into_the_expression() {
    let bad = POLICIES.replace("request.mcp.arguments.a < 100", "request.mcp.tool_name < 100");
    assert_eq!(
        compile_err(&bad),
        ["in.yaml doc 2 XAccessPolicy tools/cel: spec.rules[0].authorization.cel.expression: CEL column 61: operator '<' does not apply to string and int"]
    );
}

#[test]
fn lowering_is_deterministic_and_round_trips() {
    let src = "request.mcp.tool_name in ['a', 'b'] && request.mcp.arguments.n > 1 && request.time.getMonth() == 0";
    let a = compile(src).unwrap();
    let b = compile(src).unwrap();
    assert_eq!(a, b);
    let json = serde_json::to_string(&a).unwrap();
    let back: Expr = serde_json::from_str(&json).unwrap();
    assert_eq!(back, a);
}
