"""A run's memory: the stages' working tables are dropped when it ends, DuckDB's memory is
bounded while it executes (and the previous limit put back), and a run that fails under the
bound resumes without it instead of failing."""

from __future__ import annotations

import logging

import duckdb

import bear
from bear.pipeline import runner


def _eligible(ws, n):
    pv = ws.preview(ws.awaiting_release(), action="release_and_invoice", full=True)
    return pv.eligible_ids[:n]


def _limit(ws) -> str:
    return ws.db.cursor().execute("SELECT current_setting('memory_limit')").fetchall()[0][0]


def _temp_tables(ws) -> set[str]:
    rows = ws.db.cursor().execute("SELECT table_name FROM duckdb_tables() WHERE temporary")
    return {r[0] for r in rows.fetchall()}


def test_a_run_drops_its_working_tables_and_puts_the_memory_limit_back(demo_ws):
    ids = _eligible(demo_ws, 400)
    before = _limit(demo_ws)
    run_id = demo_ws.queue("release_and_invoice", ids, "ana@example.com", start=False).id
    assert "_submit_ids" not in _temp_tables(demo_ws)
    seen: list[str] = []
    real = runner._execute

    def spy(core, cur, *args):  # the limit the stages run under, read on the run's cursor
        seen.append(cur.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])
        return real(core, cur, *args)

    runner._execute = spy
    try:
        res = bear.pipeline.execute_run(demo_ws.core, run_id)  # on this thread's cursor
    finally:
        runner._execute = real
    assert res.status == "completed" and res.released == 400
    scratch = duckdb.connect()
    scratch.execute(f"SET memory_limit = '{runner.RUN_MEMORY_LIMIT}'")
    assert seen == [scratch.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]]
    assert _limit(demo_ws) == before
    left = _temp_tables(demo_ws) & set(runner.RUN_TEMP_TABLES)
    assert not left, f"working tables left on the run's cursor: {sorted(left)}"


def test_a_run_out_of_its_memory_bound_resumes_without_it(demo_ws, monkeypatch, caplog):
    ids = _eligible(demo_ws, 400)
    before = _limit(demo_ws)
    monkeypatch.setattr(runner, "RUN_MEMORY_LIMIT", "8MB")  # far too little: DuckDB fails
    with caplog.at_level(logging.WARNING, logger="bear.pipeline"):
        res = demo_ws.release_and_invoice(ids, user="ana@example.com", timeout=120)
    assert res.status == "completed", res.error
    assert res.released == 400 and res.sales_invoices + res.credit_notes == 400
    assert any("resuming it without the bound" in r.getMessage() for r in caplog.records)
    n = demo_ws.sql(
        "SELECT count(*) AS n, count(DISTINCT billing_event_id) AS d FROM documents "
        "WHERE process_run_id = (SELECT process_run_id FROM runs WHERE id = $r)",
        r=res.id,
    )
    assert int(n["n"][0]) == int(n["d"][0]) == 400  # resumed, nothing done twice
    assert _limit(demo_ws) == before


def test_a_preview_and_the_eligibility_leave_no_working_tables(demo_ws):
    """What a preview returns is Arrow or pandas: its batch table, ids and violations are not
    kept on the thread's cursor (a wide row per event), and neither are the eligibility's."""
    sel = demo_ws.awaiting_release()
    pv = demo_ws.preview(sel.ids()[:300], action="release_and_invoice", full=True)
    assert len(pv.violations) > 0 and pv.eligible > 0  # the result outlives its tables
    demo_ws.eligibility("awaiting_invoice")
    views = demo_ws.db.cursor().execute(
        "SELECT view_name FROM duckdb_views() WHERE temporary AND view_name LIKE '\\_batch%' ESCAPE '\\'"
    )
    assert not _temp_tables(demo_ws) & {
        "_pv_ids",
        "_pv_ok",
        "_violations",
        "_batch_core",
        "_el_v",
        "_el_ids",
    }
    assert views.fetchall() == []
