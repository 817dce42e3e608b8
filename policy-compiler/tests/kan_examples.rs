//! The upstream KAN examples: valid ones validate (and compile unless they use what is not supported yet),
//! invalid ones fail naming the right field with the CRD's own message, and the quickstart compiles to the
//! expected config. Runs on the committed fixture copies and, when present, on ../shared's originals.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use common::*;
use grantwall_core::config::{McpMethod, MethodGrant};
use grantwall_policy_compiler::crd_schema;
use grantwall_policy_compiler::diag::Diags;
use grantwall_policy_compiler::input;
use std::path::{Path, PathBuf};

/// Example directories: the fixtures, plus ../shared's copy when it exists.
fn example_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![fixtures().join("kan-examples")];
    if let Some(up) = shared_upstream() {
        dirs.push(up.join("tests/crd/examples"));
    }
    dirs
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}", dir.display());
    files
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn fixture_copies_match_shared_when_present() {
    let Some(up) = shared_upstream() else { return };
    for sub in ["valid", "invalid"] {
        let ours = yaml_files(&fixtures().join("kan-examples").join(sub));
        let theirs = yaml_files(&up.join("tests/crd/examples").join(sub));
        assert_eq!(
            ours.iter().map(|p| file_name(p)).collect::<Vec<_>>(),
            theirs.iter().map(|p| file_name(p)).collect::<Vec<_>>()
        );
        for (a, b) in ours.iter().zip(&theirs) {
            assert_eq!(
                std::fs::read(a).unwrap(),
                std::fs::read(b).unwrap(),
                "{}",
                a.display()
            );
        }
    }
    let quick = up.join("site-src/guides/quickstart/policy/e2e.yaml");
    assert_eq!(
        std::fs::read(quick).unwrap(),
        std::fs::read(fixtures().join("kan-examples/quickstart/e2e.yaml")).unwrap()
    );
    for crd in [
        "agentic.networking.x-k8s.io_xaccesspolicies.yaml",
        "agentic.networking.x-k8s.io_xbackends.yaml",
    ] {
        let embedded = manifest_dir().join("crds/kan").join(crd);
        assert_eq!(
            std::fs::read(up.join("k8s/crds").join(crd)).unwrap(),
            std::fs::read(embedded).unwrap(),
            "{crd}"
        );
    }
}

#[test]
fn every_valid_example_passes_schema_validation() {
    for dir in example_dirs() {
        for path in yaml_files(&dir.join("valid")) {
            let text = std::fs::read_to_string(&path).unwrap();
            let mut diags = Diags::default();
            let objects =
                input::objects(&source(&file_name(&path), &text), 0, "default", &mut diags);
            assert!(
                diags.errors.is_empty(),
                "{}: {:?}",
                path.display(),
                diags.errors
            );
            assert!(!objects.is_empty());
            for mut obj in objects {
                let crd = crd_schema::find(&obj.kind, &obj.api_version)
                    .unwrap()
                    .unwrap();
                let violations = crd_schema::validate_object(crd, &mut obj.value);
                assert!(violations.is_empty(), "{}: {violations:?}", path.display());
            }
        }
    }
}

/// What `grantwall compile --check` says about each valid example: `None` = compiles.
fn valid_expectation(name: &str) -> Option<&'static str> {
    match name {
        // ExternalAuth compiles (issue #9); alone it lacks its XBackend.
        "accesspolicy.yaml" => Some(
            "valid/accesspolicy.yaml doc 1 XAccessPolicy default/valid-policy: spec.targetRefs[0]: XBackend default/valid-backend is not in the input: add the file that defines it (-f), or fix targetRefs name \"valid-backend\" (XBackends are looked up in the policy's namespace \"default\")",
        ),
        // Compiles; alone it lacks its XBackend (see cel_example_compiles_with_its_backend).
        "cel-policy.yaml" => Some(
            "valid/cel-policy.yaml doc 1 XAccessPolicy default/cel-policy: spec.targetRefs[0]: XBackend default/my-backend is not in the input: add the file that defines it (-f), or fix targetRefs name \"my-backend\" (XBackends are looked up in the policy's namespace \"default\")",
        ),
        "accesspolicy_v1alpha1.yaml" | "backend.yaml" => None,
        other => panic!("new upstream valid example {other}: add its expectation"),
    }
}

