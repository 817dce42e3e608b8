"""The legacy HTTP+SSE transport (MCP 2024-11-05), end to end with the Python SDK's own `sse_client` and its
server's `sse_app`, through real Envoy and the filter.

In this transport the client opens `GET /sse`, the server names a messages endpoint
(`/messages/?session_id=…`), each request is a POST there answered `202 Accepted`, and every reply arrives on
the GET stream. The filter judges each POST's body like any other JSON-RPC request (docs/semantics.md §1:
JSON POSTs are inspected on any path). What a denial looks like to such a client is this transport's
limitation, not the filter's choice: the refusal is the POST's own response (KAN's shape, HTTP 200), and an
SDK client reads replies only from the stream, so the denied call ends by the client's timeout while the
session itself goes on (docs/semantics.md §5).
"""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.sse import sse_client

from .clients import ssl_context, text_of
from .upstream import start_mcp_server

pytestmark = pytest.mark.anyio

POLICY = (Path(__file__).with_name("policies") / "grants.yaml").read_text().replace("path: /mcp", "path: /sse")
DENIED_CALL_TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def sse_upstream(e2e_dir: Path):
    server = start_mcp_server(e2e_dir / "legacy-sse-upstream", mode="sse")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def envoy(start_envoy, compile_policy, sse_upstream):
    assert "path: /sse" in POLICY
    return start_envoy(compile_policy(POLICY), upstream=sse_upstream)


@pytest.fixture
def log(sse_upstream):
    sse_upstream.log.clear()
    return sse_upstream.log


def session(envoy, pki, cert):
    def factory(headers=None, timeout=None, auth=None):
        return httpx2.AsyncClient(verify=ssl_context(pki.ca_cert, cert), headers=headers, auth=auth,
                                  timeout=timeout or httpx2.Timeout(15, read=60), trust_env=False)
    return sse_client(envoy.url("/sse"), httpx_client_factory=factory)


async def test_granted_calls_work_over_the_legacy_transport(envoy, pki, client_cert, log):
    async with session(envoy, pki, client_cert("alice")) as (read, write):
        async with ClientSession(read, write, read_timeout_seconds=15) as mcp:
            await mcp.initialize()
            assert {t.name for t in (await mcp.list_tools()).tools} >= {"get-sum", "echo"}
            assert text_of(await mcp.call_tool("get-sum", {"a": 20, "b": 22})) == "The sum of 20 and 22 is 42."
    assert log.tools_executed() == ["get-sum"]
    posts = [r["path"] for r in log.requests("POST")]
    assert posts and all(p == "/messages/" for p in posts), posts


async def test_a_denied_call_never_reaches_the_server_and_the_session_goes_on(envoy, pki, client_cert, log):
    async with session(envoy, pki, client_cert("bob")) as (read, write):
        async with ClientSession(read, write, read_timeout_seconds=15) as mcp:
            await mcp.initialize()
            assert text_of(await mcp.call_tool("echo", {"message": "before"})) == "before"
            # The refusal is the POST's response; the SDK waits for a reply on the stream that never comes.
            with pytest.raises(Exception):
                with anyio.fail_after(DENIED_CALL_TIMEOUT_S + 5):
                    await mcp.call_tool("delete-everything", {"confirm": True},
                                        read_timeout_seconds=DENIED_CALL_TIMEOUT_S)
            assert text_of(await mcp.call_tool("echo", {"message": "after"})) == "after"
    assert log.tools_executed() == ["echo", "echo"]
    assert "delete-everything" not in log.tool_calls_received(), "the denied POST reached the server"
    assert log.tool_calls_received() == ["echo", "echo"]
