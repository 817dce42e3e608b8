"""The upstream MCP server behind Envoy in the e2e tests (Python `mcp` 2.3 SDK, Streamable HTTP).

Why a server of our own rather than a canned one: it writes down, from the upstream's side,
every HTTP request that reached it and every tool that actually ran. A denial is only proven
when the upstream never saw the request, and that is asserted from this log, not from what
the gateway claims.

    python tests/e2e/mcp_server.py --port 8000 --log /tmp/upstream.jsonl [--mode stateless]

Modes (--mode):
  stateful  (default) 2025-11-25 era: `initialize` creates a session (Mcp-Session-Id),
            GET opens the server-to-client SSE stream, DELETE ends the session.
  stateless the SDK's stateless_http=True: no session ids, every POST stands alone.
  sse       the legacy HTTP+SSE transport (2024-11-05): GET /sse opens the stream and names the
            messages endpoint (/messages/?session_id=...), whose POSTs are answered 202 and
            replied to on the stream.
In both modes a request carrying `MCP-Protocol-Version: 2026-07-28` is served by the SDK's
per-request 2026-07-28 path (server/discover, Mcp-Method/Mcp-Name checked against the body).

Log format: one JSON object per line, `kind` is "request" (written when the whole request
body has arrived, before the SDK sees it) or "tool" (written inside the tool function).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from mcp.server.mcpserver import Context, Image, MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse

# Headers copied into every request record under their own names (all headers are kept too).
HEADERS_OF_INTEREST = (
    "mcp-session-id", "mcp-method", "mcp-name", "mcp-protocol-version", "x-forwarded-client-cert",
    "content-type", "accept", "host", "authorization", "last-event-id",
)

CONTROL_PATH = "/control/tool-description"

# 1x1 transparent PNG: the smallest real image an MCP client can decode.
TINY_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")


class JsonLog:
    """Append-only JSON-lines file shared by the middleware and the tools (thread-safe)."""

    def __init__(self, path: Path | None) -> None:
        self._file = open(path, "a", buffering=1, encoding="utf-8") if path else None
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            return
        record = {"ts": time.time(), **record}
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()


def _rpc_summary(msg: Any) -> dict[str, Any]:
    """What a policy looks at in one JSON-RPC message: method, id, params.name / params.uri."""
    if not isinstance(msg, dict):
        return {"invalid": True}
    out: dict[str, Any] = {}
    for key in ("method", "id"):
        if key in msg:
            out[key] = msg[key]
    if "result" in msg or "error" in msg:
        out["response"] = True
    params = msg.get("params")
    if isinstance(params, dict):
        for key in ("name", "uri"):
            if key in params:
                out[key] = params[key]
        if isinstance(params.get("arguments"), dict):
            out["arguments"] = params["arguments"]
    return out


def describe_body(body: bytes) -> dict[str, Any]:
    """Parse the body the way a lenient server would; record why if it cannot be parsed."""
    if not body:
        return {}
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return {"body_error": f"{type(exc).__name__}: {exc}"[:200]}
    if isinstance(parsed, list):
        return {"batch": True, "rpc": [_rpc_summary(m) for m in parsed]}
    return {"rpc": [_rpc_summary(parsed)]}


class RequestLogMiddleware:
    """ASGI middleware around the SDK app: logs each HTTP request once its body is complete."""

    def __init__(self, app: Any, log: JsonLog, skip_paths: tuple[str, ...] = ("/healthz", CONTROL_PATH)) -> None:
        self.app = app
        self.log = log
        self.skip_paths = skip_paths

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in self.skip_paths:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        disconnected = False
        if scope["method"] not in ("GET", "HEAD", "DELETE"):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    disconnected = True
                    break
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
        body = b"".join(chunks)
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        record: dict[str, Any] = {
            "kind": "request",
            "method": scope["method"],
            "path": scope["path"],
            "query": scope.get("query_string", b"").decode("latin-1"),
            "http_version": scope.get("http_version"),
            "body_len": len(body),
            **{h: headers[h] for h in HEADERS_OF_INTEREST if h in headers},
            "headers": headers,
            **describe_body(body),
        }
        if disconnected:
            record["client_disconnected"] = True
        self.log.write(record)

        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed and scope["method"] not in ("GET", "HEAD", "DELETE"):
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def build_server(log: JsonLog) -> MCPServer:
    """The tools, prompt and resources the policies in the tests grant or refuse."""
    mcp = MCPServer("grantwall-e2e-upstream", version="1.0.0")

    def ran(tool: str, **args: Any) -> None:
        log.write({"kind": "tool", "tool": tool, "arguments": args})

    @mcp.tool(name="get-sum", description="Adds two integers.", structured_output=False)
    def get_sum(a: int, b: int) -> str:
        ran("get-sum", a=a, b=b)
        return f"The sum of {a} and {b} is {a + b}."

    @mcp.tool(name="echo", description="Echoes the message back.", structured_output=False)
    def echo(message: str) -> str:
        ran("echo", message=message)
        return message

    @mcp.tool(name="get-tiny-image", description="Returns a 1x1 PNG.")
    def get_tiny_image() -> Image:
        ran("get-tiny-image")
        return Image(data=TINY_PNG, format="png")

    @mcp.tool(name="delete-everything", description="Dangerous: deletes everything (used to show denials).",
              structured_output=False)
    def delete_everything(confirm: bool = False) -> str:
        ran("delete-everything", confirm=confirm)
        return "Everything was deleted."

    @mcp.tool(name="slow-count", description="Counts to n, one progress notification every `delay` seconds.",
              structured_output=False)
    async def slow_count(n: int, delay: float, ctx: Context) -> str:
        ran("slow-count", n=n, delay=delay)
        for i in range(n):
            await ctx.report_progress(i + 1, n, f"step {i + 1}")
            await asyncio.sleep(delay)
        return f"counted to {n}"

    @mcp.prompt(name="greeting", description="A friendly greeting.")
    def greeting(name: str) -> str:
        log.write({"kind": "prompt", "prompt": "greeting", "arguments": {"name": name}})
        return f"Please greet {name} warmly."

    # Each resource twice: under a file:/// URI and under a short mem:// one, because KAN caps a
    # grant's params at 20 characters and file:///docs/readme.md is longer than that.
    def add_resource(uri: str, name: str, mime: str, text: str) -> None:
        def read() -> str:
            log.write({"kind": "resource", "uri": uri})
            return text

        mcp.resource(uri, name=name, mime_type=mime)(read)

    readme = "# Readme\nNothing secret here.\n"
    keys = "AKIA-NOT-A-REAL-KEY\n"
    add_resource("file:///docs/readme.md", "readme", "text/markdown", readme)
    add_resource("file:///secret/keys.txt", "keys", "text/plain", keys)
    add_resource("mem://docs/readme", "readme-mem", "text/markdown", readme)
    add_resource("mem://secret/keys", "keys-mem", "text/plain", keys)

    @mcp.custom_route("/healthz", methods=["GET"])
    async def healthz(_: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    # Test control (not behind the gateway's MCP path): change a tool's description at run time, the
    # "rug pull" that tool-definition pins must catch. Body: {"tool": "echo", "description": "..."}.
    @mcp.custom_route(CONTROL_PATH, methods=["POST"])
    async def describe(request: Request) -> JSONResponse:
        change = await request.json()
        mcp._tool_manager.get_tool(change["tool"]).description = change["description"]
        return JSONResponse({"ok": True})

    return mcp


def build_app(log: JsonLog, *, stateless: bool, json_response: bool = False, sse: bool = False) -> Any:
    mcp = build_server(log)
    if sse:
        app = mcp.sse_app(sse_path="/sse", message_path="/messages/",
                          transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
        return RequestLogMiddleware(app, log)
    app = mcp.streamable_http_app(
        streamable_http_path="/mcp",
        stateless_http=stateless,
        json_response=json_response,
        # Requests arrive through the gateway with its Host; DNS-rebinding checks belong
        # to browsers talking to localhost servers, not to a server behind a proxy.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    return RequestLogMiddleware(app, log)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("MCP_PORT", "8000")),
                        help="0 picks a free port (see --port-file)")
    parser.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    parser.add_argument("--log", type=Path, default=os.environ.get("MCP_REQUEST_LOG"),
                        help="JSON-lines request/tool log")
    parser.add_argument("--mode", choices=("stateful", "stateless", "sse"), default=os.environ.get("MCP_MODE", "stateful"))
    parser.add_argument("--json-response", action="store_true", help="answer POSTs with JSON instead of SSE")
    args = parser.parse_args(argv)

    log = JsonLog(args.log)
    app = build_app(log, stateless=args.mode == "stateless", json_response=args.json_response, sse=args.mode == "sse")

    # Bind first, then report the port: the harness never has to guess a free port.
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # without it every response whose headers and body go out in two writes waits ~40 ms (Nagle
    # against delayed ACK).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    if args.port_file:
        # uvicorn accepts on the socket only once started; /healthz is the readiness probe.
        tmp = args.port_file.with_name(args.port_file.name + ".tmp")
        tmp.write_text(str(port))
        tmp.replace(args.port_file)
    print(f"mcp_server listening on http://{args.host}:{port}/mcp mode={args.mode}", file=sys.stderr, flush=True)
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
