//! Bearer-token verification over tokens signed here, for every algorithm Grantwall accepts, and the
//! attacks it must refuse. Natively the keys are generated per run (jwt-simple); on 32-bit Wasm they come
//! from `fixtures/jwt_keys.json` (RSA key generation is slow there), written by the ignored test below.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use ct_codecs::{Base64UrlSafeNoPadding, Encoder};
use grantwall_core::identity::{with_token, Identity, IdentityError, IdentitySource};
use grantwall_core::jwt::{oidc_principal, JwtProvider, JwtSettings, Jwk, TokenCache, TokenPrecedence, Verifier};
use jwt_simple::prelude::*;
use serde_json::{json, Map, Value};

const ISS: &str = "https://issuer.example";
const K8S_ISS: &str = "https://kubernetes.default.svc.cluster.local";
const AUD: &str = "mcp-gateway";
const NOW: u64 = 1_800_000_000;
const ALGS: [&str; 8] = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA", "HS256"];

enum Signer {
    Rs256(RS256KeyPair),
    Rs384(RS384KeyPair),
    Rs512(RS512KeyPair),
    Ps256(PS256KeyPair),
    Es256(ES256KeyPair),
    Es384(ES384KeyPair),
    EdDsa(Ed25519KeyPair),
    Hs256(HS256Key),
}

impl Signer {
    fn sign(&self, claims: JWTClaims<Map<String, Value>>) -> String {
        match self {
            Signer::Rs256(k) => k.sign(claims),
            Signer::Rs384(k) => k.sign(claims),
            Signer::Rs512(k) => k.sign(claims),
            Signer::Ps256(k) => k.sign(claims),
            Signer::Es256(k) => k.sign(claims),
            Signer::Es384(k) => k.sign(claims),
            Signer::EdDsa(k) => k.sign(claims),
            Signer::Hs256(k) => k.authenticate(claims),
        }
        .unwrap()
    }

    fn with_kid(self, kid: &str) -> Signer {
        match self {
            Signer::Rs256(k) => Signer::Rs256(k.with_key_id(kid)),
            Signer::Rs384(k) => Signer::Rs384(k.with_key_id(kid)),
            Signer::Rs512(k) => Signer::Rs512(k.with_key_id(kid)),
            Signer::Ps256(k) => Signer::Ps256(k.with_key_id(kid)),
            Signer::Es256(k) => Signer::Es256(k.with_key_id(kid)),
            Signer::Es384(k) => Signer::Es384(k.with_key_id(kid)),
            Signer::EdDsa(k) => Signer::EdDsa(k.with_key_id(kid)),
            Signer::Hs256(k) => Signer::Hs256(k.with_key_id(kid)),
        }
    }

    /// The verification key as Grantwall's config carries it.
    fn jwk(&self, alg: &str, kid: Option<&str>) -> Jwk {
        let public = match self {
            Signer::Rs256(k) => k.public_key().to_jwk(),
            Signer::Rs384(k) => k.public_key().to_jwk(),
            Signer::Rs512(k) => k.public_key().to_jwk(),
            Signer::Ps256(k) => k.public_key().to_jwk(),
            Signer::Es256(k) => k.public_key().to_jwk(),
            Signer::Es384(k) => k.public_key().to_jwk(),
            Signer::EdDsa(k) => k.public_key().to_jwk(),
            Signer::Hs256(k) => {
                let secret = Base64UrlSafeNoPadding::encode_to_string(k.to_bytes()).unwrap();
                json!({"kty": "oct", "k": secret}).to_string()
            }
        };
        let v: Value = serde_json::from_str(&public).unwrap();
        let get = |m: &str| v.get(m).and_then(Value::as_str).map(str::to_owned);
        Jwk {
            kty: get("kty").unwrap(),
            kid: kid.map(str::to_owned),
            alg: Some(alg.to_owned()),
            n: get("n"),
            e: get("e"),
            crv: get("crv"),
            x: get("x"),
            y: get("y"),
            k: get("k"),
        }
    }
}

/// Private keys: RSA (one key serves RS256/384/512 and PS256), P-256, P-384, Ed25519, an HMAC secret.
struct KeyMaterial {
    rsa: String,
    p256: String,
    p384: String,
    ed25519: String,
    hmac: Vec<u8>,
}

