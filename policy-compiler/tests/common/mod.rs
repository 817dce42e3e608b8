//! Helpers shared by the integration tests.
#![allow(dead_code)]

use grantwall_core::config::Config;
use grantwall_policy_compiler::compile::{self, Options};
use grantwall_policy_compiler::input::Source;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures() -> PathBuf {
    manifest_dir().join("tests/fixtures")
}

/// `../shared/crds/upstream` beside the repository, when it exists (developer machines and CI).
pub fn shared_upstream() -> Option<PathBuf> {
    let p = manifest_dir().join("../../shared/crds/upstream");
    p.is_dir().then_some(p)
}

/// A fresh empty directory under cargo's per-target temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("gw-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, text).unwrap();
    p
}

/// Runs the `grantwall` binary in `cwd` with `stdin`.
pub fn grantwall(cwd: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_grantwall"))
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn source(name: &str, text: &str) -> Source {
    Source {
        name: name.to_string(),
        text: text.to_string(),
    }
}

/// Compiles YAML text with the library; `Err` holds the error lines.
pub fn compile_with(text: &str, opts: &Options) -> Result<(Config, Vec<String>), Vec<String>> {
    match compile::compile(&[source("in.yaml", text)], opts) {
        Ok(c) => Ok((c.config, c.warnings)),
        Err(d) => Err(d.errors.iter().map(ToString::to_string).collect()),
    }
}

pub fn compile_ok(text: &str) -> Config {
    match compile_with(text, &Options::default()) {
        Ok((c, _)) => c,
        Err(e) => panic!("unexpected errors:\n{}", e.join("\n")),
    }
}

pub fn compile_err(text: &str) -> Vec<String> {
    match compile_with(text, &Options::default()) {
        Ok((c, _)) => panic!(
            "compiled, expected errors: {}",
            serde_json::to_string(&c).unwrap()
        ),
        Err(e) => e,
    }
}

/// Asserts that one of `errors` is exactly `line`.
pub fn assert_has(errors: &[String], line: &str) {
    assert!(
        errors.iter().any(|e| e == line),
        "expected error line\n  {line}\nin\n  {}",
        errors.join("\n  ")
    );
}

pub const BACKEND: &str = "apiVersion: agentic.networking.x-k8s.io/v0alpha0
kind: XBackend
metadata: {name: b, namespace: ns}
spec:
  mcp: {serviceName: svc, port: 8080}
";
