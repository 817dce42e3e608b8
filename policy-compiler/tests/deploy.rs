//! The deployment commands through the real binary: `package` (OCI layout), `compile --emit`, `explain`.
//! The same artifacts are checked against real tools in tests/e2e/test_deploy.py (skopeo, Envoy, JSON Schema).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;

/// A stand-in module: a valid core-Wasm header is all `package` checks.
const WASM: &[u8] = b"\0asm\x01\0\0\0 stand-in for dist/grantwall.wasm";

fn grants() -> String {
    manifest_dir().join("../tests/e2e/policies/grants.yaml").display().to_string()
}

fn run(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = grantwall(dir, args, None);
    (out.status.code(), stdout(&out), stderr(&out))
}

#[test]
fn package_prints_a_digest_that_does_not_change_between_runs() {
    let dir = temp_dir("pkg");
    std::fs::write(dir.join("f.wasm"), WASM).unwrap();
    let (code, a, err) = run(&dir, &["package", "--wasm", "f.wasm", "-o", "a", "--tar", "a.tar"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(a.trim().starts_with("sha256:") && a.trim().len() == 71, "{a}");
    assert!(err.contains("WasmPlugin spec.sha256: "), "{err}");
    let (_, b, _) = run(&dir, &["package", "--wasm", "f.wasm", "-o", "b", "--tar", "b.tar"]);
    assert_eq!(a, b);
    assert_eq!(std::fs::read(dir.join("a.tar")).unwrap(), std::fs::read(dir.join("b.tar")).unwrap());
    for f in ["oci-layout", "index.json"] {
        assert_eq!(std::fs::read(dir.join("a").join(f)).unwrap(), std::fs::read(dir.join("b").join(f)).unwrap());
    }
    // Packaging again into the same directory replaces the layout, same digest.
    let (_, again, _) = run(&dir, &["package", "--wasm", "f.wasm", "-o", "a"]);
    assert_eq!(a, again);
    // The compat variant is another image.
    let (_, compat, _) = run(&dir, &["package", "--wasm", "f.wasm", "-o", "c", "--variant", "compat"]);
    assert_ne!(a, compat);
}

#[test]
fn package_refuses_a_missing_or_non_wasm_module_and_needs_a_destination() {
    let dir = temp_dir("pkg-bad");
    let (code, _, err) = run(&dir, &["package", "--wasm", "nope.wasm", "-o", "x"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot read nope.wasm") && err.contains("make build"), "{err}");
    std::fs::write(dir.join("t.txt"), b"hello").unwrap();
    let (code, _, err) = run(&dir, &["package", "--wasm", "t.txt", "-o", "x"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("not a WebAssembly module"), "{err}");
    assert!(!dir.join("x").exists());
    let (code, _, err) = run(&dir, &["package", "--wasm", "t.txt"]);
    assert_eq!(code, Some(2), "{err}");
}

#[test]
fn wasmplugin_pins_the_digest_of_a_package_directory() {
    let dir = temp_dir("emit");
    std::fs::write(dir.join("f.wasm"), WASM).unwrap();
    let (_, digest, _) = run(&dir, &["package", "--wasm", "f.wasm", "-o", "oci"]);
    let hex = digest.trim().trim_start_matches("sha256:");
    let (code, out, err) = run(
        &dir,
        &["compile", "-f", &grants(), "--gateway", "gw-ns/agents", "--emit", "wasmplugin", "--image", "oci://r.example/g:0.1.0", "--package", "oci"],
    );
    assert_eq!(code, Some(0), "{err}");
    let doc = &grantwall_policy_compiler::yaml::parse_documents(&out).unwrap()[0].value;
    assert_eq!(doc["spec"]["sha256"], hex);
    assert_eq!(doc["metadata"]["namespace"], "gw-ns");
    assert!(!err.contains("does not pin"), "{err}");
    // The same with --sha256, prefix and all.
    let (_, out2, _) = run(
        &dir,
        &["compile", "-f", &grants(), "--gateway", "gw-ns/agents", "--emit", "wasmplugin", "--image", "oci://r.example/g:0.1.0", "--sha256", digest.trim()],
    );
    assert_eq!(out, out2);
}

#[test]
fn emit_flags_are_checked_against_the_form() {
    let dir = temp_dir("emit-flags");
    let cases: &[(&[&str], i32, &str)] = &[
        (&["--emit", "wasmplugin", "--image", "oci://r/g:1"], 1, "--gateway NAMESPACE/NAME"),
        (&["--gateway", "a/b", "--emit", "wasmplugin"], 1, "needs --image"),
        (&["--emit", "envoy", "--image", "oci://r/g:1"], 2, "--image is used only with --emit wasmplugin"),
        (&["--emit", "config", "--wasm-file", "/x.wasm"], 2, "--wasm-file is used only with --emit envoy or ecds"),
        (&["--emit", "envoy", "--pretty"], 2, "--pretty is used only with --emit config"),
        (&["--gateway", "a/b", "--emit", "wasmplugin", "--image", "ftp://r/g"], 2, "not ftp://"),
        (&["--gateway", "a/b", "--emit", "wasmplugin", "--image", "r/g", "--sha256", "xyz"], 2, "64 hex digits"),
        (&["--gateway", "a/b", "--emit", "wasmplugin", "--image", "r/g", "--package", "nowhere"], 2, "not an OCI image layout"),
        (&["--emit", "ecds", "--name", "Bad_Name"], 2, "lower-case DNS name"),
    ];
    for (args, want_code, want) in cases {
        let mut full = vec!["compile", "-f"];
        let g = grants();
        full.push(&g);
        full.extend_from_slice(args);
        let (code, _, err) = run(&dir, &full);
        assert_eq!(code, Some(*want_code), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn explain_exit_status_and_record_shape() {
    let dir = temp_dir("explain");
    let g = grants();
    let base = ["explain", "-f", g.as_str(), "--backend", "tools/mcp-server", "--mcp", "tools/call"];
    let with = |extra: &[&str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.extend_from_slice(extra);
        run(&dir, &a)
    };
    let (code, out, _) = with(&["--sa", "agents/bob", "--tool", "echo", "--json"]);
    assert_eq!(code, Some(0));
    let rec: Value = serde_json::from_str(&out).unwrap();
    let keys: Vec<&str> = rec.as_object().unwrap().keys().map(String::as_str).collect();
    // Exactly the filter's AuditRecord fields.
    let mut want = vec![
        "decision", "reason", "identity", "identitySource", "gateway", "backend", "httpMethod", "path", "mcpMethod", "target",
        "level", "policy", "rule", "detail",
    ];
    want.sort_unstable();
    assert_eq!(keys, want);
    assert_eq!((rec["policy"].as_str(), rec["rule"].as_str()), (Some("tools/agent-tools"), Some("bob-echo")));

    let (code, out, _) = with(&["--as", "spiffe://cluster.local/ns/agents/sa/bob", "--tool", "get-sum"]);
    assert_eq!(code, Some(3));
    assert!(
        out.starts_with("DENY tools/call get-sum for spiffe://cluster.local/ns/agents/sa/bob on tools/mcp-server: backend level default-deny — no rule of policies [tools/agent-tools] grants it; the caller is named by rule bob-echo (grants the base protocol, tools/call [echo])"),
        "{out}"
    );
    // kubectl's impersonation syntax names the same caller.
    let (code, _, _) = with(&["--as", "system:serviceaccount:agents:bob", "--tool", "echo"]);
    assert_eq!(code, Some(0));
    // --args goes through the filter's parser: a duplicate key is refused as on the wire.
    let (code, out, _) = with(&["--sa", "agents/bob", "--tool", "echo", "--args", r#"{"a":1,"a":2}"#, "--json"]);
    assert_eq!(code, Some(3));
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["reason"], "duplicate-key");
    let (_, out, _) = with(&["--sa", "agents/bob", "--tool", "echo", "--args", r#"{"message":"hi"}"#]);
    assert!(out.contains("no rule of this config reads tool arguments"), "{out}");
    // Bad command lines and inputs.
    for (extra, code_want, msg) in [
        (&["--as", "bob", "--tool", "echo"][..], 2, "expected a SPIFFE ID"),
        (&["--sa", "bob", "--tool", "echo"][..], 2, "NAMESPACE/NAME"),
        (&["--sa", "agents/bob", "--tool", "echo", "--args", "[1]"][..], 1, "JSON object"),
        (&["--sa", "agents/bob", "--tool", "echo", "--method", "GET"][..], 1, "POST body"),
        (&["--sa", "agents/bob", "--tool", "echo", "-H", "novalue"][..], 2, "'Name: value'"),
    ] {
        let (code, _, err) = with(extra);
        assert_eq!(code, Some(code_want), "{extra:?}: {err}");
        assert!(err.contains(msg), "{extra:?}: {err}");
    }
    let (code, _, err) = run(&dir, &["explain", "-f", &g, "--backend", "tools/nope", "--mcp", "ping"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("it has: tools/mcp-server"), "{err}");
}

#[test]
fn explain_reads_a_compiled_config_and_agrees_with_compiling_on_the_fly() {
    let dir = temp_dir("explain-config");
    let g = grants();
    let compiled = grantwall(&dir, &["compile", "-f", &g, "-o", "c.json"], None);
    assert!(compiled.status.success());
    let request = ["--sa", "agents/alice", "--backend", "tools/mcp-server", "--mcp", "resources/read", "--uri", "mem://docs/readme", "--json"];
    let mut from_config = vec!["explain", "--config", "c.json"];
    from_config.extend_from_slice(&request);
    let mut from_policies = vec!["explain", "-f", g.as_str()];
    from_policies.extend_from_slice(&request);
    let (code, a, _) = run(&dir, &from_config);
    let (_, b, _) = run(&dir, &from_policies);
    assert_eq!(code, Some(0));
    assert_eq!(a, b);
    // A config the filter would refuse is reported as such.
    std::fs::write(dir.join("bad.json"), br#"{"version":"grantwall.io/v0"}"#).unwrap();
    let (code, _, err) = run(&dir, &["explain", "--config", "bad.json", "--mcp", "ping"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("the filter would refuse this config") && err.contains("unsupported version"), "{err}");
}

#[test]
fn explain_no_policy_and_non_mcp_traffic() {
    let dir = temp_dir("explain-nopolicy");
    let g = grants();
    // No XBackend matched and no Gateway policy: the filter does not even inspect it.
    let (code, out, _) = run(&dir, &["explain", "-f", &g, "--authority", "elsewhere", "--path", "/x", "--method", "GET", "--json"]);
    assert_eq!(code, Some(0));
    let rec: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((rec["reason"].as_str(), rec["level"].as_str()), (Some("no-policy"), None));
    // The backend found by its Istio cluster name, off its MCP path: judged as non-MCP traffic, denied.
    let (code, out, _) = run(
        &dir,
        &["explain", "-f", &g, "--cluster", "outbound|8000||mcp-server.tools.svc.cluster.local", "--path", "/metrics", "--method", "GET", "--sa", "agents/alice"],
    );
    assert_eq!(code, Some(3));
    assert!(out.contains("GET /metrics (not MCP)") && out.contains("grants the base protocol, tools/call"), "{out}");
}

/// examples/wasmplugin.yaml is generated; it must be exactly what the compiler makes of the example policies
/// and the example Gateway now (the same command as `make examples`).
#[test]
fn wasmplugin_example_is_current() {
    let root = manifest_dir().join("..");
    let out = grantwall(
        &root,
        &[
            "compile", "-f", "examples/policies/", "-f", "examples/istio/", "--emit", "wasmplugin",
            "--image", "oci://registry.example.com/grantwall:0.1.0",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let checked_in = std::fs::read_to_string(root.join("examples/wasmplugin.yaml")).unwrap();
    assert!(stdout(&out) == checked_in, "examples/wasmplugin.yaml is stale: run `make examples` and commit it");
}
