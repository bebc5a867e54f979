"""Benchmark of the store and selections (DESIGN §6): seed speed, and grid queries over 1M events.

Not a test: a script that prints figures and PASS/FAIL against the targets.

    .venv/bin/python bench/bench_store.py              # seed 100k and 1M, query the 1M book
    .venv/bin/python bench/bench_store.py --quick      # 100k only
    .venv/bin/python bench/bench_store.py --events 300000 --runs 9

Each grid query is timed through the Selection API (what the dashboard, notebooks and CLI
call) and beside it the same result computed by bare SQL on a DuckDB cursor of the same
connection, in the same process (the floor). A third column runs the SQL the API generates,
bare, which tells SQL shape apart from Python/pandas overhead when a target fails.

Targets: seed of 1M events ≤ 60 s (aim ≤ 10 s); every grid query median ≤ 150 ms and
≤ 1.5 × its floor.
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import bear  # noqa: E402
from bear import selection as selmod  # noqa: E402

SEED_BAR_S = 60.0  # per 1M events
SEED_AIM_S = 10.0
QUERY_BAR_MS = 150.0
RATIO_BAR = 1.5
PAGE = 50

PAGE_COLUMNS = """
    e.id, e.name, e.event_date, e.invoice_date, e.account_id, a.name, e.project_id, p.name,
    e.company_id, c.name, p.region, p.practice, p.grp, e.currency, e.summary_amount, e.approved,
    e.released, e.released_at, e.invoiced, e.document_id
"""
JOINS = """
    FROM billing_events e
    JOIN projects p ON p.id = e.project_id
    LEFT JOIN accounts a ON a.id = e.account_id
    LEFT JOIN companies c ON c.id = e.company_id
