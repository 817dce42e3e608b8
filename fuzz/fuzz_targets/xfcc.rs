//! XFCC identity parsing (`identity::resolve`) with the header trusted.
//!
//! Oracles: a principal is always a well-formed SPIFFE ID taken verbatim from the header; trusting a named
//! peer reads the header exactly as trusting always does; never trusting ignores it.
#![no_main]

use grantwall_core::config::{ForwardedClientCert, XfccTrust};
use grantwall_core::identity::{is_spiffe_id, resolve, IdentitySource};
use libfuzzer_sys::fuzz_target;

const PEER: &str = "spiffe://cluster.local/ns/istio-system/sa/ingress";

fuzz_target!(|data: &[u8]| {
    // The filter refuses non-UTF-8 header values before identity is resolved.
    let Ok(header) = std::str::from_utf8(data) else { return };
    let always = ForwardedClientCert { trust: XfccTrust::Always, peers: Vec::new() };
    let got = resolve(None, Some(header), &always);
    if let Ok(Some(id)) = &got {
        assert!(is_spiffe_id(&id.principal), "not a SPIFFE ID: {:?}", id.principal);
        assert!(header.contains(id.principal.as_str()), "principal not in the header");
        assert_eq!(id.source, IdentitySource::ForwardedClientCert);
    }
    let from_peers = ForwardedClientCert { trust: XfccTrust::FromPeers, peers: vec![PEER.to_owned()] };
    assert_eq!(resolve(Some(PEER), Some(header), &from_peers), got);
    let never = ForwardedClientCert::default();
    let own = resolve(Some(PEER), Some(header), &never).expect("an ignored header cannot fail");
    assert_eq!(own.map(|i| (i.principal, i.source)), Some((PEER.to_owned(), IdentitySource::MtlsPeer)));
});
