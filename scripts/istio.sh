#!/usr/bin/env bash
# `make istio`: renders the Istio resources in envoy/istio/*.yaml into OUT_DIR with the URL
# and the sha256 of each built filter module, ready for `kubectl apply -f OUT_DIR`.
#
#   scripts/istio.sh [OUT_DIR]    OUT_DIR defaults to ${BULKHEAD_STATE_DIR:-.bulkhead}/istio
#
# Environment:
#   WASM_DIR       where the modules are (default target/wasm32-wasip1/release; `make wasm`)
#   WASM_BASE_URL  where you publish them, http(s):// (default below); each plugin's url is
#                  WASM_BASE_URL/<module file name>. Istio verifies the sha256 of modules it
#                  downloads over http(s). For a file:// base (modules mounted into the
#                  proxy) Istio does NOT check the sha256; an oci:// image is pinned by its
#                  image digest, not by the module's hash, so it is refused here.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-${BULKHEAD_STATE_DIR:-.bulkhead}/istio}
WASM_DIR=${WASM_DIR:-target/wasm32-wasip1/release}
WASM_BASE_URL=${WASM_BASE_URL:-https://artifacts.example.com/bulkhead/wasm}
WASM_BASE_URL=${WASM_BASE_URL%/}

case "$WASM_BASE_URL" in
  https://* | http://*) ;;
  file://*) echo "istio: warning: Istio does not verify the sha256 of file:// modules" >&2 ;;
  oci://*)
    echo "istio: an oci:// url is pinned by the image digest, not the module sha256; publish the modules over https (WASM_BASE_URL=https://…)" >&2
    exit 2 ;;
  *) echo "istio: WASM_BASE_URL must start with https://, http:// or file:// (got $WASM_BASE_URL)" >&2; exit 2 ;;
esac

vars=()
for module in jwt_auth tenant_router rate_limit; do
  file="$WASM_DIR/${module}_filter.wasm"
  [ -s "$file" ] || { echo "istio: $file is missing; run 'make wasm'" >&2; exit 1; }
  sha=$(sha256sum "$file" | cut -d' ' -f1)
  name=$(echo "$module" | tr '[:lower:]' '[:upper:]')
  vars+=("${name}_URL=$WASM_BASE_URL/${module}_filter.wasm" "${name}_SHA256=$sha")
done

mkdir -p "$OUT"
for template in envoy/istio/*.yaml; do
  out="$OUT/$(basename "$template")"
  text=$(<"$template")
  for kv in "${vars[@]}"; do
    text=${text//"{{${kv%%=*}}}"/"${kv#*=}"}
  done
  if [[ "$text" == *"{{"* ]]; then
    left=${text#*\{\{}
    echo "istio: $template: placeholder left unfilled: {{${left%%\}\}*}}}" >&2
    exit 1
  fi
  printf '%s\n' "$text" >"$out.tmp"
  mv "$out.tmp" "$out"
done
echo "istio: rendered $(ls envoy/istio/*.yaml | wc -l) files into $OUT (modules from $WASM_DIR, url base $WASM_BASE_URL)" >&2
