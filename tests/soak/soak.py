#!/usr/bin/env python3
"""Saturation soak: real Envoy 1.40 + dist/grantwall.wasm in front of the real Python MCP server, on loopback,
driven as hard as this machine allows by several load processes (asyncio + httpx, keep-alive, mTLS) with a
mix of allowed, denied and malformed requests from several identities. Bounded in time (--seconds) and
aimed only at 127.0.0.1.

Checked at the end, from the upstream's own tool log and every reply:
  - zero wrong decisions: every reply is the one the policy prescribes for that request, and the set of tool
    executions the upstream logged is exactly the set of requests that were allowed (each call carries a
    unique marker in its arguments);
  - zero 5xx from the filter (Envoy's "upstream connect error" replies for requests the filter allowed are
    counted apart as 5xx_upstream and reported);
  - Envoy's memory: VmRSS from /proc/<pid>/status at start (after warm-up), every 30 s, and at the end.

    .venv/bin/python tests/soak/soak.py --seconds 600        # make soak (SOAK_SECONDS)
Writes .cache/soak/<time>/summary.json and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.e2e.clients import ssl_context  # noqa: E402
from tests.e2e.envoy import render_bootstrap, start_envoy  # noqa: E402
from tests.e2e.pki import Pki, spiffe_sa  # noqa: E402
from tests.e2e.upstream import start_mcp_server  # noqa: E402

POLICY = ROOT / "tests" / "e2e" / "policies" / "grants.yaml"
ACCEPT = "application/json, text/event-stream"
IDS = {"alice": 1, "bob": 2, "carol": 3, "anonymous": 4}   # get-sum's `a` says who asked
GRANTS = {"alice": {"echo", "get-sum"}, "bob": {"echo"}, "carol": set(), "anonymous": set()}


def call(tool: str, who: str, seq: int) -> bytes:
    args = {"echo": {"message": f"{who}:{seq}"}, "get-sum": {"a": IDS[who], "b": seq},
            "delete-everything": {"confirm": False}}[tool]
    return json.dumps({"jsonrpc": "2.0", "id": seq, "method": "tools/call",
                       "params": {"name": tool, "arguments": args}}).encode()


# Malformed bodies and what the filter must answer (HTTP status, audit reason in error.data.reason).
MALFORMED = [
    (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"delete-everything"}}', 400, "duplicate-key"),
    (b'\xef\xbb\xbf{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete-everything"}}', 400, "malformed-json"),
    (b'[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete-everything"}}]', 400, "batch-refused"),
    (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","Name":"delete-everything"}}', 400, "ambiguous-key"),
    (b'{"jsonrpc":"2.0","id":1.5,"method":"tools/call","params":{"name":"echo"}}', 400, "invalid-request"),
    (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"', 400, "malformed-json"),
]


def expected(who: str, tool: str) -> str:
    return "allow" if tool in GRANTS[who] else "deny"


async def worker_loop(proc_no: int, conns: int, deadline: float, port: int, certs: dict, ca: str, out: mp.Queue) -> None:
    import httpx

    stats = {"sent": 0, "allow": 0, "deny": 0, "refused": 0, "wrong": 0, "5xx": 0, "5xx_upstream": 0, "errors": 0,
             "examples": []}
    allowed_markers: list[tuple[str, str, int]] = []
    who_list = list(IDS)
    clients = {who: httpx.AsyncClient(verify=ssl_context(Path(ca), certs.get(who)), trust_env=False, timeout=30,
                                      limits=httpx.Limits(max_connections=conns))
               for who in who_list}
    url = f"https://localhost:{port}/mcp"
    headers = {"content-type": "application/json", "accept": ACCEPT}

    async def one(task_no: int) -> None:
        seq = proc_no * 100_000_000 + task_no * 1_000_000
        while time.monotonic() < deadline:
            seq += 1
            who = who_list[seq % len(who_list)]
            kind = seq % 10
            if kind < 3:
                tool = ["echo", "get-sum"][seq % 2]
            elif kind < 7:
                tool = ["delete-everything", "get-sum", "echo"][seq % 3]
            else:
                tool = None
            if tool:
                body, want = call(tool, who, seq), expected(who, tool)
            else:
                body, status_want, reason_want = MALFORMED[seq % len(MALFORMED)]
                want = "refused"
            try:
                resp = await clients[who].post(url, content=body, headers=headers)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                stats["errors"] += 1
                if len(stats["examples"]) < 5:
                    stats["examples"].append(f"{who} {tool}: {type(exc).__name__}: {exc}")
                continue
            stats["sent"] += 1
            if resp.status_code >= 500 and upstream_failure(resp):
                # The filter allowed it; Envoy's connection to the upstream failed (e.g. the server closed an
                # idle keep-alive connection as Envoy reused it). Not a decision, not the filter's 5xx.
                stats["5xx_upstream"] += 1
                if len(stats["examples"]) < 5:
                    stats["examples"].append(f"{who} {tool}: upstream failure HTTP {resp.status_code} {resp.text[:120]}")
                continue
            if resp.status_code >= 500:
                stats["5xx"] += 1
            got = classify(resp)
            ok = got == want
            if want == "refused":
                ok = ok and resp.status_code == status_want and reason_of(resp) == reason_want
            if ok:
                stats[got] += 1
                if got == "allow":
                    allowed_markers.append((who, tool, seq))
            else:
                stats["wrong"] += 1
                if len(stats["examples"]) < 5:
                    stats["examples"].append(f"{who} {tool} want {want} got HTTP {resp.status_code} {resp.text[:200]}")

    await asyncio.gather(*(one(i) for i in range(conns)))
    for c in clients.values():
        await c.aclose()
    out.put((stats, allowed_markers))


def classify(resp) -> str:
    ctype = resp.headers.get("content-type", "")
    text = resp.text
    if ctype.startswith("text/event-stream"):
        data = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
        msg = json.loads(data[-1]) if data else {}
    else:
        try:
            msg = json.loads(text)
        except ValueError:
            return f"non-json {resp.status_code}"
    if resp.status_code == 200 and "result" in msg and not msg["result"].get("isError"):
        return "allow"
    err = msg.get("error") or {}
    if resp.status_code == 200 and err.get("code") == 403:
        return "deny"
    if resp.status_code in (400, 413, 415) and (err.get("data") or {}).get("reason"):
        return "refused"
    return f"other {resp.status_code}"


def upstream_failure(resp) -> bool:
    """Envoy's own local reply for a failed upstream connection (response flags UC/UF/URX)."""
    return resp.text.startswith("upstream connect error or disconnect/reset before headers")


