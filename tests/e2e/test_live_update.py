"""Live policy updates in real Envoy, while agents keep calling: Envoy reads the filter config from a file
(ECDS with `path_config_source`, the file `grantwall compile --emit ecds -o` writes by atomic rename).

- No request fails while the policy changes, twice (a new policy, then a broken one).
- After the update the new policy decides: a tool denied before is allowed after.
- A request in flight during the update (headers sent before, body after) completes and is decided by the policy
  it started under: the filter context keeps its own engine (filter/src/root.rs hands each request an Rc).
- A config the filter cannot load is refused by Envoy (`update_rejected`) and the last good policy keeps deciding.
- Shared state made under the old policy is still in force under the new one: a session bound to alice before
  the update still refuses bob after it, and alice's session goes on working.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from .clients import ACCEPT, RawSession, ssl_context
from .envoy import LISTENER, WASM_FILTER, WASM_TYPE, _hcm, _one

POLICY = Path(__file__).with_name("policies") / "grants.yaml"
FORBIDDEN = "Access to this tool is forbidden."
PER_CLIENT_MAX = 400        # bounded loop: at most this many calls per client
GRACE_S = 0.5               # Envoy posts an accepted config to its worker threads: allow them a moment
CLIENTS = 2
DEADLINE_S = 40.0


def bob_may_also_sum(policy_text: str) -> str:
    before = "spiffe: spiffe://cluster.local/ns/agents/sa/bob"
    assert policy_text.count("params: [echo]") == 1 and before in policy_text
    return policy_text.replace("params: [echo]", "params: [echo, get-sum]")


class Client(threading.Thread):
    """One agent (bob) calling get-sum in a loop on its own MCP session; every outcome is recorded."""

    def __init__(self, url: str, ca: Path, cert, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url, self.ca, self.cert, self.stop_event = url, ca, cert, stop
        self.results: list[tuple[float, float, str]] = []   # (start, end, "allow" | "deny" | failure text)

    def run(self) -> None:
        with RawSession(self.url, ca=self.ca, cert=self.cert, timeout=10) as s:
            s.initialize()
            deadline = time.monotonic() + DEADLINE_S
            while not self.stop_event.is_set() and len(self.results) < PER_CLIENT_MAX and time.monotonic() < deadline:
                start = time.monotonic()
                try:
                    resp = s.request("tools/call", {"name": "get-sum", "arguments": {"a": 1, "b": 2}})
                    msg = resp.message() if resp.status == 200 else {}
                    if "result" in msg and not msg["result"].get("isError"):
                        outcome = "allow"
                    elif msg.get("error", {}).get("message") == FORBIDDEN:
                        outcome = "deny"
                    else:
                        outcome = f"HTTP {resp.status}: {resp.body[:200]!r}"
                except Exception as e:  # noqa: BLE001 - any failure is the finding
                    outcome = f"{type(e).__name__}: {e}"
                self.results.append((start, time.monotonic(), outcome))
                time.sleep(0.01)

    def count(self) -> int:
        return len(self.results)

    def started_after(self, t: float) -> int:
        return sum(1 for r in list(self.results) if r[0] > t)


def version_info(ecds: Path) -> str:
    return yaml.safe_load(ecds.read_text())["version_info"]


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_policy_changes_under_traffic_without_a_failed_request(start_envoy, compiler_path, wasm_path, pki,
                                                                client_cert, upstream_log, tmp_path):
    ecds = tmp_path / "grantwall-ecds.yaml"
    policy_v2 = tmp_path / "grants-v2.yaml"
    policy_v2.write_text(bob_may_also_sum(POLICY.read_text()))

    def publish(policy: Path) -> None:
        # The documented update: compile straight to the watched file (written beside it, renamed over it).
        subprocess.run([str(compiler_path), "compile", "-f", str(policy), "--emit", "ecds", "--wasm-file",
                        str(wasm_path), "-o", str(ecds)], check=True, capture_output=True, timeout=30)

    publish(POLICY)

    def use_ecds(boot: dict) -> None:
        # Any xDS subscription, file-based ones too, needs the node's id and cluster.
        boot["node"] = {"id": "grantwall-e2e", "cluster": "grantwall"}
        http_filters = _hcm(_one(boot["static_resources"]["listeners"], LISTENER, "listener"))["http_filters"]
        http_filters.insert(len(http_filters) - 1, {
            "name": WASM_FILTER,
            "config_discovery": {
                "config_source": {"path_config_source": {"path": str(ecds)}, "resource_api_version": "V3"},
                "type_urls": [WASM_TYPE],
            },
        })

    envoy = start_envoy(None, patch=use_ecds)
    # ECDS stats: the version Envoy runs (the file's version_info, which `--emit ecds` derives from the policy)
    # and how many updates it refused.
    stat = f"extension_config_discovery.http_filter.{WASM_FILTER}"
    version = lambda: envoy.stats(f"^{stat}.version_text$").get(f"{stat}.version_text")  # noqa: E731
    rejected = lambda: envoy.stat(f"{stat}.update_rejected")  # noqa: E731
    v1 = version_info(ecds)
    assert version() == v1 and rejected() == 0
    bob = client_cert("bob")
    # A session bound to alice under the first policy (Proxy-Wasm shared data, not the config).
    alice = RawSession(envoy.url(), ca=pki.ca_cert, cert=client_cert("alice"), timeout=10).__enter__()
    alice.initialize()
    assert alice.session_id

    stop = threading.Event()
    clients = [Client(envoy.url(), pki.ca_cert, bob, stop) for _ in range(CLIENTS)]
    for c in clients:
        c.start()
    try:
        wait_until(lambda: all(c.count() >= 10 for c in clients), 20, "traffic under the first policy")

        # A request in flight across the update: headers and half the body now, the rest after the swap.
        body = json.dumps({"jsonrpc": "2.0", "id": "in-flight", "method": "tools/call",
                           "params": {"name": "get-sum", "arguments": {"a": 2, "b": 2}}}).encode()
        first_half_sent, release = threading.Event(), threading.Event()
        in_flight: dict = {}

        def slow_call() -> None:
            def chunks():
                yield body[:25]
                first_half_sent.set()
                release.wait(20)
                yield body[25:]
            try:
                with httpx.Client(verify=ssl_context(pki.ca_cert, bob), trust_env=False, timeout=30) as http:
                    r = http.post(envoy.url(), content=chunks(),
                                  headers={"content-type": "application/json", "accept": ACCEPT})
                    in_flight.update(status=r.status_code, body=r.json())
            except Exception as e:  # noqa: BLE001
                in_flight.update(error=repr(e))

        slow = threading.Thread(target=slow_call, daemon=True)
        slow.start()
        assert first_half_sent.wait(10)
        time.sleep(0.3)  # let Envoy run the headers and first body chunk through the filter

        updated_at = time.monotonic()
        publish(policy_v2)
        v2 = version_info(ecds)
        assert v2 != v1
        wait_until(lambda: version() == v2, 15, "Envoy to apply the new policy")
        applied_at = time.monotonic()
        release.set()
        slow.join(20)

        settled = applied_at + GRACE_S
        wait_until(lambda: all(c.started_after(settled) >= 15 for c in clients), 20, "traffic under the new policy")

        # A config the filter refuses: Envoy NACKs it and keeps the last good one.
        ecds.with_name("broken.yaml").write_text(ecds.read_text().replace("grantwall.io/v1alpha1", "grantwall.io/v0"))
        ecds.with_name("broken.yaml").replace(ecds)
        broken_at = time.monotonic()
        wait_until(lambda: rejected() == 1, 15, "Envoy to refuse the broken config")
        wait_until(lambda: all(c.started_after(broken_at + GRACE_S) >= 10 for c in clients), 20,
                   "traffic after the refused update")
        # The binding made before both updates still holds: bob cannot ride alice's session, alice can.
        with RawSession(envoy.url(), ca=pki.ca_cert, cert=bob, timeout=10) as rider:
            rider.session_id, rider.initialize_result = alice.session_id, {}
            hijack = rider.request("tools/call", {"name": "echo", "arguments": {"message": "hijack"}}, id="h-1")
            assert hijack.message()["error"]["data"] == {"reason": "session-identity-mismatch"}, hijack.body
        own = alice.call_tool("echo", {"message": "still mine"})
        assert own["result"]["content"][0]["text"] == "still mine", own
    finally:
        stop.set()
        release_all = [c.join(15) for c in clients]
        del release_all
        alice.__exit__(None, None, None)

    results = sorted(r for c in clients for r in c.results)
    failed = [r for r in results if r[2] not in ("allow", "deny")]
    assert failed == [], f"{len(failed)} of {len(results)} requests failed: {failed[:5]}"
    before = [r for r in results if r[1] < updated_at]
    after = [r for r in results if r[0] > applied_at + GRACE_S]
    assert before and all(r[2] == "deny" for r in before)
    assert len(after) >= CLIENTS * 25 and all(r[2] == "allow" for r in after), after[:5]
    # The broken config was refused and the last good one kept deciding (the "after" calls include these).
    assert rejected() == 1 and version() == v2
    assert [r for r in results if r[0] > broken_at + GRACE_S]
    assert "invalid Grantwall config at version" in envoy.log_text()

    # The in-flight request finished normally, judged by the policy it started under.
    assert in_flight.get("status") == 200, in_flight
    assert in_flight["body"]["id"] == "in-flight" and in_flight["body"]["error"]["message"] == FORBIDDEN
    # The upstream ran exactly the calls that were allowed, the in-flight one not among them.
    allowed = sum(1 for r in results if r[2] == "allow")
    assert upstream_log.tools_executed().count("get-sum") == allowed
    print(f"\nlive update: {len(results)} calls, 0 failed; {len(before)} denied before, {len(after)} allowed after, "
          f"{allowed} allowed in all; in-flight call decided by the old policy")
