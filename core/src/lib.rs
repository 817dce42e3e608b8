//! Grantwall's host-independent core: the compiled config schema, the strict MCP/JSON-RPC request parser,
//! caller identity, the decision engine, denial bodies and audit records. Nothing here talks to a proxy, so
//! all of it runs under plain `cargo test` and, with `wasm-bindgen-test`, on the 32-bit Wasm target it ships on.

pub mod a2a;
pub mod audit;
pub mod cel;
pub mod config;
pub mod engine;
pub mod ephemeral;
pub mod extauth;
pub mod identity;
pub mod jsonrpc;
pub mod listfilter;
pub mod llm;
pub mod jwt;
pub mod limits;
pub mod mcp;
pub mod pinning;
pub mod respond;
pub mod session;
pub mod sidechannel;
pub mod sse;
mod sorted;
pub mod strict;
