//! Reading an [`Expr`] from its JSON form, by hand.
//!
//! serde's derived `Deserialize` for a 38-variant recursive enum cost ~30 KiB more Wasm than going through
//! `serde_json::Value` (already in the module for `request.mcp.arguments`) and this small decoder.
//! The JSON shape is exactly what the derived `Serialize` writes (a test round-trips every node kind).

use super::ir::{Expr, Func, Timestamp, Var};
use serde::de::{Deserialize, Deserializer, Error};
use serde_json::{Map, Value};

impl<'de> Deserialize<'de> for Expr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Expr, D::Error> {
        let v = Value::deserialize(d)?;
        decode(&v).map_err(D::Error::custom)
    }
}

type R = Result<Expr, String>;

fn decode(v: &Value) -> R {
    if v.as_str() == Some("null") {
        return Ok(Expr::Null);
    }
    let (kind, arg) = match v.as_object().map(Map::iter).map(|mut it| (it.next(), it.next())) {
        Some((Some(pair), None)) => pair,
        _ => return Err(format!("expected a CEL node (\"null\" or an object with one key), got {v}")),
    };
    let b = |x: &Value| decode(x).map(Box::new);
    let two = || match arg.as_array().map(Vec::as_slice) {
        Some([x, y]) => Ok((b(x)?, b(y)?)),
        _ => Err(format!("{kind}: expected [expr, expr]")),
    };
    let named = || match arg.as_array().map(Vec::as_slice) {
        Some([x, Value::String(s)]) => Ok((b(x)?, s.clone())),
        _ => Err(format!("{kind}: expected [expr, string]")),
    };
    let string = || arg.as_str().map(str::to_owned).ok_or_else(|| format!("{kind}: expected a string"));
    let list = || match arg.as_array() {
        Some(items) => items.iter().map(decode).collect::<Result<Vec<_>, _>>(),
        None => Err(format!("{kind}: expected an array")),
    };
    Ok(match kind.as_str() {
        "bool" => Expr::Bool(arg.as_bool().ok_or("bool: expected true or false")?),
        "int" => Expr::Int(arg.as_i64().ok_or("int: expected a 64-bit integer")?),
        "uint" => Expr::Uint(arg.as_u64().ok_or("uint: expected an unsigned 64-bit integer")?),
        "double" => Expr::Double(arg.as_f64().ok_or("double: expected a number")?),
        "string" => Expr::String(string()?),
        "timestamp" => Expr::Timestamp(timestamp(arg)?),
        "list" => Expr::List(list()?),
        "var" => {
            let name = string()?;
            Expr::Var(Var::from_name(&name).ok_or_else(|| format!("unknown variable {name:?}"))?)
        }
        "local" => Expr::Local(arg.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or("local: expected an index")?),
        "header" => Expr::Header(string()?),
        "hasHeader" => Expr::HasHeader(string()?),
        "select" => named().map(|(e, f)| Expr::Select(e, f))?,
        "has" => named().map(|(e, f)| Expr::Has(e, f))?,
        "matches" => named().map(|(e, p)| Expr::Matches(e, p))?,
        "not" => Expr::Not(b(arg)?),
        "neg" => Expr::Neg(b(arg)?),
        "and" => Expr::And(list()?),
        "or" => Expr::Or(list()?),
        "cond" => match arg.as_array().map(Vec::as_slice) {
            Some([c, x, y]) => Expr::Cond(b(c)?, b(x)?, b(y)?),
            _ => return Err("cond: expected [expr, expr, expr]".to_owned()),
        },
        "call" => match arg.as_array().map(Vec::as_slice) {
            Some([Value::String(f), Value::Array(args)]) => Expr::Call(
                Func::from_name(f).ok_or_else(|| format!("unknown function {f:?}"))?,
                args.iter().map(decode).collect::<Result<_, _>>()?,
            ),
            _ => return Err("call: expected [function, [args]]".to_owned()),
        },
        "index" => two().map(|(x, y)| Expr::Index(x, y))?,
        "eq" => two().map(|(x, y)| Expr::Eq(x, y))?,
        "ne" => two().map(|(x, y)| Expr::Ne(x, y))?,
        "lt" => two().map(|(x, y)| Expr::Lt(x, y))?,
        "le" => two().map(|(x, y)| Expr::Le(x, y))?,
        "gt" => two().map(|(x, y)| Expr::Gt(x, y))?,
        "ge" => two().map(|(x, y)| Expr::Ge(x, y))?,
        "add" => two().map(|(x, y)| Expr::Add(x, y))?,
        "sub" => two().map(|(x, y)| Expr::Sub(x, y))?,
        "mul" => two().map(|(x, y)| Expr::Mul(x, y))?,
        "div" => two().map(|(x, y)| Expr::Div(x, y))?,
        "rem" => two().map(|(x, y)| Expr::Rem(x, y))?,
        "in" => two().map(|(x, y)| Expr::In(x, y))?,
        "all" => two().map(|(x, y)| Expr::All(x, y))?,
        "exists" => two().map(|(x, y)| Expr::Exists(x, y))?,
        "existsOne" => two().map(|(x, y)| Expr::ExistsOne(x, y))?,
        other => return Err(format!("unknown CEL node kind {other:?}")),
    })
}

fn timestamp(v: &Value) -> Result<Timestamp, String> {
    let m = v.as_object().ok_or("timestamp: expected {seconds, nanos}")?;
    if let Some(k) = m.keys().find(|k| *k != "seconds" && *k != "nanos") {
        return Err(format!("timestamp: unknown field {k:?}"));
    }
    let seconds = m.get("seconds").and_then(Value::as_i64).ok_or("timestamp: seconds must be an integer")?;
    let nanos = match m.get("nanos") {
        None => 0,
        Some(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or("timestamp: nanos must be an integer")?,
    };
    Ok(Timestamp { seconds, nanos })
}
