"""HTTP/2 POST whose body goes out as DATA frames of sizes we choose (flow control respected), written in
about 20 bursts 2 ms apart, for the chunk-boundary tests: Envoy hands the filter the body in pieces."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import h2.config
import h2.connection
import h2.events

from .clients import CertPair, RawResponse, ssl_context

import httpx


def post_frames(port: int, path: str, headers: dict[str, str], frames: list[bytes], *, ca: Path,
                cert: CertPair | None = None, timeout: float = 10.0) -> RawResponse:
    ctx = ssl_context(ca, cert)
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.selected_alpn_protocol() == "h2", "server did not negotiate h2"
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "POST"), (":path", path), (":scheme", "https"),
                                (":authority", f"localhost:{port}")] + list(headers.items()))
        tls.sendall(conn.data_to_send())
        status, resp_headers, chunks, done = 0, [], [], False
        pending = [f for f in frames if f]
        sent, flush_every = 0, max(1, len(pending) // 20)

        def pump() -> None:
            nonlocal status, resp_headers, done
            data = tls.recv(65536)
            if not data:
                done = True
                return
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    resp_headers = event.headers
                    status = int(dict(event.headers)[":status"])
                elif isinstance(event, h2.events.DataReceived):
                    chunks.append(event.data)
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                    done = True
            tls.sendall(conn.data_to_send())

        while pending and not done:
            room = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
            if room <= 0:
                pump()                                            # wait for WINDOW_UPDATE
                continue
            frame = pending.pop(0)
            if len(frame) > room:                                 # flow control forces a split
                pending.insert(0, frame[room:])
                frame = frame[:room]
            conn.send_data(sid, frame, end_stream=not pending)
            tls.sendall(conn.data_to_send())
            sent += 1
            if sent % flush_every == 0:
                time.sleep(0.002)   # let Envoy read what is there: the body reaches the filter in pieces
        if not frames or not any(frames):
            conn.end_stream(sid)
            tls.sendall(conn.data_to_send())
        while not done:
            pump()
        hdrs = httpx.Headers([(k, v) for k, v in resp_headers if not k.startswith(":")])
        return RawResponse(status, hdrs, b"".join(chunks))
