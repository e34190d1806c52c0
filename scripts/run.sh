#!/usr/bin/env bash
# `make run`: the echo upstream and Envoy with the jwt-auth and rate-limit filters, in the
# foreground.
# Ctrl-C or SIGTERM stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE=${BULKHEAD_STATE_DIR:-.bulkhead}
LISTEN_PORT=${LISTEN_PORT:-10000}
UPSTREAM_PORT=${UPSTREAM_PORT:-18080}
ADMIN_PORT=${ADMIN_PORT:-9901}
BIN=target/release/bulkhead
WASM_DIR=$PWD/target/wasm32-wasip1/release
ENVOY=$(scripts/envoy-bin.sh)
mkdir -p "$STATE"

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

"$BIN" --state-dir "$STATE" envoy-config --template envoy/dev.yaml \
  --set "JWT_AUTH_WASM=$WASM_DIR/jwt_auth_filter.wasm" --set "RATE_LIMIT_WASM=$WASM_DIR/rate_limit_filter.wasm" --set "LISTEN_PORT=$LISTEN_PORT" \
  --set "UPSTREAM_PORT=$UPSTREAM_PORT" --set "ADMIN_PORT=$ADMIN_PORT" \
  --out "$STATE/envoy.yaml"

"$BIN" echo --listen "127.0.0.1:$UPSTREAM_PORT" &
pids+=($!)
"$ENVOY" -c "$STATE/envoy.yaml" --concurrency 2 --disable-hot-restart \
  --log-path "$STATE/envoy.log" &
pids+=($!)

for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$ADMIN_PORT/ready" >/dev/null 2>&1; then break; fi
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$ADMIN_PORT/ready" >/dev/null \
  || { echo "Envoy did not become ready; see $STATE/envoy.log" >&2; tail -20 "$STATE/envoy.log" >&2; exit 1; }

TOKEN=$("$BIN" --state-dir "$STATE" token --org UA)
TOKEN_DL=$("$BIN" --state-dir "$STATE" token --org DL)
cat <<MSG

Bulkhead edge is up: Envoy on 127.0.0.1:$LISTEN_PORT (admin :$ADMIN_PORT), echo upstream on :$UPSTREAM_PORT.
The dev issuer key is $STATE/dev/issuer-es256.pem (generated on first run, never commit it).

  # a verified request: the upstream echoes x-org-id: UA (the spoofed header is gone)
  curl -s localhost:$LISTEN_PORT/v1/eta -H "authorization: Bearer $TOKEN" -H "x-org-id: EVIL"

  # no token → 401 with a Bearer challenge
  curl -si localhost:$LISTEN_PORT/v1/eta

  # DL is on the 'standard' plan (5/s, burst 10): the 11th request in a burst gets 429
  for i in \$(seq 12); do curl -s -o /dev/null -w '%{http_code} ' localhost:$LISTEN_PORT/v1/eta \\
    -H "authorization: Bearer $TOKEN_DL"; done; echo

  # a token for another tenant:   make token ORG=DL
  # filter counters:              curl -s localhost:$ADMIN_PORT/stats | grep -E 'jwt_auth|rate_limit'

Ctrl-C stops everything.
MSG

# Stay in the foreground; if either process dies, stop the other.
wait -n "${pids[@]}"
echo "a process exited; stopping." >&2
exit 1
