"""Bearer-token identity (issue #5) in real Envoy with the real MCP SDK client.

Tokens are signed here with PyJWT + cryptography; their public keys reach the filter only through a
GrantwallIdentityProvider compiled by `grantwall compile`. Checked: a Kubernetes service-account token
and the same account's mTLS certificate meet the same XAccessPolicy rule; invalid tokens get 401 with a
Bearer challenge and never reach the upstream; the token is stripped before the upstream; a token that
disagrees with the mTLS peer is refused; a required token that is missing gets the MCP challenge.
"""

from __future__ import annotations

import json
import subprocess
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from mcp.shared.exceptions import MCPError

from .clients import RawSession, mcp_client, modern_request, post_jsonrpc, text_of
from .envoy import CLUSTER
from .pki import spiffe_sa

pytestmark = pytest.mark.anyio

K8S_ISSUER = "https://kubernetes.default.svc.cluster.local"
OIDC_ISSUER = "https://issuer.test"
USERS_ISSUER = "https://users.test"            # identityPrecedence: Connection (an agent calls with its user's token)
DELEGATION_ISSUER = "https://delegation.test"  # identityPrecedence: Token (the token names the caller)
AUD = "mcp-gateway"
FORBIDDEN = "Access to this tool is forbidden."
METADATA = "https://gateway.test/.well-known/oauth-protected-resource"

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwks(key, alg: str, kid: str) -> str:
    jwk = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return json.dumps({"keys": [jwk]})


def sa_token(name: str, namespace: str = "agents", *, key=RSA_KEY, aud: str = AUD, exp_in: int = 600, **extra) -> str:
    now = int(time.time())
    claims = {"iss": K8S_ISSUER, "sub": f"system:serviceaccount:{namespace}:{name}", "aud": [aud],
              "iat": now, "nbf": now, "exp": now + exp_in,
              "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": "u-1"}}}
    claims.update(extra)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k8s-1"})


def oidc_token(sub: str, *, aud: str = AUD, **extra) -> str:
    now = int(time.time())
    return jwt.encode({"iss": OIDC_ISSUER, "sub": sub, "aud": aud, "iat": now, "exp": now + 600, **extra}, EC_KEY,
                      algorithm="ES256", headers={"kid": "oidc-1"})


def issuer_token(issuer: str, sub: str, **extra) -> str:
    now = int(time.time())
    return jwt.encode({"iss": issuer, "sub": sub, "aud": AUD, "iat": now, "exp": now + 600, **extra}, OTHER_RSA_KEY,
                      algorithm="RS256", headers={"kid": "other-1"})


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def audits(envoy, predicate, count: int = 1) -> list[dict]:
    """Grantwall audit records matching `predicate`, waiting for Envoy to flush them."""
    def parsed(entry: dict) -> dict | None:
        raw = entry.get("grantwall")
        return json.loads(raw) if isinstance(raw, str) and raw not in ("", "-") else None
    entries = envoy.wait_access_log(lambda e: (a := parsed(e)) is not None and predicate(a), count=count)
    return [parsed(e) for e in entries]


BACKEND_AND_POLICY = """
apiVersion: agentic.networking.x-k8s.io/v0alpha0
kind: XBackend
metadata: {name: mcp-server, namespace: tools}
spec:
  mcp: {serviceName: mcp-server, port: 8000, path: /mcp}
---
apiVersion: agentic.networking.x-k8s.io/v1alpha1
kind: XAccessPolicy
metadata: {name: agent-tools, namespace: tools}
spec:
  targetRefs:
  - {group: agentic.networking.x-k8s.io, kind: XBackend, name: mcp-server}
  action: Allow
  rules:
  - name: alice-sum-and-echo
    source: {type: ServiceAccount, serviceAccount: {name: alice, namespace: agents}}
    authorization:
      type: Inline
      mcp:
        mcpBaseProtocolMethodsOption: MATCH_BASE_PROTOCOL_METHODS
        methods: [{name: tools/call, params: [get-sum, echo]}]
  - name: admins-by-claim               # CEL on the verified token's claims
    authorization:
      type: CEL
      cel: {expression: "'mcp-admins' in jwt.claims.groups && request.mcp.tool_name == 'get-sum'"}
---
apiVersion: grantwall.io/v1alpha1
kind: GrantwallAccessPolicy             # KAN's rule shape plus source type OIDC
metadata: {name: idp-agents, namespace: tools}
spec:
  targetRefs:
  - {group: agentic.networking.x-k8s.io, kind: XBackend, name: mcp-server}
  action: Allow
  rules:
  - name: agent-7-echo
    source: {type: OIDC, oidc: {issuer: "https://issuer.test", subject: agent-7}}
    authorization:
      type: Inline
      mcp:
        mcpBaseProtocolMethodsOption: MATCH_BASE_PROTOCOL_METHODS
        methods: [{name: tools/call, params: [echo]}]
  - name: delegated-agent-9-echo
    source: {type: OIDC, oidc: {issuer: "https://delegation.test", subject: agent-9}}
    authorization:
      type: Inline
      mcp:
        mcpBaseProtocolMethodsOption: MATCH_BASE_PROTOCOL_METHODS
        methods: [{name: tools/call, params: [echo]}]
"""


