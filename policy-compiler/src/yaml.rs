//! Multi-document YAML → `serde_json::Value`, built from parser events so that we can refuse what
//! serde-based loaders accept silently: duplicate keys (last one wins there, so a reviewer and the compiler
//! could read different policies), merge keys, custom tags, alias bombs, and YAML 1.1 booleans such as
//! `yes`/`on` (kubectl turns them into `true`, YAML 1.2 loaders into strings).

use serde_json::{Map, Number, Value};
use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Most nodes one file may expand to (aliases included): refuses "billion laughs" inputs.
const MAX_NODES: usize = 1_000_000;

/// Deepest nesting accepted: the validator and `Value`'s drop recurse, and no CRD is nearly this deep.
const MAX_DEPTH: usize = 128;

/// One document of a stream, numbered from 1 in the order it appears (empty documents count too).
#[derive(Debug, Clone, PartialEq)]
pub struct YamlDoc {
    pub index: usize,
    pub value: Value,
}

/// A syntax error or refused construct, with its 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for YamlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {} column {}: {}",
            self.line, self.column, self.message
        )
    }
}

/// Parses every document of `text`.
pub fn parse_documents(text: &str) -> Result<Vec<YamlDoc>, YamlError> {
    let mut builder = Builder::default();
    // A byte-order mark may start a YAML stream; the parser would make it part of the first key.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, true) {
        return Err(YamlError {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: e.info().to_string(),
        });
    }
    match builder.error {
        Some(e) => Err(e),
        None => Ok(builder.docs),
    }
}

enum Frame {
    Seq {
        items: Vec<Value>,
        anchor: usize,
    },
    Map {
        map: Map<String, Value>,
        key: Option<String>,
        anchor: usize,
    },
}

#[derive(Default)]
struct Builder {
    docs: Vec<YamlDoc>,
    doc_count: usize,
    root: Option<Value>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Value>,
    nodes: usize,
    error: Option<YamlError>,
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        if let Err(message) = self.handle(ev, mark) {
            self.error = Some(YamlError {
                line: mark.line(),
                column: mark.col() + 1,
                message,
            });
        }
    }
}

impl Builder {
    fn handle(&mut self, ev: Event, _mark: Marker) -> Result<(), String> {
        match ev {
            Event::Nothing | Event::StreamStart | Event::StreamEnd => Ok(()),
            Event::DocumentStart => {
                self.doc_count += 1;
                self.root = None;
                self.stack.clear();
                self.anchors.clear();
                Ok(())
            }
            Event::DocumentEnd => {
                let value = self.root.take().unwrap_or(Value::Null);
                self.docs.push(YamlDoc {
                    index: self.doc_count,
                    value,
                });
                Ok(())
            }
            Event::Scalar(text, style, anchor, tag) => {
                if self.expecting_key() {
                    return self.set_key(text, style);
                }
                let value = resolve_scalar(&text, style, tag.as_ref())?;
                self.count(1)?;
                self.finish(value, anchor)
            }
            Event::Alias(id) => {
                let value = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or("alias refers to an unknown or unfinished anchor")?;
                self.count(node_count(&value))?;
                if self.expecting_key() {
                    return match value {
                        Value::String(s) => self.set_key(s, TScalarStyle::SingleQuoted),
                        _ => Err("an alias used as a mapping key must name a string".to_string()),
                    };
                }
                self.finish(value, 0)
            }
            Event::SequenceStart(anchor, tag) => {
                self.refuse_complex_key()?;
                check_collection_tag(tag.as_ref(), "seq")?;
                self.count(1)?;
                self.stack.push(Frame::Seq {
                    items: Vec::new(),
                    anchor,
                });
                Ok(())
            }
            Event::MappingStart(anchor, tag) => {
                self.refuse_complex_key()?;
                check_collection_tag(tag.as_ref(), "map")?;
                self.count(1)?;
                self.stack.push(Frame::Map {
                    map: Map::new(),
                    key: None,
                    anchor,
                });
                Ok(())
            }
            Event::SequenceEnd => match self.stack.pop() {
                Some(Frame::Seq { items, anchor }) => self.finish(Value::Array(items), anchor),
                _ => Err("unbalanced sequence end".to_string()),
            },
            Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Map {
                    map,
                    key: None,
                    anchor,
                }) => self.finish(Value::Object(map), anchor),
                Some(Frame::Map { key: Some(k), .. }) => {
                    Err(format!("mapping key {k:?} has no value"))
                }
                _ => Err("unbalanced mapping end".to_string()),
            },
        }
    }

    fn expecting_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    fn refuse_complex_key(&self) -> Result<(), String> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(format!("nested more than {MAX_DEPTH} levels deep: refused"));
        }
        if self.expecting_key() {
            Err(
                "complex mapping keys (a mapping or sequence used as a key) are not supported"
                    .to_string(),
            )
        } else {
            Ok(())
        }
    }

    fn set_key(&mut self, text: String, style: TScalarStyle) -> Result<(), String> {
        if text == "<<" && style == TScalarStyle::Plain {
            return Err("YAML merge keys (<<) are not supported: write the fields out".to_string());
        }
        match self.stack.last_mut() {
            Some(Frame::Map { map, key, .. }) => {
                if map.contains_key(&text) {
                    return Err(format!("duplicate key {text:?}"));
                }
                *key = Some(text);
                Ok(())
            }
            _ => Err("internal: key outside a mapping".to_string()),
        }
    }

    /// Places a completed node into its parent (or as the document root) and records its anchor.
    fn finish(&mut self, value: Value, anchor: usize) -> Result<(), String> {
        if anchor != 0 {
            self.anchors.insert(anchor, value.clone());
        }
        match self.stack.last_mut() {
            None => {
                self.root = Some(value);
                Ok(())
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(value);
                Ok(())
            }
            Some(Frame::Map { map, key, .. }) => match key.take() {
                Some(k) => {
                    map.insert(k, value);
                    Ok(())
                }
                None => Err("internal: value without a key".to_string()),
            },
        }
    }

    fn count(&mut self, n: usize) -> Result<(), String> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            Err(format!(
                "more than {MAX_NODES} YAML nodes (after expanding aliases): refused"
            ))
        } else {
            Ok(())
        }
    }
}

