//! Tool-definition pinning (rug-pull guard): the hash a grant pins a tool to.
//!
//! The hash is SHA-256 over the RFC 8785 (JCS) canonical JSON of the object made of the tool's `name`,
//! `title`, `description`, `inputSchema`, `outputSchema` and `annotations` members — exactly those, each only
//! when present in the listed tool (`null` counts as present). Other members (`icons`, `execution`, `_meta`)
//! are not pinned: they do not change what the model is told the tool does. Written as 64 lower-case hex
//! digits. The same function serves `grantwall pins` (host side) and the filter.

use crate::strict;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The members of a tool definition the pin covers.
pub const PINNED_FIELDS: [&str; 6] = ["name", "title", "description", "inputSchema", "outputSchema", "annotations"];

/// The pin of one listed tool (its raw JSON). Fails on JSON Grantwall cannot read with certainty.
pub fn tool_hash(raw_tool: &str) -> Result<String, String> {
    let tool = strict::value(raw_tool).map_err(|e| e.to_string())?;
    let Value::Object(map) = tool else { return Err("a tool must be a JSON object".into()) };
    let mut pinned = serde_json::Map::new();
    for field in PINNED_FIELDS {
        if let Some(v) = map.get(field) {
            pinned.insert(field.to_owned(), v.clone());
        }
    }
    let mut canonical = Vec::with_capacity(raw_tool.len());
    jcs(&Value::Object(pinned), &mut canonical)?;
    Ok(hex(&Sha256::digest(&canonical)))
}

/// RFC 8785 canonical form: members sorted by UTF-16 code units, no whitespace, ECMAScript number format,
/// minimal string escaping (serde_json's string escaping is exactly JCS's).
pub fn jcs(v: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    match v {
        Value::Null | Value::Bool(_) | Value::String(_) => {
            serde_json::to_writer(&mut *out, v).map_err(|e| e.to_string())?;
        }
        Value::Number(n) => out.extend_from_slice(number(n)?.as_bytes()),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                jcs(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k).map_err(|e| e.to_string())?;
                out.push(b':');
                if let Some(value) = map.get(k) {
                    jcs(value, out)?;
                }
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// ECMAScript `Number.prototype.toString` for a finite double (JCS §3.2.2.3).
fn number(n: &serde_json::Number) -> Result<String, String> {
    if let Some(i) = n.as_i64() {
        if i.unsigned_abs() <= (1u64 << 53) {
            return Ok(i.to_string());
        }
    }
    if let Some(u) = n.as_u64() {
        if u <= (1u64 << 53) {
            return Ok(u.to_string());
        }
    }
    let f = n.as_f64().ok_or("number out of range")?;
    if !f.is_finite() {
        return Err("number out of range".into());
    }
    if f == 0.0 {
        return Ok("0".into());
    }
    let abs = f.abs();
    if (1e-6..1e21).contains(&abs) {
        // Rust's Display prints the shortest round-trip digits without an exponent, as ECMAScript does here.
        Ok(format!("{f}"))
    } else {
        // ECMAScript: `1e+21`, `1.5e-7`; Rust's `{:e}`: `1e21`, `1.5e-7`.
        let s = format!("{f:e}");
        Ok(match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
            _ => s,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        for nibble in [b >> 4, b & 15] {
            s.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
        }
    }
    s
}

/// Whether a string is a pin as `grantwall pins` prints it.
pub fn is_pin(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Check a backend's pins at config load; errors are (field path, message).
pub fn validate_pins(
    pins: &std::collections::BTreeMap<String, String>,
    at: &str,
) -> Result<std::collections::HashMap<String, String>, (String, String)> {
    let mut out = std::collections::HashMap::with_capacity(pins.len());
    for (tool, hash) in pins {
        if tool.is_empty() || !is_pin(hash) {
            return Err((format!("{at}.toolPins[{tool:?}]"), "must map a tool name to 64 lower-case hex digits (SHA-256)".into()));
        }
        out.insert(tool.clone(), hash.clone());
    }
    Ok(out)
}

/// Check a backend's elicitation URL hosts: lower-case host names, optionally `*.` wildcards.
pub fn validate_hosts(hosts: &[String], at: &str) -> Result<(), (String, String)> {
    for (i, h) in hosts.iter().enumerate() {
        let name = h.strip_prefix("*.").unwrap_or(h);
        let ok = !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !name.starts_with('.')
            && !name.ends_with('.');
        if !ok {
            return Err((format!("{at}.elicitationUrlHosts[{i}]"), format!("{h:?} is not a lower-case host name or *.suffix")));
        }
    }
    Ok(())
}
