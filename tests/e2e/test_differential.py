"""Parser differential: tricky bodies, paths, content types and methods through real Envoy + the filter to two
real MCP servers (Python `mcp` SDK, stateless; TypeScript SDK on Express), as bob, who is granted exactly one
tool (`echo`).

The property, observed from each server's own tool-execution log: **no server ever runs a tool bob was not
granted**. Besides that, per request: a refusal or denial is a clean JSON-RPC error from the filter and the
server saw nothing; a request the filter let through names, in the filter's audit record, the very tool
the server then ran. Each case also pins the filter's outcome, so a behaviour change shows up here.
"""

from __future__ import annotations

import codecs
import gzip
import json
from pathlib import Path

import pytest

from .clients import ACCEPT, parse_jsonrpc_payload
from .rawhttp import h1_request
from .ts_upstream import start_ts_server, ts_server_missing

MCP_SERVER_MODE = "stateless"
POLICY = Path(__file__).with_name("policies") / "grants.yaml"
GRANTED = {"echo"}                         # bob's grant in policies/grants.yaml
MAX_BODY = 256 * 1024                      # keeps the huge-body cases fast

JSON = {"content-type": "application/json", "accept": ACCEPT}


def call(name: str = "echo", *, raw_params: str | None = None, id: str = "1", method: str = "tools/call",
         extra: str = "") -> bytes:
    params = raw_params if raw_params is not None else \
        f'{{"name":{json.dumps(name)},"arguments":{{"message":"m"}}}}'
    return f'{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}{extra}}}'.encode()


ECHO, DELETE = call("echo"), call("delete-everything")
DEEP_OK = call(raw_params='{"name":"echo","arguments":{"message":"m"},"_meta":{"x":' + "[" * 100 + "]" * 100 + "}}")
DEEP_BAD = call(raw_params='{"name":"echo","arguments":{"message":"m"},"_meta":{"x":' + "[" * 200 + "]" * 200 + "}}")
BIG_OK = call(raw_params='{"name":"echo","arguments":{"message":"' + "x" * (MAX_BODY - 200) + '"}}')
BIG_BAD = call(raw_params='{"name":"echo","arguments":{"message":"' + "x" * MAX_BODY + '"}}')

# Outcomes: ("refused", HTTP status, audit reason) | ("denied",) policy default-deny | ("allowed",) forwarded.
REFUSED_JSON = ("refused", 400, "malformed-json")
DUP = ("refused", 400, "duplicate-key")
AMBIG = ("refused", 400, "ambiguous-key")
INVALID = ("refused", 400, "invalid-request")
PARAMS = ("refused", 400, "invalid-params")
CTYPE = ("refused", 415, "unsupported-content-type")
DENIED, ALLOWED = ("denied",), ("allowed",)
CODEC = ("codec",)   # Envoy's HTTP codec refuses the request before any filter runs

