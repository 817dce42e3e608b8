//! Caller identity from mTLS and, only when trusted, x-forwarded-client-cert.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use grantwall_core::config::{ForwardedClientCert, XfccTrust};
use grantwall_core::identity::{is_spiffe_id, peer_needed, resolve, IdentitySource};

const AGENT: &str = "spiffe://cluster.local/ns/agents/sa/alice";
const INGRESS: &str = "spiffe://cluster.local/ns/istio-system/sa/ingress";
const XFCC: &str = r#"By=spiffe://cluster.local/ns/istio-system/sa/ingress;Hash=abc;Subject="";URI=spiffe://cluster.local/ns/agents/sa/alice"#;

fn trust(trust: XfccTrust) -> ForwardedClientCert {
    ForwardedClientCert { trust, peers: vec![INGRESS.to_owned()] }
}

fn principal(peer: Option<&str>, xfcc: Option<&str>, t: XfccTrust) -> Option<(String, IdentitySource)> {
    resolve(peer, xfcc, &trust(t)).unwrap().map(|i| (i.principal, i.source))
}

#[test]
fn mtls_peer_is_the_caller() {
    assert_eq!(principal(Some(AGENT), None, XfccTrust::Never), Some((AGENT.into(), IdentitySource::MtlsPeer)));
    assert_eq!(principal(None, None, XfccTrust::Never), None);
    // Only SPIFFE URIs name callers.
    assert_eq!(principal(Some("https://example.com/me"), None, XfccTrust::Never), None);
}

#[test]
fn client_supplied_xfcc_is_ignored_by_default() {
    assert_eq!(principal(None, Some(XFCC), XfccTrust::Never), None);
    let mallory = "spiffe://cluster.local/ns/x/sa/mallory";
    assert_eq!(principal(Some(mallory), Some(XFCC), XfccTrust::Never), Some((mallory.into(), IdentitySource::MtlsPeer)));
}

#[test]
fn xfcc_from_a_trusted_peer_names_the_original_client() {
    assert_eq!(principal(Some(INGRESS), Some(XFCC), XfccTrust::FromPeers), Some((AGENT.into(), IdentitySource::ForwardedClientCert)));
    // An untrusted peer's header is ignored: the peer itself is the caller.
    let other = "spiffe://cluster.local/ns/x/sa/other";
    assert_eq!(principal(Some(other), Some(XFCC), XfccTrust::FromPeers), Some((other.into(), IdentitySource::MtlsPeer)));
    assert_eq!(principal(None, Some(XFCC), XfccTrust::FromPeers), None);
    // A trusted proxy forwarding a client without a certificate: anonymous, never the proxy's identity.
    assert_eq!(principal(Some(INGRESS), Some("By=spiffe://x/y;Hash=abc"), XfccTrust::FromPeers), None);
}

#[test]
fn xfcc_always_trust_uses_the_last_element() {
    let chain = format!("By=a;URI=spiffe://cluster.local/ns/first/sa/hop,{XFCC}");
    assert_eq!(principal(None, Some(&chain), XfccTrust::Always).unwrap().0, AGENT);
    let quoted = r#"Hash=1;URI="spiffe://cluster.local/ns/agents/sa/alice";Subject="CN=a,O=b;c""#;
    assert_eq!(principal(None, Some(quoted), XfccTrust::Always).unwrap().0, AGENT);
    // Escaped quotes and non-ASCII text inside quotes do not end the quoted part.
    let escaped = r#"By=x;Subject="CN=\"é,ü;\"",Subject="O=ß\",;";URI=spiffe://cluster.local/ns/agents/sa/alice"#;
    assert_eq!(principal(None, Some(escaped), XfccTrust::Always).unwrap().0, AGENT);
    let escaped_non_ascii = r#"Subject="\é,";URI=spiffe://cluster.local/ns/agents/sa/alice"#;
    assert_eq!(principal(None, Some(escaped_non_ascii), XfccTrust::Always).unwrap().0, AGENT);
}

#[test]
fn malformed_trusted_xfcc_is_an_error_not_a_guess() {
    let t = trust(XfccTrust::Always);
    assert!(resolve(None, Some(r#"URI="spiffe://a/b"#), &t).is_err());
    assert!(resolve(None, Some("URI=spiffe://a/b;URI=spiffe://a/c"), &t).is_err());
    assert!(resolve(None, Some("Hash"), &t).is_err());
}

#[test]
fn spiffe_id_shape() {
    assert!(is_spiffe_id(AGENT));
    assert!(is_spiffe_id("spiffe://example.com"));
    for bad in ["spiffe://", "spiffe://Upper.com/x", "spiffe://a/b?c", "http://a/b", "spiffe://a/b c"] {
        assert!(!is_spiffe_id(bad), "{bad}");
    }
}

#[test]
fn peer_certificate_is_needed_unless_an_always_trusted_xfcc_decides() {
    for t in [XfccTrust::Never, XfccTrust::FromPeers, XfccTrust::Always] {
        assert!(peer_needed(&trust(t), false), "{t:?} without XFCC");
    }
    assert!(peer_needed(&trust(XfccTrust::Never), true));
    assert!(peer_needed(&trust(XfccTrust::FromPeers), true));
    assert!(!peer_needed(&trust(XfccTrust::Always), true));
    // Skipping the peer changes nothing: with trust always, a present header decides alone.
    assert_eq!(principal(Some(INGRESS), Some(XFCC), XfccTrust::Always), principal(None, Some(XFCC), XfccTrust::Always));
}
