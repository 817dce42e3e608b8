//! `grantwall compile --emit …`: the compiled config wrapped in what a host loads, ready to apply or paste.
//!
//! - `wasmplugin`: an Istio `extensions.istio.io/v1alpha1` `WasmPlugin` attached to the Gateway the policies
//!   were compiled for (`targetRefs`), `phase: AUTHZ`, `failStrategy: FAIL_CLOSE`, the config as `pluginConfig`.
//! - `envoy`: the `envoy.filters.http.wasm` entry for a listener's `http_filters`, with
//!   `allow_on_headers_stop_iteration: true` and `failure_policy: FAIL_CLOSED`.
//! - `ecds`: the same filter config as an ECDS resource (`envoy.config.core.v3.TypedExtensionConfig`) inside the
//!   `DiscoveryResponse` that Envoy's file-based config source (`path_config_source`) reads: replace the file
//!   atomically and Envoy swaps the policy without a restart.
//!
//! Everything is YAML (JSON is YAML too, but people read and diff these), with keys in the order the APIs'
//! own examples use, and deterministic.

use crate::oci::{self, ROOT_ID};
use crate::yaml_out::{self, Y};
use grantwall_core::config::Config;
use serde_json::Value;

pub const WASM_FILTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
pub const TYPED_EXTENSION_CONFIG_TYPE: &str = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
const STRING_VALUE_TYPE: &str = "type.googleapis.com/google.protobuf.StringValue";
pub const GATEWAY_API_GROUP: &str = "gateway.networking.k8s.io";

/// Where the Wasm module comes from, per host.
#[derive(Debug, Clone, Default)]
pub struct EmitOptions {
    /// Filter, ECDS resource and WasmPlugin name.
    pub name: String,
    /// WasmPlugin `url` (`oci://…`, `https://…`, `file://…`; no scheme means `oci://`).
    pub image: Option<String>,
    /// WasmPlugin `sha256`: 64 hex digits (the OCI manifest digest for `oci://` URLs).
    pub sha256: Option<String>,
    /// Envoy `vm_config.code.local.filename`.
    pub wasm_file: String,
}

/// Default `--wasm-file`: where the Envoy examples in docs/deploy.md put the module.
pub const DEFAULT_WASM_FILE: &str = "/etc/envoy/grantwall.wasm";

/// Checks `--image` as Istio's CRD does (scheme one of oci, https, http, file, or none).
pub fn check_image(url: &str) -> Result<(), String> {
    let scheme = url.split_once("://").map(|(s, _)| s);
    match scheme {
        _ if url.is_empty() || url.chars().any(char::is_whitespace) => {
            Err(format!("--image {url:?}: must be a non-empty URL without spaces, e.g. oci://registry.example.com/grantwall:0.1.0"))
        }
        None | Some("oci" | "https" | "http" | "file") => Ok(()),
        Some(other) => Err(format!("--image {url:?}: Istio accepts oci://, https://, http:// and file:// URLs, not {other}://")),
    }
}

/// Normalises `--sha256`: 64 hex digits, an optional `sha256:` prefix dropped, lower-cased.
pub fn normalize_sha256(s: &str) -> Result<String, String> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s).to_ascii_lowercase();
    if oci::is_sha256_hex(&hex) {
        Ok(hex)
    } else {
        Err(format!("--sha256 {s:?}: expected 64 hex digits (optionally prefixed sha256:), the manifest digest `grantwall package` prints"))
    }
}

/// The compiled config as JSON text (what `grantwall compile` writes without `--emit`).
fn config_json(config: &Config, pretty: bool) -> Result<String, String> {
    let text = if pretty { serde_json::to_string_pretty(config) } else { serde_json::to_string(config) };
    text.map_err(|e| format!("cannot serialise config: {e}"))
}

/// Envoy's `PluginConfig` for the filter, the same in the static and the ECDS form.
fn plugin_config(config: &Config, opts: &EmitOptions) -> Result<Y, String> {
    Ok(Y::map([
        ("name", Y::str(&opts.name)),
        ("root_id", Y::str(ROOT_ID)),
        (
            "vm_config",
            Y::map([
                ("runtime", Y::str("envoy.wasm.runtime.v8")),
                // The same vm_id across updates lets Envoy keep the VM (and Proxy-Wasm shared data) when only the
                // configuration changes.
                ("vm_id", Y::str(ROOT_ID)),
                ("code", Y::map([("local", Y::map([("filename", Y::str(&opts.wasm_file))]))])),
            ]),
        ),
        ("failure_policy", Y::str("FAIL_CLOSED")),
        ("allow_on_headers_stop_iteration", Y::Bool(true)),
        (
            "configuration",
            Y::map([("@type", Y::str(STRING_VALUE_TYPE)), ("value", Y::str(format!("{}\n", config_json(config, true)?)))]),
        ),
    ]))
}

