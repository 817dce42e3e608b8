//! Bearer-token identity: verify a JWT against the keys compiled into the config (jwt-simple), then map its
//! claims to the principal policies name.
//!
//! - Kubernetes service-account tokens map to the SPIFFE ID a `ServiceAccount` source compiles to, so one
//!   rule matches an agent over mTLS and with its token alike.
//! - Other tokens map to `oidc://<issuer without https://>#<sub>`.
//!
//! Every check fails closed: an unknown `kid`, an algorithm the key was not configured for (`none`, HS/RS
//! confusion), a missing `exp`, an audience we do not serve (no token passthrough) all refuse the token.

mod cache;
pub use cache::{TokenCache, DEFAULT_CAPACITY as TOKEN_CACHE_CAPACITY};

use crate::identity::is_spiffe_id;
use ct_codecs::{Base64UrlSafeNoPadding, Decoder};
use jwt_simple::prelude::*;
use jwt_simple::JWTError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Longest token accepted (header value after the prefix). Real tokens are 1–4 KiB.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Most keys one provider may carry (rotation needs two or three).
pub const MAX_KEYS: usize = 16;

/// `settings.identity.jwt` of the compiled config.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwtSettings {
    /// Token issuers (GrantwallIdentityProvider objects), each with its own issuer URL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<JwtProvider>,
    /// Where a valid token is required. A request without one is answered 401 with a Bearer challenge.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required: Vec<TokenRequirement>,
    /// mTLS peers (SPIFFE IDs) that forward for others, e.g. an ingress gateway: a token may name a caller
    /// other than these peers. Any other disagreement between the peer and the token is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forwarding_peers: Vec<String>,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwtProvider {
    /// `namespace/name` of the GrantwallIdentityProvider, for audit records.
    pub name: String,
    /// Exact `iss` value.
    pub issuer: String,
    /// The token's `aud` must include one of these.
    pub audiences: Vec<String>,
    /// Public (or, for HS256, shared) keys. Several keys with distinct `kid`s allow rotation.
    pub keys: Vec<Jwk>,
    /// Lower-case request header carrying the token.
    #[serde(default = "default_header")]
    pub header: String,
    /// Text before the token in that header (matched case-insensitively); empty: the whole value.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Tolerance for `exp`, `nbf` and `iat`.
    #[serde(default = "default_skew")]
    pub clock_skew_seconds: u32,
    /// Leave the token in the request to the upstream. Default: stripped.
    #[serde(default)]
    pub forward_token: bool,
    /// Set for a Kubernetes API-server issuer: service-account tokens map to
    /// `spiffe://<trustDomain>/ns/<ns>/sa/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_trust_domain: Option<String>,
    /// Who the caller is when this issuer's token arrives on a connection that names a caller too.
    #[serde(default, skip_serializing_if = "TokenPrecedence::is_agree")]
    pub precedence: TokenPrecedence,
}

/// How a verified token and the connection's identity (mTLS peer, or a trusted XFCC client) combine.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TokenPrecedence {
    /// Both name the caller and must name the same one, or the request is refused (`identity-conflict`);
    /// except from `forwardingPeers`, whose requests the token names.
    #[default]
    Agree,
    /// The token names the caller whatever the connection says (every peer forwards for token holders).
    Token,
    /// The connection names the caller; the token is still verified (and stripped) and its claims are CEL's
    /// `jwt.claims`, e.g. an agent on mTLS calling with its user's token. Without a connection identity the
    /// token names the caller.
    Connection,
}

impl TokenPrecedence {
    pub fn is_agree(&self) -> bool {
        *self == TokenPrecedence::Agree
    }
}

fn default_header() -> String {
    "authorization".to_owned()
}
fn default_prefix() -> String {
    "Bearer ".to_owned()
}
fn default_skew() -> u32 {
    60
}

/// A JSON Web Key, reduced to the members Grantwall reads. `alg` is required for `RSA` and `oct` keys: the
/// key, never the token, chooses the algorithm.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jwk {
    pub kty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<String>,
}

/// Where a token is required; `backend: None` means every request through this filter.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TokenRequirement {
    /// `namespace/name` of an XBackend; absent: the whole Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// OAuth protected-resource metadata URL for the challenge (MCP authorization spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_metadata: Option<String>,
}

/// A verified token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenIdentity {
    pub principal: String,
    pub issuer: String,
    pub subject: String,
    pub expires_at: u64,
    /// Index of the provider that verified it.
    pub provider: usize,
    /// Every claim, as a JSON object: CEL's `jwt.claims`.
    pub claims: Value,
}