def reason_of(resp) -> str | None:
    try:
        return json.loads(resp.text)["error"]["data"]["reason"]
    except (ValueError, KeyError, TypeError):
        return None


def worker(proc_no, conns, deadline_wall, port, certs, ca, out) -> None:
    deadline = time.monotonic() + (deadline_wall - time.time())
    asyncio.run(worker_loop(proc_no, conns, deadline, port, certs, ca, out))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 600)))
    ap.add_argument("--procs", type=int, default=int(os.environ.get("SOAK_PROCS", 3)))
    ap.add_argument("--conns", type=int, default=int(os.environ.get("SOAK_CONNS", 16)), help="per process")
    ap.add_argument("--concurrency", type=int, default=2, help="Envoy worker threads")
    args = ap.parse_args()
    if not 0 < args.seconds <= 3600:
        ap.error("--seconds must be in (0, 3600]")

    work = ROOT / ".cache" / "soak" / time.strftime("%Y%m%dT%H%M%S")
    work.mkdir(parents=True, exist_ok=True)
    pki = Pki.create(work / "pki")
    certs = {who: tuple(map(str, pki.client(spiffe_sa(who)))) for who in ("alice", "bob", "carol")}
    compiled = __import__("subprocess").run([str(ROOT / "dist" / "grantwall"), "compile", "-f", str(POLICY)],
                                            check=True, capture_output=True, text=True).stdout
    config = json.loads(compiled)
    config["settings"]["auditLog"] = False     # one log line per request would measure the disk, not the filter

    upstream = start_mcp_server(work / "upstream", mode="stateless", json_response=True)
    envoy = None
    try:
        def no_access_log(boot: dict) -> None:
            # Hundreds of thousands of lines would measure the disk, not the filter.
            for listener in boot["static_resources"]["listeners"]:
                for chain in listener["filter_chains"]:
                    for f in chain["filters"]:
                        for log in f["typed_config"].get("access_log", []):
                            log["typed_config"]["path"] = "/dev/null"

        boot = render_bootstrap(ca_cert=pki.ca_cert, server_cert=pki.server_cert, server_key=pki.server_key,
                                upstream_port=upstream.port, access_log=work / "access.log",
                                plugin_config=json.dumps(config), wasm_path=ROOT / "dist" / "grantwall.wasm",
                                patch=no_access_log)
        envoy = start_envoy(work / "envoy", boot, concurrency=args.concurrency)
        pid = envoy.proc.pid
        samples = [(0.0, rss_kib(pid))]
        start = time.time()
        deadline = start + args.seconds
        out: mp.Queue = mp.Queue()
        procs = [mp.Process(target=worker, args=(i, args.conns, deadline, envoy.port, certs, str(pki.ca_cert), out))
                 for i in range(args.procs)]
        for p in procs:
            p.start()
        load = []
        while time.time() < deadline:
            time.sleep(min(30.0, max(0.0, deadline - time.time())))
            samples.append((round(time.time() - start, 1), rss_kib(pid)))
            load.append(os.getloadavg()[0])
        results = [out.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(timeout=30)
        samples.append((round(time.time() - start, 1), rss_kib(pid)))

        totals = {k: sum(r[0][k] for r in results) for k in ("sent", "allow", "deny", "refused", "wrong", "5xx", "5xx_upstream",
                                                          "errors")}
        examples = [e for r in results for e in r[0]["examples"]][:10]
        client_allowed = {(w, t, s) for r in results for (w, t, s) in r[1]}

        # The upstream's side: every execution must be a request the client saw allowed, and vice versa.
        executed = set()
        not_granted = 0
        for e in upstream.log.entries("tool"):
            a = e.get("arguments", {})
            if e["tool"] == "echo":
                who, _, seq = a["message"].partition(":")
                key = (who, "echo", int(seq))
            elif e["tool"] == "get-sum":
                who = {v: k for k, v in IDS.items()}.get(a["a"], "?")
                key = (who, "get-sum", a["b"])
            else:
                who, key = "?", ("?", e["tool"], 0)
            if e["tool"] not in GRANTS.get(who, set()):
                not_granted += 1
            executed.add(key)
        summary = {
            "seconds": args.seconds, "load_procs": args.procs, "conns_per_proc": args.conns,
            "envoy_concurrency": args.concurrency, **totals,
            "requests_per_second": round(totals["sent"] / args.seconds, 1),
            "upstream_executions": len(executed),
            "executions_not_granted": not_granted,
            "executions_without_allowed_reply": len(executed - client_allowed),
            "allowed_replies_without_execution": len(client_allowed - executed),
            # "start" is after the first 30 s of load (VM, connection pools and buffers warmed up).
            "envoy_rss_kib": {"before_load": samples[0][1], "start": samples[min(1, len(samples) - 1)][1],
                              "end": samples[-1][1], "samples": samples},
            "loadavg_1m": {"min": min(load, default=0), "max": max(load, default=0)},
            "examples": examples,
            "workdir": str(work),
        }
        (work / "summary.json").write_text(json.dumps(summary, indent=1))
        print(json.dumps(summary, indent=1))
        bad = (totals["wrong"] or totals["5xx"] or not_granted or summary["executions_without_allowed_reply"]
               or summary["allowed_replies_without_execution"] or totals["sent"] == 0
               or totals["5xx_upstream"] > totals["sent"] // 1000)   # more than 0.1%: the rig is broken
        return 1 if bad else 0
    finally:
        if envoy is not None:
            envoy.stop()
        upstream.stop()


if __name__ == "__main__":
    sys.exit(main())
