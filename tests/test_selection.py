"""Selections: every filter against an independent pandas computation, hostile input, paging,
sorting, totals; read-only ``ws.sql``; ``ws.resolve_ids``."""

from __future__ import annotations

import contextlib
import datetime as dt
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bear
from bear.errors import BearError, QueryError, UnknownIdsError
from bear.selection import CATEGORIES, COLUMNS, FILTERS, Selection

N_EVENTS = 2_000


# -- fixtures: one read-only book for the module, an independent frame of it ------------------
@pytest.fixture(scope="module")
def book():
    w = bear.connect(":memory:", resume=False)
    bear.demo.seed(w, events=N_EVENTS, seed=11)
    yield w
    w.close()


@pytest.fixture(scope="module")
def frame(book) -> pd.DataFrame:
    """Every event with the page's columns, joined in pandas from the raw tables."""
    ev = book.sql("SELECT * FROM billing_events")
    pj = book.sql("SELECT id AS project_id, name AS project, region, practice, grp FROM projects")
    ac = book.sql("SELECT id AS account_id, name AS account FROM accounts")
    co = book.sql("SELECT id AS company_id, name AS company FROM companies")
    df = ev.merge(pj, on="project_id", how="inner")
    df = df.merge(ac, on="account_id", how="left").merge(co, on="company_id", how="left")
    dc = book.sql(
        "SELECT id AS document_id, number AS document_number, doc_type AS document_type, "
        "status AS document_status, document_date FROM documents"
    )
    df = df.merge(dc, on="document_id", how="left")
    today = book.sql("SELECT current_date AS d")["d"][0]
    df["days_awaiting"] = [(today - d).days for d in df["event_date"]]
    df = df.sort_values("id").reset_index(drop=True)
    items = book.sql("SELECT billing_event_id, category FROM billing_event_items")
    cats = items.groupby("billing_event_id")["category"].apply(set)
    df["categories"] = df["id"].map(cats).apply(lambda s: s if isinstance(s, set) else set())
    assert len(df) == N_EVENTS
    return df


@pytest.fixture(scope="module")
def awaiting(frame) -> pd.DataFrame:
    return frame[~frame["released"]]


@pytest.fixture
def small(checksums):
    """A private small book for tests that try to write; checks nothing changed afterwards."""
    w = bear.connect(":memory:", resume=False)
    bear.demo.seed(w, events=300, seed=5)
    w.before = checksums(w)
    yield w
    w.close()


def ids_of(df: pd.DataFrame) -> list[int]:
    return sorted(int(i) for i in df["id"])


def _search(df: pd.DataFrame, text: str) -> pd.DataFrame:
    t = text.strip().lower()

    def hit(r) -> bool:
        return (
            t in r["name"].lower()
            or t in r["project"].lower()
            or t in (r["account"] if isinstance(r["account"], str) else "").lower()
            or str(r["id"]) == text.strip()
        )

    return df[df.apply(hit, axis=1)] if len(df) else df


def _in(col, values):
    return lambda d: d[d[col].isin(values)]