#[test]
fn valid_examples_compile_or_fail_with_not_supported_yet() {
    for dir in example_dirs() {
        for path in yaml_files(&dir.join("valid")) {
            let name = file_name(&path);
            let rel = format!("valid/{name}");
            let out = grantwall(&dir, &["compile", "-f", &rel, "--check"], None);
            match valid_expectation(&name) {
                None => assert!(out.status.success(), "{rel}: {}", stderr(&out)),
                Some(line) => {
                    assert_eq!(out.status.code(), Some(1), "{rel}");
                    let err = stderr(&out);
                    assert!(
                        err.lines().any(|l| l == line),
                        "{rel}: expected\n{line}\ngot\n{err}"
                    );
                }
            }
            assert!(out.stdout.is_empty());
        }
    }
}

#[test]
fn cel_example_compiles_with_its_backend() {
    let backend = "apiVersion: agentic.networking.x-k8s.io/v0alpha0\nkind: XBackend\nmetadata: {name: my-backend, namespace: default}\nspec: {mcp: {serviceName: my-backend, port: 80}}\n";
    for dir in example_dirs() {
        let out = grantwall(&dir, &["compile", "-f", "valid/cel-policy.yaml", "-f", "-"], Some(backend));
        assert!(out.status.success(), "{}", stderr(&out));
        let config: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        let rule = &config["backends"][0]["policies"][0]["rules"][0];
        // KAN: a CEL rule grants tools/call when the expression holds.
        assert_eq!(rule["mcp"], serde_json::json!({"baseProtocol": false, "methods": [{"method": "tools/call"}]}));
        assert_eq!(
            rule["cel"],
            serde_json::json!({"call": ["startsWith", [{"var": "request.mcp.tool_name"}, {"string": "verify_"}]]})
        );
    }
}

/// (field path, message) each invalid example must be rejected with.
fn invalid_expectation(name: &str) -> (&'static str, &'static str) {
    match name {
        "backend-both.yaml" => ("XBackend default/invalid-backend-both: spec.mcp", "exactly one of the fields in [serviceName hostname] must be set"),
        "cel-missing-fields.yaml" => (
            "XAccessPolicy default/cel-missing-fields: spec.rules[0].authorization",
            "cel must be specified when type is set to 'CEL'",
        ),
        "policy-v1alpha1-invalid-mcp-method-params.yaml" => (
            "XAccessPolicy default/policy-v1alpha1-invalid-mcp-method-params: spec.rules[0].authorization.mcp.methods[0]",
            "Params can only be specified for get, call, subscribe, unsubscribe, or read methods",
        ),
        "policy-v1alpha1-wrong-action-ext-auth.yaml" => (
            "XAccessPolicy default/policy-v1alpha1-wrong-action-ext-auth: spec",
            "externalAuth must be specified when action is set to 'ExternalAuth'",
        ),
        "policy-v1alpha1-wrong-target-kind.yaml" => (
            "XAccessPolicy default/policy-v1alpha1-wrong-target-kind: spec.targetRefs",
            "All targetRefs must have the same Kind",
        ),
        "policy-wrong-authz-type.yaml" => (
            "XAccessPolicy default/invalid-policy-wrong-authz-type: spec.rules[0].authorization.type",
            "Unsupported value: \"InvalidTypeEnum\": supported values: \"Inline\", \"CEL\"",
        ),
        other => panic!("new upstream invalid example {other}: add its expectation"),
    }
}

