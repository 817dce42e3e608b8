"""KAN ExternalAuth in real Envoy: the filter calls a real ext_authz service the test starts, over HTTP
(Envoy's ext_authz HTTP contract, a stdlib server) and gRPC (envoy.service.auth.v3.Authorization/Check on
grpcio, messages from the `xds-protos` package: an independent protobuf implementation). Every case asserts
on what the service received and on what the MCP server received or ran.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest
from envoy.service.auth.v3 import external_auth_pb2
from google.protobuf import json_format
from mcp.shared.exceptions import MCPError

from .clients import mcp_client, text_of
from .procs import spawn, stop

HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.anyio

FORBIDDEN = "Access to this tool is forbidden."

BACKEND = """
apiVersion: agentic.networking.x-k8s.io/v0alpha0
kind: XBackend
metadata: {name: mcp-server, namespace: tools}
spec:
  mcp: {serviceName: mcp-server, port: 8000}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HttpAuthz:
    """Envoy's ext_authz HTTP contract: 200 allows, anything else denies with the body as reason."""

    def __init__(self) -> None:
        self.mode = "normal"
        self.received: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_):  # quiet
                pass

            def handle_any(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                owner.received.append({"method": self.command, "path": self.path, "headers": headers, "body": body})
                if owner.mode == "sleep":
                    time.sleep(2)
                if owner.mode == "garbage":
                    self.wfile.write(b"\x00\x01not http at all\r\n\r\n")
                    self.close_connection = True
                    return
                reply, status, extra = owner.verdict(headers, body)
                try:
                    self.send_response(status)
                    for k, v in extra.items():
                        self.send_header(k, v)
                    self.send_header("content-length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the filter gave up waiting (the timeout case)

            do_GET = do_POST = do_DELETE = handle_any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def verdict(self, headers: dict[str, str], body: bytes) -> tuple[bytes, int, dict[str, str]]:
        """The answer to one check: (reason body, status, response headers). Subclasses judge other traffic."""
        tool = unquote(headers.get("x-grantwall-mcp-target", ""))
        if headers.get("x-grantwall-mcp-method") == "tools/call" and tool not in ("get-sum", "echo"):
            return f"blocked by guardrail: {tool}".encode(), 403, {}
        return b"", 200, {"x-guard-verdict": "ok", "x-not-allowed": "leak"}

    def calls(self) -> list[dict]:
        return [r for r in self.received if r["headers"].get("x-grantwall-mcp-method") == "tools/call"]


class GrpcAuthz:
    """extauth_grpc_server.py in its own process; what it received, decoded with xds-protos."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.log, self.mode_file, port_file = workdir / "checks.jsonl", workdir / "mode", workdir / "port"
        port_file.unlink(missing_ok=True)
        self.proc = spawn([sys.executable, "-P", str(HERE / "extauth_grpc_server.py"), "--port-file", str(port_file),
                           "--log", str(self.log), "--mode-file", str(self.mode_file)],
                          stdout=subprocess.DEVNULL, stderr=open(workdir / "stderr", "ab"))
        deadline = time.monotonic() + 20
        while not port_file.exists() or not port_file.read_text():
            assert self.proc.poll() is None and time.monotonic() < deadline, "gRPC ext_authz server did not start"
            time.sleep(0.05)
        self.port = int(port_file.read_text())

    @property
    def mode(self) -> str:
        return self.mode_file.read_text() if self.mode_file.exists() else "normal"

    @mode.setter
    def mode(self, value: str) -> None:
        self.mode_file.write_text(value)

    def clear(self) -> None:
        self.log.write_text("")

    def received(self) -> list[external_auth_pb2.CheckRequest]:
        if not self.log.exists():
            return []
        return [external_auth_pb2.CheckRequest.FromString(base64.b64decode(json.loads(line)["request"]))
                for line in self.log.read_text().splitlines() if line]

    def calls(self) -> list[dict]:
        out = []
        for r in self.received():
            meta = json_format.MessageToDict(r.attributes.metadata_context).get("filterMetadata", {}).get("mcp_proxy", {})
            if meta.get("method") == "tools/call":
                out.append({"request": r, "mcp": meta})
        return out


@pytest.fixture(scope="module")
def http_authz():
    server = HttpAuthz()
    yield server
    server.server.shutdown()


@pytest.fixture(scope="module")
def grpc_authz(e2e_dir: Path):
    server = GrpcAuthz(e2e_dir / "extauth-grpc")
    yield server
    stop(server.proc)


def add_clusters(http_port: int, grpc_port: int):
    """Test-time patch: the two ext_authz clusters (HTTP/1.1 and HTTP/2), plus one nobody listens on."""
    def cluster(name: str, port: int, http2: bool) -> dict:
        options = {"http2_protocol_options": {}} if http2 else {"http_protocol_options": {}}
        return {
            "name": name, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]},
            "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": options}},
        }

    def patch(boot: dict) -> None:
        clusters = boot["static_resources"]["clusters"]
        clusters.append(cluster("extauth-http", http_port, False))
        clusters.append(cluster("extauth-grpc", grpc_port, True))
        clusters.append(cluster("extauth-refused", free_port(), False))
        clusters.append(cluster("extauth-grpc-refused", free_port(), True))

    return patch


def external_policy(protocol: str, cluster: str, *, extra_annotations: str = "", body_max: int | None = 4096,
                    source: str = "alice") -> str:
    proto = ("http: {path: /authz, allowedHeaders: [x-trace], allowedResponseHeaders: [x-guard-verdict]}"
             if protocol == "HTTP" else "grpc: {allowedHeaders: [x-trace]}")
    body = f"\n    forwardBody: {{maxSize: {body_max}}}" if body_max is not None else ""
    return f"""
apiVersion: agentic.networking.x-k8s.io/v1alpha1
kind: XAccessPolicy
metadata:
  name: guard
  namespace: tools
  creationTimestamp: "2026-01-01T00:00:00Z"
  annotations: {{grantwall.io/extauth-cluster: {cluster}, grantwall.io/extauth-timeout: 300ms{extra_annotations}}}
spec:
  targetRefs: [{{group: agentic.networking.x-k8s.io, kind: XBackend, name: mcp-server}}]
  action: ExternalAuth
  externalAuth:
    protocol: {protocol}
    backendRef: {{name: guard, port: 9000}}
    {proto}{body}
  rules:
  - name: {source}-goes-to-the-guard
    source: {{type: ServiceAccount, serviceAccount: {{name: {source}, namespace: agents}}}}
"""


async def call(mcp, tool: str, arguments: dict) -> str:
    try:
        return text_of(await mcp.call_tool(tool, arguments))
    except MCPError as err:
        assert (err.code, err.message) == (403, FORBIDDEN), err
        return "denied: " + str((err.data or {}).get("reason"))


def audit_reasons(envoy, tool: str, count: int = 1) -> list[tuple[str, str]]:
    entries = envoy.wait_access_log(lambda e: _audit(e).get("target") == tool, count=count)
    return [(_audit(e)["decision"], _audit(e)["reason"]) for e in entries]


def _audit(entry: dict) -> dict:
    raw = entry.get("grantwall")
    return json.loads(raw) if isinstance(raw, str) and raw not in ("", "-") else {}


async def test_http_allow_deny_with_reason_and_mcp_context(start_envoy, compile_policy, pki, client_cert,
                                                           upstream_log, http_authz, grpc_authz):
    http_authz.mode, http_authz.received = "normal", []
    envoy = start_envoy(compile_policy(BACKEND + "---" + external_policy("HTTP", "extauth-http")),
                        patch=add_clusters(http_authz.port, grpc_authz.port))
    alice = client_cert("alice")
    async with mcp_client(envoy.url(), ca=pki.ca_cert, cert=alice, mode="legacy",
                          headers={"x-trace": "t-1"}) as mcp:
        assert await call(mcp, "get-sum", {"a": 2, "b": 3}) == "The sum of 2 and 3 is 5."
        assert await call(mcp, "delete-everything", {"confirm": True}) == \
            "denied: extauth-denied: blocked by guardrail: delete-everything"
        # The session survives the denial.
        assert await call(mcp, "echo", {"message": "hi"}) == "hi"
    # The MCP server never saw the denied call; the allowed one carries the service's allowed header only.
    assert upstream_log.tools_executed() == ["get-sum", "echo"]
    assert "delete-everything" not in upstream_log.tool_calls_received()
    calls = [r for r in upstream_log.requests("POST") if "get-sum" in json.dumps(r)]
    assert calls and all(r["headers"].get("x-guard-verdict") == "ok" for r in calls)
    assert all("x-not-allowed" not in r["headers"] for r in calls)
    # What the service received: the original request plus the MCP context Grantwall parsed.
    seen = {unquote(r["headers"]["x-grantwall-mcp-target"]): r for r in http_authz.calls()}
    assert set(seen) == {"get-sum", "delete-everything", "echo"}
    first = seen["get-sum"]
    assert first["method"] == "POST" and first["path"] == "/authz/mcp"
    assert first["headers"]["x-grantwall-identity"] == "spiffe://cluster.local/ns/agents/sa/alice"
    assert first["headers"]["x-grantwall-backend"] == "tools/mcp-server"
    assert json.loads(unquote(first["headers"]["x-grantwall-mcp-arguments"])) == {"a": 2, "b": 3}
    assert first["headers"]["x-trace"] == "t-1"
    assert json.loads(first["body"])["params"]["name"] == "get-sum"
    assert first["headers"]["x-envoy-auth-partial-body"] == "false"
    assert audit_reasons(envoy, "delete-everything") == [("deny", "extauth-denied")]
    assert ("allow", "extauth-allowed") in audit_reasons(envoy, "get-sum")
    assert envoy.stat("wasmcustom.grantwall.requests.decision.deny.reason.extauth_denied") == 1


async def test_http_body_forwarding_limit(start_envoy, compile_policy, pki, client_cert, upstream_log,
                                          http_authz, grpc_authz):
    http_authz.mode, http_authz.received = "normal", []
    envoy = start_envoy(compile_policy(BACKEND + "---" + external_policy("HTTP", "extauth-http", body_max=64)),
                        patch=add_clusters(http_authz.port, grpc_authz.port))
    async with mcp_client(envoy.url(), ca=pki.ca_cert, cert=client_cert("alice"), mode="legacy") as mcp:
        assert await call(mcp, "echo", {"message": "x" * 500}) == "x" * 500
    (seen,) = http_authz.calls()
    assert len(seen["body"]) == 64 and seen["headers"]["x-envoy-auth-partial-body"] == "true"
    # The upstream got the whole body.
    assert upstream_log.tools_executed() == ["echo"]


@pytest.mark.parametrize("protocol,cluster,mode,reason", [
    ("HTTP", "extauth-http", "sleep", "extauth-unavailable"),       # timeout (300 ms)
    ("HTTP", "extauth-refused", "normal", "extauth-unavailable"),   # connection refused
    ("HTTP", "extauth-http", "garbage", "extauth-unavailable"),     # not HTTP: Envoy answers the call 503
    ("GRPC", "extauth-grpc", "garbage", "extauth-error"),           # not a CheckResponse
    ("GRPC", "extauth-grpc", "sleep", "extauth-unavailable"),       # timeout (300 ms)
    ("GRPC", "extauth-grpc-refused", "normal", "extauth-unavailable"),
])
async def test_failures_fail_closed(start_envoy, compile_policy, pki, client_cert, upstream_log, http_authz,
                                    grpc_authz, protocol, cluster, mode, reason):
    http_authz.mode = grpc_authz.mode = mode
    try:
        envoy = start_envoy(compile_policy(BACKEND + "---" + external_policy(protocol, cluster)),
                            patch=add_clusters(http_authz.port, grpc_authz.port))
        async with mcp_client(envoy.url(), ca=pki.ca_cert, cert=client_cert("bob"), mode="legacy") as mcp:
            # bob is not selected by the ExternalAuth rules and there is no Allow policy: no check at all.
            assert await call(mcp, "get-sum", {"a": 1, "b": 1}) == "The sum of 1 and 1 is 2."
        started = time.monotonic()
        with pytest.raises(Exception):
            # alice cannot even initialize: every request of hers is checked, and the check fails.
            async with mcp_client(envoy.url(), ca=pki.ca_cert, cert=client_cert("alice"), mode="legacy") as mcp:
                await call(mcp, "get-sum", {"a": 1, "b": 2})
        assert time.monotonic() - started < 10
        assert upstream_log.tools_executed() == ["get-sum"]
        initialize = envoy.wait_access_log(lambda e: _audit(e).get("mcpMethod") == "initialize"
                                           and _audit(e).get("decision") == "deny")
        assert _audit(initialize[0])["reason"] == reason
        assert envoy.stat(f"wasmcustom.grantwall.requests.decision.deny.reason.{reason.replace('-', '_')}") >= 1
    finally:
        http_authz.mode = grpc_authz.mode = "normal"


async def test_fail_open_is_opt_in(start_envoy, compile_policy, pki, client_cert, upstream_log, http_authz,
                                   grpc_authz):
    policy = external_policy("HTTP", "extauth-refused", extra_annotations=", grantwall.io/extauth-failure-mode: allow")
    envoy = start_envoy(compile_policy(BACKEND + "---" + policy), patch=add_clusters(http_authz.port, grpc_authz.port))
    async with mcp_client(envoy.url(), ca=pki.ca_cert, cert=client_cert("alice"), mode="legacy") as mcp:
        assert await call(mcp, "get-sum", {"a": 1, "b": 2}) == "The sum of 1 and 2 is 3."
    assert audit_reasons(envoy, "get-sum") == [("allow", "extauth-fail-open")]


async def test_grpc_kan_evaluation_logic(start_envoy, compile_policy, pki, client_cert, upstream_log,
                                         http_authz, grpc_authz):
    # KAN conformance "evaluation logic": ExternalAuth allows get-sum and get-env, an Allow policy narrows it.
    grpc_authz.mode = "normal"
    grpc_authz.clear()
    allow = """
apiVersion: agentic.networking.x-k8s.io/v1alpha1
kind: XAccessPolicy
metadata: {name: allow, namespace: tools, creationTimestamp: "2026-01-02T00:00:00Z"}
spec:
  targetRefs: [{group: agentic.networking.x-k8s.io, kind: XBackend, name: mcp-server}]
  action: Allow
  rules:
  - name: alice-get-sum-and-echo
    source: {type: ServiceAccount, serviceAccount: {name: alice, namespace: agents}}
    authorization:
      type: Inline
      mcp:
        mcpBaseProtocolMethodsOption: MATCH_BASE_PROTOCOL_METHODS
        methods: [{name: tools/call, params: [get-sum, echo]}]
"""
    envoy = start_envoy(compile_policy(BACKEND + "---" + external_policy("GRPC", "extauth-grpc") + "---" + allow),
                        patch=add_clusters(http_authz.port, grpc_authz.port))
    async with mcp_client(envoy.url(), ca=pki.ca_cert, cert=client_cert("alice"), mode="legacy",
                          headers={"x-trace": "g-1"}) as mcp:
        assert await call(mcp, "get-sum", {"a": 4, "b": 5}) == "The sum of 4 and 5 is 9."
        # Allowed by ExternalAuth, not by the Allow policy.
        assert await call(mcp, "get-env", {}) == "denied: default-deny"
        # Allowed by the Allow policy, not by ExternalAuth.
        assert await call(mcp, "echo", {"message": "x"}) == "denied: extauth-denied: tool echo is not approved"
    assert upstream_log.tools_executed() == ["get-sum"]
    calls = {c["mcp"]["params"]["name"]: c for c in grpc_authz.calls()}
    # The Allow policy decides first: get-env never reaches the service.
    assert set(calls) == {"get-sum", "echo"}
    req = calls["get-sum"]["request"]
    assert calls["get-sum"]["mcp"]["params"]["arguments"] == {"a": 4, "b": 5}
    attrs = req.attributes
    assert attrs.source.principal == "spiffe://cluster.local/ns/agents/sa/alice"
    assert attrs.context_extensions["grantwall.mcp-target"] == "get-sum"
    assert attrs.context_extensions["grantwall.backend"] == "tools/mcp-server"
    assert attrs.request.http.method == "POST" and attrs.request.http.path == "/mcp"
    assert attrs.request.http.headers["x-trace"] == "g-1"
    assert json.loads(attrs.request.http.body)["params"]["arguments"] == {"a": 4, "b": 5}
    posts = [r for r in upstream_log.requests("POST") if "get-sum" in json.dumps(r)]
    assert posts and all(r["headers"].get("x-guard-verdict") == "grpc-ok" for r in posts)
    assert audit_reasons(envoy, "echo") == [("deny", "extauth-denied")]
    assert audit_reasons(envoy, "get-env") == [("deny", "default-deny")]


async def test_latency_per_checked_call(start_envoy, compile_policy, pki, client_cert, upstream_log, http_authz,
                                        grpc_authz):
    """Not a benchmark: prints the added latency of a checked call over loopback (docs/extauth.md#cost)."""
    http_authz.mode = grpc_authz.mode = "normal"
    timings = {}
    for protocol, cluster in (("HTTP", "extauth-http"), ("GRPC", "extauth-grpc")):
        envoy = start_envoy(compile_policy(BACKEND + "---" + external_policy(protocol, cluster)),
                            patch=add_clusters(http_authz.port, grpc_authz.port))
        for who in ("bob", "alice"):  # bob is not checked, alice is
            async with mcp_client(envoy.url(), ca=pki.ca_cert, cert=client_cert(who), mode="legacy") as mcp:
                await call(mcp, "get-sum", {"a": 1, "b": 1})
                started = time.perf_counter()
                for _ in range(30):
                    assert await call(mcp, "get-sum", {"a": 1, "b": 1}) == "The sum of 1 and 1 is 2."
                timings[protocol, who] = (time.perf_counter() - started) / 30 * 1000
    for protocol in ("HTTP", "GRPC"):
        print(f"\nextauth {protocol}: unchecked {timings[protocol, 'bob']:.2f} ms/call, "
              f"checked {timings[protocol, 'alice']:.2f} ms/call")
    assert all(t < 1000 for t in timings.values())


async def test_decision_cache_is_opt_in_and_keyed_by_arguments(start_envoy, compile_policy, pki, client_cert,
                                                                upstream_log, http_authz, grpc_authz):
    http_authz.mode, http_authz.received = "normal", []
    policy = external_policy("HTTP", "extauth-http", extra_annotations=", grantwall.io/extauth-cache-ttl: 30s")
    # One worker: the cache is per worker (per VM).
    envoy = start_envoy(compile_policy(BACKEND + "---" + policy), patch=add_clusters(http_authz.port, grpc_authz.port),
                        concurrency=1)
    async with mcp_client(envoy.url(), ca=pki.ca_cert, cert=client_cert("alice"), mode="legacy") as mcp:
        for _ in range(3):
            assert await call(mcp, "get-sum", {"a": 1, "b": 2}) == "The sum of 1 and 2 is 3."
            assert await call(mcp, "delete-everything", {}) == \
                "denied: extauth-denied: blocked by guardrail: delete-everything"
        assert await call(mcp, "get-sum", {"a": 2, "b": 2}) == "The sum of 2 and 2 is 4."
    asked = [(unquote(r["headers"]["x-grantwall-mcp-target"]), unquote(r["headers"]["x-grantwall-mcp-arguments"]))
             for r in http_authz.calls()]
    # Each distinct (tool, arguments) asked once; the denial is cached too.
    assert asked == [("get-sum", '{"a":1,"b":2}'), ("delete-everything", "{}"), ("get-sum", '{"a":2,"b":2}')]
    assert upstream_log.tools_executed() == ["get-sum"] * 4
    assert "delete-everything" not in upstream_log.tool_calls_received()
