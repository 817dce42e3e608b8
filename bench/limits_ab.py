#!/usr/bin/env python3
"""What a limit check costs per request in Envoy: the same filter build, with and without limits.

    .venv/bin/python bench/limits_ab.py [SIZE_BYTES]

Runs the bench policy (10 grants) three ways under the same wrk load, interleaved like bench/ab.py:
`none` (no limits), `rate` (one per-identity and one per-identity-and-tool token bucket, large enough never
to refuse), `rate+fanout` (the same plus maxFanOut and a context budget). Prints medians of req/s and proxy
CPU µs per request; the difference to `none` is the limit check (shared-data reads, CAS writes, SHA-256 keys).
BENCH_SECONDS / BENCH_REPS / BENCH_CONNECTIONS as in bench/run.py.
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

BIG = 1_000_000


def limits(fan_out: bool) -> dict:
    rule = {"name": "bench/limits/every-agent", "backend": 0,
            "rateLimits": [{"key": "identity", "requests": BIG, "periodSeconds": 1, "burst": BIG},
                           {"key": "identityTool", "requests": BIG, "periodSeconds": 1, "burst": BIG}]}
    if fan_out:
        rule.update(maxFanOut=100_000, contextBudgetBytes=1 << 20)
    return {"rules": [rule]}


def main() -> int:
    sizes = [int(a) for a in sys.argv[1:]] or [1024]
    seconds = float(os.environ.get("BENCH_SECONDS", 3))
    reps = int(os.environ.get("BENCH_REPS", 5))
    connections = int(os.environ.get("BENCH_CONNECTIONS", 16))
    wasm = (REPO_ROOT / "dist" / "grantwall.wasm").resolve()
    work = REPO_ROOT / ".cache" / "bench" / "limits"
    shutil.rmtree(work, ignore_errors=True)
    up = envoys.start_upstream(cpu=1, binary=envoys.build_upstream())
    proxies = {}
    try:
        for name, extra in (("none", None), ("rate", limits(False)), ("rate+fanout", limits(True))):
            boot = envoys.render("grantwall", upstream_port=up.port, grants=10, wasm=wasm)
            if extra is not None:
                plugin = envoys.http_filters(boot)[0]["typed_config"]["config"]
                config = json.loads(plugin["configuration"]["value"])
                config["limits"] = extra
                plugin["configuration"]["value"] = json.dumps(config, separators=(",", ":"))
            proxies[name] = envoys.start(name, boot, work / name.replace("+", "-"), cpu=0)
        cells = [(p, size) for size in sizes for p in proxies]
        results: dict[tuple, list] = {c: [] for c in cells}
        for rep in range(reps + 1):                      # rep 0 warms up
            k = rep % len(cells)
            for cell in cells[k:] + cells[:k]:
                p, size = cell
                body = work / f"body-{size}.json"
                if not body.exists():
                    body.write_bytes(policies.tools_call_body(size, policies.ALLOWED_TOOL))
                run = run_wrk(proxies[p], body_file=body, headers=policies.caller_headers(10), seconds=1 if rep == 0 else seconds,
                              connections=connections, cpu=1)
                if rep:
                    results[cell].append(run)
    finally:
        for e in proxies.values():
            e.stop()
        up.stop()
    print(f"{'limits':<12} {'size':>8} {'req/s':>9} {'cpu µs/req':>11}")
    for (p, size), runs in results.items():
        rps = statistics.median(r.rps for r in runs)
        cpu = statistics.median(r.cpu_us_per_request for r in runs)
        print(f"{p:<12} {size:>8} {rps:>9,.0f} {cpu:>11.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
