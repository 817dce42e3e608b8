//! Bearer-token cost per request, natively (`cargo bench -p grantwall-core --bench jwt`): full verification
//! for each algorithm Grantwall accepts (signature, issuer, audience, times, claims → principal), and the
//! per-worker cache hit that every later request with the same token pays instead (docs/identity.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use criterion::{criterion_group, criterion_main, Criterion};
use grantwall_core::jwt::{Jwk, JwtProvider, JwtSettings, TokenCache, Verifier};
use jwt_simple::prelude::*;
use serde_json::{Map, Value};
use std::hint::black_box;

const ISS: &str = "https://issuer.bench";
const AUD: &str = "mcp-gateway";
const NOW: u64 = 1_800_000_000;

fn jwk(public_jwk: &str, alg: &str) -> Jwk {
    let v: Value = serde_json::from_str(public_jwk).unwrap();
    let get = |m: &str| v.get(m).and_then(Value::as_str).map(str::to_owned);
    Jwk { kty: get("kty").unwrap(), kid: None, alg: Some(alg.into()), n: get("n"), e: get("e"), crv: get("crv"), x: get("x"), y: get("y"), k: get("k") }
}

fn claims() -> JWTClaims<Map<String, Value>> {
    // A Kubernetes service-account token's shape: about 900 bytes signed with RS256.
    let k8s: Value = serde_json::json!({"namespace": "agents", "serviceaccount": {"name": "agent-000005", "uid": "0b5e6c1e-8a56-4d3f-9d55-2f1f6f0b6c11"}});
    let mut custom = Map::new();
    custom.insert("kubernetes.io".into(), k8s);
    let mut c = Claims::with_custom_claims(custom, Duration::from_secs(3600))
        .with_issuer(ISS)
        .with_subject("system:serviceaccount:agents:agent-000005")
        .with_audience(AUD);
    c.issued_at = Some(UnixTimeStamp::from_secs(NOW - 10));
    c.expires_at = Some(UnixTimeStamp::from_secs(NOW + 3600));
    c.invalid_before = Some(UnixTimeStamp::from_secs(NOW - 10));
    c
}

fn verifier(key: Jwk) -> Verifier {
    let provider = JwtProvider {
        name: "bench/idp".into(),
        issuer: ISS.into(),
        audiences: vec![AUD.into()],
        keys: vec![key],
        header: "authorization".into(),
        prefix: "Bearer ".into(),
        clock_skew_seconds: 60,
        forward_token: false,
        kubernetes_trust_domain: Some("cluster.local".into()),
        precedence: Default::default(),
    };
    Verifier::new(&JwtSettings { providers: vec![provider], ..JwtSettings::default() }).unwrap()
}

/// (algorithm, token, verifier) for every algorithm.
fn cases() -> Vec<(&'static str, String, Verifier)> {
    let rsa = RS256KeyPair::generate(2048).unwrap();
    let rsa_jwk = rsa.public_key().to_jwk();
    // One RSA key serves every RSA algorithm (its private JWK without `alg`).
    let mut private: Value = serde_json::from_str(&rsa.to_jwk()).unwrap();
    private.as_object_mut().unwrap().remove("alg");
    let private = private.to_string();
    let rs384 = RS384KeyPair::from_jwk(&private).unwrap();
    let rs512 = RS512KeyPair::from_jwk(&private).unwrap();
    let ps256 = PS256KeyPair::from_jwk(&private).unwrap();
    let es256 = ES256KeyPair::generate();
    let es384 = ES384KeyPair::generate();
    let ed = Ed25519KeyPair::generate();
    let hs = HS256Key::generate();
    let hs_jwk = format!(r#"{{"kty":"oct","k":"{}"}}"#, <ct_codecs::Base64UrlSafeNoPadding as ct_codecs::Encoder>::encode_to_string(hs.to_bytes()).unwrap());
    vec![
        ("RS256 (2048-bit)", rsa.sign(claims()).unwrap(), verifier(jwk(&rsa_jwk, "RS256"))),
        ("RS384 (2048-bit)", rs384.sign(claims()).unwrap(), verifier(jwk(&rsa_jwk, "RS384"))),
        ("RS512 (2048-bit)", rs512.sign(claims()).unwrap(), verifier(jwk(&rsa_jwk, "RS512"))),
        ("PS256 (2048-bit)", ps256.sign(claims()).unwrap(), verifier(jwk(&rsa_jwk, "PS256"))),
        ("ES256", es256.sign(claims()).unwrap(), verifier(jwk(&es256.public_key().to_jwk(), "ES256"))),
        ("ES384", es384.sign(claims()).unwrap(), verifier(jwk(&es384.public_key().to_jwk(), "ES384"))),
        ("EdDSA", ed.sign(claims()).unwrap(), verifier(jwk(&ed.public_key().to_jwk(), "EdDSA"))),
        ("HS256", hs.authenticate(claims()).unwrap(), verifier(jwk(&hs_jwk, "HS256"))),
    ]
}

fn bench(c: &mut Criterion) {
    let cases = cases();
    let mut g = c.benchmark_group("jwt");
    for (alg, token, v) in &cases {
        assert!(v.verify(token, NOW).is_ok(), "{alg} token must verify");
        g.bench_function(format!("verify {alg}"), |b| b.iter(|| v.verify(black_box(token), NOW).unwrap().expires_at));
    }
    let (_, token, v) = &cases[0];
    let mut cache = TokenCache::new(1024);
    cache.verify(v, token, NOW).unwrap();
    g.bench_function(format!("cache hit ({} B RS256 token)", token.len()), |b| {
        b.iter(|| cache.verify(v, black_box(token), NOW).unwrap().expires_at)
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
