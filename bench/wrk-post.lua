-- wrk script: POST one fixed MCP body with fixed headers, then print one machine-readable summary line.
-- Environment: BENCH_BODY_FILE (the request body), BENCH_XFCC (x-forwarded-client-cert; optional),
-- BENCH_AUTHORIZATION (a bearer token's Authorization value; optional).
local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
-- Streamable HTTP clients accept both; Envoy's MCP filter looks for them.
wrk.headers["Accept"] = "application/json, text/event-stream"
local xfcc = os.getenv("BENCH_XFCC")
if xfcc and xfcc ~= "" then
  wrk.headers["X-Forwarded-Client-Cert"] = xfcc
end
local authorization = os.getenv("BENCH_AUTHORIZATION")
if authorization and authorization ~= "" then
  wrk.headers["Authorization"] = authorization
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