fn wasm_typed_config(config: &Config, opts: &EmitOptions) -> Result<Y, String> {
    Ok(Y::map([("@type", Y::str(WASM_FILTER_TYPE)), ("config", plugin_config(config, opts)?)]))
}

/// `--emit envoy`: a one-item `http_filters` list.
pub fn envoy_filter(config: &Config, opts: &EmitOptions) -> Result<String, String> {
    let doc = Y::List(vec![Y::map([("name", Y::str(&opts.name)), ("typed_config", wasm_typed_config(config, opts)?)])]);
    let header = format!(
        "# Grantwall as an Envoy (>= 1.35) HTTP filter, generated by `grantwall compile --emit envoy`.\n\
         # Paste the item under http_connection_manager.http_filters, before envoy.filters.http.router.\n\
         # The Wasm module is read from {}; see docs/deploy.md.\n",
        opts.wasm_file
    );
    Ok(header + &yaml_out::render(&doc))
}

/// `--emit ecds`: the file an Envoy `path_config_source` watches.
pub fn ecds_resource(config: &Config, opts: &EmitOptions) -> Result<String, String> {
    let compact = config_json(config, false)?;
    // Names this version in Envoy's logs and config dump; any change to the policy changes it.
    let version = oci::sha256_digest(compact.as_bytes()).trim_start_matches("sha256:").get(..16).unwrap_or("").to_string();
    let doc = Y::map([
        ("version_info", Y::str(version)),
        (
            "resources",
            Y::List(vec![Y::map([
                ("@type", Y::str(TYPED_EXTENSION_CONFIG_TYPE)),
                ("name", Y::str(&opts.name)),
                ("typed_config", wasm_typed_config(config, opts)?),
            ])]),
        ),
    ]);
    let header = format!(
        "# Grantwall as an ECDS resource (envoy.config.core.v3.TypedExtensionConfig), generated by\n\
         # `grantwall compile --emit ecds`. Envoy reads it from a file named in the listener's filter:\n\
         #   http_filters:\n\
         #   - name: {name}\n\
         #     config_discovery:\n\
         #       config_source:\n\
         #         path_config_source: {{path: /etc/envoy/grantwall-ecds.yaml}}\n\
         #         resource_api_version: V3\n\
         #       type_urls: [\"{WASM_FILTER_TYPE}\"]\n\
         # Update the policy by writing a new file beside it and renaming it over this one (atomic); Envoy\n\
         # applies it without a restart and keeps in-flight requests on the old policy. See docs/deploy.md.\n",
        name = opts.name
    );
    Ok(header + &yaml_out::render(&doc))
}

