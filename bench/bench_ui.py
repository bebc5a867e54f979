"""Dashboard speed and memory at a million events, measured server-side on the state classes.

Seeds a demo book (default 1,000,000 events) in a temporary folder, then times what a
dashboard session does — a page (next page by keyset, a deep jump, the last page), a sort
and a filter (count + summary cards + first page) — through ``bear.ui.state.GridState``,
beside the bare SQL floor of the same work, and prints median of N, ratio to the floor and
the 150 ms bar. Then it measures the process memory with three sessions' state instances.

    .venv/bin/python bench/bench_ui.py [--events 1000000] [--repeat 7] [--db PATH]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bear
from bear.ui.state import (
    DocumentsState,
    FilterState,
    GridState,
    NotificationState,
    RunsState,
    SettingsState,
)

BAR_MS = 150.0


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def median_ms(fn: Callable[[int], Any], repeat: int) -> float:
    """Median wall time of ``fn(i)`` over ``repeat`` calls (i = 0 … repeat-1)."""
    times = []
    for i in range(repeat):
        t0 = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def median_after(setup: Callable[[], Any], fn: Callable[[], Any], repeat: int) -> float:
    """Median wall time of ``fn()``, each run after an untimed ``setup()``."""
    times = []
    for _ in range(repeat):
        setup()
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


FILTER_BAR_MS = 50.0

# Each filter's own floor: the grid's count, totals per currency and first page, written by
# hand for that filter (ineligible ids as a list the database is given).
_FLOOR_JOINS = (
    "FROM billing_events e JOIN projects p ON p.id = e.project_id "
    "LEFT JOIN accounts a ON a.id = e.account_id"
)


def floor_queries(f: dict[str, Any], ineligible: list[int]) -> list[tuple[str, dict[str, Any]]]:
    where, params = ["NOT e.released"], {}
    for key, value in f.items():
        if key == "currency":
            where.append("e.currency IN (SELECT unnest($cur))")
            params["cur"] = list(value)
        elif key == "search":
            where.append(
                "(strpos(lower(e.name), lower($q)) > 0 OR strpos(lower(p.name), lower($q)) > 0 "
                "OR strpos(lower(coalesce(a.name, '')), lower($q)) > 0)"
            )
            params["q"] = value
        elif key in ("region", "practice"):
            where.append(f"p.{key} IN (SELECT unnest(${key}))")
            params[key] = list(value)
        elif key == "min_amount":
            where.append("e.summary_amount >= $lo")
            params["lo"] = value
        elif key == "eligibility":
            where.append("e.id IN (SELECT unnest($inel))")
            params["inel"] = ineligible
        elif key == "category":
            where.append(
                "e.id IN (SELECT billing_event_id FROM billing_event_items "
                "WHERE category IN (SELECT unnest($cat)))"
            )
            params["cat"] = list(value)
    cond = f"{_FLOOR_JOINS} WHERE {' AND '.join(where)}"
    return [
        (
            f"SELECT (SELECT count(*) {cond}), (SELECT list(x) FROM (SELECT e.currency, "
            f"sum(e.summary_amount) {cond} GROUP BY 1) x), "
            f"(SELECT list(id) FROM (SELECT e.id {cond} ORDER BY e.id LIMIT 50))",
            params,
        )
    ]


def sql_ms(ws: Any, sqls: list[tuple[str, dict[str, Any]]], repeat: int) -> float:
    cur = ws.db.cursor()

    def run(i: int) -> None:
        sql, params = sqls[i % len(sqls)]
        cur.execute(sql, params).fetchall()

    return median_ms(run, repeat)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=7, help="timed repetitions per figure (≥ 5)")
    ap.add_argument("--db", help="reuse (or create) this database instead of a temporary one")
    args = ap.parse_args()
    repeat = max(5, args.repeat)

    with tempfile.TemporaryDirectory(prefix="bear-bench-ui-") as tmp:
        path = Path(args.db) if args.db else Path(tmp) / "bench.duckdb"
        fresh = not path.exists()
        ws = bear.connect(path)
        if fresh:
            t0 = time.perf_counter()
            bear.demo.seed(ws, events=args.events, seed=7)
            print(f"seeded {args.events:,} events in {time.perf_counter() - t0:.1f} s ({path})")
        n = len(ws.events())
        rss0 = rss_mib()
        print(f"database: {n:,} events; process RSS before any dashboard state {rss0:,.0f} MiB")

        t0 = time.perf_counter()
        ws.eligibility("awaiting_release")
        cold = time.perf_counter() - t0
        print(
            f"eligibility of every awaiting event (once per data change, off the session "
            f"thread): {cold * 1000:,.0f} ms"
        )
        t0 = time.perf_counter()
        ws.warm()  # what `bear serve` computes when it opens the book
        print(
            f"then the rest of what the server computes when it opens the book (category "
            f"masks, the aggregates totals are summed from): {(time.perf_counter() - t0) * 1000:,.0f} ms"
        )

        grid = GridState(ws, FilterState())
        t0 = time.perf_counter()
        grid.refresh()
        print(
            f"first load of a session (count, cards, page, ineligible count): "
            f"{(time.perf_counter() - t0) * 1000:,.0f} ms; {grid.total:,} events awaiting release"
        )

        rows: list[tuple[str, float, float]] = []

        # -- page: next by keyset, from the start of the listing ------------------------------
        grid.first_page()
        page_ms = median_ms(lambda i: grid.next_page(), repeat)
        assert grid.pager.last_method == "keyset-next"
        last_id = grid.row_ids[-1]
        floor = sql_ms(
            ws,
            [
                (
                    "SELECT id, name, summary_amount FROM billing_events WHERE NOT released "
                    "AND id > $k ORDER BY id LIMIT 50",
                    {"k": last_id + 50 * i},
                )
                for i in range(repeat)
            ],
            repeat,
        )
        rows.append(("page (next page, keyset)", page_ms, floor))

        # -- page: deep in the listing, a jump, the last page --------------------------------
        deep = min(10_000, grid.pages - 2)
        rows.append(
            (
                f"page (next page at page {deep:,}, keyset)",
                median_after(lambda: grid.goto(deep - 1), grid.next_page, repeat),
                floor,
            )
        )
        rows.append(
            (
                f"page (jump to page {deep:,}, OFFSET)",
                median_after(grid.first_page, lambda: grid.goto(deep), repeat),
                floor,
            )
        )
        rows.append(
            (
                "page (last page, keyset from the end)",
                median_after(grid.first_page, grid.last_page, repeat),
                floor,
            )
        )

        # -- sort ----------------------------------------------------------------------------
        sorts = [
            ("summary_amount", True),
            ("account", False),
            ("event_date", True),
            ("project", False),
            ("summary_amount", False),
            ("name", True),
            ("invoice_date", False),
        ]
        sort_ms = median_ms(lambda i: grid.sort(*sorts[i % len(sorts)]), repeat)
        sort_floor = sql_ms(
            ws,
            [
                (
                    f"SELECT id FROM billing_events WHERE NOT released ORDER BY {col} "
                    f"{'DESC' if desc else 'ASC'}, id LIMIT 50",
                    {},
                )
                for col, desc in [
                    ("summary_amount", True),
                    ("account_id", False),
                    ("event_date", True),
                    ("project_id", False),
                ]
            ],
            repeat,
        )
        rows.append(("sort (first page in a new order)", sort_ms, sort_floor))
        grid.sort("id", False)

        # -- filter --------------------------------------------------------------------------
        fs = grid.filter_state
        filters: list[dict[str, Any]] = [
            {"currency": ["EUR"]},
            {"currency": ["USD"], "search": "Acme"},
            {"currency": [], "search": "", "region": ["EMEA"]},
            {"region": [], "min_amount": 50_000.0},
            {"min_amount": None, "practice": ["Tax"]},
            {"practice": [], "eligibility": "ineligible"},
            {"eligibility": "", "currency": ["GBP"]},
            {"currency": [], "category": ["expense"]},
            {"category": [], "search": "Wayne"},
        ]
        filter_ms = median_ms(lambda i: fs.param.update(**filters[i % len(filters)]), repeat)
        filter_floor = sql_ms(
            ws,
            [
                (
                    "SELECT currency, count(*), sum(summary_amount) FROM billing_events "
                    "WHERE NOT released AND currency = $c GROUP BY ALL",
                    {"c": c},
                )
                for c in ("EUR", "USD", "GBP")
            ],
            repeat,
        ) + sql_ms(
            ws,
            [
                (
                    "SELECT id FROM billing_events WHERE NOT released AND currency = $c "
                    "ORDER BY id LIMIT 50",
                    {"c": c},
                )
                for c in ("EUR", "USD", "GBP")
            ],
            repeat,
        )
        rows.append(("filter (count + cards + page + ineligible)", filter_ms, filter_floor))
        each = []
        inel = ws.eligibility("awaiting_release")["billing_event_id"].tolist()
        for f in filters:
            times = []
            for _ in range(3):  # the first may build a cache (category masks, text matches)
                fs.reset()
                t0 = time.perf_counter()
                fs.param.update(**{k: v for k, v in f.items() if v not in (None, [], "")})
                times.append((time.perf_counter() - t0) * 1000)
            shown = {k: v for k, v in f.items() if v not in (None, [], "")}
            floor_ms = sql_ms(ws, floor_queries(shown, inel), repeat)
            each.append((times, shown, floor_ms))
        fs.reset()

        # -- selection -----------------------------------------------------------------------
        sel_ms = median_ms(lambda i: (grid.select_all_matching(), grid.clear_selection()), repeat)
        rows.append(("select all matching + clear (with totals)", sel_ms, filter_floor))

        print()
        print(
            f"{'operation (median of ' + str(repeat) + ')':48} {'state':>9} {'floor':>9} {'ratio':>6}  bar {BAR_MS:.0f} ms"
        )
        for name, ms, fl in rows:
            ok = "ok" if ms <= BAR_MS else "OVER"
            print(f"{name:48} {ms:8.1f}ms {fl:8.1f}ms {ms / fl:5.1f}x  {ok}")

        print()
        print(
            "each filter from no filter (count + cards + page + ineligible): first (builds what "
            "is kept) / again, beside its own floor (the same count, totals and page in bare SQL)"
        )
        for (first, *again), shown, floor_ms in each:
            warm = min(again)
            text = ", ".join(f"{k}={v}" for k, v in shown.items())
            print(
                f"  {first:7.1f} ms / {warm:6.1f} ms   floor {floor_ms:6.1f} ms   "
                f"{'ok' if warm <= FILTER_BAR_MS else 'OVER'} (≤ {FILTER_BAR_MS:.0f} ms)  {text}"
            )

        # -- memory: three sessions ----------------------------------------------------------
        gc.collect()
        sessions = []
        for _ in range(3):
            f = FilterState()
            rel = GridState(ws, f, kind="awaiting_release")
            inv = GridState(ws, f, kind="awaiting_invoice")
            rel.refresh()
            inv.refresh()
            rel.sort("summary_amount", True)
            rel.next_page()
            rel.select_all_matching()
            docs = DocumentsState(ws)
            docs.next_page()
            sessions.append(
                (
                    f,
                    rel,
                    inv,
                    docs,
                    RunsState(ws),
                    SettingsState(ws),
                    NotificationState(ws, "bench"),
                )
            )
        gc.collect()
        after = rss_mib()
        print()
        print(
            f"memory: process RSS {after:,.0f} MiB with 3 sessions' state at {n:,} events "
            f"(RSS was {rss0:,.0f} MiB with the database open and no state; target ≤ 1,536 MiB)"
        )
        ws.close()


if __name__ == "__main__":
    main()
