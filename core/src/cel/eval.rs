//! Evaluating a loaded [`Program`] against one request.
//!
//! CEL semantics where they matter for authorization: `&&`/`||` absorb an error when the other side decides
//! (`false && error` is false, `true || error` is true), every other error propagates, and a rule matches only
//! when the result is exactly `true`. Numbers compare across int/uint/double by value; arithmetic needs one
//! type and fails on overflow. Cost is bounded by [`LIMITS`](super::LIMITS)`.steps`: each node visited, list
//! element scanned or loop iteration spends one step, and running out is an error (so: no match).

use super::ir::{Expr, Func, Timestamp, Var};
use super::program::{Program, LIMITS};
use super::time::Civil;
use serde_json::Value;
use std::borrow::Cow;
use std::cell::OnceCell;
use std::cmp::Ordering;
use std::fmt;

/// The request as CEL sees it. Built per request by the engine; `request.mcp.arguments` is parsed from its raw
/// JSON only when an expression first reads it, and at most once for all rules.
#[derive(Debug, Default)]
pub struct Activation<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub host: &'a str,
    /// Captured request headers, lower-case names.
    pub headers: &'a [(String, String)],
    pub principal: Option<&'a str>,
    pub time: Option<Timestamp>,
    /// JSON-RPC method of an MCP request or notification.
    pub mcp_method: Option<&'a str>,
    /// `params.name` of a `tools/call`.
    pub tool_name: Option<&'a str>,
    /// `params.arguments`, raw JSON text (already checked by the strict parser: no duplicate keys).
    pub arguments: Option<&'a str>,
    /// The arguments are not known yet (judging a listed tool): reading them is
    /// [`EvalError::DependsOnArguments`] instead of "absent".
    pub arguments_unknown: bool,
    /// The verified token's claims (a JSON object) for `jwt.claims`; an empty map without a token.
    pub jwt_claims: Option<&'a Value>,
    parsed_arguments: OnceCell<Option<Value>>,
}

impl<'a> Activation<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        method: &'a str,
        path: &'a str,
        host: &'a str,
        headers: &'a [(String, String)],
        principal: Option<&'a str>,
        time: Option<Timestamp>,
        mcp_method: Option<&'a str>,
        tool_name: Option<&'a str>,
        arguments: Option<&'a str>,
    ) -> Activation<'a> {
        Activation {
            method,
            path,
            host,
            headers,
            principal,
            time,
            mcp_method,
            tool_name,
            arguments,
            arguments_unknown: false,
            jwt_claims: None,
            parsed_arguments: OnceCell::new(),
        }
    }

    /// The same request with arguments still to come: a listed tool, judged before any call is made.
    pub fn with_unknown_arguments(mut self) -> Activation<'a> {
        self.arguments_unknown = true;
        self
    }

    /// Whether `request.mcp.arguments` has been parsed (tests prove the lazy path stays lazy).
    pub fn arguments_parsed(&self) -> bool {
        self.parsed_arguments.get().is_some()
    }
}

/// Why an expression did not evaluate to a boolean. Every one of them means "the rule does not match".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalError {
    /// The variable has no value for this request (no tool name outside `tools/call`, no identity, …).
    Absent(Var),
    /// A map has no such key (missing header, argument or claim).
    NoSuchKey,
    IndexOutOfRange,
    /// An operator or function applied to a value of the wrong type.
    TypeMismatch(&'static str),
    Overflow,
    DivisionByZero,
    /// The step budget ran out.
    BudgetExceeded,
    /// The whole expression produced a non-boolean.
    NotBool,
    /// `params.arguments` could not be read as JSON.
    BadArguments,
    /// The result depends on arguments that are not known yet (only when judging a listed tool): some call
    /// might pass, so the tool is listed; the call itself is judged with its real arguments.
    DependsOnArguments,
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::Absent(v) => write!(f, "{} is absent for this request", v.name()),
            EvalError::NoSuchKey => f.write_str("no such key"),
            EvalError::IndexOutOfRange => f.write_str("list index out of range"),
            EvalError::TypeMismatch(op) => write!(f, "no matching overload for {op}"),
            EvalError::Overflow => f.write_str("integer overflow"),
            EvalError::DivisionByZero => f.write_str("division by zero"),
            EvalError::BudgetExceeded => write!(f, "evaluation budget of {} steps exceeded", LIMITS.steps),
            EvalError::NotBool => f.write_str("expression did not evaluate to a bool"),
            EvalError::BadArguments => f.write_str("params.arguments is not readable JSON"),
            EvalError::DependsOnArguments => f.write_str("depends on the call's arguments"),
        }
    }
}

