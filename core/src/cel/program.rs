//! Loading a compiled expression: the same limits the compiler applies, checked again because a config may be
//! written by hand or by another tool, and regexes compiled once. A loaded [`Program`] is safe to evaluate on
//! any request: its size and depth are bounded, its regexes are linear-time, its doubles finite.

use super::ir::{Expr, Var};
use regex_lite::Regex;

/// Bounds on a CEL expression, shared by compiler and filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Characters of CEL source the compiler reads.
    pub source_chars: usize,
    /// Nodes of the compiled tree.
    pub nodes: usize,
    /// Nesting depth of the compiled tree (also bounds the evaluator's recursion).
    pub depth: usize,
    /// Bytes of one string literal (header names and field names included).
    pub string_bytes: usize,
    /// Elements of one list literal.
    pub list_items: usize,
    /// Bytes of one `matches` pattern.
    pub pattern_bytes: usize,
    /// Nested `all`/`exists`/`existsOne`.
    pub comprehensions: usize,
    /// Evaluation steps per rule and request (a node visited, a list element scanned, a loop iteration).
    pub steps: u32,
}

pub const LIMITS: Limits = Limits {
    source_chars: 4096,
    nodes: 512,
    depth: 32,
    string_bytes: 1024,
    list_items: 64,
    pattern_bytes: 256,
    comprehensions: 2,
    steps: 10_000,
};

/// A validated expression with its regexes compiled.
#[derive(Debug)]
pub struct Program {
    pub(super) expr: Expr,
    /// `(pattern, regex)` for every `matches` node; looked up by pattern text (few per rule).
    pub(super) regexes: Vec<(String, Regex)>,
    uses_arguments: bool,
}

impl Program {
    /// Validate `expr` against [`LIMITS`]; errors say what is wrong, for `rules[i].cel`.
    pub fn new(expr: Expr) -> Result<Program, String> {
        let mut nodes = 0usize;
        let mut regexes = Vec::new();
        check(&expr, 1, 0, &mut nodes, &mut regexes)?;
        let uses_arguments = expr.uses(Var::McpArguments);
        Ok(Program { expr, regexes, uses_arguments })
    }

    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// Whether evaluating needs `params.arguments` (the parser captures them only then).
    pub fn uses_arguments(&self) -> bool {
        self.uses_arguments
    }

    /// Header names the expression reads (`request.headers['x']`), for the filter to capture.
    pub fn header_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        collect_headers(&self.expr, &mut out);
        out
    }

    pub(super) fn regex(&self, pattern: &str) -> Option<&Regex> {
        self.regexes.iter().find(|(p, _)| p == pattern).map(|(_, r)| r)
    }
}

fn collect_headers(e: &Expr, out: &mut Vec<String>) {
    if let Expr::Header(n) | Expr::HasHeader(n) = e {
        out.push(n.clone());
    }
    for c in e.children() {
        collect_headers(c, out);
    }
}

/// Compile a `matches` pattern as the filter runs it: CEL's `matches` is unanchored (RE2 `PartialMatch`).
pub fn compile_pattern(pattern: &str) -> Result<Regex, String> {
    if pattern.len() > LIMITS.pattern_bytes {
        return Err(format!("matches pattern is {} bytes; at most {} allowed", pattern.len(), LIMITS.pattern_bytes));
    }
    Regex::new(pattern).map_err(|e| {
        // regex-lite's message spans lines (pattern, caret, reason); the last line is the reason.
        let text = e.to_string();
        let reason = text.lines().last().unwrap_or_default().trim().to_owned();
        format!("matches pattern {pattern:?} is not a regular expression the filter (regex-lite) accepts: {reason}")
    })
}

fn check(
    e: &Expr,
    depth: usize,
    locals: usize,
    nodes: &mut usize,
    regexes: &mut Vec<(String, Regex)>,
) -> Result<(), String> {
    *nodes += 1;
    if *nodes > LIMITS.nodes {
        return Err(format!("expression has more than {} nodes", LIMITS.nodes));
    }
    if depth > LIMITS.depth {
        return Err(format!("expression is nested deeper than {}", LIMITS.depth));
    }
    let long = |s: &str, what: &str| {
        if s.len() > LIMITS.string_bytes {
            Err(format!("{what} is {} bytes; at most {} allowed", s.len(), LIMITS.string_bytes))
        } else {
            Ok(())
        }
    };
    let mut inner_locals = locals;
    match e {
        Expr::Double(d) if !d.is_finite() => return Err("double literal must be finite".to_owned()),
        Expr::String(s) => long(s, "string literal")?,
        Expr::Timestamp(t) if t.nanos >= 1_000_000_000 => return Err("timestamp nanos must be below 1e9".to_owned()),
        Expr::List(items) if items.len() > LIMITS.list_items => {
            return Err(format!("list literal has {} items; at most {} allowed", items.len(), LIMITS.list_items))
        }
        Expr::Local(i) if (*i as usize) >= locals => {
            return Err(format!("local {i} is not bound by an enclosing all/exists/existsOne"))
        }
        Expr::Header(n) | Expr::HasHeader(n) => {
            long(n, "header name")?;
            if n.is_empty() || n.bytes().any(|b| b.is_ascii_uppercase() || b.is_ascii_whitespace() || b.is_ascii_control()) {
                return Err(format!("header name {n:?} must be a non-empty lower-case header name"));
            }
        }
        Expr::Select(_, f) | Expr::Has(_, f) => long(f, "field name")?,
        Expr::And(items) | Expr::Or(items) if items.len() < 2 => {
            return Err("and/or needs at least two operands".to_owned())
        }
        Expr::Call(f, args) if args.len() != f.arity() => {
            return Err(format!("{} takes {} argument(s) including the receiver, got {}", f.name(), f.arity(), args.len()))
        }
        Expr::Matches(_, pattern) if !regexes.iter().any(|(p, _)| p == pattern) => {
            regexes.push((pattern.clone(), compile_pattern(pattern)?));
        }
        Expr::All(..) | Expr::Exists(..) | Expr::ExistsOne(..) => {
            if locals >= LIMITS.comprehensions {
                return Err(format!("more than {} nested all/exists/existsOne", LIMITS.comprehensions));
            }
            inner_locals = locals + 1;
        }
        _ => {}
    }
    match e {
        // The range is evaluated outside the comprehension; only the body sees the new variable.
        Expr::All(range, body) | Expr::Exists(range, body) | Expr::ExistsOne(range, body) => {
            check(range, depth + 1, locals, nodes, regexes)?;
            check(body, depth + 1, inner_locals, nodes, regexes)
        }
        _ => e.children().into_iter().try_for_each(|c| check(c, depth + 1, locals, nodes, regexes)),
    }
}
