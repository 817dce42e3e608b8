"""Fail closed: anything the filter cannot read with certainty is refused with a clean JSON-RPC/HTTP error
and never reaches the upstream; a config the filter cannot load stops the plugin; identity headers a
client can forge are not believed.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from .clients import MODERN, RawSession, modern_request, post_jsonrpc, raw_request
from .envoy import EnvoyStartError
from .h2raw import post_with_trailers
from .pki import spiffe_sa

POLICY = Path(__file__).with_name("policies") / "grants.yaml"
MAX_BODY = 4096
CALL = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "m"}}}


@pytest.fixture(scope="module")
def envoy(start_envoy, compile_policy):
    config = json.loads(compile_policy(POLICY))
    config["settings"]["maxBodyBytes"] = MAX_BODY
    return start_envoy(json.dumps(config))


@pytest.fixture
def alice(client_cert):
    return client_cert("alice")


def utf16(text: str) -> bytes:
    return text.encode("utf-16-le")


BODY = json.dumps(CALL)
CASES = {
    # name: (body bytes, extra headers, HTTP status, JSON-RPC code, audit reason)
    "invalid-json": (b'{"jsonrpc":"2.0",', {}, 400, -32700, "malformed-json"),
    "trailing-data": (BODY.encode() + b"{}", {}, 400, -32700, "malformed-json"),
    "utf8-bom": (b"\xef\xbb\xbf" + BODY.encode(), {}, 400, -32700, "malformed-json"),
    "utf16": (utf16(BODY), {}, 400, -32700, "malformed-json"),
    "not-utf8": (BODY.replace("echo", "ech\u00ff").encode("latin-1"), {}, 400, -32700, "malformed-json"),
    "duplicate-name": (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"delete-everything"}}',
                       {}, 400, -32600, "duplicate-key"),
    "duplicate-deep": (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"m":1,"m":2}}}',
                       {}, 400, -32600, "duplicate-key"),
    "case-folded-key": (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","Name":"delete-everything"}}',
                        {}, 400, -32600, "ambiguous-key"),
    "nul-suffixed-key": (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name\\u0000":"x"}}',
                         {}, 400, -32600, "ambiguous-key"),
    "batch": (b"[" + BODY.encode() + b"]", {}, 400, -32600, "batch-refused"),
    "float-id": (BODY.replace('"id": 1', '"id": 1.5').encode(), {}, 400, -32600, "invalid-request"),
    "null-id": (BODY.replace('"id": 1', '"id": null').encode(), {}, 400, -32600, "invalid-request"),
    "name-not-string": (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["echo"]}}', {}, 400, -32602,
                        "invalid-params"),
    "text-plain": (BODY.encode(), {"content-type": "text/plain"}, 415, -32600, "unsupported-content-type"),
    "utf16-charset": (utf16(BODY), {"content-type": "application/json; charset=utf-16"}, 415, -32600,
                      "unsupported-content-type"),
    "gzip": (gzip.compress(BODY.encode()), {"content-encoding": "gzip"}, 415, -32600, "unsupported-content-encoding"),
    "too-large": (json.dumps({**CALL, "params": {"name": "echo", "arguments": {"message": "x" * MAX_BODY}}}).encode(),
                  {}, 413, -32600, "body-too-large"),
    "empty": (b"", {}, 400, -32700, "malformed-json"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_unreadable_bodies_are_refused_before_the_upstream(envoy, pki, alice, upstream_log, case):
    body, headers, status, code, reason = CASES[case]
    before = envoy.cluster_stat("upstream_rq_total")
    resp = post_jsonrpc(envoy.url(), body, headers, alice, ca=pki.ca_cert)
    assert resp.status == status, resp.body
    msg = json.loads(resp.body)
    assert msg["jsonrpc"] == "2.0" and msg["id"] is None
    assert msg["error"]["code"] == code and msg["error"]["data"] == {"reason": reason}
    assert resp.headers["content-type"] == "application/json"
    assert envoy.cluster_stat("upstream_rq_total") == before
    assert upstream_log.requests() == []


def test_chunked_body_over_the_limit_without_content_length(envoy, pki, alice, upstream_log):
    def chunks():
        yield b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"m":"'
        for _ in range(8):
            yield b"y" * 1024
        yield b'"}}}'

    resp = raw_request("POST", envoy.url(), ca=pki.ca_cert, cert=alice, body=chunks(),
                       headers={"content-type": "application/json", "accept": "application/json, text/event-stream"})
    assert resp.status == 413
    assert upstream_log.requests() == []


@pytest.mark.parametrize("http2", [False, True], ids=["h1", "h2"])
def test_a_valid_request_still_passes(envoy, pki, alice, upstream_log, http2):
    body, headers = modern_request("tools/call", {"name": "echo", "arguments": {"message": "fine"}})
    resp = post_jsonrpc(envoy.url(), body, headers, alice, ca=pki.ca_cert, http2=http2)
    assert resp.status == 200 and "result" in resp.message()
    assert upstream_log.tools_executed() == ["echo"]


@pytest.mark.parametrize("mutation,code", [
    ({"mcp-name": "delete-everything"}, -32020),   # the header names another tool than the body
    ({"mcp-method": "tools/list"}, -32020),
    ({"mcp-method": None}, -32020),                # required from 2026-07-28 on
    ({"mcp-name": None}, -32020),
])
def test_routing_headers_must_agree_with_the_body(envoy, pki, alice, upstream_log, mutation, code):
    body, headers = modern_request("tools/call", {"name": "echo", "arguments": {"message": "m"}}, id="h-1")
    for k, v in mutation.items():
        if v is None:
            headers.pop(k)
        else:
            headers[k] = v
    resp = post_jsonrpc(envoy.url(), body, headers, alice, ca=pki.ca_cert)
    assert resp.status == 400
    msg = resp.message()
    assert msg["id"] == "h-1" and msg["error"]["code"] == code
    assert upstream_log.requests() == []


@pytest.mark.parametrize("tool,allowed", [("echo", True), ("delete-everything", False)])
def test_requests_with_trailers_are_decided_on_the_whole_body(envoy, pki, alice, upstream_log, tool, allowed):
    body, headers = modern_request("tools/call", {"name": tool, "arguments": {"message": "with trailers"}}, id=9)
    headers.update({"content-type": "application/json", "accept": "application/json, text/event-stream"})
    status, reply = post_with_trailers("127.0.0.1", envoy.port, "/mcp", body, headers, {"x-checksum": "abc"},
                                       ca=pki.ca_cert, cert=alice)
    if allowed:
        assert status == 200, reply
        assert upstream_log.tools_executed() == ["echo"]
    else:
        assert status == 200 and json.loads(reply)["error"]["code"] == 403
        assert upstream_log.requests() == []


@pytest.mark.parametrize("name,values", [
    ("content-type", ["application/json", "text/plain"]),
    ("content-encoding", ["identity", "gzip"]),
    ("mcp-name", ["echo", "delete-everything"]),
    ("mcp-method", ["tools/call", "tools/list"]),
])
def test_a_repeated_header_the_filter_reads_is_refused(envoy, pki, alice, upstream_log, name, values):
    """Envoy's lookup sees the first value; a server may read the last. Neither is guessed at. (Envoy's
    HTTP/1 codec folds some repeats into one comma-joined value, which is then refused as unreadable.)"""
    body, headers = modern_request("tools/call", {"name": "echo", "arguments": {"message": "m"}})
    pairs = [(k, v) for k, v in {**headers, "content-type": "application/json",
                                  "accept": "application/json, text/event-stream"}.items() if k != name]
    pairs += [(name, v) for v in values]
    resp = raw_request("POST", envoy.url(), ca=pki.ca_cert, cert=alice, body=body, headers=pairs)
    assert resp.status in (400, 415), resp.body
    msg = json.loads(resp.body)
    assert msg["error"]["data"]["reason"] in ("invalid-request", "unsupported-content-type",
                                              "unsupported-content-encoding")
    assert upstream_log.requests() == []


# The tests below start their own Envoys, which replaces the module's `envoy`: keep them last.

def test_client_supplied_xfcc_is_not_an_identity(start_envoy, compile_policy, pki, client_cert, upstream_log):
    """With the header forwarded to the filter (FORWARD_ONLY), a forged XFCC still does not make bob alice."""
    def forward_xfcc(boot: dict) -> None:
        hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        hcm["forward_client_cert_details"] = "FORWARD_ONLY"

    forged = {"x-forwarded-client-cert": f"By=spiffe://cluster.local/ns/x/sa/y;URI={spiffe_sa('alice')}"}
    envoy = start_envoy(compile_policy(POLICY), patch=forward_xfcc)
    with RawSession(envoy.url(), ca=pki.ca_cert, cert=client_cert("bob")) as s:
        s.initialize()
        assert s.post({**CALL, "params": {"name": "get-sum", "arguments": {"a": 1, "b": 1}}},
                      headers=forged).message()["error"]["code"] == 403
    # Trusting the header only from a named proxy: bob is not that proxy, so nothing changes...
    config = json.loads(compile_policy(POLICY))
    config["settings"]["identity"] = {"forwardedClientCert": {"trust": "fromPeers", "peers": [spiffe_sa("ingress", "istio-system")]}}
    envoy = start_envoy(json.dumps(config), patch=forward_xfcc)
    with RawSession(envoy.url(), ca=pki.ca_cert, cert=client_cert("bob")) as s:
        s.initialize()
        assert s.post({**CALL, "params": {"name": "get-sum", "arguments": {"a": 1, "b": 1}}},
                      headers=forged).message()["error"]["code"] == 403
    # ...and the trusted ingress forwarding alice's identity is believed.
    with RawSession(envoy.url(), ca=pki.ca_cert, cert=client_cert("ingress", "istio-system")) as s:
        s._http.headers.update(forged)
        s.initialize()
        assert "result" in s.post({**CALL, "params": {"name": "get-sum", "arguments": {"a": 1, "b": 1}}}).message()
    assert upstream_log.tools_executed() == ["get-sum"]


@pytest.mark.parametrize("mutate,field", [
    (lambda c: c.update(version="grantwall.io/v0"), "at version"),
    (lambda c: c["backends"][0]["policies"][0]["rules"][0].update(principals=[99]),
     "backends[0].policies[0].rules[0].principals[0]"),
    (lambda c: c["settings"].update(denial="silently"), "settings.denial"),
])
def test_a_config_the_filter_cannot_load_stops_the_plugin(start_envoy, compile_policy, mutate, field):
    config = json.loads(compile_policy(POLICY))
    mutate(config)
    with pytest.raises(EnvoyStartError) as refused:
        start_envoy(json.dumps(config))
    assert "invalid Grantwall config" in str(refused.value) and field in str(refused.value)