/// Evaluate: `Ok(true)` only when the expression is true.
pub fn eval(program: &Program, act: &Activation<'_>) -> Result<bool, EvalError> {
    let mut ev = Evaluator { program, act, steps: LIMITS.steps, locals: Vec::new() };
    match ev.eval(program.expr())? {
        Val::Bool(b) => Ok(b),
        _ => Err(EvalError::NotBool),
    }
}

#[derive(Debug, Clone)]
enum Val<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Double(f64),
    Str(Cow<'a, str>),
    Ts(Timestamp),
    List(Vec<Val<'a>>),
    /// A JSON array or object from `request.mcp.arguments`, read in place.
    Json(&'a Value),
    /// `jwt.claims` of a request without a token.
    EmptyMap,
}

type R<'a> = Result<Val<'a>, EvalError>;

struct Evaluator<'a> {
    program: &'a Program,
    act: &'a Activation<'a>,
    steps: u32,
    /// Comprehension variables, innermost last.
    locals: Vec<Val<'a>>,
}

impl<'a> Evaluator<'a> {
    fn step(&mut self) -> Result<(), EvalError> {
        self.steps = self.steps.checked_sub(1).ok_or(EvalError::BudgetExceeded)?;
        Ok(())
    }

    fn eval(&mut self, e: &'a Expr) -> R<'a> {
        self.step()?;
        Ok(match e {
            Expr::Null => Val::Null,
            Expr::Bool(b) => Val::Bool(*b),
            Expr::Int(i) => Val::Int(*i),
            Expr::Uint(u) => Val::Uint(*u),
            Expr::Double(d) => Val::Double(*d),
            Expr::String(s) => Val::Str(Cow::Borrowed(s)),
            Expr::Timestamp(t) => Val::Ts(*t),
            Expr::List(items) => Val::List(items.iter().map(|i| self.eval(i)).collect::<Result<_, _>>()?),
            Expr::Var(v) => self.var(*v)?,
            Expr::Local(i) => {
                let at = self.locals.len().checked_sub(1 + *i as usize).ok_or(EvalError::NoSuchKey)?;
                self.locals.get(at).cloned().ok_or(EvalError::NoSuchKey)?
            }
            Expr::Header(name) => {
                let act = self.act;
                let (_, v) = act.headers.iter().find(|(n, _)| n == name).ok_or(EvalError::NoSuchKey)?;
                Val::Str(Cow::Borrowed(v))
            }
            Expr::HasHeader(name) => Val::Bool(self.act.headers.iter().any(|(n, _)| n == name)),
            Expr::Select(base, field) => {
                let base = self.eval(base)?;
                lookup(&base, field)?
            }
            Expr::Has(base, field) => match self.eval(base)? {
                Val::Json(Value::Object(m)) => Val::Bool(m.contains_key(field)),
                Val::EmptyMap => Val::Bool(false),
                _ => return Err(EvalError::TypeMismatch("has")),
            },
            Expr::Index(base, key) => {
                let base = self.eval(base)?;
                let key = self.eval(key)?;
                index(&base, &key)?
            }
            Expr::Not(x) => match self.eval(x)? {
                Val::Bool(b) => Val::Bool(!b),
                _ => return Err(EvalError::TypeMismatch("!_")),
            },
            Expr::Neg(x) => match self.eval(x)? {
                Val::Int(i) => Val::Int(i.checked_neg().ok_or(EvalError::Overflow)?),
                Val::Double(d) => Val::Double(-d),
                _ => return Err(EvalError::TypeMismatch("-_")),
            },
            Expr::And(items) => self.logic(items, false)?,
            Expr::Or(items) => self.logic(items, true)?,
            Expr::Cond(c, a, b) => match self.eval(c)? {
                Val::Bool(true) => self.eval(a)?,
                Val::Bool(false) => self.eval(b)?,
                _ => return Err(EvalError::TypeMismatch("_?_:_")),
            },
            Expr::Eq(a, b) => {
                let (a, b) = (self.eval(a)?, self.eval(b)?);
                Val::Bool(self.equals(&a, &b)?)
            }
            Expr::Ne(a, b) => {
                let (a, b) = (self.eval(a)?, self.eval(b)?);
                Val::Bool(!self.equals(&a, &b)?)
            }
            Expr::Lt(a, b) => self.order(a, b, "_<_", |o| o == Ordering::Less)?,
            Expr::Le(a, b) => self.order(a, b, "_<=_", |o| o != Ordering::Greater)?,
            Expr::Gt(a, b) => self.order(a, b, "_>_", |o| o == Ordering::Greater)?,
            Expr::Ge(a, b) => self.order(a, b, "_>=_", |o| o != Ordering::Less)?,
            Expr::Add(a, b) => arith(self.eval(a)?, self.eval(b)?, "_+_", i64::checked_add, u64::checked_add, |x, y| x + y)?,
            Expr::Sub(a, b) => arith(self.eval(a)?, self.eval(b)?, "_-_", i64::checked_sub, u64::checked_sub, |x, y| x - y)?,
            Expr::Mul(a, b) => arith(self.eval(a)?, self.eval(b)?, "_*_", i64::checked_mul, u64::checked_mul, |x, y| x * y)?,
            Expr::Div(a, b) => {
                let (a, b) = (self.eval(a)?, self.eval(b)?);
                if matches!(b, Val::Int(0) | Val::Uint(0)) {
                    return Err(EvalError::DivisionByZero);
                }
                arith(a, b, "_/_", i64::checked_div, u64::checked_div, |x, y| x / y)?
            }
            Expr::Rem(a, b) => {
                let (a, b) = (self.eval(a)?, self.eval(b)?);
                if matches!(b, Val::Int(0) | Val::Uint(0)) {
                    return Err(EvalError::DivisionByZero);
                }
                match (a, b) {
                    (Val::Int(x), Val::Int(y)) => Val::Int(x.checked_rem(y).ok_or(EvalError::Overflow)?),
                    (Val::Uint(x), Val::Uint(y)) => Val::Uint(x.checked_rem(y).ok_or(EvalError::Overflow)?),
                    _ => return Err(EvalError::TypeMismatch("_%_")),
                }
            }
            Expr::In(needle, hay) => {
                let needle = self.eval(needle)?;
                let hay = self.eval(hay)?;
                Val::Bool(self.contains(&needle, &hay)?)
            }
            Expr::Call(f, args) => {
                let mut vals = Vec::with_capacity(args.len());
                for a in args {
                    vals.push(self.eval(a)?);
                }
                call(*f, vals)?
            }
            Expr::Matches(x, pattern) => match self.eval(x)? {
                Val::Str(s) => {
                    let re = self.program.regex(pattern).ok_or(EvalError::TypeMismatch("matches"))?;
                    Val::Bool(re.is_match(&s))
                }
                _ => return Err(EvalError::TypeMismatch("matches")),
            },
            Expr::All(range, body) => self.comprehension(range, body, Loop::All)?,
            Expr::Exists(range, body) => self.comprehension(range, body, Loop::Exists)?,
            Expr::ExistsOne(range, body) => self.comprehension(range, body, Loop::ExistsOne)?,
        })
    }

    fn var(&self, v: Var) -> R<'a> {
        let act = self.act;
        let absent = EvalError::Absent(v);
        let s = |x: &'a str| Val::Str(Cow::Borrowed(x));
        Ok(match v {
            Var::RequestPath => s(act.path),
            Var::RequestUrlPath => s(act.path.split(['?', '#']).next().unwrap_or(act.path)),
            Var::RequestMethod => s(act.method),
            Var::RequestHost => s(act.host),
            Var::RequestTime => Val::Ts(act.time.ok_or(absent)?),
            Var::McpToolName => s(act.tool_name.ok_or(absent)?),
            Var::McpMethod => s(act.mcp_method.ok_or(absent)?),
            Var::McpArguments => {
                if act.arguments_unknown {
                    return Err(EvalError::DependsOnArguments);
                }
                let raw = act.arguments.ok_or(absent)?;
                let parsed = act.parsed_arguments.get_or_init(|| serde_json::from_str(raw).ok());
                from_json(parsed.as_ref().ok_or(EvalError::BadArguments)?)
            }
            Var::SourceSpiffeId => s(act.principal.ok_or(absent)?),
            Var::SourceNamespace => s(service_account(act.principal).ok_or(absent)?.0),
            Var::SourceServiceAccount => s(service_account(act.principal).ok_or(absent)?.1),
            Var::JwtClaims => act.jwt_claims.map_or(Val::EmptyMap, Val::Json),
        })
    }

    /// `&&` (`decisive` = false) and `||` (`decisive` = true): the decisive value wins over errors.
    fn logic(&mut self, items: &'a [Expr], decisive: bool) -> R<'a> {
        let mut error = None;
        for item in items {
            match self.eval(item) {
                Ok(Val::Bool(b)) if b == decisive => return Ok(Val::Bool(decisive)),
                Ok(Val::Bool(_)) => {}
                Ok(_) => {
                    error.get_or_insert(EvalError::TypeMismatch(if decisive { "_||_" } else { "_&&_" }));
                }
                // "Depends on the arguments" outranks other errors: with some arguments the other operands
                // may not matter (Kleene logic: only a decisive operand settles the result).
                Err(EvalError::DependsOnArguments) => error = Some(EvalError::DependsOnArguments),
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(Val::Bool(!decisive)),
        }
    }

    fn order(&mut self, a: &'a Expr, b: &'a Expr, op: &'static str, test: fn(Ordering) -> bool) -> R<'a> {
        let (a, b) = (self.eval(a)?, self.eval(b)?);
        let ord = match (&a, &b) {
            (Val::Str(x), Val::Str(y)) => x.as_ref().cmp(y.as_ref()),
            (Val::Ts(x), Val::Ts(y)) => x.cmp(y),
            (Val::Bool(x), Val::Bool(y)) => x.cmp(y),
            _ => numeric_cmp(&a, &b).ok_or(EvalError::TypeMismatch(op))?,
        };
        Ok(Val::Bool(test(ord)))
    }

    /// CEL heterogeneous equality: different types are unequal, numbers compare by value.
    fn equals(&mut self, a: &Val<'a>, b: &Val<'a>) -> Result<bool, EvalError> {
        self.step()?;
        Ok(match (a, b) {
            (Val::Null, Val::Null) => true,
            (Val::Bool(x), Val::Bool(y)) => x == y,
            (Val::Str(x), Val::Str(y)) => x == y,
            (Val::Ts(x), Val::Ts(y)) => x == y,
            (Val::EmptyMap, Val::EmptyMap) => true,
            (Val::EmptyMap, Val::Json(Value::Object(m))) | (Val::Json(Value::Object(m)), Val::EmptyMap) => m.is_empty(),
            (Val::Json(Value::Object(x)), Val::Json(Value::Object(y))) => {
                if x.len() != y.len() {
                    return Ok(false);
                }
                for (k, v) in x {
                    let Some(w) = y.get(k) else { return Ok(false) };
                    if !self.equals(&from_json(v), &from_json(w))? {
                        return Ok(false);
                    }
                }
                true
            }
            _ => match (list_len(a), list_len(b)) {
                (Some(x), Some(y)) => {
                    if x != y {
                        return Ok(false);
                    }
                    for i in 0..x {
                        let (Some(p), Some(q)) = (list_get(a, i), list_get(b, i)) else { return Ok(false) };
                        if !self.equals(&p, &q)? {
                            return Ok(false);
                        }
                    }
                    true
                }
                _ => numeric_cmp(a, b) == Some(Ordering::Equal),
            },
        })
    }

    fn contains(&mut self, needle: &Val<'a>, hay: &Val<'a>) -> Result<bool, EvalError> {
        match hay {
            Val::Json(Value::Object(m)) => match needle {
                Val::Str(k) => Ok(m.contains_key(k.as_ref())),
                _ => Err(EvalError::TypeMismatch("@in")),
            },
            Val::EmptyMap => Ok(false),
            _ => {
                let len = list_len(hay).ok_or(EvalError::TypeMismatch("@in"))?;
                for i in 0..len {
                    let Some(item) = list_get(hay, i) else { break };
                    if self.equals(needle, &item)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
        }
    }

    fn comprehension(&mut self, range: &'a Expr, body: &'a Expr, kind: Loop) -> R<'a> {
        let range = self.eval(range)?;
        // Elements are produced one at a time: a huge argument list costs steps, not a copy of itself.
        let mut keys = match &range {
            Val::Json(Value::Object(m)) => Some(m.keys()),
            _ => None,
        };
        let len = match &range {
            Val::Json(Value::Object(m)) => m.len(),
            Val::EmptyMap => 0,
            _ => list_len(&range).ok_or(EvalError::TypeMismatch(kind.name()))?,
        };
        let (mut trues, mut falses, mut error) = (0usize, 0usize, None);
        for i in 0..len {
            let item = match keys.as_mut() {
                Some(k) => k.next().map(|k| Val::Str(Cow::Borrowed(k.as_str()))),
                None => list_get(&range, i),
            };
            let Some(item) = item else { break };
            self.step()?;
            self.locals.push(item);
            let outcome = self.eval(body);
            self.locals.pop();
            match outcome {
                Ok(Val::Bool(true)) => trues += 1,
                Ok(Val::Bool(false)) => falses += 1,
                Ok(_) => {
                    error.get_or_insert(EvalError::TypeMismatch(kind.name()));
                }
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
            match kind {
                Loop::All if falses > 0 => return Ok(Val::Bool(false)),
                Loop::Exists if trues > 0 => return Ok(Val::Bool(true)),
                _ => {}
            }
        }
        if let Some(e) = error {
            return Err(e);
        }
        Ok(Val::Bool(match kind {
            Loop::All => true,
            Loop::Exists => false,
            Loop::ExistsOne => trues == 1,
        }))
    }
}

#[derive(Clone, Copy)]
enum Loop {
    All,
    Exists,
    ExistsOne,
}

impl Loop {
    fn name(self) -> &'static str {
        match self {
            Loop::All => "all",
            Loop::Exists => "exists",
            Loop::ExistsOne => "exists_one",
        }
    }
}

/// `spiffe://TD/ns/NS/sa/NAME` → (NS, NAME); anything else (more segments, other shapes) → None.
fn service_account(principal: Option<&str>) -> Option<(&str, &str)> {
    let rest = principal?.strip_prefix("spiffe://")?;
    let (_, path) = rest.split_once('/')?;
    let rest = path.strip_prefix("ns/")?;
    let (ns, rest) = rest.split_once('/')?;
    let name = rest.strip_prefix("sa/")?;
    (!ns.is_empty() && !name.is_empty() && !name.contains('/')).then_some((ns, name))
}

fn from_json(v: &Value) -> Val<'_> {
    match v {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Val::Int(i),
            (None, Some(u), _) => Val::Uint(u),
            (_, _, Some(d)) => Val::Double(d),
            _ => Val::Null,
        },
        Value::String(s) => Val::Str(Cow::Borrowed(s)),
        Value::Array(_) | Value::Object(_) => Val::Json(v),
    }
}

/// Length of a list value (a literal list or a JSON array); None for anything else.
fn list_len(v: &Val<'_>) -> Option<usize> {
    match v {
        Val::List(items) => Some(items.len()),
        Val::Json(Value::Array(items)) => Some(items.len()),
        _ => None,
    }
}

/// Element `i` of a list value, produced on demand (JSON elements are read in place).
fn list_get<'a>(v: &Val<'a>, i: usize) -> Option<Val<'a>> {
    match v {
        Val::List(items) => items.get(i).cloned(),
        Val::Json(Value::Array(items)) => items.get(i).map(from_json),
        _ => None,
    }
}

fn lookup<'a>(base: &Val<'a>, key: &str) -> R<'a> {
    match base {
        Val::Json(Value::Object(m)) => m.get(key).map(from_json).ok_or(EvalError::NoSuchKey),
        Val::EmptyMap => Err(EvalError::NoSuchKey),
        _ => Err(EvalError::TypeMismatch("_._")),
    }
}