/// Generated once per test binary (2048-bit RSA generation is slow in debug builds).
#[cfg(not(target_arch = "wasm32"))]
fn material(n: usize) -> &'static KeyMaterial {
    static SETS: std::sync::OnceLock<Vec<KeyMaterial>> = std::sync::OnceLock::new();
    &SETS.get_or_init(|| (0..2).map(|_| generate()).collect())[n]
}

#[cfg(not(target_arch = "wasm32"))]
fn generate() -> KeyMaterial {
    KeyMaterial {
        rsa: RS256KeyPair::generate(2048).unwrap().to_jwk(),
        p256: ES256KeyPair::generate().to_jwk(),
        p384: ES384KeyPair::generate().to_jwk(),
        ed25519: Ed25519KeyPair::generate().to_jwk(),
        hmac: HS256Key::generate().to_bytes(),
    }
}

#[cfg(target_arch = "wasm32")]
fn material(n: usize) -> &'static KeyMaterial {
    Box::leak(Box::new(fixture(n)))
}

#[cfg(target_arch = "wasm32")]
fn fixture(n: usize) -> KeyMaterial {
    let all: Value = serde_json::from_str(include_str!("fixtures/jwt_keys.json")).unwrap();
    let set = &all["sets"][n];
    let s = |k: &str| set[k].as_str().unwrap().to_owned();
    KeyMaterial {
        rsa: s("rsa"),
        p256: s("p256"),
        p384: s("p384"),
        ed25519: s("ed25519"),
        hmac: <ct_codecs::Base64UrlSafeNoPadding as ct_codecs::Decoder>::decode_to_vec(s("hmac"), None).unwrap(),
    }
}

/// A private JWK without `alg`, so one RSA key loads as any RSA algorithm.
fn strip_alg(jwk: &str) -> String {
    let mut v: Value = serde_json::from_str(jwk).unwrap();
    v.as_object_mut().unwrap().remove("alg");
    v.to_string()
}

fn signer(m: &KeyMaterial, alg: &str) -> Signer {
    let rsa = strip_alg(&m.rsa);
    match alg {
        "RS256" => Signer::Rs256(RS256KeyPair::from_jwk(&rsa).unwrap()),
        "RS384" => Signer::Rs384(RS384KeyPair::from_jwk(&rsa).unwrap()),
        "RS512" => Signer::Rs512(RS512KeyPair::from_jwk(&rsa).unwrap()),
        "PS256" => Signer::Ps256(PS256KeyPair::from_jwk(&rsa).unwrap()),
        "ES256" => Signer::Es256(ES256KeyPair::from_jwk(&strip_alg(&m.p256)).unwrap()),
        "ES384" => Signer::Es384(ES384KeyPair::from_jwk(&strip_alg(&m.p384)).unwrap()),
        "EdDSA" => Signer::EdDsa(Ed25519KeyPair::from_jwk(&strip_alg(&m.ed25519)).unwrap()),
        "HS256" => Signer::Hs256(HS256Key::from_bytes(&m.hmac)),
        other => panic!("no signer for {other}"),
    }
}

fn provider(issuer: &str, keys: Vec<Jwk>, kubernetes: bool) -> JwtProvider {
    JwtProvider {
        name: "tools/idp".into(),
        issuer: issuer.into(),
        audiences: vec![AUD.into(), "other-name-of-this-gateway".into()],
        keys,
        header: "authorization".into(),
        prefix: "Bearer ".into(),
        clock_skew_seconds: 60,
        forward_token: false,
        kubernetes_trust_domain: kubernetes.then(|| "cluster.local".to_owned()),
        precedence: TokenPrecedence::Agree,
    }
}

fn verifier(providers: Vec<JwtProvider>) -> Verifier {
    Verifier::new(&JwtSettings { providers, ..JwtSettings::default() }).unwrap()
}

fn claims(iss: &str, sub: &str, aud: &str) -> JWTClaims<Map<String, Value>> {
    let mut c = Claims::with_custom_claims(Map::new(), Duration::from_secs(600)).with_issuer(iss).with_subject(sub).with_audience(aud);
    c.issued_at = Some(UnixTimeStamp::from_secs(NOW - 10));
    c.expires_at = Some(UnixTimeStamp::from_secs(NOW + 600));
    c.invalid_before = Some(UnixTimeStamp::from_secs(NOW - 10));
    c
}

