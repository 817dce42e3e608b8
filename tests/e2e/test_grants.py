"""Tool grants enforced by the real Wasm filter in real Envoy, against the real MCP SDK server and clients.

Two agents (alice, bob) with different grants on one XBackend (tests/e2e/policies/grants.yaml). Every
denial is checked three ways: what the client got (KAN's shape, session intact), what the upstream's
own request log saw (nothing), and what Envoy recorded (audit filter state, counters).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp.shared.exceptions import MCPError

from .clients import LEGACY, MODERN, RawSession, mcp_client, post_jsonrpc, text_of
from .pki import spiffe_sa

pytestmark = pytest.mark.anyio

POLICY = Path(__file__).with_name("policies") / "grants.yaml"
FORBIDDEN = "Access to this tool is forbidden."


@pytest.fixture(scope="module")
def envoy(start_envoy, compile_policy):
    return start_envoy(compile_policy(POLICY))


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_allowed_tool_runs_denied_tool_is_refused_and_the_session_goes_on(envoy, pki, client_cert, upstream_log, mode):
    before = envoy.cluster_stat("upstream_rq_total")
    async with mcp_client(envoy.url(), ca=pki.ca_cert, cert=client_cert("alice"), mode=mode) as mcp:
        assert mcp.protocol_version == (MODERN if mode == "auto" else LEGACY)
        assert text_of(await mcp.call_tool("get-sum", {"a": 2, "b": 3})) == "The sum of 2 and 3 is 5."
        with pytest.raises(MCPError) as denied:
            await mcp.call_tool("delete-everything", {})
        assert (denied.value.code, denied.value.message) == (403, FORBIDDEN)
        assert denied.value.data == {"reason": "default-deny"}
        # The same session keeps working after the denial.
        assert text_of(await mcp.call_tool("echo", {"message": "still here"})) == "still here"
    exchanges = mcp.exchanges  # every HTTP exchange the SDK made, the closing DELETE included
    # KAN's shape: a per-tool denial is HTTP 200, never a 4xx that would end the SDK session.
    assert all(ex.status in (200, 202) for ex in exchanges if ex.method == "POST")
    assert upstream_log.tools_executed() == ["get-sum", "echo"]
    assert "delete-everything" not in upstream_log.tool_calls_received()
    # Envoy agrees: the denied call never became an upstream request.
    sent_upstream = envoy.cluster_stat("upstream_rq_total") - before
    assert sent_upstream == len(upstream_log.requests())
    assert sent_upstream == len(exchanges) - 1


async def test_grants_are_per_caller(envoy, pki, client_cert, upstream_log):
    async with mcp_client(envoy.url(), ca=pki.ca_cert, cert=client_cert("bob")) as mcp:
        assert text_of(await mcp.call_tool("echo", {"message": "bob"})) == "bob"
        with pytest.raises(MCPError) as denied:
            await mcp.call_tool("get-sum", {"a": 1, "b": 1})
        assert denied.value.code == 403
    assert upstream_log.tools_executed() == ["echo"]


async def test_unknown_and_anonymous_callers_cannot_even_initialize(envoy, pki, client_cert, upstream_log):
    for cert in (None, client_cert("mallory")):
        with RawSession(envoy.url(), ca=pki.ca_cert, cert=cert) as s:
            resp = s.request("initialize", {"protocolVersion": LEGACY, "capabilities": {},
                                            "clientInfo": {"name": "x", "version": "0"}}, id="init-1")
            assert resp.status == 200
            assert resp.message() == {"jsonrpc": "2.0", "id": "init-1",
                                      "error": {"code": 403, "message": FORBIDDEN, "data": {"reason": "default-deny"}}}
    assert upstream_log.requests() == []


async def test_denial_echoes_the_id_with_its_type(envoy, pki, client_cert, upstream_log):
    with RawSession(envoy.url(), ca=pki.ca_cert, cert=client_cert("alice")) as s:
        s.initialize()
        for request_id in ("call-7", 7, 0, -12):
            msg = s.call_tool("delete-everything", id=request_id)
            assert msg["id"] == request_id and type(msg["id"]) is type(request_id)
            assert msg["error"]["code"] == 403
        ok = s.call_tool("get-sum", {"a": 1, "b": 2}, id="call-8")
        assert ok["id"] == "call-8" and "result" in ok
        s.delete()
    assert upstream_log.tools_executed() == ["get-sum"]


async def test_prompts_and_resources_by_uri(envoy, pki, client_cert, upstream_log):
    async with mcp_client(envoy.url(), ca=pki.ca_cert, cert=client_cert("alice"), mode="legacy") as mcp:
        prompts = await mcp.list_prompts()
        assert [p.name for p in prompts.prompts] == ["greeting"]
        assert "Ada" in (await mcp.get_prompt("greeting", {"name": "Ada"})).messages[0].content.text
        readme = await mcp.read_resource("mem://docs/readme")
        assert readme.contents
        with pytest.raises(MCPError) as denied:
            await mcp.read_resource("mem://secret/keys")
        assert denied.value.code == 403
    read = [r for r in upstream_log.rpc() if r.get("method") == "resources/read"]
    assert [r.get("uri") for r in read] == ["mem://docs/readme"]


async def test_every_decision_is_audited_and_counted(envoy, pki, client_cert, upstream_log):
    envoy.clear_access_log()
    with RawSession(envoy.url(), ca=pki.ca_cert, cert=client_cert("bob")) as s:
        s.initialize()
        s.call_tool("echo", {"message": "m"})
        s.call_tool("get-sum", {"a": 1, "b": 1})
    entries = envoy.wait_access_log(lambda e: e.get("grantwall") not in (None, "", "-"), count=4)
    audits = [json.loads(e["grantwall"]) for e in entries]
    by_target = {a.get("target"): a for a in audits if a.get("mcpMethod") == "tools/call"}
    allowed, denied = by_target["echo"], by_target["get-sum"]
    assert allowed["decision"] == "allow" and allowed["reason"] == "rule-matched"
    assert (allowed["policy"], allowed["rule"], allowed["level"]) == ("tools/agent-tools", "bob-echo", "backend")
    assert allowed["identity"] == spiffe_sa("bob") and allowed["identitySource"] == "mtls"
    assert allowed["backend"] == "tools/mcp-server"
    assert denied["decision"] == "deny" and denied["reason"] == "default-deny"
    assert denied["policy"] is None and denied["level"] == "backend"
    prom = envoy.prometheus()
    assert _counter(prom, "allow", "rule_matched") >= 3
    assert _counter(prom, "deny", "default_deny") >= 1


def _counter(prometheus_text: str, decision: str, reason: str) -> int:
    """Value of Grantwall's decision counter with these labels in Envoy's /stats/prometheus."""
    for line in prometheus_text.splitlines():
        if line.startswith("grantwall_requests{") and f'decision="{decision}"' in line \
                and f'reason="{reason}"' in line:
            return int(float(line.rsplit(" ", 1)[1]))
    raise AssertionError(f"no grantwall counter decision={decision} reason={reason} in:\n"
                         + "\n".join(l for l in prometheus_text.splitlines() if "grantwall" in l))


@pytest.mark.parametrize("revision", ["2025-03-26", "2025-06-18", "2025-11-25"])
def test_every_session_era_revision_is_judged_the_same(envoy, pki, client_cert, upstream_log, revision):
    """The Streamable HTTP revisions before 2026-07-28 (which test_harness drives with the SDK) carry the same
    JSON-RPC bodies: bob's granted call runs, his denied one is refused before the server, on every revision
    the real server negotiates."""
    with RawSession(envoy.url(), ca=pki.ca_cert, cert=client_cert("bob"), protocol_version=revision) as bob:
        bob.initialize()
        assert bob.protocol_version == revision, "the server speaks this revision"
        assert bob.call_tool("echo", {"message": revision})["result"]["content"][0]["text"] == revision
        denied = bob.call_tool("delete-everything", {}, id=f"rev-{revision}")
        assert denied["id"] == f"rev-{revision}"
        assert (denied["error"]["code"], denied["error"]["message"]) == (403, "Access to this tool is forbidden.")
        bob.delete()
    assert upstream_log.tools_executed() == ["echo"]


async def test_denial_styles(start_envoy, compile_policy, pki, client_cert, upstream_log, e2e_dir):
    for style in ("tool-error", "http"):
        config = json.loads(compile_policy(POLICY))
        config["settings"]["denial"] = style
        envoy = start_envoy(json.dumps(config))
        with RawSession(envoy.url(), ca=pki.ca_cert, cert=client_cert("alice")) as s:
            s.initialize()
            resp = s.request("tools/call", {"name": "delete-everything", "arguments": {}}, id=5)
            if style == "tool-error":
                assert resp.status == 200
                result = resp.message()["result"]
                assert result["isError"] is True and "delete-everything" in result["content"][0]["text"]
            else:
                assert resp.status == 403
                assert resp.message()["error"]["code"] == 403 and resp.message()["id"] == 5
    assert upstream_log.tools_executed() == []

