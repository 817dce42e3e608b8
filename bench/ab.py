#!/usr/bin/env python3
"""Compare Grantwall builds side by side under the same load (for optimisation work).

    .venv/bin/python bench/ab.py OLD.wasm NEW.wasm [MORE.wasm ...] [SIZE_BYTES ...]

Runs every build (same policy: 10 grants) and pass-through, interleaved and rotated like `make bench`,
for allowed and denied `tools/call` bodies of each size (default 1 KiB), and prints medians of req/s
and proxy CPU per request. BENCH_SECONDS / BENCH_REPS / BENCH_CONNECTIONS as in bench/run.py.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench import envoys, policies  # noqa: E402
from bench.loadgen import run_wrk  # noqa: E402


def main() -> int:
    wasm_args = [a for a in sys.argv[1:] if a.endswith(".wasm")]
    if len(wasm_args) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    builds = {Path(a).stem: Path(a).resolve() for a in wasm_args}
    sizes = [int(a) for a in sys.argv[1:] if not a.endswith(".wasm")] or [1024]
    seconds = float(os.environ.get("BENCH_SECONDS", 3))
    reps = int(os.environ.get("BENCH_REPS", 5))
    connections = int(os.environ.get("BENCH_CONNECTIONS", 16))
    work = REPO_ROOT / ".cache" / "bench" / "ab"
    shutil.rmtree(work, ignore_errors=True)
    up = envoys.start_upstream(cpu=1, binary=envoys.build_upstream())
    proxies = {}
    try:
        proxies["pass"] = envoys.start("pass", envoys.render("passthrough", upstream_port=up.port), work / "pass", cpu=0)
        for name, wasm in builds.items():
            boot = envoys.render("grantwall", upstream_port=up.port, grants=10, wasm=wasm)
            proxies[name] = envoys.start(name, boot, work / name, cpu=0)
        cells = [(p, size, verdict) for size in sizes for verdict in ("allow", "deny") for p in proxies
                 if not (p == "pass" and verdict == "deny")]
        results: dict[tuple, list] = {c: [] for c in cells}
        for rep in range(reps + 1):                      # rep 0 warms up
            k = rep % len(cells)
            for cell in cells[k:] + cells[:k]:
                p, size, verdict = cell
                tool = policies.ALLOWED_TOOL if verdict == "allow" else policies.DENIED_TOOL
                body = work / f"body-{size}-{verdict}.json"
                if not body.exists():
                    body.write_bytes(policies.tools_call_body(size, tool))
                run = run_wrk(proxies[p], body_file=body, headers=policies.caller_headers(10), seconds=1 if rep == 0 else seconds,
                              connections=connections, cpu=1)
                if rep:
                    results[cell].append(run)
    finally:
        for e in proxies.values():
            e.stop()
        up.stop()
    print(f"{'build':<16} {'size':>8} {'verdict':<6} {'req/s':>9} {'cpu µs/req':>11}")
    for (p, size, verdict), runs in results.items():
        rps = statistics.median(r.rps for r in runs)
        cpu = statistics.median(r.cpu_us_per_request for r in runs)
        print(f"{p:<16} {size:>8} {verdict:<6} {rps:>9,.0f} {cpu:>11.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
