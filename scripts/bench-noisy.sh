#!/usr/bin/env bash
# Noisy-neighbour benchmark (`make bench-noisy`): does one tenant's flood and backfill
# reach another tenant's latency?
#
# Topology (all on this machine's 2 shared CPUs, nothing pinned): the control API, one
# data-plane host (`bulkhead serve --plane-name dp_pool_us`, HTTPS with client
# certificates) and Envoy with envoy/edge.yaml — jwt-auth → tenant-router → rate-limit →
# router, Envoy → host over mTLS. Tenants: B = DL (victim, bridge, its own model) on a
# plan of B_RATE/s, A = EV (pool) on a plan of A_RATE/s. Loads are paced wrk clients
# (scripts/bench-noisy.lua: each connection waits a fixed delay after each answer).
#
# Phases, in one run:
#   solo        B alone at half its plan.
#   noisy       A submits a 1,000,000-row batch job (CSV: the committed flights slice
#               repeated, generated into the work directory), then floods /v1/eta at 10×
#               its plan while B is measured again.
#   unprotected the same with the protections off: A's plan raised to 1,000,000/s (no
#               edge limit), the host restarted with --batch-sched normal and admission
#               caps lifted (--max-concurrency, A's max_concurrency).
# Reported: B's p50/p95/p99 per phase, A's answers by status (429s come from the edge's
# rate-limit filter: the host's own 429 count for A is shown beside it), and each batch
# job's completion time. The section "## Noisy neighbours" of BENCHMARKS.md is replaced.
#
# Knobs (environment): BENCH_NOISY_SECONDS=20 (per measured phase), B_RATE=200, A_RATE=50,
# BENCH_NOISY_ROWS=1000000, BENCH_NOISY_PORT_BASE=18600, BENCH_NOISY_PROFILE=release,
# BENCH_OUT, BENCH_WORK.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${BENCH_OUT:-$ROOT/BENCHMARKS.md}
WORK=${BENCH_WORK:-$CARGO_TARGET_DIR/bench-noisy}
SECS=${BENCH_NOISY_SECONDS:-20}
B_RATE=${B_RATE:-200}
A_RATE=${A_RATE:-50}
ROWS=${BENCH_NOISY_ROWS:-1000000}
BASE=${BENCH_NOISY_PORT_BASE:-18600}
# `debug` only to try the script out quickly: the numbers are the release build's.
PROFILE=${BENCH_NOISY_PROFILE:-release}
LISTEN_PORT=$BASE CONTROL_PORT=$((BASE + 1)) ADMIN_PORT=$((BASE + 2)) HOST_PORT=$((BASE + 3))
TLS_PORT=$((BASE + 4)) SILO_PORT=$((BASE + 5)) EU_PORT=$((BASE + 6))
BENCH_NAME=bench-noisy
COMMAND="make bench-noisy"

die() { echo "$BENCH_NAME: error: $*" >&2; exit 1; }
log() { echo "$BENCH_NAME: $*" >&2; }
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found on PATH: $2"; }
need cargo "the Rust toolchain is required"
need wrk "install the Debian package: apt-get install wrk"
need curl "install the Debian package: apt-get install curl"
need python3 "python3 is required"
ENVOY=$("$ROOT/scripts/envoy-bin.sh") || die "no Envoy: run 'make deps'"
for p in $LISTEN_PORT $CONTROL_PORT $ADMIN_PORT $HOST_PORT $TLS_PORT; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        die "127.0.0.1:$p is in use (set BENCH_NOISY_PORT_BASE)"
    fi
done

