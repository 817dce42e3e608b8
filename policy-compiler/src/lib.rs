//! `grantwall`'s library half: reads kube-agentic-networking (KAN) objects, validates them exactly as the
//! API server would (OpenAPI schema + the CRDs' CEL rules, hand-written), and compiles them into Grantwall's
//! plugin config (`grantwall_core::config::Config`). The binary (`main.rs`) is only the command line.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod diag;
pub mod yaml;
pub mod crd_schema;
pub mod kan_rules;
