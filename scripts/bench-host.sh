#!/usr/bin/env bash
# Host benchmark (`make bench-host`): the model sandbox and the data plane, in one run.
#
# Builds (release) the eta-forecaster component, `bulkhead` and the bench binary
# (tests/bench-host), then runs the bench binary, which measures:
#   1. the ETA model natively (decode + predict_columns, the plugin's work) vs through
#      Sandbox::predict with the model resident, 100-row batches;
#   2. a warm POST /v1/eta through `bulkhead serve` on 127.0.0.1 (keep-alive, 100 rows);
#   3. cold loads: precompiled `.cwasm`, compiling the `.wasm`, a new tenant's artifact;
#   4. 1,000 tenant models, cache capacity 100, a Zipf (s=1) tenant mix: RSS, hit rate;
#   5. a full pipeline request whose rows all look up features (sched_dep + tailnum),
#      SQLite stores vs PostgreSQL (a throwaway local cluster), 1 and 100 rows, warm.
# Results go to the "## Host" and "## Feature stores" sections of BENCHMARKS.md (each
# replaced if it exists).
#
# Knobs (environment):
#   BENCH_HOST_PORT=18480         bulkhead serve listens on 127.0.0.1:PORT
#   BENCH_HOST_TENANTS=1000       tenant models registered
#   BENCH_HOST_CACHE=100          bulkhead serve --cache-entries
#   BENCH_HOST_HTTP_REQUESTS=3000 warm HTTP requests measured (bounded by 30 s)
#   BENCH_HOST_ZIPF_REQUESTS=5000 Zipf requests measured (after 1000 warm-up; bounded by 60 s)
#   BENCH_HOST_ZIPF_S=1.0         Zipf exponent
#   BENCH_HOST_ONLY=all           `features`: only phase 5 (about a minute once built)
#   BENCH_HOST_FEATURES_REQUESTS=2000  measured requests per (store, rows), each bounded by
#   BENCH_HOST_FEATURES_SECONDS=12     this many seconds
#   BENCH_HOST_TIMEOUT=600        the bench binary is killed after this many seconds
#   BENCH_OUT=<repo>/BENCHMARKS.md
#   BENCH_WORK=<target>/bench-host  work directory (model store, registry, logs; wiped)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${BENCH_OUT:-$ROOT/BENCHMARKS.md}
WORK=${BENCH_WORK:-$CARGO_TARGET_DIR/bench-host}
PORT=${BENCH_HOST_PORT:-18480}
TIMEOUT=${BENCH_HOST_TIMEOUT:-600}
BENCH_NAME=bench-host
RUN=$WORK-out # publish_section's scratch (the bench binary wipes $WORK)
COMMAND="make bench-host"
mkdir -p "$RUN"
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"

need cargo "the Rust toolchain is required"
need timeout "install coreutils"
[[ $(nproc) -ge 2 ]] || log "warning: $(nproc) CPU(s); the figures assume 2"

START=$(date +%s)
log "building eta-forecaster-plugin (wasm32-wasip2), bulkhead and bench-host (release)"
(cd "$ROOT" && cargo build --quiet --release --target wasm32-wasip2 -p eta-forecaster-plugin)
(cd "$ROOT" && cargo build --quiet --release -p bulkhead -p bench-host)
BUILD_SECONDS=$(($(date +%s) - START))
PLUGIN=$CARGO_TARGET_DIR/wasm32-wasip2/release/eta_forecaster_plugin.wasm
BULKHEAD=$CARGO_TARGET_DIR/release/bulkhead
BENCH=$CARGO_TARGET_DIR/release/bench-host
for f in "$PLUGIN" "$BULKHEAD" "$BENCH"; do
    [[ -f $f ]] || die "missing $f after the build"
done

log "running (load average $(cut -d' ' -f1-3 /proc/loadavg)); bounded by ${TIMEOUT}s"
timeout --signal=TERM "$TIMEOUT" "$BENCH" \
    --bulkhead "$BULKHEAD" \
    --plugin "$PLUGIN" \
    --flights "$ROOT/tests/data/flights.csv" \
    --work "$WORK" \
    --out "$RUN/section.md" \
    --port "$PORT" \
    --tenants "${BENCH_HOST_TENANTS:-1000}" \
    --cache-entries "${BENCH_HOST_CACHE:-100}" \
    --http-requests "${BENCH_HOST_HTTP_REQUESTS:-3000}" \
    --zipf-requests "${BENCH_HOST_ZIPF_REQUESTS:-5000}" \
    --zipf-s "${BENCH_HOST_ZIPF_S:-1.0}" \
    --command "$COMMAND" \
    --date "$(date -u '+%Y-%m-%d %H:%M UTC')" \
    --build-seconds "$BUILD_SECONDS" \
    --only "${BENCH_HOST_ONLY:-all}" \
    --features-out "$RUN/features.md" \
    --features-requests "${BENCH_HOST_FEATURES_REQUESTS:-2000}" \
    --features-seconds "${BENCH_HOST_FEATURES_SECONDS:-12}" ||
    die "the bench failed (server logs: $WORK/serve.log, $WORK/features/)"

if [[ ${BENCH_HOST_ONLY:-all} != features ]]; then
    publish_section Host "$RUN/section.md" "$OUT"
fi
publish_section "Feature stores" "$RUN/features.md" "$OUT"
log "wrote the results to $OUT in $(($(date +%s) - START))s"
