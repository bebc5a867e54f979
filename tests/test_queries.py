"""The query layer and the one pager (bear.queries): what it may import, what the dashboard's
state may not hold, keyset pages equal to OFFSET pages for every listing, and a selection as
a plain value read through the workspace."""

from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bear
from bear.errors import BearError, QueryError
from bear.queries import AppLogQuery, DocumentQuery, Filters, Pager, ProcessLogQuery
from bear.queries.events import aliases_of, joins_for
from bear.selection import Selection
from bear.ui.state import PagedRows

BEAR = Path(bear.__file__).parent
USER = "ana@example.com"


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", sorted((BEAR / "queries").glob("*.py")), ids=lambda p: p.name)
def test_queries_import_only_the_layers_below(path):
    allowed = ("bear.queries", "bear.db", "bear.models", "bear.errors", "bear.config", "bear.wire")
    for name in _imports(path):
        if name == "bear" or name.startswith("bear."):
            assert name.startswith(allowed), f"{path.name} imports {name}"
        assert not name.startswith("panel"), f"{path.name} imports {name}"


@pytest.mark.parametrize("path", sorted((BEAR / "ui" / "state").glob("*.py")), ids=lambda p: p.name)
def test_state_holds_no_sql_and_no_cursor(path):
    text = path.read_text()
    for banned in (".cursor(", "ws.db", ".db.", "ws._", "SELECT ", " FROM ", "import panel"):
        assert banned not in text, f"{path.name} holds {banned!r}"
    assert len(text.splitlines()) < 420, f"{path.name} wants splitting"


def test_one_alias_detector():
    assert aliases_of("p.name = 1 AND a.id > 2") == {"p", "a"}
    assert aliases_of("ep.name = $p.x AND coalesce(c.x, 1)") == {"c"}
    assert joins_for("pr.run_id = 3", {"pr": "JOIN pr", "a": "JOIN a"}) == "JOIN pr"


# -- a selection is a value -----------------------------------------------------------------
def test_selection_is_a_value_read_through_its_workspace(demo_ws):
    sel = demo_ws.awaiting_release(currency="EUR")
    same = Selection("awaiting_release", Filters.build(currency="EUR"))
    assert sel == same and hash(sel) == hash(same) and "ws" not in repr(sel)
    with pytest.raises(AttributeError):
        sel.kind = "all"  # type: ignore[misc]
    assert demo_ws.count(same) == len(sel) > 0
    assert demo_ws.resolve_ids(same) == sel.ids()
    pd.testing.assert_frame_equal(demo_ws.page(same, 5, 20), sel.page(5, 20))
    pd.testing.assert_frame_equal(demo_ws.totals(same), sel.totals())
    assert sel.refine(min_amount=0).ws is demo_ws
    with pytest.raises(BearError, match="not bound"):
        len(same)
    with pytest.raises(BearError, match="kind"):
        Selection("bogus", Filters())  # type: ignore[arg-type]


def test_cached_reads_equal_plain_reads(demo_ws):
    for filters in ({"category": ["expense"]}, {"search": "a", "category": ["budget"]}, {}):
        sel = demo_ws.awaiting_release(**filters)
        assert demo_ws.count(sel, cached=True) == len(sel)
        pd.testing.assert_frame_equal(demo_ws.totals(sel, cached=True), sel.totals())
        overall = demo_ws.totals(sel, cached=True, projects="overall")
        assert list(overall["events"]) == list(sel.totals()["events"])
        projects = demo_ws.sql(
            "SELECT count(DISTINCT project_id) AS n FROM billing_events "
            "WHERE id IN (SELECT unnest($ids))",
            ids=sel.ids(),
        )["n"][0]
        assert set(overall["all_projects"]) == ({projects} if len(overall) else set())
    with pytest.raises(QueryError, match="projects"):
        demo_ws.totals(sel, projects="some")


@pytest.mark.parametrize("projects", ["overall", "per_currency"])
def test_totals_count_the_ineligible_in_the_same_pass(demo_ws, projects):
    """``ineligible=True``: per currency, the events the kind's rules block — the count of the
    selection refined to ineligible — whatever other filters, and with an eligibility filter."""
    for filters in (
        {},
        {"currency": ["EUR"]},
        {"category": ["expense"], "search": "a"},
        {"eligibility": "eligible"},
        {"eligibility": "ineligible"},
        {"eligibility": "release.not_approved", "currency": ["USD"]},
    ):
        sel = demo_ws.awaiting_release(**filters)
        got = demo_ws.totals(sel, cached=True, projects=projects, ineligible=True)
        plain = demo_ws.totals(sel, cached=True, projects=projects)
        pd.testing.assert_frame_equal(got.drop(columns="ineligible"), plain)
        expected = {
            cur: n
            for cur, n in demo_ws.sql(
                "SELECT currency, count(*) AS n FROM billing_events "
                "WHERE id IN (SELECT unnest($ids)) GROUP BY 1",
                ids=[]
                if filters.get("eligibility") == "eligible"
                else sel.ids()  # a rule or "ineligible": every event selected is blocked
                if filters.get("eligibility")
                else sel.refine(eligibility="ineligible").ids(),
            ).itertuples(index=False)
        }
        assert {c: int(n) for c, n in zip(got["currency"], got["ineligible"], strict=True)} == {
            c: expected.get(c, 0) for c in got["currency"]
        }, filters
        assert int(got["ineligible"].sum()) > 0 or filters.get("eligibility") == "eligible"


