"""`make demo` is itself a check: it exits non-zero when any allowed/denied expectation fails. Run it here
so a change that breaks the README's first command breaks the build."""

from __future__ import annotations

import os
import subprocess
import sys

from .envoy import REPO_ROOT


def test_demo_runs_and_all_expectations_hold(wasm_path, compiler_path):
    done = subprocess.run([sys.executable, "examples/demo/run_demo.py"], cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "NO_COLOR": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "OK: all" in done.stdout
    assert 'grantwall_requests{decision="deny",reason="default_deny"}' in done.stdout
