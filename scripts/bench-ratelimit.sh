#!/usr/bin/env bash
# Rate-limit benchmark: the rate-limit wasm filter behind jwt-auth against Envoy's native
# jwt_authn + local_ratelimit with one descriptor per tenant, under traffic that is never
# limited (the cost of the check) and traffic that is mostly limited (the cost of saying no).
# Runs alone or from scripts/bench-edge.sh; writes the "## Rate limit" section of
# BENCHMARKS.md (replaced if it exists, every other section kept).
#
# One Envoy (--concurrency 1, pinned to CPU 0) serves six listeners, each answering with a
# direct_response (200, 2-byte body: no upstream process); wrk runs pinned to CPU 1
# (-t1 -c8) and rotates through one ES256 token per tenant (all verified-token cache hits
# after the warm-up, so the JWT step costs the same in every run).
#
#   jwt_ours      jwt-auth (wasm) alone                       baseline of ours
#   ours_open     jwt-auth → rate-limit (wasm), plan never reached
#   ours_tight    jwt-auth → rate-limit (wasm), 5/s burst 5 per tenant: mostly 429
#   jwt_native    native jwt_authn (cache) alone               baseline of native
#   native_open   jwt_authn + local_ratelimit, a descriptor per tenant, never reached
#   native_tight  jwt_authn + local_ratelimit, 5/s bucket of 5 per tenant: mostly 429
#
# Knobs (environment):
#   BENCH_DURATION=10        seconds per measured run
#   BENCH_WARMUP=2           seconds of warm-up before each measured run
#   BENCH_RL_ROUNDS=3        rounds over all listeners (alternating order); medians reported
#   BENCH_RL_TENANTS=100     tenants (one token each; org-0 … org-N-1)
#   BENCH_RL_PORT_BASE=18500 admin on BASE, listeners on BASE+1..BASE+6 (127.0.0.1 only)
#   BENCH_OUT=<repo>/BENCHMARKS.md
#   BENCH_RL_WORK=<target>/bench-ratelimit
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-2}
ROUNDS=${BENCH_RL_ROUNDS:-3}
TENANTS=${BENCH_RL_TENANTS:-100}
PORT_BASE=${BENCH_RL_PORT_BASE:-18500}
OUT=${BENCH_OUT:-$ROOT/BENCHMARKS.md}
WORK=${BENCH_RL_WORK:-$CARGO_TARGET_DIR/bench-ratelimit}
CONNS=8
TIGHT_RATE=5 # per tenant and second, burst the same
ISSUER=https://issuer.bench.test
AUDIENCE=bulkhead
ADMIN_PORT=$PORT_BASE
LISTENERS=(jwt_ours ours_open ours_tight jwt_native native_open native_tight)
declare -A PORT
for i in "${!LISTENERS[@]}"; do PORT[${LISTENERS[$i]}]=$((PORT_BASE + 1 + i)); done
COMMAND="scripts/bench-ratelimit.sh (BENCH_DURATION=$DURATION BENCH_WARMUP=$WARMUP BENCH_RL_ROUNDS=$ROUNDS BENCH_RL_TENANTS=$TENANTS)"
BENCH_NAME=bench-ratelimit
RUN=$WORK/run
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"

# ---------------------------------------------------------------- prerequisites
check_host BENCH_RL_PORT_BASE
[[ $TENANTS -ge 1 && $TENANTS -le 5000 ]] || die "BENCH_RL_TENANTS must be within 1..5000"
[[ $ROUNDS -ge 1 && $ROUNDS -le 20 ]] || die "BENCH_RL_ROUNDS must be within 1..20"

# ---------------------------------------------------------------- build
STARTED=$(date +%s)
build_bench jwt-auth-filter rate-limit-filter
JWT_WASM=$(wasm_module jwt_auth_filter.wasm)
RL_WASM=$(wasm_module rate_limit_filter.wasm)
rm -rf "$RUN"
mkdir -p "$RUN"

# ---------------------------------------------------------------- tokens
JWKS=$("$MINT" --jwks --algs ES256)
[[ $JWKS == *'"keys"'* ]] || die "bench-tokens --jwks printed no JWKS"
TOKENS=$RUN/tokens.txt
"$MINT" --alg ES256 --count "$TENANTS" --orgs "$TENANTS" --out "$TOKENS" \
    --issuer "$ISSUER" --audience "$AUDIENCE" --ttl 3600 2>/dev/null
[[ $(wc -l <"$TOKENS") -eq $TENANTS ]] || die "bench-tokens wrote $(wc -l <"$TOKENS") tokens, not $TENANTS"

cat >"$RUN/rotate.lua" <<'LUA'
local tokens, n, i = {}, 0, 0
local hdr = {}
function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then n = n + 1; tokens[n] = "Bearer " .. line end
  end
  if n == 0 then error("no tokens in " .. args[1]) end
