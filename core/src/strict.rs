//! Strict JSON readers for response bodies: objects as ordered (key, raw value) lists that refuse duplicate
//! keys, and a `serde_json::Value` builder that refuses them at any depth.
//!
//! Clients read duplicate keys as "last wins"; a gateway that filtered or hashed the first copy would judge
//! something other than what the client uses, so a duplicate makes the body unfilterable (fail closed).

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;

/// One JSON object's members in document order, values unparsed.
pub struct Members<'a>(pub Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Members<'a> {
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'a>, A::Error> {
                let mut out: Vec<(Cow<'a, str>, &'a RawValue)> = Vec::with_capacity(8);
                while let Some(key) = map.next_key_seed(StrSeed)? {
                    if out.iter().any(|(k, _)| *k == key) {
                        return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
                    }
                    let value: &'de RawValue = map.next_value()?;
                    out.push((key, value));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// A JSON string, borrowed from the input when it has no escapes (serde's `Cow<str>` always copies).
pub struct StrSeed;

impl<'de> DeserializeSeed<'de> for StrSeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(StrVisitor)
    }
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

/// One member of a listed item, read in a single pass that also refuses duplicate keys at the item's top
/// level: `Ok(None)` when the item has no such member, an error when it is not a string.
pub fn string_member<'a>(raw: &'a str, field: &str) -> Result<Option<Cow<'a, str>>, serde_json::Error> {
    struct V<'f>(&'f str);
    impl<'de, 'f> Visitor<'de> for V<'f> {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut seen: Vec<Cow<'de, str>> = Vec::with_capacity(8);
            let mut found = None;
            while let Some(key) = map.next_key_seed(StrSeed)? {
                if seen.contains(&key) {
                    return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
                }
                if key == self.0 {
                    found = Some(map.next_value_seed(StrSeed)?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
                seen.push(key);
            }
            Ok(found)
        }
    }
    let mut de = serde_json::Deserializer::from_str(raw);
    let v = de.deserialize_map(V(field))?;
    de.end()?;
    Ok(v)
}

/// Parse an object's members, refusing duplicates at this level.
pub fn members(raw: &str) -> Result<Members<'_>, serde_json::Error> {
    serde_json::from_str(raw)
}

/// Parse an array into its raw elements.
pub fn elements(raw: &str) -> Result<Vec<&RawValue>, serde_json::Error> {
    serde_json::from_str(raw)
}

/// Parse a whole value, refusing duplicate keys at any depth.
pub fn value(raw: &str) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(raw);
    let v = StrictSeed.deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

struct StrictSeed;

impl<'de> DeserializeSeed<'de> for StrictSeed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictSeed)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            let v = map.next_value_seed(StrictSeed)?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// Decode a raw JSON string token (`"a\u0062"` → `ab`); None if it is not a string.
pub fn string(raw: &RawValue) -> Option<Cow<'_, str>> {
    serde_json::from_str::<Cow<'_, str>>(raw.get()).ok()
}

/// Whether two raw JSON-RPC ids are the same id (strings compared decoded, numbers as written).
pub fn same_id(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim(), b.trim());
    if a.starts_with('"') || b.starts_with('"') {
        match (serde_json::from_str::<Cow<'_, str>>(a), serde_json::from_str::<Cow<'_, str>>(b)) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
    } else {
        a == b
    }
}
