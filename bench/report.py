"""Summaries of the runs: medians and spreads per cell, ratios against the baselines, markdown tables."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from bench.loadgen import Run
from bench.scenarios import Cell, Plan, size_label


def summarize(runs: list[Run]) -> dict:
    rps = [r.rps for r in runs]
    med = statistics.median(rps)
    cpu = [r.cpu_us_per_request for r in runs]
    cpu_med = statistics.median(cpu)
    return {
        "n": len(runs),
        "rps": med,
        "rps_min": min(rps),
        "rps_max": max(rps),
        "spread_pct": 100 * (max(rps) - min(rps)) / med if med else math.nan,
        "p50_ms": statistics.median(r.p50_us for r in runs) / 1000,
        "p99_ms": statistics.median(r.p99_us for r in runs) / 1000,
        "p99_ms_max": max(r.p99_us for r in runs) / 1000,
        "cpu_us": cpu_med,
        "cpu_spread_pct": 100 * (max(cpu) - min(cpu)) / cpu_med if cpu_med else math.nan,
        "cpu_pct": statistics.median(100 * r.proxy_cpu_s / r.seconds for r in runs if r.seconds),
    }


def _fmt(x: float, digits: int = 0) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "–"


def rows(plan: Plan, results: dict[str, list[Run]]) -> list[dict]:
    """One row per non-baseline cell (plus pass-through rows), with ratios of Grantwall to the baselines."""
    stats = {key: summarize(runs) for key, runs in results.items() if runs}
    out = []
    for g in plan.groups:
        base = next((c for c in plan.cells if c.instance.kind == "passthrough" and c.size == g.size
                     and c.op == g.cells[0].op and c.auth == g.cells[0].auth), None)
        base_s = stats.get(base.key) if base else None
        for cell in g.cells:
            s = stats.get(cell.key)
            if s is None:
                continue
            native = next((c for c in g.cells if c.instance.kind == "native" and c.verdict == cell.verdict
                           and c.op == cell.op), None)
            native_s = stats.get(native.key) if native else None
            row = {"cell": cell, "stats": s, "vs_pass": "", "vs_native": "", "cpu_vs_pass": "", "cpu_vs_native": ""}
            if cell.instance.kind == "grantwall":
                if base_s:
                    row["vs_pass"] = _ratio(s["rps"], base_s["rps"])
                    row["cpu_vs_pass"] = _ratio(s["cpu_us"], base_s["cpu_us"])
                if native_s:
                    row["vs_native"] = _ratio(s["rps"], native_s["rps"])
                    row["cpu_vs_native"] = _ratio(s["cpu_us"], native_s["cpu_us"])
            out.append(row)
    return out


HEADER = ("| scenario | configuration | req/s median (min–max) | req/s spread | p50 ms | p99 ms "
          "| proxy CPU µs/req (spread) | GW/pass req/s | GW/native req/s | GW/pass CPU | GW/native CPU |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|")


def markdown_table(plan: Plan, results: dict[str, list[Run]], not_yet: list[tuple[str, str]]) -> str:
    lines = [HEADER]
    for row in rows(plan, results):
        c: Cell = row["cell"]
        s = row["stats"]
        scenario = c.scenario
        if c.instance.kind == "passthrough":
            jwt = ", JWT" if c.auth == "jwt" else ""
            scenario = f"tools/call {size_label(c.size)}{jwt} (baseline)" if c.op == "call" else f"{c.scenario} (baseline)"
        elif c.op == "list":
            scenario += " — filtered to 10" if c.instance.kind == "grantwall" else " — unfiltered (no list filtering)"
        lines.append(
            f"| {scenario} | {c.instance.label} | {_fmt(s['rps'])} ({_fmt(s['rps_min'])}–{_fmt(s['rps_max'])}) "
            f"| {_fmt(s['spread_pct'])}% | {_fmt(s['p50_ms'], 2)} | {_fmt(s['p99_ms'], 2)} "
            f"| {_fmt(s['cpu_us'], 1)} ({_fmt(s['cpu_spread_pct'])}%) "
            f"| {row['vs_pass']} | {row['vs_native']} | {row['cpu_vs_pass']} | {row['cpu_vs_native']} |")
    for what, why in not_yet:
        lines.append(f"| {what} | all | {why} | | | | | | | | |")
    return "\n".join(lines)


def short_table(plan: Plan, results: dict[str, list[Run]]) -> str:
    """The terminal summary: one line per cell."""
    out = [f"{'scenario':<42} {'config':<30} {'req/s':>9} {'spread':>7} {'p50ms':>7} {'p99ms':>7} "
           f"{'cpu µs':>7} {'GW/pass':>8} {'GW/nat':>7}"]
    for row in rows(plan, results):
        c: Cell = row["cell"]
        s = row["stats"]
        out.append(f"{c.scenario:<42} {c.instance.label:<30} {s['rps']:>9,.0f} {s['spread_pct']:>6.0f}% "
                   f"{s['p50_ms']:>7.2f} {s['p99_ms']:>7.2f} {s['cpu_us']:>7.1f} {row['vs_pass']:>8} {row['vs_native']:>7}")
    return "\n".join(out)


def raw_table(all_runs: list[Run]) -> str:
    lines = ["| rep | configuration | scenario | requests | req/s | p50 µs | p99 µs | proxy CPU µs/req | to upstream | non-2xx | socket errors |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in all_runs:
        lines.append(f"| {r.rep} | {r.config} | {r.scenario} | {r.requests} | {r.rps:.0f} | {r.p50_us} | {r.p99_us} "
                     f"| {r.cpu_us_per_request:.1f} | {r.upstream_requests} | {r.status_errors} | {r.socket_errors} |")
    return "\n".join(lines)


def micro_table(micro: dict[str, float]) -> str:
    lines = ["| benchmark | median |", "|---|---|"]
    for name, ns in micro.items():
        shown = f"{ns / 1e6:,.2f} ms" if ns >= 1e6 else f"{ns / 1e3:,.2f} µs" if ns >= 1e3 else f"{ns:,.0f} ns"
        lines.append(f"| {name} | {shown} |")
    return "\n".join(lines)


def save_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, default=str))
