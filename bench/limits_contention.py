#!/usr/bin/env python3
"""No lost updates: hammer one token bucket from both Envoy workers and count what passes.

    .venv/bin/python bench/limits_contention.py [WASM] [RUNS]

Envoy with 2 workers, the bench policy plus one per-identity bucket of 5,000 tokens (refilling once a
day), wrk with 32 keep-alive connections for 4 s (~15-20k requests/s on loopback, ~60k requests): exactly
5,000 must reach the upstream. Exits 1 if any run lets more (or fewer) through. A build that writes the
shared bucket without compare-and-swap lets ~5,035 through in most runs on a 2-core machine; this one, none.
Needs `make build` and wrk (Debian package).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench import envoys, policies  # noqa: E402
from bench.loadgen import run_wrk  # noqa: E402

TOKENS = 5000


def one_run(wasm: Path, work: Path) -> tuple[int, int]:
    up = envoys.start_upstream(cpu=None, binary=envoys.build_upstream())
    try:
        boot = envoys.render("grantwall", upstream_port=up.port, grants=10, wasm=wasm)
        plugin = envoys.http_filters(boot)[0]["typed_config"]["config"]
        config = json.loads(plugin["configuration"]["value"])
        config["limits"] = {"rules": [{"name": "bench/limits/one-bucket", "backend": 0, "rateLimits": [
            {"key": "identity", "requests": TOKENS, "periodSeconds": 86400, "burst": TOKENS}]}]}
        plugin["configuration"]["value"] = json.dumps(config, separators=(",", ":"))
        envoy = envoys.start("contention", boot, work, cpu=None, concurrency=2)
        try:
            body = work / "body.json"
            body.write_bytes(policies.tools_call_body(256, policies.ALLOWED_TOOL))
            run = run_wrk(envoy, body_file=body, headers=policies.caller_headers(10), seconds=4, connections=32, cpu=None)
            return run.requests, envoy.upstream_requests()
        finally:
            envoy.stop()
    finally:
        up.stop()


def main() -> int:
    wasm = Path(sys.argv[1] if len(sys.argv) > 1 else REPO_ROOT / "dist" / "grantwall.wasm").resolve()
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    failed = 0
    for i in range(runs):
        work = REPO_ROOT / ".cache" / "bench" / "contention" / str(i)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        sent, passed = one_run(wasm, work)
        ok = passed == TOKENS
        failed += not ok
        print(f"run {i + 1}: {sent:,} requests, {passed:,} reached the upstream, bucket {TOKENS:,}: {'ok' if ok else 'WRONG'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