def provider(name: str, issuer: str, jwks_text: str, *extra: str) -> str:
    """A GrantwallIdentityProvider document; `extra` are more `spec` lines."""
    lines = "".join(f"\n  {line}" for line in extra)
    return f"""
---
apiVersion: grantwall.io/v1alpha1
kind: GrantwallIdentityProvider
metadata: {{name: {name}, namespace: tools}}
spec:
  oidc: {{issuerUrl: "{issuer}", audiences: [{AUD}]}}
  jwks:
    inline: '{jwks_text}'{lines}
"""


def providers(require: bool) -> str:
    required = ("requireToken:\n    targetRefs: [{group: agentic.networking.x-k8s.io, kind: XBackend, name: mcp-server}]"
                f"\n    resourceMetadata: {METADATA}",) if require else ()
    return (provider("kubernetes", K8S_ISSUER, jwks(RSA_KEY, "RS256", "k8s-1"), "tokenType: ServiceAccount", *required)
            + provider("corp-idp", OIDC_ISSUER, jwks(EC_KEY, "ES256", "oidc-1"))
            + provider("end-users", USERS_ISSUER, jwks(OTHER_RSA_KEY, "RS256", "other-1"), "identityPrecedence: Connection")
            + provider("delegation", DELEGATION_ISSUER, jwks(OTHER_RSA_KEY, "RS256", "other-1"), "identityPrecedence: Token"))


@pytest.fixture(scope="module")
def envoy(start_envoy, compile_policy):
    return start_envoy(compile_policy(BACKEND_AND_POLICY + providers(require=False)))


async def test_service_account_token_and_mtls_meet_the_same_rule(envoy, pki, client_cert, upstream_log):
    # Over mTLS (no token) ...
    async with mcp_client(envoy.url(), ca=pki.ca_cert, cert=client_cert("alice")) as mcp:
        assert text_of(await mcp.call_tool("get-sum", {"a": 2, "b": 3})) == "The sum of 2 and 3 is 5."
    # ... and with alice's service-account token and no client certificate at all.
    async with mcp_client(envoy.url(), ca=pki.ca_cert, headers=bearer(sa_token("alice"))) as mcp:
        assert text_of(await mcp.call_tool("get-sum", {"a": 4, "b": 5})) == "The sum of 4 and 5 is 9."
        with pytest.raises(MCPError) as denied:
            await mcp.call_tool("delete-everything", {})
        assert (denied.value.code, denied.value.message) == (403, FORBIDDEN)
        # The session survives the denial.
        assert text_of(await mcp.call_tool("echo", {"message": "still"})) == "still"
    assert upstream_log.tools_executed() == ["get-sum", "get-sum", "echo"]
    # The token never reaches the upstream.
    assert all("authorization" not in r["headers"] for r in upstream_log.requests())
    found = audits(envoy, lambda a: a.get("target") == "get-sum", count=2)
    assert {(a["identity"], a["identitySource"]) for a in found} == {
        (spiffe_sa("alice"), "mtls"), (spiffe_sa("alice"), "jwt")}


async def test_token_and_matching_certificate_together(envoy, pki, client_cert, upstream_log):
    async with mcp_client(envoy.url(), ca=pki.ca_cert, cert=client_cert("alice"), headers=bearer(sa_token("alice"))) as mcp:
        assert text_of(await mcp.call_tool("echo", {"message": "both"})) == "both"
    assert audits(envoy, lambda a: a.get("identitySource") == "jwt+peer")


def _init_body() -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                       "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                                  "clientInfo": {"name": "t", "version": "0"}}}).encode()


