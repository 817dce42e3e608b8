"""What each MCP server does with the differential suite's bodies when reached DIRECTLY (no gateway), next
to what the filter decides: the table in docs/security.md. Not a test; run it to refresh the table:

    .venv/bin/python -m tests.e2e.differential_report > /tmp/table.md
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import httpx

from .test_differential import CASES
from .ts_upstream import start_ts_server
from .upstream import start_mcp_server


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="grantwall-diff-"))
    servers = {"python": start_mcp_server(work / "py", mode="stateless"), "typescript": start_ts_server(work / "ts")}
    try:
        print("| case | filter | Python `mcp` direct | TypeScript SDK direct |")
        print("|---|---|---|---|")
        for name, (method, target, headers, body, outcome) in CASES.items():
            cells = []
            for server in servers.values():
                server.log.clear()
                try:
                    # httpx would normalise dot segments and cannot send a lower-case method as-is; those
                    # rows are marked n/a.
                    if method != method.upper() or "/../" in target:
                        cells.append("n/a")
                        continue
                    resp = httpx.request(method, f"http://127.0.0.1:{server.port}{target}", content=body,
                                         headers=headers, timeout=10)
                except httpx.HTTPError as exc:
                    cells.append(type(exc).__name__)
                    continue
                ran = server.log.tools_executed()
                cells.append(f"**ran {', '.join(ran)}**" if ran else f"HTTP {resp.status_code}, nothing ran")
            verdict = outcome[0] if len(outcome) == 1 else f"{outcome[0]} {outcome[1]} `{outcome[2]}`"
            print(f"| {name} | {verdict} | {cells[0]} | {cells[1]} |")
    finally:
        for s in servers.values():
            s.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
