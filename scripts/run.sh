#!/usr/bin/env bash
# `make run`: the demo topology in the foreground —
#   the control API (serves the tenant registry), three data planes (named echo upstreams
#   for now: dp_pool_us, dp_silo_ua, dp_pool_eu) and Envoy with
#   jwt-auth → tenant-router → rate-limit → router (envoy/edge.yaml), plaintext on
#   127.0.0.1:LISTEN_PORT and TLS on 127.0.0.1:TLS_PORT.
# First run: the registry ($STATE/registry.json, from the bundled dev registry), the dev
# issuer key and the dev TLS CA + certificate ($STATE/tls/) are created; later runs keep them.
# Ctrl-C or SIGTERM stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE=${BULKHEAD_STATE_DIR:-.bulkhead}
REGISTRY=${BULKHEAD_REGISTRY:-$STATE/registry.json}
LISTEN_PORT=${LISTEN_PORT:-10000}
TLS_PORT=${TLS_PORT:-10443}
ADMIN_PORT=${ADMIN_PORT:-9901}
CONTROL_PORT=${CONTROL_PORT:-9090}
POOL_US_PORT=${POOL_US_PORT:-18081}
SILO_UA_PORT=${SILO_UA_PORT:-18082}
POOL_EU_PORT=${POOL_EU_PORT:-18083}
BIN=target/release/bulkhead
WASM_DIR=$PWD/target/wasm32-wasip1/release
ENVOY=$(scripts/envoy-bin.sh)
mkdir -p "$STATE"
export BULKHEAD_STATE_DIR=$STATE BULKHEAD_REGISTRY=$REGISTRY

