//! Bearer tokens: `Verifier::extract` and `Verifier::verify` (compact JWS parsing, header, payload and claim
//! decoding, key selection, signature) and the per-worker `TokenCache` in front of it.
//!
//! Oracles beyond "no panic": what verifies names the principal its claims say (and is not expired), and
//! the cache answers exactly what the verifier answers. Seeds (`corpus/jwt`) include tokens signed with the
//! keys below, so the fuzzer starts from inputs that reach the signature check.
#![no_main]

use grantwall_core::jwt::{oidc_principal, Jwk, JwtProvider, JwtSettings, TokenCache, Verifier};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const NOW: u64 = 1_800_000_000;
/// HS256 secret of the seed tokens (base64url of 32 bytes). Test material only.
const HMAC: &str = "Z3JhbnR3YWxsLWZ1enotaG1hYy1zZWNyZXQtMzItYnk";
/// RFC 8037 §A.2's Ed25519 public key (its private key signed the EdDSA seeds).
const ED25519_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
const ISSUER: &str = "https://issuer.fuzz";

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let key = |kty: &str, alg: &str| Jwk { kty: kty.into(), kid: None, alg: Some(alg.into()), n: None, e: None, crv: None, x: None, y: None, k: None };
        let hs = Jwk { k: Some(HMAC.into()), kid: Some("hs".into()), ..key("oct", "HS256") };
        let ed = Jwk { crv: Some("Ed25519".into()), x: Some(ED25519_X.into()), kid: Some("ed".into()), ..key("OKP", "EdDSA") };
        let provider = JwtProvider {
            name: "fuzz/idp".into(),
            issuer: ISSUER.into(),
            audiences: vec!["mcp-gateway".into()],
            keys: vec![hs, ed],
            header: "authorization".into(),
            prefix: "Bearer ".into(),
            clock_skew_seconds: 60,
            forward_token: false,
            kubernetes_trust_domain: None,
            precedence: Default::default(),
        };
        match Verifier::new(&JwtSettings { providers: vec![provider], ..JwtSettings::default() }) {
            Ok(v) => v,
            Err(e) => panic!("fuzz verifier does not load: {e:?}"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else { return };
    let v = verifier();
    let Ok(token) = v.extract("authorization", value) else { return };
    let direct = v.verify(token, NOW);
    if let Ok(id) = &direct {
        assert_eq!(id.principal, oidc_principal(ISSUER, &id.subject));
        assert!(NOW <= id.expires_at + 60, "an expired token verified");
    }
    let mut cache = TokenCache::new(4);
    let direct = direct.map(std::rc::Rc::new);
    assert_eq!(cache.verify(v, token, NOW), direct, "the cache disagrees with the verifier (first sight)");
    assert_eq!(cache.verify(v, token, NOW), direct, "the cache disagrees with the verifier (second sight)");
});
