//! Property tests with a small seeded PRNG (no extra crates, so they run on 32-bit Wasm too):
//! - the same message written any legal way (whitespace, `\uXXXX` and `\/` escapes, member order) and cut
//!   into any chunks, then reassembled as the filter's buffer does, parses to the same message;
//! - adding a duplicate of any member at any depth always refuses the body, whatever the encoding;
//! - a near-miss of a field Grantwall reads (case or Unicode folding) is always refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use grantwall_core::jsonrpc::{parse, ParseError};
use serde_json::{Map, Value};

const CASES: u64 = 400;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

const METHODS: &[&str] = &["tools/call", "prompts/get", "resources/read", "initialize", "ping", "notifications/x"];
const NAMES: &[&str] = &["echo", "get-sum", "a/b", "ünï\u{2028}cødé", "quote\"back\\slash", "mem://docs/readme", ""];

fn random_value(rng: &mut Rng, depth: usize) -> Value {
    match if depth > 3 { rng.below(4) } else { rng.below(6) } {
        0 => Value::from(rng.next() as i64 >> rng.below(60)),
        1 => Value::from(rng.pick(NAMES)),
        2 => Value::Bool(rng.below(2) == 0),
        3 => Value::Null,
        4 => Value::Array((0..rng.below(4)).map(|_| random_value(rng, depth + 1)).collect()),
        _ => {
            let mut m = Map::new();
            for i in 0..rng.below(5) {
                m.insert(format!("k{i}{}", rng.pick(NAMES)), random_value(rng, depth + 1));
            }
            Value::Object(m)
        }
    }
}

fn random_message(rng: &mut Rng) -> Value {
    let method = rng.pick(METHODS);
    let mut params = Map::new();
    match method {
        "tools/call" | "prompts/get" => {
            params.insert("name".into(), Value::from(rng.pick(NAMES)));
            params.insert("arguments".into(), random_value(rng, 1));
        }
        "resources/read" => {
            params.insert("uri".into(), Value::from(rng.pick(NAMES)));
        }
        "initialize" => {
            params.insert("protocolVersion".into(), Value::from("2025-11-25"));
            params.insert("capabilities".into(), random_value(rng, 1));
        }
        _ => {}
    }
    params.insert("_meta".into(), random_value(rng, 1));
    let mut msg = Map::new();
    msg.insert("jsonrpc".into(), Value::from("2.0"));
    if !method.starts_with("notifications/") {
        let id = if rng.below(2) == 0 { Value::from(rng.next() >> 1) } else { Value::from(rng.pick(NAMES)) };
        msg.insert("id".into(), id);
    }
    msg.insert("method".into(), Value::from(method));
    msg.insert("params".into(), Value::Object(params));
    Value::Object(msg)
}

/// Write `v` as JSON with random whitespace, random escapes and random member order.
fn encode(rng: &mut Rng, v: &Value, out: &mut String) {
    const WS: &[&str] = &["", "", " ", "\n", "\t", "\r\n  "];
    out.push_str(rng.pick(WS));
    match v {
        Value::String(s) => encode_str(rng, s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                encode(rng, item, out);
            }
            out.push_str(rng.pick(WS));
            out.push(']');
        }
        Value::Object(m) => {
            let mut members: Vec<_> = m.iter().collect();
            for i in (1..members.len()).rev() {
                members.swap(i, rng.below(i + 1));
            }
            out.push('{');
            for (i, (k, val)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(rng.pick(WS));
                encode_str(rng, k, out);
                out.push_str(rng.pick(WS));
                out.push(':');
                encode(rng, val, out);
            }
            out.push_str(rng.pick(WS));
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
    out.push_str(rng.pick(WS));
}

fn encode_str(rng: &mut Rng, s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        let forced = matches!(c, '"' | '\\') || (c as u32) < 0x20;
        if forced || rng.below(4) == 0 {
            match c {
                '/' if rng.below(2) == 0 => out.push_str("\\/"),
                c if (c as u32) > 0xFFFF => {
                    let mut buf = [0u16; 2];
                    for unit in c.encode_utf16(&mut buf) {
                        out.push_str(&format!("\\u{unit:04X}"));
                    }
                }
                c => out.push_str(&format!("\\u{:04x}", c as u32)),
            }
        } else {
            out.push(c);
        }
    }
    out.push('"');
}

/// Cut at random points and reassemble, as the filter's buffer does with transport chunks.
fn rechunk(rng: &mut Rng, body: &[u8]) -> Vec<u8> {
    let mut chunks: Vec<&[u8]> = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (a, b) = rest.split_at(rng.below(rest.len() + 1).min(rest.len()));
        chunks.push(a);
        rest = b;
    }
    chunks.concat()
}

