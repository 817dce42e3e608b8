"""Ephemeral agent identities (GrantwallAgentIdentity, issue #5) in real Envoy (2 workers) with the real MCP client.

A sub-agent presents a short-lived OIDC token signed here; its parent is alice (mTLS / service account).
Checked: calls within its permissions pass; a tool its parent may call but it may not is refused; its list is
filtered to its permissions; its budget runs out mid-session (identity-exhausted, the configured JSON-RPC
denial, so the session survives) and the count holds across Envoy's two workers under concurrent requests;
its lifetime ends at min(exp, iat + ttl) (identity-expired, 401 invalid_token); the parent keeps working
throughout. Every refusal is checked against what the upstream received.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from mcp.shared.exceptions import MCPError

from .clients import mcp_client, post_jsonrpc, text_of
from .test_grants import _counter
from .test_identity import audits, bearer, jwks

pytestmark = pytest.mark.anyio

ISSUER = "https://issuer.test"
AUD = "mcp-gateway"
KEY = ec.generate_private_key(ec.SECP256R1())

POLICY = """
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
  targetRefs: [{group: agentic.networking.x-k8s.io, kind: XBackend, name: mcp-server}]
  action: Allow
  rules:
  - name: alice
    source: {type: ServiceAccount, serviceAccount: {name: alice, namespace: agents}}
    authorization:
      type: Inline
      mcp:
        mcpBaseProtocolMethodsOption: MATCH_BASE_PROTOCOL_METHODS
        methods: [{name: tools/call, params: [get-sum, echo]}]
"""


def provider() -> str:
    return f"""---
apiVersion: grantwall.io/v1alpha1
kind: GrantwallIdentityProvider
metadata: {{name: corp-idp, namespace: tools}}
spec:
  oidc: {{issuerUrl: "{ISSUER}", audiences: [{AUD}]}}
  jwks:
    inline: '{jwks(KEY, "ES256", "eph-1")}'
"""


def identity(name: str, ttl: str, max_requests: int | None) -> str:
    budget = f"\n  maxRequests: {max_requests}" if max_requests else ""
    return f"""---
apiVersion: grantwall.io/v1alpha1
kind: GrantwallAgentIdentity
metadata: {{name: {name}, namespace: tools}}
spec:
  parent: {{type: ServiceAccount, serviceAccount: {{name: alice, namespace: agents}}}}
  token: {{issuer: "{ISSUER}", subject: {name}}}
  ttl: {ttl}{budget}
  targetRefs: [{{group: agentic.networking.x-k8s.io, kind: XBackend, name: mcp-server}}]
  permissions:
  - name: echo-only
    authorization:
      type: Inline
      mcp:
        mcpBaseProtocolMethodsOption: MATCH_BASE_PROTOCOL_METHODS
        methods: [{{name: tools/call, params: [echo]}}]
