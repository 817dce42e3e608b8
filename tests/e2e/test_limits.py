"""Rate limits, fan-out caps and context budgets (GrantwallRateLimitPolicy, docs/limits.md) in real Envoy.

Envoy runs with 2 worker threads and every client request opens its own TLS connection, so requests land
on both workers; limits live in Proxy-Wasm shared data with compare-and-swap, so they must hold exactly
across workers. Every assertion about what passed is checked against what the upstream actually ran.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from .clients import modern_request, post_jsonrpc, raw_request, ssl_context
from .upstream import start_mcp_server

MCP_SERVER_MODE = "stateless"   # no sessions: each tools/call stands alone, any worker can take it
POLICY = Path(__file__).with_name("policies") / "limits.yaml"
CONCURRENCY = 2


def spiffe(sa: str) -> str:
    return f"spiffe://cluster.local/ns/agents/sa/{sa}"


@pytest.fixture(scope="module")
def envoy(start_envoy, compile_policy):
    return start_envoy(compile_policy(POLICY), concurrency=CONCURRENCY)


def call(envoy, pki, cert, tool: str, arguments: dict, *, id=1, headers: dict | None = None, timeout=15.0):
    body, h = modern_request("tools/call", {"name": tool, "arguments": arguments}, id=id)
    h.update(headers or {})
    return post_jsonrpc(envoy.url(), body, h, cert, ca=pki.ca_cert, timeout=timeout)


def test_rate_limit_holds_exactly_across_workers(envoy, pki, client_cert, upstream_log):
    alice = client_cert("alice")
    attempts = 40
    with ThreadPoolExecutor(max_workers=16) as pool:
        replies = list(pool.map(lambda i: call(envoy, pki, alice, "echo", {"message": f"m{i}"}, id=i),
                                range(attempts)))
    ok = [r for r in replies if r.status == 200 and "result" in r.message()]
    refused = [r for r in replies if r not in ok]
    # 10 tokens for an hour: exactly 10 pass, however the 40 were spread over the workers.
    assert len(ok) == 10, [r.status for r in replies]
    assert upstream_log.tools_executed().count("echo") == 10
    for r in refused:
        # MCP: HTTP 200 so the session survives; JSON-RPC error with when to retry.
        assert r.status == 200
        err = r.message()["error"]
        assert err["code"] == 429
        assert err["data"]["reason"] == "rate-limited"
        assert err["data"]["limit"] == "tools/agent-limits/alice-echo"
        assert 300 < err["data"]["retryAfterSeconds"] <= 360     # one token per 360 s
        assert r.headers["retry-after"] == str(err["data"]["retryAfterSeconds"])
    # The limit is per tool: alice's get-sum is not counted.
    r = call(envoy, pki, alice, "get-sum", {"a": 1, "b": 2})
    assert "3" in r.message()["result"]["content"][0]["text"]
    envoy.wait_access_log(lambda e: '"rate-limited"' in str(e.get("grantwall")), count=30)
    audits = [a for a in envoy.audits() if a and a.get("reason") == "rate-limited"]
    assert len(audits) == 30 and all(a["identity"] == spiffe("alice") and a["target"] == "echo" for a in audits)
    prom = envoy.prometheus()
    assert 'grantwall_requests{decision="deny",reason="rate_limited"} 30' in prom
    # Both workers took part (the proxy log line's second field is the thread id).
    def threads_in(log: str) -> set[str]:
        return {line.split("][")[1] for line in log.splitlines()
                if "grantwall audit" in line and '"target":"echo"' in line}

    threads = threads_in(envoy.wait_log_text(lambda text: len(threads_in(text)) >= CONCURRENCY))
    assert len(threads) == CONCURRENCY, threads


def test_bucket_holds_under_keepalive_load(envoy, pki, client_cert, upstream_log):
    """32 kept-alive connections (spread over both workers) fire 400 calls at a 100-call bucket. Python
    clients are too slow to make the workers race often; bench/limits_contention.py (wrk, ~60k requests)
    is the test that catches a build without compare-and-swap."""
    erin = client_cert("erin")
    clients = [httpx.Client(verify=ssl_context(pki.ca_cert, erin), trust_env=False, timeout=15) for _ in range(32)]
    try:
        def post(client, tool, i):
            body, h = modern_request("tools/call", {"name": tool, "arguments": {"message": "m"} if tool == "echo"
                                                    else {"a": 1, "b": 1}}, id=i)
            h.update({"content-type": "application/json", "accept": "application/json, text/event-stream"})
            return client.post(envoy.url(), content=body, headers=h)
        with ThreadPoolExecutor(max_workers=32) as pool:
            # Open every connection first (get-sum is not limited), then hammer.
            assert all(r.status_code == 200 for r in pool.map(lambda c: post(c, "get-sum", 0), clients))
            upstream_log.clear()
            replies = list(pool.map(lambda i: post(clients[i % 32], "echo", i), range(400)))
    finally:
        for c in clients:
            c.close()
    passed = sum(1 for r in replies if b'"result"' in r.content)
    assert passed == 100, passed
    assert upstream_log.tools_executed().count("echo") == 100


def test_non_mcp_requests_get_429_with_retry_after(envoy, pki, client_cert, upstream_log):
    dave = client_cert("dave")
    statuses = [raw_request("GET", envoy.url("/status"), ca=pki.ca_cert, cert=dave).status for _ in range(3)]
    assert 429 not in statuses
    r = raw_request("GET", envoy.url("/status"), ca=pki.ca_cert, cert=dave)
    assert r.status == 429
    assert 1000 < int(r.headers["retry-after"]) <= 1200         # one token per 1200 s
    assert json.loads(r.body)["error"]["data"]["reason"] == "rate-limited"
    assert len(upstream_log.requests("GET")) == 3


def test_context_budget(envoy, pki, client_cert, upstream_log):
    carol = client_cert("carol")
    r = call(envoy, pki, carol, "echo", {"message": "x" * 3000}, id="big")
    assert r.status == 413
    err = json.loads(r.body)["error"]
    assert err["data"]["reason"] == "context-budget-exceeded" and err["data"]["limitBytes"] == 2048
    assert json.loads(r.body)["id"] == "big"
    assert upstream_log.requests() == []
    r = call(envoy, pki, carol, "echo", {"message": "x" * 1000})
    assert r.message()["result"]["content"][0]["text"] == "x" * 1000
    # Bob has no budget rule: the same large body passes.
    r = call(envoy, pki, client_cert("bob"), "echo", {"message": "x" * 3000})
    assert r.status == 200 and "result" in r.message()


def slow(envoy, pki, cert, n=2, delay=0.5, id=1, timeout=15.0):
    return call(envoy, pki, cert, "slow-count", {"n": n, "delay": delay}, id=id, timeout=timeout)


def running(upstream_log) -> int:
    return upstream_log.tools_executed().count("slow-count")


def test_fan_out_never_exceeds_the_cap(envoy, pki, client_cert, upstream_log):
    bob = client_cert("bob")
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(lambda i: slow(envoy, pki, bob, n=3, delay=0.4, id=i), range(8)))
    done = [r for r in replies if "result" in r.message()]
    refused = [r.message()["error"] for r in replies if "error" in r.message()]
    # All 8 start within a few ms and each runs >= 1.2 s: only 2 may be in flight.
    assert len(done) == 2, [r.message() for r in replies]
    assert running(upstream_log) == 2
    assert all(e["data"]["reason"] == "fan-out-exceeded" and e["code"] == 429 for e in refused)
    # Counts came back on completion: 2 more may run now.
    with ThreadPoolExecutor(max_workers=2) as pool:
        again = list(pool.map(lambda i: slow(envoy, pki, bob, n=1, delay=0.1, id=i), range(2)))
    assert all("result" in r.message() for r in again)


def test_fan_out_released_when_the_client_resets(envoy, pki, client_cert, upstream_log):
    bob = client_cert("bob")
    def abandon(i):
        # The client gives up mid-call: Envoy resets the stream, the upstream keeps running a while.
        with pytest.raises(httpx.ReadTimeout):
            slow(envoy, pki, bob, n=20, delay=0.2, id=f"reset-{i}", timeout=0.6)
    threads = [threading.Thread(target=abandon, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert upstream_log.wait_for(lambda log: running(log) == 2)
    # Both slots are free again once Envoy has torn the streams down (well before the 4 s calls end).
    deadline = time.monotonic() + 2.0
    while True:
        r = call(envoy, pki, bob, "echo", {"message": "after reset"})
        if "result" in r.message() or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert r.message()["result"]["content"][0]["text"] == "after reset"
    with ThreadPoolExecutor(max_workers=2) as pool:
        both = list(pool.map(lambda i: slow(envoy, pki, bob, n=1, delay=0.5, id=i), range(2)))
    assert all("result" in r.message() for r in both), [r.message() for r in both]


def test_fan_out_released_after_local_replies(envoy, pki, client_cert, upstream_log):
    bob = client_cert("bob")
    # get-sum: 1 per hour. The later calls take a fan-out count, then the rate limit answers locally.
    replies = [call(envoy, pki, bob, "get-sum", {"a": 1, "b": 1}, id=i) for i in range(6)]
    assert ["result" in r.message() for r in replies] == [True] + [False] * 5
    assert all(r.message()["error"]["data"]["reason"] == "rate-limited" for r in replies[1:])
    # Refused by the access policy and by the parser (never counted), and over budget-free large bodies.
    r = call(envoy, pki, bob, "delete-everything", {})
    assert r.message()["error"]["code"] == 403
    r = post_jsonrpc(envoy.url(), b'{"jsonrpc":"2.0","id":1,', {}, bob, ca=pki.ca_cert)
    assert r.status == 400
    # None of these leaked: two slow calls still run side by side.
    with ThreadPoolExecutor(max_workers=2) as pool:
        both = list(pool.map(lambda i: slow(envoy, pki, bob, n=1, delay=0.5, id=i), range(2)))
    assert all("result" in r.message() for r in both), [r.message() for r in both]


def test_fan_out_released_when_the_upstream_dies(start_envoy, compile_policy, e2e_dir, pki, client_cert):
    doomed = start_mcp_server(e2e_dir / "upstream-limits-doomed", mode="stateless")
    try:
        envoy = start_envoy(compile_policy(POLICY), upstream=doomed, replace=False, concurrency=CONCURRENCY)
        bob = client_cert("bob")
        with ThreadPoolExecutor(max_workers=2) as pool:
            calls = [pool.submit(slow, envoy, pki, bob, n=50, delay=0.2, id=i) for i in range(2)]
            assert doomed.log.wait_for(lambda log: log.tools_executed().count("slow-count") == 2)
            doomed.stop()                                   # the server dies mid-call
            for c in calls:
                try:
                    r = c.result()
                except httpx.HTTPError:
                    continue                                # the stream was cut: fine
                assert b'"result"' not in r.body, r.body    # Envoy's 503, or a cut SSE stream
        # The upstream is gone: calls now fail upstream (503), never locally with fan-out-exceeded.
        with ThreadPoolExecutor(max_workers=2) as pool:
            after = list(pool.map(lambda i: call(envoy, pki, bob, "echo", {"message": "x"}, id=i), range(2)))
        assert [r.status for r in after] == [503, 503], [r.body for r in after]
        envoy.stop()
    finally:
        doomed.stop()


def test_published_headers_cannot_be_forged(envoy, pki, client_cert, upstream_log):
    forged = {"x-grantwall-identity": spiffe("root"), "x-grantwall-tool": "nothing",
              "x-grantwall-backend": "evil/backend"}
    r = call(envoy, pki, client_cert("carol"), "echo", {"message": "hi"}, headers=forged)
    assert r.message()["result"]["content"][0]["text"] == "hi"
    [req] = upstream_log.requests("POST")
    assert req["headers"]["x-grantwall-identity"] == spiffe("carol")
    assert req["headers"]["x-grantwall-tool"] == "echo"
    assert req["headers"]["x-grantwall-backend"] == "tools/mcp-server"
