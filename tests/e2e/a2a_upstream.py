"""The a2a-sdk agent (a2a_server.py) as a subprocess, read through the same UpstreamLog as the MCP servers;
used by test_a2a.py and the demo's A2A hop."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .procs import spawn
from .upstream import UpstreamLog, UpstreamServer, wait_until_ready

SERVER = Path(__file__).with_name("a2a_server.py")


def start_a2a_server(workdir: Path, *, compat: bool = True, signed: bool = False,
                     timeout: float = 30.0) -> UpstreamServer:
    """Start the agent on a free port; `compat` also serves the A2A 0.3 names and /v1 routes, `signed` gives
    its card a signature."""
    workdir.mkdir(parents=True, exist_ok=True)
    port_file, log_path, stderr_path = workdir / "port", workdir / "requests.jsonl", workdir / "server.stderr"
    port_file.unlink(missing_ok=True)
    cmd = [sys.executable, str(SERVER), "--port", "0", "--port-file", str(port_file), "--log", str(log_path)]
    if compat:
        cmd.append("--compat")
    if signed:
        cmd.append("--signed")
    with open(stderr_path, "ab") as err:
        proc = spawn(cmd, stdout=subprocess.DEVNULL, stderr=err)
    server = UpstreamServer(proc, 0, "a2a", UpstreamLog(log_path), stderr_path)
    return wait_until_ready(server, port_file, "a2a_server.py", timeout)
