#!/usr/bin/env bash
# Metering benchmark (`make bench-meter`): what durable usage events cost per request.
#
# Builds (release) the eta-forecaster component and `bulkhead`, seeds the model store
# from the committed flights slice, then runs `bulkhead serve` on 127.0.0.1 twice per
# round — `--meter on` (every 200 waits for its event's fsync, group commit) and
# `--meter off` (no event: the comparison only) — under the same closed loop: wrk, 8
# connections (keep-alive), each sending its next request when the answer is in, every
# request a new x-request-id (a new event), 1-row bodies (the per-request overhead is
# what is measured). serve is pinned to CPU 0, wrk to CPU 1. fsyncs per request come
# from the meter log's own counters, which serve logs when it stops.
# Results go to the "## Metering" section of BENCHMARKS.md (replaced if it exists).
#
# Knobs (environment):
#   BENCH_METER_PORT=18490      serve listens on 127.0.0.1:PORT
#   BENCH_METER_SECONDS=10      measured seconds per run (after 2 s of warm-up)
#   BENCH_METER_ROUNDS=2        rounds of (off, on)
#   BENCH_METER_CONNS=8         wrk connections (concurrent clients)
#   BENCH_OUT=<repo>/BENCHMARKS.md
#   BENCH_WORK=<target>/bench-meter  work directory (wiped)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${BENCH_OUT:-$ROOT/BENCHMARKS.md}
WORK=${BENCH_WORK:-$CARGO_TARGET_DIR/bench-meter}
PORT=${BENCH_METER_PORT:-18490}
SECONDS_PER_RUN=${BENCH_METER_SECONDS:-10}
ROUNDS=${BENCH_METER_ROUNDS:-2}
CONNS=${BENCH_METER_CONNS:-8}
BENCH_NAME=bench-meter
RUN=$WORK/run
COMMAND="make bench-meter"
rm -rf "$WORK"
mkdir -p "$RUN"
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"

SERVE_PID=""
stop_serve() {
    if [[ -n $SERVE_PID ]]; then
        kill -TERM "$SERVE_PID" 2>/dev/null || true
        wait "$SERVE_PID" 2>/dev/null || true
    fi
    SERVE_PID=""
}
trap 'rc=$?; stop_serve; exit $rc' EXIT

need cargo "the Rust toolchain is required"
need wrk "install the Debian package: apt-get install wrk"
need taskset "install util-linux"
need curl "install the Debian package: apt-get install curl"
[[ $(nproc) -ge 2 ]] || die "needs 2 CPUs (serve on CPU 0, wrk on CPU 1)"
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    die "127.0.0.1:$PORT is in use (set BENCH_METER_PORT)"
fi

START=$(date +%s)
log "building eta-forecaster-plugin (wasm32-wasip2) and bulkhead (release)"
(cd "$ROOT" && cargo build --quiet --release --target wasm32-wasip2 -p eta-forecaster-plugin)
(cd "$ROOT" && cargo build --quiet --release -p bulkhead)
BUILD_SECONDS=$(($(date +%s) - START))
PLUGIN=$CARGO_TARGET_DIR/wasm32-wasip2/release/eta_forecaster_plugin.wasm
BULKHEAD=$CARGO_TARGET_DIR/release/bulkhead
for f in "$PLUGIN" "$BULKHEAD"; do [[ -f $f ]] || die "missing $f after the build"; done

STATE=$WORK/state
REG=$WORK/registry.json
bh() { "$BULKHEAD" --state-dir "$STATE" --registry "$REG" "$@"; }
bh registry init >/dev/null
bh model seed --flights "$ROOT/tests/data/flights.csv" --plugin "$PLUGIN" >"$RUN/seed.log" 2>&1 ||
    die "model seed failed: $(tail -5 "$RUN/seed.log")"
export BENCH_ORG=DL
BENCH_TOKEN=$(bh token --org "$BENCH_ORG" --ttl 3600 2>/dev/null)
export BENCH_TOKEN
export BENCH_BODY='{"rows":[{"origin":"LGA","dest":"ATL","month":11,"sched_dep_hour":9,"distance":762,"dep_delay":null}]}'

