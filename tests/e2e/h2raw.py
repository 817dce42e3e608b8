"""A raw HTTP/2 client for what httpx cannot send: request trailers (the body then never ends in the
body callback; the filter must decide in its trailers callback)."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import h2.config
import h2.connection
import h2.events

from .clients import CertPair, ssl_context


def post_with_trailers(host: str, port: int, path: str, body: bytes, headers: dict[str, str],
                       trailers: dict[str, str], *, ca: Path, cert: CertPair | None = None,
                       timeout: float = 10.0) -> tuple[int, bytes]:
    """POST `body` then `trailers` over h2; returns (status, response body)."""
    ctx = ssl_context(ca, cert)
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection((host, port), timeout=timeout) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        if tls.selected_alpn_protocol() != "h2":
            raise AssertionError("server did not negotiate h2")
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        stream = conn.get_next_available_stream_id()
        request = [(":method", "POST"), (":path", path), (":scheme", "https"), (":authority", f"localhost:{port}")]
        conn.send_headers(stream, request + list(headers.items()))
        conn.send_data(stream, body)
        conn.send_headers(stream, list(trailers.items()), end_stream=True)
        tls.sendall(conn.data_to_send())
        status, chunks, done = 0, [], False
        while not done:
            data = tls.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[":status"])
                elif isinstance(event, h2.events.DataReceived):
                    chunks.append(event.data)
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                    done = True
            tls.sendall(conn.data_to_send())
        return status, b"".join(chunks)
