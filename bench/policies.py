"""Benchmark policies and requests: the same grants as a Grantwall config and as native Envoy RBAC.

A *grant* is one (caller, tool) pair a rule allows. A policy with N grants has N/10 callers, each with
one rule that allows `tools/call` on ten tools (`tool-00` .. `tool-09`). KAN caps an XAccessPolicy at 10
rules and a target at 5 policies, so 1,000 or 100,000 grants cannot be written as CRDs: the Grantwall
config is generated directly in the shape of core/src/config.rs (one policy, N/10 rules), and the native
RBAC filter gets one policy per rule, as KAN's translator emits them.

With `jwt=True` the caller presents a Kubernetes service-account token (RS256) instead of an XFCC
header: Grantwall verifies it with a GrantwallIdentityProvider-style provider (`kubernetesTrustDomain`,
so the token names the same SPIFFE principal), and the native chain runs Envoy's `jwt_authn` filter in
front of MCP + RBAC, with RBAC matching the token's `sub` from jwt_authn's metadata. Both cache verified
tokens (Grantwall always, per worker; jwt_authn with `jwt_cache_config`), as a deployment would.

The benchmark caller is the middle one in the rules' order: Envoy RBAC tries policies in name order, so
an allowed call costs it about half the policies and a denied call all of them; Grantwall looks the
caller up by index either way.
"""

from __future__ import annotations

import functools
import json
import time

TOOLS_PER_CALLER = 10
TOOLS = [f"tool-{j:02d}" for j in range(TOOLS_PER_CALLER)]
ALLOWED_TOOL = "tool-03"
DENIED_TOOL = "tool-99"          # granted to nobody: refused by default deny
TRUST_DOMAIN = "cluster.local"
CLUSTER = "bench_upstream"       # the cluster name in bench/envoy-*.yaml
MCP_PATH = "/mcp"
LIST_PATH = "/mcp/list"          # the upstream answers tools/list here with LIST_TOOLS tools (bench/upstream)
LIST_TOOLS = 100
MAX_BODY_BYTES = 1024 * 1024     # Grantwall's default maxBodyBytes; the native filter gets the same cap
MCP_METADATA = "envoy.filters.http.mcp"   # the native MCP filter's dynamic metadata namespace (Envoy 1.40)
JWT_ISSUER = "https://kubernetes.default.svc.cluster.local"
JWT_AUDIENCE = "mcp-gateway"
JWT_KID = "bench-1"
JWT_METADATA = "envoy.filters.http.jwt_authn"   # where jwt_authn puts the verified payload (payload_in_metadata)


def caller_count(grants: int) -> int:
    if grants % TOOLS_PER_CALLER:
        raise ValueError(f"grants must be a multiple of {TOOLS_PER_CALLER}")
    return grants // TOOLS_PER_CALLER


def principal(i: int) -> str:
    return f"spiffe://{TRUST_DOMAIN}/ns/agents/sa/agent-{i:06d}"


def caller_index(grants: int) -> int:
    return caller_count(grants) // 2


def caller(grants: int) -> str:
    return principal(caller_index(grants))


def xfcc(grants: int) -> str:
    """The x-forwarded-client-cert a trusted ingress would send for the caller (URI last, as Envoy writes it)."""
    return (f"By=spiffe://{TRUST_DOMAIN}/ns/gateway/sa/ingress;Hash={'ab' * 32};URI={caller(grants)}")


@functools.cache
def _signing_key():
    from cryptography.hazmat.primitives.asymmetric import rsa
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk() -> dict:
    """The public key of the benchmark's token issuer, as a JWK (RS256)."""
    import jwt as pyjwt
    key = json.loads(pyjwt.algorithms.RSAAlgorithm.to_jwk(_signing_key().public_key()))
    return {**key, "kid": JWT_KID, "alg": "RS256", "use": "sig"}


def sa_subject(i: int) -> str:
    return f"system:serviceaccount:agents:agent-{i:06d}"


def sa_token(i: int, *, lifetime: int = 24 * 3600) -> str:
    """A Kubernetes projected service-account token for caller `i` (about 1 KB), valid for a day."""
    import jwt as pyjwt
    now = int(time.time())
    claims = {"iss": JWT_ISSUER, "sub": sa_subject(i), "aud": [JWT_AUDIENCE], "iat": now, "nbf": now,
              "exp": now + lifetime,
              "kubernetes.io": {"namespace": "agents", "serviceaccount": {
                  "name": f"agent-{i:06d}", "uid": f"00000000-0000-4000-8000-{i:012d}"}}}
    return pyjwt.encode(claims, _signing_key(), algorithm="RS256", headers={"kid": JWT_KID})


@functools.cache
def authorization(grants: int) -> str:
    """The caller's `Authorization` header value (the token is signed once per run)."""
    return f"Bearer {sa_token(caller_index(grants))}"


def caller_headers(grants: int, *, jwt: bool = False) -> dict[str, str]:
    """The header that names the benchmark caller: a trusted XFCC, or `Authorization: Bearer <SA token>`."""
    return {"authorization": authorization(grants)} if jwt else {"x-forwarded-client-cert": xfcc(grants)}


def rule_name(i: int) -> str:
    return f"rule-{i:06d}"


