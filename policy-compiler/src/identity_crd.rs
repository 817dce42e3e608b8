//! `GrantwallIdentityProvider` (grantwall.io/v1alpha1) → `settings.identity.jwt` of the filter config: the
//! issuer, audiences and keys a bearer token is verified against, and where a token is required.
//! The object has passed its CRD schema (defaults applied) before it gets here; this adds what the schema
//! cannot say: the JWKS must load in the filter, issuers are unique, target names resolve.

use crate::diag::{Diags, Loc};
use crate::input::Object;
use grantwall_core::jwt::{JwtProvider, JwtSettings, Jwk, TokenPrecedence, TokenRequirement, Verifier};
use serde_json::Value;
use std::path::Path;

pub const GROUP: &str = "grantwall.io";
pub const KIND: &str = "GrantwallIdentityProvider";
/// KAN's XAccessPolicy v1alpha1 plus `source.type: OIDC`; read by `policy::read` like an XAccessPolicy.
pub const POLICY_KIND: &str = "GrantwallAccessPolicy";

/// One provider, with where it requires a token (`None` target = the Gateway).
#[derive(Debug, Clone)]
pub struct ProviderIr {
    pub location: Loc,
    pub provider: JwtProvider,
    /// `(Some(ns/name of XBackend) | None for a Gateway named ns/name, gateway ns/name)`.
    pub require: Vec<RequireIr>,
    pub resource_metadata: Option<String>,
    pub forwarding_peers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequireIr {
    Backend(String),
    Gateway(String),
}

/// Read one validated object. `origin_file` locates `jwks.file`.
pub fn read(obj: &Object, origin_file: &str, trust_domain: &str, diags: &mut Diags) -> Option<ProviderIr> {
    let loc = obj.location();
    let spec = obj.value.get("spec")?;
    let s = |p: &str| spec.pointer(p).and_then(Value::as_str).map(str::to_owned);
    let issuer = s("/oidc/issuerUrl")?;
    let audiences: Vec<String> = spec
        .pointer("/oidc/audiences")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    let jwks_text = match (s("/jwks/inline"), s("/jwks/file")) {
        (Some(t), None) => t,
        (None, Some(f)) => {
            let base = Path::new(origin_file).parent().unwrap_or(Path::new("."));
            let path = if origin_file == "-" { Path::new(&f).to_path_buf() } else { base.join(&f) };
            match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    diags.error(&loc, "spec.jwks.file", format!("cannot read {}: {e}", path.display()));
                    return None;
                }
            }
        }
        _ => {
            diags.error(&loc, "spec.jwks", "Required value: exactly one of inline or file");
            return None;
        }
    };
    let keys = match parse_jwks(&jwks_text) {
        Ok(k) => k,
        Err(e) => {
            diags.error(&loc, "spec.jwks", e);
            return None;
        }
    };
    let kubernetes = s("/tokenType").as_deref() == Some("ServiceAccount");
    let provider = JwtProvider {
        name: obj.ns_name(),
        issuer,
        audiences,
        keys,
        header: s("/token/header").unwrap_or_else(|| "authorization".into()).to_ascii_lowercase(),
        prefix: s("/token/prefix").unwrap_or_else(|| "Bearer ".into()),
        clock_skew_seconds: spec.get("clockSkewSeconds").and_then(Value::as_u64).map_or(60, |n| n.min(600) as u32),
        forward_token: spec.pointer("/token/forward").and_then(Value::as_bool).unwrap_or(false),
        kubernetes_trust_domain: kubernetes.then(|| trust_domain.to_owned()),
        // The CRD schema admits only these values (default Agree).
        precedence: match s("/identityPrecedence").as_deref() {
            Some("Token") => TokenPrecedence::Token,
            Some("Connection") => TokenPrecedence::Connection,
            _ => TokenPrecedence::Agree,
        },
    };
    // The filter's own loader is the judge of the keys.
    let check = JwtSettings { providers: vec![provider.clone()], ..JwtSettings::default() };
    if let Err((at, why)) = Verifier::new(&check) {
        let field = at.replace("settings.identity.jwt.providers[0].", "spec.jwks.");
        diags.error(&loc, field, why);
        return None;
    }
    let mut require = Vec::new();
    for r in spec.pointer("/requireToken/targetRefs").and_then(Value::as_array).into_iter().flatten() {
        let name = r.get("name").and_then(Value::as_str).unwrap_or_default();
        let id = format!("{}/{name}", obj.namespace);
        require.push(match r.get("kind").and_then(Value::as_str) {
            Some("Gateway") => RequireIr::Gateway(id),
            _ => RequireIr::Backend(id),
        });
    }
    let forwarding_peers = spec
        .get("forwardingPeers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    Some(ProviderIr { location: loc, provider, require, resource_metadata: s("/requireToken/resourceMetadata"), forwarding_peers })
}