/// Why a token was refused. The text goes to the audit record, never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError(pub String);

fn err<T>(why: impl Into<String>) -> Result<T, TokenError> {
    Err(TokenError(why.into()))
}

enum Key {
    Rs256(RS256PublicKey),
    Rs384(RS384PublicKey),
    Rs512(RS512PublicKey),
    Ps256(PS256PublicKey),
    Es256(ES256PublicKey),
    Es384(ES384PublicKey),
    EdDsa(Ed25519PublicKey),
    Hs256(HS256Key),
}

impl Key {
    fn alg(&self) -> &'static str {
        match self {
            Key::Rs256(_) => "RS256",
            Key::Rs384(_) => "RS384",
            Key::Rs512(_) => "RS512",
            Key::Ps256(_) => "PS256",
            Key::Es256(_) => "ES256",
            Key::Es384(_) => "ES384",
            Key::EdDsa(_) => "EdDSA",
            Key::Hs256(_) => "HS256",
        }
    }

    fn verify(&self, token: &str, opts: &VerificationOptions) -> Result<JWTClaims<Map<String, Value>>, jwt_simple::Error> {
        let o = Some(opts.clone());
        match self {
            Key::Rs256(k) => k.verify_token(token, o),
            Key::Rs384(k) => k.verify_token(token, o),
            Key::Rs512(k) => k.verify_token(token, o),
            Key::Ps256(k) => k.verify_token(token, o),
            Key::Es256(k) => k.verify_token(token, o),
            Key::Es384(k) => k.verify_token(token, o),
            Key::EdDsa(k) => k.verify_token(token, o),
            Key::Hs256(k) => k.verify_token(token, o),
        }
    }
}

struct LoadedKey {
    kid: Option<String>,
    key: Key,
}

struct Provider {
    config: JwtProvider,
    keys: Vec<LoadedKey>,
    options: VerificationOptions,
}

/// The providers of a config with their keys parsed, built once at configure time.
pub struct Verifier {
    providers: Vec<Provider>,
}

impl Verifier {
    /// Parse every key; any key that does not load refuses the whole config (`at` names the field).
    pub fn new(settings: &JwtSettings) -> Result<Verifier, (String, String)> {
        let mut providers = Vec::with_capacity(settings.providers.len());
        for (i, p) in settings.providers.iter().enumerate() {
            let at = format!("settings.identity.jwt.providers[{i}]");
            if p.audiences.is_empty() {
                return Err((format!("{at}.audiences"), "at least one audience is required".into()));
            }
            if p.keys.is_empty() || p.keys.len() > MAX_KEYS {
                return Err((format!("{at}.keys"), format!("between 1 and {MAX_KEYS} keys are required")));
            }
            if settings.providers.iter().take(i).any(|q| q.issuer == p.issuer) {
                return Err((format!("{at}.issuer"), format!("issuer {:?} is configured twice", p.issuer)));
            }
            if let Some(td) = &p.kubernetes_trust_domain {
                if !is_spiffe_id(&format!("spiffe://{td}")) {
                    return Err((format!("{at}.kubernetesTrustDomain"), format!("{td:?} is not a SPIFFE trust domain")));
                }
            }
            let mut keys = Vec::with_capacity(p.keys.len());
            for (j, jwk) in p.keys.iter().enumerate() {
                let key = load_key(jwk).map_err(|e| (format!("{at}.keys[{j}]"), e.0))?;
                keys.push(LoadedKey { kid: jwk.kid.clone(), key });
            }
            let options = VerificationOptions {
                allowed_issuers: Some([p.issuer.clone()].into_iter().collect()),
                allowed_audiences: Some(p.audiences.iter().cloned().collect()),
                time_tolerance: Some(Duration::from_secs(u64::from(p.clock_skew_seconds))),
                max_token_length: Some(MAX_TOKEN_BYTES),
                accept_future: false,
                ..VerificationOptions::default()
            };
            providers.push(Provider { config: p.clone(), keys, options });
        }
        Ok(Verifier { providers })
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    pub fn provider(&self, i: usize) -> Option<&JwtProvider> {
        self.providers.get(i).map(|p| &p.config)
    }

    /// The distinct headers tokens may arrive in.
    pub fn headers(&self) -> Vec<&str> {
        let mut h: Vec<&str> = self.providers.iter().map(|p| p.config.header.as_str()).collect();
        h.sort_unstable();
        h.dedup();
        h
    }

    /// The token in a header value, if that header/prefix belongs to some provider.
    pub fn extract<'v>(&self, header: &str, value: &'v str) -> Result<&'v str, TokenError> {
        for p in self.providers.iter().filter(|p| p.config.header == header) {
            let prefix = p.config.prefix.as_str();
            if value.len() >= prefix.len() && value.is_char_boundary(prefix.len()) {
                let (head, token) = value.split_at(prefix.len());
                if head.eq_ignore_ascii_case(prefix) {
                    return Ok(token.trim());
                }
            }
        }
        err(format!("{header}: not the expected token prefix"))
    }

    /// Verify `token` at unix time `now` (seconds) and map it to a principal.
    pub fn verify(&self, token: &str, now: u64) -> Result<TokenIdentity, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return err(format!("token longer than {MAX_TOKEN_BYTES} bytes"));
        }
        let issuer = unverified_issuer(token)?;
        let Some((index, provider)) = self.providers.iter().enumerate().find(|(_, p)| p.config.issuer == issuer) else {
            return err("token issuer is not a configured identity provider");
        };
        let meta = Token::decode_metadata(token).map_err(|_| TokenError("malformed token header".into()))?;
        let alg = meta.algorithm();
        let kid = meta.key_id();
        let mut candidates = provider
            .keys
            .iter()
            .filter(|k| k.key.alg() == alg && (kid.is_none() || k.kid.as_deref() == kid))
            .peekable();
        if candidates.peek().is_none() {
            return err(format!("no key for alg {alg:?}{}", kid.map(|k| format!(" kid {k:?}")).unwrap_or_default()));
        }
        let mut options = provider.options.clone();
        options.artificial_time = Some(UnixTimeStamp::from_secs(now));
        let mut last = TokenError("signature does not verify".into());
        for k in candidates {
            match k.key.verify(token, &options) {
                Ok(claims) => return identity(&provider.config, index, claims),
                Err(e) => last = TokenError(describe(&e)),
            }
        }
        Err(last)
    }
}

