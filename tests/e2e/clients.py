"""MCP clients that reach the upstream only through Envoy, over TLS, as a chosen identity.

Three levels, from most to least realistic:
- `mcp_client()`: the real `mcp` 2.3 SDK client (`mcp.Client`) on its Streamable HTTP
  transport, with an httpx2 client carrying our CA and client certificate. `mode` picks the
  protocol era exactly as the SDK does: "auto" (2026-07-28 `server/discover`, falling back
  to `initialize`), "legacy" (the 2025-11-25 `initialize` handshake, Mcp-Session-Id, GET
  stream, DELETE on close) or "2026-07-28" (adopt the stateless revision without probing).
- `RawSession`: the 2025-era handshake by hand (any protocol version string), for what the
  SDK will not send: old revisions, batches, odd ids, requests after a denial.
- `post_jsonrpc()` / `raw_request()`: one HTTP exchange with arbitrary bytes and headers.
"""

from __future__ import annotations

import itertools
import json
import ssl
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, NamedTuple

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

CertPair = tuple[Path, Path]
MODERN = "2026-07-28"
LEGACY = "2025-11-25"
ACCEPT = "application/json, text/event-stream"


def ssl_context(ca: Path, cert: CertPair | None = None) -> ssl.SSLContext:
    """Trust only the test CA; present `cert` (cert, key) as the client certificate if given."""
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


# --- the SDK client ------------------------------------------------------------------------

@dataclass
class Exchange:
    """One HTTP exchange the SDK client made (seen by an httpx2 response hook)."""

    method: str
    url: str
    status: int
    request_headers: dict[str, str]
    response_headers: dict[str, str]


@dataclass
class McpConnection:
    """An entered `mcp.Client` plus the HTTP exchanges it made; unknown attributes go to the client."""

    client: Client
    exchanges: list[Exchange] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    @property
    def session_id(self) -> str | None:
        """The Mcp-Session-Id the server assigned (2025-era sessions only)."""
        for ex in self.exchanges:
            if "mcp-session-id" in ex.response_headers:
                return ex.response_headers["mcp-session-id"]
        return None

    def statuses(self, method: str | None = None) -> list[int]:
        return [ex.status for ex in self.exchanges if method is None or ex.method == method]


@asynccontextmanager
async def mcp_client(url: str, *, ca: Path, cert: CertPair | None = None, mode: str = "auto",
                     http2: bool = False, headers: dict[str, str] | None = None, timeout: float = 15.0,
                     **client_kwargs: Any) -> AsyncIterator[McpConnection]:
    """Connect the SDK's `mcp.Client` to `url` through Envoy and yield an `McpConnection`.

    `headers` are added to every request (e.g. a forged x-forwarded-client-cert). Extra
    keyword arguments go to `mcp.Client` (callbacks, client_info, ...).
    """
    conn_exchanges: list[Exchange] = []

    async def on_response(response: httpx2.Response) -> None:
        req = response.request
        conn_exchanges.append(Exchange(req.method, str(req.url), response.status_code,
                                       {k.lower(): v for k, v in req.headers.items()},
                                       {k.lower(): v for k, v in response.headers.items()}))

    http = httpx2.AsyncClient(
        verify=ssl_context(ca, cert), http2=http2, headers=headers, trust_env=False,
        timeout=httpx2.Timeout(timeout, read=timeout), event_hooks={"response": [on_response]},
    )
    async with http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode, read_timeout_seconds=timeout, **client_kwargs) as client:
            yield McpConnection(client, conn_exchanges)


def text_of(obj: Any) -> str:
    """The text in a CallToolResult, GetPromptResult, PromptMessage or content block, concatenated."""
    if isinstance(obj, (list, tuple)):
        return "".join(text_of(item) for item in obj)
    if hasattr(obj, "messages"):                     # GetPromptResult
        return text_of(obj.messages)
    if hasattr(obj, "content"):                      # CallToolResult (list) / PromptMessage (one block)
        return text_of(obj.content)
    if hasattr(obj, "contents"):                     # ReadResourceResult
        return text_of(obj.contents)
    text = getattr(obj, "text", None)
    return text if isinstance(text, str) else ""