fn node_count(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(node_count).sum::<usize>(),
        Value::Object(m) => 1 + m.values().map(node_count).sum::<usize>(),
        _ => 1,
    }
}

const CORE_TAG_PREFIX: &str = "tag:yaml.org,2002:";

fn check_collection_tag(tag: Option<&Tag>, expected: &str) -> Result<(), String> {
    match tag {
        None => Ok(()),
        Some(t) if t.handle == CORE_TAG_PREFIX && t.suffix == expected => Ok(()),
        Some(t) => Err(format!("unsupported YAML tag {}{}", t.handle, t.suffix)),
    }
}

/// YAML 1.2 core schema resolution, plus refusal of plain scalars whose meaning differs under YAML 1.1.
fn resolve_scalar(text: &str, style: TScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    if let Some(t) = tag {
        if t.handle != CORE_TAG_PREFIX {
            return Err(format!("unsupported YAML tag {}{}", t.handle, t.suffix));
        }
        return match t.suffix.as_str() {
            "str" => Ok(Value::String(text.to_string())),
            "null" => Ok(Value::Null),
            "bool" => resolve_bool(text).ok_or_else(|| format!("{text:?} is not a !!bool")),
            "int" => resolve_int(text).ok_or_else(|| format!("{text:?} is not a !!int")),
            "float" => resolve_number(text)?.ok_or_else(|| format!("{text:?} is not a !!float")),
            other => Err(format!("unsupported YAML tag !!{other}")),
        };
    }
    if style != TScalarStyle::Plain {
        return Ok(Value::String(text.to_string()));
    }
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return Ok(Value::Null);
    }
    if let Some(b) = resolve_bool(text) {
        return Ok(b);
    }
    if matches!(
        text,
        "y" | "Y"
            | "yes"
            | "Yes"
            | "YES"
            | "n"
            | "N"
            | "no"
            | "No"
            | "NO"
            | "on"
            | "On"
            | "ON"
            | "off"
            | "Off"
            | "OFF"
    ) {
        return Err(format!(
            "{text:?} is a boolean in YAML 1.1 (kubectl) but a string in YAML 1.2: quote it if you mean the string"
        ));
    }
    if let Some(n) = resolve_int(text) {
        return Ok(n);
    }
    if let Some(n) = resolve_number(text)? {
        return Ok(n);
    }
    Ok(Value::String(text.to_string()))
}

fn resolve_bool(text: &str) -> Option<Value> {
    match text {
        "true" | "True" | "TRUE" => Some(Value::Bool(true)),
        "false" | "False" | "FALSE" => Some(Value::Bool(false)),
        _ => None,
    }
}

