"""Per-caller list filtering by the real filter in real Envoy, against the real MCP SDK server (SSE answers;
test_lists_json.py runs the same tests against JSON answers).

alice and bob (tests/e2e/policies/lists.yaml) see only what they could use: `tools/list` shows the tools
their `tools/call` grants name, `prompts/list` the prompts, `resources/list` the resource URIs. Streams that
are not list responses are not held back: progress notifications arrive as the server sends them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from .clients import ACCEPT, LEGACY, RawSession, mcp_client, modern_request, post_jsonrpc, ssl_context

pytestmark = pytest.mark.anyio

POLICY = Path(__file__).with_name("policies") / "lists.yaml"
ALL_TOOLS = {"get-sum", "echo", "get-tiny-image", "delete-everything", "slow-count"}


@pytest.fixture(scope="module")
def envoy(start_envoy, compile_policy):
    return start_envoy(compile_policy(POLICY))


def expected_media(module_json: bool) -> str:
    return "application/json" if module_json else "text/event-stream"


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_two_callers_see_two_tool_lists(envoy, pki, client_cert, mode):
    seen = {}
    for who in ("alice", "bob"):
        async with mcp_client(envoy.url(), ca=pki.ca_cert, cert=client_cert(who), mode=mode) as mcp:
            seen[who] = {t.name for t in (await mcp.list_tools()).tools}
    assert seen == {"alice": {"get-sum", "echo", "slow-count"}, "bob": {"echo"}}


def test_raw_list_keeps_the_envelope_and_the_media_type(envoy, pki, client_cert, request):
    json_module = getattr(request.module, "MCP_SERVER_JSON_RESPONSE", False)
    with RawSession(envoy.url(), ca=pki.ca_cert, cert=client_cert("bob")) as s:
        s.initialize()
        resp = s.request("tools/list", id="list-1")
        assert resp.status == 200
        assert resp.headers["content-type"].startswith(expected_media(json_module))
        msg = resp.message()
        assert msg["id"] == "list-1" and msg["jsonrpc"] == "2.0"
        tools = msg["result"]["tools"]
        assert [t["name"] for t in tools] == ["echo"]
        # The item is forwarded as the server wrote it (schema, description intact).
        assert tools[0]["description"] == "Echoes the message back."
        assert tools[0]["inputSchema"]["properties"]["message"]["type"] == "string"
        s.delete()


def test_prompts_and_resources_are_filtered_too(envoy, pki, client_cert):
    got = {}
    for who in ("alice", "bob"):
        with RawSession(envoy.url(), ca=pki.ca_cert, cert=client_cert(who)) as s:
            s.initialize()
            prompts = s.request("prompts/list").message()["result"]["prompts"]
            resources = s.request("resources/list").message()["result"]["resources"]
            got[who] = ([p["name"] for p in prompts], sorted(r["uri"] for r in resources))
            s.delete()
    assert got["alice"] == (["greeting"], ["mem://docs/readme"])
    assert got["bob"] == ([], [])


def test_modern_list_is_marked_private_for_caches(envoy, pki, client_cert):
    body, headers = modern_request("tools/list", id=9)
    resp = post_jsonrpc(envoy.url(), body, headers, client_cert("bob"), ca=pki.ca_cert)
    msg = resp.message()
    assert [t["name"] for t in msg["result"]["tools"]] == ["echo"]
    assert msg["result"]["cacheScope"] == "private"
    assert "content-length" not in resp.headers or int(resp.headers["content-length"]) == len(resp.body)


def test_unfiltered_upstream_lists_everything(mcp_upstream):
    """The control: without Grantwall the same server lists every tool to anyone."""
    body, headers = modern_request("tools/list", id=1)
    merged = {"content-type": "application/json", "accept": ACCEPT, **headers}
    resp = httpx.post(mcp_upstream.url, content=body, headers=merged, timeout=10)
    from .clients import parse_jsonrpc_payload
    msgs = [m for m in parse_jsonrpc_payload(resp.headers["content-type"], resp.content) if "result" in m]
    assert {t["name"] for t in msgs[-1]["result"]["tools"]} == ALL_TOOLS


def test_a_slow_stream_is_not_held_back(envoy, pki, client_cert, request):
    """Progress notifications of a tools/call stream reach the client as the server sends them."""
    if getattr(request.module, "MCP_SERVER_JSON_RESPONSE", False):
        pytest.skip("JSON responses carry no notifications")
    delay, n = 0.4, 4
    with httpx.Client(verify=ssl_context(pki.ca_cert, client_cert("alice")), trust_env=False, timeout=20) as http:
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
        h = {"content-type": "application/json", "accept": ACCEPT}
        r = http.post(envoy.url(), content=json.dumps(init), headers=h)
        h["mcp-session-id"] = r.headers["mcp-session-id"]
        h["mcp-protocol-version"] = LEGACY
        http.post(envoy.url(), content=json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}), headers=h)
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "slow-count", "arguments": {"n": n, "delay": delay}, "_meta": {"progressToken": "p1"}}}
        arrivals = []
        start = time.monotonic()
        with http.stream("POST", envoy.url(), content=json.dumps(call), headers=h) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            for line in resp.iter_lines():
                if line.startswith("data:"):
                    arrivals.append((time.monotonic() - start, json.loads(line[5:])))
    progress = [t for t, m in arrivals if m.get("method") == "notifications/progress"]
    assert len(progress) == n
    # Each notification arrives about `delay` after the previous one, not all at the end.
    assert progress[0] < delay, arrivals
    gaps = [b - a for a, b in zip(progress, progress[1:])]
    assert all(g > delay * 0.5 for g in gaps), arrivals
    assert "result" in arrivals[-1][1]