# --- raw HTTP ------------------------------------------------------------------------------

class RawResponse(NamedTuple):
    """(status, headers, body) of one exchange; `messages()` decodes JSON or SSE JSON-RPC."""

    status: int
    headers: httpx.Headers
    body: bytes

    def messages(self) -> list[dict]:
        return parse_jsonrpc_payload(self.headers.get("content-type", ""), self.body)

    def message(self) -> dict:
        """The one JSON-RPC response in the body (the last message of an SSE stream)."""
        msgs = [m for m in self.messages() if "result" in m or "error" in m]
        if not msgs:
            raise AssertionError(f"no JSON-RPC response in HTTP {self.status}: {self.body[:500]!r}")
        return msgs[-1]


def parse_jsonrpc_payload(content_type: str, body: bytes) -> list[dict]:
    """JSON-RPC messages in a Streamable HTTP response body (application/json or an SSE stream)."""
    if not body.strip():
        return []
    if content_type.lower().startswith("text/event-stream"):
        out: list[dict] = []
        for event in body.decode("utf-8", "replace").replace("\r\n", "\n").split("\n\n"):
            data = "\n".join(line[5:].lstrip() if line.startswith("data:") else ""
                             for line in event.split("\n") if line.startswith("data:"))
            if data.strip():
                out.append(json.loads(data))
        return out
    parsed = json.loads(body)
    return parsed if isinstance(parsed, list) else [parsed]


def raw_request(method: str, url: str, *, ca: Path, cert: CertPair | None = None, body: bytes | None = None,
                headers: dict[str, str] | None = None, http2: bool = False, timeout: float = 10.0) -> RawResponse:
    """One HTTP request through Envoy, exactly these bytes and headers (no MCP defaults)."""
    with httpx.Client(verify=ssl_context(ca, cert), http2=http2, trust_env=False, timeout=timeout) as http:
        resp = http.request(method, url, content=body, headers=headers)
        return RawResponse(resp.status_code, resp.headers, resp.content)


def post_jsonrpc(url: str, body: bytes, headers: dict[str, str] | None = None, cert: CertPair | None = None, *,
                 ca: Path, http2: bool = False, timeout: float = 10.0) -> RawResponse:
    """POST raw bytes as an MCP client would (JSON content type, JSON+SSE accept) plus `headers`."""
    merged = {"content-type": "application/json", "accept": ACCEPT}
    merged.update({k.lower(): v for k, v in (headers or {}).items()})
    return raw_request("POST", url, ca=ca, cert=cert, body=body, headers=merged, http2=http2, timeout=timeout)


def modern_headers(method: str, name: str | None = None) -> dict[str, str]:
    """The routing headers a 2026-07-28 request must carry (they must match the body)."""
    headers = {"mcp-protocol-version": MODERN, "mcp-method": method}
    if name is not None:
        headers["mcp-name"] = name
    return headers


# Method -> the params key mirrored in Mcp-Name (as mcp.shared.inbound.NAME_BEARING_METHODS).
NAME_BEARING = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


