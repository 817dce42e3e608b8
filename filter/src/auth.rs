//! Bearer tokens at the headers phase: find the token, verify it (grantwall-core `jwt`), strip it before the
//! upstream, and build the 401 challenge when a required token is missing or any token is invalid.
//!
//! A token in a provider's header with its prefix is always verified, required or not: a token we cannot
//! verify is refused rather than passed to the upstream (no token passthrough).

use crate::host;
use grantwall_core::jwt::{JwtSettings, TokenCache, TokenIdentity, Verifier, TOKEN_CACHE_CAPACITY};
use std::cell::RefCell;
use std::rc::Rc;

/// One config's token keys (parsed once) and this worker's cache of tokens they verified. A new config
/// gets a new `Tokens`, so a rotated key or a changed audience never meets a token cached under the old one.
pub struct Tokens {
    verifier: Verifier,
    cache: RefCell<TokenCache>,
}

impl Tokens {
    pub fn new(verifier: Verifier) -> Tokens {
        Tokens { verifier, cache: RefCell::new(TokenCache::new(TOKEN_CACHE_CAPACITY)) }
    }

    fn verify(&self, token: &str, now: u64) -> Result<Rc<TokenIdentity>, grantwall_core::jwt::TokenError> {
        match self.cache.try_borrow_mut() {
            Ok(mut cache) => cache.verify(&self.verifier, token, now),
            // Not reachable (one request at a time per worker), but never a panic: verify uncached.
            Err(_) => self.verifier.verify(token, now).map(Rc::new),
        }
    }
}

/// Why the request gets a 401, and the `WWW-Authenticate` value (RFC 6750, MCP authorization).
pub struct Challenge {
    pub reason: &'static str,
    pub message: String,
    pub www_authenticate: String,
}

/// A host failure while reading or stripping the token header.
pub struct HostFailure;

/// The verified token of this request, if any; `Err(Ok(challenge))` refuses with 401. `headers` are the
/// request headers the glue already read (one host call for all of them).
pub fn authenticate(
    tokens: &Tokens,
    settings: &JwtSettings,
    backend: Option<&str>,
    headers: &host::HeaderMap,
) -> Result<Option<Rc<TokenIdentity>>, Result<Challenge, HostFailure>> {
    let verifier = &tokens.verifier;
    if verifier.is_empty() {
        return Ok(None);
    }
    let requirement = settings.required.iter().find(|r| r.backend.is_none() || r.backend.as_deref() == backend);
    let metadata = requirement.and_then(|r| r.resource_metadata.as_deref());
    let mut found = None;
    for header in verifier.headers() {
        let Some(raw) = headers.get(header) else { continue };
        let Ok(value) = std::str::from_utf8(raw) else {
            return Err(Ok(invalid(format!("{header} is not UTF-8"), metadata)));
        };
        if let Ok(token) = verifier.extract(header, value) {
            if found.is_some() {
                return Err(Ok(invalid("more than one bearer token".into(), metadata)));
            }
            found = Some((header, token.to_owned()));
        }
    }
    let Some((header, token)) = found else {
        return match requirement {
            Some(_) => Err(Ok(Challenge {
                reason: "token-missing",
                message: "a bearer token is required".into(),
                www_authenticate: challenge(None, metadata),
            })),
            None => Ok(None),
        };
    };
    let now = host::current_time_nanos().map_err(|_| Err(HostFailure))? / 1_000_000_000;
    let identity = tokens.verify(&token, now).map_err(|e| Ok(invalid(e.0, metadata)))?;
    let forward = verifier.provider(identity.provider).is_some_and(|p| p.forward_token);
    if !forward {
        host::remove_request_header(header).map_err(|_| Err(HostFailure))?;
    }
    Ok(Some(identity))
}

/// The challenge of a 401 for an ephemeral identity past its lifetime: its token is no longer usable.
pub fn expired_challenge(why: &str) -> String {
    challenge(Some(why), None)
}

fn invalid(why: String, metadata: Option<&str>) -> Challenge {
    Challenge { reason: "invalid-token", www_authenticate: challenge(Some(&why), metadata), message: why }
}

/// `Bearer realm="grantwall"[, error="invalid_token", error_description="…"][, resource_metadata="…"]`.
/// No `error` when no token was sent (RFC 6750 §3.1).
fn challenge(error: Option<&str>, metadata: Option<&str>) -> String {
    let mut v = String::from("Bearer realm=\"grantwall\"");
    if let Some(why) = error {
        let clean: String = why.chars().filter(|c| *c != '"' && *c != '\\' && !c.is_control()).collect();
        v.push_str(&format!(", error=\"invalid_token\", error_description=\"{clean}\""));
    }
    if let Some(url) = metadata {
        v.push_str(&format!(", resource_metadata=\"{url}\""));
    }
    v
}