fn index<'a>(base: &Val<'a>, key: &Val<'a>) -> R<'a> {
    match (base, key) {
        (Val::Json(Value::Object(_)) | Val::EmptyMap, Val::Str(k)) => lookup(base, k),
        (Val::List(_) | Val::Json(Value::Array(_)), Val::Int(_) | Val::Uint(_)) => {
            let i = match key {
                Val::Int(i) => usize::try_from(*i).map_err(|_| EvalError::IndexOutOfRange)?,
                Val::Uint(u) => usize::try_from(*u).map_err(|_| EvalError::IndexOutOfRange)?,
                _ => return Err(EvalError::TypeMismatch("_[_]")),
            };
            match base {
                Val::List(items) => items.get(i).cloned().ok_or(EvalError::IndexOutOfRange),
                Val::Json(Value::Array(items)) => items.get(i).map(from_json).ok_or(EvalError::IndexOutOfRange),
                _ => Err(EvalError::TypeMismatch("_[_]")),
            }
        }
        _ => Err(EvalError::TypeMismatch("_[_]")),
    }
}

/// Numeric comparison across int, uint and double (CEL's heterogeneous comparisons).
fn numeric_cmp(a: &Val<'_>, b: &Val<'_>) -> Option<Ordering> {
    let int = |v: &Val<'_>| match v {
        Val::Int(i) => Some(i128::from(*i)),
        Val::Uint(u) => Some(i128::from(*u)),
        _ => None,
    };
    match (a, b) {
        (Val::Double(x), Val::Double(y)) => x.partial_cmp(y),
        (Val::Double(x), other) => int(other).and_then(|i| cmp_double_int(*x, i)),
        (other, Val::Double(y)) => int(other).and_then(|i| cmp_double_int(*y, i)).map(Ordering::reverse),
        _ => Some(int(a)?.cmp(&int(b)?)),
    }
}

