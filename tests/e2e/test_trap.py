"""Fail-closed proof when the Wasm VM itself dies: dist/grantwall-trap.wasm (cargo feature `trap-test`, built
only by `make build-trap`) panics — a Wasm trap, since release builds abort on panic — on a request that
carries `x-grantwall-test-trap: 1` (in the headers callback) or `: body` (in the body callback, after the
request was held for inspection). What Envoy 1.40 then does depends on the PluginConfig's failure_policy;
docs/security.md records the observations these tests pin down.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from .clients import post_jsonrpc
from .conftest import DIST, require_artifact
from .envoy import wasm_plugin

MCP_SERVER_MODE = "stateless"
POLICY = Path(__file__).with_name("policies") / "grants.yaml"
TRAP_WASM = Path(os.environ.get("GRANTWALL_TRAP_WASM", DIST / "grantwall-trap.wasm")).resolve()
TRAP_HEADER = b"x-grantwall-test-trap"
ARGS = {"echo": {"message": "m"}, "get-sum": {"a": 1, "b": 2}}


def body(tool: str) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": tool, "arguments": ARGS.get(tool, {})}}).encode()


@pytest.fixture(scope="module")
def trap_wasm() -> Path:
    return require_artifact(TRAP_WASM, "the trap-test filter (make build-trap)")


@pytest.fixture
def gateway(start_envoy, compile_policy, trap_wasm):
    """`gateway("FAIL_CLOSED")`: a fresh Envoy (one worker, so one VM) running the trap build."""
    def start(policy: str):
        def patch(boot: dict) -> None:
            wasm_plugin(boot)["failure_policy"] = policy
        return start_envoy(compile_policy(POLICY), wasm_path=trap_wasm, patch=patch, concurrency=1)
    return start


def send(envoy, pki, cert, tool: str = "echo", trap: str | None = None):
    headers = {"x-grantwall-test-trap": trap} if trap else {}
    return post_jsonrpc(envoy.url(), body(tool), headers, cert, ca=pki.ca_cert)


def test_the_release_build_has_no_trap(wasm_path, trap_wasm):
    assert TRAP_HEADER not in wasm_path.read_bytes(), "dist/grantwall.wasm was built with feature trap-test"
    assert TRAP_HEADER in trap_wasm.read_bytes()


@pytest.mark.parametrize("phase", ["1", "body"])
def test_fail_closed_a_trapped_request_is_refused_and_so_is_everything_after(gateway, pki, client_cert, upstream_log, phase):
    envoy = gateway("FAIL_CLOSED")
    alice = client_cert("alice")
    assert send(envoy, pki, alice).status == 200          # the VM works before the trap
    upstream_log.clear()
    trapped = send(envoy, pki, alice, trap=phase)
    assert trapped.status == 503, trapped
    # Envoy 1.40 FAIL_CLOSED: the dead VM is not replaced; every later request on it is refused too.
    later = [send(envoy, pki, alice) for _ in range(3)]
    assert [r.status for r in later] == [503, 503, 503]
    assert upstream_log.requests() == [], "a request reached the upstream after the VM died"
    log = envoy.wait_access_log(count=5)
    assert [e["response_code_details"] for e in log[1:]] == ["wasm_fail_stream"] * 4


def test_fail_reload_refuses_the_trapped_request_then_a_fresh_vm_enforces_the_policy(gateway, pki, client_cert, upstream_log):
    envoy = gateway("FAIL_RELOAD")
    alice = client_cert("alice")
    upstream_log.clear()
    trapped = send(envoy, pki, alice, trap="body")
    assert trapped.status == 503
    assert upstream_log.requests() == []
    # Envoy reloads the VM (with the same configuration) after a back-off; until then requests are refused
    # with 503, never forwarded. Then allowed calls pass and denied ones are denied again.
    started, statuses = time.monotonic(), []
    while (resp := send(envoy, pki, alice)).status != 200 and time.monotonic() - started < 15:
        statuses.append(resp.status)
        time.sleep(0.2)
    assert set(statuses) <= {503}, statuses
    assert resp.status == 200 and "result" in resp.message()
    print(f"FAIL_RELOAD: {len(statuses)} requests refused with 503, VM back after {time.monotonic() - started:.1f}s")
    denied = send(envoy, pki, alice, tool="delete-everything")
    assert denied.status == 200 and denied.message()["error"]["code"] == 403
    assert upstream_log.tools_executed() == ["echo"]


def test_fail_open_lets_every_request_after_a_trap_through(gateway, pki, client_cert, upstream_log):
    """Why failure_policy must never be FAIL_OPEN: the trapped request itself fails (503), but once the VM is
    dead Envoy skips the filter, and bob's next call to a tool he was never granted runs."""
    envoy = gateway("FAIL_OPEN")
    bob = client_cert("bob")
    upstream_log.clear()
    assert send(envoy, pki, bob, tool="delete-everything", trap="body").status == 503
    assert upstream_log.requests() == []
    assert send(envoy, pki, bob, tool="delete-everything").status == 200
    assert upstream_log.tools_executed() == ["delete-everything"]
