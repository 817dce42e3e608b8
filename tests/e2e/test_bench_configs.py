"""The benchmark's three Envoy configurations (bench/) are a fair comparison: Envoy accepts the native
MCP+RBAC and the Grantwall configs (`envoy --mode validate`), the three differ only in their HTTP filters,
and native RBAC and Grantwall give the same allow/deny answer to every request the benchmark sends.

Correctness only, no timing: `make bench` measures speed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from bench import envoys, policies
from bench.scenarios import KIB, MIB

SIZES = (256, KIB, 64 * KIB, MIB)
GRANTS = (10, 1_000)
STRANGER_XFCC = f"By=spiffe://cluster.local/ns/gateway/sa/ingress;URI={policies.principal(999_999)}"


@pytest.fixture(scope="module")
def upstream() -> Iterator[envoys.Upstream]:
    up = envoys.start_upstream(cpu=None, binary=envoys.build_upstream())
    try:
        yield up
    finally:
        up.stop()


@pytest.fixture(scope="module")
def proxies(upstream: envoys.Upstream, wasm_path: Path, e2e_dir: Path) -> Iterator[dict[str, envoys.BenchEnvoy]]:
    started: dict[str, envoys.BenchEnvoy] = {}
    try:
        started["passthrough"] = envoys.start("passthrough", envoys.render("passthrough", upstream_port=upstream.port),
                                              e2e_dir / "bench-passthrough", cpu=None)
        for grants in GRANTS:
            for kind in ("native", "grantwall"):
                boot = envoys.render(kind, upstream_port=upstream.port, grants=grants, wasm=wasm_path)
                started[f"{kind}-{grants}"] = envoys.start(f"{kind}-{grants}", boot, e2e_dir / f"bench-{kind}-{grants}",
                                                           cpu=None)
        for kind in ("native", "grantwall"):      # the JWT scenario: callers present service-account tokens
            boot = envoys.render(kind, upstream_port=upstream.port, grants=10, wasm=wasm_path, jwt=True)
            started[f"{kind}-jwt"] = envoys.start(f"{kind}-jwt", boot, e2e_dir / f"bench-{kind}-jwt", cpu=None)
        yield started
    finally:
        for e in started.values():
            e.stop()


def post(envoy: envoys.BenchEnvoy, body: bytes, xfcc: str | None, path: str = policies.MCP_PATH,
         authorization: str | None = None) -> httpx.Response:
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    if xfcc is not None:
        headers["x-forwarded-client-cert"] = xfcc
    if authorization is not None:
        headers["authorization"] = authorization
    return httpx.post(envoy.url(path), content=body, headers=headers, timeout=10, trust_env=False)


def reached_upstream(resp: httpx.Response) -> bool:
    return resp.headers.get("x-bench-upstream") == "1"


def test_templates_differ_only_in_http_filters() -> None:
    base = envoys.template("passthrough")
    for kind in ("native", "grantwall"):
        assert envoys.same_except_filters(base, envoys.template(kind)), kind


@pytest.mark.parametrize("grants", [10, 1_000, 100_000])
def test_native_and_grantwall_configs_validate(grants: int, wasm_path: Path, e2e_dir: Path) -> None:
    for kind in ("native", "grantwall"):
        boot = envoys.render(kind, upstream_port=9, grants=grants, wasm=wasm_path)
        envoys.validate(boot, e2e_dir / f"bench-validate-{kind}-{grants}.json")


def test_jwt_configs_validate_and_differ_only_in_filters(wasm_path: Path, e2e_dir: Path) -> None:
    for kind in ("native", "grantwall"):
        boot = envoys.render(kind, upstream_port=9, wasm=wasm_path, jwt=True)
        envoys.validate(boot, e2e_dir / f"bench-validate-{kind}-jwt.json")
        assert envoys.same_except_filters(boot, envoys.render("passthrough", upstream_port=9))
    names = [f["name"] for f in envoys.http_filters(envoys.render("native", upstream_port=9, jwt=True))]
    assert names == ["envoy.filters.http.jwt_authn", "envoy.filters.http.mcp", "envoy.filters.http.rbac",
                     "envoy.filters.http.router"]


def test_native_and_grantwall_give_the_same_answers_to_token_callers(proxies: dict[str, envoys.BenchEnvoy]) -> None:
    native, grantwall = proxies["native-jwt"], proxies["grantwall-jwt"]
    caller = policies.authorization(10)
    stranger = f"Bearer {policies.sa_token(999_999)}"          # valid signature, but granted nothing
    forged = caller[:-4] + ("AAAA" if not caller.endswith("AAAA") else "BBBB")
    expired = f"Bearer {policies.sa_token(policies.caller_index(10), lifetime=-3600)}"
    cases = [  # (tool, Authorization, allowed?, status when refused by native, by Grantwall)
        (policies.ALLOWED_TOOL, caller, True, None, None),
        (policies.DENIED_TOOL, caller, False, 403, 200),        # Grantwall: KAN-shaped JSON-RPC denial
        (policies.ALLOWED_TOOL, stranger, False, 403, 200),
        (policies.ALLOWED_TOOL, None, False, 401, 401),         # a token is required
        (policies.ALLOWED_TOOL, forged, False, 401, 401),
        (policies.ALLOWED_TOOL, expired, False, 401, 401),
    ]
    for tool, authorization, allowed, native_status, grantwall_status in cases:
        body = policies.tools_call_body(KIB, tool)
        what = (tool, (authorization or "")[:30])
        assert reached_upstream(post(proxies["passthrough"], body, None, authorization=authorization)), what
        for proxy, status in ((native, native_status), (grantwall, grantwall_status)):
            resp = post(proxy, body, None, authorization=authorization)
            assert reached_upstream(resp) is allowed, (proxy.name, what, resp.status_code, resp.text[:200])
            if not allowed:
                assert resp.status_code == status, (proxy.name, what, resp.status_code, resp.text[:200])
        # The same token twice: the second answer (from each filter's cache of verified tokens) is the same.
        again = post(grantwall, body, None, authorization=authorization)
        assert reached_upstream(again) is allowed, what


def test_grantwall_config_has_the_grants_it_claims() -> None:
    config = policies.grantwall_config(1_000)
    rules = config["backends"][0]["policies"][0]["rules"]
    assert sum(len(m.get("names", [])) for r in rules for m in r["mcp"]["methods"]) == 1_000
    assert config["principals"] == sorted(config["principals"])
    assert len(policies.native_rbac(1_000)["policies"]) == 100 + 3   # one per rule, plus KAN's three


@pytest.mark.parametrize("grants", GRANTS)
@pytest.mark.parametrize("size", SIZES)
def test_native_and_grantwall_give_the_same_answers(proxies: dict[str, envoys.BenchEnvoy], size: int,
                                                    grants: int) -> None:
    native, grantwall = proxies[f"native-{grants}"], proxies[f"grantwall-{grants}"]
    cases = [  # (tool, caller's XFCC, allowed?)
        (policies.ALLOWED_TOOL, policies.xfcc(grants), True),
        (policies.DENIED_TOOL, policies.xfcc(grants), False),
        (policies.ALLOWED_TOOL, STRANGER_XFCC, False),     # the identity decides, not only the tool
    ]
    for tool, xfcc, allowed in cases:
        body = policies.tools_call_body(size, tool)
        assert len(body) == size
        assert reached_upstream(post(proxies["passthrough"], body, xfcc)), "pass-through forwards everything"
        n, g = post(native, body, xfcc), post(grantwall, body, xfcc)
        assert reached_upstream(n) is allowed, (tool, xfcc, n.status_code, n.text[:200])
        assert reached_upstream(g) is allowed, (tool, xfcc, g.status_code, g.text[:200])
        if not allowed:
            assert n.status_code == 403                      # RBAC's denial
            assert g.status_code == 200                      # Grantwall's KAN-shaped JSON-RPC denial
            assert json.loads(g.text)["error"]["code"] == 403
            assert json.loads(g.text)["id"] == 42


@pytest.mark.parametrize("grants", GRANTS)
def test_tools_list_is_filtered_by_grantwall_only(proxies: dict[str, envoys.BenchEnvoy], grants: int) -> None:
    body, xfcc = policies.tools_list_body(), policies.xfcc(grants)
    everything = [f"tool-{i:02d}" for i in range(policies.LIST_TOOLS)]
    for name in ("passthrough", f"native-{grants}"):     # KAN lets anyone list tools, unfiltered
        resp = post(proxies[name], body, xfcc, policies.LIST_PATH)
        assert reached_upstream(resp) and policies.listed_tools(resp.text) == everything, name
    resp = post(proxies[f"grantwall-{grants}"], body, xfcc, policies.LIST_PATH)
    assert reached_upstream(resp)
    assert policies.listed_tools(resp.text) == policies.TOOLS       # the caller's ten