/// Exact comparison of a double with an integer (no rounding of large integers through f64).
fn cmp_double_int(d: f64, i: i128) -> Option<Ordering> {
    if d.is_nan() {
        return None;
    }
    // Beyond ±2^100 no i64/u64 can compare differently than the sign says.
    const BIG: f64 = 1.2676506002282294e30;
    if d >= BIG {
        return Some(Ordering::Greater);
    }
    if d <= -BIG {
        return Some(Ordering::Less);
    }
    let floor = d.floor();
    let whole = floor as i128;
    Some(match whole.cmp(&i) {
        Ordering::Equal if d > floor => Ordering::Greater,
        other => other,
    })
}

fn arith<'a>(
    a: Val<'a>,
    b: Val<'a>,
    op: &'static str,
    int: fn(i64, i64) -> Option<i64>,
    uint: fn(u64, u64) -> Option<u64>,
    double: fn(f64, f64) -> f64,
) -> R<'a> {
    match (a, b) {
        (Val::Int(x), Val::Int(y)) => int(x, y).map(Val::Int).ok_or(EvalError::Overflow),
        (Val::Uint(x), Val::Uint(y)) => uint(x, y).map(Val::Uint).ok_or(EvalError::Overflow),
        (Val::Double(x), Val::Double(y)) => Ok(Val::Double(double(x, y))),
        _ => Err(EvalError::TypeMismatch(op)),
    }
}

