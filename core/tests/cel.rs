//! CEL rules in the filter: loading the compiled tree (limits, regexes), evaluating it against real parsed
//! requests through the engine, CEL's error semantics (errors never allow), and bounded cost on hostile input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use grantwall_core::cel::{self, Activation, Civil, EvalError, Expr, Program, Timestamp, Var, LIMITS};
use grantwall_core::config::CONFIG_VERSION;
use grantwall_core::engine::{Engine, Request};
use grantwall_core::jsonrpc::{self, Options, ParseError};
use grantwall_core::mcp::McpOp;
use serde_json::{json, Value};

const ALICE: &str = "spiffe://cluster.local/ns/agents/sa/alice";

/// One backend whose only policy has one CEL rule for ALICE, scoped to tools/call as the compiler emits it.
fn engine(cel: Value) -> Engine {
    try_engine(cel).unwrap()
}

fn try_engine(cel: Value) -> Result<Engine, grantwall_core::engine::ConfigError> {
    let config = json!({
        "version": CONFIG_VERSION,
        "principals": [ALICE],
        "backends": [{"name": "tools/mcp", "paths": ["/mcp"], "policies": [{"name": "tools/p", "rules": [
            {"name": "cel", "principals": [0], "mcp": {"methods": [{"method": "tools/call"}]}, "cel": cel},
            {"name": "base", "principals": [0], "mcp": {"baseProtocol": true, "methods": []}}
        ]}]}],
        "routes": {"authorities": {"mcp.tools": 0}}
    });
    Engine::from_json(config.to_string().as_bytes())
}

struct Req<'a> {
    path: &'a str,
    headers: Vec<(String, String)>,
    principal: Option<&'a str>,
    time: Option<Timestamp>,
}

impl Default for Req<'_> {
    fn default() -> Self {
        Req { path: "/mcp", headers: vec![], principal: Some(ALICE), time: None }
    }
}

/// Decide a POSTed JSON-RPC body through the real parser; returns (allowed, CEL error of a failed rule).
fn decide(e: &Engine, body: &str, r: &Req<'_>) -> (bool, Option<EvalError>) {
    let options = Options { capture_arguments: e.needs_arguments() };
    let msg = jsonrpc::parse_with(body.as_bytes(), options).unwrap();
    let op = McpOp::from_message(&msg);
    let request = Request {
        method: "POST",
        path: r.path,
        authority: "mcp.tools",
        destination_port: Some(443),
        headers: &r.headers,
        principal: r.principal,
        backend: Some(0),
        time: r.time,
        jwt_claims: None,
    };
    let d = e.decide(&request, Some(&op));
    (d.allowed, d.cel_error.map(|f| f.error))
}

fn call(tool: &str, arguments: Value) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}).to_string()
}

fn tool_is(name: &str) -> Value {
    json!({"eq": [{"var": "request.mcp.tool_name"}, {"string": name}]})
}

fn arg(name: &str) -> Value {
    json!({"select": [{"var": "request.mcp.arguments"}, name]})
}

/// An activation with only what `set` fills in.
fn activation<'a>(set: impl FnOnce(&mut Activation<'a>)) -> Activation<'a> {
    let mut a = Activation::default();
    set(&mut a);
    a
}

/// Evaluate an expression directly against an activation.
fn eval(expr: Value, act: &Activation<'_>) -> Result<bool, EvalError> {
    let program = Program::new(serde_json::from_value::<Expr>(expr).unwrap()).unwrap();
    cel::evaluate(&program, act)
}

#[test]
fn tool_name_equality_grants_only_that_tool() {
    let e = engine(tool_is("get-sum"));
    assert_eq!(decide(&e, &call("get-sum", json!({"a": 1, "b": 2})), &Req::default()), (true, None));
    assert!(!decide(&e, &call("echo", json!({"message": "hi"})), &Req::default()).0);
    // Another caller: the source must match too.
    assert!(!decide(&e, &call("get-sum", json!({})), &Req { principal: None, ..Req::default() }).0);
}

