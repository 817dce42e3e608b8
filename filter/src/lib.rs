//! Grantwall's Proxy-Wasm filter: thin glue between the host and `grantwall-core`.
//!
//! - `root`: configure-time loading of the compiled policy config.
//! - `http`: per-request capture, buffering and the decision.
//! - `auth`: bearer tokens (verify, strip, 401 challenge).
//! - `agent`: ephemeral identities (lifetime, request budget in shared data).
//! - `extauth`: the external-authorization call-out (KAN ExternalAuth).
//! - `host`: panic-free host calls.
//! - `metrics`: decision counters.
//! - `trap`: test-only VM trap injection (feature `trap-test`).
//! - `response`: per-caller filtering of list responses (JSON and SSE).
//! - `shared`: state shared across workers (tool-pin observations).
//! - `limits`: rate limits, fan-out caps, context budgets (shared slot tables with CAS).

#[cfg(target_arch = "wasm32")]
mod agent;
#[cfg(target_arch = "wasm32")]
mod auth;
#[cfg(target_arch = "wasm32")]
mod extauth;
#[cfg(target_arch = "wasm32")]
mod host;
#[cfg(target_arch = "wasm32")]
mod http;
#[cfg(target_arch = "wasm32")]
mod limits;
#[cfg(target_arch = "wasm32")]
mod metrics;
#[cfg(target_arch = "wasm32")]
mod response;
#[cfg(target_arch = "wasm32")]
mod root;
#[cfg(target_arch = "wasm32")]
mod shared;
// Test-only fault injection; the release build never has it (Makefile: build-trap).
#[cfg(all(target_arch = "wasm32", feature = "trap-test"))]
mod trap;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::GrantwallRoot::default())
    });
}}
