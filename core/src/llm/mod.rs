//! LLM traffic (OpenAI-compatible and Anthropic APIs): which model a caller may use, and how many tokens it
//! may spend per window. Host-independent like the rest of the core; the filter glue is `filter/src/llm.rs`.
//!
//! - `config`: the compiled form (`Config.llm`), written by `grantwall compile` from GrantwallModelPolicy.
//! - `policy`: the indexed policy set: routing, model grants, the budgets that apply to a caller.
//! - `request`: strict parsing of request bodies (model, stream, max tokens) and the body rewrites.
//! - `usage`: token usage read from JSON and SSE responses.
//! - `window`: fixed budget windows (pure arithmetic).
//! - `reply`: OpenAI- and Anthropic-style error bodies.

pub mod config;
pub mod policy;
pub mod reply;
pub mod request;
pub mod usage;
pub mod window;

pub use config::{Budget, BudgetKey, LlmBackend, LlmConfig, ModelPolicy, ModelRule};
pub use policy::{LlmPolicySet, ModelDecision};
pub use request::{Api, LlmRequest, RequestError};
pub use usage::Usage;
