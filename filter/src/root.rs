//! Plugin lifecycle: load and validate the compiled config at configure time, hand it to each request.
//! A config that does not load makes `on_configure` return false, so Envoy refuses the plugin (and, with
//! FAIL_CLOSED, the traffic) instead of running without policy.
//!
//! Live updates (ECDS, a listener update, Istio pushing a changed WasmPlugin): Envoy configures a new root
//! context with the new config, in the same VM when `vm_config` is unchanged; a refused config leaves the old
//! one in place (the update is rejected). Each request holds its own `Rc<Engine>`, so a request in flight keeps
//! the policy it started under. Nothing else is kept per root today; state that must outlive a config (rate
//! limits, bindings) belongs in Proxy-Wasm shared data, which Envoy keys by `vm_id`, not by root context.

use crate::auth::Tokens;
use crate::http::GrantwallHttp;
use crate::metrics::Metrics;
use grantwall_core::engine::Engine;
use grantwall_core::jwt::Verifier;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::rc::Rc;

#[derive(Default)]
pub struct GrantwallRoot {
    engine: Option<Rc<Engine>>,
    /// Token keys parsed once per config (RSA/EC key parsing is not per request), and the tokens they
    /// verified on this worker.
    tokens: Option<Rc<Tokens>>,
    metrics: Option<Rc<Metrics>>,
}

impl Context for GrantwallRoot {}

impl RootContext for GrantwallRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let Some(config) = self.get_plugin_configuration() else {
            log::error!("grantwall: no plugin configuration; compile one with `grantwall compile` and set it as the filter's configuration");
            return false;
        };
        match Engine::from_json(&config) {
            Ok(engine) => {
                let verifier = match Verifier::new(&engine.settings().identity.jwt) {
                    Ok(v) => v,
                    Err((at, why)) => {
                        log::error!("grantwall: invalid Grantwall config at {at}: {why}; the plugin refuses to start");
                        return false;
                    }
                };
                if let Err(e) = crate::limits::prepare(engine.limits()) {
                    log::error!("grantwall: could not prepare the shared rate-limit tables (host status {}); the plugin refuses to start", e.0);
                    return false;
                }
                self.tokens = Some(Rc::new(Tokens::new(verifier)));
                log::info!("grantwall: config loaded ({} bytes)", config.len());
                crate::agent::ensure_counters(&engine);
                self.engine = Some(Rc::new(engine));
                if self.metrics.is_none() {
                    self.metrics = Some(Rc::new(Metrics::define()));
                }
                true
            }
            Err(e) => {
                log::error!("grantwall: {e}; the plugin refuses to start");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let engine = Rc::clone(self.engine.as_ref()?);
        let tokens = Rc::clone(self.tokens.as_ref()?);
        let metrics = Rc::clone(self.metrics.as_ref()?);
        Some(Box::new(GrantwallHttp::new(engine, tokens, metrics)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
