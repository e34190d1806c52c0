-- wrk script for `make bench-noisy`: a paced client. Each connection waits BENCH_DELAY_MS
-- after each answer before its next request (so connections × 1000 / delay bounds the
-- rate; latency is measured from send to answer, without the wait). Counts answers by
-- status and prints exact percentiles at the end.
-- Environment: BENCH_TOKEN, BENCH_BODY (JSON), BENCH_DELAY_MS, BENCH_TAG.
local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    n2xx, n429, nother = 0, 0, 0
    wait = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
    headers = {
        ["authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN"),
        ["content-type"] = "application/json",
    }
    body = os.getenv("BENCH_BODY")
end

function delay()
    return wait
end

function request()
    return wrk.format("POST", "/v1/eta", headers, body)
end

function response(status, hdrs, b)
    if status >= 200 and status < 300 then
        n2xx = n2xx + 1
    elseif status == 429 then
        n429 = n429 + 1
    else
        nother = nother + 1
    end
end

function done(summary, latency, requests)
    local ok, tm, other = 0, 0, 0
    for _, t in ipairs(threads) do
        ok = ok + t:get("n2xx")
        tm = tm + t:get("n429")
        other = other + t:get("nother")
    end
    local e = summary.errors
    io.write(string.format(
        "RESULT tag=%s requests=%d duration_us=%d p50_us=%d p95_us=%d p99_us=%d max_us=%d ok=%d r429=%d other=%d socket_errors=%d\n",
        os.getenv("BENCH_TAG") or "-", summary.requests, summary.duration,
        latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max,
        ok, tm, other, e.connect + e.read + e.write + e.timeout))
end