pids=()
stop() {
  trap - EXIT INT TERM
  [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  echo "stopped."
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Polls `curl -fsS URL` for up to 10 s.
wait_http() {
  for _ in $(seq 1 100); do
    if curl -fsS "$1" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  curl -fsS "$1" >/dev/null
}

[ -f "$REGISTRY" ] || "$BIN" registry init
scripts/dev-tls.sh "$STATE/tls"
TLS_DIR=$(cd "$STATE/tls" && pwd)

"$BIN" envoy-config --template envoy/edge.yaml \
  --set "JWT_AUTH_WASM=$WASM_DIR/jwt_auth_filter.wasm" \
  --set "TENANT_ROUTER_WASM=$WASM_DIR/tenant_router_filter.wasm" \
  --set "RATE_LIMIT_WASM=$WASM_DIR/rate_limit_filter.wasm" \
  --set "TLS_CERT=$TLS_DIR/server.pem" --set "TLS_KEY=$TLS_DIR/server-key.pem" \
  --set "LISTEN_PORT=$LISTEN_PORT" --set "TLS_PORT=$TLS_PORT" --set "ADMIN_PORT=$ADMIN_PORT" \
  --set "CONTROL_PORT=$CONTROL_PORT" --set "POOL_US_PORT=$POOL_US_PORT" \
  --set "SILO_UA_PORT=$SILO_UA_PORT" --set "POOL_EU_PORT=$POOL_EU_PORT" \
  --out "$STATE/envoy.yaml"

"$BIN" control --listen "127.0.0.1:$CONTROL_PORT" &
pids+=($!)
"$BIN" echo --listen "127.0.0.1:$POOL_US_PORT" --name dp_pool_us &
pids+=($!)
"$BIN" echo --listen "127.0.0.1:$SILO_UA_PORT" --name dp_silo_ua &
pids+=($!)
"$BIN" echo --listen "127.0.0.1:$POOL_EU_PORT" --name dp_pool_eu &
pids+=($!)
wait_http "http://127.0.0.1:$CONTROL_PORT/healthz" \
  || { echo "the control API did not come up on :$CONTROL_PORT" >&2; exit 1; }

"$ENVOY" -c "$STATE/envoy.yaml" --concurrency 2 --disable-hot-restart \
  --log-path "$STATE/envoy.log" &
pids+=($!)
wait_http "http://127.0.0.1:$ADMIN_PORT/ready" \
  || { echo "Envoy did not become ready; see $STATE/envoy.log" >&2; tail -20 "$STATE/envoy.log" >&2; exit 1; }

TOKEN_EV=$("$BIN" token --org EV)
TOKEN_DL=$("$BIN" token --org DL)
TOKEN_UA=$("$BIN" token --org UA)
TOKEN_B6=$("$BIN" token --org B6)

# Until tenant-router has fetched the registry it answers 503 registry_unavailable.
ready=
for _ in $(seq 1 100); do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$LISTEN_PORT/v1/eta" \
    -H "authorization: Bearer $TOKEN_EV" || true)
  if [ "$code" = 200 ]; then ready=1; break; fi
  sleep 0.1
done
[ -n "$ready" ] || { echo "the edge never routed EV (last status $code); see $STATE/envoy.log" >&2
  tail -20 "$STATE/envoy.log" >&2; exit 1; }

# How to call the CLI in the printed examples (flags only when not the defaults).
CLI=$BIN
[ "$STATE" = .bulkhead ] || CLI="$CLI --state-dir $STATE"
[ "$REGISTRY" = "$STATE/registry.json" ] || CLI="$CLI --registry $REGISTRY"

cat <<MSG

Bulkhead edge is up:
  Envoy        http://127.0.0.1:$LISTEN_PORT and https://localhost:$TLS_PORT (admin :$ADMIN_PORT, log $STATE/envoy.log)
  control API  http://127.0.0.1:$CONTROL_PORT/v1/registry, serving $REGISTRY
  data planes  dp_pool_us :$POOL_US_PORT, dp_silo_ua :$SILO_UA_PORT, dp_pool_eu :$POOL_EU_PORT (echo upstreams: "upstream" says which)
The dev issuer key ($STATE/dev/) and the dev CA ($STATE/tls/) were generated on first run: never commit them.

  # tokens from the dev issuer, valid for an hour (more: make token ORG=<org_id>)
  EV=$TOKEN_EV
  DL=$TOKEN_DL
  UA=$TOKEN_UA
  B6=$TOKEN_B6

  # pool tenant EV → dp_pool_us, x-tenant-tier: pool, the global model; the spoofed
  # x-data-plane is stripped by jwt-auth and never reaches a routing decision
  curl -s localhost:$LISTEN_PORT/v1/eta -H "authorization: Bearer \$EV" -H "x-data-plane: dp_silo_ua"

  # bridge tenant DL → dp_pool_us with its own model (x-model-name: eta-DL)
  curl -s localhost:$LISTEN_PORT/v1/eta -H "authorization: Bearer \$DL"

  # silo tenant UA → its own data plane, dp_silo_ua
  curl -s localhost:$LISTEN_PORT/v1/eta -H "authorization: Bearer \$UA"

  # B6 is EU-resident: this US edge refuses it (403 wrong_region) and names the edge to use …
  curl -s localhost:$LISTEN_PORT/v1/eta -H "authorization: Bearer \$B6"
  # … the EU edge (SNI eu.bulkhead.localhost on the TLS port) → dp_pool_eu
  curl -s --cacert $STATE/tls/ca.pem https://eu.bulkhead.localhost:$TLS_PORT/v1/eta -H "authorization: Bearer \$B6"

  # TLS, verified against the dev CA
  curl -s --cacert $STATE/tls/ca.pem https://localhost:$TLS_PORT/v1/eta -H "authorization: Bearer \$EV"

  # promote EV from pool to bridge: one registry edit, no Envoy restart (the edge re-fetches
  # every 2 s, its workers follow within 1 s); then back
  $CLI tenant set-tier EV bridge
  sleep 3; curl -s localhost:$LISTEN_PORT/v1/eta -H "authorization: Bearer \$EV"
  $CLI tenant set-tier EV pool

  # suspend EV → 403 tenant_suspended with the reason; resume
  $CLI tenant suspend EV --reason "invoice overdue"
  sleep 3; curl -s localhost:$LISTEN_PORT/v1/eta -H "authorization: Bearer \$EV"
  $CLI tenant resume EV

  # no token → 401 with a Bearer challenge
  curl -si localhost:$LISTEN_PORT/v1/eta

  # DL's plan is 'standard' (5/s, burst 10): a burst of 12 runs into 429 (Retry-After, RateLimit headers)
  for i in \$(seq 12); do curl -s -o /dev/null -w '%{http_code} ' localhost:$LISTEN_PORT/v1/eta \\
    -H "authorization: Bearer \$DL"; done; echo

  # the registry the edge follows, and the filters' counters
  curl -s localhost:$CONTROL_PORT/v1/registry/status
  curl -s localhost:$ADMIN_PORT/stats | grep wasmcustom

Ctrl-C stops everything.
MSG

# Stay in the foreground; if any process dies, stop the others.
wait -n "${pids[@]}"
echo "a process exited; stopping." >&2
exit 1