fn resolve_int(text: &str) -> Option<Value> {
    let (neg, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (radix, body) = if let Some(h) = digits.strip_prefix("0x") {
        (16, h)
    } else if let Some(o) = digits.strip_prefix("0o") {
        (8, o)
    } else {
        (10, digits)
    };
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(body, radix).ok()?;
    if neg {
        // i64::MIN's magnitude is one more than i64::MAX.
        let v = 0i64.checked_sub_unsigned(magnitude)?;
        Some(Value::Number(Number::from(v)))
    } else {
        Some(Value::Number(Number::from(magnitude)))
    }
}

/// Floats: `Ok(None)` when `text` is not a number at all; infinities and NaN have no JSON form.
fn resolve_number(text: &str) -> Result<Option<Value>, String> {
    let unsigned = text.trim_start_matches(['-', '+']);
    if matches!(unsigned, ".inf" | ".Inf" | ".INF") || matches!(text, ".nan" | ".NaN" | ".NAN") {
        return Err(format!(
            "{text:?} (infinity or NaN) cannot be represented in JSON"
        ));
    }
    if !looks_like_float(text) {
        return Ok(None);
    }
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(Number::from_f64(f).map(Value::Number)),
        Ok(_) => Err(format!("{text:?} is out of range for a number")),
        Err(_) => Ok(None),
    }
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?` (YAML 1.2 core schema float).
fn looks_like_float(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'-' | b'+')) {
        i += 1;
    }
    let int_start = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let int_digits = i - int_start;
    let mut frac_digits = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let s = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        frac_digits = i - s;
    }
    if int_digits == 0 && frac_digits == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        let s = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == s {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(text: &str) -> Value {
        match parse_documents(text) {
            Ok(mut docs) if docs.len() == 1 => docs.remove(0).value,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn scalars_resolve_like_yaml_1_2() {
        let v = one("a: 1\nb: -2\nc: 1.5\nd: true\ne: ~\nf: '1'\ng: hello\nh: 0x10\ni: 2024-01-01T00:00:00Z\nj: \"true\"\nk: !!str 5\n");
        assert_eq!(
            v,
            json!({"a":1,"b":-2,"c":1.5,"d":true,"e":null,"f":"1","g":"hello","h":16,"i":"2024-01-01T00:00:00Z","j":"true","k":"5"})
        );
    }

    #[test]
    fn multi_documents_are_numbered_including_empty_ones() {
        let docs = parse_documents("a: 1\n---\n---\nb: 2\n").unwrap_or_default();
        let idx: Vec<usize> = docs.iter().map(|d| d.index).collect();
        assert_eq!(idx, vec![1, 2, 3]);
        assert_eq!(docs[1].value, Value::Null);
        assert_eq!(docs[2].value, json!({"b": 2}));
    }

    #[test]
    fn duplicate_keys_are_refused_with_position() {
        let e = parse_documents("spec:\n  a: 1\n  a: 2\n").err();
        let e = e.map(|e| (e.line, e.message));
        assert_eq!(e, Some((3, "duplicate key \"a\"".to_string())));
    }

    #[test]
    fn refused_constructs() {
        for (text, needle) in [
            ("a: &x {b: 1}\nc:\n  <<: *x\n", "merge keys"),
            ("a: !custom 1\n", "unsupported YAML tag"),
            ("a: yes\n", "YAML 1.1"),
            ("a: .inf\n", "infinity"),
            ("? [a]\n: 1\n", "complex mapping keys"),
            ("a: [1, 2\n", ""),
        ] {
            match parse_documents(text) {
                Err(e) => assert!(e.message.contains(needle), "{text}: {e}"),
                Ok(v) => panic!("{text} accepted: {v:?}"),
            }
        }
    }

    #[test]
    fn aliases_expand_and_bombs_are_refused() {
        assert_eq!(
            one("a: &x [1, 2]\nb: *x\n"),
            json!({"a": [1, 2], "b": [1, 2]})
        );
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let prev = i - 1;
            bomb.push_str(&format!("a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"));
        }
        let e = parse_documents(&bomb)
            .err()
            .map(|e| e.message)
            .unwrap_or_default();
        assert!(e.contains("YAML nodes"), "{e}");
    }

    #[test]
    fn deep_nesting_is_refused_and_bom_accepted() {
        // The parser has its own limit; ours applies below it.
        let e = parse_documents(&"[".repeat(10_000))
            .err()
            .map(|e| e.message)
            .unwrap_or_default();
        assert!(
            e.contains("recursion limit") || e.contains("nested more than"),
            "{e}"
        );
        let e = parse_documents(&format!("{}1{}", "[".repeat(200), "]".repeat(200)))
            .err()
            .map(|e| e.message);
        assert_eq!(
            e.as_deref(),
            Some("nested more than 128 levels deep: refused")
        );
        assert_eq!(one("\u{feff}a: 1\r\nb: 2\r\n"), json!({"a": 1, "b": 2}));
    }

    #[test]
    fn quoted_keys_are_plain_strings() {
        assert_eq!(one("'<<': 1\n80: x\n"), json!({"<<": 1, "80": "x"}));
    }
}