def grantwall_config(grants: int, *, audit_log: bool = False, jwt: bool = False) -> dict:
    """A compiled Grantwall config (core/src/config.rs) granting `grants` (caller, tool) pairs; with `jwt`,
    callers are named by a required service-account token instead of a trusted XFCC header."""
    callers = caller_count(grants)
    rules = [{
        "name": rule_name(i),
        "principals": [i],
        "mcp": {"methods": [{"method": "tools/call", "names": TOOLS}]},
    } for i in range(callers)]
    # KAN's translator lets anyone initialize and list tools; the same rule here keeps the two
    # configurations equivalent (base protocol only: no functional method).
    rules.append({"name": "allow-anyone-to-initialize-and-list-tools", "mcp": {"baseProtocol": True, "methods": []}})
    return {
        "version": "grantwall.io/v1alpha1",
        "settings": {
            "denial": "jsonrpc-error",
            "maxBodyBytes": MAX_BODY_BYTES,
            "identity": {"jwt": {
                "providers": [{"name": "bench/kubernetes", "issuer": JWT_ISSUER, "audiences": [JWT_AUDIENCE],
                               "keys": [{k: v for k, v in jwk().items() if k in ("kty", "kid", "alg", "n", "e")}],
                               "kubernetesTrustDomain": TRUST_DOMAIN}],
                "required": [{}],
            }} if jwt else {"forwardedClientCert": {"trust": "always"}},
            # Off by default here: neither other configuration writes a line per request.
            "auditLog": audit_log,
        },
        "principals": [principal(i) for i in range(callers)],   # already sorted (zero-padded)
        "gateway": {"name": "", "policies": []},
        "backends": [{
            "name": "bench/mcp-server",
            "paths": [MCP_PATH],
            "policies": [{"name": "bench/grants", "rules": rules}],
        }],
        "routes": {"clusters": {CLUSTER: 0}},
    }


def _mcp_field(path: list[str], value: dict) -> dict:
    return {"sourced_metadata": {"metadata_matcher": {
        "filter": MCP_METADATA, "path": [{"key": k} for k in path], "value": value}}}


def _exact(s: str) -> dict:
    return {"string_match": {"exact": s}}


def native_jwt_authn() -> dict:
    """Envoy's jwt_authn filter config for the same issuer: token required, stripped before the upstream,
    payload in metadata for RBAC, verified tokens cached."""
    return {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {"kubernetes": {
            "issuer": JWT_ISSUER,
            "audiences": [JWT_AUDIENCE],
            "local_jwks": {"inline_string": json.dumps({"keys": [jwk()]})},
            "forward": False,
            "payload_in_metadata": "payload",
            "clock_skew_seconds": 60,
            "jwt_cache_config": {"jwt_cache_size": 1024},
        }},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "kubernetes"}}],
    }


def _caller_principal(i: int, jwt: bool) -> dict:
    if jwt:
        return {"sourced_metadata": {"metadata_matcher": {
            "filter": JWT_METADATA, "path": [{"key": "payload"}, {"key": "sub"}], "value": _exact(sa_subject(i))}}}
    return {"header": {"name": "x-forwarded-client-cert", "string_match": {"suffix": f";URI={principal(i)}"}}}


def native_rbac(grants: int, *, jwt: bool = False) -> dict:
    """The RBAC filter's `rules` for the same grants, built the way KAN's translator builds them; with
    `jwt`, a caller is matched by its token's subject (jwt_authn's metadata)."""
    tools_call = _mcp_field(["method"], _exact("tools/call"))
    tool_names = _mcp_field(["params", "name"], {"or_match": {"value_matchers": [_exact(t) for t in TOOLS]}})
    policies: dict[str, dict] = {}
    for i in range(caller_count(grants)):
        policies[rule_name(i)] = {
            "principals": [_caller_principal(i, jwt)],
            "permissions": [{"and_rules": {"rules": [tools_call, tool_names]}}],
        }
    # KAN adds these three to every policy's RBAC config (names from its translator).
    anyone = [{"any": True}]
    policies["allow-anyone-to-initialize-and-list-tools"] = {
        "principals": anyone,
        "permissions": [_mcp_field(["method"], {"or_match": {"value_matchers": [
            _exact("initialize"), _exact("notifications/initialized"), _exact("tools/list")]}})],
    }
    policies["allow-http-get"] = {
        "principals": anyone,
        "permissions": [{"header": {"name": ":method", "string_match": {"exact": "GET"}}}],
    }
    policies["allow-mcp-session-close"] = {
        "principals": [{"and_ids": {"ids": [
            {"header": {"name": ":method", "string_match": {"exact": "DELETE"}}},
            {"header": {"name": "mcp-session-id", "present_match": True}}]}}],
        "permissions": [{"any": True}],
    }
    return {"action": "ALLOW", "policies": policies}


def tools_list_body() -> bytes:
    return b'{"jsonrpc":"2.0","id":42,"method":"tools/list","params":{}}'


def listed_tools(response_text: str) -> list[str]:
    return [t["name"] for t in json.loads(response_text)["result"]["tools"]]


def tools_call_body(size: int, tool: str) -> bytes:
    """A `tools/call` request of exactly `size` bytes; `arguments.text` is the padding."""
    def render(pad: int) -> bytes:
        msg = {"jsonrpc": "2.0", "id": 42, "method": "tools/call",
               "params": {"name": tool, "arguments": {"text": "x" * pad}}}
        return json.dumps(msg, separators=(",", ":")).encode()

    pad = size - len(render(0))
    if pad < 0:
        raise ValueError(f"{size} bytes is too small for a tools/call body")
    body = render(pad)
    assert len(body) == size
    return body
