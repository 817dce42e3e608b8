//! Type-checks a parsed CEL expression against Grantwall's variables and lowers it to the config's
//! [`Expr`]. Everything outside the supported subset is refused here, naming the construct and its position.

use super::parse::{Kind, Node};
use super::CelError;
use grantwall_core::cel::{compile_pattern, Expr, Func, Timestamp, Var, LIMITS};

/// Static types. `Dyn` (argument and claim values) is checked when the request arrives.
#[derive(Debug, Clone, PartialEq)]
enum Ty {
    Bool,
    Int,
    Uint,
    Double,
    Str,
    Ts,
    Null,
    List(Box<Ty>),
    /// String keys always.
    Map(Box<Ty>),
    Dyn,
}

impl Ty {
    fn name(&self) -> String {
        match self {
            Ty::Bool => "bool".into(),
            Ty::Int => "int".into(),
            Ty::Uint => "uint".into(),
            Ty::Double => "double".into(),
            Ty::Str => "string".into(),
            Ty::Ts => "timestamp".into(),
            Ty::Null => "null".into(),
            Ty::List(t) => format!("list({})", t.name()),
            Ty::Map(t) => format!("map(string, {})", t.name()),
            Ty::Dyn => "dyn".into(),
        }
    }

    fn numeric(&self) -> bool {
        matches!(self, Ty::Int | Ty::Uint | Ty::Double)
    }

    /// Accepts `want` (or anything, if dynamic).
    fn is(&self, want: &Ty) -> bool {
        self == want || *self == Ty::Dyn
    }
}

fn var_type(v: Var) -> Ty {
    match v {
        Var::RequestTime => Ty::Ts,
        Var::McpArguments | Var::JwtClaims => Ty::Map(Box::new(Ty::Dyn)),
        _ => Ty::Str,
    }
}

/// Names that start a variable; they cannot be comprehension variables.
const ROOTS: [&str; 3] = ["request", "source", "jwt"];
const HEADERS: &str = "request.headers";

fn variables() -> String {
    let mut names: Vec<&str> = Var::ALL.iter().map(|v| v.name()).collect();
    names.push(HEADERS);
    names.sort_unstable();
    names.join(", ")
}

pub fn lower(node: &Node) -> Result<Expr, CelError> {
    let mut c = Checker { locals: Vec::new() };
    let (expr, ty) = c.lower(node)?;
    if !ty.is(&Ty::Bool) {
        return Err(at(node, format!("the expression must evaluate to a bool, but it is a {}", ty.name())));
    }
    Ok(expr)
}

fn at(n: &Node, message: String) -> CelError {
    CelError { line: n.line, column: n.column, message }
}

type Lowered = Result<(Expr, Ty), CelError>;

struct Checker {
    /// Comprehension variables, innermost last.
    locals: Vec<(String, Ty)>,
}

