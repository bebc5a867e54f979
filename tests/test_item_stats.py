"""The item aggregates the rules read (``billing_event_item_stats``): kept current by every item
writer, rebuilt on open when something else wrote items, refreshed on request; plus the batch
view's other shortcuts (Python rules that name their columns, the day map of periods)."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

import bear
from bear import importer
from bear.errors import PluginError, UnknownIdsError
from bear.testing import evaluate_rule, make_workspace

DATA = Path(__file__).parent / "data" / "import"
GOOD = {kind: DATA / "good" / f"{kind}.csv" for kind in importer.KINDS}

STATS_FROM_ITEMS = """
SELECT billing_event_id, count(*)::INTEGER, sum(amount),
       (count(*) FILTER (product_id IS NULL))::INTEGER, min(id) FILTER (product_id IS NULL),
       (count(*) FILTER (source_changed))::INTEGER, min(id) FILTER (source_changed),
       (count(*) FILTER (billing_hold))::INTEGER, min(id) FILTER (billing_hold)
FROM billing_event_items GROUP BY 1 ORDER BY 1
"""
STATS = """
SELECT billing_event_id, item_count, item_amount_sum, items_without_product,
       first_item_without_product, items_out_of_sync, first_item_out_of_sync, items_on_hold,
       first_item_on_hold