"""
FILTER = {"currency": "EUR", "min_amount": 100, "max_amount": 5000, "search": "acme"}


def median_ms(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    result = fn()  # warm-up (and the value, for the sanity check)
    times = []
    for _ in range(runs):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), result


def seed_file(path: Path, events: int) -> float:
    with bear.connect(path, resume=False) as ws:
        t0 = time.perf_counter()
        bear.demo.seed(ws, events=events, seed=7)
        seconds = time.perf_counter() - t0
    return seconds


def generated_sql(sel: Any, kind: str) -> tuple[str, dict[str, Any]]:
    """The SQL the Selection API runs for ``kind`` (mirrors bear.selection; diagnostics only)."""
    where, params = sel.where_sql()
    cols = ", ".join(f"{expr} AS {name}" for name, expr in selmod.COLUMNS.items())
    if kind == "count":
        return f"SELECT count(*) {selmod.FROM_SQL} WHERE {where}", params
    if kind == "totals":
        return (
            "SELECT e.currency, count(*) AS events, sum(e.summary_amount) AS amount, "
            "count(*) FILTER (e.summary_amount > 0) AS sales_invoices, "
            "count(*) FILTER (e.summary_amount < 0) AS credit_notes, "
            "count(DISTINCT e.project_id) AS projects "
            f"{selmod.FROM_SQL} WHERE {where} GROUP BY ALL ORDER BY e.currency",
            params,
        )
    sort = [("summary_amount", "desc")] if kind == "sorted" else None
    order = selmod.order_by(sort)
    return (
        f"SELECT {cols} {selmod.FROM_SQL} WHERE {where} ORDER BY {order} LIMIT {PAGE} OFFSET 0",
        params,
    )


def queries(ws: Any) -> list[tuple[str, Callable[[], Any], str, list[Any], Any]]:
    """(label, API call, floor SQL, floor params, selection used) per grid query."""
    search = f"%{FILTER['search']}%"
    return [
        (
            "count (awaiting release)",
            lambda: len(ws.awaiting_release()),
            "SELECT count(*) FROM billing_events WHERE NOT released",
            [],
            ("count", lambda: ws.awaiting_release()),
        ),
        (
            "first page (by id)",
            lambda: ws.awaiting_release().page(0, PAGE),
            f"SELECT {PAGE_COLUMNS} {JOINS} WHERE NOT e.released ORDER BY e.id LIMIT {PAGE}",
            [],
            ("page", lambda: ws.awaiting_release()),
        ),
        (
            "page by summary_amount desc",
            lambda: ws.awaiting_release().page(0, PAGE, sort=[("summary_amount", "desc")]),
            f"SELECT {PAGE_COLUMNS} {JOINS} WHERE NOT e.released "
            f"ORDER BY e.summary_amount DESC, e.id LIMIT {PAGE}",
            [],
            ("sorted", lambda: ws.awaiting_release()),
        ),
        (
            "filtered page (cur+amount+search)",
            lambda: ws.awaiting_release(**FILTER).page(0, PAGE),
            f"SELECT {PAGE_COLUMNS} {JOINS} WHERE NOT e.released AND e.currency = ? "
            "AND e.summary_amount BETWEEN ? AND ? "
            "AND (e.name ILIKE ? OR p.name ILIKE ? OR a.name ILIKE ?) "
            f"ORDER BY e.id LIMIT {PAGE}",
            [
                FILTER["currency"],
                FILTER["min_amount"],
                FILTER["max_amount"],
                search,
                search,
                search,
            ],
            ("page", lambda: ws.awaiting_release(**FILTER)),
        ),
        (
            "totals per currency",
            lambda: ws.awaiting_release().totals(),
            "SELECT currency, count(*), sum(summary_amount), "
            "count(*) FILTER (summary_amount > 0), count(*) FILTER (summary_amount < 0), "
            "count(DISTINCT project_id) FROM billing_events WHERE NOT released "
            "GROUP BY currency ORDER BY currency",
            [],
            ("totals", lambda: ws.awaiting_release()),
        ),
    ]


def _rows(result: Any) -> int:
    if isinstance(result, int):
        return result
    return len(result)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="size of the large book")
    ap.add_argument("--quick", action="store_true", help="100k events only")
    ap.add_argument("--runs", type=int, default=7, help="timed runs per query (≥ 5)")
    ap.add_argument("--dir", help="folder for the database files (default: a temp folder)")
    a = ap.parse_args(argv)
    if a.runs < 5:
        ap.error("--runs must be ≥ 5")
    if a.events < 1:
        ap.error("--events must be ≥ 1")
    sizes = [100_000] if a.quick else sorted({100_000, a.events})
    failures: list[str] = []

    with tempfile.TemporaryDirectory(prefix="bear-bench-", dir=a.dir) as tmp:
        print(f"BEAR store benchmark — bear {bear.__version__}, Python {sys.version.split()[0]}")
        print(f"database files in {tmp}\n")
        print(f"{'seed':<14}{'events':>12}{'seconds':>10}{'events/s':>12}   target")
        paths = {}
        for n in sizes:
            path = Path(tmp) / f"bench-{n}.duckdb"
            secs = seed_file(path, n)
            paths[n] = path
            bar = SEED_BAR_S * max(n, 1) / 1_000_000
            aim = SEED_AIM_S * max(n, 1) / 1_000_000
            ok = secs <= bar
            verdict = f"{'PASS' if ok else 'FAIL'} (bar ≤ {bar:.1f} s, aim ≤ {aim:.1f} s)"
            size_mb = path.stat().st_size / 1e6
            print(
                f"{'demo.seed':<14}{n:>12,}{secs:>10.2f}{n / secs:>12,.0f}   {verdict}  [{size_mb:,.0f} MB]"
            )
            if not ok:
                failures.append(f"seed of {n:,} events took {secs:.1f} s (bar {bar:.1f} s)")

        big = max(sizes)
        print(
            f"\nGrid queries over {big:,} events (median of {a.runs} runs, ms; page = {PAGE} rows)"
        )
        header = (
            f"{'query':<36}{'rows':>9}{'API':>9}{'floor':>9}{'ratio':>8}{'gen-SQL':>9}   result"
        )
        print(header)
        print("-" * len(header))
        with bear.connect(paths[big], resume=False) as ws:
            cur = ws.db.con.cursor()
            try:
                for label, api, floor_sql, floor_params, (kind, make_sel) in queries(ws):
                    api_ms, api_result = median_ms(api, a.runs)
                    floor_ms, floor_result = median_ms(
                        lambda s=floor_sql, p=floor_params: cur.execute(s, p).fetchall(), a.runs
                    )
                    gen_sql, gen_params = generated_sql(make_sel(), kind)
                    gen_ms, _ = median_ms(
                        lambda s=gen_sql, p=gen_params: cur.execute(s, p).fetchall(), a.runs
                    )
                    n_api = _rows(api_result)
                    n_floor = floor_result[0][0] if kind == "count" else len(floor_result)
                    same = n_api == n_floor
                    ratio = api_ms / floor_ms if floor_ms > 0 else float("inf")
                    ok = api_ms <= QUERY_BAR_MS and ratio <= RATIO_BAR and same
                    why = []
                    if api_ms > QUERY_BAR_MS:
                        why.append(f"> {QUERY_BAR_MS:.0f} ms")
                    if ratio > RATIO_BAR:
                        why.append(f"> {RATIO_BAR}× floor")
                    if not same:
                        why.append(f"rows differ: API {n_api} vs floor {n_floor}")
                    verdict = "PASS" if ok else "FAIL (" + "; ".join(why) + ")"
                    print(
                        f"{label:<36}{n_api:>9,}{api_ms:>9.1f}{floor_ms:>9.1f}{ratio:>7.2f}×"
                        f"{gen_ms:>9.1f}   {verdict}"
                    )
                    if not ok:
                        failures.append(
                            f"{label}: API {api_ms:.1f} ms, floor {floor_ms:.1f} ms, "
                            f"ratio {ratio:.2f}×, generated SQL bare {gen_ms:.1f} ms ({'; '.join(why)})"
                        )
            finally:
                cur.close()

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS of this process: {peak_mb:,.0f} MiB")
    print(
        "floor = hand-written bare SQL for the same result on a cursor of the same connection;"
        "\ngen-SQL = the SQL the API generates, run bare (API − gen-SQL ≈ Python/pandas overhead)."
    )
    if failures:
        print("\nFAIL:")
        for f in failures:
            print(f"  - {f}")
        return 1
    print("\nALL PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
