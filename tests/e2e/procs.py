"""Child processes that cannot outlive the test run.

Teardown stops every process, but a run can also die without teardown (pytest-timeout,
SIGKILL, a crashed interpreter). PR_SET_PDEATHSIG makes the kernel kill Envoy and the MCP
server when the pytest process that started them goes away, so no orphan keeps a port.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
from typing import Any

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(cmd: list[str], **kwargs: Any) -> subprocess.Popen:
    """subprocess.Popen that dies with its parent (Linux) and reads no stdin."""
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.Popen(cmd, preexec_fn=_die_with_parent, **kwargs)


def stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM, wait `grace` seconds, then SIGKILL; safe to call on an exited process."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace)