@pytest.mark.parametrize("projects", ["overall", "per_currency"])
def test_dimensional_totals_summed_from_the_kept_aggregate_equal_the_events_scan(
    demo_ws, projects, monkeypatch
):
    """The dashboard's totals of a selection filtered only by project, account, company,
    currency, scope or eligible/ineligible are summed from a per-project aggregate kept for
    the data version: the same figures, Decimal amounts, dtypes and order as the events' scan,
    for every kind, and new figures after a write."""
    from dataclasses import replace
    from decimal import Decimal

    from bear.models import Scopes
    from bear.queries import events as q_events

    built = []
    aggregate = q_events.aggregate
    monkeypatch.setattr(
        q_events, "aggregate", lambda *a, **k: built.append(a[1]) or aggregate(*a, **k)
    )
    pick = demo_ws.sql(
        "SELECT min(p.region) AS region, max(p.practice) AS practice, min(e.project_id) AS project,"
        " max(e.account_id) AS account, min(e.company_id) AS company"
        " FROM billing_events e JOIN projects p ON p.id = e.project_id"
    ).iloc[0]
    cases = [
        {},
        {"currency": ["EUR"]},
        {"region": [pick.region], "currency": ["USD", "GBP"]},
        {"practice": [pick.practice]},
        {"project": [int(pick.project)]},
        {"account": [int(pick.account)], "company": [int(pick.company)]},
        {"currency": ["XXX"]},  # nothing
        {"eligibility": "ineligible"},
        {"eligibility": "eligible", "region": [pick.region]},
        {"category": ["expense"]},
        {"category": ["expense", "budget"], "region": [pick.region], "eligibility": "ineligible"},
    ]
    demo_ws.eligibility("awaiting_release")
    for kind in ("awaiting_release", "awaiting_invoice", "released", "invoiced", "all"):
        for filters in cases:
            if filters.get("eligibility") and kind not in ("awaiting_release", "all"):
                continue
            sel = demo_ws.selection(kind, Filters.build(**filters))
            scoped = demo_ws.selection(
                kind, sel.filters.scoped(Scopes(regions=(pick.region,), companies=(1, 2)))
            )
            for s in (sel, scoped):
                assert s.filters.dimensional(categories=True)
                flag = kind in ("awaiting_release", "all")
                kept = demo_ws.totals(s, cached=True, projects=projects, ineligible=flag)
                scan = demo_ws.totals(s, projects=projects, ineligible=flag)
                pd.testing.assert_frame_equal(kept, scan, check_exact=True)
                assert all(isinstance(a, Decimal) for a in kept["amount"])
    assert built, "the kept aggregate was never used"
    n = len(built)
    demo_ws.totals(demo_ws.awaiting_release(currency=["EUR"]), cached=True)
    assert len(built) == n, "the aggregate is kept for the data version"
    # not dimensional: the events are scanned
    for other in (
        {"min_amount": 10},
        {"search": "a"},
        {"eligibility": "release.not_approved"},
        {"exclude_ids": [1]},
    ):
        assert not Filters.build(**other).dimensional(categories=True)
    assert not Filters.build(category=["expense"]).dimensional()  # without the masks
    # a write: new figures
    sel = demo_ws.awaiting_release(currency=["EUR"])
    before = demo_ws.totals(sel, cached=True, projects=projects, ineligible=True)
    run = demo_ws.release(sel, "tester", wait=True)
    assert run.status in ("complete", "completed", "partial") or run
    after = demo_ws.totals(sel, cached=True, projects=projects, ineligible=True)
    pd.testing.assert_frame_equal(after, demo_ws.totals(sel, projects=projects, ineligible=True))
    assert int(after["events"].sum()) < int(before["events"].sum())
    assert replace(sel.filters, search="x").dimensional() is False


# -- the one pager ---------------------------------------------------------------------------
def _walk(ws, what, sort=None, size=7, columns=None):
    """Every page forward by keyset, then back, then jumps: each equals its OFFSET window."""
    pager = Pager(size=size, total=ws.count(what))
    window = ws.page(what, 0, 10_000, sort=sort)
    key = window.columns[0]
    expected = list(window[key])
    seen = []
    for p in range(pager.pages):
        seen += list(ws.browse(what, pager, p, sort=sort, columns=columns)[key])
    assert seen == expected
    for p in range(pager.pages - 2, -1, -1):
        rows = ws.browse(what, pager, p, sort=sort, columns=columns)
        assert list(rows[key]) == expected[p * size : (p + 1) * size]
    return pager