/// What authorization reads, comparable across encodings (the id decoded, not raw).
fn reading(body: &[u8]) -> Result<(String, Option<String>, Option<Value>, Option<String>), ParseError> {
    let m = parse(body)?;
    let id = m.id.map(|raw| serde_json::from_str::<Value>(raw).unwrap());
    Ok((m.method.into_owned(), m.target.map(|t| t.into_owned()), id, m.protocol_version.map(|p| p.into_owned())))
}

#[test]
fn any_legal_encoding_and_any_chunking_reads_the_same() {
    let mut rng = Rng(0x5EED_0001);
    for _ in 0..CASES {
        let msg = random_message(&mut rng);
        let canonical = serde_json::to_vec(&msg).unwrap();
        let expected = reading(&canonical).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&canonical)));
        let mut text = String::new();
        encode(&mut rng, &msg, &mut text);
        let body = rechunk(&mut rng, text.as_bytes());
        assert_eq!(reading(&body), Ok(expected.clone()), "{text}");
        assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), msg, "the encoder must be faithful");
    }
}

/// Insert a second member with an existing key into a random object of `v`.
fn add_duplicate(rng: &mut Rng, v: &Value) -> Option<String> {
    let mut objects = Vec::new();
    collect_objects(v, &mut objects);
    let objects: Vec<_> = objects.into_iter().filter(|m| !m.is_empty()).collect();
    if objects.is_empty() {
        return None;
    }
    let target = objects[rng.below(objects.len())] as *const Map<String, Value>;
    let mut out = String::new();
    write_with_dup(rng, v, target, &mut out);
    Some(out)
}

fn collect_objects<'a>(v: &'a Value, out: &mut Vec<&'a Map<String, Value>>) {
    match v {
        Value::Object(m) => {
            out.push(m);
            m.values().for_each(|x| collect_objects(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_objects(x, out)),
        _ => {}
    }
}

fn write_with_dup(rng: &mut Rng, v: &Value, target: *const Map<String, Value>, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut members: Vec<(String, String)> = m
                .iter()
                .map(|(k, x)| {
                    let mut s = String::new();
                    write_with_dup(rng, x, target, &mut s);
                    (k.clone(), s)
                })
                .collect();
            if std::ptr::eq(m, target) {
                // Same key, a value of the same type (so no type check can refuse it first): a string
                // becomes a decoy (but "jsonrpc" stays "2.0"), anything else is repeated as it was.
                let (k, original) = members[rng.below(members.len())].clone();
                let decoy = if original.starts_with('"') && k != "jsonrpc" { "\"decoy\"".to_owned() } else { original };
                let at = rng.below(members.len() + 1);
                members.insert(at, (k, decoy));
            }
            out.push('{');
            for (i, (k, s)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                encode_str(rng, k, out);
                out.push(':');
                out.push_str(s);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_with_dup(rng, x, target, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[test]
fn a_duplicate_member_anywhere_is_always_refused() {
    let mut rng = Rng(0x5EED_0002);
    for _ in 0..CASES {
        let msg = random_message(&mut rng);
        let Some(text) = add_duplicate(&mut rng, &msg) else { continue };
        let body = rechunk(&mut rng, text.as_bytes());
        match parse(&body) {
            Err(ParseError::DuplicateKey(_)) => {}
            other => panic!("not refused as a duplicate: {other:?}\n{text}"),
        }
    }
}

#[test]
fn near_misses_of_read_fields_are_always_refused() {
    let mut rng = Rng(0x5EED_0003);
    let fields = [("", "method"), ("", "params"), ("", "jsonrpc"), ("params", "name"), ("params", "arguments")];
    for _ in 0..CASES {
        let mut msg = random_message(&mut rng);
        let (parent, field) = rng.pick(&fields);
        let folded: String = field
            .chars()
            .map(|c| match (c, rng.below(3)) {
                ('s', 0) => '\u{017F}',
                (c, 1) => c.to_ascii_uppercase(),
                (c, _) => c,
            })
            .collect();
        let folded = if folded == field { field.to_ascii_uppercase() } else { folded };
        let obj = if parent.is_empty() { msg.as_object_mut() } else { msg.get_mut(parent).and_then(Value::as_object_mut) };
        obj.unwrap().insert(folded.clone(), Value::from("delete-everything"));
        let mut text = String::new();
        encode(&mut rng, &msg, &mut text);
        match parse(text.as_bytes()) {
            Err(ParseError::AmbiguousKey(k)) => assert_eq!(k, folded),
            other => panic!("near-miss {folded:?} not refused: {other:?}\n{text}"),
        }
    }
}