D = Decimal
CASES = [
    ("company-one", {"company": 1}, _in("company_id", [1])),
    ("company-list", {"company": [1, 3]}, _in("company_id", [1, 3])),
    ("company-str", {"company": ["2"]}, _in("company_id", [2])),
    ("account", {"account": [2, 5, 7]}, _in("account_id", [2, 5, 7])),
    ("project", {"project": [1, 2, 3, 9]}, _in("project_id", [1, 2, 3, 9])),
    ("region", {"region": "EMEA"}, _in("region", ["EMEA"])),
    ("practice", {"practice": ["Tax", "Audit"]}, _in("practice", ["Tax", "Audit"])),
    ("grp", {"grp": "Group A"}, _in("grp", ["Group A"])),
    ("currency-lower", {"currency": "eur"}, _in("currency", ["EUR"])),
    ("currency-list", {"currency": ["USD", "GBP"]}, _in("currency", ["USD", "GBP"])),
    (
        "date_from",
        {"date_from": "2026-06-01"},
        lambda d: d[d["event_date"] >= dt.date(2026, 6, 1)],
    ),
    (
        "date_to",
        {"date_to": dt.date(2026, 3, 31)},
        lambda d: d[d["event_date"] <= dt.date(2026, 3, 31)],
    ),
    (
        "date-range-datetime",
        {"date_from": dt.datetime(2026, 2, 1, 13, 0), "date_to": "2026-02-28"},
        lambda d: d[
            (d["event_date"] >= dt.date(2026, 2, 1)) & (d["event_date"] <= dt.date(2026, 2, 28))
        ],
    ),
    (
        "date-one-day",
        {"date_from": "2026-05-05", "date_to": "2026-05-05"},
        lambda d: d[d["event_date"] == dt.date(2026, 5, 5)],
    ),
    ("min_amount-zero", {"min_amount": 0}, lambda d: d[d["summary_amount"] >= 0]),
    ("max_amount-credits", {"max_amount": "-0.01"}, lambda d: d[d["summary_amount"] <= D("-0.01")]),
    (
        "amount-range-decimal",
        {"min_amount": D("1000.50"), "max_amount": D("5000")},
        lambda d: d[(d["summary_amount"] >= D("1000.50")) & (d["summary_amount"] <= D("5000"))],
    ),
    ("amount-float", {"min_amount": 2999.99}, lambda d: d[d["summary_amount"] >= D("2999.99")]),
    (
        "amount-exact-cents",
        {"min_amount": "1234.565", "max_amount": "20000.005"},
        lambda d: d[
            (d["summary_amount"] >= D("1234.565")) & (d["summary_amount"] <= D("20000.005"))
        ],
    ),
    (
        "category-one",
        {"category": "milestone"},
        lambda d: d[d["categories"].apply(lambda s: "milestone" in s)],
    ),
    (
        "category-list",
        {"category": ["budget", "misc_adjustment"]},
        lambda d: d[d["categories"].apply(lambda s: bool(s & {"budget", "misc_adjustment"}))],
    ),
    ("search-account", {"search": "acme"}, lambda d: _search(d, "acme")),
    ("search-project-case", {"search": "CLOUD migration"}, lambda d: _search(d, "CLOUD migration")),
    ("search-event-name", {"search": "BE-00001"}, lambda d: _search(d, "BE-00001")),
    ("search-padded", {"search": "  Wayne  "}, lambda d: _search(d, "Wayne")),
    ("search-id", {"search": "123"}, lambda d: _search(d, "123")),
    ("search-ampersand", {"search": "M&A"}, lambda d: _search(d, "M&A")),
    ("ids", {"ids": [1, 2, 3, 50, 999_999_999]}, lambda d: d[d["id"].isin([1, 2, 3, 50])]),
    ("ids-empty", {"ids": []}, lambda d: d.iloc[0:0]),
    ("exclude-ids", {"exclude_ids": [1, 2, 999_999_999]}, lambda d: d[~d["id"].isin([1, 2])]),
    (
        "exclude-ids-and-ids",
        {"ids": [1, 2, 3, 50], "exclude_ids": [2, 50]},
        lambda d: d[d["id"].isin([1, 3])],
    ),
    ("empty-values-mean-any", {"company": [], "search": "", "currency": None}, lambda d: d),
    (
        "combined",
        {
            "currency": "EUR",
            "min_amount": 100,
            "category": "timecard",
            "search": "a",
            "region": "EMEA",
        },
        lambda d: _search(
            d[
                (d["currency"] == "EUR")
                & (d["summary_amount"] >= 100)
                & d["categories"].apply(lambda s: "timecard" in s)
                & (d["region"] == "EMEA")
            ],
            "a",
        ),
    ),
]


def test_cases_cover_every_filter():
    used = {k for _, f, _ in CASES for k in f} | {"eligibility"}
    assert used == set(FILTERS)