/// `--emit wasmplugin`: an Istio WasmPlugin for the Gateway the config was compiled for.
pub fn wasm_plugin(config: &Config, opts: &EmitOptions) -> Result<String, String> {
    let Some((namespace, gateway)) = config.gateway.name.split_once('/') else {
        return Err("--emit wasmplugin attaches the filter to a Gateway, and the input names none: pass \
                    --gateway NAMESPACE/NAME (the Gateway your agents' traffic enters through; the WasmPlugin \
                    is created in its namespace)"
            .to_string());
    };
    let Some(image) = opts.image.as_deref() else {
        return Err("--emit wasmplugin needs --image URL (where Istio pulls the filter, e.g. \
                    oci://registry.example.com/grantwall:0.1.0 after `grantwall package` and a push)"
            .to_string());
    };
    let config_value: Value = serde_json::to_value(config).map_err(|e| format!("cannot serialise config: {e}"))?;
    let mut spec = vec![
        (
            "targetRefs",
            Y::List(vec![Y::map([
                ("group", Y::str(GATEWAY_API_GROUP)),
                ("kind", Y::str("Gateway")),
                ("name", Y::str(gateway)),
            ])]),
        ),
        ("url", Y::str(image)),
    ];
    if let Some(sha) = &opts.sha256 {
        spec.push(("sha256", Y::str(sha)));
    }
    spec.extend([
        ("imagePullPolicy", Y::str("IfNotPresent")),
        // Before Istio's own authorization filters: a request Grantwall refuses never reaches them or the app.
        ("phase", Y::str("AUTHZ")),
        // A module that cannot be fetched or crashes refuses traffic instead of letting it through unchecked.
        ("failStrategy", Y::str("FAIL_CLOSE")),
        ("pluginName", Y::str(ROOT_ID)),
        ("type", Y::str("HTTP")),
        ("pluginConfig", Y::from_json(&config_value)),
    ]);
    let doc = Y::map([
        ("apiVersion", Y::str("extensions.istio.io/v1alpha1")),
        ("kind", Y::str("WasmPlugin")),
        ("metadata", Y::map([("name", Y::str(&opts.name)), ("namespace", Y::str(namespace))])),
        ("spec", Y::map(spec)),
    ]);
    let pin = if opts.sha256.is_some() {
        "# The image is pinned by its manifest digest (spec.sha256).\n"
    } else {
        "# Not pinned: add --sha256 DIGEST or --package DIR (from `grantwall package`) so Istio refuses any\n\
         # other image pushed under the same tag.\n"
    };
    let header = format!(
        "# Grantwall for Istio, generated by `grantwall compile --emit wasmplugin`: regenerate, do not edit.\n\
         # Istio's WasmPlugin cannot set Envoy's allow_on_headers_stop_iteration, so request headers may reach\n\
         # the upstream before the body is judged; denied bodies never do (docs/deploy.md, docs/semantics.md).\n\
         {pin}"
    );
    Ok(header + &yaml_out::render(&doc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use grantwall_core::config::{Target, CONFIG_VERSION};

    fn config(gateway: &str) -> Config {
        Config {
            version: CONFIG_VERSION.into(),
            settings: Default::default(),
            principals: vec!["spiffe://cluster.local/ns/agents/sa/alice".into()],
            gateway: Target { name: gateway.into(), policies: vec![], external_auth: None },
            backends: vec![],
            routes: Default::default(),
            limits: Default::default(),
            llm: None,
        }
    }

    fn opts() -> EmitOptions {
        EmitOptions {
            name: "grantwall".into(),
            image: Some("oci://registry.example.com/grantwall:0.1.0".into()),
            sha256: None,
            wasm_file: DEFAULT_WASM_FILE.into(),
        }
    }

    #[test]
    fn wasmplugin_needs_a_gateway_and_an_image() {
        let err = wasm_plugin(&config(""), &opts()).unwrap_err();
        assert!(err.contains("--gateway NAMESPACE/NAME"), "{err}");
        let err = wasm_plugin(&config("gw-ns/gw"), &EmitOptions { image: None, ..opts() }).unwrap_err();
        assert!(err.contains("--image"), "{err}");
    }

    #[test]
    fn wasmplugin_targets_the_gateway_in_its_namespace() {
        let text = wasm_plugin(&config("gw-ns/agents"), &EmitOptions { sha256: Some("a".repeat(64)), ..opts() }).unwrap();
        let doc = &crate::yaml::parse_documents(&text).unwrap()[0].value;
        assert_eq!(doc["metadata"]["namespace"], "gw-ns");
        assert_eq!(doc["spec"]["targetRefs"][0]["name"], "agents");
        assert_eq!(doc["spec"]["targetRefs"][0]["kind"], "Gateway");
        assert_eq!(doc["spec"]["sha256"], "a".repeat(64).as_str());
        assert_eq!(doc["spec"]["failStrategy"], "FAIL_CLOSE");
        assert_eq!(doc["spec"]["phase"], "AUTHZ");
        // pluginConfig is the compiled config itself, and loads in the filter's engine.
        let back: Config = serde_json::from_value(doc["spec"]["pluginConfig"].clone()).unwrap();
        assert_eq!(back, config("gw-ns/agents"));
    }

    #[test]
    fn envoy_and_ecds_carry_the_config_string_and_fail_closed() {
        for text in [envoy_filter(&config(""), &opts()).unwrap(), ecds_resource(&config(""), &opts()).unwrap()] {
            let doc = &crate::yaml::parse_documents(&text).unwrap()[0].value;
            let typed = doc.pointer("/0/typed_config").or_else(|| doc.pointer("/resources/0/typed_config")).unwrap();
            assert_eq!(typed["@type"], WASM_FILTER_TYPE);
            assert_eq!(typed["config"]["failure_policy"], "FAIL_CLOSED");
            assert_eq!(typed["config"]["allow_on_headers_stop_iteration"], true);
            let value = typed["config"]["configuration"]["value"].as_str().unwrap();
            assert!(grantwall_core::engine::Engine::from_json(value.as_bytes()).is_ok());
        }
    }

    #[test]
    fn ecds_version_follows_the_policy() {
        let a = ecds_resource(&config(""), &opts()).unwrap();
        let b = ecds_resource(&config("gw-ns/agents"), &opts()).unwrap();
        let version = |t: &str| crate::yaml::parse_documents(t).unwrap()[0].value["version_info"].clone();
        assert_ne!(version(&a), version(&b));
        assert_eq!(version(&a), version(&ecds_resource(&config(""), &opts()).unwrap()));
    }

    #[test]
    fn image_and_digest_checks() {
        assert!(check_image("oci://r/g:1").is_ok());
        assert!(check_image("r/g:1").is_ok());
        assert!(check_image("ftp://r/g").unwrap_err().contains("ftp://"));
        assert_eq!(normalize_sha256(&format!("sha256:{}", "AB".repeat(32))).unwrap(), "ab".repeat(32));
        assert!(normalize_sha256("abc").is_err());
    }
}