impl Checker {
    fn lower(&mut self, n: &Node) -> Lowered {
        match &n.kind {
            Kind::Null => Ok((Expr::Null, Ty::Null)),
            Kind::Bool(b) => Ok((Expr::Bool(*b), Ty::Bool)),
            Kind::Int(i) => Ok((Expr::Int(*i), Ty::Int)),
            Kind::Uint(u) => Ok((Expr::Uint(*u), Ty::Uint)),
            Kind::Double(d) => Ok((Expr::Double(*d), Ty::Double)),
            Kind::Str(s) => {
                if s.len() > LIMITS.string_bytes {
                    return Err(at(n, format!("string literal is {} bytes; at most {} allowed", s.len(), LIMITS.string_bytes)));
                }
                Ok((Expr::String(s.clone()), Ty::Str))
            }
            Kind::Bytes => Err(at(n, "bytes literals are not supported".into())),
            Kind::MapOrMessage => Err(at(n, "map literals and message construction ({...}) are not supported".into())),
            Kind::List(items) => {
                if items.len() > LIMITS.list_items {
                    return Err(at(n, format!("list literal has {} items; at most {} allowed", items.len(), LIMITS.list_items)));
                }
                let mut out = Vec::with_capacity(items.len());
                let mut elem: Option<Ty> = None;
                for item in items {
                    let (e, t) = self.lower(item)?;
                    elem = Some(match elem {
                        Some(prev) if prev != t => Ty::Dyn,
                        _ => t,
                    });
                    out.push(e);
                }
                Ok((Expr::List(out), Ty::List(Box::new(elem.unwrap_or(Ty::Dyn)))))
            }
            Kind::Ident(name) => {
                if let Some(local) = self.local(name) {
                    return Ok(local);
                }
                if ROOTS.contains(&name.as_str()) {
                    return Err(at(n, format!("'{name}' is not a value by itself; variables are: {}", variables())));
                }
                Err(at(n, format!("unknown identifier '{name}'; variables are: {}", variables())))
            }
            Kind::Select(base, field) => {
                if let Some(names) = self.var_chain(n) {
                    return self.resolve(n, &names);
                }
                let (b, bt) = self.lower(base)?;
                select(n, b, &bt, field)
            }
            Kind::Index(base, key) => {
                if self.var_chain(base).is_some_and(|c| c.join(".") == HEADERS) {
                    return match &key.kind {
                        Kind::Str(name) => Ok((Expr::Header(header_name(key, name)?), Ty::Str)),
                        _ => Err(at(key, "request.headers must be indexed with a string literal, e.g. request.headers['x-team']".into())),
                    };
                }
                let (b, bt) = self.lower(base)?;
                let (k, kt) = self.lower(key)?;
                let ty = match (&bt, &kt) {
                    (Ty::Map(v), Ty::Str | Ty::Dyn) => (**v).clone(),
                    (Ty::List(t), Ty::Int | Ty::Uint | Ty::Dyn) => (**t).clone(),
                    (Ty::Dyn, _) => Ty::Dyn,
                    _ => return Err(at(n, format!("cannot index a {} with a {}", bt.name(), kt.name()))),
                };
                Ok((Expr::Index(Box::new(b), Box::new(k)), ty))
            }
            Kind::Unary(op, inner) => {
                let (e, t) = self.lower(inner)?;
                match *op {
                    "!" if t.is(&Ty::Bool) => Ok((Expr::Not(Box::new(e)), Ty::Bool)),
                    "-" if t.numeric() && t != Ty::Uint || t == Ty::Dyn => Ok((Expr::Neg(Box::new(e)), t)),
                    _ => Err(at(n, format!("operator '{op}' does not apply to a {}", t.name()))),
                }
            }
            Kind::Binary(op, l, r) => self.binary(n, op, l, r),
            Kind::Logic(op, items) => self.logic(n, op, items),
            Kind::Cond(c, a, b) => {
                let (ce, ct) = self.lower(c)?;
                if !ct.is(&Ty::Bool) {
                    return Err(at(c, format!("the condition of '? :' must be a bool, not a {}", ct.name())));
                }
                let (ae, at_) = self.lower(a)?;
                let (be, bt) = self.lower(b)?;
                let ty = if at_ == bt { at_ } else { Ty::Dyn };
                Ok((Expr::Cond(Box::new(ce), Box::new(ae), Box::new(be)), ty))
            }
            Kind::Call(target, name, args) => self.call(n, target.as_deref(), name, args),
        }
    }

    fn local(&self, name: &str) -> Option<(Expr, Ty)> {
        let pos = self.locals.iter().rposition(|(n, _)| n == name)?;
        let depth = self.locals.len() - 1 - pos;
        let ty = self.locals.get(pos).map(|(_, t)| t.clone()).unwrap_or(Ty::Dyn);
        Some((Expr::Local(u32::try_from(depth).unwrap_or(u32::MAX)), ty))
    }

