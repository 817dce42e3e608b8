"""KAN's evaluation semantics, end to end: base-protocol SKIP/MATCH, no policy, Gateway AND backend, and
the upstream quickstart's policies behaving as the quickstart says.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .clients import LEGACY, RawSession, mcp_client, text_of
from .pki import spiffe_sa

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "policy-compiler/tests/fixtures/kan-examples/quickstart/e2e.yaml"
FORBIDDEN = {"code": 403, "message": "Access to this tool is forbidden.", "data": {"reason": "default-deny"}}

BACKEND = """
apiVersion: agentic.networking.x-k8s.io/v0alpha0
kind: XBackend
metadata: {name: mcp-server, namespace: tools}
spec:
  mcp: {serviceName: mcp-server, port: 8000}
"""


def policy(name: str, target: str, rules: str, namespace: str = "tools") -> str:
    kind, group = ("Gateway", "gateway.networking.k8s.io") if target == "gateway" else ("XBackend", "agentic.networking.x-k8s.io")
    ref = "gw" if target == "gateway" else "mcp-server"
    return f"""
---
apiVersion: agentic.networking.x-k8s.io/v1alpha1
kind: XAccessPolicy
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  targetRefs: [{{group: {group}, kind: {kind}, name: {ref}}}]
  action: Allow
  rules:
{rules}"""


def tools_rule(name: str, sa: str, tools: list[str], option: str) -> str:
    return f"""  - name: {name}
    source: {{type: ServiceAccount, serviceAccount: {{name: {sa}, namespace: agents}}}}
    authorization:
      type: Inline
      mcp:
        mcpBaseProtocolMethodsOption: {option}
        methods: [{{name: tools/call, params: {tools}}}]
