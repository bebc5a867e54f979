"""Benchmark: the streamed export of every event of a 1M-event book (``ws.export_stream``,
what the dashboard's CSV / Excel links and ``GET /api/v1/events/export`` use).

Prints seconds, MB/s and the growth of peak RSS while streaming, beside a floor measured in
the same run: DuckDB's own ``COPY … TO`` of the same query to a file (no Python in the loop).
The point of the design is the RSS: one batch of rows in memory, not the whole list.

    .venv/bin/python bench/bench_export.py --db /tmp/bench1m.duckdb [--xlsx-rows 100000]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bear  # noqa: E402


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--db", required=True, help="a book (e.g. a 1M-event demo book)")
    ap.add_argument("--xlsx-rows", type=int, default=100_000, help="rows for the Excel run")
    args = ap.parse_args()
    with bear.connect(args.db, resume=False) as ws:
        sel = ws.events()
        n = len(sel)
        before = rss_mib()
        t0 = time.perf_counter()
        size = sum(len(c) for c in ws.export_stream(sel, "csv", sort=[("id", "asc")]))
        secs = time.perf_counter() - t0
        grew = rss_mib() - before
        listing = ws._listing(sel, sort=[("id", "asc")])
        with tempfile.TemporaryDirectory() as tmp:
            cur = ws.db.con.cursor()
            t0 = time.perf_counter()
            cur.execute(f"COPY ({listing.export_sql()}) TO '{tmp}/floor.csv' (HEADER)")
            floor = time.perf_counter() - t0
            cur.close()
        print(
            f"CSV   {n:,} events: {secs:6.2f} s ({size / secs / 1e6:6.1f} MB/s, {size / 1e6:,.0f} MB)"
            f"  floor (COPY to a file) {floor:5.2f} s  ratio {secs / floor:4.1f}×"
            f"  peak RSS grew {grew:,.0f} MiB while streaming"
        )
        small = ws.events(ids=list(range(1, args.xlsx_rows + 1)))
        before = rss_mib()
        t0 = time.perf_counter()
        size = sum(len(c) for c in ws.export_stream(small, "xlsx", sort=[("id", "asc")]))
        secs = time.perf_counter() - t0
        print(
            f"Excel {len(small):,} events: {secs:6.2f} s ({size / 1e6:,.1f} MB)"
            f"  peak RSS grew {rss_mib() - before:,.0f} MiB"
        )


if __name__ == "__main__":
    main()