fn call(f: Func, args: Vec<Val<'_>>) -> R<'_> {
    let mut it = args.into_iter();
    let recv = it.next().ok_or(EvalError::TypeMismatch(f.name()))?;
    let arg = it.next();
    let mismatch = EvalError::TypeMismatch(f.name());
    let int = |v: u32| Ok(Val::Int(i64::from(v)));
    match (f, recv, arg) {
        (Func::StartsWith, Val::Str(s), Some(Val::Str(p))) => Ok(Val::Bool(s.starts_with(p.as_ref()))),
        (Func::EndsWith, Val::Str(s), Some(Val::Str(p))) => Ok(Val::Bool(s.ends_with(p.as_ref()))),
        (Func::Contains, Val::Str(s), Some(Val::Str(p))) => Ok(Val::Bool(s.contains(p.as_ref()))),
        (Func::Size, v, None) => {
            let n = match &v {
                Val::Str(s) => s.chars().count(),
                Val::List(items) => items.len(),
                Val::Json(Value::Array(items)) => items.len(),
                Val::Json(Value::Object(m)) => m.len(),
                Val::EmptyMap => 0,
                _ => return Err(mismatch),
            };
            Ok(Val::Int(i64::try_from(n).map_err(|_| EvalError::Overflow)?))
        }
        (Func::LowerAscii, Val::Str(s), None) => Ok(Val::Str(Cow::Owned(s.to_ascii_lowercase()))),
        (Func::UpperAscii, Val::Str(s), None) => Ok(Val::Str(Cow::Owned(s.to_ascii_uppercase()))),
        (f, Val::Ts(t), None) => {
            let c = Civil::from_timestamp(t);
            match f {
                Func::GetFullYear => Ok(Val::Int(c.year)),
                Func::GetMonth => int(c.month - 1),
                Func::GetDate => int(c.day),
                Func::GetDayOfMonth => int(c.day - 1),
                Func::GetDayOfWeek => int(c.weekday),
                Func::GetDayOfYear => int(c.yearday),
                Func::GetHours => int(c.hour),
                Func::GetMinutes => int(c.minute),
                Func::GetSeconds => int(c.second),
                Func::GetMilliseconds => int(c.millis),
                _ => Err(mismatch),
            }
        }
        _ => Err(mismatch),
    }
}