fn one_alg(m: &KeyMaterial, alg: &str) -> (Signer, Verifier) {
    let s = signer(m, alg);
    let v = verifier(vec![provider(ISS, vec![s.jwk(alg, None)], false)]);
    (s, v)
}

#[test]
fn every_algorithm_verifies_and_names_the_oidc_subject() {
    let m = material(0);
    for alg in ALGS {
        let (s, v) = one_alg(&m, alg);
        let id = v.verify(&s.sign(claims(ISS, "agent-7", AUD)), NOW).unwrap_or_else(|e| panic!("{alg}: {e:?}"));
        assert_eq!(id.principal, "oidc://issuer.example#agent-7", "{alg}");
        assert_eq!(id.principal, oidc_principal(ISS, "agent-7"));
        assert_eq!(id.claims["sub"], "agent-7");
        assert_eq!(id.expires_at, NOW + 600);
    }
}

#[test]
fn a_token_signed_by_another_key_is_refused() {
    let (m, other) = (material(0), material(1));
    for alg in ALGS {
        let (_, v) = one_alg(&m, alg);
        let forged = signer(&other, alg).sign(claims(ISS, "agent-7", AUD));
        assert!(v.verify(&forged, NOW).is_err(), "{alg}");
    }
}

#[test]
fn audience_issuer_and_time_are_enforced() {
    let m = material(0);
    let (s, v) = one_alg(&m, "ES256");
    // A token minted for another service is not ours to accept (no token passthrough).
    let e = v.verify(&s.sign(claims(ISS, "a", "some-other-api")), NOW).unwrap_err();
    assert!(e.0.contains("audience"), "{e:?}");
    let mut no_aud = claims(ISS, "a", AUD);
    no_aud.audiences = None;
    assert!(v.verify(&s.sign(no_aud), NOW).is_err());
    // Unknown issuer: no provider, no keys.
    assert!(v.verify(&s.sign(claims("https://evil.example", "a", AUD)), NOW).is_err());
    // Expired, beyond and within the 60 s skew.
    let mut c = claims(ISS, "a", AUD);
    c.expires_at = Some(UnixTimeStamp::from_secs(NOW - 61));
    assert!(v.verify(&s.sign(c), NOW).unwrap_err().0.contains("expired"));
    let mut c = claims(ISS, "a", AUD);
    c.expires_at = Some(UnixTimeStamp::from_secs(NOW - 30));
    assert!(v.verify(&s.sign(c), NOW).is_ok());
    // nbf and iat in the future.
    let mut c = claims(ISS, "a", AUD);
    c.invalid_before = Some(UnixTimeStamp::from_secs(NOW + 300));
    assert!(v.verify(&s.sign(c), NOW).unwrap_err().0.contains("nbf"));
    let mut c = claims(ISS, "a", AUD);
    c.issued_at = Some(UnixTimeStamp::from_secs(NOW + 300));
    assert!(v.verify(&s.sign(c), NOW).is_err());
    // A token without exp would be valid forever: refused.
    let mut c = claims(ISS, "a", AUD);
    c.expires_at = None;
    assert!(v.verify(&s.sign(c), NOW).unwrap_err().0.contains("exp"));
    // No sub: nobody to name.
    let mut c = claims(ISS, "a", AUD);
    c.subject = None;
    assert!(v.verify(&s.sign(c), NOW).is_err());
}

fn b64(s: &str) -> String {
    Base64UrlSafeNoPadding::encode_to_string(s).unwrap()
}

fn payload(iss: &str) -> String {
    b64(&json!({"iss": iss, "sub": "a", "aud": AUD, "exp": NOW + 600, "iat": NOW}).to_string())
}

