//! Who is calling: the SPIFFE ID of the mTLS peer, the one a trusted proxy forwarded in
//! `x-forwarded-client-cert`, or a verified bearer token (`jwt`). [`with_token`] combines a token with the
//! peer identity: they must agree unless the peer is a configured forwarding proxy — never merged silently.
//! Everything downstream only sees the resolved principal string.

use crate::config::{ForwardedClientCert, XfccTrust};
use crate::jwt::TokenPrecedence;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// A SPIFFE ID, the form every policy source resolves to.
    pub principal: String,
    pub source: IdentitySource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentitySource {
    /// URI SAN of the verified client certificate on this connection.
    MtlsPeer,
    /// `x-forwarded-client-cert` set by a proxy we were configured to trust.
    ForwardedClientCert,
    /// A verified JWT (OIDC or Kubernetes service-account token).
    Jwt,
    /// A verified JWT naming the same principal as the mTLS peer or XFCC.
    JwtAndPeer,
}

impl IdentitySource {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentitySource::MtlsPeer => "mtls",
            IdentitySource::ForwardedClientCert => "xfcc",
            IdentitySource::Jwt => "jwt",
            IdentitySource::JwtAndPeer => "jwt+peer",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityError {
    /// A trusted XFCC header that cannot be read with certainty.
    MalformedForwardedClientCert(&'static str),
    /// The token names a different caller than the connection does.
    Conflict,
}

impl IdentityError {
    pub fn message(&self) -> &'static str {
        match self {
            IdentityError::MalformedForwardedClientCert(why) => why,
            IdentityError::Conflict => "the bearer token names a different caller than the mTLS peer or x-forwarded-client-cert",
        }
    }
}

/// Resolve the caller from the peer certificate's URI SAN and, when trusted, the XFCC header.
///
/// With a trusted XFCC header present, the caller is the client it names (possibly nobody, if that client
/// showed no certificate) — never the forwarding proxy itself.
pub fn resolve(
    peer_uri_san: Option<&str>,
    xfcc: Option<&str>,
    trust: &ForwardedClientCert,
) -> Result<Option<Identity>, IdentityError> {
    let peer = peer_uri_san.filter(|uri| is_spiffe_id(uri));
    let xfcc_trusted = match trust.trust {
        XfccTrust::Never => false,
        XfccTrust::Always => true,
        XfccTrust::FromPeers => peer.is_some_and(|p| trust.peers.iter().any(|t| t == p)),
    };
    if let (true, Some(header)) = (xfcc_trusted, xfcc) {
        return Ok(forwarded_uri(header)?
            .filter(|uri| is_spiffe_id(uri))
            .map(|uri| Identity { principal: uri, source: IdentitySource::ForwardedClientCert }));
    }
    Ok(peer.map(|p| Identity { principal: p.to_owned(), source: IdentitySource::MtlsPeer }))
}

/// Combine the connection's identity with a verified token's principal, as the token's provider says
/// (`precedence`, docs/identity.md):
/// - the same principal both ways is one caller (`jwt+peer`), whatever the precedence;
/// - `Agree` (default): a token from a configured forwarding peer (an ingress gateway calling for agents)
///   names the caller; any other disagreement is refused, never merged;
/// - `Token`: the token names the caller; `Connection`: the connection does (the token then only adds claims).
pub fn with_token(
    peer_uri_san: Option<&str>,
    connection: Option<Identity>,
    token_principal: Option<&str>,
    forwarding_peers: &[String],
    precedence: TokenPrecedence,
) -> Result<Option<Identity>, IdentityError> {
    let Some(token) = token_principal else { return Ok(connection) };
    let from_forwarder = peer_uri_san.is_some_and(|p| forwarding_peers.iter().any(|f| f == p));
    let by_token = || Ok(Some(Identity { principal: token.to_owned(), source: IdentitySource::Jwt }));
    match connection {
        None => by_token(),
        Some(c) if c.principal == token => Ok(Some(Identity { principal: c.principal, source: IdentitySource::JwtAndPeer })),
        Some(_) if precedence == TokenPrecedence::Token => by_token(),
        Some(c) if precedence == TokenPrecedence::Connection => Ok(Some(c)),
        Some(c) if c.source == IdentitySource::MtlsPeer && from_forwarder => by_token(),
        Some(_) => Err(IdentityError::Conflict),
    }
}

/// Whether [`resolve`] can use the peer certificate: not when a header it trusts unconditionally is present,
/// so the host glue can skip reading it. ([`with_token`] reads the peer only for an mTLS-peer identity,
/// which such a header replaces.)
pub fn peer_needed(trust: &ForwardedClientCert, has_xfcc: bool) -> bool {
    !(trust.trust == XfccTrust::Always && has_xfcc)
}

/// `spiffe://trust-domain/path`, as KAN's CRD pattern allows (lower-case trust domain, no query/fragment).
pub fn is_spiffe_id(uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix("spiffe://") else { return false };
    let (domain, path) = rest.split_once('/').unwrap_or((rest, ""));
    !domain.is_empty()
        && domain.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'))
        && path.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/'))
}

/// `oidc://<issuer host/path>#<sub>`: the principal a non-Kubernetes token maps to (see `jwt`).
pub fn is_oidc_principal(p: &str) -> bool {
    p.strip_prefix("oidc://").and_then(|r| r.split_once('#')).is_some_and(|(iss, sub)| !iss.is_empty() && !sub.is_empty())
}

/// The `URI` of the last element of an XFCC header: the client of the proxy that forwarded to us.
fn forwarded_uri(header: &str) -> Result<Option<String>, IdentityError> {
    let elements = split_unquoted(header, b',')?;
    let Some(last) = elements.last() else { return Ok(None) };
    let mut uri = None;
    for pair in split_unquoted(last, b';')? {
        let (key, value) = pair
            .split_once('=')
            .ok_or(IdentityError::MalformedForwardedClientCert("x-forwarded-client-cert: field without '='"))?;
        if key.trim().eq_ignore_ascii_case("URI") {
            if uri.is_some() {
                return Err(IdentityError::MalformedForwardedClientCert(
                    "x-forwarded-client-cert: more than one URI in the last element",
                ));
            }
            uri = Some(unquote(value.trim())?);
        }
    }
    Ok(uri.filter(|u| !u.is_empty()))
}

/// Split on `sep` outside double quotes (Envoy quotes values containing `,;=` and escapes `"` as `\"`).
///
/// Walks bytes, not chars: every byte this looks for is ASCII, and UTF-8 never uses ASCII bytes inside a
/// multi-byte character, so the result is the same at a fraction of the cost (this runs on every request).
fn split_unquoted(s: &str, sep: u8) -> Result<Vec<&str>, IdentityError> {
    let mut parts = Vec::new();
    let (mut start, mut in_quotes, mut escaped) = (0usize, false, false);
    for (i, b) in s.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if in_quotes => escaped = true,
            b'"' => in_quotes = !in_quotes,
            b if b == sep && !in_quotes => {
                parts.push(s.get(start..i).unwrap_or(""));
                start = i + 1;
            }
            _ => {}
        }
    }
    if in_quotes {
        return Err(IdentityError::MalformedForwardedClientCert("x-forwarded-client-cert: unterminated quote"));
    }
    parts.push(s.get(start..).unwrap_or(""));
    Ok(parts)
}

fn unquote(v: &str) -> Result<String, IdentityError> {
    let Some(inner) = v.strip_prefix('"') else { return Ok(v.to_owned()) };
    let inner = inner
        .strip_suffix('"')
        .ok_or(IdentityError::MalformedForwardedClientCert("x-forwarded-client-cert: unterminated quote"))?;
    Ok(inner.replace("\\\"", "\""))
}