end
function request()
  i = i % n + 1
  hdr["Authorization"] = tokens[i]
  return wrk.format(nil, nil, hdr)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d non2xx=%d sockerr=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), e.status,
    e.connect + e.read + e.write + e.timeout))
end
LUA

# ---------------------------------------------------------------- Envoy config
JWT_CONFIG=$(ours_config 10000)
tenants_json() { awk -v n="$TENANTS" 'BEGIN {for (i = 0; i < n; i++) printf "%s\"org-%d\":{}", (i ? "," : ""), i}'; }
# rl_config SCOPE PLAN_JSON
rl_config() { echo "{\"scope\":\"$1\",\"default_plan\":\"p\",\"plans\":{\"p\":$2},\"tenants\":{$(tenants_json)}}"; }
RL_OPEN=$(rl_config open '{"per_second":1000000,"burst":1000000}')
RL_TIGHT=$(rl_config tight "{\"per_second\":$TIGHT_RATE,\"burst\":$TIGHT_RATE}")

ours() { # ours [RL_CONFIG]
    wasm_filter "jwt_${2:-base}" jwt_auth bench_jwt "$JWT_WASM" "$JWT_CONFIG"
    [[ -n ${1:-} ]] && wasm_filter "rl_$2" rate_limit bench_rl "$RL_WASM" "$1"
    return 0
}
native_jwt() { jwt_authn_filter 10000; }
native_rl() { # native_rl MAX_TOKENS FILL_INTERVAL: one descriptor (token bucket) per tenant
    local_ratelimit_filter
    cat <<EOF
              enable_x_ratelimit_headers: DRAFT_VERSION_03
              rate_limits:
              - actions: [{request_headers: {header_name: x-org-id, descriptor_key: org_id}}]
              descriptors:
EOF
    awk -v n="$TENANTS" -v max="$1" -v fill="$2" 'BEGIN {
        for (i = 0; i < n; i++)
            printf "              - {entries: [{key: org_id, value: org-%d}], token_bucket: {max_tokens: %d, tokens_per_fill: 1, fill_interval: %s}}\n", i, max, fill
    }'
}
{
    envoy_config_head
    hcm jwt_ours "$(ours)"
    hcm ours_open "$(ours "$RL_OPEN" open)"
    hcm ours_tight "$(ours "$RL_TIGHT" tight)"
    hcm jwt_native "$(native_jwt)"
    # "Never limited": a bucket of 10^9 tokens outlasts any run here (refilled by one
    # token per 50 ms, the shortest interval Envoy accepts); the check runs and passes.
    hcm native_open "$(native_jwt)"$'\n'"$(native_rl 1000000000 0.05s)"
    hcm native_tight "$(native_jwt)"$'\n'"$(native_rl "$TIGHT_RATE" "$(awk -v r="$TIGHT_RATE" 'BEGIN {printf "%gs", 1 / r}')")"
} >"$RUN/envoy.yaml"

# ---------------------------------------------------------------- start Envoy
start_envoy ", $TENANTS tenants" --base-id 7351

TOKEN=$(head -1 "$TOKENS")
for l in "${LISTENERS[@]}"; do
    [[ $(status "$l") == 401 ]] || die "listener $l lets a request without a token through"
    code=$(status "$l" -H "Authorization: Bearer $TOKEN")
    [[ $code == 200 ]] || { tail -n 20 "$RUN/envoy.log" >&2; die "listener $l answers $code to a valid token"; }
done
# The tight listeners really limit: a burst of one tenant beyond its plan gets 429s.
for l in ours_tight native_tight; do
    codes=$(for _ in $(seq 1 $((TIGHT_RATE + 3))); do status "$l" -H "Authorization: Bearer $TOKEN"; echo; done | sort | uniq -c | tr -s ' \n' ' ')
    [[ $codes == *429* ]] || die "listener $l does not limit (answers: $codes)"
done

