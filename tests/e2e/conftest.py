"""Fixtures for the end-to-end tests: PKI, the upstream MCP server, Envoy, build artifacts.

Scopes follow cost: the PKI is made once per session; the MCP server and Envoy once per
test module (a module picks the server mode with `MCP_SERVER_MODE = "stateless"`), and a
module restarts Envoy with another plugin configuration through `start_envoy(...)`. Every
process is stopped at teardown, failed tests included.

Build artifacts (dist/grantwall.wasm, dist/grantwall) are optional locally: tests that need
them are skipped with the reason. Under CI (CI=true) a missing artifact fails instead, so
a broken build can never turn into a green run of skipped tests.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import pytest

from .envoy import REPO_ROOT, Envoy, render_bootstrap
from .envoy import start_envoy as _start_envoy
from .pki import Pki, spiffe_sa
from .upstream import UpstreamLog, UpstreamServer, start_mcp_server

DIST = REPO_ROOT / "dist"
# Overridable to test another build (e.g. a debug .wasm) without copying it into dist/.
WASM = Path(os.environ.get("GRANTWALL_WASM", DIST / "grantwall.wasm")).resolve()
COMPILER = Path(os.environ.get("GRANTWALL_COMPILER", DIST / "grantwall")).resolve()

# Processes alive right now, for the failure report (see pytest_runtest_makereport).
_LIVE_ENVOYS: list[Envoy] = []
_LIVE_UPSTREAMS: list[UpstreamServer] = []


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_artifact(path: Path, what: str) -> Path:
    """`path` if it exists; otherwise skip (locally) or fail (CI) with how to build it."""
    if path.exists():
        return path
    message = f"{what} not built: {path} is missing (run `make build`)"
    if in_ci():
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def e2e_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def pki(e2e_dir: Path) -> Pki:
    return Pki.create(e2e_dir / "pki")


@pytest.fixture(scope="session")
def client_cert(pki: Pki) -> Callable[..., tuple[Path, Path]]:
    """`client_cert("alice")` -> (cert, key) for spiffe://cluster.local/ns/agents/sa/alice."""

    def make(name: str, namespace: str = "agents", **kwargs) -> tuple[Path, Path]:
        return pki.client(spiffe_sa(name, namespace), **kwargs)

    return make


@pytest.fixture(scope="session")
def wasm_path() -> Path:
    return require_artifact(WASM, "the Wasm filter")


@pytest.fixture(scope="session")
def compiler_path() -> Path:
    return require_artifact(COMPILER, "the policy compiler")


@pytest.fixture(scope="session")
def compile_policy(compiler_path: Path, e2e_dir: Path) -> Callable[[str | Path], str]:
    """`compile_policy(yaml_text_or_path)` -> the JSON plugin configuration from `grantwall compile -f`."""
    counter = iter(range(1_000_000))

    def compile_(source: str | Path) -> str:
        if isinstance(source, Path):
            path = source
        else:
            path = e2e_dir / f"policy-{next(counter)}.yaml"
            path.write_text(source)
        done = subprocess.run([str(compiler_path), "compile", "-f", str(path)], capture_output=True, text=True,
                              timeout=30)
        if done.returncode != 0:
            raise AssertionError(f"grantwall compile -f {path} failed ({done.returncode}):\n{done.stderr}")
        return done.stdout

    return compile_


@pytest.fixture(scope="module")
def mcp_upstream(request: pytest.FixtureRequest, e2e_dir: Path) -> Iterator[UpstreamServer]:
    """The module's upstream MCP server (mode from the module's MCP_SERVER_MODE, default stateful)."""
    mode = getattr(request.module, "MCP_SERVER_MODE", "stateful")
    json_response = getattr(request.module, "MCP_SERVER_JSON_RESPONSE", False)
    name = request.module.__name__.rsplit(".", 1)[-1]
    server = start_mcp_server(e2e_dir / f"upstream-{name}", mode=mode, json_response=json_response)
    _LIVE_UPSTREAMS.append(server)
    try:
        yield server
    finally:
        server.stop()
        _LIVE_UPSTREAMS.remove(server)


@pytest.fixture
def upstream_log(mcp_upstream: UpstreamServer) -> UpstreamLog:
    """The upstream's request/tool log, cleared at the start of the test."""
    mcp_upstream.log.clear()
    return mcp_upstream.log


@pytest.fixture(scope="module")
def start_envoy(request: pytest.FixtureRequest, e2e_dir: Path, pki: Pki,
                mcp_upstream: UpstreamServer) -> Iterator[Callable[..., Envoy]]:
    """Factory: `start_envoy(plugin_config_json)` -> a LIVE Envoy in front of the module's upstream.

    `None` renders examples/envoy.yaml without the Wasm filter (pass-through). Calling it
    again stops the module's previous Envoy first (a restart with a new configuration)
    unless `replace=False`. Keyword arguments: `wasm_path` (default dist/grantwall.wasm),
    `patch(bootstrap_dict)`, `upstream` (another UpstreamServer), `concurrency`, `log_level`.
    """
    name = request.module.__name__.rsplit(".", 1)[-1]
    started: list[Envoy] = []

    def start(plugin_config: str | None = None, *, wasm_path: Path | None = None, patch=None,
              upstream: UpstreamServer | None = None, replace: bool = True, **kwargs) -> Envoy:
        if replace:
            for old in started:
                old.stop()
        if plugin_config is not None and wasm_path is None:
            wasm_path = require_artifact(WASM, "the Wasm filter")
        workdir = e2e_dir / f"envoy-{name}-{len(started)}"
        workdir.mkdir(parents=True, exist_ok=True)
        boot = render_bootstrap(
            ca_cert=pki.ca_cert, server_cert=pki.server_cert, server_key=pki.server_key,
            upstream_port=(upstream or mcp_upstream).port, access_log=workdir / "access.log",
            plugin_config=plugin_config, wasm_path=wasm_path, patch=patch,
        )
        envoy = _start_envoy(workdir, boot, **kwargs)
        started.append(envoy)
        _LIVE_ENVOYS.append(envoy)
        return envoy

    try:
        yield start
    finally:
        for envoy in started:
            envoy.stop()
            if envoy in _LIVE_ENVOYS:
                _LIVE_ENVOYS.remove(envoy)


@pytest.fixture(scope="module")
def passthrough_envoy(start_envoy: Callable[..., Envoy]) -> Envoy:
    """Envoy from examples/envoy.yaml without the Grantwall filter."""
    return start_envoy(None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """On failure, attach what Envoy and the upstream saw: usually the fastest diagnosis."""
    report = yield
    if report.failed:
        for envoy in _LIVE_ENVOYS:
            if envoy.running:
                lines = envoy.access_log_path.read_text(errors="replace").splitlines()[-15:] \
                    if envoy.access_log_path.exists() else []
                report.sections.append((f"envoy access log ({envoy.workdir.name})", "\n".join(lines)))
                report.sections.append((f"envoy log ({envoy.workdir.name})",
                                        "\n".join(envoy.log_text().splitlines()[-30:])))
        for server in _LIVE_UPSTREAMS:
            entries = server.log.entries()[-15:]
            report.sections.append(("upstream log (since clear)",
                                    "\n".join(str({k: v for k, v in e.items() if k != "headers"})
                                              for e in entries)))
    return report
