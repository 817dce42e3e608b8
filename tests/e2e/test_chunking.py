"""The filter buffers the whole body and decides once, so where the transport cuts the body cannot matter:
the same bodies sent in one piece (Content-Length), as HTTP/1.1 chunked transfer-encoding with random chunk
boundaries, and as HTTP/2 DATA frames of random sizes get identical decisions — the reply, the filter's
audit reason and what the upstream executed. Seeded, so a failure replays."""

from __future__ import annotations

import codecs
import json
import random
from pathlib import Path

import pytest

from .clients import ACCEPT
from .h2frames import post_frames
from .rawhttp import h1_request

MCP_SERVER_MODE = "stateless"
POLICY = Path(__file__).with_name("policies") / "grants.yaml"
MAX_BODY = 64 * 1024
JSON = {"content-type": "application/json", "accept": ACCEPT}
CUTS = 3  # random cuttings per body and protocol


def call(params: str) -> bytes:
    return b'{"jsonrpc":"2.0","id":"c-1","method":"tools/call","params":' + params.encode() + b"}"


BODIES = {
    "granted": call('{"name":"echo","arguments":{"message":"' + "é" * 300 + '"}}'),
    "denied": call('{"name":"delete-everything","arguments":{}}'),
    "escaped-granted": call('{"name":"get\\u002dsum","arguments":{"a":1,"b":2}}'),
    "duplicate": call('{"name":"echo","arguments":{"message":"m"},"name":"delete-everything"}'),
    "folded-key": call('{"name":"echo","Name":"delete-everything"}'),
    "bom": codecs.BOM_UTF8 + call('{"name":"echo","arguments":{"message":"m"}}'),
    "batch": b"[" + call('{"name":"echo","arguments":{"message":"m"}}') + b"]",
    "trailing": call('{"name":"echo","arguments":{"message":"m"}}') + b"{}",
    "truncated": call('{"name":"echo","arguments":{"message":"m"}}')[:-1],
    "multibyte-split": call('{"name":"echo","arguments":{"message":"' + "😀" * 40 + '"}}'),
    "near-limit": call('{"name":"echo","arguments":{"message":"' + "x" * (MAX_BODY - 120) + '"}}'),
    "over-limit": call('{"name":"echo","arguments":{"message":"' + "x" * MAX_BODY + '"}}'),
}


@pytest.fixture(scope="module")
def envoy(start_envoy, compile_policy):
    config = json.loads(compile_policy(POLICY))
    config["settings"]["maxBodyBytes"] = MAX_BODY
    return start_envoy(json.dumps(config))


def cut(rng: random.Random, body: bytes) -> list[bytes]:
    """Random boundaries: many tiny pieces, a few large ones, or single bytes at the start."""
    style = rng.choice(["tiny", "mixed", "bytes-then-rest"])
    out, i = [], 0
    while i < len(body):
        if style == "tiny":
            n = rng.randint(1, 7)
        elif style == "mixed":
            n = rng.choice([1, 2, 3, rng.randint(4, 64), rng.randint(64, 4096)])
        else:
            n = 1 if i < 40 else len(body)
        out.append(body[i:i + n])
        i += n
    return out


def outcome(envoy, upstream_log, resp, seen: int) -> tuple:
    entries = envoy.wait_access_log(count=seen + 1, timeout=3.0)
    audit = json.loads(entries[seen]["grantwall"]) if len(entries) > seen else None
    reply = json.loads(resp.body) if resp.headers.get("content-type") == "application/json" else None
    error = (reply or {}).get("error") or {}
    return (resp.status, error.get("code"), audit and (audit["decision"], audit["reason"], audit.get("target")),
            tuple(upstream_log.tools_executed()))


@pytest.mark.parametrize("name", list(BODIES))
def test_decision_does_not_depend_on_chunk_boundaries(envoy, pki, client_cert, upstream_log, name):
    body, alice = BODIES[name], client_cert("alice")
    rng = random.Random(f"grantwall-chunks-{name}")
    results: dict[str, tuple] = {}

    def record(label: str, send) -> None:
        upstream_log.clear()
        seen = len(envoy.access_log())
        results[label] = outcome(envoy, upstream_log, send(), seen)

    record("content-length", lambda: h1_request(envoy.port, "POST", "/mcp", JSON, body=body, ca=pki.ca_cert, cert=alice))
    for k in range(CUTS):
        pieces = cut(rng, body)
        record(f"h1-chunked-{k} ({len(pieces)} chunks)",
               lambda: h1_request(envoy.port, "POST", "/mcp", JSON, chunks=pieces, ca=pki.ca_cert, cert=alice,
                                  writes=rng.randint(2, 20)))
        frames = cut(rng, body)
        record(f"h2-frames-{k} ({len(frames)} frames)",
               lambda: post_frames(envoy.port, "/mcp", JSON, frames, ca=pki.ca_cert, cert=alice))
    baseline = results["content-length"]
    assert baseline[2] is not None, "no audit record for the baseline"
    assert all(r == baseline for r in results.values()), json.dumps(results, indent=1, default=str)