/// A JWKS document → the public members of its signing keys. Private key material is refused: it must
/// never be copied into proxy configuration.
pub fn parse_jwks(text: &str) -> Result<Vec<Jwk>, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("JWKS is not JSON: {e}"))?;
    let keys = doc.get("keys").and_then(Value::as_array).ok_or("JWKS must be an object with a \"keys\" array")?;
    let mut out = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let get = |m: &str| k.get(m).and_then(Value::as_str).map(str::to_owned);
        if get("use").is_some_and(|u| u != "sig") {
            continue; // encryption keys are not for verifying tokens
        }
        let kty = get("kty").ok_or(format!("keys[{i}]: kty is required"))?;
        if kty != "oct" && k.get("d").is_some() {
            return Err(format!("keys[{i}]: a private key; publish only the public key (drop \"d\")"));
        }
        let mut alg = get("alg");
        if kty == "RSA" && alg.is_none() {
            alg = Some("RS256".into()); // what RSA JWKS without alg (Kubernetes, most IdPs) sign with
        }
        out.push(Jwk { kty, kid: get("kid"), alg, n: get("n"), e: get("e"), crv: get("crv"), x: get("x"), y: get("y"), k: get("k") });
    }
    if out.is_empty() {
        return Err("JWKS has no signing keys".into());
    }
    let mut kids: Vec<&str> = out.iter().filter_map(|k| k.kid.as_deref()).collect();
    kids.sort_unstable();
    if kids.windows(2).any(|w| w.first() == w.get(1)) {
        return Err("two keys share a kid: rotation needs distinct kids".into());
    }
    Ok(out)
}

/// All providers → the config section. Issuers must be unique: a token's `iss` chooses its keys.
pub fn settings(
    providers: &[ProviderIr],
    gateway: Option<&str>,
    backend_names: &[String],
    diags: &mut Diags,
) -> JwtSettings {
    let mut out = JwtSettings::default();
    let mut sorted: Vec<&ProviderIr> = providers.iter().collect();
    sorted.sort_by(|a, b| a.provider.name.cmp(&b.provider.name));
    for p in sorted {
        if out.providers.iter().any(|q| q.issuer == p.provider.issuer) {
            diags.error(&p.location, "spec.oidc.issuerUrl", format!("issuer {:?} is already defined by another GrantwallIdentityProvider", p.provider.issuer));
            continue;
        }
        for r in &p.require {
            let backend = match r {
                RequireIr::Gateway(g) if gateway == Some(g.as_str()) => None,
                RequireIr::Gateway(g) => {
                    diags.warn(format!("{}: requireToken names Gateway {g}, not the one compiled for: ignored", p.location));
                    continue;
                }
                RequireIr::Backend(b) if backend_names.contains(b) => Some(b.clone()),
                RequireIr::Backend(b) => {
                    diags.error(&p.location, "spec.requireToken.targetRefs", format!("XBackend {b} is not in the input"));
                    continue;
                }
            };
            let req = TokenRequirement { backend, resource_metadata: p.resource_metadata.clone() };
            if !out.required.contains(&req) {
                out.required.push(req);
            }
        }
        out.forwarding_peers.extend(p.forwarding_peers.iter().cloned());
        out.providers.push(p.provider.clone());
    }
    out.required.sort_by(|a, b| a.backend.cmp(&b.backend));
    out.forwarding_peers.sort();
    out.forwarding_peers.dedup();
    out
}