# ---------------------------------------------------------------- measuring
RESULTS=$RUN/results.tsv # listener round rps p50 p99 requests non2xx sockerr envoy-us/req cpu%
: >"$RESULTS"
measure() { # measure LISTENER ROUND
    local l=$1 r=$2 e0 e1 c0 c1 d0 d1 line
    wrk_run "$l" "$WARMUP" "$TOKENS"
    e0=$(envoy_ticks)
    read -r c0 d0 < <(cpu_busy)
    wrk_run "$l" "$DURATION" "$TOKENS"
    line=$WRK_LINE
    e1=$(envoy_ticks)
    read -r c1 d1 < <(cpu_busy)
    local us cpu
    us=$(per_req_us "$((e1 - e0))" "$(field requests "$line")")
    cpu=$(cpu_pct "$(field duration_us "$line")" "$((e1 - e0))" "$((c1 - c0 - (e1 - e0)))" "$((d1 - d0))")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$l" "$r" "$(field rps "$line")" "$(field p50_us "$line")" "$(field p99_us "$line")" \
        "$(field requests "$line")" "$(field non2xx "$line")" "$(field sockerr "$line")" "$us" "$cpu" >>"$RESULTS"
    log "$(printf 'round %s %-13s %8.0f req/s  p50 %6s us  p99 %6s us  non-2xx %7s of %8s  envoy %6s us/req  cpu%% envoy/others0/cpu1 %s' \
        "$r" "$l" "$(field rps "$line")" "$(field p50_us "$line")" "$(field p99_us "$line")" "$(field non2xx "$line")" \
        "$(field requests "$line")" "$us" "$cpu")"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
# Rounds alternate the order (forwards, backwards, …) so that no listener always runs
# first or right after the same neighbour; the report takes per-listener medians.
for r in $(seq 1 "$ROUNDS"); do
    order=("${LISTENERS[@]}")
    if ((r % 2 == 0)); then
        order=()
        for ((i = ${#LISTENERS[@]} - 1; i >= 0; i--)); do order+=("${LISTENERS[$i]}"); done
    fi
    for l in "${order[@]}"; do measure "$l" "$r"; done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
STATS=$(curl -s "http://127.0.0.1:$ADMIN_PORT/stats?filter=(wasmcustom\.rate_limit|bench_rl\.http_local_rate_limit)")
ELAPSED=$(($(date +%s) - STARTED))
stop_envoy
printf '%s\n' "$STATS" >"$RUN/stats.txt"

# ---------------------------------------------------------------- report
CPU_MODEL=$(cpu_model)
SECTION=$RUN/ratelimit.md
awk -F'\t' -v date="$(date -u '+%Y-%m-%d %H:%M UTC')" -v envoy="$ENVOY_VERSION" -v cmd="$COMMAND" \
    -v cpus="$CPUS" -v cpu="$CPU_MODEL" -v kernel="$(uname -r)" -v dur="$DURATION" -v warm="$WARMUP" \
    -v conns="$CONNS" -v lb="$LOAD_BEFORE" -v la="$LOAD_AFTER" -v elapsed="$ELAPSED" -v tenants="$TENANTS" \
    -v tight="$TIGHT_RATE" -v rounds="$ROUNDS" -v order="${LISTENERS[*]}" '
function ratio(a, b) { return (a == "" || b == "" || b + 0 == 0) ? "n/a" : sprintf("%.2f×", a / b) }
function median(list,    v, k, m, i, j, t) {
    m = split(list, v, " ")
    for (i = 2; i <= m; i++) { t = v[i] + 0; for (j = i - 1; j >= 1 && v[j] + 0 > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
    return m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
}
function lo(list,    v, m, i, x) { m = split(list, v, " "); x = v[1] + 0; for (i = 2; i <= m; i++) if (v[i] + 0 < x) x = v[i] + 0; return x }
function hi(list,    v, m, i, x) { m = split(list, v, " "); x = v[1] + 0; for (i = 2; i <= m; i++) if (v[i] + 0 > x) x = v[i] + 0; return x }
{
    l = $1
    R[l] = R[l] " " $3; P50[l] = P50[l] " " $4; P99[l] = P99[l] " " $5; US[l] = US[l] " " $9
    req[l] += $6; bad[l] += $7; err[l] += $8
    split($10, c, "/"); ce[l] += c[1]; c0[l] += c[2]; c1[l] += c[3]; nr[l]++; o0 += c[2]; rows++
}
END {
    n = split(order, L, " ")
    for (i = 1; i <= n; i++) { l = L[i]; rps[l] = median(R[l]); cost[l] = median(US[l]) }
    label["jwt_ours"] = "jwt-auth (wasm) alone"
    label["ours_open"] = "jwt-auth → **rate-limit** (wasm), never limited"
    label["ours_tight"] = "jwt-auth → **rate-limit** (wasm), mostly limited"
    label["jwt_native"] = "native jwt_authn (cache) alone"
    label["native_open"] = "native jwt_authn + **local_ratelimit**, never limited"
    label["native_tight"] = "native jwt_authn + **local_ratelimit**, mostly limited"
    base["jwt_ours"] = base["ours_open"] = base["ours_tight"] = "jwt_ours"
    base["jwt_native"] = base["native_open"] = base["native_tight"] = "jwt_native"
    print "## Rate limit"
    print ""
    printf "Measured %s with Envoy %s. Command: `%s` (whole bench: %d s).\n\n", date, envoy, cmd, elapsed
    printf "Machine: %d CPUs (%s), Linux %s. One Envoy, `--concurrency 1`, pinned with `taskset -c 0`; ", cpus, cpu, kernel
    printf "wrk pinned with `taskset -c 1`, `-t1 -c%d`, all on 127.0.0.1. %d rounds over all listeners (order alternating forwards/backwards), each run %d s of warm-up then %d s measured; figures are per-listener medians over the rounds. ", conns, rounds, warm, dur
    printf "Every listener answers with a `direct_response` (200, 2-byte body). Load average (1/5/15 min) before: %s, after: %s.\n\n", lb, la
    printf "Traffic: wrk rotates through %d ES256 tokens, one per tenant (`org-0` … `org-%d`); after the warm-up every token is a verified-token cache hit in both JWT filters, so the JWT step costs the same in every row of a side. ", tenants, tenants - 1
    printf "**never limited** = a plan no load here can reach (ours: 1,000,000/s burst 1,000,000; native: a 10⁹-token bucket per tenant): the cost of the check. "
    printf "**mostly limited** = %d/s with a burst of %d per tenant (ours: GCRA `per_second: %d, burst: %d`; native: a token bucket of %d refilled one token per %gs), so at most %d requests per second pass: the cost of saying no (a 429 is a local reply and skips the route). ", tight, tight, tight, tight, tight, 1 / tight, tight * tenants
    print "Native: `local_ratelimit` with a filter-level `rate_limits` action `request_headers: {header_name: x-org-id, descriptor_key: org_id}` and one descriptor per tenant, `enable_x_ratelimit_headers: DRAFT_VERSION_03` (ours sends `RateLimit-Policy`/`RateLimit` on every answer; both limit per Envoy process across workers)."
    print ""
    print "`Envoy µs/req` = Envoy'"'"'s CPU time (user+sys) ÷ requests served, median and (min–max) over the rounds — the figure to trust: wrk with its Lua token rotation on one core is the bottleneck here, not Envoy (see `CPU %`), so req/s says more about the client than about the filters. `rate-limit step` = µs/req minus the same side'"'"'s JWT-only row: what the rate-limit filter adds (negative = a 429 costs less than letting the request through). `CPU %` = mean over the rounds of Envoy / other processes on core 0 / everything on core 1 (wrk and others)."
    print ""
    print "| listener | req/s | p50 µs | p99 µs | limited (429) | Envoy µs/req | rate-limit step µs | CPU % |"
    print "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    for (i = 1; i <= n; i++) {
        l = L[i]
        step = (l == base[l]) ? "—" : sprintf("%+.1f", cost[l] - cost[base[l]])
        lim = req[l] ? sprintf("%.1f%%", 100 * bad[l] / req[l]) : "n/a"
        printf "| %s | %.0f | %d | %d | %s | %.1f (%.1f–%.1f) | %s | %.0f/%.0f/%.0f |\n", label[l], rps[l], median(P50[l]), median(P99[l]), lim, cost[l], lo(US[l]), hi(US[l]), step, ce[l] / nr[l], c0[l] / nr[l], c1[l] / nr[l]
        failed += err[l]
    }
    print ""
    print "Ratios, ours ÷ native: req/s, and in brackets from CPU cost (native µs/req ÷ ours µs/req):"
    print ""
    print "| traffic | whole chain | rate-limit step: ours µs vs native µs |"
    print "| --- | --- | --- |"
    so = cost["ours_open"] - cost["jwt_ours"]; sn = cost["native_open"] - cost["jwt_native"]
    printf "| never limited (cost of the check) | %s (%s) | %+.1f vs %+.1f |\n", ratio(rps["ours_open"], rps["native_open"]), ratio(cost["native_open"], cost["ours_open"]), so, sn
    so = cost["ours_tight"] - cost["jwt_ours"]; sn = cost["native_tight"] - cost["jwt_native"]
    printf "| mostly limited (cost of saying no) | %s (%s) | %+.1f vs %+.1f |\n", ratio(rps["ours_tight"], rps["native_tight"]), ratio(cost["native_tight"], cost["ours_tight"]), so, sn
    printf "| JWT step alone (reference) | %s (%s) | — |\n", ratio(rps["jwt_ours"], rps["jwt_native"]), ratio(cost["jwt_native"], cost["jwt_ours"])
    print ""
    if (failed) printf "**%d socket errors** during the measured runs.\n\n", failed
    if (rows > 0 && o0 / rows > 10) {
        printf "**Disturbed run:** other processes used on average %.0f%% of Envoy'"'"'s core during the measured runs; req/s and latency are depressed and noisy, the µs/req figures less so. Re-run on a quiet machine.\n\n", o0 / rows
    }
}' "$RESULTS" >"$SECTION"

cp "$RESULTS" "$WORK/results.tsv"
publish_section "Rate limit" "$SECTION" "$OUT"
log "wrote the Rate limit section of $OUT (raw results: $WORK/results.tsv, stats: $RUN/stats.txt) in ${ELAPSED}s"