# name: (HTTP method, request target, headers, body, filter outcome)
CASES: dict[str, tuple[str, str, dict[str, str], bytes, tuple]] = {
    "plain-granted": ("POST", "/mcp", JSON, ECHO, ALLOWED),
    "plain-denied": ("POST", "/mcp", JSON, DELETE, DENIED),
    # duplicate keys at every level (servers keep the last)
    "dup-name": ("POST", "/mcp", JSON, call(raw_params='{"name":"echo","name":"delete-everything"}'), DUP),
    "dup-name-reversed": ("POST", "/mcp", JSON, call(raw_params='{"name":"delete-everything","name":"echo"}'), DUP),
    "dup-method": ("POST", "/mcp", JSON, call(extra=',"method":"tools/call"'), DUP),
    "dup-params": ("POST", "/mcp", JSON, call(extra=',"params":{"name":"delete-everything"}'), DUP),
    "dup-in-arguments": ("POST", "/mcp", JSON, call(raw_params='{"name":"echo","arguments":{"message":"a","message":"b"}}'), DUP),
    "dup-in-meta-deep": ("POST", "/mcp", JSON, call(raw_params='{"name":"echo","arguments":{"message":"m"},"_meta":{"a":[{"b":1,"b":2}]}}'), DUP),
    "dup-name-over-16-keys": ("POST", "/mcp", JSON, call(raw_params='{"name":"echo",' + ",".join(f'"k{i}":{i}' for i in range(20)) + ',"name":"delete-everything"}'), DUP),
    # keys that fold onto a field another parser reads
    "case-folded-name": ("POST", "/mcp", JSON, call(raw_params='{"name":"echo","Name":"delete-everything"}'), AMBIG),
    "case-folded-method": ("POST", "/mcp", JSON, call(extra=',"METHOD":"tools/call"'), AMBIG),
    "unicode-folded-jsonrpc": ("POST", "/mcp", JSON, call(extra=',"j\\u017fonrpc":"2.0"'), AMBIG),
    "unicode-folded-arguments": ("POST", "/mcp", JSON, call(raw_params='{"name":"echo","argument\u017f":{}}'), AMBIG),
    "nul-in-key": ("POST", "/mcp", JSON, call(raw_params='{"name":"echo","name\\u0000":"delete-everything"}'), AMBIG),
    "tab-in-key": ("POST", "/mcp", JSON, call(raw_params='{"name":"echo","\\tname":"delete-everything"}'), AMBIG),
    # escapes: decoded before comparing, so these are what they decode to
    "escaped-granted-name": ("POST", "/mcp", JSON, call(raw_params='{"name":"ech\\u006f","arguments":{"message":"m"}}'), ALLOWED),
    "escaped-slash-method": ("POST", "/mcp", JSON, call(method="tools\\/call"), ALLOWED),
    "escaped-key-name": ("POST", "/mcp", JSON, call(raw_params='{"n\\u0061me":"echo","arguments":{"message":"m"}}'), ALLOWED),
    "escaped-denied-name": ("POST", "/mcp", JSON, call(raw_params='{"name":"delete\\u002deverything"}'), DENIED),
    "nul-in-name": ("POST", "/mcp", JSON, call(raw_params='{"name":"echo\\u0000","arguments":{"message":"m"}}'), DENIED),
    "control-in-name": ("POST", "/mcp", JSON, call(raw_params='{"name":"ech\\u0008o"}'), DENIED),
    "upper-case-name": ("POST", "/mcp", JSON, call("ECHO"), DENIED),
    "space-padded-name": ("POST", "/mcp", JSON, call(" echo"), DENIED),
    "lone-surrogate-name": ("POST", "/mcp", JSON, call(raw_params='{"name":"echo\\ud800"}'), REFUSED_JSON),
    "upper-case-method": ("POST", "/mcp", JSON, call(method="TOOLS/CALL"), DENIED),
    # encodings
    "utf8-bom": ("POST", "/mcp", JSON, codecs.BOM_UTF8 + DELETE, REFUSED_JSON),
    "utf16-no-charset": ("POST", "/mcp", JSON, codecs.BOM_UTF16_LE + DELETE.decode().encode("utf-16-le"), REFUSED_JSON),
    "utf16-charset": ("POST", "/mcp", {**JSON, "content-type": "application/json; charset=utf-16"},
                      DELETE.decode().encode("utf-16"), CTYPE),
    "latin1-charset": ("POST", "/mcp", {**JSON, "content-type": "application/json; charset=iso-8859-1"}, DELETE, CTYPE),
    "utf8-charset-upper": ("POST", "/mcp", {**JSON, "content-type": "Application/JSON; Charset=UTF-8"}, ECHO, ALLOWED),
    "invalid-utf8": ("POST", "/mcp", JSON, DELETE.replace(b"delete", b"d\xe9lete"), REFUSED_JSON),
    "gzip-declared": ("POST", "/mcp", {**JSON, "content-encoding": "gzip"}, gzip.compress(DELETE),
                      ("refused", 415, "unsupported-content-encoding")),
    "gzip-undeclared": ("POST", "/mcp", JSON, gzip.compress(DELETE), REFUSED_JSON),
    "deflate-declared": ("POST", "/mcp", {**JSON, "content-encoding": "deflate"}, DELETE,
                         ("refused", 415, "unsupported-content-encoding")),
    # batches
    "batch-granted": ("POST", "/mcp", JSON, b"[" + ECHO + b"]", ("refused", 400, "batch-refused")),
    "batch-mixed": ("POST", "/mcp", JSON, b"[" + ECHO + b"," + DELETE + b"]", ("refused", 400, "batch-refused")),
    # ids
    "id-string": ("POST", "/mcp", JSON, call(id='"x-\\u0031"'), ALLOWED),
    "id-huge-integer": ("POST", "/mcp", JSON, call(id="123456789012345678901234567890"), ALLOWED),
    "id-negative": ("POST", "/mcp", JSON, call(id="-7"), ALLOWED),
    "id-float": ("POST", "/mcp", JSON, call(id="1.0"), INVALID),
    "id-exponent": ("POST", "/mcp", JSON, call(id="1e3"), INVALID),
    "id-null": ("POST", "/mcp", JSON, call(id="null"), INVALID),
    "id-object": ("POST", "/mcp", JSON, call(id='{"a":1}'), INVALID),
    "id-bool": ("POST", "/mcp", JSON, call(id="true"), INVALID),
    "id-leading-zero": ("POST", "/mcp", JSON, call(id="01"), REFUSED_JSON),
    # params
    "params-array": ("POST", "/mcp", JSON, call(raw_params='["delete-everything"]'), PARAMS),
    "params-name-number": ("POST", "/mcp", JSON, call(raw_params='{"name":7}'), PARAMS),
    "params-name-list": ("POST", "/mcp", JSON, call(raw_params='{"name":["delete-everything"]}'), PARAMS),
    "params-missing": ("POST", "/mcp", JSON, b'{"jsonrpc":"2.0","id":1,"method":"tools/call"}', PARAMS),
    "params-null": ("POST", "/mcp", JSON, call(raw_params="null"), INVALID),
    "params-string": ("POST", "/mcp", JSON, call(raw_params='"delete-everything"'), INVALID),
    "arguments-not-object": ("POST", "/mcp", JSON, call(raw_params='{"name":"echo","arguments":"x"}'), ALLOWED),
    "decoy-in-meta": ("POST", "/mcp", JSON, call(raw_params='{"name":"echo","arguments":{"message":"m"},"_meta":{"name":"delete-everything"}}'), ALLOWED),
    "unknown-params-key": ("POST", "/mcp", JSON, call(raw_params='{"name":"echo","arguments":{"message":"m"},"tool":"delete-everything"}'), ALLOWED),
    # envelope
    "jsonrpc-1.0": ("POST", "/mcp", JSON, ECHO.replace(b'"2.0"', b'"1.0"'), INVALID),
    "unknown-top-level": ("POST", "/mcp", JSON, call(extra=',"tool":"delete-everything"'), INVALID),
    "method-and-result": ("POST", "/mcp", JSON, call(extra=',"result":{}'), INVALID),
    "not-an-object": ("POST", "/mcp", JSON, b'"tools/call"', INVALID),
    # trailing data and whitespace
    "trailing-object": ("POST", "/mcp", JSON, ECHO + DELETE, REFUSED_JSON),
    "trailing-nul": ("POST", "/mcp", JSON, ECHO + b"\x00", REFUSED_JSON),
    "trailing-garbage": ("POST", "/mcp", JSON, ECHO + b"x", REFUSED_JSON),
    "surrounding-whitespace": ("POST", "/mcp", JSON, b" \r\n\t" + ECHO + b"\n\n", ALLOWED),
    "nbsp-prefix": ("POST", "/mcp", JSON, "\u00a0".encode() + DELETE, REFUSED_JSON),
    # nesting and size
    "deep-100": ("POST", "/mcp", JSON, DEEP_OK, ALLOWED),
    "deep-200": ("POST", "/mcp", JSON, DEEP_BAD, REFUSED_JSON),
    "big-under-limit": ("POST", "/mcp", JSON, BIG_OK, ALLOWED),
    "big-over-limit": ("POST", "/mcp", JSON, BIG_BAD, ("refused", 413, "body-too-large")),
    "empty-body": ("POST", "/mcp", JSON, b"", REFUSED_JSON),
    # content types on the MCP path
    "ctype-json-rpc": ("POST", "/mcp", {**JSON, "content-type": "application/json-rpc"}, DELETE, CTYPE),
    "ctype-text-json": ("POST", "/mcp", {**JSON, "content-type": "text/json"}, DELETE, CTYPE),
    "ctype-none": ("POST", "/mcp", {"accept": ACCEPT}, DELETE, CTYPE),
    "ctype-json-suffix": ("POST", "/mcp", {**JSON, "content-type": "application/vnd.x+json"}, DELETE, CTYPE),
    "ctype-list": ("POST", "/mcp", {**JSON, "content-type": "application/json, text/plain"}, DELETE, CTYPE),
    # odd paths: JSON POSTs are inspected on any path
    "path-trailing-slash": ("POST", "/mcp/", JSON, DELETE, DENIED),
    "path-upper": ("POST", "/MCP", JSON, DELETE, DENIED),
    "path-upper-granted": ("POST", "/MCP", JSON, ECHO, ALLOWED),
    "path-double-slash": ("POST", "//mcp", JSON, DELETE, DENIED),
    "path-encoded-slash": ("POST", "/mcp%2F", JSON, DELETE, DENIED),
    "path-semicolon": ("POST", "/mcp;x", JSON, DELETE, DENIED),
    "path-query": ("POST", "/mcp?x=/other", JSON, DELETE, DENIED),
    "path-dot-segment": ("POST", "/x/../mcp", JSON, DELETE, DENIED),
    "path-encoded-letter": ("POST", "/%6dcp", JSON, DELETE, DENIED),
    # off the MCP path with a content type the filter does not inspect: judged as non-MCP traffic, which a
    # rule with MCP conditions never grants (while Express matches /MCP and accepts application/json-rpc)
    "path-upper-ctype-json-rpc": ("POST", "/MCP", {**JSON, "content-type": "application/json-rpc"}, DELETE, DENIED),
    "path-upper-ctype-utf16": ("POST", "/MCP", {**JSON, "content-type": "application/json; charset=utf-16"},
                               DELETE.decode().encode("utf-16"), DENIED),
    "path-upper-gzip-text": ("POST", "/MCP/", {**JSON, "content-type": "text/plain", "content-encoding": "gzip"},
                             gzip.compress(DELETE), DENIED),
    # methods other than POST carrying a JSON-RPC body
    "method-put": ("PUT", "/mcp", JSON, DELETE, DENIED),
    "method-patch": ("PATCH", "/mcp", JSON, DELETE, DENIED),
    "method-put-granted": ("PUT", "/mcp", JSON, ECHO, DENIED),
    "method-lower-post": ("post", "/mcp", JSON, DELETE, CODEC),
    # GET (stream) and DELETE (session end) are base protocol; a body on them is refused, never forwarded
    "method-get-with-body": ("GET", "/mcp", JSON, DELETE, INVALID),
    "method-delete-with-body": ("DELETE", "/mcp", {**JSON, "mcp-session-id": "s1"}, DELETE, INVALID),
}


