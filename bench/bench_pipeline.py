"""Benchmark: Release and Invoice of 10k and 100k events (1M with --million), batch size 200,
then the revert of the same events.

Prints seconds, events/s and peak memory of each run, beside a floor measured in the same
process: the same final writes (release flags, documents, lines, process logs) done as ONE
bulk transaction of plain SQL on an identical copy of the database; and a per-batch floor,
the same writes with the release done as DESIGN §4 wants it, one transaction per batch (one
UPDATE and its COMMIT each), which shows what BEAR adds to the cost of that contract. Also
the 10k→100k growth.
Targets: 100k ≤ 20 s, ≤ 3× the floor... see the issue; the figures are printed, not asserted.

The revert (skip it with --no-revert): after the Release and Invoice of the N events, half of
the run's documents are posted (every second one by id; --post all / none to change), so the
revert discards the documents in progress and reverses the posted ones with opposite
documents; then ``ws.revert`` of the same N ids is timed. Printed beside it: the ratio to the
Release and Invoice of the same events in the same run (aim ≤ 1.5×), and a floor: the same
final writes (document statuses, reversing documents and their lines, counters, events back
to Awaiting Release, history, one app log per event) as ONE bulk transaction of plain SQL
(no rules, no batches) on an identical copy of the posted book. --repeat 3 takes about two
minutes on the 2-core machine.

Memory: a run's peak RSS is the kernel's high-water mark of the process (VmHWM), reset just
before the timed call (Linux ``/proc/self/clear_refs``); printed for the worst of the repeats,
with the RSS the process held as that run started. "process peak" is the process's since it
started (``ru_maxrss``): seeding the book (~1.4 GiB for the 1.35M-event book of --million) and
the floors' one-transaction bulk writes (~1.7 GiB at 1M) included — not a figure of BEAR's.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bear  # noqa: E402
from bear.db.documents import create_documents  # noqa: E402
from bear.db.reversals import create_reversals  # noqa: E402


def peak_rss_mib() -> float:
    """The process's peak RSS since it started (seeding, previews and floors included)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def start_peak() -> float | None:
    """Reset the kernel's peak-RSS mark of this process (VmHWM), so that ``peak_since`` reads
    the peak from now on; returns the RSS now (MiB), or None where it cannot be reset."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_mib("VmRSS")
    except OSError:
        return None


def peak_since(start: float | None) -> float:
    """The peak RSS (MiB) since ``start_peak`` (the process's whole life where it failed)."""
    return peak_rss_mib() if start is None else _status_mib("VmHWM")


@dataclass
class Peak:
    """A timed run's peak RSS (MiB), and the RSS the process held as it started."""

    peak: float
    start: float | None

    def __str__(self) -> str:
        if self.start is None:
            return f"peak RSS {self.peak:,.0f} MiB (of the process)"
        return f"run peak RSS {self.peak:,.0f} MiB (from {self.start:,.0f} at its start)"


def make_db(folder: Path, events: int) -> Path:
    path = folder / f"book-{events}.duckdb"
    if not path.exists():
        with bear.connect(path, resume=False) as ws:
            bear.demo.seed(ws, events=events, seed=11)
    return path


def eligible_ids(ws: bear.Workspace, n: int) -> list[int]:
    pv = ws.preview(ws.awaiting_release(), action="release_and_invoice", full=True)
    return pv.eligible_ids[:n]


@dataclass
class Revert:
    """One revert run of the benchmark, and its floor on an identical copy."""

    secs: float
    floor: float
    mem: Peak
    posted: int
    reverted: int
    discarded: int
    reversing: int
    not_reverted: int


def run_bear(
    src: Path, folder: Path, n: int, batch: int, post: str | None = None
) -> tuple[float, Peak, dict, Revert | None]:
    """Release and Invoice ``n`` events; with ``post`` (all / half / none), post the run's
    documents and time the revert of the same events, and its floor on a copy.

    The eligible ids are picked by a preview in a workspace of their own, closed before the
    run (as the floor does): the run's peak RSS is then the run's, not the preview's (whose
    temp tables and results would otherwise stay with the process through the run)."""
    path = folder / "run.duckdb"
    shutil.copy(src, path)
    with bear.connect(path) as ws:
        ws.settings.update(release_batch_size=batch)
        ids = eligible_ids(ws, n)
    with bear.connect(path) as ws:
        start = start_peak()
        t0 = time.perf_counter()
        res = ws.release_and_invoice(ids, user="bench@example.com")
        secs = time.perf_counter() - t0
        mem = Peak(peak_since(start), start)
        posted = 0 if post is None else post_documents(ws, res.id, post)
    rv = None
    if post is not None:
        copy = folder / "revert-floor.duckdb"
        shutil.copy(path, copy)  # the posted book, closed: an identical copy for the floor
        with bear.connect(path) as ws:
            ws.db.cursor().execute("SELECT count(*) FROM documents").fetchall()  # opened, warm
            start = start_peak()
            t0 = time.perf_counter()
            out = ws.revert(ids, reason="bench", user="bench@example.com")
            rv_secs = time.perf_counter() - t0
            rv_mem = Peak(peak_since(start), start)
        if out.status != "completed":
            raise SystemExit(f"revert run {out.id} ended {out.status}: {out.error}")
        rv = Revert(
            rv_secs,
            run_revert_floor(copy, ids),
            rv_mem,
            posted,
            out.reverted,
            out.discarded,
            out.sales_invoices + out.credit_notes,
            out.not_reverted,
        )
    path.unlink()
    if res.status != "completed" or res.released != len(ids):
        raise SystemExit(f"run {res.id} ended {res.status}, {res.released} of {len(ids)} released")
    return secs, mem, res.__dict__, rv


def post_documents(ws: bear.Workspace, run_id: int, post: str) -> int:
    """Post the run's documents: all, every second one by id (half), or none; returns how many."""
    if post == "none":
        return 0
    if post == "all":
        return len(ws.post(run_id, user="bench@example.com"))
    docs = (
        ws.db.cursor()
        .execute(
            "SELECT d.id FROM documents d JOIN process_runs pr ON pr.id = d.process_run_id "
            "WHERE pr.run_id = ? AND d.status = 'in_progress' ORDER BY d.id",
            [run_id],
        )
        .fetchall()
    )
    half = [r[0] for r in docs[::2]]
    return len(ws.post(half, user="bench@example.com")) if half else 0


def start_bulk(path: Path, ids: list[int]) -> tuple[duckdb.DuckDBPyConnection, float]:
    """A floor's connection to ``path`` inside an open transaction, the ids in temp table
    ``_ids``, and the moment the timing starts (just before the transaction)."""
    con = duckdb.connect(str(path))
    con.register("_ids_arrow", __import__("pyarrow").table({"billing_event_id": ids}))
    t0 = time.perf_counter()
    con.execute("BEGIN")
    con.execute("CREATE TEMP TABLE _ids AS SELECT billing_event_id FROM _ids_arrow")
    return con, t0


def end_bulk(con: duckdb.DuckDBPyConnection, t0: float, path: Path) -> float:
    """Commit a floor's transaction; its seconds since ``t0``; the copy at ``path`` deleted."""
    con.execute("COMMIT")
    secs = time.perf_counter() - t0
    con.close()
    path.unlink()
    return secs


def run_floor(src: Path, folder: Path, n: int) -> float:
    """The same final writes as one bulk transaction of plain SQL (no rules, no batches)."""
    path = folder / "floor.duckdb"
    shutil.copy(src, path)
    with bear.connect(path, resume=False) as ws:
        ids = eligible_ids(ws, n)
    con, t0 = start_bulk(path, ids)
    con.execute(
        "UPDATE billing_events SET released = true, released_at = current_timestamp, release_run_id = 1 "
        "WHERE id IN (SELECT billing_event_id FROM _ids) AND NOT released"
    )
    return documents_in_bulk(con, t0, path)


def documents_in_bulk(con: duckdb.DuckDBPyConnection, t0: float, path: Path) -> float:
    """A floor's documents, lines and OK logs for the released ``_ids``, in the open
    transaction; committed, its seconds since ``t0`` (``end_bulk``)."""
    create_documents(con, "_ids", 1)
    con.execute(
        "INSERT INTO process_logs (process_run_id, billing_event_id, status, message, document_id) "
        "SELECT 1, billing_event_id, 'OK', 'created ' || number, id FROM _new_docs"
    )
    return end_bulk(con, t0, path)


def run_batched_floor(src: Path, folder: Path, n: int, batch: int) -> float:
    """The floor's writes with the release as DESIGN §4 wants it: one transaction per batch of
    ``batch`` events (one ``UPDATE`` and its ``COMMIT``, nothing else), then the documents and
    logs in one bulk transaction. What one transaction per batch costs at the least; BEAR's
    ratio to it is what its rules, checks, counters and logs add."""
    path = folder / "floor-batched.duckdb"
    shutil.copy(src, path)
    with bear.connect(path, resume=False) as ws:
        ids = sorted(eligible_ids(ws, n))
    con, t0 = start_bulk(path, ids)
    con.execute(
        "CREATE TEMP TABLE _b AS SELECT billing_event_id, "
        "((row_number() OVER (ORDER BY billing_event_id) - 1) // $bs + 1)::INTEGER AS seq "
        "FROM _ids ORDER BY seq",
        {"bs": batch},
    )
    con.execute("COMMIT")
    for seq, lo in enumerate(range(0, len(ids), batch), start=1):
        hi = ids[min(lo + batch, len(ids)) - 1]
        con.execute("BEGIN")
        con.execute(
            "UPDATE billing_events SET released = true, released_at = current_timestamp, "
            "release_run_id = 1 FROM _b t WHERE t.seq = $s AND billing_events.id = t.billing_event_id "
            f"AND billing_events.id BETWEEN {int(ids[lo])} AND {int(hi)} AND NOT billing_events.released",
            {"s": seq},
        )
        con.execute("COMMIT")
    con.execute("BEGIN")
    return documents_in_bulk(con, t0, path)


def run_revert_floor(path: Path, ids: list[int]) -> float:
    """The revert's final writes as one bulk transaction of plain SQL (no rules, no batches)
    on ``path``, a copy of the book after Release and Invoice and posting; deletes it."""
    con, t0 = start_bulk(path, ids)
    con.execute(
        "CREATE TEMP TABLE _do AS SELECT e.id AS billing_event_id, e.document_id, "
        "CASE WHEN e.document_id IS NULL THEN 'unreleased' WHEN d.status = 'in_progress' "
        "THEN 'discarded' ELSE 'reversed' END AS outcome "
        "FROM billing_events e JOIN _ids i ON i.billing_event_id = e.id "
        "LEFT JOIN documents d ON d.id = e.document_id WHERE e.released"
    )
    con.execute("CREATE TEMP TABLE _rev AS SELECT document_id FROM _do WHERE outcome = 'reversed'")
    create_reversals(con, "_rev", 1)
    # The documents' new status as a delete and an insert of their rows: DuckDB executes an
    # UPDATE of ``documents`` that way anyway (its CHECKs span indexed columns), only slower.
    con.execute(
        "CREATE TEMP TABLE _ended AS SELECT d.* REPLACE (o.outcome AS status, "
        "current_timestamp::TIMESTAMP AS status_changed_at) FROM documents d "
        "JOIN _do o ON o.document_id = d.id WHERE o.outcome IN ('discarded', 'reversed')"
    )
    con.execute("DELETE FROM documents WHERE id IN (SELECT id FROM _ended)")
    con.execute("INSERT INTO documents BY NAME SELECT * FROM _ended")
    con.execute(
        "UPDATE billing_events SET released = false, released_at = NULL, release_run_id = NULL, "
        "invoiced = false, document_id = NULL WHERE id IN (SELECT billing_event_id FROM _do)"
    )
    con.execute(
        "INSERT INTO billing_event_history (billing_event_id, action, run_id, actor, reason, "
        "document_before, outcome, reversing_document_id) "
        "SELECT d.billing_event_id, 'revert', 1, 'bench', 'bench', d.document_id, d.outcome, r.id "
        "FROM _do d LEFT JOIN _rev_docs r ON r.reverses_document_id = d.document_id"
    )
    con.execute(  # one log per event, of about the length BEAR writes
        "INSERT INTO app_logs (run_id, batch_seq, level, origin, record_id, message, detail) "
        "SELECT 1, 1, 4, 'revert', d.billing_event_id, 'reverted: ' || CASE d.outcome "
        "WHEN 'unreleased' THEN 'its release is undone' "
        "WHEN 'discarded' THEN 'document ' || d.document_id || ' (in progress) discarded' "
        "ELSE r.number || ' reverses document ' || d.document_id || ' (dated ' "
        "|| r.document_date || ')' END || '; the event is back in Awaiting Release', "
        "'reason: bench' FROM _do d LEFT JOIN _rev_docs r ON r.reverses_document_id = d.document_id"
    )
    return end_bulk(con, t0, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--million", action="store_true", help="also run 1,000,000 events")
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5, help="runs of each, medians reported")
    ap.add_argument(
        "--no-revert", action="store_true", help="skip the revert of the invoiced events"
    )
    ap.add_argument(
        "--post",
        choices=("half", "all", "none"),
        default="half",
        help="documents posted before the revert (posted ones are reversed, the others "
        "discarded): every second one of the run (default), all, or none",
    )
    a = ap.parse_args()
    sizes = [10_000, 100_000] + ([1_000_000] if a.million else [])
    post = None if a.no_revert else a.post
    results = {}
    peaks: dict[int, float] = {}
    reverts: dict[int, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bear-bench-") as tmp:
        folder = Path(tmp)
        for n in sizes:
            src = make_db(folder, int(n * 1.35))
            # BEAR and the floor alternate, so a slow spell of the machine hits both alike.
            bears, floors, batched, rvs, mems = [], [], [], [], []
            for _ in range(a.repeat):
                secs, mem, _, rv = run_bear(src, folder, n, a.batch, post)
                bears.append(secs)
                mems.append(mem)
                floors.append(run_floor(src, folder, n))
                batched.append(run_batched_floor(src, folder, n, a.batch))
                if rv is not None:
                    rvs.append(rv)
            bear_s, floor_s = statistics.median(bears), statistics.median(floors)
            # Each run's ratio to the floor run beside it: the machine's speed drifts by tens of
            # percent over a minute here, and a neighbouring pair drifts together.
            ratio = statistics.median(b / f for b, f in zip(bears, floors, strict=True))
            results[n] = (bear_s, floor_s, ratio)
            per_batch = statistics.median(batched)
            per_ratio = statistics.median(b / f for b, f in zip(bears, batched, strict=True))
            peaks[n] = max(m.peak for m in mems)
            print(
                f"{n:>9,} events  bear {bear_s:7.2f} s  ({n / bear_s:9,.0f} ev/s)  floor {floor_s:6.2f} s  "
                f"ratio {ratio:5.1f}×  (pairs: {', '.join(f'{b / f:.1f}' for b, f in zip(bears, floors, strict=True))})  "
                f"{max(mems, key=lambda m: m.peak)}; process peak {peak_rss_mib():,.0f} MiB",
                flush=True,
            )
            print(
                f"{'':>9}         per-batch floor (one UPDATE and COMMIT per batch of {a.batch}, "
                f"then the documents in bulk) {per_batch:6.2f} s: bear {per_ratio:.1f}× it",
                flush=True,
            )
            if rvs:
                reverts[n] = print_revert(n, bears, rvs, post or "")
    if 10_000 in results and 100_000 in results:
        growth = results[100_000][0] / results[10_000][0]
        print(f"growth 10k→100k: {growth:.1f}× time for 10× events (target ≤ 11×)")
    if 100_000 in results and 1_000_000 in results:
        growth = results[1_000_000][0] / results[100_000][0]
        print(f"growth 100k→1M: {growth:.1f}× time for 10× events (target ≤ 11×)")
    b100 = results.get(100_000, (0, 1, 0))
    print(
        f"100k ≤ 4 s (issue 17's bar): {'PASS' if b100[0] <= 4 else 'FAIL'}; ≤ 3× floor: "
        f"{'PASS' if b100[2] <= 3 else 'FAIL'}"
    )
    if 1_000_000 in results:
        b1m = results[1_000_000]
        print(
            f"1M ≤ 40 s: {'PASS' if b1m[0] <= 40 else 'FAIL'} ({b1m[0]:.1f} s, "
            f"{b1m[2]:.1f}× its floor); run peak RSS ≤ 1 GiB: "
            f"{'PASS' if peaks[1_000_000] <= 1024 else 'FAIL'} ({peaks[1_000_000]:,.0f} MiB)"
        )
    if 100_000 in reverts:
        print(
            f"100k revert aim ≤ 1.5× its Release and Invoice: "
            f"{'PASS' if reverts[100_000][0] <= 1.5 else 'FAIL'} ({reverts[100_000][0]:.2f}×)"
        )


def print_revert(n: int, bears: list[float], rvs: list[Revert], post: str) -> tuple[float, float]:
    """Print the revert line of ``n`` events; returns (ratio to Release and Invoice, to floor),
    each the median of the runs' own ratios."""
    rv_s = statistics.median(r.secs for r in rvs)
    fl_s = statistics.median(r.floor for r in rvs)
    to_ri = [r.secs / b for r, b in zip(rvs, bears, strict=True)]
    to_fl = [r.secs / r.floor for r in rvs]
    last = rvs[-1]
    print(
        f"{n:>9,} events  revert {rv_s:5.2f} s  ({n / rv_s:9,.0f} ev/s)  floor {fl_s:6.2f} s  "
        f"ratio {statistics.median(to_fl):5.1f}×  (pairs: {', '.join(f'{x:.1f}' for x in to_fl)})  "
        f"revert / release-and-invoice {statistics.median(to_ri):.2f}× "
        f"(runs: {', '.join(f'{x:.2f}' for x in to_ri)}; aim ≤ 1.5×)\n"
        f"{'':>17}posted {last.posted:,} documents ({post}) before the revert; reverted "
        f"{last.reverted:,}, discarded {last.discarded:,}, reversing documents "
        f"{last.reversing:,}, not reverted {last.not_reverted:,}; "
        f"{max((r.mem for r in rvs), key=lambda m: m.peak)}",
        flush=True,
    )
    return statistics.median(to_ri), statistics.median(to_fl)


if __name__ == "__main__":
    main()
