"""Benchmark: what opening a workspace costs to prove its derived data current, at 1M events.

Seeds a demo book (1,000,000 events ≈ 5M items; ``--events`` to change) into a temporary
file, then times, median of several runs: the item-aggregate checksum (``item_stats.stale``),
the document-counter check, a full rebuild of the aggregates (what a failed check costs), and
``bear.connect`` of the unchanged book and of a book one item flag of which was changed with
the ``duckdb`` module while it was closed.

    .venv/bin/python bench/bench_open.py
    .venv/bin/python bench/bench_open.py --events 100000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bear  # noqa: E402
from bear.db import documents, item_stats  # noqa: E402


def median_time(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def flip_one_flag(path: Path) -> None:
    con = duckdb.connect(str(path))
    con.execute(
        "UPDATE billing_event_items SET billing_hold = NOT billing_hold "
        "WHERE id = (SELECT min(id) FROM billing_event_items)"
    )
    con.close()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bear-bench-open-") as tmp:
        path = Path(tmp) / "book.duckdb"
        with bear.connect(path, resume=False) as ws:
            bear.demo.seed(ws, events=a.events, seed=5)
            cur = ws.db.cursor()
            items = cur.execute("SELECT count(*) FROM billing_event_items").fetchall()[0][0]
            check = median_time(lambda: item_stats.stale(cur), a.runs)

            def counters() -> None:
                with ws.db.transaction() as tx:
                    documents.rebuild_counters(tx)

            counter_s = median_time(counters, a.runs)

            def rebuild() -> None:
                cur.execute("BEGIN TRANSACTION")
                item_stats.refresh(cur)
                cur.execute("ROLLBACK")

            rebuild_s = median_time(rebuild, max(1, a.runs // 2))
        open_s = median_time(lambda: bear.connect(path, resume=False).close(), a.runs)
        changed = []
        for _ in range(max(1, a.runs // 2)):
            flip_one_flag(path)
            t0 = time.perf_counter()
            bear.connect(path, resume=False).close()
            changed.append(time.perf_counter() - t0)
        print(f"{a.events:,} events, {items:,} items")
        print(
            f"    aggregate checksum {check * 1000:6.0f} ms   counters {counter_s * 1000:5.0f} ms   "
            f"full rebuild {rebuild_s * 1000:6.0f} ms"
        )
        print(
            f"    open, unchanged {open_s:5.2f} s   open after one flag changed outside "
            f"{statistics.median(changed):5.2f} s"
        )


if __name__ == "__main__":
    main()