FROM billing_event_item_stats ORDER BY 1
"""


@pytest.fixture(autouse=True)
def _no_entry_points(monkeypatch):
    monkeypatch.setenv("BEAR_DISABLE_PLUGIN_AUTOLOAD", "1")


def assert_current(ws: bear.Workspace) -> None:
    cur = ws.db.cursor()
    assert cur.execute(STATS).fetchall() == cur.execute(STATS_FROM_ITEMS).fetchall()


def test_the_demo_seed_fills_the_aggregates(tmp_path):
    with bear.connect(tmp_path / "demo.duckdb", resume=False) as ws:
        bear.demo.seed(ws, events=3_000, seed=3)
        assert_current(ws)
        # the stored descriptions are those of the first offending item of each event
        cur = ws.db.cursor()
        wrong = cur.execute(
            "SELECT count(*) FROM billing_event_item_stats s JOIN billing_event_items i "
            "ON i.id = s.first_item_on_hold WHERE s.first_item_on_hold_desc IS DISTINCT FROM i.description"
        ).fetchall()[0][0]
        held = cur.execute(
            "SELECT count(*) FROM billing_event_item_stats WHERE items_on_hold > 0"
        ).fetchall()[0][0]
        assert held > 0 and wrong == 0


def test_bear_testing_books_fill_the_aggregates():
    items = [
        {"id": 10, "billing_event_id": 1, "amount": "40.00", "product_id": None},
        {"id": 11, "billing_event_id": 1, "amount": "60.00", "billing_hold": True},
        {"id": 12, "billing_event_id": 2, "amount": "5.00", "source_changed": True},
    ]
    with make_workspace([{"id": 1}, {"id": 2}, {"id": 3, "items": []}], items) as ws:
        assert_current(ws)
        rows = dict(
            (r[0], r[1:])
            for r in ws.db.cursor()
            .execute(
                "SELECT billing_event_id, item_count, item_amount_sum, first_item_without_product, "
                "first_item_on_hold, first_item_out_of_sync FROM billing_event_item_stats"
            )
            .fetchall()
        )
        assert rows == {
            1: (2, Decimal("100.00"), 10, 11, None),
            2: (1, Decimal("5.00"), None, None, 12),
        }


def test_an_import_refreshes_the_aggregates_of_its_events(tmp_path):
    with bear.connect(tmp_path / "book.duckdb", resume=False) as ws:
        importer.import_files(ws, **{k: str(v) for k, v in GOOD.items()})
        assert_current(ws)
        n = ws.db.cursor().execute("SELECT count(*) FROM billing_event_item_stats").fetchall()[0][0]
        assert (
            n
            == ws.db.cursor()
            .execute("SELECT count(DISTINCT billing_event_id) FROM billing_event_items")
            .fetchall()[0][0]
        )


def test_a_failed_import_leaves_the_aggregates_alone(tmp_path):
    with bear.connect(tmp_path / "book.duckdb", resume=False) as ws:
        bear.demo.seed(ws, events=500, seed=1)
        before = ws.db.cursor().execute(STATS).fetchall()
        with pytest.raises(bear.BearError):
            importer.import_files(ws, items=str(DATA / "items_bad_category.csv"))
        assert ws.db.cursor().execute(STATS).fetchall() == before


def test_items_written_by_something_else_are_caught_on_open(tmp_path):
    path = tmp_path / "book.duckdb"
    with bear.connect(path, resume=False) as ws:
        bear.demo.seed(ws, events=400, seed=2)
        event = ws.awaiting_release().ids()[0]
        assert event in ws.preview([event], action="release").eligible_ids
    con = duckdb.connect(str(path))  # another program adds an item on hold
    con.execute(
        "INSERT INTO billing_event_items (id, billing_event_id, category, description, quantity, "
        "unit_price, amount, product_id, billing_hold) VALUES (99999999, ?, 'expense', 'taxi', 1, 1, 1, 1, true)",
        [event],
    )
    con.close()
    with bear.connect(path, resume=False) as ws:
        assert_current(ws)
        pv = ws.preview([event], action="release")
        assert pv.eligible_ids == []
        assert "taxi" in " ".join(pv.violations.message)


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE billing_event_items SET product_id = NULL WHERE id = $item",
        "UPDATE billing_event_items SET amount = amount + 1000 WHERE id = $item",
        "UPDATE billing_event_items SET billing_hold = true WHERE id = $item",
        "UPDATE billing_event_items SET source_changed = true WHERE id = $item",
        "UPDATE billing_event_items SET description = 'renamed' WHERE id = $item",
        "UPDATE billing_event_items SET billing_event_id = $other WHERE id = $item",
        "DELETE FROM billing_event_item_stats WHERE billing_event_id = $event",
    ],
    ids=["product", "amount", "hold", "out-of-sync", "description", "moved", "stats-row-lost"],
)
def test_a_change_that_keeps_the_item_count_is_caught_on_open(tmp_path, change, caplog):
    """The count of items stays the same: only the checksum over the columns the aggregates
    read can see these (migration 003's items_hash)."""
    path = tmp_path / "book.duckdb"
    with bear.connect(path, resume=False) as ws:
        bear.demo.seed(ws, events=300, seed=2)
        event, other = ws.awaiting_release().ids()[:2]
        item = ws.sql(
            "SELECT min(id) AS i FROM billing_event_items WHERE billing_event_id = $e", e=event
        )
        item = int(item.i[0])
    con = duckdb.connect(str(path))
    params = {"item": item, "other": other, "event": event}
    con.execute(change, {k: v for k, v in params.items() if f"${k}" in change})
    con.close()
    with caplog.at_level("WARNING", logger="bear.db.connection"), bear.connect(path) as ws:
        assert_current(ws)
    assert "rebuilt" in caplog.text


def test_an_unchanged_book_is_not_rebuilt_on_open(tmp_path, caplog):
    path = tmp_path / "book.duckdb"
    with bear.connect(path, resume=False) as ws:
        bear.demo.seed(ws, events=300, seed=2)
        assert not bear.db.item_stats.stale(ws.db.cursor())
    with caplog.at_level("WARNING", logger="bear.db.connection"), bear.connect(path) as ws:
        assert not bear.db.item_stats.stale(ws.db.cursor())
    assert "rebuilt" not in caplog.text


def test_the_checksum_covers_every_item_column_the_aggregates_read():
    """A column the aggregate statement reads but the checksum leaves out would go stale
    silently; only source_id (message text) is left out on purpose."""
    from bear.db import item_stats

    read = set(
        re.findall(
            r"\b(id|billing_event_id|amount|product_id|source_changed|billing_hold|description|"
            r"source_id|category|quantity|unit_price)\b",
            item_stats._AGGREGATE.split("FROM billing_event_items")[0],
        )
    )
    assert read - set(item_stats.CHECKSUM_COLUMNS) == {"source_id"}


def test_refresh_item_stats_after_a_flag_changed_outside(tmp_path):
    path = tmp_path / "book.duckdb"
    with bear.connect(path, resume=False) as ws:
        bear.demo.seed(ws, events=400, seed=2)
        event = ws.awaiting_release().ids()[0]
    con = duckdb.connect(str(path))  # a flag changes: the item count stays the same
    con.execute(
        "UPDATE billing_event_items SET billing_hold = true WHERE billing_event_id = ?", [event]
    )
    con.close()
    with bear.connect(path, resume=False) as ws:
        ws.refresh_item_stats([event])
        assert_current(ws)
        assert ws.preview([event], action="release").eligible_ids == []
        ws.refresh_item_stats()  # all of them
        assert_current(ws)
        with pytest.raises(UnknownIdsError, match="424242"):
            ws.refresh_item_stats([event, 424242])
        with pytest.raises(bear.BearError, match="not a billing event id"):
            ws.refresh_item_stats(["1; DROP TABLE billing_events"])
        assert_current(ws)


# -- Python rules that name their columns ----------------------------------------------------
class DateRule:
    id = "acme.weekend"
    stage = "invoice"
    severity = "warn"
    description = "dated on a weekend"

    def __init__(self, columns: Any) -> None:
        self.columns = columns
        self.seen: list[str] = []

    def evaluate(self, batch: Any) -> pa.Table:
        t = batch.arrow()
        self.seen = t.column_names
        return pa.table({"billing_event_id": t["billing_event_id"], "message": ["x"] * t.num_rows})


def test_a_python_rule_that_names_its_columns_gets_just_those():
    rule = DateRule(["document_date", "project_name"])
    df = evaluate_rule(rule, [{"id": 1}, {"id": 2}], as_released=True)
    assert rule.seen == ["billing_event_id", "document_date", "project_name"]
    assert sorted(df.billing_event_id) == [1, 2]
    everything = DateRule(None)
    evaluate_rule(everything, [{"id": 1}], as_released=True)
    assert len(everything.seen) == len(bear.rules.batch.COLUMNS)


@pytest.mark.parametrize(
    ("columns", "words"),
    [
        (["document_date", "billing_events"], "unknown batch column(s) 'billing_events'"),
        (["1; DROP TABLE x"], "unknown batch column(s) '1; DROP TABLE x'"),
        ("document_date", "expected a list of column names"),
        ([3], "expected a list of column names"),
    ],
    ids=["unknown", "hostile", "string", "not-names"],
)
def test_bad_column_lists_fail_at_start_up_naming_the_rule(columns, words):
    class Plugin:
        __name__ = "acme"

        @bear.hookimpl
        def bear_register_rules(self, settings: Any) -> list[Any]:
            return [DateRule(columns)]

    with pytest.raises(PluginError) as err:
        make_workspace([{"id": 1}], plugins=[Plugin()])
    assert "acme.weekend" in str(err.value) and words in str(err.value)


# -- accounting periods, joined by day -------------------------------------------------------
def test_closed_periods_hold_on_their_first_and_last_days_and_any_length():
    periods = [
        {"company_id": 1, "start_date": "2020-01-01", "end_date": "2025-12-31", "closed": True},
        {"company_id": 1, "start_date": "2026-01-01", "end_date": "2026-01-01", "closed": False},
        {"company_id": 1, "start_date": "2026-01-02", "end_date": "2026-03-31", "closed": True},
    ]
    events = [
        {"id": 1, "event_date": "2025-12-31"},  # last day of a six-year closed period
        {"id": 2, "event_date": "2026-01-01"},  # a one-day open period
        {"id": 3, "event_date": "2026-01-02"},  # first day of a closed quarter
        {"id": 4, "event_date": "2026-03-31"},  # its last day
        {"id": 5, "event_date": "2026-04-01"},  # no period: not closed
    ]
    df = evaluate_rule(
        next(r for r in _builtin_rules() if r.id == "invoice.closed_period"),
        events,
        as_released=True,
        periods=periods,
    )
    assert sorted(df.billing_event_id) == [1, 3, 4]
    assert "2026-01-02" in df.set_index("billing_event_id").loc[4, "message"]


def _builtin_rules() -> list[Any]:
    from types import SimpleNamespace

    from bear.rules import builtin_invoice

    return builtin_invoice.bear_register_rules(SimpleNamespace(max_lines_per_document=500))


def test_batch_period_columns_match_a_range_join(tmp_path):
    """The day map gives each event the period a plain range join would, over a whole demo."""
    with bear.connect(tmp_path / "demo.duckdb", resume=False) as ws:
        bear.demo.seed(ws, events=2_000, seed=4)
        cur = ws.db.cursor()
        cur.execute(
            "CREATE TEMP TABLE _all AS SELECT id AS billing_event_id FROM billing_events ORDER BY 1"
        )
        bear.rules.batch.build_batch(cur, "_all")
        mismatched = cur.execute(
            """
            SELECT count(*) FROM _batch b
            LEFT JOIN accounting_periods ap ON ap.company_id = b.company_id
                 AND b.document_date BETWEEN ap.start_date AND ap.end_date
            WHERE b.period_start IS DISTINCT FROM ap.start_date
               OR b.period_closed IS DISTINCT FROM coalesce(ap.closed, false)
            """
        ).fetchall()[0][0]
        assert mismatched == 0
        assert (
            cur.execute("SELECT count(*) FROM _batch WHERE period_start IS NOT NULL").fetchall()[0][
                0
            ]
            > 0
        )


def test_a_period_spanning_millennia_is_mapped_only_over_the_batch_dates():
    periods = [
        {"company_id": 1, "start_date": "0001-01-01", "end_date": "9999-12-31", "closed": True}
    ]
    df = evaluate_rule(
        next(r for r in _builtin_rules() if r.id == "invoice.closed_period"),
        [{"id": 1, "event_date": "2026-01-15"}, {"id": 2, "event_date": "1999-12-31"}],
        as_released=True,
        periods=periods,
    )
    assert sorted(df.billing_event_id) == [1, 2]


def test_a_batch_read_by_its_kind_holds_the_same_rows_as_one_read_by_its_ids(tmp_path):
    """``build_batch(where=...)``: the events of a kind are read by the kind's condition, not
    a semi-join on their ids — the same rows and columns; and when the data changed between
    the ids and the batch (an event released, one put back), the batch still holds exactly
    the ids it was asked for."""
    with bear.connect(tmp_path / "b.duckdb") as ws:
        bear.demo.seed(ws, events=3_000, seed=4)
        cur = ws.db.cursor()
        cur.execute(
            "CREATE TEMP TABLE _ids AS SELECT id AS billing_event_id FROM billing_events "
            "WHERE NOT released ORDER BY 1"
        )

        def rows() -> list[tuple[Any, ...]]:
            return cur.execute(
                "SELECT * EXCLUDE (released_at) FROM _batch ORDER BY billing_event_id"
            ).fetchall()

        bear.rules.batch.build_batch(cur, "_ids")
        by_ids = rows()
        bear.rules.batch.build_batch(cur, "_ids", where="NOT e.released")
        assert rows() == by_ids and len(by_ids) > 2_000

        first, second = (r[0] for r in by_ids[:2])
        released = cur.execute(
            "SELECT min(id) FROM billing_events WHERE released AND NOT invoiced"
        ).fetchall()[0][0]
        # behind the batch's back: one event of the set released, one released event put back
        cur.execute("UPDATE billing_events SET released = true WHERE id = ?", [first])
        cur.execute("UPDATE billing_events SET released = false WHERE id = ?", [released])
        count = bear.rules.batch.build_batch(cur, "_ids", where="NOT e.released")
        got = [
            r[0] for r in cur.execute("SELECT billing_event_id FROM _batch ORDER BY 1").fetchall()
        ]
        assert got == [r[0] for r in by_ids] and count == len(by_ids)
        assert second in got and released not in got


def test_the_batch_table_holds_the_rare_columns_only_in_a_batch_that_needs_them(tmp_path):
    """The columns that hold one value in all but rare batches (a missing product's item, the
    revert stage's document) are written into ``_batch_core`` only when a batch needs them;
    ``_batch`` gives every documented column either way, in order, with the right values."""
    from bear.rules.batch import COLUMNS, batch_view, build_batch

    documents = {"document_number", "document_status", "reversal_date", "reversal_period_closed"}
    products = {"items_product_missing", "first_item_product_missing", "first_missing_product_id"}
    with bear.connect(tmp_path / "b.duckdb") as ws:
        bear.demo.seed(ws, events=1_500, seed=4)
        cur = ws.db.cursor()
        cur.execute(
            "CREATE TEMP TABLE _ids AS SELECT id AS billing_event_id FROM billing_events ORDER BY 1"
        )

        def stored() -> set[str]:
            return {
                r[0]
                for r in cur.execute(
                    "SELECT column_name FROM duckdb_columns() WHERE table_name = '_batch_core'"
                ).fetchall()
            }

        def shown() -> list[str]:
            return [d[0] for d in cur.execute("SELECT * FROM _batch LIMIT 0").description]

        def count(where: str) -> int:
            return cur.execute(f"SELECT count(*) FROM _batch WHERE {where}").fetchall()[0][0]

        build_batch(cur, "_ids")
        assert not stored() & (documents | products)
        assert shown() == list(COLUMNS)
        assert count("items_product_missing <> 0 OR document_number IS NOT NULL") == 0
        assert count("reversal_period_closed OR line_count IS DISTINCT FROM item_count") == 0
        assert count("company_home_currency IS NULL AND company_exists") == 0
        batch_view(cur, as_released=True)
        assert shown() == list(COLUMNS) and count("NOT released") == 0

        build_batch(cur, "_ids", documents=True)
        assert stored() & (documents | products) == documents
        assert shown() == list(COLUMNS)
        with_documents = cur.execute(
            "SELECT count(*) FROM billing_events e JOIN documents d ON d.id = e.document_id"
        ).fetchall()[0][0]
        assert with_documents > 0
        assert count("document_number IS NOT NULL AND document_status IS NOT NULL") == (
            with_documents
        )
        assert count("document_id IS NOT NULL AND reversal_date IS NULL") == 0

        product = cur.execute(
            "SELECT min(product_id) FROM billing_event_items WHERE product_id IS NOT NULL"
        ).fetchall()[0][0]
        cur.execute("DELETE FROM products WHERE id = ?", [product])
        build_batch(cur, "_ids")
        assert stored() & (documents | products) == products
        assert shown() == list(COLUMNS)
        affected = cur.execute(
            "SELECT count(DISTINCT billing_event_id) FROM billing_event_items WHERE product_id = ?",
            [product],
        ).fetchall()[0][0]
        assert affected > 0
        assert count(f"items_product_missing > 0 AND first_missing_product_id = {product}") == (
            affected
        )
