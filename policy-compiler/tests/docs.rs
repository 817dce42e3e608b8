//! The documentation cannot drift from the code: every CRD rule message is in docs/crd-reference.md and every
//! command-line flag is in docs/cli.md.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

mod common;

use common::*;
use grantwall_policy_compiler::crd_schema;

fn doc(name: &str) -> String {
    std::fs::read_to_string(manifest_dir().join("../docs").join(name)).unwrap()
}

#[test]
fn crd_reference_lists_every_validation_rule_and_message() {
    let reference = doc("crd-reference.md").replace("\\|", "|");
    for v in crd_schema::embedded().unwrap() {
        let mut rules = Vec::new();
        v.schema.rules("", &mut rules);
        for (path, r) in rules {
            assert!(
                reference.contains(&r.message),
                "{} {path}: message missing: {}",
                v.kind,
                r.message
            );
            assert!(
                reference.contains(&format!("`{}`", r.rule)),
                "{} {path}: rule missing: {}",
                v.kind,
                r.rule
            );
        }
    }
}

#[test]
fn cli_doc_lists_every_flag() {
    let cli = doc("cli.md");
    let dir = temp_dir("docs");
    for cmd in [
        &["--help"][..],
        &["compile", "--help"],
        &["schema", "--help"],
        &["package", "--help"],
        &["explain", "--help"],
    ] {
        let help = stdout(&grantwall(&dir, cmd, None));
        for word in help.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']') {
            if word.starts_with("--") && word.len() > 2 && word != "--help" && word != "--version" {
                let flag = word.trim_end_matches(['.', ')', ':']);
                assert!(
                    cli.contains(&format!("`{flag}")),
                    "docs/cli.md lacks {flag} (from {cmd:?})"
                );
            }
        }
    }
}

#[test]
fn cli_doc_explain_examples_are_real_output() {
    let cli = doc("cli.md");
    let root = manifest_dir().join("..");
    for args in [
        &["--as", "spiffe://cluster.local/ns/agents/sa/bob", "--tool", "get-sum"][..],
        &["--sa", "agents/bob", "--tool", "echo", "--json"],
    ] {
        let mut full = vec!["explain", "-f", "examples/policies/", "--backend", "tools/mcp-server", "--mcp", "tools/call"];
        full.extend_from_slice(args);
        let out = stdout(&grantwall(&root, &full, None));
        assert!(!out.is_empty());
        for line in out.lines() {
            assert!(cli.contains(line), "docs/cli.md lacks this line of `grantwall {}`:\n{line}", full.join(" "));
        }
    }
    for args in [&["--sa", "agents/carol", "--a2a", "message/send"][..], &["--sa", "agents/alice", "--a2a", "SendMessage", "--json"]] {
        let mut full = vec!["explain", "-f", "examples/a2a/", "--backend", "agents/agent-b"];
        full.extend_from_slice(args);
        let out = stdout(&grantwall(&root, &full, None));
        assert!(!out.is_empty());
        for line in out.lines() {
            assert!(cli.contains(line), "docs/cli.md lacks this line of `grantwall {}`:\n{line}", full.join(" "));
        }
    }
}

#[test]
fn cel_doc_lists_every_variable_function_and_limit() {
    use grantwall_core::cel::{Func, Var, LIMITS};
    let cel = doc("cel.md");
    for v in Var::ALL {
        assert!(cel.contains(&format!("`{}`", v.name())), "docs/cel.md lacks variable {}", v.name());
    }
    for f in Func::ALL {
        assert!(cel.contains(f.name()), "docs/cel.md lacks function {}", f.name());
    }
    let limits = [
        LIMITS.source_chars,
        LIMITS.nodes,
        LIMITS.depth,
        LIMITS.string_bytes,
        LIMITS.list_items,
        LIMITS.pattern_bytes,
        LIMITS.comprehensions,
    ];
    for n in limits {
        assert!(cel.contains(&format!("| {n}")), "docs/cel.md lacks limit {n}");
    }
    assert!(cel.contains(&format!("{},{:03} steps", LIMITS.steps / 1000, LIMITS.steps % 1000)));
}
