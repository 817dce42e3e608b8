"""HTTP/1.1 over TLS byte by byte, for what httpx normalises away or cannot control: request targets exactly as
written (`//mcp`, `/mcp/../mcp`, `/mcp%2F`), any method token, and a body sent as chunked transfer-encoding
with chunk boundaries of our choosing. One request per connection (`Connection: close`)."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Iterable

from .clients import CertPair, RawResponse, ssl_context

import httpx


def h1_request(port: int, method: str, target: str, headers: dict[str, str], *, ca: Path,
               cert: CertPair | None = None, body: bytes | None = None, chunks: Iterable[bytes] | None = None,
               host: str = "127.0.0.1", timeout: float = 10.0, writes: int = 1) -> RawResponse:
    """Send one request. `body` goes with Content-Length; `chunks` as chunked transfer-encoding (empty
    chunks are skipped: a zero-size chunk would end the body). With `writes` > 1 the encoded chunks go out
    in that many separate socket writes, 2 ms apart, so Envoy reads (and hands the filter) the body in
    several pieces instead of one."""
    lines = [f"{method} {target} HTTP/1.1", f"host: localhost:{port}", "connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if chunks is not None:
        lines.append("transfer-encoding: chunked")
        encoded = [b"%x\r\n%s\r\n" % (len(c), c) for c in chunks if c] + [b"0\r\n\r\n"]
        step = max(1, -(-len(encoded) // writes))
        pieces = [b"".join(encoded[i:i + step]) for i in range(0, len(encoded), step)]
        payload = b"".join(pieces)
    else:
        payload = body or b""
        lines.append(f"content-length: {len(payload)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    ctx = ssl_context(ca, cert)
    ctx.set_alpn_protocols(["http/1.1"])
    with socket.create_connection((host, port), timeout=timeout) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if chunks is not None and writes > 1:
                tls.sendall(head)
                for piece in pieces:
                    time.sleep(0.002)
                    tls.sendall(piece)
            else:
                tls.sendall(head + payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused mid-body (413): the reply is already on its way
        data = b""
        while not complete(data):
            try:
                part = tls.recv(65536)
            except (ConnectionResetError, OSError):
                break
            if not part:
                break
            data += part
    return parse_response(data)


def complete(data: bytes) -> bool:
    """Whether `data` holds a whole response (so we need not wait for Envoy to close: delayed_close_timeout)."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    fields = {k.strip().lower(): v.strip() for k, _, v in
              (line.partition(b":") for line in head.split(b"\r\n")[1:])}
    if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
        return rest.endswith(b"0\r\n\r\n")
    if b"content-length" in fields:
        return len(rest) >= int(fields[b"content-length"])
    return False


def parse_response(data: bytes) -> RawResponse:
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ")[1]) if status_line.startswith("HTTP/") else 0
    headers = httpx.Headers([tuple(h.split(":", 1)) for h in header_lines if ":" in h])
    headers = httpx.Headers({k.strip(): v.strip() for k, v in headers.items()})
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body, buf = b"", rest
        while buf:
            size_line, _, buf = buf.partition(b"\r\n")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            body, buf = body + buf[:size], buf[size + 2:]
        rest = body
    return RawResponse(status, headers, rest)
