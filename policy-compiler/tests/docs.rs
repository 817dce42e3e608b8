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

/// The ```yaml blocks of a markdown file that are Kubernetes objects (have an `apiVersion:`).
fn policy_blocks(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = markdown;
    while let Some(start) = rest.find("```yaml\n") {
        let body = &rest[start + "```yaml\n".len()..];
        let end = body.find("```").expect("unterminated ```yaml block");
        if body[..end].contains("apiVersion:") {
            out.push(body[..end].to_owned());
        }
        rest = &body[end + 3..];
    }
    out
}

/// Every policy a reader may copy from the docs compiles: the blocks of each page together, with the README's
/// XBackend (tools/mcp-server) they target, and a JWKS file for the example that reads one from disk.
#[test]
fn every_policy_example_in_the_docs_compiles() {
    let readme = std::fs::read_to_string(manifest_dir().join("../README.md")).unwrap();
    let backend = policy_blocks(&readme)[0].split("\n---\n").next().unwrap().to_owned();
    assert!(backend.contains("kind: XBackend"), "the README's first policy block starts with its XBackend");
    let dir = temp_dir("doc-examples");
    write(&dir, "cluster-jwks.json", r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k","alg":"ES256","x":"86BoWOoRoj8hLUw7u_coYA77AnuBRN3Gg4LJNwPUUV4","y":"OC7HkPAoMi7UHZ8e0pIeKtNENfBUB77hcS24atQjMKk"}]}"#);
    write(&dir, "README.yaml", &policy_blocks(&readme).join("\n---\n"));
    let out = grantwall(&dir, &["compile", "--check", "-f", "README.yaml"], None);
    assert!(out.status.success(), "README.md: its policy does not compile:\n{}", stderr(&out));
    let mut pages = 0;
    let mut pages_dir: Vec<_> = std::fs::read_dir(manifest_dir().join("../docs")).unwrap().map(|e| e.unwrap().path()).collect();
    pages_dir.sort();
    for page in pages_dir.iter().filter(|p| p.extension().is_some_and(|e| e == "md")) {
        let blocks = policy_blocks(&std::fs::read_to_string(page).unwrap());
        if blocks.is_empty() {
            continue;
        }
        pages += 1;
        let name = format!("{}.yaml", page.file_stem().unwrap().to_string_lossy());
        let mut docs = vec![backend.clone()];
        docs.extend(blocks);
        write(&dir, &name, &docs.join("\n---\n"));
        let out = grantwall(&dir, &["compile", "--check", "-f", &name], None);
        assert!(out.status.success(), "docs/{}: its policy examples do not compile:\n{}", page.file_name().unwrap().to_string_lossy(), stderr(&out));
    }
    assert!(pages >= 6, "expected policy examples on at least six pages, found {pages}");
}