"""


SUBS = {"sub-echo": ("10m", None), "sub-budget": ("10m", 8), "sub-race": ("10m", 25), "sub-short": ("2s", None)}


def token(sub: str, *, exp_in: int = 600, iat: bool = True) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": sub, "aud": AUD, "exp": now + exp_in}
    if iat:
        claims["iat"] = now
    return jwt.encode(claims, KEY, algorithm="ES256", headers={"kid": "eph-1"})


def ping(id_: int = 1) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": id_, "method": "ping"}).encode()


@pytest.fixture(scope="module")
def envoy(start_envoy, compile_policy):
    policy = POLICY + provider() + "".join(identity(n, t, m) for n, (t, m) in SUBS.items())
    return start_envoy(compile_policy(policy), concurrency=2)


async def parent_still_works(envoy, pki, client_cert) -> None:
    async with mcp_client(envoy.url(), ca=pki.ca_cert, cert=client_cert("alice")) as mcp:
        assert text_of(await mcp.call_tool("get-sum", {"a": 2, "b": 3})) == "The sum of 2 and 3 is 5."


async def test_a_sub_agent_gets_only_its_permissions(envoy, pki, client_cert, upstream_log):
    async with mcp_client(envoy.url(), ca=pki.ca_cert, headers=bearer(token("sub-echo"))) as mcp:
        assert text_of(await mcp.call_tool("echo", {"message": "from the sub-agent"})) == "from the sub-agent"
        # Its parent may call get-sum; it may not.
        with pytest.raises(MCPError) as denied:
            await mcp.call_tool("get-sum", {"a": 1, "b": 1})
        assert denied.value.code == 403
        with pytest.raises(MCPError):
            await mcp.call_tool("delete-everything", {})
        # Its list shows what it may call, not what the parent may.
        assert {t.name for t in (await mcp.list_tools()).tools} == {"echo"}
        assert text_of(await mcp.call_tool("echo", {"message": "still here"})) == "still here"
    assert upstream_log.tools_executed() == ["echo", "echo"]
    assert upstream_log.tool_calls_received() == ["echo", "echo"]
    denial = audits(envoy, lambda a: a.get("target") == "get-sum" and a["identity"] == "oidc://issuer.test#sub-echo")[0]
    assert (denial["decision"], denial["reason"], denial["level"]) == ("deny", "default-deny", "backend")
    allowed = audits(envoy, lambda a: a.get("target") == "echo" and a["identity"] == "oidc://issuer.test#sub-echo")[0]
    assert (allowed["policy"], allowed["rule"]) == ("tools/sub-echo", "echo-only")
    await parent_still_works(envoy, pki, client_cert)


async def test_the_budget_runs_out_mid_session_and_the_session_survives(envoy, pki, client_cert, upstream_log):
    calls, refused = 0, None
    async with mcp_client(envoy.url(), ca=pki.ca_cert, headers=bearer(token("sub-budget"))) as mcp:
        for i in range(20):
            try:
                await mcp.call_tool("echo", {"message": f"n{i}"})
                calls += 1
            except MCPError as e:
                refused = e
                break
        assert refused is not None, "the budget of 8 requests never ran out"
        # The configured denial (JSON-RPC error, HTTP 200), so the client's session is still usable.
        assert refused.code == 403
        with pytest.raises(MCPError):
            await mcp.call_tool("echo", {"message": "again"})
    # Exactly maxRequests requests of the sub-agent reached the upstream (handshake included), no more.
    forwarded = len(upstream_log.requests())
    assert forwarded == 8, upstream_log.requests()
    assert upstream_log.tools_executed() == ["echo"] * calls and calls >= 1
    assert audits(envoy, lambda a: a["identity"] == "oidc://issuer.test#sub-budget" and a["reason"] == "identity-exhausted")
    resp = post_jsonrpc(envoy.url(), ping(7), bearer(token("sub-budget")), ca=pki.ca_cert)
    assert resp.status == 200
    assert resp.message()["id"] == 7 and resp.message()["error"]["data"]["reason"] == "identity-exhausted"
    assert len(upstream_log.requests()) == 8
    await parent_still_works(envoy, pki, client_cert)
    assert _counter(envoy.prometheus(), "deny", "identity_exhausted") >= 2


def worker_connections(envoy) -> dict[str, int]:
    """Downstream connections per Envoy worker on the TLS listener (listener.<addr>.worker_N.downstream_cx_total)."""
    out: dict[str, int] = {}
    for name, value in envoy.stats(r"^listener\..*\.worker_\d+\.downstream_cx_total$").items():
        worker = name.split(".")[-2]
        out[worker] = out.get(worker, 0) + value
    return out


def test_the_count_holds_across_workers(envoy, pki, upstream_log):
    """40 concurrent requests over 40 connections to Envoy's 2 workers, budget 25: exactly 25 pass."""
    sub = token("sub-race")

    def one(i: int) -> int:
        return post_jsonrpc(envoy.url(), ping(i), bearer(sub), ca=pki.ca_cert).status

    before = worker_connections(envoy)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, range(40)))
    after = worker_connections(envoy)
    # Both workers took connections: a per-worker count would have let up to 2 x 25 through.
    assert len(after) == 2 and all(after[w] > before.get(w, 0) for w in after), (before, after)
    assert len(upstream_log.requests()) == 25
    refused = audits(envoy, lambda a: a["identity"] == "oidc://issuer.test#sub-race" and a["reason"] == "identity-exhausted",
                     count=15)
    assert len(refused) == 15


async def test_the_identity_expires_at_ttl_or_exp_whichever_first(envoy, pki, client_cert, upstream_log):
    short = token("sub-short")                 # ttl 2 s from iat, exp in 10 min
    near_exp = token("sub-echo", exp_in=1)     # ttl 10 min, exp in 1 s (inside the provider's 60 s skew)
    async with mcp_client(envoy.url(), ca=pki.ca_cert, headers=bearer(short)) as mcp:
        assert text_of(await mcp.call_tool("echo", {"message": "alive"})) == "alive"
        time.sleep(2.2)
        with pytest.raises(Exception):
            await mcp.call_tool("echo", {"message": "too late"})
    assert upstream_log.tools_executed() == ["echo"]
    for tok, who in [(short, "sub-short"), (near_exp, "sub-echo")]:
        resp = post_jsonrpc(envoy.url(), ping(), bearer(tok), ca=pki.ca_cert)
        assert resp.status == 401, resp.body
        challenge = resp.headers["www-authenticate"]
        assert challenge.startswith('Bearer realm="grantwall", error="invalid_token"'), challenge
        assert f"ephemeral identity tools/{who} expired" in challenge
        assert json.loads(resp.body)["error"]["data"]["reason"] == "identity-expired"
    # A token without iat has no provable age: refused at once.
    resp = post_jsonrpc(envoy.url(), ping(), bearer(token("sub-echo", iat=False)), ca=pki.ca_cert)
    assert resp.status == 401 and json.loads(resp.body)["error"]["data"]["reason"] == "identity-expired"
    assert audits(envoy, lambda a: a.get("identity") == "oidc://issuer.test#sub-short" and a["reason"] == "identity-expired")
    assert upstream_log.tools_executed() == ["echo"]
    await parent_still_works(envoy, pki, client_cert)
