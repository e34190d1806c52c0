-- wrk script for `make bench-meter`: POST /v1/eta with a unique x-request-id per request
-- (so every request is a new usage event), and exact percentiles printed at the end.
-- Environment: BENCH_TOKEN (bearer token), BENCH_ORG, BENCH_BODY (JSON), BENCH_TAG.
local threads = {}

function setup(thread)
    table.insert(threads, thread)
    thread:set("tid", #threads)
end

function init(args)
    counter = 0
    prefix = (os.getenv("BENCH_TAG") or "bench") .. "-" .. tid .. "-"
    headers = {
        ["authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN"),
        ["x-org-id"] = os.getenv("BENCH_ORG"),
        ["content-type"] = "application/json",
    }
    body = os.getenv("BENCH_BODY")
end

function request()
    counter = counter + 1
    headers["x-request-id"] = prefix .. counter
    return wrk.format("POST", "/v1/eta", headers, body)
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d mean_us=%.0f non2xx=%d socket_errors=%d\n",
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
        latency.mean, e.status, e.connect + e.read + e.write + e.timeout))
end