#[test]
fn alg_none_and_algorithm_confusion_are_refused() {
    let m = material(0);
    let (s, v) = one_alg(&m, "RS256");
    for header in [r#"{"alg":"none","typ":"JWT"}"#, r#"{"alg":"None"}"#, r#"{"alg":"NONE"}"#] {
        let token = format!("{}.{}.", b64(header), payload(ISS));
        assert!(v.verify(&token, NOW).is_err(), "{header}");
    }
    // HS256 with the RSA public key as the HMAC secret: the classic confusion. The key is bound to RS256.
    let jwk = s.jwk("RS256", None);
    let public_as_secret = HS256Key::from_bytes(serde_json::to_string(&jwk).unwrap().as_bytes());
    let forged = public_as_secret.authenticate(claims(ISS, "a", AUD)).unwrap();
    assert!(v.verify(&forged, NOW).unwrap_err().0.contains("no key for alg"));
    let n_as_secret = HS256Key::from_bytes(jwk.n.as_deref().unwrap().as_bytes());
    assert!(v.verify(&n_as_secret.authenticate(claims(ISS, "a", AUD)).unwrap(), NOW).is_err());
    // The header may not re-label a token for another key of the same provider either.
    let es = signer(&m, "ES256");
    let both = verifier(vec![provider(ISS, vec![s.jwk("RS256", None), es.jwk("ES256", None)], false)]);
    let token = es.sign(claims(ISS, "a", AUD));
    let mut parts: Vec<&str> = token.split('.').collect();
    let relabelled = b64(r#"{"alg":"RS256","typ":"JWT"}"#);
    parts[0] = &relabelled;
    assert!(both.verify(&parts.join("."), NOW).is_err());
    assert!(both.verify(&token, NOW).is_ok());
}

#[test]
fn malformed_and_huge_tokens_are_refused() {
    let m = material(0);
    let (s, v) = one_alg(&m, "EdDSA");
    let good = s.sign(claims(ISS, "a", AUD));
    let parts: Vec<&str> = good.split('.').collect();
    let cases = [
        String::new(),
        "a.b".into(),
        "a.b.c.d".into(),
        format!("{}.{}!!.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}=", parts[0], parts[1], parts[2]),
        format!("%%%.{}.{}", parts[1], parts[2]),
        format!("{}.{}.{}", parts[0], b64("not json"), parts[2]),
        format!("{}.{}.{}", parts[0], b64(r#"{"iss":["x"]}"#), parts[2]),
        format!("{}.{}.AAAA", parts[0], parts[1]),
        format!("{}.{}.{}", parts[0], parts[1], "A".repeat(20_000)),
        format!("{}.{}{}.{}", parts[0], parts[1], "A".repeat(100_000), parts[2]),
    ];
    for (i, t) in cases.iter().enumerate() {
        assert!(v.verify(t, NOW).is_err(), "case {i}");
    }
    // A huge but otherwise valid token (a fat claim) is refused by size before any crypto.
    let mut c = claims(ISS, "a", AUD);
    c.custom.insert("pad".into(), Value::String("x".repeat(20_000)));
    assert!(v.verify(&s.sign(c), NOW).unwrap_err().0.contains("longer"));
}

#[test]
fn rotation_selects_the_key_by_kid() {
    let (a, b) = (material(0), material(1));
    let old = signer(&a, "ES256").with_kid("2025");
    let new = signer(&b, "ES256").with_kid("2026");
    let v = verifier(vec![provider(ISS, vec![old.jwk("ES256", Some("2025")), new.jwk("ES256", Some("2026"))], false)]);
    assert!(v.verify(&old.sign(claims(ISS, "a", AUD)), NOW).is_ok());
    assert!(v.verify(&new.sign(claims(ISS, "a", AUD)), NOW).is_ok());
    // The old key claiming the new kid does not verify; an unknown kid is refused outright.
    let liar = signer(&a, "ES256").with_kid("2026");
    assert!(v.verify(&liar.sign(claims(ISS, "a", AUD)), NOW).is_err());
    let stranger = signer(&a, "ES256").with_kid("1999");
    assert!(v.verify(&stranger.sign(claims(ISS, "a", AUD)), NOW).unwrap_err().0.contains("kid"));
    // Without kid every key of the algorithm is tried.
    assert!(v.verify(&signer(&b, "ES256").sign(claims(ISS, "a", AUD)), NOW).is_ok());
}

fn sa_claims(sub: Option<&str>, k8s: Option<Value>) -> JWTClaims<Map<String, Value>> {
    let mut c = claims(K8S_ISS, "", AUD);
    c.subject = sub.map(str::to_owned);
    if let Some(k) = k8s {
        c.custom.insert("kubernetes.io".into(), k);
    }
    c
}

#[test]
fn service_account_tokens_name_the_spiffe_id_of_the_service_account() {
    let m = material(0);
    let s = signer(&m, "RS256");
    let v = verifier(vec![provider(K8S_ISS, vec![s.jwk("RS256", None)], true)]);
    let alice = "spiffe://cluster.local/ns/agents/sa/alice";
    let k8s = json!({"namespace": "agents", "serviceaccount": {"name": "alice", "uid": "u"}, "pod": {"name": "p"}});
    let both = sa_claims(Some("system:serviceaccount:agents:alice"), Some(k8s.clone()));
    assert_eq!(v.verify(&s.sign(both), NOW).unwrap().principal, alice);
    assert_eq!(v.verify(&s.sign(sa_claims(Some("system:serviceaccount:agents:alice"), None)), NOW).unwrap().principal, alice);
    assert_eq!(v.verify(&s.sign(sa_claims(None, Some(k8s))), NOW).unwrap().principal, alice);
    // The two names must agree; anything else is not a service-account token.
    let lie = sa_claims(Some("system:serviceaccount:agents:bob"), Some(json!({"namespace": "agents", "serviceaccount": {"name": "alice"}})));
    assert!(v.verify(&s.sign(lie), NOW).is_err());
    for sub in ["alice", "system:serviceaccount:agents", "system:serviceaccount:Agents:alice", "system:serviceaccount:a/b:c"] {
        assert!(v.verify(&s.sign(sa_claims(Some(sub), None)), NOW).is_err(), "{sub}");
    }
    assert!(v.verify(&s.sign(sa_claims(None, Some(json!({"namespace": "agents"})))), NOW).is_err());
}

#[test]
fn keys_that_cannot_be_used_safely_refuse_the_config() {
    let m = material(0);
    let rs = signer(&m, "RS256").jwk("RS256", None);
    let bad = |jwk: Jwk| Verifier::new(&JwtSettings { providers: vec![provider(ISS, vec![jwk], false)], ..JwtSettings::default() }).is_err();
    assert!(bad(Jwk { alg: None, ..rs.clone() }), "RSA without alg");
    assert!(bad(Jwk { alg: Some("HS256".into()), ..rs.clone() }), "RSA key labelled HS256");
    assert!(bad(Jwk { alg: Some("none".into()), ..rs.clone() }));
    assert!(bad(Jwk { n: Some("AQAB".into()), ..rs.clone() }), "tiny modulus");
    assert!(bad(Jwk { kty: "oct".into(), alg: Some("HS256".into()), k: Some("c2hvcnQ".into()), ..Jwk::default() }), "short HMAC secret");
    assert!(bad(Jwk { kty: "EC".into(), crv: Some("P-521".into()), ..Jwk::default() }));
    let mut p = provider(ISS, vec![rs], false);
    p.audiences.clear();
    assert!(Verifier::new(&JwtSettings { providers: vec![p], ..JwtSettings::default() }).is_err());
}

#[test]
fn token_prefix_and_header_are_configurable() {
    let m = material(0);
    let (_, v) = one_alg(&m, "ES256");
    assert_eq!(v.extract("authorization", "Bearer abc").unwrap(), "abc");
    assert_eq!(v.extract("authorization", "bearer abc").unwrap(), "abc");
    assert!(v.extract("authorization", "Basic abc").is_err());
    assert!(v.extract("x-token", "Bearer abc").is_err());
    assert!(v.extract("authorization", "Bé").is_err());
}

const PEER: &str = "spiffe://cluster.local/ns/agents/sa/alice";
const GATEWAY: &str = "spiffe://cluster.local/ns/istio-system/sa/ingress";

fn mtls(p: &str) -> Option<Identity> {
    Some(Identity { principal: p.into(), source: IdentitySource::MtlsPeer })
}

#[test]
fn token_and_peer_must_agree_unless_the_peer_forwards() {
    let fwd = vec![GATEWAY.to_owned()];
    // Same principal both ways: one caller, both sources recorded.
    let id = with_token(Some(PEER), mtls(PEER), Some(PEER), &fwd, TokenPrecedence::Agree).unwrap().unwrap();
    assert_eq!((id.principal.as_str(), id.source), (PEER, IdentitySource::JwtAndPeer));
    // Different: refused, never merged.
    assert_eq!(with_token(Some(PEER), mtls(PEER), Some("oidc://issuer.example#x"), &fwd, TokenPrecedence::Agree), Err(IdentityError::Conflict));
    // A configured forwarding peer (ingress gateway): the token names the caller.
    let id = with_token(Some(GATEWAY), mtls(GATEWAY), Some(PEER), &fwd, TokenPrecedence::Agree).unwrap().unwrap();
    assert_eq!((id.principal.as_str(), id.source), (PEER, IdentitySource::Jwt));
    // XFCC names a client; a token naming someone else conflicts even via the gateway.
    let xfcc = Some(Identity { principal: PEER.into(), source: IdentitySource::ForwardedClientCert });
    assert_eq!(with_token(Some(GATEWAY), xfcc, Some("oidc://issuer.example#x"), &fwd, TokenPrecedence::Agree), Err(IdentityError::Conflict));
    // Token only, or no token.
    assert_eq!(with_token(None, None, Some(PEER), &fwd, TokenPrecedence::Agree).unwrap().unwrap().source, IdentitySource::Jwt);
    assert_eq!(with_token(Some(PEER), mtls(PEER), None, &fwd, TokenPrecedence::Agree).unwrap().unwrap().source, IdentitySource::MtlsPeer);
}

#[test]
fn precedence_token_or_connection_decides_a_disagreement() {
    let user = "oidc://issuer.example#user-1";
    let none: Vec<String> = Vec::new();
    // Token: the token names the caller over a peer or an XFCC client.
    let id = with_token(Some(PEER), mtls(PEER), Some(user), &none, TokenPrecedence::Token).unwrap().unwrap();
    assert_eq!((id.principal.as_str(), id.source), (user, IdentitySource::Jwt));
    let xfcc = Some(Identity { principal: PEER.into(), source: IdentitySource::ForwardedClientCert });
    assert_eq!(with_token(Some(GATEWAY), xfcc.clone(), Some(user), &none, TokenPrecedence::Token).unwrap().unwrap().principal, user);
    // Connection: the peer (or XFCC client) stays the caller; the token only adds claims.
    let id = with_token(Some(PEER), mtls(PEER), Some(user), &none, TokenPrecedence::Connection).unwrap().unwrap();
    assert_eq!((id.principal.as_str(), id.source), (PEER, IdentitySource::MtlsPeer));
    let id = with_token(Some(GATEWAY), xfcc, Some(user), &none, TokenPrecedence::Connection).unwrap().unwrap();
    assert_eq!((id.principal.as_str(), id.source), (PEER, IdentitySource::ForwardedClientCert));
    // Either way: no connection identity, the token names the caller; agreement is one caller from both.
    for p in [TokenPrecedence::Token, TokenPrecedence::Connection] {
        assert_eq!(with_token(None, None, Some(user), &none, p).unwrap().unwrap().source, IdentitySource::Jwt);
        assert_eq!(with_token(Some(PEER), mtls(PEER), Some(PEER), &none, p).unwrap().unwrap().source, IdentitySource::JwtAndPeer);
    }
}

#[test]
fn precedence_is_omitted_from_configs_that_keep_the_default() {
    let m = material(0);
    let (s, _) = one_alg(m, "EdDSA");
    let mut p = provider(ISS, vec![s.jwk("EdDSA", None)], false);
    assert!(!serde_json::to_string(&p).unwrap().contains("precedence"), "default configs are unchanged");
    p.precedence = TokenPrecedence::Connection;
    let text = serde_json::to_string(&p).unwrap();
    assert!(text.contains(r#""precedence":"connection""#), "{text}");
    assert_eq!(serde_json::from_str::<JwtProvider>(&text).unwrap().precedence, TokenPrecedence::Connection);
    assert!(serde_json::from_str::<JwtProvider>(&text.replace("connection", "whoever")).is_err());
}

/// Regenerates `fixtures/jwt_keys.json` (the Wasm run's keys): `cargo test -p grantwall-core --test jwt -- --ignored write_fixtures`.
#[cfg(not(target_arch = "wasm32"))]
#[test]
#[ignore]
fn write_fixtures() {
    let sets: Vec<Value> = (0..2)
        .map(|i| {
            let m = material(i);
            json!({"rsa": m.rsa, "p256": m.p256, "p384": m.p384, "ed25519": m.ed25519,
                   "hmac": Base64UrlSafeNoPadding::encode_to_string(&m.hmac).unwrap()})
        })
        .collect();
    let doc = json!({"note": "test-only keys for core/tests/jwt.rs on wasm32; never use elsewhere", "sets": sets});
    std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt_keys.json"), serde_json::to_string_pretty(&doc).unwrap()).unwrap();
}

// --- The per-worker cache of verified tokens -------------------------------------------------------

/// A verifier with no providers refuses every token: a call that still succeeds came from the cache.
fn refuses_everything() -> Verifier {
    verifier(vec![])
}

#[test]
fn a_cached_token_is_not_verified_again_until_it_expires() {
    let m = material(0);
    let (s, v) = one_alg(m, "EdDSA");
    let token = s.sign(claims(ISS, "agent-7", AUD));
    let mut cache = TokenCache::new(8);
    let first = cache.verify(&v, &token, NOW).unwrap();
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.verify(&refuses_everything(), &token, NOW + 599).unwrap(), first, "a hit skips verification");
    // At `exp` the cache no longer answers: full verification decides (here: a verifier that refuses).
    assert!(cache.verify(&refuses_everything(), &token, NOW + 600).is_err());
    assert!(cache.is_empty(), "the expired entry is dropped");
    // Full verification still applies the provider's clock skew past `exp` (60 s by default).
    assert_eq!(cache.verify(&v, &token, NOW + 630).unwrap().principal, first.principal);
}

#[test]
fn a_token_that_differs_in_one_byte_is_not_a_hit() {
    let m = material(0);
    let (s, v) = one_alg(m, "EdDSA");
    let token = s.sign(claims(ISS, "agent-7", AUD));
    let mut cache = TokenCache::new(8);
    cache.verify(&v, &token, NOW).unwrap();
    let mut forged = token.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert!(cache.verify(&v, &forged, NOW).is_err(), "a changed signature is verified, and refused");
    assert!(cache.verify(&refuses_everything(), &forged, NOW).is_err());
}

#[test]
fn refused_tokens_are_never_cached() {
    let m = material(0);
    let (s, v) = one_alg(m, "EdDSA");
    let wrong_audience = s.sign(claims(ISS, "agent-7", "another-service"));
    let mut cache = TokenCache::new(8);
    for _ in 0..3 {
        assert!(cache.verify(&v, &wrong_audience, NOW).is_err());
    }
    assert!(cache.is_empty());
}

#[test]
fn the_cache_is_bounded_and_evicts_the_oldest_token() {
    let m = material(0);
    let (s, v) = one_alg(m, "EdDSA");
    let tokens: Vec<String> = (0..3).map(|i| s.sign(claims(ISS, &format!("agent-{i}"), AUD))).collect();
    let mut cache = TokenCache::new(2);
    for t in &tokens {
        cache.verify(&v, t, NOW).unwrap();
    }
    assert_eq!(cache.len(), 2);
    assert!(cache.verify(&refuses_everything(), &tokens[0], NOW).is_err(), "the oldest was evicted");
    for t in &tokens[1..] {
        assert!(cache.verify(&refuses_everything(), t, NOW).is_ok(), "the newer two are still cached");
    }
    // An expired entry makes room before any live one is evicted.
    let short = {
        let mut c = claims(ISS, "agent-short", AUD);
        c.expires_at = Some(UnixTimeStamp::from_secs(NOW + 5));
        s.sign(c)
    };
    let mut cache = TokenCache::new(2);
    cache.verify(&v, &short, NOW).unwrap();
    cache.verify(&v, &tokens[0], NOW).unwrap();
    cache.verify(&v, &tokens[1], NOW + 10).unwrap();
    assert!(cache.verify(&refuses_everything(), &tokens[0], NOW + 10).is_ok(), "the live entry stayed");
}

#[test]
fn a_zero_capacity_cache_verifies_every_time() {
    let m = material(0);
    let (s, v) = one_alg(m, "EdDSA");
    let token = s.sign(claims(ISS, "agent-7", AUD));
    let mut cache = TokenCache::new(0);
    cache.verify(&v, &token, NOW).unwrap();
    assert!(cache.is_empty());
    assert!(cache.verify(&refuses_everything(), &token, NOW).is_err());
}
