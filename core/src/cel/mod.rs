//! CEL rules without a CEL interpreter in the Wasm module.
//!
//! `grantwall compile` parses and type-checks a KAN `authorization.cel.expression` and lowers it into [`Expr`],
//! a small tree stored in the JSON config. The filter only loads ([`Program::new`]: size, depth and regex checks
//! again, since the config may not come from our compiler) and evaluates ([`eval`]) that tree. Evaluation is
//! bounded by a step budget, and every error (missing key, wrong type, overflow, budget) makes the rule not
//! match: an error never allows.

mod decode;
mod eval;
mod ir;
mod program;
mod time;

pub use eval::{eval as evaluate, Activation, EvalError};
pub use ir::{Expr, Func, Timestamp, Var};
pub use program::{compile_pattern, Limits, Program, LIMITS};
pub use time::Civil;
