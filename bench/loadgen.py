"""Drive one Envoy with wrk (closed loop, fixed connections) and measure what the proxy spent.

Besides wrk's own numbers, each run records the proxy's CPU time (from /proc) and how many requests
reached the upstream (Envoy's `upstream_rq_total`): CPU per request is the cost that matters even when
the proxy is not the bottleneck, and the upstream count proves allowed calls passed and denied ones
did not.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import policies
from bench.envoys import BENCH, BenchEnvoy, pinned

WRK_SCRIPT = BENCH / "wrk-post.lua"


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk not found: apt-get install -y wrk (Debian's package)")
    return found


@dataclass
class Run:
    config: str
    scenario: str
    rep: int
    requests: int
    seconds: float
    rps: float
    p50_us: int
    p99_us: int
    mean_us: float
    status_errors: int
    socket_errors: int
    upstream_requests: int
    proxy_cpu_s: float

    @property
    def cpu_us_per_request(self) -> float:
        return self.proxy_cpu_s * 1e6 / self.requests if self.requests else float("nan")

    def as_dict(self) -> dict:
        return {**asdict(self), "cpu_us_per_request": round(self.cpu_us_per_request, 2)}


def run_wrk(envoy: BenchEnvoy, *, body_file: Path, headers: dict[str, str], seconds: float, connections: int,
            cpu: int | None, path: str = policies.MCP_PATH, config: str = "", scenario: str = "", rep: int = 0) -> Run:
    """One timed wrk run against `envoy` (1 thread, `connections` keep-alive connections); `headers` name
    the caller (x-forwarded-client-cert and/or authorization)."""
    env = {**os.environ, "BENCH_BODY_FILE": str(body_file),
           "BENCH_XFCC": headers.get("x-forwarded-client-cert", ""),
           "BENCH_AUTHORIZATION": headers.get("authorization", "")}
    cmd = pinned([wrk_binary(), "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
                  "-s", str(WRK_SCRIPT), envoy.url(path)], cpu)
    upstream_before, cpu_before = envoy.upstream_requests(), envoy.cpu_seconds()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60)
    cpu_after, upstream_after = envoy.cpu_seconds(), envoy.upstream_requests()
    line = next((l for l in out.stdout.splitlines() if l.startswith("BENCH_RESULT ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    r = json.loads(line.removeprefix("BENCH_RESULT "))
    secs = r["duration_us"] / 1e6
    return Run(
        config=config, scenario=scenario, rep=rep,
        requests=r["requests"], seconds=secs, rps=r["requests"] / secs if secs else 0.0,
        p50_us=r["p50_us"], p99_us=r["p99_us"], mean_us=r["mean_us"],
        status_errors=r["status_errors"],
        socket_errors=r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"],
        upstream_requests=upstream_after - upstream_before,
        proxy_cpu_s=cpu_after - cpu_before,
    )
