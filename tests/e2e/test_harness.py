"""The harness proves itself with Envoy in pass-through mode (examples/envoy.yaml minus Grantwall).

If these pass, a failing filter test is about the filter: TLS, identities, routing, both MCP
protocol eras, the upstream's request log and Envoy's stats and access log all work.
"""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import httpx
import pytest

from .clients import LEGACY, MODERN, RawSession, mcp_client, modern_request, post_jsonrpc, raw_request, text_of
from .envoy import CLUSTER, EnvoyStartError, example_configuration
from .pki import spiffe_sa
from .upstream import start_mcp_server

pytestmark = pytest.mark.anyio

ALL_TOOLS = {"get-sum", "echo", "get-tiny-image", "delete-everything", "slow-count"}
REPO = Path(__file__).resolve().parents[2]


async def test_modern_sdk_client_over_mtls(passthrough_envoy, pki, client_cert, upstream_log):
    before = passthrough_envoy.cluster_stat("upstream_rq_total")
    async with mcp_client(passthrough_envoy.url(), ca=pki.ca_cert, cert=client_cert("alice")) as mcp:
        assert mcp.protocol_version == MODERN
        assert {t.name for t in (await mcp.list_tools()).tools} == ALL_TOOLS
        result = await mcp.call_tool("get-sum", {"a": 2, "b": 40})
        assert not result.is_error
        assert text_of(result) == "The sum of 2 and 40 is 42."
        assert mcp.session_id is None                      # 2026-07-28 has no sessions

    assert upstream_log.rpc_methods() == ["server/discover", "tools/list", "tools/call"]
    call = upstream_log.requests()[-1]
    assert (call["mcp-method"], call["mcp-name"], call["mcp-protocol-version"]) == ("tools/call", "get-sum", MODERN)
    assert call["rpc"][0]["arguments"] == {"a": 2, "b": 40}
    assert upstream_log.tools_executed() == ["get-sum"]
    # Envoy's own view agrees: three requests went to the Istio-named cluster.
    assert passthrough_envoy.cluster_stat("upstream_rq_total") - before == 3
    logged = passthrough_envoy.wait_access_log(lambda e: e["mcp_method"] == "tools/call")
    assert logged and logged[-1]["upstream_cluster"] == CLUSTER and logged[-1]["response_code"] == 200
    assert logged[-1]["peer_uri_san"] == spiffe_sa("alice")


async def test_forced_modern_version_skips_discover(passthrough_envoy, pki, client_cert, upstream_log):
    async with mcp_client(passthrough_envoy.url(), ca=pki.ca_cert, cert=client_cert("alice"), mode=MODERN) as mcp:
        assert text_of(await mcp.call_tool("echo", {"message": "hi"})) == "hi"
    # Without a prior tools/list the SDK lists once to learn the schema, but never probes.
    assert "server/discover" not in upstream_log.rpc_methods()
    assert upstream_log.tools_executed() == ["echo"]


@pytest.mark.parametrize("http2", [False, True], ids=["h1", "h2"])
async def test_legacy_session_client_over_mtls(passthrough_envoy, pki, client_cert, upstream_log, http2):
    passthrough_envoy.clear_access_log()
    async with mcp_client(passthrough_envoy.url(), ca=pki.ca_cert, cert=client_cert("bob"), mode="legacy",
                          http2=http2) as mcp:
        assert mcp.protocol_version == LEGACY
        session = mcp.session_id
        assert session
        assert {t.name for t in (await mcp.list_tools()).tools} == ALL_TOOLS
        assert text_of(await mcp.call_tool("get-sum", {"a": 1, "b": 2})) == "The sum of 1 and 2 is 3."
        # The SDK opens the server-to-client SSE stream in the background.
        assert upstream_log.wait_for(lambda log: log.requests("GET"))
    assert upstream_log.wait_for(lambda log: log.requests("DELETE"))

    assert upstream_log.rpc_methods() == ["initialize", "notifications/initialized", "tools/list", "tools/call"]
    after_init = upstream_log.requests()[1:]
    assert after_init and all(r.get("mcp-session-id") == session for r in after_init)
    assert {r["method"] for r in after_init} == {"POST", "GET", "DELETE"}
    assert upstream_log.tools_executed() == ["get-sum"]
    logged = passthrough_envoy.wait_access_log(lambda e: e["method"] == "DELETE")
    assert logged and logged[0]["protocol"] == ("HTTP/2" if http2 else "HTTP/1.1")


