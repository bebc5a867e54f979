"""The schema declaration (``bear.db.schema``) agrees with the database the migrations create.

Every column of every declared table — name, order, type, nullability, default — is compared
with what DuckDB reports after the migrations ran, and every table is either declared or
named here as written by the pipeline alone, so a migration that adds a table or a column
the declaration lacks fails this test. What derives from the declaration is checked too.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from bear.db.schema import CATEGORIES, TABLES, table
from bear.io import KINDS, SHAPES

# Tables the pipeline, the document writer and the item aggregates own; nothing shapes their
# rows from the declaration.
UNDECLARED = {
    "schema_migrations",
    "billing_event_item_stats",
    "documents",
    "document_lines",
    "document_counters",
    "runs",
    "run_events",
    "event_claims",
    "release_batches",
    "process_runs",
    "process_logs",
    "app_logs",
    "billing_event_history",
    "notifications",
    "settings",
    # the team (bear.auth writes them; nothing imports or tests rows into them)
    "users",
    "api_tokens",
    "saved_views",
    "change_log",
}


def _columns(ws: Any, name: str) -> list[tuple[str, str, bool, str | None]]:
    rows = (
        ws.db.cursor()
        .execute(
            "SELECT column_name, data_type, is_nullable = 'YES', column_default "
            "FROM information_schema.columns WHERE table_schema = 'main' AND table_name = $t "
            "ORDER BY ordinal_position",
            {"t": name},
        )
        .fetchall()
    )
    return [(c, t, bool(n), d) for c, t, n, d in rows]


def test_every_table_is_declared_or_named_as_undeclared(ws: Any) -> None:
    tables = {
        r[0]
        for r in ws.db.cursor()
        .execute(
            "SELECT table_name FROM duckdb_tables() WHERE NOT temporary AND schema_name = 'main' "
            "AND database_name = current_database()"
        )
        .fetchall()
    }
    assert tables - UNDECLARED == set(TABLES)
    assert not set(TABLES) & UNDECLARED


@pytest.mark.parametrize("name", list(TABLES))
def test_declared_table_matches_the_migrated_database(ws: Any, name: str) -> None:
    declared = [(c.name, c.sql_type, c.nullable, c.default) for c in TABLES[name].columns]
    assert declared == _columns(ws, name)


@pytest.mark.parametrize("name", list(TABLES))
def test_declared_key_is_the_primary_key(ws: Any, name: str) -> None:
    found = (
        ws.db.cursor()
        .execute(
            "SELECT constraint_column_names FROM duckdb_constraints() "
            "WHERE table_name = $t AND constraint_type = 'PRIMARY KEY'",
            {"t": name},
        )
        .fetchall()
    )
    assert [tuple(r[0]) for r in found] == [TABLES[name].key]


def test_declared_references_name_declared_or_run_tables() -> None:
    for t in TABLES.values():
        for c in t.columns:
            if c.ref is not None:
                assert c.ref in TABLES or c.ref in UNDECLARED, (t.name, c.name)


def test_categories_are_the_ones_the_database_accepts(ws: Any) -> None:
    cur = ws.db.cursor()
    (check,) = cur.execute(
        "SELECT expression FROM duckdb_constraints() WHERE table_name = 'billing_event_items' "
        "AND constraint_type = 'CHECK' AND list_contains(constraint_column_names, 'category')"
    ).fetchall()[0]
    assert tuple(re.findall(r"'([^']*)'", check)) == CATEGORIES


def test_import_shapes_derive_from_the_declaration() -> None:
    for kind in KINDS:
        shape = SHAPES[kind]
        spec = table(shape.table)
        assert shape.names == spec.names
        assert shape.key == spec.key
        for col, decl in zip(shape.columns, spec.columns, strict=True):
            assert col.type == decl.type
            assert col.default == decl.default
            assert col.required == (not decl.nullable and decl.default is None)
    assert [c.name for c in SHAPES["events"].columns if c.required] == [
        "id",
        "name",
        "project_id",
        "currency",
        "event_date",
        "summary_amount",
    ]
    assert SHAPES["events"].column("release_run_id").ref_table == "runs"
    assert SHAPES["items"].column("billing_event_id").ref == "events"


def test_selection_and_importer_use_the_declared_categories() -> None:
    import bear.importer
    import bear.selection

    assert bear.selection.CATEGORIES is CATEGORIES
    assert bear.importer.CATEGORIES is CATEGORIES


def test_unknown_table_is_named() -> None:
    with pytest.raises(KeyError, match="no declared table 'invoices'"):
        table("invoices")


def test_bear_testing_rows_take_the_declared_test_values() -> None:
    from bear.testing import DEFAULT_AMOUNT, DEFAULT_DATE, make_workspace

    assert table("billing_events").column("event_date").test_value == DEFAULT_DATE
    assert table("billing_event_items").column("amount").test_value == DEFAULT_AMOUNT
    with make_workspace(events=[{"id": 5}]) as book:
        cur = book.db.cursor()
        for name, row_id, derived in (
            ("projects", 1, ()),
            ("accounts", 1, ()),
            ("companies", 1, ()),
            ("products", 1, ()),
            ("billing_events", 5, ("account_id", "company_id", "currency", "summary_amount")),
            ("billing_event_items", 5000, ("billing_event_id", "unit_price")),
        ):
            spec = table(name)
            got = cur.execute(
                f"SELECT {', '.join(spec.names)} FROM {name} WHERE id = $id", {"id": row_id}
            ).fetchall()
            assert len(got) == 1, name
            row = dict(zip(spec.names, got[0], strict=True))
            expected = {**spec.test_row(row_id), "id": row_id}
            for column in derived:
                del row[column], expected[column]
            assert row == expected, name
