//! Writing YAML: a small ordered document type rendered by yaml-rust2's emitter (which quotes every string a
//! YAML 1.1 or 1.2 reader could take for something else: `yes`, `1.0`, `a: b`, leading `*`…).
//! Keys keep the order they are given in, so generated manifests read like the APIs' own examples.

use serde_json::Value;
use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlEmitter};

/// An ordered YAML node.
#[derive(Debug, Clone, PartialEq)]
pub enum Y {
    Str(String),
    Bool(bool),
    Int(i64),
    /// A number that is not an i64, as JSON wrote it.
    Real(String),
    Null,
    List(Vec<Y>),
    Map(Vec<(String, Y)>),
}

impl Y {
    pub fn str(s: impl Into<String>) -> Y {
        Y::Str(s.into())
    }

    pub fn map<K: Into<String>>(items: impl IntoIterator<Item = (K, Y)>) -> Y {
        Y::Map(items.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// A JSON value, object keys in serde_json's (sorted) order.
    pub fn from_json(v: &Value) -> Y {
        match v {
            Value::Null => Y::Null,
            Value::Bool(b) => Y::Bool(*b),
            Value::Number(n) => n.as_i64().map(Y::Int).unwrap_or_else(|| Y::Real(n.to_string())),
            Value::String(s) => Y::Str(s.clone()),
            Value::Array(items) => Y::List(items.iter().map(Y::from_json).collect()),
            Value::Object(map) => Y::Map(map.iter().map(|(k, v)| (k.clone(), Y::from_json(v))).collect()),
        }
    }

    fn to_yaml(&self) -> Yaml {
        match self {
            Y::Str(s) => Yaml::String(s.clone()),
            Y::Bool(b) => Yaml::Boolean(*b),
            Y::Int(i) => Yaml::Integer(*i),
            Y::Real(r) => Yaml::Real(r.clone()),
            Y::Null => Yaml::Null,
            Y::List(items) => Yaml::Array(items.iter().map(Y::to_yaml).collect()),
            Y::Map(items) => {
                let mut h = Hash::new();
                for (k, v) in items {
                    h.insert(Yaml::String(k.clone()), v.to_yaml());
                }
                Yaml::Hash(h)
            }
        }
    }
}

/// One YAML document (no `---` marker), ending with a newline. Strings with newlines become literal blocks.
pub fn render(doc: &Y) -> String {
    let mut out = String::new();
    let mut emitter = YamlEmitter::new(&mut out);
    emitter.multiline_strings(true);
    // Writing into a String cannot fail; an emitter error would leave a truncated document, so say so loudly.
    if let Err(e) = emitter.dump(&doc.to_yaml()) {
        return format!("# grantwall: internal error rendering YAML: {e}\n");
    }
    let body = out.strip_prefix("---\n").unwrap_or(&out);
    format!("{}\n", body.trim_end_matches('\n'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_what_the_yaml_reader_reads_back() {
        let v = json!({
            "plain": "grantwall", "colon": "spiffe://cluster.local/ns/a/sa/b", "pipe": "outbound|8000||svc.ns.svc.cluster.local",
            "bool-like": "yes", "num-like": "1.0", "empty": "", "star": "*.example.com", "n": 1048576, "neg": -3,
            "t": true, "list": [], "map": {}, "nested": [{"a": ["x", {"b": "c"}]}],
            "multi": "{\n  \"a\": 1\n}\n",
        });
        let text = render(&Y::from_json(&v));
        let back = &crate::yaml::parse_documents(&text).unwrap()[0].value;
        assert_eq!(back, &v, "{text}");
    }

    #[test]
    fn keeps_the_given_key_order() {
        let text = render(&Y::map([("kind", Y::str("X")), ("apiVersion", Y::str("v1"))]));
        assert_eq!(text, "kind: X\napiVersion: v1\n");
    }
}