def test_raw_2025_session_handshake(passthrough_envoy, pki, client_cert, upstream_log):
    with RawSession(passthrough_envoy.url(), ca=pki.ca_cert, cert=client_cert("carol")) as s:
        result = s.initialize()
        assert result["protocolVersion"] == LEGACY and s.session_id
        assert s.list_tools() and set(s.list_tools()) == ALL_TOOLS
        reply = s.call_tool("get-sum", {"a": 5, "b": 6}, id="str-id-7")
        assert reply["id"] == "str-id-7"                   # same id, same JSON type
        assert reply["result"]["content"][0]["text"] == "The sum of 5 and 6 is 11."
        stream = s.get()
        assert stream.status == 200 and stream.headers["content-type"].startswith("text/event-stream")
        assert s.delete().status in (200, 204)
        assert s.request("tools/list").status == 404      # the session is gone upstream
    sessions = {r.get("mcp-session-id") for r in upstream_log.requests()[1:]}
    assert sessions == {s.session_id}


async def test_no_client_certificate_is_no_identity(passthrough_envoy, pki, upstream_log):
    passthrough_envoy.clear_access_log()
    async with mcp_client(passthrough_envoy.url(), ca=pki.ca_cert, cert=None) as mcp:
        assert text_of(await mcp.call_tool("get-sum", {"a": 0, "b": 0})) == "The sum of 0 and 0 is 0."
    assert upstream_log.tools_executed() == ["get-sum"]
    logged = passthrough_envoy.wait_access_log(lambda e: e["mcp_method"] == "tools/call")
    assert logged[-1]["peer_uri_san"] in (None, "-", "")


def test_untrusted_client_certificate_fails_the_handshake(passthrough_envoy, pki, upstream_log):
    rogue = pki.client(spiffe_sa("mallory"), untrusted=True)
    with pytest.raises((httpx.TransportError, ssl.SSLError)):
        post_jsonrpc(passthrough_envoy.url(), b'{"jsonrpc":"2.0","id":1,"method":"ping"}', cert=rogue, ca=pki.ca_cert)
    assert upstream_log.requests() == []


def test_forged_xfcc_is_stripped_at_the_gateway(passthrough_envoy, pki, client_cert, upstream_log):
    forged = 'By=spiffe://cluster.local/ns/tools/sa/mcp;URI=spiffe://cluster.local/ns/agents/sa/admin'
    body, headers = modern_request("tools/call", {"name": "echo", "arguments": {"message": "x"}})
    resp = post_jsonrpc(passthrough_envoy.url(), body, {**headers, "x-forwarded-client-cert": forged},
                        cert=client_cert("alice"), ca=pki.ca_cert)
    assert resp.status == 200 and resp.message()["result"]["content"][0]["text"] == "x"
    [seen] = upstream_log.requests()
    assert "x-forwarded-client-cert" not in seen["headers"]


def test_prefix_rewrite_route_and_http2(passthrough_envoy, pki, client_cert, upstream_log):
    body, headers = modern_request("tools/list", id=9)
    resp = post_jsonrpc(passthrough_envoy.url("/local/mcp"), body, headers,
                        cert=client_cert("alice"), ca=pki.ca_cert, http2=True)
    assert resp.status == 200
    assert {t["name"] for t in resp.message()["result"]["tools"]} == ALL_TOOLS
    [seen] = upstream_log.requests()
    assert seen["path"] == "/mcp"                          # rewritten by the /local/mcp route
    # %REQ(:PATH)% is read at log time, after the router's rewrite; the client's path is kept
    # in x-envoy-original-path. (The Grantwall filter runs before the router: it sees /local/mcp.)
    [logged] = passthrough_envoy.wait_access_log(lambda e: e["original_path"] == "/local/mcp")
    assert logged["path"] == "/mcp" and logged["protocol"] == "HTTP/2"


