"""The TypeScript SDK MCP server (tests/e2e/ts_server) as a subprocess, read through the same UpstreamLog as
the Python one. Install it first: scripts/ts-server.sh (`make ts-server`; `make test-e2e` does)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


from .procs import spawn
from .upstream import UpstreamLog, UpstreamServer, wait_until_ready

TS_DIR = Path(__file__).with_name("ts_server")


def ts_server_missing() -> str | None:
    """Why the server cannot start here, or None."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (TS_DIR / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir():
        return "tests/e2e/ts_server is not installed (run scripts/ts-server.sh)"
    return None


def start_ts_server(workdir: Path, timeout: float = 20.0, *, script: str = "server.mjs",
                    mode: str = "stateless") -> UpstreamServer:
    """`script`: server.mjs (stateless, differential suite) or side_channels.mjs (sessions, tasks, sampling,
    elicitation; test_side_channels.py)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port_file, log_path, stderr_path = workdir / "port", workdir / "requests.jsonl", workdir / "server.stderr"
    port_file.unlink(missing_ok=True)
    cmd = ["node", str(TS_DIR / script), "--port", "0", "--port-file", str(port_file), "--log", str(log_path)]
    with open(stderr_path, "ab") as err:
        proc = spawn(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=TS_DIR)
    server = UpstreamServer(proc, 0, mode, UpstreamLog(log_path), stderr_path)
    return wait_until_ready(server, port_file, "ts server", timeout)
