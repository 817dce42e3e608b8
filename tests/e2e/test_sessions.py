"""Session binding (MCP 2025-11-25): an Mcp-Session-Id belongs to the identity that initialized it.

Grantwall learns the id from the `initialize` response and stores the binding in Proxy-Wasm shared data,
so every Envoy worker agrees. Another identity presenting the id is refused (403, KAN's JSON-RPC shape)
and the upstream never sees the request; an id Grantwall never saw bound gets 404, which makes MCP clients
start a new session.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .clients import RawSession, mcp_client, text_of

pytestmark = pytest.mark.anyio

POLICY = Path(__file__).with_name("policies") / "lists.yaml"


@pytest.fixture(scope="module")
def envoy(start_envoy, compile_policy):
    return start_envoy(compile_policy(POLICY))


def test_another_identity_cannot_ride_a_session(envoy, pki, client_cert, upstream_log):
    with RawSession(envoy.url(), ca=pki.ca_cert, cert=client_cert("alice")) as alice:
        alice.initialize()
        assert alice.session_id
        upstream_log.clear()
        with RawSession(envoy.url(), ca=pki.ca_cert, cert=client_cert("bob")) as bob:
            bob.session_id, bob.initialize_result = alice.session_id, {}
            for _ in range(3):  # whichever worker answers
                resp = bob.request("tools/call", {"name": "echo", "arguments": {"message": "hijack"}}, id="b-1")
                assert resp.status == 200
                assert resp.message()["error"] == {"code": 403, "message": "Access to this tool is forbidden.",
                                                   "data": {"reason": "session-identity-mismatch"}}
            assert bob.get().status == 403          # nor its server-to-client stream
            assert bob.delete().status == 403       # nor end it
        assert upstream_log.requests() == []
        # The owner's session is untouched.
        assert alice.call_tool("echo", {"message": "mine"})["result"]["content"][0]["text"] == "mine"
        alice.delete()


def test_an_unknown_session_id_gets_404(envoy, pki, client_cert, upstream_log):
    with RawSession(envoy.url(), ca=pki.ca_cert, cert=client_cert("alice")) as s:
        s.session_id, s.initialize_result = "0123456789abcdef0123456789abcdef", {}
        resp = s.request("tools/list", id=5)
        assert resp.status == 404
        assert resp.message()["error"]["data"] == {"reason": "session-unknown"}
    assert upstream_log.requests() == []


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_sdk_sessions_work_for_their_owner(envoy, pki, client_cert, mode):
    async with mcp_client(envoy.url(), ca=pki.ca_cert, cert=client_cert("bob"), mode=mode) as mcp:
        assert text_of(await mcp.call_tool("echo", {"message": "hi"})) == "hi"
        assert [t.name for t in (await mcp.list_tools()).tools] == ["echo"]