/// jwt-simple's errors, in words an operator can act on (and without echoing token contents).
fn describe(e: &jwt_simple::Error) -> String {
    match e.downcast_ref::<JWTError>() {
        Some(JWTError::TokenHasExpired) => "token expired".into(),
        Some(JWTError::TokenNotValidYet) => "token not valid yet (nbf)".into(),
        Some(JWTError::ClockDrift) => "token issued in the future (iat)".into(),
        Some(JWTError::RequiredAudienceMismatch | JWTError::RequiredAudienceMissing) => {
            "token audience is not one this gateway serves".into()
        }
        Some(JWTError::RequiredIssuerMismatch | JWTError::RequiredIssuerMissing) => "token issuer mismatch".into(),
        Some(JWTError::AlgorithmMismatch) => "token algorithm does not match the key".into(),
        Some(JWTError::TokenTooLong) => "token too long".into(),
        _ => "invalid token signature or encoding".into(),
    }
}

/// `iss` from the unverified payload, only to choose the provider whose keys then verify everything.
fn unverified_issuer(token: &str) -> Result<String, TokenError> {
    #[derive(Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return err("not a compact JWS (header.payload.signature)");
    };
    let bytes = Base64UrlSafeNoPadding::decode_to_vec(payload, None).map_err(|_| TokenError("malformed token payload".into()))?;
    let iss: Iss = serde_json::from_slice(&bytes).map_err(|_| TokenError("malformed token payload".into()))?;
    iss.iss.ok_or_else(|| TokenError("token has no iss".into()))
}

fn identity(p: &JwtProvider, index: usize, claims: JWTClaims<Map<String, Value>>) -> Result<TokenIdentity, TokenError> {
    let Some(expires_at) = claims.expires_at else { return err("token has no exp") };
    let subject = claims.subject.clone().unwrap_or_default();
    let principal = match &p.kubernetes_trust_domain {
        Some(td) => service_account_principal(td, &subject, &claims.custom)?,
        None if subject.is_empty() => return err("token has no sub"),
        None => oidc_principal(&p.issuer, &subject),
    };
    let mut all = claims.custom;
    all.insert("iss".into(), Value::String(p.issuer.clone()));
    if !subject.is_empty() {
        all.insert("sub".into(), Value::String(subject.clone()));
    }
    all.insert("exp".into(), Value::from(expires_at.as_secs()));
    // jwt-simple keeps the registered time claims out of `custom`: put them back (CEL, ephemeral ttl).
    if let Some(iat) = claims.issued_at {
        all.insert("iat".into(), Value::from(iat.as_secs()));
    }
    if let Some(nbf) = claims.invalid_before {
        all.insert("nbf".into(), Value::from(nbf.as_secs()));
    }
    if let Some(aud) = claims.audiences {
        let list: Vec<Value> = aud.into_set().into_iter().map(Value::String).collect();
        all.insert("aud".into(), Value::Array(list));
    }
    Ok(TokenIdentity {
        principal,
        issuer: p.issuer.clone(),
        subject,
        expires_at: expires_at.as_secs(),
        provider: index,
        claims: Value::Object(all),
    })
}