#[test]
fn kan_cel_rules_do_not_grant_base_protocol_or_other_methods() {
    // The CEL rule is scoped to tools/call; a true expression still does not grant prompts/get.
    let e = try_engine(json!({"bool": true})).unwrap();
    let prompt = r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"greeting"}}"#;
    assert!(!decide(&e, prompt, &Req { principal: None, ..Req::default() }).0);
    // Initialize passes through the separate base-protocol rule only.
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#;
    assert!(decide(&e, init, &Req::default()).0);
    assert!(!decide(&e, init, &Req { principal: None, ..Req::default() }).0);
}

#[test]
fn two_rules_or_and_errors_deny() {
    let e = engine(json!({"or": [tool_is("get-sum"), tool_is("non-existent")]}));
    assert!(decide(&e, &call("get-sum", json!({})), &Req::default()).0);
    assert!(!decide(&e, &call("echo", json!({})), &Req::default()).0);
}

#[test]
fn upstream_macros_expression() {
    // request.path.startsWith('/mc') && request.headers['mcp-protocol-version'].contains('2025')
    //   && request.mcp.tool_name.matches('^get-[a-z]+$')
    let e = engine(json!({"and": [
        {"call": ["startsWith", [{"var": "request.path"}, {"string": "/mc"}]]},
        {"call": ["contains", [{"header": "mcp-protocol-version"}, {"string": "2025"}]]},
        {"matches": [{"var": "request.mcp.tool_name"}, "^get-[a-z]+$"]}
    ]}));
    assert_eq!(e.header_names(), ["mcp-protocol-version"]);
    assert!(!e.needs_time() && !e.needs_arguments(), "no clock or argument capture unless a rule reads them");
    let v2025 = Req { headers: vec![("mcp-protocol-version".into(), "2025-06-18".into())], ..Req::default() };
    assert_eq!(decide(&e, &call("get-sum", json!({})), &v2025), (true, None));
    assert!(!decide(&e, &call("get-tiny-image", json!({})), &v2025).0, "'-' is not in [a-z]");
    assert!(!decide(&e, &call("echo", json!({})), &v2025).0);
    let v2026 = Req { headers: vec![("mcp-protocol-version".into(), "2026-07-28".into())], ..Req::default() };
    assert!(!decide(&e, &call("get-sum", json!({})), &v2026).0);
    // A missing header is an error ("no such key"), never a match; the decision says which rule failed.
    assert_eq!(decide(&e, &call("get-sum", json!({})), &Req::default()), (false, Some(EvalError::NoSuchKey)));
}

#[test]
fn native_variables() {
    let headers = vec![("x-team".to_owned(), "blue".to_owned())];
    let act = Activation::new(
        "POST",
        "/mcp/x?debug=1",
        "mcp.tools:8443",
        &headers,
        Some(ALICE),
        Some(Timestamp { seconds: 1_767_225_600, nanos: 0 }), // 2026-01-01T00:00:00Z, a Thursday
        Some("tools/call"),
        Some("get-sum"),
        None,
    );
    let s = |v: &str| json!({"var": v});
    let eq = |a: Value, b: Value| json!({"eq": [a, b]});
    for (expr, want) in [
        (eq(s("request.path"), json!({"string": "/mcp/x?debug=1"})), true),
        (eq(s("request.url_path"), json!({"string": "/mcp/x"})), true),
        (eq(s("request.method"), json!({"string": "POST"})), true),
        (eq(s("request.method"), json!({"string": "GET"})), false),
        (eq(s("request.host"), json!({"string": "mcp.tools:8443"})), true),
        (eq(json!({"header": "x-team"}), json!({"string": "blue"})), true),
        (json!({"hasHeader": "x-team"}), true),
        (json!({"hasHeader": "x-other"}), false),
        (eq(json!({"call": ["getFullYear", [s("request.time")]]}), json!({"int": 2026})), true),
        (eq(json!({"call": ["getFullYear", [s("request.time")]]}), json!({"int": 2025})), false),
        (eq(json!({"call": ["getDayOfWeek", [s("request.time")]]}), json!({"int": 4})), true),
        (json!({"lt": [s("request.time"), {"timestamp": {"seconds": 1_767_225_601}}]}), true),
        (eq(s("request.mcp.tool_name"), json!({"string": "get-sum"})), true),
        (eq(s("request.mcp.method"), json!({"string": "tools/call"})), true),
        (eq(s("source.spiffe_id"), json!({"string": ALICE})), true),
        (eq(s("source.namespace"), json!({"string": "agents"})), true),
        (eq(s("source.service_account"), json!({"string": "alice"})), true),
        (eq(s("source.service_account"), json!({"string": "bob"})), false),
        (json!({"has": [s("jwt.claims"), "sub"]}), false),
    ] {
        assert_eq!(eval(expr.clone(), &act), Ok(want), "{expr}");
    }
    // Reading what this request does not have is an error, not a value.
    assert_eq!(eval(eq(json!({"header": "x-missing"}), json!({"string": ""})), &act), Err(EvalError::NoSuchKey));
    assert_eq!(
        eval(eq(json!({"select": [s("jwt.claims"), "sub"]}), json!({"string": "x"})), &act),
        Err(EvalError::NoSuchKey)
    );
    let bare = Activation::default();
    for v in [Var::RequestTime, Var::McpToolName, Var::McpMethod, Var::McpArguments, Var::SourceSpiffeId, Var::SourceNamespace] {
        let expr = json!({"eq": [{"var": v}, {"string": ""}]});
        assert_eq!(eval(expr, &bare), Err(EvalError::Absent(v)), "{}", v.name());
    }
    // A SPIFFE ID that is not ns/NAME/sa/NAME has no namespace or service account.
    let other = activation(|a| a.principal = Some("spiffe://cluster.local/workload/x"));
    assert_eq!(eval(eq(s("source.namespace"), json!({"string": ""})), &other), Err(EvalError::Absent(Var::SourceNamespace)));
}