@pytest.mark.parametrize(("filters", "expect"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_filter_matches_pandas(book, awaiting, filters, expect):
    sel = book.awaiting_release(**filters)
    expected = ids_of(expect(awaiting))
    assert sel.ids() == expected
    assert len(sel) == len(expected) == sel.count()


def test_filters_do_not_hit_everything(book, awaiting):
    """Guard against vacuous cases: most filters keep some but not all events."""
    for name, _filters, expect in CASES:
        if name in ("ids-empty", "empty-values-mean-any"):
            continue
        n = len(expect(awaiting))
        assert 0 < n < len(awaiting), (name, n)


def test_released_events_are_not_awaiting(book, frame):
    released = frame[frame["released"]]
    assert len(released) > 0
    some = [int(i) for i in released["id"][:5]]
    assert book.awaiting_release(ids=some).ids() == []


def test_awaiting_invoice_and_all(book, frame):
    ai = frame[frame["released"] & ~frame["invoiced"]]
    assert len(ai) > 0
    assert book.awaiting_invoice().ids() == ids_of(ai)
    assert book.awaiting_invoice(currency="GBP").ids() == ids_of(ai[ai["currency"] == "GBP"])
    assert book.events().ids() == ids_of(frame)
    assert len(book.events(currency="USD")) == int((frame["currency"] == "USD").sum())


def test_refine_adds_filters(book, awaiting):
    sel = book.awaiting_release(currency="EUR").refine(min_amount=0)
    exp = awaiting[(awaiting["currency"] == "EUR") & (awaiting["summary_amount"] >= 0)]
    assert sel.ids() == ids_of(exp)
    assert book.awaiting_release(currency="EUR").refine(currency="USD").ids() == ids_of(
        awaiting[awaiting["currency"] == "USD"]
    )


# -- eligibility filter ----------------------------------------------------------------------
def test_eligibility_matches_preview(book, awaiting):
    pv = book.preview(book.awaiting_release())
    assert pv.validated
    eligible = book.awaiting_release(eligibility="eligible").ids()
    ineligible = book.awaiting_release(eligibility="ineligible").ids()
    assert eligible == sorted(pv.eligible_ids)
    assert sorted(eligible + ineligible) == ids_of(awaiting)
    assert not set(eligible) & set(ineligible)
    assert 0 < len(ineligible) < len(awaiting)
    # combined with another filter
    eur = book.awaiting_release(eligibility="eligible", currency="EUR").ids()
    assert eur == sorted(set(eligible) & set(ids_of(awaiting[awaiting["currency"] == "EUR"])))


@pytest.mark.parametrize(
    ("rule_id", "condition"),
    [
        ("release.not_approved", lambda d: d[~d["approved"]]),
        ("invoice.no_company", lambda d: d[d["company_id"].isna()]),
        ("release.no_account", lambda d: d[d["account_id"].isna()]),
        ("invoice.zero_total", lambda d: d[d["summary_amount"] == 0]),
    ],
)
def test_eligibility_by_rule_matches_the_raw_data(book, awaiting, rule_id, condition):
    expected = ids_of(condition(awaiting))
    assert expected, f"the demo book should have {rule_id} victims"
    assert book.awaiting_release(eligibility=rule_id).ids() == expected


def test_eligibility_of_awaiting_invoice_matches_invoice_preview(book):
    pv = book.preview(book.awaiting_invoice(), action="invoice")
    inel = set(book.awaiting_invoice(eligibility="ineligible").ids())
    assert inel == set(book.awaiting_invoice().ids()) - set(pv.eligible_ids)


# -- hostile strings -------------------------------------------------------------------------
HOSTILE = [
    "'; DROP TABLE billing_events; --",
    "Robert'); DELETE FROM projects; --",
    "%",
    "_",
    "%%",
    "\\",
    "\\%",
    "'",
    '"',
    "''",
    "%' OR '1'='1",
    "1 OR 1=1",
    "$f_search",
    "?",
    "e.id",
    "ünïcödé 🐻 名前 ×",
    "\x00",
    "line\nbreak",
    "x" * 200,
    "NULL",
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_search_is_literal(book, awaiting, checksums, text):
    before = checksums(book)
    sel = book.awaiting_release(search=text)
    assert sel.ids() == ids_of(_search(awaiting, text))
    assert len(sel.page(0, 10)) <= 10
    sel.totals()
    assert checksums(book) == before


def test_search_finds_events_by_their_document_number(small):
    """A document number (any case) finds the events of every document that has it: numbers
    repeat across companies and document types, so one text may name several documents."""
    docs = small.sql("SELECT number, billing_event_id FROM documents")
    everything = small.events().page(0, 10_000)
    by_number = docs.groupby("number")["billing_event_id"].apply(set)
    assert (by_number.map(len) > 1).any(), "the book must have a number shared by two documents"
    for number, events in by_number.items():
        for text in (number, number.lower(), f"  {number.lower()} "):
            expected = events | set(ids_of(_search(everything, text)))
            assert set(small.events(search=text).ids()) == expected, text
            assert small.invoiced(search=text).ids() == sorted(events), text
            assert len(small.events(search=text)) == len(expected), text
    assert small.events(search="SIN999999").ids() == []


@pytest.mark.parametrize("text", HOSTILE + ["x" * 250], ids=range(len(HOSTILE) + 1))
@pytest.mark.parametrize("name", ["region", "practice", "grp", "currency"])
def test_hostile_list_filters_match_nothing(book, checksums, name, text):
    before = checksums(book)
    for value in (text, [text, "EMEA"] if name == "region" else [text]):
        sel = book.awaiting_release(**{name: value})
        expected = (
            len(book.awaiting_release(region="EMEA"))
            if isinstance(value, list) and len(value) == 2
            else 0
        )
        assert len(sel) == expected
        assert len(sel.ids()) == expected
    assert checksums(book) == before


def test_overlong_search_is_refused(book):
    with pytest.raises(BearError, match="200"):
        book.awaiting_release(search="x" * 201)


@pytest.mark.parametrize("name", ["company", "account", "project", "ids", "exclude_ids"])
@pytest.mark.parametrize(
    "text", ["'; DROP TABLE billing_events; --", "1 OR 1=1", "%", "1.5", "ünï"]
)
def test_hostile_id_filters_are_refused(book, checksums, name, text):
    before = checksums(book)
    with pytest.raises(BearError) as info:
        book.awaiting_release(**{name: [text]})
    assert name in str(info.value)
    assert checksums(book) == before


# -- invalid filter values -------------------------------------------------------------------
INVALID = [
    ({"date_from": "2026-13-45"}, "date_from"),
    ({"date_to": "yesterday"}, "date_to"),
    ({"date_from": ""}, None),  # empty means "any": allowed
    ({"date_from": "2026-06-01", "date_to": "2026-05-01"}, "date_from"),
    ({"min_amount": "abc"}, "min_amount"),
    ({"max_amount": "NaN"}, "max_amount"),
    ({"min_amount": "Infinity"}, "min_amount"),
    ({"min_amount": float("nan")}, "min_amount"),
    ({"max_amount": [1, 2]}, "max_amount"),
    ({"min_amount": 10, "max_amount": 5}, "min_amount"),
    ({"category": "travel"}, "category"),
    ({"category": ["timecard", "bogus"]}, "bogus"),
    ({"foo": 1}, "foo"),
    ({"Currency": "EUR"}, "Currency"),
    ({"company": "abc"}, "company"),
    ({"company": True}, "company"),
    ({"account": [1.5]}, "account"),
    ({"project": {"a": 1}}, "project"),
    ({"ids": "x"}, "ids"),
    ({"exclude_ids": ["x"]}, "exclude_ids"),
    ({"search": 123}, "search"),
    ({"region": [object()]}, "region"),
]


@pytest.mark.parametrize(("filters", "named"), INVALID, ids=range(len(INVALID)))
def test_invalid_filters_are_clear_errors(book, filters, named):
    if named is None:
        assert len(book.awaiting_release(**filters)) == len(book.awaiting_release())
        return
    with pytest.raises(BearError) as info:
        len(book.awaiting_release(**filters))
    assert named in str(info.value)


@pytest.mark.parametrize("value", ["bogus", "release.no_such_rule", "ELIGIBLE"])
def test_unknown_eligibility_is_a_clear_error(book, value):
    with pytest.raises(BearError) as info:
        len(book.awaiting_release(eligibility=value))
    assert value in str(info.value) and "eligib" in str(info.value)


# -- page, sort, totals ----------------------------------------------------------------------
def test_page_defaults_and_columns(book, awaiting):
    sel = book.awaiting_release()
    page = sel.page()
    assert list(page.columns) == list(COLUMNS)
    assert len(page) == 50
    assert list(page["id"]) == ids_of(awaiting)[:50]
    assert list(sel.page(50, 50)["id"]) == ids_of(awaiting)[50:100]
    assert all(isinstance(v, Decimal) for v in page["summary_amount"])
    row = page.iloc[0]
    exp = awaiting[awaiting["id"] == row["id"]].iloc[0]
    for col in ("name", "account", "project", "company", "region", "currency", "summary_amount"):
        assert row[col] == exp[col], col


def test_page_past_the_end_is_empty(book):
    sel = book.awaiting_release()
    tail = sel.page(len(sel) - 3, 50)
    assert len(tail) == 3
    empty = sel.page(len(sel) + 10, 50)
    assert empty.empty and list(empty.columns) == list(COLUMNS)
    assert book.awaiting_release(ids=[]).page().empty


@pytest.mark.parametrize("offset", [-1, "0", 1.5, None])
def test_bad_page_offset(book, offset):
    with pytest.raises(BearError, match="offset"):
        book.awaiting_release().page(offset, 10)


@pytest.mark.parametrize("limit", [0, -1, 10_001, "50", 2.5, None])
def test_bad_page_limit(book, limit):
    with pytest.raises(BearError, match="limit"):
        book.awaiting_release().page(0, limit)


def test_page_limit_upper_bound_allowed(book):
    assert len(book.awaiting_release().page(0, 10_000)) == len(book.awaiting_release())


def _pandas_sorted_ids(df: pd.DataFrame, col: str, asc: bool) -> list[int]:
    data = df[[col, "id"]].copy() if col != "id" else df[["id"]].copy()
    if col == "id":
        return [int(i) for i in data.sort_values("id", ascending=asc)["id"]]
    nulls = data[data[col].isna()].sort_values("id")
    rest = data[data[col].notna()]
    # pandas sorts object columns (dates, Decimals, strings) by Python comparison
    rest = rest.sort_values([col, "id"], ascending=[asc, True], kind="mergesort")
    return [int(i) for i in pd.concat([rest, nulls])["id"]]  # NULLS LAST either way


@pytest.mark.parametrize("direction", ["asc", "desc"])
@pytest.mark.parametrize("col", list(COLUMNS))
def test_page_sort_matches_pandas(book, awaiting, col, direction):
    sel = book.awaiting_release(currency=["EUR", "GBP"])
    subset = awaiting[awaiting["currency"].isin(["EUR", "GBP"])]
    page = sel.page(0, 10_000, sort=[(col, direction)])
    assert list(page["id"]) == _pandas_sorted_ids(subset, col, direction == "asc")
    # a window in the middle is the same slice
    mid = sel.page(37, 25, sort=[(col, direction.upper())])
    assert list(mid["id"]) == list(page["id"][37:62])


def test_page_sort_on_two_columns(book, awaiting):
    page = book.awaiting_release().page(
        0, 10_000, sort=[("currency", "asc"), ("summary_amount", "desc")]
    )
    exp = awaiting.sort_values(["currency", "summary_amount", "id"], ascending=[True, False, True])
    assert list(page["id"]) == [int(i) for i in exp["id"]]


@pytest.mark.parametrize(
    ("sort", "named"),
    [
        ([("bogus", "asc")], "bogus"),
        ([("summary_amount; DROP TABLE billing_events", "asc")], "DROP TABLE"),
        ([("e.summary_amount", "asc")], "e.summary_amount"),
        ([("summary_amount", "sideways")], "sideways"),
        ([("summary_amount", "asc; DROP TABLE x")], "DROP TABLE x"),
        ([("id",)], "id"),
        ([42], "42"),
    ],
)
def test_bad_sort_is_a_query_error(book, checksums, sort, named):
    before = checksums(book)
    with pytest.raises(QueryError) as info:
        book.awaiting_release().page(0, 10, sort=sort)
    assert named in str(info.value)
    assert checksums(book) == before


def test_totals_per_currency_in_decimal(book, awaiting):
    for filters in ({}, {"company": 2}, {"min_amount": 0, "category": "expense"}):
        sel = book.awaiting_release(**filters)
        tot = sel.totals()
        sub = awaiting[awaiting["id"].isin(sel.ids())]
        assert list(tot["currency"]) == sorted(sub["currency"].unique())
        for r in tot.itertuples():
            part = sub[sub["currency"] == r.currency]
            assert isinstance(r.amount, Decimal)
            assert r.amount == sum(part["summary_amount"], Decimal(0))
            assert r.events == len(part)
            assert r.sales_invoices == int((part["summary_amount"] > 0).sum())
            assert r.credit_notes == int((part["summary_amount"] < 0).sum())
        assert int(tot["events"].sum()) == len(sel)
    empty = book.awaiting_release(ids=[]).totals()
    assert empty.empty


def test_selection_repr_html(book):
    html = book.awaiting_release(currency="EUR", search="<script>")._repr_html_()
    assert "<script>" not in html
    assert "awaiting release" in html


# -- ws.sql is read-only ---------------------------------------------------------------------
def test_sql_select_with_parameters(book, frame):
    df = book.sql(
        "SELECT count(*) AS n, sum(summary_amount) AS total FROM billing_events "
        "WHERE currency = $cur AND summary_amount > $amt",
        cur="EUR",
        amt=100,
    )
    part = frame[(frame["currency"] == "EUR") & (frame["summary_amount"] > 100)]
    assert df["n"][0] == len(part)
    assert df["total"][0] == sum(part["summary_amount"], Decimal(0))
    assert isinstance(df["total"][0], Decimal)
    assert book.sql("WITH x AS (SELECT 41 AS a) SELECT a + 1 AS b FROM x")["b"][0] == 42
    assert len(book.sql("EXPLAIN SELECT * FROM billing_events")) >= 1
    assert book.sql("SELECT $t AS t", t="'; DROP TABLE billing_events; --")["t"][0].startswith("'")


@pytest.mark.parametrize(
    "query",
    [
        "INSERT INTO settings VALUES ('release_batch_size', '1', current_timestamp)",
        "UPDATE billing_events SET approved = true",
        "DELETE FROM billing_events",
        "DROP TABLE billing_events",
        "CREATE TABLE evil AS SELECT 1",
        "CREATE TEMP TABLE evil AS SELECT 1",
        "CREATE VIEW evil AS SELECT 1",
        "CREATE OR REPLACE MACRO evil(x) AS x",
        "ALTER TABLE billing_events ADD COLUMN evil INTEGER",
        "TRUNCATE billing_events",
        "ATTACH ':memory:' AS other",
        "DETACH other",
        "COPY billing_events TO '{tmp}/leak.csv'",
        "COPY (SELECT * FROM billing_events) TO '{tmp}/leak.parquet' (FORMAT parquet)",
        "COPY billing_events FROM '{tmp}/leak.csv'",
        "EXPORT DATABASE '{tmp}/dump'",
        "SELECT 1; DROP TABLE billing_events",
        "SELECT 1; SELECT 2",
        "SELECT 1 AS a;; DELETE FROM projects",
        "PRAGMA enable_profiling",
        "SET threads = 1",
        "INSTALL httpfs",
        "LOAD json",
        "CHECKPOINT",
        "BEGIN TRANSACTION",
        "VACUUM",
        "CALL pragma_version()",
        "INSERT INTO billing_events SELECT * FROM billing_events",
        "",
        "   ",
        "SELEC oops",
    ],
)
def test_sql_refuses_anything_but_reading(small, checksums, tmp_path, query):
    with pytest.raises(QueryError):
        small.sql(query.format(tmp=tmp_path))
    assert checksums(small) == small.before
    assert not list(Path(tmp_path).iterdir()), "a file was written"
    assert small.sql("SELECT count(*) AS n FROM billing_events")["n"][0] == 300


@pytest.mark.parametrize(
    "query",
    [
        "EXPLAIN ANALYZE DELETE FROM billing_events",
        "EXPLAIN ANALYZE UPDATE billing_events SET approved = NOT approved",
        "EXPLAIN ANALYZE INSERT INTO billing_events SELECT id + 10000000, name, batch_id, project_id, "
        "account_id, company_id, currency, event_date, invoice_date, summary_amount, approved, released, "
        "released_at, release_run_id, invoiced, document_id FROM billing_events",
    ],
)
def test_sql_explain_analyze_cannot_write(small, checksums, query):
    with contextlib.suppress(QueryError):
        small.sql(query)
    assert checksums(small) == small.before


def test_sql_select_cannot_advance_sequences(small):
    def seq_state():
        return (
            small.db.cursor()
            .execute("SELECT sequence_name, last_value FROM duckdb_sequences() ORDER BY 1")
            .fetchall()
        )

    before = seq_state()
    with contextlib.suppress(QueryError):
        small.sql("SELECT nextval('runs_id_seq') AS v")
    assert seq_state() == before


def test_sql_errors_are_query_errors(book):
    with pytest.raises(QueryError, match="no_such_table"):
        book.sql("SELECT * FROM no_such_table")
    with pytest.raises(QueryError):
        book.sql("SELECT $missing AS x")
    with pytest.raises(QueryError):
        book.sql(None)  # type: ignore[arg-type]


# -- resolve_ids -----------------------------------------------------------------------------
def test_resolve_ids(book, awaiting):
    assert book.resolve_ids([5, 3, 3, "4", np.int64(1)]) == [1, 3, 4, 5]
    assert book.resolve_ids([]) == []
    sel = book.awaiting_release(currency="GBP")
    assert book.resolve_ids(sel) == sel.ids()
    assert book.resolve_ids(iter([2, 1])) == [1, 2]
    assert book.resolve_ids(np.array([3, 1, 3], dtype=np.int32)) == [1, 3]
    assert book.resolve_ids([2.0, 1]) == [1, 2]
    assert all(type(i) is int for i in book.resolve_ids(np.array([1, 2])))


@pytest.mark.parametrize(
    "bad",
    [[True], [1, False], [1, "x"], [1.5], [2**70], [None], [[1]], ["1; DROP TABLE runs"]],
    ids=["true", "false-among-ints", "word", "fraction", "too-big", "none", "nested", "hostile"],
)
def test_resolve_ids_refuses_what_is_not_an_id(book, bad):
    with pytest.raises(BearError, match="is not a billing event id"):
        book.resolve_ids(bad)


def test_resolve_unknown_ids_names_them(book):
    with pytest.raises(UnknownIdsError) as info:
        book.resolve_ids([1, 2, 999_999_998, 999_999_999, -7])
    err = info.value
    assert err.ids == [-7, 999_999_998, 999_999_999]
    msg = str(err)
    for i in err.ids:
        assert str(i) in msg
    assert "1," not in msg.split(":", 1)[1]  # known ids are not named
    many = list(range(10_000_000, 10_000_030))
    with pytest.raises(UnknownIdsError) as info:
        book.resolve_ids(many)
    assert info.value.ids == many
    assert "30" in str(info.value) and "…" in str(info.value)


@pytest.mark.parametrize("bad", ["123", b"12", None, 42, [True], ["x"], [1.5j], [{}]])
def test_resolve_ids_bad_input(book, bad):
    with pytest.raises(BearError):
        book.resolve_ids(bad)


def test_selection_of_another_workspace_is_refused(book):
    with bear.connect(":memory:", resume=False) as other:
        foreign = other.awaiting_release()
        with pytest.raises(BearError, match="another workspace"):
            book.resolve_ids(foreign)
        assert isinstance(foreign, Selection)


def test_categories_constant_matches_schema(book):
    assert set(CATEGORIES) == set(
        book.sql("SELECT DISTINCT category FROM billing_event_items")["category"]
    )