@pytest.mark.parametrize(
    "sort",
    [None, [("summary_amount", "desc")], [("account", "asc")], [("id", "desc")]],
    ids=["id", "amount-desc", "account", "id-desc"],
)
def test_event_pages_by_keyset_equal_offset_windows(demo_ws, sort):
    sel = demo_ws.awaiting_release(currency="GBP", max_amount=2000)
    pager = _walk(demo_ws, sel, sort)
    assert pager.last_method == "keyset-previous"


def test_multi_column_sort_falls_back_to_offset(demo_ws):
    sel = demo_ws.awaiting_release(currency="GBP", max_amount=2000)
    sort = [("currency", "asc"), ("summary_amount", "desc")]
    pager = _walk(demo_ws, sel, sort)
    assert pager.last_method == "offset"
    with pytest.raises(QueryError, match="bogus"):
        demo_ws.page(sel, 0, 10, sort=[("bogus", "asc")])


def test_record_listings_page_by_keyset(demo_ws):
    run = demo_ws.release_and_invoice(demo_ws.awaiting_release(currency="EUR"), user=USER)
    assert run.status == "completed"
    docs = DocumentQuery(run_id=run.id)
    assert demo_ws.count(docs) == run.sales_invoices + run.credit_notes > 20
    _walk(demo_ws, docs, [("total", "desc")])
    _walk(demo_ws, docs, [("number", "asc")])
    logs = ProcessLogQuery(run.process_run_id)
    assert demo_ws.count(logs) == len(demo_ws.process_logs(run.process_run_id))
    _walk(demo_ws, logs)
    _walk(demo_ws, AppLogQuery(run.id))
    errors = ProcessLogQuery(run.process_run_id, "ERROR")
    # events left out at release count as not passed but get no process log
    assert demo_ws.count(errors) == run.not_passed - run.not_released
    with pytest.raises(BearError, match="status"):
        ProcessLogQuery(run.process_run_id, "MAYBE")
    # a screen's listing: the same pager behind a pager bar
    rows = PagedRows(demo_ws, size=10)
    rows.show(logs)
    assert rows.total == demo_ws.count(logs) and rows.page == 0 and len(rows.rows) == 10
    rows.next_page()
    assert rows.pager.last_method == "keyset-next" and rows.page == 1
    rows.last_page()
    assert rows.page == rows.pages - 1
    rows.show(None)
    assert rows.total == 0 and rows.rows.empty


def _read_as_bits(ids, events: range):
    """A database of the ``events`` ids; ``in_ids(ids)``'s condition on it, and the events
    it selects."""
    import duckdb
    import pyarrow as pa

    from bear.queries.events import in_ids

    con = duckdb.connect()
    con.execute(
        f"CREATE TABLE billing_events AS SELECT range AS id FROM range({events.start}, {events.stop})"
    )
    cond = in_ids(pa.table({"id": pa.array(sorted(ids), pa.int64())}), "_t_ids")
    cond.register(con)
    sql = f"SELECT e.id {cond.source()} ORDER BY 1"
    return con, cond, [r[0] for r in con.execute(sql, dict(cond.params)).fetchall()]


@pytest.mark.parametrize(
    "ids",
    [[], [1], [2, 5, 7], [7], list(range(1, 9)), [3, 9_999]],
    ids=["none", "first", "some", "last", "all", "past-the-last-event"],
)
def test_an_id_set_read_as_bits_selects_exactly_its_events(ids):
    """``in_ids`` looks ids up in a string of bits: the events in the set, no other — none
    past the set's largest id, none when the set is empty."""
    import pyarrow as pa

    from bear.queries.events import BITMAP_MAX_ID, in_ids

    con, cond, got = _read_as_bits(ids, range(1, 9))
    assert "get_bit" in cond.where
    assert got == sorted(i for i in ids if i < 9)
    # ids too large for a bit string are looked up with a join, with the same answer
    big = in_ids(pa.table({"id": pa.array([2, BITMAP_MAX_ID], pa.int64())}), "_t_big")
    assert "get_bit" not in big.where
    big.register(con)
    assert con.execute(f"SELECT e.id {big.source()}", dict(big.params)).fetchall() == [(2,)]


@settings(max_examples=60, deadline=None)
@given(st.sets(st.integers(min_value=0, max_value=70), max_size=40))
def test_an_id_set_read_as_bits_selects_its_events_across_byte_boundaries(ids):
    """The bits are packed eight to a byte, first bit highest: any set of ids, across byte
    boundaries and past the last event, selects exactly those of the events."""
    _, cond, got = _read_as_bits(ids, range(0, 65))
    assert isinstance(cond.params["_t_ids"], bytes)
    assert got == sorted(i for i in ids if i < 65)