@pytest.fixture(scope="module")
def ts_upstream(e2e_dir):
    missing = ts_server_missing()
    if missing:
        if __import__("os").environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true and {missing}", pytrace=False)
        pytest.skip(missing)
    server = start_ts_server(e2e_dir / "upstream-ts")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateways(start_envoy, compile_policy, mcp_upstream, ts_upstream):
    config = json.loads(compile_policy(POLICY))
    config["settings"]["maxBodyBytes"] = MAX_BODY
    plugin = json.dumps(config)
    return {
        "python": (start_envoy(plugin, upstream=mcp_upstream, replace=False), mcp_upstream),
        "typescript": (start_envoy(plugin, upstream=ts_upstream, replace=False), ts_upstream),
    }


def new_audit(envoy, seen: int) -> dict | None:
    """The audit record of the access-log entry after the first `seen` ones (None if the filter wrote none)."""
    entries = envoy.wait_access_log(count=seen + 1, timeout=3.0)
    if len(entries) <= seen:
        return None
    raw = entries[seen].get("grantwall")
    return json.loads(raw) if isinstance(raw, str) and raw not in ("", "-") else None


@pytest.mark.parametrize("server", ["python", "typescript"])
@pytest.mark.parametrize("case", list(CASES))
def test_no_server_runs_a_tool_the_caller_was_not_granted(gateways, pki, client_cert, server, case):
    envoy, upstream = gateways[server]
    method, target, headers, body, outcome = CASES[case]
    upstream.log.clear()
    seen = len(envoy.access_log())
    resp = h1_request(envoy.port, method, target, headers, body=body, ca=pki.ca_cert, cert=client_cert("bob"))
    audit = new_audit(envoy, seen)
    # A tool logs before its result is sent, so by now the log has it.
    executed = upstream.log.tools_executed()

    # The property, from the server's own log.
    assert set(executed) <= GRANTED, f"{server} ran {executed} for bob"
    assert resp.status < 500 or outcome == ALLOWED, f"HTTP {resp.status} {resp.body[:300]!r}"
    if outcome == CODEC:
        assert resp.status == 400 and audit is None and upstream.log.requests() == []
        return
    assert audit is not None, f"no audit record (HTTP {resp.status} {resp.body[:200]!r})"

    if outcome == ALLOWED:
        assert audit["decision"] == "allow", audit
        assert executed in ([], [audit["target"]]), (executed, audit)
        return
    # Refused or denied: a clean JSON-RPC error from the filter, and the server saw nothing.
    assert upstream.log.requests() == [], upstream.log.requests()
    assert resp.headers.get("content-type") == "application/json"
    msg = parse_jsonrpc_payload("application/json", resp.body)[0]
    assert msg["jsonrpc"] == "2.0" and "result" not in msg
    assert audit["decision"] == "deny"
    if outcome == DENIED:
        assert (resp.status, msg["error"]["code"], audit["reason"]) in ((200, 403, "default-deny"), (403, 403, "default-deny"))
    else:
        _, status, reason = outcome
        assert (resp.status, msg["error"]["data"]["reason"], audit["reason"]) == (status, reason, reason)


def test_the_servers_do_run_what_the_filter_lets_through(gateways, pki, client_cert):
    """Guards the suite itself: both servers really execute granted calls through the gateway (and the
    TypeScript one executes what a lenient parser reads: the last duplicate, a BOM-prefixed body)."""
    for server, (envoy, upstream) in gateways.items():
        upstream.log.clear()
        resp = h1_request(envoy.port, "POST", "/mcp", JSON, body=ECHO, ca=pki.ca_cert, cert=client_cert("bob"))
        assert resp.status == 200, resp.body
        assert upstream.log.tools_executed() == ["echo"], server
    _, ts = gateways["typescript"]
    ts.log.clear()
    import httpx  # direct to the server, bypassing the gateway: what the filter protects against
    lenient = httpx.post(ts.url, content=codecs.BOM_UTF8 + call(raw_params='{"name":"echo","name":"delete-everything"}'),
                         headers=JSON, timeout=5)
    assert lenient.status_code == 200
    assert ts.log.tools_executed() == ["delete-everything"]
