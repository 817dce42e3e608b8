"""The upstream MCP server as a subprocess, and the reader for what it saw.

The server (mcp_server.py) runs in its own process so that the SDK's event loop, session
manager and logging are exactly those of a deployed server, and so that its request log is
independent evidence: the tests compare it with what the gateway and the client report.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import httpx

from .procs import spawn, stop

SERVER_SCRIPT = Path(__file__).with_name("mcp_server.py")


class UpstreamLog:
    """Reads the server's JSON-lines log; `clear()` hides everything logged before it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0

    def clear(self) -> None:
        self._offset = self.path.stat().st_size if self.path.exists() else 0

    def entries(self, kind: str | None = None) -> list[dict]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        # A line still being written has no newline yet: leave it for the next read.
        lines = data.split(b"\n")[:-1]
        out = [json.loads(line) for line in lines if line.strip()]
        return [e for e in out if kind is None or e.get("kind") == kind]

    def requests(self, http_method: str | None = None) -> list[dict]:
        """HTTP requests that reached the server, in arrival order."""
        return [e for e in self.entries("request") if http_method is None or e["method"] == http_method]

    def rpc(self) -> list[dict]:
        """Every JSON-RPC message received (flattened across batches): method, id, name, uri."""
        return [m for e in self.entries("request") for m in e.get("rpc", [])]

    def rpc_methods(self) -> list[str]:
        return [m["method"] for m in self.rpc() if "method" in m]

    def tool_calls_received(self) -> list[str]:
        """Tool names of tools/call requests that arrived (whether or not they then ran)."""
        return [m.get("name") for m in self.rpc() if m.get("method") == "tools/call"]

    def tools_executed(self) -> list[str]:
        """Tool functions that actually ran on the server."""
        return [e["tool"] for e in self.entries("tool")]

    def wait_for(self, predicate: Callable[["UpstreamLog"], bool], timeout: float = 5.0) -> bool:
        """Poll until `predicate(self)` holds (for things clients do in the background, like GET)."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


@dataclass
class UpstreamServer:
    proc: subprocess.Popen
    port: int
    mode: str
    log: UpstreamLog
    stderr_path: Path
    _stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        """Direct URL (bypassing Envoy) — for comparisons only; tests go through Envoy."""
        return f"http://127.0.0.1:{self.port}/mcp"

    def stop(self) -> None:
        stop(self.proc)

    def stderr_tail(self, lines: int = 30) -> str:
        text = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def start_mcp_server(workdir: Path, *, mode: str = "stateful", json_response: bool = False,
                     python: str = sys.executable, timeout: float = 20.0) -> UpstreamServer:
    """Start mcp_server.py on a free port and return once /healthz answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    port_file = workdir / "port"
    port_file.unlink(missing_ok=True)
    log_path = workdir / "requests.jsonl"
    stderr_path = workdir / "server.stderr"
    cmd = [python, str(SERVER_SCRIPT), "--port", "0", "--port-file", str(port_file), "--log", str(log_path),
           "--mode", mode]
    if json_response:
        cmd.append("--json-response")
    with open(stderr_path, "ab") as err:
        proc = spawn(cmd, stdout=subprocess.DEVNULL, stderr=err)
    server = UpstreamServer(proc, 0, mode, UpstreamLog(log_path), stderr_path)
    return wait_until_ready(server, port_file, "mcp_server.py", timeout)


def wait_until_ready(server: UpstreamServer, port_file: Path, what: str, timeout: float) -> UpstreamServer:
    """Poll until the server has written its port and answers /healthz; stop it if it never does."""
    try:
        deadline = time.monotonic() + timeout
        with httpx.Client(trust_env=False, timeout=2) as http:
            while True:
                if server.proc.poll() is not None:
                    raise RuntimeError(f"{what} exited with {server.proc.returncode}:\n{server.stderr_tail()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{what} not ready after {timeout}s:\n{server.stderr_tail()}")
                if not server.port and port_file.exists():
                    server.port = int(port_file.read_text())
                if server.port:
                    try:
                        if http.get(f"http://127.0.0.1:{server.port}/healthz").status_code == 200:
                            return server
                    except httpx.TransportError:
                        pass
                time.sleep(0.05)
    except BaseException:
        server.stop()
        raise
