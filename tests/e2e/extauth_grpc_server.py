"""A real envoy.service.auth.v3.Authorization/Check server on grpcio, for tests/e2e/test_extauth.py.

Run with `python -P` (this directory has an envoy.py that would shadow the `envoy` protos package).
Runs in its own process (grpcio's fork handlers break the harness's fork+exec of Envoy if it runs in the
test process). Decides like KAN's Authorino AuthConfig, on the MCP filter metadata: `mcp_proxy.method` and
`mcp_proxy.params.name` (tools/call of get-sum or get-env only). Logs each CheckRequest (base64) to --log;
behaviour per request from the file --mode-file: `normal`, `garbage` (bytes that are no CheckResponse), or
`sleep` (answer normally after 2 s, past the filter's timeout).
"""

from __future__ import annotations

import argparse
import base64
import json
import time
from concurrent import futures
from pathlib import Path

import grpc
from envoy.service.auth.v3 import external_auth_pb2
from google.protobuf import json_format

ALLOWED_TOOLS = ("get-sum", "get-env")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--mode-file", type=Path, required=True)
    args = parser.parse_args()

    def check(raw: bytes, _context) -> bytes:
        request = external_auth_pb2.CheckRequest.FromString(raw)
        with args.log.open("a") as log:
            log.write(json.dumps({"request": base64.b64encode(raw).decode()}) + "\n")
        mode = args.mode_file.read_text().strip() if args.mode_file.exists() else "normal"
        if mode == "garbage":
            return b"\xff\xff\xff\xff"
        if mode == "sleep":
            time.sleep(2)
        meta = json_format.MessageToDict(request.attributes.metadata_context).get("filterMetadata", {})
        mcp = meta.get("mcp_proxy", {})
        method, tool = mcp.get("method"), mcp.get("params", {}).get("name")
        ok = method != "tools/call" or tool in ALLOWED_TOOLS
        response = external_auth_pb2.CheckResponse()
        response.status.code = 0 if ok else 7  # PERMISSION_DENIED
        if ok:
            header = response.ok_response.headers.add()
            header.header.key, header.header.value = "x-guard-verdict", "grpc-ok"
        else:
            response.denied_response.body = f"tool {tool} is not approved"
        return response.SerializeToString()

    # Raw bytes in and out: the handler parses and answers itself (and can answer garbage).
    handler = grpc.method_handlers_generic_handler(
        "envoy.service.auth.v3.Authorization", {"Check": grpc.unary_unary_rpc_method_handler(check)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    args.port_file.write_text(str(port))
    server.wait_for_termination()


if __name__ == "__main__":
    main()