@pytest.mark.parametrize("case", ["wrong-audience", "expired", "wrong-key", "alg-none", "unknown-issuer", "garbage"])
async def test_invalid_tokens_get_401_and_never_reach_the_upstream(envoy, pki, upstream_log, case):
    token = {
        "wrong-audience": lambda: sa_token("alice", aud="some-other-api"),
        "expired": lambda: sa_token("alice", exp_in=-3600),
        "wrong-key": lambda: sa_token("alice", key=OTHER_RSA_KEY),
        "alg-none": lambda: jwt.encode({"iss": K8S_ISSUER, "sub": "system:serviceaccount:agents:alice", "aud": AUD,
                                        "exp": int(time.time()) + 600}, None, algorithm="none"),
        "unknown-issuer": lambda: jwt.encode({"iss": "https://evil.test", "sub": "x", "aud": AUD,
                                              "exp": int(time.time()) + 600}, RSA_KEY, algorithm="RS256"),
        "garbage": lambda: "not.a.jwt!",
    }[case]()
    resp = post_jsonrpc(envoy.url(), _init_body(), bearer(token), ca=pki.ca_cert)
    assert resp.status == 401
    challenge = resp.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="grantwall", error="invalid_token"'), challenge
    assert json.loads(resp.body)["error"]["data"]["reason"] == "invalid-token"
    assert upstream_log.requests() == []


async def test_a_token_that_disagrees_with_the_certificate_is_refused(envoy, pki, client_cert, upstream_log):
    resp = post_jsonrpc(envoy.url(), _init_body(), bearer(sa_token("bob")), cert=client_cert("alice"), ca=pki.ca_cert)
    assert resp.status == 403
    assert json.loads(resp.body)["error"]["data"]["reason"] == "identity-conflict"
    assert upstream_log.requests() == []


async def test_connection_precedence_keeps_the_agent_and_reads_the_users_claims(envoy, pki, client_cert, upstream_log):
    # bob (mTLS) has no grant of his own; with his user's token (identityPrecedence: Connection) he is still bob,
    # and the source-less CEL rule reads the user's claims. One stateless 2026-07-28 call each: bob may not
    # even initialize a session.
    def call(tool: str, token: str, **args) -> dict:
        body, headers = modern_request("tools/call", {"name": tool, "arguments": args})
        resp = post_jsonrpc(envoy.url(), body, {**headers, **bearer(token)}, cert=client_cert("bob"), ca=pki.ca_cert)
        assert resp.status == 200, resp.body[:300]
        return resp.message()

    admin = issuer_token(USERS_ISSUER, "user-1", groups=["mcp-admins"])
    assert call("get-sum", admin, a=1, b=1)["result"]["content"][0]["text"] == "The sum of 1 and 1 is 2."
    assert call("echo", admin, message="not granted to bob")["error"]["code"] == 403
    found = audits(envoy, lambda a: a.get("target") == "get-sum" and a.get("rule") == "admins-by-claim")
    assert found[0]["identity"] == spiffe_sa("bob") and found[0]["identitySource"] == "mtls"
    # A user without the claim gets nothing more than bob has.
    assert call("get-sum", issuer_token(USERS_ISSUER, "user-2", groups=["readers"]), a=1, b=1)["error"]["code"] == 403
    assert upstream_log.tools_executed() == ["get-sum"]
    assert all("authorization" not in r["headers"] for r in upstream_log.requests()), "the user's token is stripped"


async def test_token_precedence_names_the_token_holder_over_the_certificate(envoy, pki, client_cert, upstream_log):
    # alice's certificate, agent-9's delegation token (identityPrecedence: Token): the caller is agent-9.
    delegated = bearer(issuer_token(DELEGATION_ISSUER, "agent-9"))
    async with mcp_client(envoy.url(), ca=pki.ca_cert, cert=client_cert("alice"), headers=delegated) as mcp:
        assert text_of(await mcp.call_tool("echo", {"message": "delegated"})) == "delegated"
        with pytest.raises(MCPError) as denied:
            await mcp.call_tool("get-sum", {"a": 1, "b": 1})     # alice's grant, not agent-9's
        assert denied.value.code == 403
    assert upstream_log.tools_executed() == ["echo"]
    found = audits(envoy, lambda a: a.get("target") == "echo" and a.get("rule") == "delegated-agent-9-echo")
    assert found[0]["identity"] == "oidc://delegation.test#agent-9" and found[0]["identitySource"] == "jwt"