    /// `request.mcp.tool_name` as `["request", "mcp", "tool_name"]`, when `n` is a field chain on a root name.
    fn var_chain<'n>(&self, n: &'n Node) -> Option<Vec<&'n str>> {
        match &n.kind {
            Kind::Ident(name) if ROOTS.contains(&name.as_str()) && self.local(name).is_none() => Some(vec![name]),
            Kind::Select(base, field) => {
                let mut chain = self.var_chain(base)?;
                chain.push(field);
                Some(chain)
            }
            _ => None,
        }
    }

    /// The longest prefix of `names` that is a variable, then field selections on its value.
    fn resolve(&self, n: &Node, names: &[&str]) -> Lowered {
        for k in (1..=names.len()).rev() {
            let (head, rest) = names.split_at(k);
            let joined = head.join(".");
            if joined == HEADERS {
                return match rest {
                    [name] => Ok((Expr::Header(header_name(n, name)?), Ty::Str)),
                    [] => Err(at(n, "request.headers can only be read by a constant name: request.headers['x-name'], has(request.headers.name) or 'x-name' in request.headers".into())),
                    _ => Err(at(n, "cannot select a field from a header value (a string)".into())),
                };
            }
            if let Some(var) = Var::from_name(&joined) {
                let (mut e, mut t) = (Expr::Var(var), var_type(var));
                for field in rest {
                    (e, t) = select(n, e, &t, field)?;
                }
                return Ok((e, t));
            }
        }
        Err(at(n, format!("unknown variable {}; variables are: {}", names.join("."), variables())))
    }

    fn logic(&mut self, n: &Node, op: &str, operands: &[Node]) -> Lowered {
        if operands.len() > LIMITS.nodes {
            return Err(at(n, format!("more than {} operands of '{op}'", LIMITS.nodes)));
        }
        let mut items = Vec::with_capacity(operands.len());
        for side in operands {
            let (e, t) = self.lower(side)?;
            if !t.is(&Ty::Bool) {
                return Err(at(side, format!("operands of '{op}' must be bools, not a {}", t.name())));
            }
            // `(a && b) && c` is one n-ary node too.
            match (op, e) {
                ("&&", Expr::And(inner)) | ("||", Expr::Or(inner)) => items.extend(inner),
                (_, e) => items.push(e),
            }
        }
        Ok((if op == "&&" { Expr::And(items) } else { Expr::Or(items) }, Ty::Bool))
    }

    fn binary(&mut self, n: &Node, op: &str, l: &Node, r: &Node) -> Lowered {
        if op == "in" && self.var_chain(r).is_some_and(|c| c.join(".") == HEADERS) {
            return match &l.kind {
                Kind::Str(name) => Ok((Expr::HasHeader(header_name(l, name)?), Ty::Bool)),
                _ => Err(at(l, "only a string literal can be tested with 'in request.headers'".into())),
            };
        }
        let (le, lt) = self.lower(l)?;
        let (re, rt) = self.lower(r)?;
        let (a, b) = (Box::new(le), Box::new(re));
        let mismatch = || at(n, format!("operator '{op}' does not apply to {} and {}", lt.name(), rt.name()));
        let dynamic = lt == Ty::Dyn || rt == Ty::Dyn;
        match op {
            "==" | "!=" => {
                if !(dynamic || lt == rt || (lt.numeric() && rt.numeric()) || lt == Ty::Null || rt == Ty::Null) {
                    return Err(at(n, format!("'{op}' between {} and {} is never true (no matching overload)", lt.name(), rt.name())));
                }
                Ok((if op == "==" { Expr::Eq(a, b) } else { Expr::Ne(a, b) }, Ty::Bool))
            }
            "<" | "<=" | ">" | ">=" => {
                let ordered = matches!(lt, Ty::Str | Ty::Ts | Ty::Bool) && lt == rt;
                if !(dynamic || ordered || (lt.numeric() && rt.numeric())) {
                    return Err(mismatch());
                }
                let e = match op {
                    "<" => Expr::Lt(a, b),
                    "<=" => Expr::Le(a, b),
                    ">" => Expr::Gt(a, b),
                    _ => Expr::Ge(a, b),
                };
                Ok((e, Ty::Bool))
            }
            "+" | "-" | "*" | "/" | "%" => {
                if op == "+" && (matches!(lt, Ty::Str | Ty::List(_)) || matches!(rt, Ty::Str | Ty::List(_))) {
                    return Err(at(n, "string and list concatenation are not supported".into()));
                }
                let same = lt == rt && lt.numeric() && !(op == "%" && lt == Ty::Double);
                if !(same || dynamic && (lt.numeric() || rt.numeric() || lt == rt)) {
                    return Err(mismatch());
                }
                let ty = if lt == Ty::Dyn { rt } else { lt };
                let e = match op {
                    "+" => Expr::Add(a, b),
                    "-" => Expr::Sub(a, b),
                    "*" => Expr::Mul(a, b),
                    "/" => Expr::Div(a, b),
                    _ => Expr::Rem(a, b),
                };
                Ok((e, ty))
            }
            "in" => {
                let ok = match &rt {
                    Ty::List(t) => **t == Ty::Dyn || lt == Ty::Dyn || **t == lt || (t.numeric() && lt.numeric()),
                    Ty::Map(_) => lt.is(&Ty::Str),
                    Ty::Dyn => true,
                    _ => false,
                };
                if !ok {
                    return Err(mismatch());
                }
                Ok((Expr::In(a, b), Ty::Bool))
            }
            _ => Err(at(n, format!("operator '{op}' is not supported"))),
        }
    }

    fn call(&mut self, n: &Node, target: Option<&Node>, name: &str, args: &[Node]) -> Lowered {
        let arity = |want: usize| {
            if args.len() == want {
                Ok(())
            } else {
                Err(at(n, format!("{name}() takes {want} argument(s), got {}", args.len())))
            }
        };
        match (target, name) {
            (None, "has") => {
                arity(1)?;
                let arg = args.first().ok_or_else(|| at(n, "has() needs an argument".into()))?;
                let Kind::Select(base, field) = &arg.kind else {
                    return Err(at(arg, "has() takes a field selection, e.g. has(request.mcp.arguments.path)".into()));
                };
                if self.var_chain(base).is_some_and(|c| c.join(".") == HEADERS) {
                    return Ok((Expr::HasHeader(header_name(arg, field)?), Ty::Bool));
                }
                if self.var_chain(arg).is_some_and(|c| c.len() <= 3 && Var::from_name(&c.join(".")).is_some()) {
                    return Err(at(arg, "has() tests a key of a map value (e.g. has(request.mcp.arguments.path)), not whether a variable is set".into()));
                }
                let (b, bt) = self.lower(base)?;
                if !matches!(bt, Ty::Map(_) | Ty::Dyn) {
                    return Err(at(arg, format!("has() needs a map, not a {}", bt.name())));
                }
                Ok((Expr::Has(Box::new(b), field.clone()), Ty::Bool))
            }
            (None, "size") => {
                arity(1)?;
                let arg = args.first().ok_or_else(|| at(n, "size() needs an argument".into()))?;
                self.size(n, arg)
            }
            (Some(t), "size") => {
                arity(0)?;
                self.size(n, t)
            }
            (None, "matches") => {
                arity(2)?;
                match args {
                    [s, p] => self.matches(n, s, p),
                    _ => Err(at(n, "matches() takes 2 arguments".into())),
                }
            }
            (Some(t), "matches") => {
                arity(1)?;
                let p = args.first().ok_or_else(|| at(n, "matches() needs a pattern".into()))?;
                self.matches(n, t, p)
            }
            (None, "timestamp") => {
                arity(1)?;
                match args.first().map(|a| &a.kind) {
                    Some(Kind::Str(s)) => {
                        let t = crate::timestamp::parse_rfc3339(s)
                            .ok_or_else(|| at(n, format!("timestamp({s:?}): not an RFC 3339 date-time")))?;
                        let seconds = i64::try_from(t.div_euclid(1_000_000_000))
                            .map_err(|_| at(n, format!("timestamp({s:?}) out of range")))?;
                        let nanos = u32::try_from(t.rem_euclid(1_000_000_000)).unwrap_or(0);
                        Ok((Expr::Timestamp(Timestamp { seconds, nanos }), Ty::Ts))
                    }
                    _ => Err(at(n, "timestamp() takes a string literal (RFC 3339), e.g. timestamp('2026-01-01T00:00:00Z')".into())),
                }
            }
            (Some(t), "all" | "exists" | "exists_one") => self.comprehension(n, t, name, args),
            (_, "map" | "filter" | "transformList" | "transformMap" | "sort" | "sortBy") => {
                Err(at(n, format!("the {name}() macro is not supported (it builds a list); use all(), exists() or exists_one()")))
            }
            (None, "int" | "uint" | "double" | "string" | "bool" | "bytes" | "dyn" | "type" | "duration") => {
                Err(at(n, format!("the conversion function {name}() is not supported")))
            }
            (Some(t), _) => {
                let Some(f) = Func::from_name(name) else {
                    return Err(at(n, format!("method {name}() is not supported; supported: {}, matches, size, all, exists, exists_one", supported_methods())));
                };
                if f.arity() == 1 && args.len() == 1 && name.starts_with("get") {
                    return Err(at(n, format!("{name}() with a time zone is not supported: request.time is evaluated in UTC")));
                }
                arity(f.arity() - 1)?;
                let (recv, rt) = self.lower(t)?;
                let mut lowered = vec![recv];
                let want_recv = if name.starts_with("get") { Ty::Ts } else { Ty::Str };
                if !rt.is(&want_recv) {
                    return Err(at(n, format!("{name}() applies to a {}, not a {}", want_recv.name(), rt.name())));
                }
                for a in args {
                    let (e, ty) = self.lower(a)?;
                    if !ty.is(&Ty::Str) {
                        return Err(at(a, format!("{name}() takes a string argument, not a {}", ty.name())));
                    }
                    lowered.push(e);
                }
                let ty = match f {
                    Func::StartsWith | Func::EndsWith | Func::Contains => Ty::Bool,
                    Func::LowerAscii | Func::UpperAscii => Ty::Str,
                    _ => Ty::Int,
                };
                Ok((Expr::Call(f, lowered), ty))
            }
            (None, _) => Err(at(n, format!("function {name}() is not supported; functions are: has, size, matches, timestamp"))),
        }
    }

    fn size(&mut self, n: &Node, arg: &Node) -> Lowered {
        let (e, t) = self.lower(arg)?;
        if !matches!(t, Ty::Str | Ty::List(_) | Ty::Map(_) | Ty::Dyn) {
            return Err(at(n, format!("size() applies to a string, list or map, not a {}", t.name())));
        }
        Ok((Expr::Call(Func::Size, vec![e]), Ty::Int))
    }

    fn matches(&mut self, n: &Node, subject: &Node, pattern: &Node) -> Lowered {
        let (e, t) = self.lower(subject)?;
        if !t.is(&Ty::Str) {
            return Err(at(n, format!("matches() applies to a string, not a {}", t.name())));
        }
        let Kind::Str(p) = &pattern.kind else {
            return Err(at(pattern, "matches() needs a string literal pattern (a pattern built at request time could be anything)".into()));
        };
        compile_pattern(p).map_err(|m| at(pattern, m))?;
        Ok((Expr::Matches(Box::new(e), p.clone()), Ty::Bool))
    }

    fn comprehension(&mut self, n: &Node, range: &Node, name: &str, args: &[Node]) -> Lowered {
        let [var, body] = args else {
            return Err(at(n, format!("{name}() takes a variable and a condition, e.g. {name}(x, x.startsWith('/workspace/'))")));
        };
        let Kind::Ident(var_name) = &var.kind else {
            return Err(at(var, format!("the first argument of {name}() must be a variable name")));
        };
        if ROOTS.contains(&var_name.as_str()) {
            return Err(at(var, format!("'{var_name}' cannot be used as a comprehension variable")));
        }
        if self.locals.len() >= LIMITS.comprehensions {
            return Err(at(n, format!("more than {} nested all/exists/exists_one", LIMITS.comprehensions)));
        }
        let (r, rt) = self.lower(range)?;
        let elem = match &rt {
            Ty::List(t) => (**t).clone(),
            Ty::Map(_) => Ty::Str,
            Ty::Dyn => Ty::Dyn,
            other => return Err(at(n, format!("{name}() applies to a list or map, not a {}", other.name()))),
        };
        self.locals.push((var_name.clone(), elem));
        let lowered = self.lower(body);
        self.locals.pop();
        let (b, bt) = lowered?;
        if !bt.is(&Ty::Bool) {
            return Err(at(body, format!("the condition of {name}() must be a bool, not a {}", bt.name())));
        }
        let (r, b) = (Box::new(r), Box::new(b));
        let e = match name {
            "all" => Expr::All(r, b),
            "exists" => Expr::Exists(r, b),
            _ => Expr::ExistsOne(r, b),
        };
        Ok((e, Ty::Bool))
    }
}

fn select(n: &Node, base: Expr, ty: &Ty, field: &str) -> Lowered {
    if field.len() > LIMITS.string_bytes {
        return Err(at(n, format!("field name longer than {} bytes", LIMITS.string_bytes)));
    }
    let t = match ty {
        Ty::Map(v) => (**v).clone(),
        Ty::Dyn => Ty::Dyn,
        other => return Err(at(n, format!("cannot select field '{field}' from a {}", other.name()))),
    };
    Ok((Expr::Select(Box::new(base), field.to_owned()), t))
}

/// Header names in `request.headers` are lower-case (as Envoy presents them): an upper-case name could never
/// match, so it is an error rather than a rule that silently denies.
fn header_name(n: &Node, name: &str) -> Result<String, CelError> {
    if name.is_empty() || name.len() > LIMITS.string_bytes || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(at(n, format!("{name:?} is not a header name")));
    }
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(at(n, format!("request.headers keys are lower-case: write '{}'", name.to_ascii_lowercase())));
    }
    Ok(name.to_owned())
}

fn supported_methods() -> String {
    Func::ALL.iter().filter(|f| **f != Func::Size).map(|f| f.name()).collect::<Vec<_>>().join(", ")
}
