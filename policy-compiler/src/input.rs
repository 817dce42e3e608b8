//! Reading the inputs: files, directories (recursive, `*.yaml`/`*.yml`, sorted so the result never depends
//! on the file system's listing order) and stdin; splitting them into documents and `kind: List` items; and
//! naming each object (`file doc N Kind ns/name`) for error messages.

use crate::diag::{Diags, Loc, Origin};
use crate::yaml;
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

/// One input text and the name errors use for it (the path as the user wrote it, or `<stdin>`).
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: String,
}

/// One Kubernetes object from the input.
#[derive(Debug, Clone)]
pub struct Object {
    pub origin: Origin,
    pub api_version: String,
    pub kind: String,
    /// `metadata.namespace`, or the default namespace.
    pub namespace: String,
    /// `metadata.name`; empty if absent (only an error for the kinds we read).
    pub name: String,
    pub value: Value,
}

impl Object {
    /// `file doc N Kind ns/name`: the prefix of every error about this object.
    pub fn location(&self) -> Loc {
        let text = if self.name.is_empty() {
            format!("{} {}", self.origin, self.kind)
        } else {
            format!(
                "{} {} {}/{}",
                self.origin, self.kind, self.namespace, self.name
            )
        };
        Loc::at(&self.origin, text)
    }

    pub fn ns_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The API group of `apiVersion` (empty for the core group, as in `v1`).
    pub fn group(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or("")
    }
}

/// Reads every `-f` argument. `-` is stdin and may appear once.
pub fn read_sources(args: &[String], stdin: &mut dyn Read, diags: &mut Diags) -> Vec<Source> {
    let mut out = Vec::new();
    let mut stdin_used = false;
    for arg in args {
        if arg == "-" {
            if stdin_used {
                diags.error(
                    "<stdin>",
                    "",
                    "`-f -` given more than once: stdin can be read only once",
                );
                continue;
            }
            stdin_used = true;
            let mut text = String::new();
            match stdin.read_to_string(&mut text) {
                Ok(_) => out.push(Source {
                    name: "<stdin>".to_string(),
                    text,
                }),
                Err(e) => diags.error("<stdin>", "", format!("cannot read: {e}")),
            }
            continue;
        }
        let path = PathBuf::from(arg);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => {
                let mut files = Vec::new();
                let mut seen = BTreeSet::new();
                collect_yaml_files(&path, &mut files, &mut seen, diags);
                files.sort();
                if files.is_empty() {
                    diags.error(
                        arg.as_str(),
                        "",
                        "directory contains no *.yaml or *.yml file",
                    );
                }
                for f in files {
                    read_file(&f, &mut out, diags);
                }
            }
            Ok(_) => read_file(&path, &mut out, diags),
            Err(e) => diags.error(arg.as_str(), "", format!("cannot read: {e}")),
        }
    }
    out
}

fn read_file(path: &Path, out: &mut Vec<Source>, diags: &mut Diags) {
    let name = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => out.push(Source { name, text }),
            Err(_) => diags.error(name, "", "not UTF-8 text"),
        },
        Err(e) => diags.error(name, "", format!("cannot read: {e}")),
    }
}

/// Recursive walk; `seen` holds canonical directory paths so symlink loops end.
fn collect_yaml_files(
    dir: &Path,
    files: &mut Vec<PathBuf>,
    seen: &mut BTreeSet<PathBuf>,
    diags: &mut Diags,
) {
    let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    if !seen.insert(canonical) {
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            diags.error(
                dir.display().to_string(),
                "",
                format!("cannot list directory: {e}"),
            );
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() => collect_yaml_files(&p, files, seen, diags),
            Ok(_) => {
                if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
                    files.push(p);
                }
            }
            Err(e) => diags.error(p.display().to_string(), "", format!("cannot read: {e}")),
        }
    }
}

/// List kinds whose `items` are objects: `kubectl get -o yaml` writes `kind: List`.
fn is_list_kind(kind: &str) -> bool {
    matches!(
        kind,
        "List" | "XBackendList" | "XAccessPolicyList" | "GrantwallAccessPolicyList" | "GrantwallIdentityProviderList"
    )
}