def test_malformed_body_is_recorded_upstream(passthrough_envoy, pki, client_cert, upstream_log):
    resp = post_jsonrpc(passthrough_envoy.url(), b'\xef\xbb\xbf{"jsonrpc":"2.0","id":1,"method":"ping"',
                        cert=client_cert("alice"), ca=pki.ca_cert)
    assert resp.status >= 400 or "error" in resp.message()
    [seen] = upstream_log.requests()
    assert "body_error" in seen and seen["body_len"] == 42


def test_stats_are_readable(passthrough_envoy, pki, client_cert):
    raw_request("GET", passthrough_envoy.url("/healthz"), ca=pki.ca_cert, cert=client_cert("alice"))
    stats = passthrough_envoy.stats("upstream_rq_total")
    assert stats[f"cluster.{CLUSTER}.upstream_rq_total"] >= 1
    # Envoy's default tag extraction cuts an Istio-style cluster name at its first dot, so in
    # Prometheus form the name reads `envoy_cluster_tools_svc_cluster_local_upstream_rq_total
    # {envoy_cluster_name="outbound|8000||mcp-server"}`; the JSON form keeps the full name.
    prom = passthrough_envoy.prometheus()
    assert 'upstream_rq_total{envoy_cluster_name="outbound|8000||mcp-server"}' in prom
    assert passthrough_envoy.stat("http.grantwall_gateway.downstream_rq_total") >= 1


async def test_stateless_upstream_mode(start_envoy, e2e_dir, pki, client_cert):
    server = start_mcp_server(e2e_dir / "upstream-stateless", mode="stateless")
    try:
        envoy = start_envoy(None, upstream=server, replace=False)
        server.log.clear()
        async with mcp_client(envoy.url(), ca=pki.ca_cert, cert=client_cert("alice"), mode="legacy") as mcp:
            assert mcp.session_id is None                  # stateless: no Mcp-Session-Id
            assert text_of(await mcp.call_tool("get-sum", {"a": 3, "b": 4})) == "The sum of 3 and 4 is 7."
        async with mcp_client(envoy.url(), ca=pki.ca_cert, cert=client_cert("alice")) as mcp:
            assert mcp.protocol_version == MODERN
            assert text_of(await mcp.call_tool("echo", {"message": "m"})) == "m"
        assert server.log.tools_executed() == ["get-sum", "echo"]
        assert not any(r.get("mcp-session-id") for r in server.log.requests())
        envoy.stop()
    finally:
        server.stop()


async def test_wasm_filter_loads_with_an_empty_policy(start_envoy, pki, client_cert):
    """With Grantwall in the chain and no policy, traffic flows (KAN: no policy -> allow)."""
    envoy = start_envoy('{"version":"grantwall.io/v1alpha1"}', replace=False)
    try:
        async with mcp_client(envoy.url(), ca=pki.ca_cert, cert=client_cert("alice")) as mcp:
            assert text_of(await mcp.call_tool("get-sum", {"a": 1, "b": 1})) == "The sum of 1 and 1 is 2."
    finally:
        envoy.stop()


def test_refused_plugin_config_fails_envoy_start(start_envoy):
    """on_configure returning false must stop Envoy from serving (FAIL_CLOSED), and the harness says why."""
    with pytest.raises(EnvoyStartError, match="grantwall"):
        start_envoy('{"version":"grantwall.io/v0-unsupported"}', replace=False)


def test_example_configuration_is_compiled_from_its_policy(compile_policy):
    """examples/envoy.yaml must carry exactly what the compiler makes of its documented policy."""
    compiled = json.loads(compile_policy(REPO / "examples" / "policies"))
    assert json.loads(example_configuration()) == compiled