# run MODE ROUND: one serve, warm-up, one measured wrk run; appends a line to results.
run() {
    local mode=$1 round=$2 log=$RUN/serve-$1-$2.log
    taskset -c 0 "$BULKHEAD" --state-dir "$STATE" --registry "$REG" serve \
        --listen "127.0.0.1:$PORT" --plane-name dp_pool_us \
        --meter "$mode" --meter-dir "$WORK/meter-$mode-$round" >/dev/null 2>"$log" &
    SERVE_PID=$!
    local t0
    t0=$(date +%s)
    until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; do
        (($(date +%s) - t0 < 60)) || die "serve never became ready: $(tail -5 "$log")"
        kill -0 "$SERVE_PID" 2>/dev/null || die "serve exited: $(tail -5 "$log")"
        sleep 0.1
    done
    BENCH_TAG="warm-$mode-$round" taskset -c 1 wrk -t1 -c"$CONNS" -d2s \
        -s "$ROOT/scripts/bench-meter.lua" "http://127.0.0.1:$PORT" >/dev/null
    local res
    res=$(BENCH_TAG="run-$mode-$round" taskset -c 1 wrk -t1 -c"$CONNS" -d"${SECONDS_PER_RUN}s" \
        --timeout 5s -s "$ROOT/scripts/bench-meter.lua" "http://127.0.0.1:$PORT" | grep '^RESULT')
    stop_serve
    local stats
    stats=$(grep -o 'appends=[0-9]* batches=[0-9]* fsyncs=[0-9]*' "$log" | tail -1 || true)
    [[ $mode == off || -n $stats ]] || die "serve did not log its meter counters: $(tail -5 "$log")"
    echo "$mode $round $res ${stats:-appends=0 batches=0 fsyncs=0}" >>"$RUN/results"
    log "$mode round $round: $res ${stats}"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
MEASURE_START=$(date +%s)
for round in $(seq 1 "$ROUNDS"); do
    run off "$round"
    run on "$round"
done
MEASURE_SECONDS=$(($(date +%s) - MEASURE_START))
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# Per mode: sum requests and time over rounds; latency: the median of the rounds' p50/p99.
SECTION=$RUN/section.md
awk -v cmd="$COMMAND" -v date="$(date -u '+%Y-%m-%d %H:%M UTC')" -v secs="$SECONDS_PER_RUN" \
    -v rounds="$ROUNDS" -v conns="$CONNS" -v build="$BUILD_SECONDS" -v meas="$MEASURE_SECONDS" \
    -v lb="$LOAD_BEFORE" -v la="$LOAD_AFTER" -v cpus="$(nproc)" '
function val(s, k,   i) { for (i = 3; i <= NF; i++) if (index($i, k "=") == 1) return substr($i, length(k) + 2); return 0 }
{
    m = $1
    req[m] += val($0, "requests"); dur[m] += val($0, "duration_us")
    non2xx[m] += val($0, "non2xx"); serr[m] += val($0, "socket_errors")
    p50[m] = p50[m] " " val($0, "p50_us"); p99[m] = p99[m] " " val($0, "p99_us")
    app[m] += val($0, "appends"); bat[m] += val($0, "batches"); fs[m] += val($0, "fsyncs")
}
function med(list,   a, n, i, j, t) {
    n = split(list, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
END {
    print "## Metering\n"
    printf "Measured %s with the release build of `bulkhead`. Command: `%s` (runs `scripts/bench-meter.sh` + `scripts/bench-meter.lua`; build %d s, measurements %d s).\n\n", date, cmd, build, meas
    printf "Setup: `bulkhead serve` on 127.0.0.1 pinned to CPU 0 (%d CPUs, shared with other work; load average before %s, after %s), the real eta-forecaster model of DL (seeded from the committed flights slice), `wrk -t1 -c%d` pinned to CPU 1: a closed loop of %d keep-alive clients, each sending its next request when the answer is in, every request a unique `x-request-id` (a new usage event), 1-row bodies. %d rounds of (`--meter off`, `--meter on`), each run %d s after 2 s of warm-up, a fresh serve and meter directory per run. `--meter on`: the 200 is sent after the event is fsynced (`fdatasync`, group commit); `--meter off`: no event (exists for this comparison only). fsyncs and appends are the meter log'"'"'s own counters over the server'"'"'s life (warm-up included).\n\n", cpus, lb, la, conns, conns, rounds, secs
    print "| mode | requests | req/s | p50 µs | p99 µs | non-2xx | socket errors | events | fsyncs | fsyncs / request | events / fsync |"
    print "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for (k = 1; k <= 2; k++) {
        m = (k == 1) ? "off" : "on"
        rps[m] = req[m] / (dur[m] / 1e6)
        if (m == "on") { fpr = sprintf("%.3f", fs[m] / app[m]); epf = sprintf("%.1f", app[m] / fs[m]) } else { fpr = "—"; epf = "—" }
        printf "| `--meter %s` | %d | %.0f | %.0f | %.0f | %d | %d | %d | %d | %s | %s |\n", m, req[m], rps[m], med(p50[m]), med(p99[m]), non2xx[m], serr[m], app[m], fs[m], fpr, epf
    }
    printf "\nCost of durable metering at %d concurrent clients: throughput %+.1f%% (%.0f → %.0f req/s), p50 %+.0f µs, p99 %+.0f µs (medians over the rounds); %.3f fsyncs per request — one fsync covers %.1f requests on average.\n", conns, (rps["on"] / rps["off"] - 1) * 100, rps["off"], rps["on"], med(p50["on"]) - med(p50["off"]), med(p99["on"]) - med(p99["off"]), fs["on"] / app["on"], app["on"] / fs["on"]
    printf "\nReading it: a closed loop of %d clients has at most %d requests in flight, so at most %d events can share one fsync; the events that arrive while an fsync runs wait for the next one. The added latency is of the order of one `fdatasync` of this machine'"'"'s disk per request (%d fsyncs in about %d s of metered serving, warm-up included: the writer was fsyncing most of the time), and throughput is capped near (events per fsync) / (fsync time). More concurrent clients fill each fsync with more events; a faster disk (or a battery-backed write cache) shortens each one.\n", conns, conns, conns, fs["on"], rounds * (secs + 2)
}' "$RUN/results" >"$SECTION"

publish_section Metering "$SECTION" "$OUT"
log "wrote the Metering section of $OUT in $(($(date +%s) - START))s"