#[test]
fn every_invalid_example_fails_naming_the_field_and_the_crd_message() {
    for dir in example_dirs() {
        for path in yaml_files(&dir.join("invalid")) {
            let name = file_name(&path);
            let rel = format!("invalid/{name}");
            let out = grantwall(&dir, &["compile", "-f", &rel], None);
            assert_eq!(out.status.code(), Some(1), "{rel}");
            assert!(out.stdout.is_empty(), "{rel}");
            let (object_and_path, message) = invalid_expectation(&name);
            let expected = format!("{rel} doc 1 {object_and_path}: {message}");
            let err = stderr(&out);
            assert_eq!(err.lines().next(), Some(expected.as_str()), "{rel}: {err}");
            assert_eq!(
                err.lines().count(),
                2,
                "exactly one error and the summary line: {err}"
            );
        }
    }
}

#[test]
fn quickstart_compiles_to_the_expected_config() {
    let mut files = vec![fixtures().join("kan-examples/quickstart/e2e.yaml")];
    if let Some(up) = shared_upstream() {
        files.push(up.join("site-src/guides/quickstart/policy/e2e.yaml"));
    }
    for file in files {
        let dir = temp_dir("quickstart");
        let out = grantwall(&dir, &["compile", "-f", file.to_str().unwrap()], None);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stderr(&out), "", "no warnings expected");
        let c: grantwall_core::config::Config = serde_json::from_slice(&out.stdout).unwrap();

        let sa = "spiffe://cluster.local/ns/quickstart-ns/sa/adk-agent-sa";
        assert_eq!(c.principals, [sa]);
        assert_eq!(c.gateway.name, "quickstart-ns/agentic-net-gateway");
        assert!(c.gateway.policies.is_empty());

        let names: Vec<&str> = c.backends.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "quickstart-ns/local-mcp-backend",
                "quickstart-ns/remote-mcp-backend"
            ]
        );
        let local = &c.backends[0];
        assert_eq!(local.paths, ["/mcp", "/local/mcp"]);
        assert_eq!(c.backends[1].paths, ["/mcp", "/remote/mcp"]);

        assert_eq!(local.policies.len(), 1);
        let policy = &local.policies[0];
        assert_eq!(policy.name, "quickstart-ns/auth-policy-local-mcp");
        let rule = &policy.rules[0];
        assert_eq!(rule.name, "tools-for-adk-agent-sa");
        assert_eq!(rule.principals, Some(vec![0]));
        assert_eq!(rule.http, None);
        let mcp = rule.mcp.as_ref().unwrap();
        assert!(mcp.base_protocol);
        assert_eq!(
            mcp.methods,
            Some(vec![MethodGrant {
                method: McpMethod::ToolsCall,
                names: Some(vec!["get-sum".into(), "get-tiny-image".into()])
            }])
        );
        let remote_names = c.backends[1].policies[0].rules[0]
            .mcp
            .as_ref()
            .unwrap()
            .methods
            .clone()
            .unwrap();
        assert_eq!(
            remote_names[0].names,
            Some(vec!["read_wiki_structure".to_string()])
        );

        let svc = "mcp-everything-svc";
        for authority in [
            svc.to_string(),
            format!("{svc}.quickstart-ns"),
            format!("{svc}.quickstart-ns.svc"),
            format!("{svc}.quickstart-ns.svc.cluster.local"),
        ] {
            assert_eq!(
                c.routes.authorities.get(&authority),
                Some(&0),
                "{authority}"
            );
        }
        assert_eq!(c.routes.authorities.get("mcp.deepwiki.com"), Some(&1));
        assert_eq!(
            c.routes
                .clusters
                .get("outbound|3001||mcp-everything-svc.quickstart-ns.svc.cluster.local"),
            Some(&0)
        );
        assert_eq!(
            c.routes.clusters.get("outbound|443||mcp.deepwiki.com"),
            Some(&1)
        );
        assert_eq!(c.routes.authorities.len(), 5);
        assert_eq!(c.routes.clusters.len(), 2);
    }
}