def modern_request(method: str, params: dict | None = None, *, id: Any = 1) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of a well-formed 2026-07-28 request, as the SDK sends it.

    Every modern request carries its envelope in `params._meta` (protocol version and client
    capabilities) and mirrors method and target name in headers; tests mutate either side.
    """
    params = dict(params or {})
    params["_meta"] = {"io.modelcontextprotocol/protocolVersion": MODERN,
                       "io.modelcontextprotocol/clientCapabilities": {},
                       "io.modelcontextprotocol/clientInfo": {"name": "grantwall-e2e-raw", "version": "0"},
                       **params.get("_meta", {})}
    key = NAME_BEARING.get(method)
    body = json.dumps({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).encode()
    return body, modern_headers(method, params.get(key) if key else None)


class RawSession:
    """The 2025-era Streamable HTTP session by hand, with any protocol version.

        s = RawSession(envoy.url(), ca=pki.ca_cert, cert=alice)
        s.initialize()                      # initialize + notifications/initialized
        s.call_tool("get-sum", {"a": 1, "b": 2})
        s.delete()
    """

    def __init__(self, url: str, *, ca: Path, cert: CertPair | None = None, protocol_version: str = LEGACY,
                 http2: bool = False, timeout: float = 10.0) -> None:
        self.url = url
        self.protocol_version = protocol_version
        self.session_id: str | None = None
        self.initialize_result: dict | None = None
        self._ids = itertools.count(1)
        self._http = httpx.Client(verify=ssl_context(ca, cert), http2=http2, trust_env=False, timeout=timeout)

    def __enter__(self) -> "RawSession":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        h = {"content-type": "application/json", "accept": ACCEPT}
        if self.session_id:
            h["mcp-session-id"] = self.session_id
        if self.initialize_result is not None:
            h["mcp-protocol-version"] = self.protocol_version
        h.update(extra or {})
        return h

    def post(self, payload: Any, headers: dict[str, str] | None = None) -> RawResponse:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        resp = self._http.post(self.url, content=body, headers=self.headers(headers))
        return RawResponse(resp.status_code, resp.headers, resp.content)

    def initialize(self, capabilities: dict | None = None) -> dict:
        resp = self.post({"jsonrpc": "2.0", "id": next(self._ids), "method": "initialize", "params": {
            "protocolVersion": self.protocol_version, "capabilities": capabilities or {},
            "clientInfo": {"name": "grantwall-e2e-raw", "version": "0"}}})
        if resp.status != 200:
            raise AssertionError(f"initialize: HTTP {resp.status} {resp.body[:300]!r}")
        msg = resp.message()
        if "error" in msg:
            raise AssertionError(f"initialize refused: {msg['error']}")
        self.session_id = resp.headers.get("mcp-session-id")
        self.initialize_result = msg["result"]
        self.protocol_version = msg["result"].get("protocolVersion", self.protocol_version)
        note = self.notify("notifications/initialized")
        if note.status != 202:
            raise AssertionError(f"notifications/initialized: HTTP {note.status} {note.body[:300]!r}")
        return msg["result"]

    def request(self, method: str, params: dict | None = None, *, id: Any = None) -> RawResponse:
        """Send one request; `id` defaults to the next integer (pass a string to test id typing)."""
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": next(self._ids) if id is None else id, "method": method}
        if params is not None:
            msg["params"] = params
        return self.post(msg)

    def notify(self, method: str, params: dict | None = None) -> RawResponse:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        return self.post(msg)

    def call_tool(self, name: str, arguments: dict | None = None, *, id: Any = None) -> dict:
        """tools/call; returns the JSON-RPC response message (result or error)."""
        return self.request("tools/call", {"name": name, "arguments": arguments or {}}, id=id).message()

    def list_tools(self) -> list[str]:
        return [t["name"] for t in self.request("tools/list").message()["result"]["tools"]]

    def get(self, headers: dict[str, str] | None = None, read: bool = False) -> RawResponse:
        """Open the GET stream; by default read only the status and headers, then close it."""
        h = self.headers({"accept": "text/event-stream", **(headers or {})})
        h.pop("content-type", None)
        with self._http.stream("GET", self.url, headers=h) as resp:
            body = resp.read() if read else b""
            return RawResponse(resp.status_code, resp.headers, body)

    def delete(self) -> RawResponse:
        h = self.headers()
        h.pop("content-type", None)
        resp = self._http.delete(self.url, headers=h)
        return RawResponse(resp.status_code, resp.headers, resp.content)

    def close(self) -> None:
        self._http.close()