"""


INIT = {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "kan-e2e", "version": "0"}}


def audits(envoy, predicate, count: int = 1) -> list[dict]:
    """Grantwall audit records (from the access log) matching `predicate`, waiting for `count`."""
    def audit(entry: dict) -> dict | None:
        raw = entry.get("grantwall")
        return json.loads(raw) if isinstance(raw, str) and raw not in ("", "-") else None

    entries = envoy.wait_access_log(lambda e: (a := audit(e)) is not None and predicate(a), count=count)
    return [audit(e) for e in entries]


def initialize(envoy, pki, cert, *, host: str | None = None, path: str = "/mcp") -> dict:
    """One raw initialize; returns the JSON-RPC response (result or error)."""
    with RawSession(envoy.url(path), ca=pki.ca_cert, cert=cert) as s:
        extra = {"host": host} if host else None
        return s.post({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": INIT}, headers=extra).message()


async def test_no_policy_allows_everything(start_envoy, compile_policy, pki, client_cert, upstream_log):
    envoy = start_envoy(compile_policy(BACKEND))
    async with mcp_client(envoy.url(), ca=pki.ca_cert, cert=None) as mcp:
        assert text_of(await mcp.call_tool("delete-everything", {})) != ""
    assert upstream_log.tools_executed() == ["delete-everything"]
    # Nothing to enforce, so nothing is buffered or parsed: the record says why it passed.
    assert {a["reason"] for a in audits(envoy, lambda a: a["httpMethod"] == "POST", count=3)} == {"no-policy"}


async def test_skip_base_protocol_denies_initialize(start_envoy, compile_policy, pki, client_cert, upstream_log):
    # KAN conformance XAccessPolicyBaseProtocolSkip: the tool is granted but the session cannot start.
    envoy = start_envoy(compile_policy(BACKEND + policy("skip", "backend",
                                                        tools_rule("alice", "alice", ["get-sum"], "SKIP_BASE_PROTOCOL_METHODS"))))
    assert initialize(envoy, pki, client_cert("alice"))["error"] == FORBIDDEN
    with RawSession(envoy.url(), ca=pki.ca_cert, cert=client_cert("alice")) as s:
        assert s.get().status == 403                      # the GET stream is base protocol too
        call = s.request("tools/call", {"name": "get-sum", "arguments": {"a": 1, "b": 1}}).message()
        # The granted tool passes the filter (the stateful server then wants the session that SKIP denied).
        assert call.get("error") != FORBIDDEN
    assert upstream_log.rpc_methods() == ["tools/call"]


async def test_match_base_protocol_allows_the_session(start_envoy, compile_policy, pki, client_cert, upstream_log):
    envoy = start_envoy(compile_policy(BACKEND + policy("match", "backend",
                                                        tools_rule("alice", "alice", ["get-sum"], "MATCH_BASE_PROTOCOL_METHODS"))))
    async with mcp_client(envoy.url(), ca=pki.ca_cert, cert=client_cert("alice"), mode="legacy") as mcp:
        await mcp.send_ping()
        assert {t.name for t in (await mcp.list_tools()).tools} >= {"get-sum"}
        assert text_of(await mcp.call_tool("get-sum", {"a": 20, "b": 22})) == "The sum of 20 and 22 is 42."
    methods = upstream_log.rpc_methods()
    assert methods[:2] == ["initialize", "notifications/initialized"] and "ping" in methods
    assert [r["method"] for r in upstream_log.requests()].count("DELETE") == 1
    assert initialize(envoy, pki, client_cert("bob"))["error"] == FORBIDDEN


async def test_gateway_and_backend_levels_are_anded(start_envoy, compile_policy, pki, client_cert, upstream_log):
    # KAN e2e: the gateway-level policy allows only echo, the backend-level one only get-sum.
    gateway = "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: tools}\n" \
              "spec: {gatewayClassName: x, listeners: [{name: l, port: 443, protocol: HTTPS}]}\n"
    source = BACKEND + gateway \
        + policy("gateway-level", "gateway", tools_rule("allow-echo", "alice", ["echo"], "MATCH_BASE_PROTOCOL_METHODS")) \
        + policy("backend-level", "backend", tools_rule("allow-get-sum", "alice", ["get-sum"], "MATCH_BASE_PROTOCOL_METHODS"))
    envoy = start_envoy(compile_policy(source))
    with RawSession(envoy.url(), ca=pki.ca_cert, cert=client_cert("alice")) as s:
        s.initialize()
        assert s.call_tool("echo", {"message": "x"})["error"] == FORBIDDEN
        assert s.call_tool("get-sum", {"a": 1, "b": 2})["error"] == FORBIDDEN
    assert upstream_log.tools_executed() == []
    denials = audits(envoy, lambda a: a.get("mcpMethod") == "tools/call", count=2)
    assert [(a["target"], a["level"]) for a in denials] == [("echo", "backend"), ("get-sum", "gateway")]
    # Off the backend's MCP path (e.g. a legacy HTTP+SSE messages endpoint) the backend's policy still
    # applies, and a JSON-RPC POST is still inspected: no side door around the backend's grants.
    with RawSession(envoy.url("/messages/?session_id=abc"), ca=pki.ca_cert, cert=client_cert("alice")) as s:
        assert s.call_tool("echo", {"message": "side door"})["error"] == FORBIDDEN
    side = audits(envoy, lambda a: a["path"].startswith("/messages"))[-1]
    assert (side["decision"], side["backend"], side["level"]) == ("deny", "tools/mcp-server", "backend")
    assert upstream_log.tools_executed() == []


async def test_quickstart_policies(start_envoy, compile_policy, pki, upstream_log):
    envoy = start_envoy(compile_policy(QUICKSTART))
    agent = pki.client(spiffe_sa("adk-agent-sa", "quickstart-ns"))
    local = "mcp-everything-svc.quickstart-ns:3001"
    # Through the quickstart's HTTPRoute path, which Envoy rewrites to /mcp.
    with RawSession(envoy.url("/local/mcp"), ca=pki.ca_cert, cert=agent) as s:
        s._http.headers["host"] = local
        s.initialize()
        assert "result" in s.call_tool("get-sum", {"a": 2, "b": 3})
        assert "result" in s.call_tool("get-tiny-image", {})
        assert s.call_tool("echo", {"message": "no"})["error"] == FORBIDDEN
    # The remote backend grants only read_wiki_structure: get-sum is refused there.
    with RawSession(envoy.url(), ca=pki.ca_cert, cert=agent) as s:
        s._http.headers["host"] = "mcp.deepwiki.com"
        s.initialize()
        assert s.call_tool("get-sum", {"a": 2, "b": 3})["error"] == FORBIDDEN
    # Another service account gets nothing.
    other = pki.client(spiffe_sa("other-sa", "quickstart-ns"))
    assert initialize(envoy, pki, other, host=local, path="/local/mcp")["error"] == FORBIDDEN
    assert upstream_log.tools_executed() == ["get-sum", "get-tiny-image"]
    calls = audits(envoy, lambda a: a.get("mcpMethod") == "tools/call", count=4)
    backends = {a["backend"] for a in calls}
    assert backends == {"quickstart-ns/local-mcp-backend", "quickstart-ns/remote-mcp-backend"}
