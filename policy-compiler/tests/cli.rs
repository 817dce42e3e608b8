//! The `grantwall` binary end to end: flags, inputs, outputs, exit codes and error format.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use common::*;

const POLICIES: &str = "apiVersion: agentic.networking.x-k8s.io/v0alpha0
kind: XBackend
metadata: {name: b}
spec: {mcp: {serviceName: svc, port: 80}}
---
apiVersion: v1
kind: Service
metadata: {name: svc}
---
apiVersion: agentic.networking.x-k8s.io/v1alpha1
kind: XAccessPolicy
metadata:
  name: p1
spec:
  targetRefs: [{group: agentic.networking.x-k8s.io, kind: XBackend, name: b}]
  action: Allow
  rules:
  - name: r
    authorization:
      type: Inline
      mcp:
        methods:
        - name: tools/call
          params: [ok, this-tool-name-is-too-long]
";

#[test]
fn error_format_is_file_doc_kind_name_field_message() {
    let dir = temp_dir("format");
    write(&dir, "policies.yaml", POLICIES);
    let out = grantwall(&dir, &["compile", "-f", "policies.yaml"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        stderr(&out),
        "policies.yaml doc 3 XAccessPolicy default/p1: spec.rules[0].authorization.mcp.methods[0].params[1]: longer than 20\n\
         grantwall: 1 error, nothing written\n"
    );
}

#[test]
fn all_errors_are_reported_one_per_line() {
    let dir = temp_dir("many");
    write(&dir, "a.yaml", POLICIES);
    write(&dir, "b.yaml", "apiVersion: agentic.networking.x-k8s.io/v0alpha0\nkind: XBackend\nmetadata: {name: x}\nspec: {mcp: {port: 80, extra: 1}}\n");
    let out = grantwall(
        &dir,
        &[
            "compile",
            "-f",
            "a.yaml",
            "-f",
            "b.yaml",
            "-f",
            "missing.yaml",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 5, "{err}");
    assert!(lines[0].starts_with("missing.yaml: cannot read: "), "{err}");
    assert_eq!(lines[1], "a.yaml doc 3 XAccessPolicy default/p1: spec.rules[0].authorization.mcp.methods[0].params[1]: longer than 20");
    assert_eq!(lines[2], "b.yaml doc 1 XBackend default/x: spec.mcp.extra: unknown field (not in the XBackend v0alpha0 schema; the API server would drop it silently)");
    assert_eq!(lines[3], "b.yaml doc 1 XBackend default/x: spec.mcp: exactly one of the fields in [serviceName hostname] must be set");
    assert_eq!(lines[4], "grantwall: 4 errors, nothing written");
}

#[test]
fn check_validates_and_writes_nothing() {
    let dir = temp_dir("check");
    let quickstart = fixtures().join("kan-examples/quickstart/e2e.yaml");
    let out = grantwall(
        &dir,
        &[
            "compile",
            "-f",
            quickstart.to_str().unwrap(),
            "--check",
            "-o",
            "out.json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert!(!dir.join("out.json").exists());
    assert_eq!(
        stderr(&out),
        "grantwall: ok: 2 XBackends, 2 XAccessPolicies; gateway quickstart-ns/agentic-net-gateway: 0 policies; backends: 2 policies; 1 principal; routes: 2 clusters, 5 authorities\n"
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

#[test]
fn stdin_input_and_output_file() {
    let dir = temp_dir("stdin");
    let text =
        std::fs::read_to_string(fixtures().join("kan-examples/quickstart/e2e.yaml")).unwrap();
    let from_stdin = grantwall(&dir, &["compile", "-f", "-"], Some(&text));
    assert!(from_stdin.status.success(), "{}", stderr(&from_stdin));
    let from_file = grantwall(
        &dir,
        &[
            "compile",
            "-f",
            fixtures()
                .join("kan-examples/quickstart/e2e.yaml")
                .to_str()
                .unwrap(),
            "-o",
            "out.json",
        ],
        None,
    );
    assert!(from_file.status.success());
    assert!(from_file.stdout.is_empty());
    assert_eq!(
        std::fs::read(dir.join("out.json")).unwrap(),
        from_stdin.stdout
    );
    // Only the output file: the temporary one was renamed.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

    let bad = grantwall(&dir, &["compile", "-f", "-"], Some("kind: XBackend\napiVersion: agentic.networking.x-k8s.io/v0alpha0\nmetadata: {name: b}\nspec: {}\n"));
    assert_eq!(
        stderr(&bad).lines().next(),
        Some("<stdin> doc 1 XBackend default/b: spec.mcp: Required value")
    );
}

#[test]
fn output_is_deterministic_across_runs_files_and_directories() {
    let dir = temp_dir("determinism");
    let text =
        std::fs::read_to_string(fixtures().join("kan-examples/quickstart/e2e.yaml")).unwrap();
    let mut docs: Vec<&str> = text.split("\n---\n").collect();
    assert_eq!(docs.len(), 7);
    write(&dir, "all.yaml", &text);
    docs.reverse();
    write(&dir, "reversed.yaml", &docs.join("\n---\n"));
    // The same documents spread over a directory tree, in yet another order.
    for (i, d) in docs.iter().enumerate() {
        write(&dir, &format!("tree/{}/doc{i}.yml", i % 3), d);
    }
    write(&dir, "tree/ignored.txt", "not yaml");
    let run = |args: &[&str]| {
        let out = grantwall(&dir, args, None);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        out.stdout
    };
    let first = run(&["compile", "-f", "all.yaml"]);
    assert_eq!(first, run(&["compile", "-f", "all.yaml"]));
    assert_eq!(first, run(&["compile", "-f", "reversed.yaml"]));
    assert_eq!(first, run(&["compile", "-f", "tree"]));
    let pretty = run(&["compile", "-f", "tree", "--pretty"]);
    assert_ne!(first, pretty);
    let a: serde_json::Value = serde_json::from_slice(&first).unwrap();
    let b: serde_json::Value = serde_json::from_slice(&pretty).unwrap();
    assert_eq!(a, b);
    assert!(first.ends_with(b"}\n") && pretty.ends_with(b"}\n"));
}

#[test]
fn settings_flags_reach_the_config() {
    let dir = temp_dir("settings");
    write(&dir, "b.yaml", "apiVersion: agentic.networking.x-k8s.io/v0alpha0\nkind: XBackend\nmetadata: {name: b}\nspec: {mcp: {serviceName: svc, port: 80}}\n");
    let out = grantwall(
        &dir,
        &[
            "compile",
            "-f",
            "b.yaml",
            "-n",
            "team",
            "--denial",
            "tool-error",
            "--max-body-bytes",
            "4096",
            "--trust-xfcc",
            "from-peers",
            "--xfcc-peer",
            "spiffe://cluster.local/ns/istio-system/sa/ingress",
            "--xfcc-peer",
            "spiffe://cluster.local/ns/a/sa/b",
            "--cluster-domain",
            "corp.local",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["settings"],
        serde_json::json!({
            "denial": "tool-error",
            "maxBodyBytes": 4096,
            "identity": {"forwardedClientCert": {"trust": "fromPeers", "peers": ["spiffe://cluster.local/ns/a/sa/b", "spiffe://cluster.local/ns/istio-system/sa/ingress"]}},
            "auditLog": true
        })
    );
    assert_eq!(v["backends"][0]["name"], "team/b");
    assert_eq!(
        v["routes"]["clusters"]["outbound|80||svc.team.svc.corp.local"],
        0
    );

    let bad = grantwall(
        &dir,
        &["compile", "-f", "b.yaml", "--xfcc-peer", "spiffe://x/y"],
        None,
    );
    assert_eq!(
        stderr(&bad).lines().next(),
        Some("--xfcc-peer: only meaningful with --trust-xfcc from-peers")
    );
    let usage = grantwall(
        &dir,
        &["compile", "-f", "b.yaml", "--denial", "shout"],
        None,
    );
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn gateway_flag_and_ambiguity() {
    let dir = temp_dir("gateway");
    let policy = |name: &str, gw: &str| {
        format!("apiVersion: agentic.networking.x-k8s.io/v1alpha1\nkind: XAccessPolicy\nmetadata: {{name: {name}, namespace: infra}}\nspec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: {gw}}}]\n  action: Allow\n")
    };
    write(
        &dir,
        "p.yaml",
        &format!("{}---\n{}", policy("a", "gw1"), policy("b", "gw2")),
    );
    let out = grantwall(&dir, &["compile", "-f", "p.yaml"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("the input names several Gateways (infra/gw1, infra/gw2): choose the one this filter runs in with --gateway NAMESPACE/NAME\n"));
    let out = grantwall(
        &dir,
        &["compile", "-f", "p.yaml", "--gateway", "infra/gw1"],
        None,
    );
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["gateway"]["name"], "infra/gw1");
    assert_eq!(v["gateway"]["policies"][0]["name"], "infra/a");
    assert_eq!(v["gateway"]["policies"][0]["rules"], serde_json::json!([]));
}

#[test]
fn policy_limit_warning_goes_to_stderr_and_does_not_fail() {
    let dir = temp_dir("limit");
    let mut text = String::from("apiVersion: agentic.networking.x-k8s.io/v0alpha0\nkind: XBackend\nmetadata: {name: b}\nspec: {mcp: {serviceName: svc, port: 80}}\n");
    for i in 1..=6 {
        text.push_str(&format!("---\napiVersion: agentic.networking.x-k8s.io/v1alpha1\nkind: XAccessPolicy\nmetadata: {{name: p{i}, creationTimestamp: '2024-01-0{i}T00:00:00Z'}}\nspec:\n  targetRefs: [{{group: agentic.networking.x-k8s.io, kind: XBackend, name: b}}]\n  action: Allow\n"));
    }
    write(&dir, "p.yaml", &text);
    let out = grantwall(&dir, &["compile", "-f", "p.yaml"], None);
    assert!(out.status.success());
    assert_eq!(
        stderr(&out),
        "warning: XBackend default/b has 6 policies; KAN accepts at most 5 per target (oldest first by creationTimestamp, then name) and marks the rest not accepted: not enforcing default/p6\n"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["backends"][0]["policies"].as_array().unwrap().len(), 5);
}

#[test]
fn help_documents_every_flag() {
    let dir = temp_dir("help");
    let top = stdout(&grantwall(&dir, &["--help"], None));
    for word in [
        "compile",
        "schema",
        "kube-agentic-networking",
        "Exit status",
    ] {
        assert!(top.contains(word), "--help lacks {word}:\n{top}");
    }
    let help = stdout(&grantwall(&dir, &["compile", "--help"], None));
    for flag in [
        "--filename",
        "-f",
        "--gateway",
        "--trust-domain",
        "--cluster-domain",
        "--namespace",
        "-n",
        "--denial",
        "jsonrpc-error",
        "tool-error",
        "--max-body-bytes",
        "--trust-xfcc",
        "from-peers",
        "--xfcc-peer",
        "--output",
        "-o",
        "--pretty",
        "--check",
        "Examples",
        "default: cluster.local",
        "Exit status",
    ] {
        assert!(help.contains(flag), "compile --help lacks {flag}:\n{help}");
    }
}

#[test]
fn schema_command_matches_the_committed_schema() {
    let dir = temp_dir("schema");
    let out = grantwall(&dir, &["schema"], None);
    assert!(out.status.success());
    let committed = std::fs::read_to_string(manifest_dir().join("../docs/config-schema.json"))
        .unwrap_or_default();
    assert!(
        committed == stdout(&out),
        "docs/config-schema.json is stale: regenerate with `cargo run -p grantwall-policy-compiler -- schema -o docs/config-schema.json`"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["title"], "Config");
}
