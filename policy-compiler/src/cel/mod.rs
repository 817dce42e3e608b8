//! KAN `authorization.cel.expression` → the config's compiled expression ([`grantwall_core::cel::Expr`]).
//!
//! A hand-written parser rather than a CEL crate: the Rust CEL parsers (`cel-parser`, the ANTLR-based parser of
//! `cel-interpreter`) accept all of CEL, so we would still need our own pass to refuse what the filter does not
//! evaluate; they bring a large generated-parser runtime for a few hundred lines of grammar; and recursion
//! on deeply nested input is theirs to bound, not ours. Ours reports every error with line and column, bounds
//! nesting while parsing and accepts exactly the subset documented in docs/cel.md.

mod check;
mod lex;
mod parse;

use grantwall_core::cel::{Expr, Program, LIMITS};
use std::fmt;

/// A CEL expression Grantwall cannot compile, with the position (1-based, in characters) it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CelError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for CelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 1 {
            write!(f, "CEL line {} column {}: {}", self.line, self.column, self.message)
        } else {
            write!(f, "CEL column {}: {}", self.column, self.message)
        }
    }
}

/// Parse, type-check and lower `source`; the result loads in the filter (checked with the filter's own loader).
pub fn compile(source: &str) -> Result<Expr, CelError> {
    let chars = source.chars().count();
    if chars > LIMITS.source_chars {
        return Err(CelError {
            line: 1,
            column: 1,
            message: format!("expression is {chars} characters; at most {} allowed", LIMITS.source_chars),
        });
    }
    let tokens = lex::tokenize(source)?;
    let ast = parse::parse(&tokens)?;
    let expr = check::lower(&ast)?;
    // The filter's loader is the final word on limits (node count, depth after lowering, regexes).
    Program::new(expr.clone()).map_err(|message| CelError { line: 1, column: 1, message })?;
    Ok(expr)
}