#[test]
fn error_semantics_follow_cel() {
    let act = Activation::default();
    let err = json!({"eq": [{"header": "missing"}, {"string": "x"}]});
    let t = json!({"bool": true});
    let f = json!({"bool": false});
    assert_eq!(eval(json!({"and": [err, f]}), &act), Ok(false), "false && error is false");
    assert_eq!(eval(json!({"or": [err, t]}), &act), Ok(true), "error || true is true");
    assert_eq!(eval(json!({"and": [err, t]}), &act), Err(EvalError::NoSuchKey));
    assert_eq!(eval(json!({"or": [f, err]}), &act), Err(EvalError::NoSuchKey));
    assert_eq!(eval(json!({"not": err}), &act), Err(EvalError::NoSuchKey));
    assert_eq!(eval(json!({"cond": [err, t, f]}), &act), Err(EvalError::NoSuchKey));
    // A non-bool result is not "truthy".
    assert_eq!(eval(json!({"string": "yes"}), &act), Err(EvalError::NotBool));
    assert_eq!(eval(json!({"int": 1}), &act), Err(EvalError::NotBool));
}

#[test]
fn numbers_compare_across_types_and_arithmetic_is_checked() {
    let act = Activation::default();
    let ok = |e: Value| eval(e, &act);
    assert_eq!(ok(json!({"eq": [{"int": 1}, {"double": 1.0}]})), Ok(true));
    assert_eq!(ok(json!({"eq": [{"uint": 7}, {"int": 7}]})), Ok(true));
    assert_eq!(ok(json!({"lt": [{"double": 99.5}, {"int": 100}]})), Ok(true));
    assert_eq!(ok(json!({"lt": [{"int": 9_007_199_254_740_993i64}, {"double": 9_007_199_254_740_992.0}]})), Ok(false));
    assert_eq!(ok(json!({"gt": [{"uint": u64::MAX}, {"int": -1}]})), Ok(true));
    assert_eq!(ok(json!({"eq": [{"add": [{"int": i64::MAX}, {"int": 1}]}, {"int": 0}]})), Err(EvalError::Overflow));
    assert_eq!(ok(json!({"eq": [{"div": [{"int": 1}, {"int": 0}]}, {"int": 0}]})), Err(EvalError::DivisionByZero));
    assert_eq!(ok(json!({"eq": [{"rem": [{"int": i64::MIN}, {"int": -1}]}, {"int": 0}]})), Err(EvalError::Overflow));
    assert_eq!(ok(json!({"eq": [{"neg": {"int": i64::MIN}}, {"int": 0}]})), Err(EvalError::Overflow));
    assert_eq!(ok(json!({"eq": [{"add": [{"int": 1}, {"double": 1.0}]}, {"int": 2}]})), Err(EvalError::TypeMismatch("_+_")));
    assert_eq!(ok(json!({"lt": [{"string": "a"}, {"int": 1}]})), Err(EvalError::TypeMismatch("_<_")));
    // Different types are simply unequal (CEL heterogeneous equality).
    assert_eq!(ok(json!({"eq": [{"string": "1"}, {"int": 1}]})), Ok(false));
    assert_eq!(ok(json!({"in": [{"int": 2}, {"list": [{"int": 1}, {"double": 2.0}]}]})), Ok(true));
    assert_eq!(ok(json!({"eq": [{"call": ["size", [{"string": "héllo"}]]}, {"int": 5}]})), Ok(true), "size counts characters");
}

