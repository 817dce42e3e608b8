"""A small Envoy rate-limit service (envoy.service.ratelimit.v3.RateLimitService) for test_limits_global.py.

Run as its own process (gRPC's fork handlers must not live in the pytest process that forks Envoy).
Counts (identity, tool) descriptors and answers OVER_LIMIT beyond --quota, as envoyproxy/ratelimit
would with a Redis counter; appends every request's domain and descriptors to --log (JSON lines), and
writes its port to --port-file once serving.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections import Counter
from concurrent import futures

# This directory holds envoy.py, which would shadow the `envoy` package of xds-protos.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != _here]

import grpc  # noqa: E402
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc  # noqa: E402

OK = rls_pb2.RateLimitResponse.OK
OVER = rls_pb2.RateLimitResponse.OVER_LIMIT


class Rls(rls_pb2_grpc.RateLimitServiceServicer):
    def __init__(self, quota: int, log_path: str) -> None:
        self.quota = quota
        self.log_path = log_path
        self.lock = threading.Lock()
        self.counts: Counter[tuple[str, str]] = Counter()

    def ShouldRateLimit(self, request, context):  # noqa: N802 (the gRPC method's name)
        descriptors = [{e.key: e.value for e in d.entries} for d in request.descriptors]
        codes = []
        with self.lock:
            for d in descriptors:
                over = False
                if set(d) == {"identity", "tool"}:
                    self.counts[(d["identity"], d["tool"])] += 1
                    over = self.counts[(d["identity"], d["tool"])] > self.quota
                codes.append(OVER if over else OK)
            with open(self.log_path, "a") as f:
                f.write(json.dumps({"domain": request.domain, "descriptors": descriptors}) + "\n")
        statuses = [rls_pb2.RateLimitResponse.DescriptorStatus(code=c) for c in codes]
        return rls_pb2.RateLimitResponse(overall_code=OVER if OVER in codes else OK, statuses=statuses)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--quota", type=int, default=2)
    args = ap.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    rls_pb2_grpc.add_RateLimitServiceServicer_to_server(Rls(args.quota, args.log), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(port))
    os.replace(args.port_file + ".tmp", args.port_file)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