/// Splits a source into objects. Empty documents are skipped; anything that is not a Kubernetes object is an
/// error (a policy whose `kind` is misspelt must not vanish silently).
/// `index` is the source's position among the inputs (orders the errors).
pub fn objects(
    source: &Source,
    index: usize,
    default_namespace: &str,
    diags: &mut Diags,
) -> Vec<Object> {
    let docs = match yaml::parse_documents(&source.text) {
        Ok(d) => d,
        Err(e) => {
            let at = format!("{}: line {} column {}", source.name, e.line, e.column);
            diags.error(
                Loc {
                    text: at,
                    order: Some((index, 0, 0)),
                },
                "",
                e.message,
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for doc in docs {
        let origin = Origin {
            source: index,
            file: source.name.clone(),
            doc: doc.index,
            item: None,
        };
        if doc.value.is_null() {
            continue;
        }
        let kind = doc
            .value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if is_list_kind(kind) {
            match doc.value.get("items") {
                Some(Value::Array(items)) => {
                    for (i, item) in items.iter().enumerate() {
                        let origin = Origin {
                            item: Some(i),
                            ..origin.clone()
                        };
                        if let Some(o) = object(origin, item.clone(), default_namespace, diags) {
                            out.push(o);
                        }
                    }
                }
                Some(Value::Null) | None => {}
                Some(_) => {
                    diags.error(&origin, "items", format!("{kind} items must be a sequence"))
                }
            }
            continue;
        }
        if let Some(o) = object(origin, doc.value, default_namespace, diags) {
            out.push(o);
        }
    }
    out
}

fn object(
    origin: Origin,
    value: Value,
    default_namespace: &str,
    diags: &mut Diags,
) -> Option<Object> {
    let at = Loc::from(&origin);
    let at_kind = |kind: &str| Loc::at(&origin, format!("{origin} {kind}"));
    if !value.is_object() {
        diags.error(
            &at,
            "",
            "not a Kubernetes object (the document is not a mapping)",
        );
        return None;
    }
    let kind = match value.get("kind") {
        Some(Value::String(k)) if !k.is_empty() => k.clone(),
        Some(_) => {
            diags.error(&at, "kind", "must be a non-empty string");
            return None;
        }
        None => {
            diags.error(&at, "kind", "Required value: not a Kubernetes object");
            return None;
        }
    };
    if is_list_kind(&kind) {
        diags.error(&at, "", format!("a {kind} inside a List is not supported"));
        return None;
    }
    let api_version = match value.get("apiVersion") {
        Some(Value::String(v)) if !v.is_empty() => v.clone(),
        _ => {
            diags.error(
                at_kind(&kind),
                "apiVersion",
                "Required value: must be a non-empty string",
            );
            return None;
        }
    };
    let meta = value.get("metadata");
    let mut text_field = |field: &str| -> Result<Option<String>, ()> {
        match meta.and_then(|m| m.get(field)) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => {
                let got = if other.is_number() {
                    "number"
                } else {
                    "non-string value"
                };
                diags.error(
                    at_kind(&kind),
                    format!("metadata.{field}"),
                    format!("must be a string, got a {got}"),
                );
                Err(())
            }
        }
    };
    let (Ok(name), Ok(namespace)) = (text_field("name"), text_field("namespace")) else {
        return None;
    };
    let name = name.unwrap_or_default();
    // An empty namespace means the default one, as for kubectl.
    let namespace = namespace
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| default_namespace.to_string());
    Some(Object {
        origin,
        api_version,
        kind,
        namespace,
        name,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(text: &str) -> Source {
        Source {
            name: "in.yaml".to_string(),
            text: text.to_string(),
        }
    }

    #[test]
    fn documents_and_list_items_get_origins() {
        let mut d = Diags::default();
        let objs = objects(
            &src("# only a comment\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: x}\n---\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: c}}\n"),
            0,
            "def",
            &mut d,
        );
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        let locs: Vec<String> = objs.iter().map(|o| o.location().text).collect();
        assert_eq!(
            locs,
            [
                "in.yaml doc 1 Service x/s",
                "in.yaml doc 3 items[0] ConfigMap def/c"
            ]
        );
    }

    #[test]
    fn non_objects_are_errors() {
        let mut d = Diags::default();
        objects(
            &src("just a string\n---\nfoo: bar\n---\nkind: X\n"),
            0,
            "default",
            &mut d,
        );
        let errs: Vec<String> = d.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errs,
            [
                "in.yaml doc 1: not a Kubernetes object (the document is not a mapping)",
                "in.yaml doc 2: kind: Required value: not a Kubernetes object",
                "in.yaml doc 3 X: apiVersion: Required value: must be a non-empty string",
            ]
        );
    }

    #[test]
    fn yaml_errors_name_the_line() {
        let mut d = Diags::default();
        objects(&src("a: 1\na: 2\n"), 0, "default", &mut d);
        assert_eq!(
            d.errors[0].to_string(),
            "in.yaml: line 2 column 1: duplicate key \"a\""
        );
    }
}