#[test]
fn argument_constraints() {
    // get-sum only while a < 100; echo only for messages starting with "hello".
    let e = engine(json!({"or": [
        {"and": [tool_is("get-sum"), {"lt": [arg("a"), {"int": 100}]}]},
        {"and": [tool_is("echo"), {"call": ["startsWith", [arg("message"), {"string": "hello"}]]}]}
    ]}));
    assert!(e.needs_arguments());
    let r = Req::default();
    assert!(decide(&e, &call("get-sum", json!({"a": 99, "b": 1})), &r).0);
    assert!(decide(&e, &call("get-sum", json!({"a": 99.5, "b": 1})), &r).0);
    assert!(!decide(&e, &call("get-sum", json!({"a": 100, "b": 1})), &r).0);
    assert!(!decide(&e, &call("get-sum", json!({"a": 1e300, "b": 1})), &r).0);
    // A string is not a number: type error, deny.
    assert!(!decide(&e, &call("get-sum", json!({"a": "5", "b": 1})), &r).0);
    // No `a`, or no arguments at all: error, deny.
    assert!(!decide(&e, &call("get-sum", json!({"b": 1})), &r).0);
    let no_args = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get-sum"}}"#;
    assert!(!decide(&e, no_args, &r).0);
    assert!(decide(&e, &call("echo", json!({"message": "hello world"})), &r).0);
    assert!(!decide(&e, &call("echo", json!({"message": "rm -rf /"})), &r).0);
    assert!(!decide(&e, &call("echo", json!({"message": ["hello"]})), &r).0);
}

#[test]
fn path_arguments_and_lists() {
    // read_file only under /workspace/, and every path of a batch operation too.
    let under = |v: Value| json!({"call": ["startsWith", [v, {"string": "/workspace/"}]]});
    let e = engine(json!({"and": [
        {"in": [{"var": "request.mcp.tool_name"}, {"list": [{"string": "read_file"}, {"string": "read_files"}]}]},
        {"or": [
            {"and": [{"has": [{"var": "request.mcp.arguments"}, "path"]}, under(arg("path"))]},
            {"and": [{"has": [{"var": "request.mcp.arguments"}, "paths"]}, {"all": [arg("paths"), under(json!({"local": 0}))]}]}
        ]}
    ]}));
    let r = Req::default();
    assert!(decide(&e, &call("read_file", json!({"path": "/workspace/a.txt"})), &r).0);
    assert!(!decide(&e, &call("read_file", json!({"path": "/etc/passwd"})), &r).0);
    assert!(decide(&e, &call("read_files", json!({"paths": ["/workspace/a", "/workspace/b"]})), &r).0);
    assert!(!decide(&e, &call("read_files", json!({"paths": ["/workspace/a", "/etc/shadow"]})), &r).0);
    assert!(!decide(&e, &call("read_files", json!({"paths": ["/workspace/a", 7]})), &r).0);
    assert!(!decide(&e, &call("write_file", json!({"path": "/workspace/a"})), &r).0);
}

