"""Benchmark: Release and Invoice of 10k and 100k events (1M with --million), batch size 200.

Prints seconds, events/s and peak memory of each run, beside a floor measured in the same
process: the same final writes (release flags, documents, lines, process logs) done as ONE
bulk transaction of plain SQL on an identical copy of the database. Also the 10k→100k growth.
Targets: 100k ≤ 20 s, ≤ 3× the floor... see the issue; the figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bear  # noqa: E402
from bear.db.documents import create_documents  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_db(folder: Path, events: int) -> Path:
    path = folder / f"book-{events}.duckdb"
    if not path.exists():
        with bear.connect(path, resume=False) as ws:
            bear.demo.seed(ws, events=events, seed=11)
    return path


def eligible_ids(ws: bear.Workspace, n: int) -> list[int]:
    pv = ws.preview(ws.awaiting_release(), action="release_and_invoice", full=True)
    return pv.eligible_ids[:n]


def run_bear(src: Path, folder: Path, n: int, batch: int) -> tuple[float, int, dict]:
    path = folder / "run.duckdb"
    shutil.copy(src, path)
    with bear.connect(path) as ws:
        ws.settings.update(release_batch_size=batch)
        ids = eligible_ids(ws, n)
        t0 = time.perf_counter()
        res = ws.release_and_invoice(ids, user="bench@example.com")
        secs = time.perf_counter() - t0
    path.unlink()
    return secs, len(ids), res.__dict__


def run_floor(src: Path, folder: Path, n: int) -> float:
    """The same final writes as one bulk transaction of plain SQL (no rules, no batches)."""
    path = folder / "floor.duckdb"
    shutil.copy(src, path)
    with bear.connect(path, resume=False) as ws:
        ids = eligible_ids(ws, n)
    con = duckdb.connect(str(path))
    con.register("_ids_arrow", __import__("pyarrow").table({"billing_event_id": ids}))
    t0 = time.perf_counter()
    con.execute("BEGIN")
    con.execute("CREATE TEMP TABLE _ids AS SELECT billing_event_id FROM _ids_arrow")
    con.execute(
        "UPDATE billing_events SET released = true, released_at = current_timestamp, release_run_id = 1 "
        "WHERE id IN (SELECT billing_event_id FROM _ids) AND NOT released"
    )
    create_documents(con, "_ids", 1)
    con.execute(
        "INSERT INTO process_logs (process_run_id, billing_event_id, status, message, document_id) "
        "SELECT 1, billing_event_id, 'OK', 'created ' || number, id FROM _new_docs"
    )
    con.execute("COMMIT")
    secs = time.perf_counter() - t0
    con.close()
    path.unlink()
    return secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--million", action="store_true", help="also run 1,000,000 events")
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5, help="runs of each, medians reported")
    a = ap.parse_args()
    sizes = [10_000, 100_000] + ([1_000_000] if a.million else [])
    results = {}
    with tempfile.TemporaryDirectory(prefix="bear-bench-") as tmp:
        folder = Path(tmp)
        for n in sizes:
            src = make_db(folder, int(n * 1.35))
            # BEAR and the floor alternate, so a slow spell of the machine hits both alike.
            bears, floors = [], []
            for _ in range(a.repeat):
                bears.append(run_bear(src, folder, n, a.batch)[0])
                floors.append(run_floor(src, folder, n))
            bear_s, floor_s = statistics.median(bears), statistics.median(floors)
            # Each run's ratio to the floor run beside it: the machine's speed drifts by tens of
            # percent over a minute here, and a neighbouring pair drifts together.
            ratio = statistics.median(b / f for b, f in zip(bears, floors, strict=True))
            results[n] = (bear_s, floor_s, ratio)
            print(
                f"{n:>9,} events  bear {bear_s:7.2f} s  ({n / bear_s:9,.0f} ev/s)  floor {floor_s:6.2f} s  "
                f"ratio {ratio:5.1f}×  (pairs: {', '.join(f'{b / f:.1f}' for b, f in zip(bears, floors, strict=True))})  "
                f"peak RSS {peak_rss_mib():,.0f} MiB",
                flush=True,
            )
    if 10_000 in results and 100_000 in results:
        growth = results[100_000][0] / results[10_000][0]
        print(f"growth 10k→100k: {growth:.1f}× time for 10× events (target ≤ 11×)")
    b100 = results.get(100_000, (0, 1, 0))
    print(
        f"100k target ≤ 20 s: {'PASS' if b100[0] <= 20 else 'FAIL'}; ≤ 3× floor: "
        f"{'PASS' if b100[2] <= 3 else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