rm -rf "$WORK"
mkdir -p "$WORK/logs"
PIDS=()
HOST_PID=""
cleanup() {
    local rc=$?
    [[ -n $HOST_PID ]] && kill "$HOST_PID" 2>/dev/null || true
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

START=$(date +%s)
log "building the filters (wasm32-wasip1), eta-forecaster (wasm32-wasip2) and bulkhead (release)"
(cd "$ROOT" && cargo build --quiet --release --target wasm32-wasip1 \
    -p jwt-auth-filter -p tenant-router-filter -p rate-limit-filter)
(cd "$ROOT" && cargo build --quiet --release --target wasm32-wasip2 -p eta-forecaster-plugin)
if [[ $PROFILE == release ]]; then
    (cd "$ROOT" && cargo build --quiet --release -p bulkhead)
else
    (cd "$ROOT" && cargo build --quiet -p bulkhead)
fi
BUILD_SECONDS=$(($(date +%s) - START))
BIN=$CARGO_TARGET_DIR/$PROFILE/bulkhead
WASM=$CARGO_TARGET_DIR/wasm32-wasip1/release
PLUGIN=$CARGO_TARGET_DIR/wasm32-wasip2/release/eta_forecaster_plugin.wasm

STATE=$WORK/state
REG=$STATE/registry.json
DP=$STATE/data-plane
bh() { "$BIN" --state-dir "$STATE" --registry "$REG" "$@"; }
bh registry init >/dev/null
# plan_registry A_PLAN_RATE A_MAX_CONCURRENCY: B (DL) and A (EV) on bench plans.
plan_registry() {
    python3 - "$REG" "$B_RATE" "$1" "$2" <<'PY'
import json, sys
path, b_rate, a_rate, a_conc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
doc = json.load(open(path))
doc["revision"] = doc.get("revision", 1) + 1
doc["plans"]["bench-b"] = {"per_second": b_rate, "burst": max(b_rate // 4, 1)}
doc["plans"]["bench-a"] = {"per_second": a_rate, "burst": max(a_rate, 1)}
doc["tenants"]["DL"]["plan"] = "bench-b"
doc["tenants"]["EV"]["plan"] = "bench-a"
doc["tenants"]["EV"]["max_concurrency"] = a_conc
tmp = path + ".tmp"
json.dump(doc, open(tmp, "w"), indent=2)
import os; os.replace(tmp, path)
PY
}
plan_registry "$A_RATE" 8
bh model seed --flights "$ROOT/tests/data/flights.csv" --plugin "$PLUGIN" >"$WORK/logs/seed.log" 2>&1 ||
    die "model seed failed: $(tail -5 "$WORK/logs/seed.log")"
"$ROOT/scripts/dev-tls.sh" "$STATE/tls" >/dev/null
TLS=$STATE/tls
bh envoy-config --template "$ROOT/envoy/edge.yaml" \
    --set "JWT_AUTH_WASM=$WASM/jwt_auth_filter.wasm" \
    --set "TENANT_ROUTER_WASM=$WASM/tenant_router_filter.wasm" \
    --set "RATE_LIMIT_WASM=$WASM/rate_limit_filter.wasm" \
    --set "TLS_CERT=$TLS/server.pem" --set "TLS_KEY=$TLS/server-key.pem" \
    --set "UPSTREAM_CLIENT_CERT=$TLS/envoy-client.pem" \
    --set "UPSTREAM_CLIENT_KEY=$TLS/envoy-client-key.pem" --set "UPSTREAM_CA=$TLS/mesh-ca.pem" \
    --set "LISTEN_PORT=$LISTEN_PORT" --set "TLS_PORT=$TLS_PORT" --set "ADMIN_PORT=$ADMIN_PORT" \
    --set "CONTROL_PORT=$CONTROL_PORT" --set "POOL_US_PORT=$HOST_PORT" \
    --set "SILO_UA_PORT=$SILO_PORT" --set "POOL_EU_PORT=$EU_PORT" --out "$WORK/envoy.yaml"

# The 1,000,000-row upload: the slice's flights, repeated, as CSV.
python3 - "$ROOT/tests/data/flights.csv" "$WORK/batch.csv" "$ROWS" <<'PY'
import csv, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = []
for r in csv.DictReader(open(src)):
    hour = r.get("hour") or (str(int(r["sched_dep_time"]) // 100) if r.get("sched_dep_time") else "")
    na = lambda v: "" if v in ("NA", None) else v  # the data set's missing values: empty cells
    rows.append(",".join(na(v) for v in [r["origin"], r["dest"], r["month"], hour, r["distance"], r["dep_delay"]]))
with open(dst, "w") as f:
    f.write("origin,dest,month,sched_dep_hour,distance,dep_delay\n")
    for i in range(n):
        f.write(rows[i % len(rows)]); f.write("\n")
PY
log "batch upload: $ROWS rows, $(du -h "$WORK/batch.csv" | cut -f1)"

"$BIN" --state-dir "$STATE" --registry "$REG" control --listen "127.0.0.1:$CONTROL_PORT" \
    2>"$WORK/logs/control.log" &
PIDS+=($!)
HOST_CURL=(--cert "$TLS/envoy-client.pem" --key "$TLS/envoy-client-key.pem" --cacert "$TLS/mesh-ca.pem")

# start_host PHASE EXTRA_FLAGS...
start_host() {
    local phase=$1; shift
    "$BIN" --state-dir "$STATE" --registry "$REG" serve --listen "127.0.0.1:$HOST_PORT" --plane-name dp_pool_us \
        --tls-cert "$TLS/host.pem" --tls-key "$TLS/host-key.pem" --client-ca "$TLS/mesh-ca.pem" \
        --meter-dir "$WORK/meter-$phase" --batch-meter-dir "$WORK/batch-meter-$phase" "$@" \
        2>"$WORK/logs/host-$phase.log" &
    HOST_PID=$!
    local t0
    t0=$(date +%s)
    until curl -sf "${HOST_CURL[@]}" "https://localhost:$HOST_PORT/readyz" >/dev/null 2>&1; do
        (($(date +%s) - t0 < 90)) || die "the host never became ready: $(tail -5 "$WORK/logs/host-$phase.log")"
        kill -0 "$HOST_PID" 2>/dev/null || die "the host exited: $(tail -5 "$WORK/logs/host-$phase.log")"
        sleep 0.2
    done
}
stop_host() {
    [[ -n $HOST_PID ]] && { kill -TERM "$HOST_PID" 2>/dev/null || true; wait "$HOST_PID" 2>/dev/null || true; }
    HOST_PID=""
}

start_host protected
"$ENVOY" -c "$WORK/envoy.yaml" --concurrency 2 --disable-hot-restart --log-path "$WORK/logs/envoy.log" \
    2>"$WORK/logs/envoy.stderr" &
PIDS+=($!)
TOKEN_B=$(bh token --org DL --ttl 3600)
TOKEN_A=$(bh token --org EV --ttl 3600)
export BENCH_BODY='{"rows":[{"origin":"LGA","dest":"ATL","month":11,"sched_dep_hour":9,"distance":762,"dep_delay":null}]}'
URL=http://127.0.0.1:$LISTEN_PORT
ok=
for _ in $(seq 1 150); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/v1/eta" -H "authorization: Bearer $TOKEN_B" \
        -H 'content-type: application/json' -d "$BENCH_BODY" || true)
    [[ $code == 200 ]] && { ok=1; break; }
    sleep 0.2
done
[[ -n $ok ]] || die "the edge never answered B (last $code); see $WORK/logs/envoy.log"

# Paced wrk runs. B: 4 connections, each waiting 4000/B_RATE ms → B_RATE/2 req/s (half
# its plan). A: 10 connections at 10 × A_RATE req/s.
B_CONNS=4
B_DELAY=$((B_CONNS * 1000 * 2 / B_RATE))
A_CONNS=10
A_DELAY=$((A_CONNS * 1000 / (10 * A_RATE)))
wrk_b() { # wrk_b TAG SECONDS
    BENCH_TOKEN=$TOKEN_B BENCH_DELAY_MS=$B_DELAY BENCH_TAG=$1 wrk -t1 -c$B_CONNS -d"$2s" --timeout 5s \
        -s "$ROOT/scripts/bench-noisy.lua" "$URL" | grep '^RESULT' || true
}
wrk_a() { # wrk_a TAG SECONDS
    BENCH_TOKEN=$TOKEN_A BENCH_DELAY_MS=$A_DELAY BENCH_TAG=$1 wrk -t1 -c$A_CONNS -d"$2s" --timeout 5s \
        -s "$ROOT/scripts/bench-noisy.lua" "$URL" | grep '^RESULT' || true
}
host_429() { # A's 429s answered by the host itself (admission), from its /metrics
    curl -s "${HOST_CURL[@]}" "https://localhost:$HOST_PORT/metrics" |
        awk '/^bulkhead_requests_total\{/ && /tenant="EV"/ && /status="429"/ {s += $2} END {print s + 0}'
}
# submit: A's batch job through the edge; echoes the job id and the submit time.
submit() {
    local t0 resp
    t0=$(date +%s.%N)
    resp=$(curl -s --max-time 300 "$URL/v1/batch/eta" -H "authorization: Bearer $TOKEN_A" \
        -H 'content-type: text/csv' --data-binary @"$WORK/batch.csv") || die "batch upload failed"
    local id
    id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["job_id"])' "$resp" 2>/dev/null) ||
        die "batch upload refused: $resp"
    echo "$id $t0 $(date +%s.%N)"
}
# wait_job ID T0 LIMIT_S: seconds from T0 until the job is done (or "unfinished").
wait_job() {
    local id=$1 t0=$2 limit=$3 s
    while :; do
        s=$(curl -s "$URL/v1/batch/$id" -H "authorization: Bearer $TOKEN_A" |
            python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["status"], j["rows_done"])' 2>/dev/null || echo "? 0")
        case $s in
            done*) python3 -c "import time; print(f'{time.time() - $t0:.1f}')"; return ;;
            failed*) echo "failed"; return ;;
        esac
        if python3 -c "import sys,time; sys.exit(0 if time.time() - $t0 > $limit else 1)"; then
            echo "unfinished_after_${limit}s_rows_done_${s#* }"; return
        fi
        sleep 0.5
    done
}

RES=$WORK/results
: >"$RES"
log "warm-up"
wrk_b warm 3 >/dev/null
log "phase solo: B alone for ${SECS}s"
echo "solo $(wrk_b solo "$SECS")" >>"$RES"

# noisy_phase NAME: batch job + A's flood + B measured.
noisy_phase() {
    local name=$1 job id t0 t1 pid_a a_res host429_before
    host429_before=$(host_429)
    log "phase $name: A uploads the batch job"
    job=$(submit)
    read -r id t0 t1 <<<"$job"
    log "phase $name: job $id accepted after $(python3 -c "print(f'{$t1 - $t0:.1f}')") s; A floods, B measured for ${SECS}s"
    wrk_a "a-$name" "$SECS" >"$WORK/a-$name" &
    pid_a=$!
    echo "$name $(wrk_b "$name" "$SECS")" >>"$RES"
    wait "$pid_a" || true
    a_res=$(cat "$WORK/a-$name")
    local done_s
    done_s=$(wait_job "$id" "$t0" 240)
    echo "$name-a $a_res host429=$(( $(host_429) - host429_before )) upload_s=$(python3 -c "print(f'{$t1 - $t0:.1f}')") batch_s=$done_s" >>"$RES"
    log "phase $name: batch job done after $done_s s (from the start of its upload)"
}
noisy_phase protected

log "protections off: A's plan 1,000,000/s, host with --batch-sched normal and no admission caps"
plan_registry 1000000 100000
stop_host
rm -rf "$DP/batch" # a job left unfinished by the first phase must not run in the second
start_host unprotected --batch-sched normal --max-concurrency 100000
sleep 3 # the edge re-fetches the registry every 2 s
wrk_b warm2 3 >/dev/null
noisy_phase unprotected
MEASURE_SECONDS=$(($(date +%s) - START - BUILD_SECONDS))
cat "$RES" >&2

# ------------------------------------------------------------------ BENCHMARKS.md
SECTION=$WORK/section.md
python3 - "$RES" "$SECTION" <<PY
import re, sys
res = {}
for line in open(sys.argv[1]):
    name, _, rest = line.strip().partition(" ")
    res[name] = dict(re.findall(r"(\w+)=(\S+)", rest))
def ms(v): return f"{int(v) / 1000:.2f}"
solo = res.get("solo", {})
out = []
out.append("## Noisy neighbours\n")
out.append(f"Measured $(date -u '+%Y-%m-%d %H:%M UTC') with \`$COMMAND\` (\`scripts/bench-noisy.sh\` + \`scripts/bench-noisy.lua\`; build ${BUILD_SECONDS} s, run ${MEASURE_SECONDS} s). "
           f"All on this machine's $(nproc) CPUs, shared by Envoy (2 workers, every filter: jwt-auth → tenant-router → rate-limit → router, mTLS to the host), the control API, one \`bulkhead serve\` (1 batch worker), the batch job and wrk — nothing pinned, and other builds may run beside it (load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)).\n")
out.append(f"B = DL (bridge, its own model) on a plan of ${B_RATE}/s, sending 1-row \`POST /v1/eta\` at half of it ({${B_RATE}//2}/s: 4 paced connections). "
           f"A = EV (pool) on a plan of ${A_RATE}/s: a ${ROWS}-row CSV batch job (the committed flights slice repeated) uploaded through the edge, then \`POST /v1/eta\` at 10× its plan (${A_RATE}0/s: 10 paced connections) while B is measured for ${SECS} s. "
           "Unprotected: A's plan raised to 1,000,000/s (no edge limit), the host restarted with \`--batch-sched normal\` and no admission caps.\n")
out.append("| phase | B requests | B p50 ms | B p95 ms | B p99 ms | B max ms | B p95 / solo | A 2xx | A 429 (edge) | A 429 (host) | A other | batch upload s | batch done after s |")
out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for ph in ["solo", "protected", "unprotected"]:
    b = res.get(ph, {})
    a = res.get(ph + "-a", {})
    if not b: continue
    ratio = f"{int(b['p95_us']) / int(solo['p95_us']):.2f}×" if solo.get("p95_us") and ph != "solo" else "1.00×"
    host429 = int(a.get("host429", 0))
    edge429 = int(a.get("r429", 0)) - host429 if a else ""
    out.append(f"| {ph} | {b['requests']} | {ms(b['p50_us'])} | {ms(b['p95_us'])} | {ms(b['p99_us'])} | {ms(b['max_us'])} | {ratio} | "
               f"{a.get('ok', '')} | {edge429} | {a.get('host429', '')} | {a.get('other', '')} | {a.get('upload_s', '')} | {a.get('batch_s', '')} |")
out.append("")
out.append("Raw wrk results (\`RESULT\` lines of \`scripts/bench-noisy.lua\`):\n")
out.append("\`\`\`")
out += [l.rstrip() for l in open(sys.argv[1])]
out.append("\`\`\`\n")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
PY

python3 - "$OUT" "$SECTION" <<'PY'
import sys
path, section = sys.argv[1], open(sys.argv[2]).read()
try:
    text = open(path).read()
except FileNotFoundError:
    text = "# Benchmarks\n"
head = "## Noisy neighbours"
if head in text:
    start = text.index(head)
    nxt = text.find("\n## ", start + len(head))
    text = text[:start] + section.rstrip("\n") + ("\n" + text[nxt:] if nxt != -1 else "\n")
else:
    text = text.rstrip("\n") + "\n\n" + section
open(path, "w").write(text)
PY
log "wrote the \"Noisy neighbours\" section of $OUT"
cat "$SECTION"
