"""Global limits: Grantwall publishes who calls what; Envoy's rate-limit filter asks an RLS.

examples/envoy-ratelimit.yaml is merged into the example bootstrap as written (only the RLS address is
this test's). The RLS is a small gRPC server speaking envoy.service.ratelimit.v3 (protos from PyPI
`xds-protos`) that records every descriptor and refuses per (identity, tool) beyond a quota, the way
envoyproxy/ratelimit would with a Redis counter.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path

import pytest
import yaml

from .clients import modern_request, post_jsonrpc
from .procs import spawn, stop

MCP_SERVER_MODE = "stateless"
REPO = Path(__file__).resolve().parents[2]
POLICY = Path(__file__).with_name("policies") / "limits.yaml"
CHAIN = REPO / "examples" / "envoy-ratelimit.yaml"
QUOTA = 2   # per (identity, tool)


def spiffe(sa: str) -> str:
    return f"spiffe://cluster.local/ns/agents/sa/{sa}"


class Rls:
    """The RLS process (rls_server.py): its port and the requests it received since clear()."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "rls.jsonl"
        self.log.touch()
        port_file = workdir / "rls.port"
        port_file.unlink(missing_ok=True)
        cmd = [sys.executable, str(Path(__file__).with_name("rls_server.py")), "--port-file", str(port_file),
               "--log", str(self.log), "--quota", str(QUOTA)]
        self.proc = spawn(cmd, stderr=open(workdir / "rls.stderr", "ab"))
        deadline = time.monotonic() + 20
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                stop(self.proc)
                raise RuntimeError(f"rls_server.py did not start: {(workdir / 'rls.stderr').read_text()}")
            time.sleep(0.05)
        self.port = int(port_file.read_text())
        self.offset = 0

    def clear(self) -> None:
        self.offset = self.log.stat().st_size

    @property
    def requests(self) -> list[tuple[str, list[dict]]]:
        with open(self.log, "rb") as f:
            f.seek(self.offset)
            lines = f.read().split(b"\n")[:-1]
        return [(e["domain"], e["descriptors"]) for e in map(json.loads, lines)]


@pytest.fixture(scope="module")
def rls(e2e_dir):
    server = Rls(e2e_dir / "rls")
    yield server
    stop(server.proc)


def with_rate_limit_chain(rls_port: int):
    chain = yaml.safe_load(CHAIN.read_text())

    def patch(boot: dict) -> None:
        hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        filters = hcm["http_filters"]
        at = next(i for i, f in enumerate(filters) if f["name"] == "grantwall") + 1
        filters[at:at] = copy.deepcopy(chain["http_filters"])
        for vh in hcm["route_config"]["virtual_hosts"]:
            vh["rate_limits"] = copy.deepcopy(chain["rate_limits"])
        cluster = copy.deepcopy(chain["clusters"][0])
        cluster["type"] = "STATIC"
        addr = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        addr["socket_address"] = {"address": "127.0.0.1", "port_value": rls_port}
        boot["static_resources"]["clusters"].append(cluster)

    return patch


@pytest.fixture(scope="module")
def envoy(start_envoy, compile_policy, rls):
    return start_envoy(compile_policy(POLICY), patch=with_rate_limit_chain(rls.port), concurrency=2)


def call(envoy, pki, cert, tool, arguments, *, id=1, headers=None):
    body, h = modern_request("tools/call", {"name": tool, "arguments": arguments}, id=id)
    h.update(headers or {})
    return post_jsonrpc(envoy.url(), body, h, cert, ca=pki.ca_cert)


def test_rls_sees_identity_tool_and_backend_set_after_the_body(envoy, rls, pki, client_cert, upstream_log):
    rls.clear()
    forged = {"x-grantwall-identity": spiffe("root"), "x-grantwall-tool": "nothing"}
    r = call(envoy, pki, client_cert("alice"), "get-sum", {"a": 2, "b": 3}, headers=forged)
    assert "5" in r.message()["result"]["content"][0]["text"]
    # The tool is only known from the body: the rate-limit filter ran after Grantwall had judged it.
    [(domain, descriptors)] = rls.requests
    assert domain == "grantwall"
    assert descriptors == [
        {"identity": spiffe("alice"), "tool": "get-sum"},
        {"identity": spiffe("alice")},
        {"backend": "tools/mcp-server"},
    ]
    [req] = upstream_log.requests("POST")
    assert req["headers"]["x-grantwall-identity"] == spiffe("alice")


def test_rls_over_limit_stops_requests_before_the_upstream(envoy, rls, pki, client_cert, upstream_log):
    rls.clear()
    bob = client_cert("bob")
    replies = [call(envoy, pki, bob, "echo", {"message": f"m{i}"}, id=i) for i in range(2 * QUOTA)]
    assert [r.status for r in replies] == [200] * QUOTA + [429] * QUOTA
    assert upstream_log.tools_executed() == ["echo"] * QUOTA
    assert replies[-1].headers.get("x-envoy-ratelimited") == "true"
    # Per tool: bob's get-sum has its own global quota.
    r = call(envoy, pki, bob, "get-sum", {"a": 1, "b": 1}, id="s")
    assert r.status == 200 and "result" in r.message()


def test_requests_grantwall_refuses_never_reach_the_rls(envoy, rls, pki, client_cert, upstream_log):
    rls.clear()
    r = call(envoy, pki, client_cert("alice"), "delete-everything", {})
    assert r.message()["error"]["code"] == 403
    r = call(envoy, pki, client_cert("mallory"), "echo", {"message": "x"})
    assert r.message()["error"]["code"] == 403
    assert rls.requests == []
    assert upstream_log.requests() == []


def test_the_example_chain_is_what_this_test_runs():
    chain = yaml.safe_load(CHAIN.read_text())
    [f] = chain["http_filters"]
    assert f["name"] == "envoy.filters.http.ratelimit"
    assert f["typed_config"]["failure_mode_deny"] is True
    headers = {a["request_headers"]["header_name"] for rl in chain["rate_limits"] for a in rl["actions"]}
    assert headers == {"x-grantwall-identity", "x-grantwall-tool", "x-grantwall-backend"}
    assert json.dumps(chain)  # plain data, no YAML tags
