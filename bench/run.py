#!/usr/bin/env python3
"""`make bench`: Grantwall vs Envoy pass-through vs Envoy's native MCP+RBAC, side by side, on loopback.

    make bench                     # full run (~9 min once built, 10.5 fresh): micro-benchmarks + load matrix,
                                   # results written into docs/benchmarks.md
    BENCH_QUICK=1 make bench       # ~1.5 min smoke run: 1 KiB bodies, 10 and 1,000 grants, list, JWT; no criterion;
                                   # results only printed and saved under .cache/bench/

Knobs (environment): BENCH_SECONDS, BENCH_REPS, BENCH_CONNECTIONS (wrk's keep-alive connections),
BENCH_PROXY_CPU / BENCH_LOAD_CPU (CPUs for Envoy and for wrk + upstream; default 0 and 1),
BENCH_MICRO=0|1 (criterion), BENCH_DOCS=0|1 (rewrite docs/benchmarks.md), GRANTWALL_WASM (the filter).
`bench/run.py --report .cache/bench/results-full.json` re-renders the tables (and the docs, in full mode)
from a saved run without measuring again.

Every Envoy runs with --concurrency 1 pinned to the proxy CPU; wrk (one thread) and the Rust upstream
share the other CPU. Cells of one group (same body and policy size) run back to back and their order
rotates every repetition, so drift in the machine's load hits all configurations alike.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench import envoys, report, scenarios  # noqa: E402
from bench.loadgen import Run, run_wrk, wrk_binary  # noqa: E402

CACHE = REPO_ROOT / ".cache" / "bench"
DOCS = REPO_ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:results:begin -->", "<!-- bench:results:end -->"
MICRO_BENCHES = ("engine", "jwt")


def env_num(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def flag(name: str, default: bool) -> bool:
    return os.environ.get(name, "1" if default else "0").lower() in ("1", "true", "yes")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def ensure_wrk() -> str:
    """wrk from Debian; installed here when missing and we may (root with apt-get), as the issue's setup says."""
    if shutil.which("wrk") is None and os.geteuid() == 0 and shutil.which("apt-get"):
        log("wrk missing: apt-get install -y wrk")
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    return wrk_binary()


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine() -> dict:
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    mem_kib = next(int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal"))
    envoy_version = subprocess.run([envoys.envoy_binary(), "--version"], capture_output=True, text=True).stdout.strip()
    wrk_version = subprocess.run([wrk_binary(), "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(), "envoy": envoy_version.split("version:")[-1].strip(),
        "wrk": wrk_version.strip(), "rustc": rustc, "python": platform.python_version(),
    }


def run_micro() -> dict[str, float]:
    """criterion benches of the core (parse/decide/request/load, and JWT verification with its cache);
    returns median ns per benchmark id."""
    started = time.time()
    benches = [arg for bench in MICRO_BENCHES for arg in ("--bench", bench)]
    log(f"micro-benchmarks: cargo bench -p grantwall-core {' '.join(benches)}")
    subprocess.run(["cargo", "bench", "--locked", "-p", "grantwall-core", *benches, "--",
                    "--warm-up-time", "1", "--measurement-time", "1", "--noplot"], cwd=REPO_ROOT, check=True)
    found = []
    for bench_json in (REPO_ROOT / "target" / "criterion").glob("**/new/benchmark.json"):
        estimates = bench_json.with_name("estimates.json")
        if estimates.stat().st_mtime >= started:     # older ones are left over from earlier runs
            found.append((estimates.stat().st_mtime, json.loads(bench_json.read_text())["full_id"],
                          json.loads(estimates.read_text())["median"]["point_estimate"]))
    return {full_id: ns for _, full_id, ns in sorted(found)}   # in the order criterion ran them


def check(cell: scenarios.Cell, run: Run) -> str | None:
    """Whether the run behaved as its configuration must: allowed calls reached the upstream, denied did not."""
    if cell.forwarded:
        if run.status_errors or run.upstream_requests < run.requests:
            return (f"{cell.instance.name} {cell.scenario}: expected every request at the upstream, got "
                    f"{run.upstream_requests}/{run.requests} and {run.status_errors} non-2xx")
    elif run.upstream_requests:
        return f"{cell.instance.name} {cell.scenario}: {run.upstream_requests} denied requests reached the upstream"
    return None


def write_docs(section: str) -> None:
    text = DOCS.read_text()
    if BEGIN not in text or END not in text:
        raise RuntimeError(f"{DOCS} lacks the {BEGIN} / {END} markers")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOCS.write_text(f"{head}{BEGIN}\n{section}\n{END}{tail}")


def plan_for(quick: bool, seconds: float, reps: int, connections: int) -> scenarios.Plan:
    return (scenarios.quick_plan if quick else scenarios.full_plan)(seconds=seconds, reps=reps, connections=connections)


def finish(plan: scenarios.Plan, info: dict, micro: dict[str, float], all_runs: list[Run]) -> None:
    """Print the summary and, in full mode (or with BENCH_DOCS=1), rewrite the results in docs/benchmarks.md."""
    by_label = {(c.instance.label, c.scenario): c.key for c in plan.cells}
    results: dict[str, list[Run]] = {c.key: [] for c in plan.cells}
    for run in all_runs:
        results[by_label[(run.config, run.scenario)]].append(run)
    table = report.markdown_table(plan, results, scenarios.NOT_YET)
    print()
    print(report.short_table(plan, results))
    for what, why in scenarios.NOT_YET:
        print(f"{what}: {why}")
    if micro:
        print()
        print(report.micro_table(micro))
    print(f"\nwasm: {info['wasm_bytes']:,} bytes; load average before {info['load_before']}, after {info['load_after']}; "
          f"{info['elapsed_s']}s")
    if flag("BENCH_DOCS", info["mode"] == "full"):
        write_docs(section(info, table, micro, all_runs))
        print(f"results written to {DOCS.relative_to(REPO_ROOT)}")


def rerender(path: Path) -> int:
    saved = json.loads(path.read_text())
    info = saved["info"]
    plan = plan_for(info["mode"] == "quick", info["seconds"], info["reps"], info["connections"])
    fields = set(Run.__dataclass_fields__)
    runs = [Run(**{k: v for k, v in r.items() if k in fields}) for r in saved["runs"]]
    finish(plan, info, saved["micro_ns"], runs)
    return 0


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--report":
        return rerender(Path(sys.argv[2]))
    quick = flag("BENCH_QUICK", False)
    seconds = env_num("BENCH_SECONDS", 2)
    reps = int(env_num("BENCH_REPS", 2 if quick else 4))
    connections = int(env_num("BENCH_CONNECTIONS", 16))
    multi = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    proxy_cpu = int(env_num("BENCH_PROXY_CPU", 0)) if multi else None
    load_cpu = int(env_num("BENCH_LOAD_CPU", 1)) if multi else None
    wasm = Path(os.environ.get("GRANTWALL_WASM", REPO_ROOT / "dist" / "grantwall.wasm")).resolve()
    if not wasm.exists():
        print(f"{wasm} missing: run `make build` first", file=sys.stderr)
        return 2
    ensure_wrk()
    plan = plan_for(quick, seconds, reps, connections)
    mode = "quick" if quick else "full"
    started = time.time()
    info = {"mode": mode, "machine": machine(), "load_before": load_average(), "wasm_bytes": wasm.stat().st_size,
            "seconds": seconds, "reps": reps, "connections": connections, "proxy_cpu": proxy_cpu, "load_cpu": load_cpu,
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    log(f"{mode} run: {len(plan.cells)} cells x {reps} reps x {seconds:g}s, ~{plan.estimated_seconds() / 60:.1f} min of load; "
        f"load average {info['load_before']}")

    micro = run_micro() if flag("BENCH_MICRO", not quick) else {}
    upstream_bin = envoys.build_upstream()

    work = CACHE / mode
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    bodies: dict[str, Path] = {}
    for cell in plan.cells:
        if cell.body_key not in bodies:
            bodies[cell.body_key] = work / f"body-{cell.body_key}.json"
            bodies[cell.body_key].write_bytes(cell.body())

    upstream = envoys.start_upstream(cpu=load_cpu, binary=upstream_bin)
    running: dict[scenarios.Instance, envoys.BenchEnvoy] = {}
    startup: dict[str, float] = {}
    all_runs: list[Run] = []
    try:
        for inst in plan.instances:
            t0 = time.monotonic()
            boot = envoys.render(inst.kind, upstream_port=upstream.port, grants=inst.grants, wasm=wasm,
                                 audit_log=inst.audit_log, jwt=inst.jwt)
            # The audit variant logs at info, so each decision's line is really written (to its envoy.log).
            running[inst] = envoys.start(inst.name, boot, work / inst.name, cpu=proxy_cpu,
                                         log_level="info" if inst.audit_log else "warning")
            startup[inst.name] = time.monotonic() - t0
            log(f"started {inst.name} in {startup[inst.name]:.1f}s")

        def one(cell: scenarios.Cell, rep: int, secs: float) -> Run:
            run = run_wrk(running[cell.instance], body_file=bodies[cell.body_key], path=cell.path,
                          headers=cell.headers(), seconds=secs, connections=connections, cpu=load_cpu,
                          config=cell.instance.label, scenario=cell.scenario, rep=rep)
            problem = check(cell, run)
            if problem:
                raise RuntimeError(problem + "\n" + running[cell.instance].log_tail())
            return run

        log(f"warm-up: {plan.warmup_seconds:g}s per cell")
        for cell in plan.cells:
            one(cell, 0, plan.warmup_seconds)
        for rep in range(1, reps + 1):
            for g in plan.groups:
                k = rep % len(g.cells)
                for cell in g.cells[k:] + g.cells[:k]:
                    all_runs.append(one(cell, rep, seconds))
            log(f"rep {rep}/{reps} done; load average {load_average()}")
    finally:
        for e in running.values():
            e.stop()
        upstream.stop()

    info["load_after"] = load_average()
    info["elapsed_s"] = round(time.time() - started)
    info["startup_s"] = {k: round(v, 1) for k, v in startup.items()}
    saved = CACHE / f"results-{mode}.json"
    report.save_json(saved, {"info": info, "micro_ns": micro, "runs": [r.as_dict() for r in all_runs]})
    finish(plan, info, micro, all_runs)
    print(f"raw runs in {saved.relative_to(REPO_ROOT)}")
    return 0


def section(info: dict, table: str, micro: dict[str, float], all_runs: list[Run]) -> str:
    m = info["machine"]
    startup = ", ".join(f"{k} {v}s" for k, v in info["startup_s"].items())
    parts = [
        f"_Generated by `make bench` ({info['mode']} mode) on {info['started']}; {info['elapsed_s']} s._",
        "",
        "**Machine**: "
        f"{m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}; Envoy {m['envoy']}; "
        f"{m['wrk']}; {m['rustc']}. Load average (1/5/15 min) before {info['load_before']}, after {info['load_after']}. "
        f"Envoy pinned to CPU {info['proxy_cpu']}, wrk and the upstream to CPU {info['load_cpu']}; "
        f"{info['reps']} repetitions x {info['seconds']} s per cell, wrk -t1 -c{info['connections']}.",
        "",
        f"**Wasm size**: dist/grantwall.wasm = {info['wasm_bytes']:,} bytes. **Envoy start-up** (config load to LIVE): {startup}.",
        "",
        table,
    ]
    if micro:
        parts += ["", "**Micro-benchmarks** (criterion, native x86-64, release profile = the shipped opt-level):", "",
                  report.micro_table(micro)]
    parts += ["", "<details><summary>Raw runs</summary>", "", report.raw_table(all_runs), "", "</details>"]
    return "\n".join(parts)


if __name__ == "__main__":
    sys.exit(main())