#[test]
fn arguments_are_parsed_only_when_a_rule_reads_them() {
    let without = engine(tool_is("get-sum"));
    assert!(!without.needs_arguments());
    let body = call("get-sum", json!({"a": 1}));
    let msg = jsonrpc::parse_with(body.as_bytes(), Options { capture_arguments: false }).unwrap();
    assert_eq!(msg.arguments, None, "not captured unless asked");
    let msg = jsonrpc::parse_with(body.as_bytes(), Options { capture_arguments: true }).unwrap();
    assert_eq!(msg.arguments, Some(r#"{"a":1}"#));

    let act = activation(|a| {
        a.tool_name = Some("get-sum");
        a.arguments = Some(r#"{"a":1}"#);
    });
    assert_eq!(eval(tool_is("get-sum"), &act), Ok(true));
    assert!(!act.arguments_parsed(), "a rule that does not read arguments never parses them");
    assert_eq!(eval(json!({"eq": [arg("a"), {"int": 1}]}), &act), Ok(true));
    assert!(act.arguments_parsed());
}

#[test]
fn captured_arguments_are_checked_as_strictly_as_the_rest() {
    for capture in [false, true] {
        let options = Options { capture_arguments: capture };
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi","message":"rm"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"x":[{"k":1,"k":2}]}}}"#,
        ] {
            let e = jsonrpc::parse_with(body.as_bytes(), options).unwrap_err();
            assert!(matches!(e, ParseError::DuplicateKey(_)), "capture={capture}: {body}: {e:?}");
        }
        let e = jsonrpc::parse_with(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","Arguments":{}}}"#, options).unwrap_err();
        assert!(matches!(e, ParseError::AmbiguousKey(_)));
    }
}

#[test]
fn comprehensions() {
    let act = activation(|a| a.arguments = Some(r#"{"xs":[1,2,3],"m":{"a":1,"b":2}}"#));
    let x = json!({"local": 0});
    let ok = |e: Value| eval(e, &act);
    assert_eq!(ok(json!({"all": [arg("xs"), {"gt": [x, {"int": 0}]}]})), Ok(true));
    assert_eq!(ok(json!({"exists": [arg("xs"), {"eq": [x, {"int": 3}]}]})), Ok(true));
    assert_eq!(ok(json!({"existsOne": [arg("xs"), {"gt": [x, {"int": 1}]}]})), Ok(false));
    assert_eq!(ok(json!({"existsOne": [arg("m"), {"eq": [x, {"string": "a"}]}]})), Ok(true), "maps range over keys");
    assert_eq!(ok(json!({"in": [{"string": "b"}, arg("m")]})), Ok(true));
    assert_eq!(ok(json!({"eq": [{"call": ["size", [arg("m")]]}, {"int": 2}]})), Ok(true));
    // all(): a false element wins over an error in another; otherwise the error stands.
    let xs_mixed = activation(|a| a.arguments = Some(r#"{"xs":["a",0]}"#));
    let starts = json!({"call": ["startsWith", [x, {"string": "a"}]]});
    assert_eq!(eval(json!({"all": [arg("xs"), starts.clone()]}), &xs_mixed), Err(EvalError::TypeMismatch("startsWith")));
    assert_eq!(eval(json!({"exists": [arg("xs"), starts]}), &xs_mixed), Ok(true));
}

#[test]
fn evaluation_cost_is_bounded() {
    // 3000 elements, nested: 9 million iterations if unbounded; the step budget stops it, and stopping denies.
    let xs: Vec<u32> = (0..3000).collect();
    let args = json!({"xs": xs}).to_string();
    let act = activation(|a| a.arguments = Some(&args));
    let nested = json!({"all": [arg("xs"), {"all": [arg("xs"), {"bool": true}]}]});
    assert_eq!(eval(nested, &act), Err(EvalError::BudgetExceeded));
    // Scanning a long list with `in` spends budget per element too.
    let big: Vec<Value> = (0..LIMITS.list_items).map(|i| json!({"int": -1 - i as i64})).collect();
    let many_in = json!({"exists": [arg("xs"), {"in": [{"local": 0}, {"list": big}]}]});
    assert_eq!(eval(many_in, &act), Err(EvalError::BudgetExceeded));
}

#[test]
fn catastrophic_regex_is_linear() {
    // A classic backtracking bomb: regex-lite has no backtracking, so this is linear in the input.
    let input = format!("{}!", "a".repeat(100_000));
    let act = activation(|a| a.tool_name = Some(&input));
    #[cfg(not(target_arch = "wasm32"))]
    let started = std::time::Instant::now();
    assert_eq!(eval(json!({"matches": [{"var": "request.mcp.tool_name"}, "^(a+)+$"]}), &act), Ok(false));
    assert_eq!(eval(json!({"matches": [{"var": "request.mcp.tool_name"}, "(a|aa)+b"]}), &act), Ok(false));
    #[cfg(not(target_arch = "wasm32"))]
    assert!(started.elapsed().as_secs() < 5, "took {:?}", started.elapsed());
}

#[test]
fn loading_refuses_what_could_be_costly_or_wrong() {
    let mut deep = json!({"bool": true});
    for _ in 0..LIMITS.depth {
        deep = json!({"not": deep});
    }
    let wide: Vec<Value> = (0..LIMITS.nodes).map(|_| json!({"bool": true})).collect();
    let cases = [
        (deep, "nested deeper than 32"),
        (json!({"or": wide}), "more than 512 nodes"),
        (json!({"eq": [{"string": "x".repeat(LIMITS.string_bytes + 1)}, {"string": ""}]}), "string literal is 1025 bytes"),
        (json!({"in": [{"int": 1}, {"list": (0..=LIMITS.list_items).map(|i| json!({"int": i})).collect::<Vec<_>>()}]}), "list literal has 65 items"),
        (json!({"matches": [{"var": "request.path"}, "(unclosed"]}), "not a regular expression the filter (regex-lite) accepts"),
        (json!({"matches": [{"var": "request.path"}, "a".repeat(LIMITS.pattern_bytes + 1)]}), "matches pattern is 257 bytes"),
        (json!({"matches": [{"var": "request.path"}, "(a)\\1"]}), "not a regular expression"),
        (json!({"eq": [{"local": 0}, {"int": 1}]}), "local 0 is not bound"),
        (json!({"hasHeader": "X-Team"}), "lower-case header name"),
        (json!({"call": ["startsWith", [{"var": "request.path"}]]}), "startsWith takes 2 argument(s)"),
        (json!({"and": [{"bool": true}]}), "at least two operands"),
        (json!({"all": [{"list": []}, {"all": [{"list": []}, {"all": [{"list": []}, {"bool": true}]}]}]}), "more than 2 nested"),
        (json!({"timestamp": {"seconds": 0, "nanos": 1_000_000_000}}), "nanos"),
    ];
    for (expr, want) in cases {
        let err = try_engine(expr.clone()).err().unwrap_or_else(|| panic!("loaded: {expr}"));
        assert_eq!(err.path, "backends[0].policies[0].rules[0].cel", "{expr}");
        assert!(err.message.contains(want), "{expr}: {}", err.message);
    }
    // Unknown node kinds and variables are refused by the schema, with the field named.
    for bad in [json!({"eval": "x"}), json!({"var": "request.body"}), json!({"call": ["exec", []]})] {
        let err = try_engine(bad.clone()).err().unwrap();
        assert!(err.path.starts_with("backends[0].policies[0].rules[0].cel"), "{bad}: {}", err.path);
    }
}

#[test]
fn calendar_fields() {
    for (seconds, (year, month, day, weekday, yearday)) in [
        (0i64, (1970, 1, 1, 4, 0)),
        (951_782_400, (2000, 2, 29, 2, 59)),
        (1_767_225_599, (2025, 12, 31, 3, 364)),
        (-1, (1969, 12, 31, 3, 364)),
        (4_107_542_400, (2100, 3, 1, 1, 59)),
    ] {
        let c = Civil::from_timestamp(Timestamp { seconds, nanos: 0 });
        assert_eq!((c.year, c.month, c.day, c.weekday, c.yearday), (year, month, day, weekday, yearday), "{seconds}");
    }
    let c = Civil::from_timestamp(Timestamp { seconds: 3600 * 13 + 60 * 7 + 9, nanos: 250_000_000 });
    assert_eq!((c.hour, c.minute, c.second, c.millis), (13, 7, 9, 250));
}

#[test]
fn every_node_kind_round_trips_through_json() {
    // The filter decodes by hand (cel/decode.rs); the compiler writes with serde's derive: they must agree.
    let x = json!({"var": "request.path"});
    let n = json!({"int": 1});
    let e = json!({"or": [
        {"eq": [{"var": "request.mcp.tool_name"}, {"string": "get-sum"}]},
        {"lt": [{"select": [{"var": "request.mcp.arguments"}, "a"]}, {"int": -100}]},
        {"matches": [{"header": "x-team"}, "^blue$"]},
        {"exists": [{"list": ["null", {"uint": 18_446_744_073_709_551_615u64}, {"double": 1.5}, {"bool": false}]},
                    {"eq": [{"local": 0}, "null"]}]},
        {"all": [{"var": "jwt.claims"}, {"existsOne": [{"list": []}, {"hasHeader": "x"}]}]},
        {"has": [{"var": "request.mcp.arguments"}, "path"]},
        {"cond": [{"not": {"bool": true}}, {"bool": true}, {"bool": false}]},
        {"ne": [{"neg": n}, {"index": [{"list": [n]}, {"int": 0}]}]},
        {"le": [{"add": [n, n]}, {"sub": [n, n]}]},
        {"gt": [{"mul": [n, n]}, {"div": [n, n]}]},
        {"ge": [{"rem": [n, n]}, {"timestamp": {"seconds": -5, "nanos": 7}}]},
        {"in": [x, {"list": [x]}]},
        {"and": [{"call": ["startsWith", [x, {"string": "/"}]]}, {"call": ["getFullYear", [{"var": "request.time"}]]}]}
    ]});
    let parsed: Expr = serde_json::from_value(e.clone()).unwrap();
    assert_eq!(serde_json::to_value(&parsed).unwrap(), e);
    for bad in [json!({"eq": [x]}), json!({"timestamp": {"seconds": 1, "zone": "UTC"}}), json!({"a": 1, "b": 2}), json!(1)] {
        assert!(serde_json::from_value::<Expr>(bad.clone()).is_err(), "{bad}");
    }
}

/// A listed tool: judged before any call, so its arguments are unknown.
fn listed(e: &Engine, tool: &str) -> bool {
    let request = Request {
        method: "POST",
        path: "/mcp",
        authority: "mcp.tools",
        destination_port: Some(443),
        headers: &[],
        principal: Some(ALICE),
        backend: Some(0),
        time: None,
        jwt_claims: None,
    };
    let op = McpOp { name: "tools/call", base: false, method: Some(grantwall_core::config::McpMethod::ToolsCall), target: Some(tool), arguments: None };
    e.decide_listing(&request, &op).allowed
}

#[test]
fn a_tool_is_listed_when_some_arguments_could_pass() {
    // get-sum only below 100: listed (some call passes), and each call is still judged by its arguments.
    let small_sums = engine(json!({"and": [tool_is("get-sum"), {"lt": [arg("a"), {"int": 100}]}]}));
    assert!(listed(&small_sums, "get-sum"));
    assert!(!listed(&small_sums, "echo"), "false && unknown is false: the tool-name test settles it");
    assert!(decide(&small_sums, &call("get-sum", json!({"a": 5})), &Req::default()).0);
    assert!(!decide(&small_sums, &call("get-sum", json!({"a": 500})), &Req::default()).0);
    // A plain call without arguments is still denied: "unknown" exists only for listing.
    assert_eq!(decide(&small_sums, &call("get-sum", json!(null)), &Req::default()).0, false);

    // Decided without the arguments: the arguments cannot change it.
    let either = engine(json!({"or": [tool_is("echo"), {"lt": [arg("a"), {"int": 1}]}]}));
    assert!(listed(&either, "echo"), "true || unknown is true");
    assert!(listed(&either, "anything"), "the argument test could pass for any tool");
    let never = engine(json!({"and": [tool_is("echo"), {"eq": [{"var": "source.namespace"}, {"string": "elsewhere"}]}]}));
    assert!(!listed(&never, "echo"), "no argument can make a false identity test true");
}
