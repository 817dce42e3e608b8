#!/usr/bin/env python3
"""Where a Grantwall request's time goes: proxy CPU per request of configurations that add one piece at a time.

    .venv/bin/python bench/breakdown.py [SIZE_BYTES]      # default 1024; allowed tools/call, 10 grants

  pass-through                 Envoy alone
  + buffer filter              Envoy holds the whole body before forwarding (what any body-inspecting filter costs)
  native MCP filter only       Envoy's MCP parser, no RBAC
  native MCP + RBAC            the KAN chain
  empty Wasm filter            only with NULL_WASM=path: a Proxy-Wasm filter that does nothing (the VM's fixed cost)
  Grantwall, no policy         the Wasm VM's callbacks, one header read, identity, the audit record; no buffering
  Grantwall                    the full path: buffering, body copy into the VM, parse, decide

Same load discipline as bench/run.py (interleaved, rotated; BENCH_SECONDS / BENCH_REPS / BENCH_CONNECTIONS).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench import envoys, policies  # noqa: E402
from bench.loadgen import run_wrk  # noqa: E402

BUFFER = {"name": "envoy.filters.http.buffer", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer", "max_request_bytes": 4194304}}


def configs(upstream_port: int, wasm: Path) -> dict[str, dict]:
    out = {"pass-through": envoys.render("passthrough", upstream_port=upstream_port)}
    buffered = envoys.render("passthrough", upstream_port=upstream_port)
    envoys.http_filters(buffered).insert(0, BUFFER)
    out["+ buffer filter"] = buffered
    mcp_only = envoys.render("native", upstream_port=upstream_port)
    envoys.http_filters(mcp_only)[:] = [f for f in envoys.http_filters(mcp_only) if f["name"] != "envoy.filters.http.rbac"]
    out["native MCP filter only"] = mcp_only
    out["native MCP + RBAC"] = envoys.render("native", upstream_port=upstream_port)
    no_policy = envoys.render("grantwall", upstream_port=upstream_port, wasm=wasm)
    plugin = next(f for f in envoys.http_filters(no_policy) if f["name"] == "grantwall")["typed_config"]["config"]
    config = policies.grantwall_config(10)
    config["backends"][0]["policies"] = []
    plugin["configuration"]["value"] = json.dumps(config)
    if os.environ.get("NULL_WASM"):
        out["empty Wasm filter"] = envoys.render("grantwall", upstream_port=upstream_port,
                                                 wasm=Path(os.environ["NULL_WASM"]).resolve())
    out["Grantwall, no policy"] = no_policy
    out["Grantwall"] = envoys.render("grantwall", upstream_port=upstream_port, wasm=wasm)
    return out


def main() -> int:
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    wasm = Path(os.environ.get("GRANTWALL_WASM", REPO_ROOT / "dist" / "grantwall.wasm")).resolve()
    seconds = float(os.environ.get("BENCH_SECONDS", 3))
    reps = int(os.environ.get("BENCH_REPS", 5))
    connections = int(os.environ.get("BENCH_CONNECTIONS", 16))
    work = REPO_ROOT / ".cache" / "bench" / "breakdown"
    shutil.rmtree(work, ignore_errors=True)
    body = work / "body.json"
    body.parent.mkdir(parents=True)
    body.write_bytes(policies.tools_call_body(size, policies.ALLOWED_TOOL))
    up = envoys.start_upstream(cpu=1, binary=envoys.build_upstream())
    running = {}
    try:
        for i, (name, boot) in enumerate(configs(up.port, wasm).items()):
            running[name] = envoys.start(name, boot, work / f"envoy-{i}", cpu=0)
        results: dict[str, list] = {name: [] for name in running}
        names = list(running)
        for rep in range(reps + 1):                      # rep 0 warms up
            k = rep % len(names)
            for name in names[k:] + names[:k]:
                run = run_wrk(running[name], body_file=body, headers=policies.caller_headers(10),
                              seconds=1 if rep == 0 else seconds, connections=connections, cpu=1)
                if run.upstream_requests < run.requests:
                    raise RuntimeError(f"{name}: only {run.upstream_requests}/{run.requests} reached the upstream")
                if rep:
                    results[name].append(run)
    finally:
        for e in running.values():
            e.stop()
        up.stop()
    base = statistics.median(r.cpu_us_per_request for r in results["pass-through"])
    print(f"allowed tools/call, {size} B, 10 grants; proxy CPU per request (median of {reps})")
    print(f"{'configuration':<26} {'req/s':>9} {'cpu µs/req':>11} {'vs pass':>9}")
    for name, runs in results.items():
        cpu = statistics.median(r.cpu_us_per_request for r in runs)
        print(f"{name:<26} {statistics.median(r.rps for r in runs):>9,.0f} {cpu:>11.1f} {cpu - base:>+9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