/// `oidc://<issuer without scheme>#<sub>`: cannot collide with a SPIFFE ID or another issuer's subjects.
pub fn oidc_principal(issuer: &str, subject: &str) -> String {
    let host = issuer.strip_prefix("https://").unwrap_or(issuer);
    format!("oidc://{host}#{subject}")
}

/// A service-account token names its account twice (`sub` and `kubernetes.io`); both must agree.
fn service_account_principal(trust_domain: &str, sub: &str, claims: &Map<String, Value>) -> Result<String, TokenError> {
    let from_sub = sub.strip_prefix("system:serviceaccount:").map(|rest| rest.split_once(':'));
    let from_sub = match from_sub {
        None => None,
        Some(Some((ns, name))) => Some((ns, name)),
        Some(None) => return err("malformed service-account sub"),
    };
    let k8s = claims.get("kubernetes.io");
    let from_claim = match k8s {
        None => None,
        Some(v) => {
            let ns = v.get("namespace").and_then(Value::as_str);
            let name = v.get("serviceaccount").and_then(|s| s.get("name")).and_then(Value::as_str);
            match (ns, name) {
                (Some(ns), Some(name)) => Some((ns, name)),
                _ => return err("kubernetes.io claim without namespace and serviceaccount.name"),
            }
        }
    };
    let (ns, name) = match (from_sub, from_claim) {
        (Some(a), Some(b)) if a != b => return err("sub and kubernetes.io name different service accounts"),
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => return err("not a service-account token"),
    };
    let label = |s: &str| {
        !s.is_empty() && s.len() <= 253 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    if !label(ns) || !label(name) {
        return err("service-account namespace or name is not a Kubernetes name");
    }
    Ok(format!("spiffe://{trust_domain}/ns/{ns}/sa/{name}"))
}

fn load_key(jwk: &Jwk) -> Result<Key, TokenError> {
    let alg = jwk.alg.as_deref();
    // Hand jwt-simple only the public members: its strict JWK import then checks the key itself.
    let public = Jwk { kid: None, alg: None, k: None, ..jwk.clone() };
    let json = serde_json::to_string(&public).map_err(|_| TokenError("key does not encode".into()))?;
    let bad = |e: jwt_simple::Error| TokenError(format!("key does not load: {e}"));
    match (jwk.kty.as_str(), alg, jwk.crv.as_deref()) {
        ("RSA", Some("RS256"), _) => RS256PublicKey::from_jwk(&json).map(Key::Rs256).map_err(bad),
        ("RSA", Some("RS384"), _) => RS384PublicKey::from_jwk(&json).map(Key::Rs384).map_err(bad),
        ("RSA", Some("RS512"), _) => RS512PublicKey::from_jwk(&json).map(Key::Rs512).map_err(bad),
        ("RSA", Some("PS256"), _) => PS256PublicKey::from_jwk(&json).map(Key::Ps256).map_err(bad),
        ("RSA", _, _) => err("RSA keys need alg RS256, RS384, RS512 or PS256"),
        ("EC", None | Some("ES256"), Some("P-256")) => ES256PublicKey::from_jwk(&json).map(Key::Es256).map_err(bad),
        ("EC", None | Some("ES384"), Some("P-384")) => ES384PublicKey::from_jwk(&json).map(Key::Es384).map_err(bad),
        ("EC", _, _) => err("EC keys must be P-256 (ES256) or P-384 (ES384)"),
        ("OKP", None | Some("EdDSA"), Some("Ed25519")) => Ed25519PublicKey::from_jwk(&json).map(Key::EdDsa).map_err(bad),
        ("OKP", _, _) => err("OKP keys must be Ed25519 (EdDSA)"),
        ("oct", Some("HS256"), _) => {
            let k = jwk.k.as_deref().unwrap_or("");
            let raw = Base64UrlSafeNoPadding::decode_to_vec(k, None).map_err(|_| TokenError("k is not base64url".into()))?;
            if raw.len() < 32 {
                return err("HS256 keys must be at least 32 bytes");
            }
            Ok(Key::Hs256(HS256Key::from_bytes(&raw)))
        }
        ("oct", _, _) => err("oct keys need alg HS256"),
        (kty, _, _) => err(format!("unsupported kty {kty:?}")),
    }
}
