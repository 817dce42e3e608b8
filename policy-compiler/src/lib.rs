//! `grantwall`'s library half: reads kube-agentic-networking (KAN) objects, validates them exactly as the
//! API server would (OpenAPI schema + the CRDs' CEL rules, hand-written), and compiles them into Grantwall's
//! plugin config (`grantwall_core::config::Config`); wraps that config for a host (`emit`), packages the
//! filter as an OCI image (`oci`) and explains decisions with the filter's own engine (`explain`). The binary
//! (`main.rs`, `cmd/`) is only the command line.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod a2a_crd;
pub mod agent_identity;
pub mod cel;
pub mod compile;
pub mod crd_schema;
pub mod diag;
pub mod emit;
pub mod explain;
pub mod extauth;
pub mod identity_crd;
pub mod input;
pub mod kan_rules;
pub mod kan_types;
pub mod limits_crd;
pub mod model_policy;
pub mod oci;
pub mod pins;
pub mod policy;
pub mod routes;
pub mod timestamp;
pub mod yaml;
pub mod yaml_out;

/// The JSON Schema of the compiled config, pretty-printed with a final newline (`grantwall schema`, and
/// `docs/config-schema.json`, which a test keeps equal to it).
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(grantwall_core::config::Config);
    // Serialising a schemars Schema (a JSON value) cannot fail.
    serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n"
}