async def test_oidc_subjects_are_granted_by_a_grantwall_access_policy(envoy, pki, upstream_log):
    async with mcp_client(envoy.url(), ca=pki.ca_cert, headers=bearer(oidc_token("agent-7"))) as mcp:
        assert text_of(await mcp.call_tool("echo", {"message": "from the idp"})) == "from the idp"
        with pytest.raises(MCPError) as denied:
            await mcp.call_tool("get-sum", {"a": 1, "b": 1})
        assert denied.value.code == 403
    assert upstream_log.tools_executed() == ["echo"]
    assert audits(envoy, lambda a: a.get("target") == "echo" and a["identity"] == "oidc://issuer.test#agent-7"
                  and a["rule"] == "agent-7-echo" and a["identitySource"] == "jwt")
    # Another subject of the same issuer is nobody the policies name.
    resp = post_jsonrpc(envoy.url(), _init_body(), bearer(oidc_token("agent-8")), ca=pki.ca_cert)
    assert resp.status == 200 and resp.message()["error"]["code"] == 403
    assert audits(envoy, lambda a: a["identity"] == "oidc://issuer.test#agent-8" and a["reason"] == "default-deny")


async def test_cel_rules_read_the_token_claims(envoy, pki, upstream_log):
    async with mcp_client(envoy.url(), ca=pki.ca_cert, headers=bearer(oidc_token("agent-7", groups=["mcp-admins"]))) as mcp:
        assert text_of(await mcp.call_tool("get-sum", {"a": 1, "b": 2})) == "The sum of 1 and 2 is 3."
    assert upstream_log.tools_executed() == ["get-sum"]
    assert audits(envoy, lambda a: a.get("target") == "get-sum" and a["rule"] == "admins-by-claim")


@pytest.mark.parametrize("tool, claims, groups", [
    ("echo", None, None),                                   # agent-7's own grant (GrantwallAccessPolicy)
    ("get-sum", None, None),                                # not granted: default deny
    ("get-sum", {"groups": ["mcp-admins"]}, ["mcp-admins"]),  # the source-less CEL rule on jwt.claims
])
def test_explain_gives_the_filters_record_for_token_callers(envoy, pki, compiler_path, tmp_path, tool, claims, groups):
    """`grantwall explain --as oidc://... [--claims]` predicts the filter's own audit record for a token caller."""
    extra = {"groups": groups} if groups else {}
    body, headers = modern_request("tools/call", {"name": tool, "arguments": {"a": 1, "b": 2} if tool == "get-sum"
                                                  else {"message": "m"}})
    envoy.clear_access_log()
    post_jsonrpc(envoy.url(), body, {**headers, **bearer(oidc_token("agent-7", **extra))}, ca=pki.ca_cert)
    seen = audits(envoy, lambda a: a.get("target") == tool)[0]
    policy = tmp_path / "policy.yaml"
    policy.write_text(BACKEND_AND_POLICY + providers(require=False))
    flags = ["--claims", json.dumps(claims)] if claims else []
    done = subprocess.run([str(compiler_path), "explain", "-f", str(policy), "--cluster", CLUSTER,
                           "--as", "oidc://issuer.test#agent-7", *flags, "--mcp", "tools/call", "--tool", tool,
                           "-H", f"Mcp-Protocol-Version: {headers['mcp-protocol-version']}",
                           "-H", f"Mcp-Method: tools/call", "-H", f"Mcp-Name: {tool}", "--json"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode in (0, 3), done.stderr
    assert json.loads(done.stdout) == seen


async def test_a_required_token_that_is_missing_gets_the_mcp_challenge(start_envoy, compile_policy, pki, client_cert, upstream_log):
    required = start_envoy(compile_policy(BACKEND_AND_POLICY + providers(require=True)))
    resp = post_jsonrpc(required.url(), _init_body(), {}, cert=client_cert("alice"), ca=pki.ca_cert)
    assert resp.status == 401
    assert resp.headers["www-authenticate"] == f'Bearer realm="grantwall", resource_metadata="{METADATA}"'
    assert json.loads(resp.body)["error"]["data"]["reason"] == "token-missing"
    assert upstream_log.requests() == []
    # With the token the real client works, certificate or not.
    async with mcp_client(required.url(), ca=pki.ca_cert, headers=bearer(sa_token("alice"))) as mcp:
        assert text_of(await mcp.call_tool("echo", {"message": "ok"})) == "ok"
    assert upstream_log.tools_executed() == ["echo"]
