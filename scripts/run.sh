#!/usr/bin/env bash
# `make run`: the echo upstream and Envoy with the jwt-auth filter, in the foreground.
# Ctrl-C or SIGTERM stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE=${BULKHEAD_STATE_DIR:-.bulkhead}
LISTEN_PORT=${LISTEN_PORT:-10000}
UPSTREAM_PORT=${UPSTREAM_PORT:-18080}
ADMIN_PORT=${ADMIN_PORT:-9901}
BIN=target/release/bulkhead
WASM=$PWD/target/wasm32-wasip1/release/jwt_auth_filter.wasm
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
  --set "JWT_AUTH_WASM=$WASM" --set "LISTEN_PORT=$LISTEN_PORT" \
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
cat <<MSG

Bulkhead edge is up: Envoy on 127.0.0.1:$LISTEN_PORT (admin :$ADMIN_PORT), echo upstream on :$UPSTREAM_PORT.
The dev issuer key is $STATE/dev/issuer-es256.pem (generated on first run, never commit it).

  # a verified request: the upstream echoes x-org-id: UA (the spoofed header is gone)
  curl -s localhost:$LISTEN_PORT/v1/eta -H "authorization: Bearer $TOKEN" -H "x-org-id: EVIL"

  # no token → 401 with a Bearer challenge
  curl -si localhost:$LISTEN_PORT/v1/eta

  # a token for another tenant:   make token ORG=DL
  # filter counters:              curl -s localhost:$ADMIN_PORT/stats | grep jwt_auth

Ctrl-C stops everything.
MSG

# Stay in the foreground; if either process dies, stop the other.
wait -n "${pids[@]}"
echo "a process exited; stopping." >&2
exit 1
