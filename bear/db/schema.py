"""The domain tables declared once, in Python: their columns, types, nullability and defaults.

The numbered migrations in ``migrations/`` still create and upgrade every database (existing
books must keep opening); this module states what those migrations build for the tables
that other code shapes rows for, so that code derives from one place instead of repeating
the columns: the importer's file shapes (``bear.io``), the defaults ``bear.testing`` gives
the rows a test leaves out, and the item categories (``CATEGORIES``) the filters, the
importer and the demo use. ``tests/test_schema.py`` compares every declared table with the
database the migrations create, column by column, so a migration that adds a column this
declaration lacks fails the suite. The run records, documents and logs are written by the
pipeline alone and are not declared here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

__all__ = [
    "CATEGORIES",
    "Column",
    "ColumnType",
    "SQL_TYPES",
    "TABLES",
    "Table",
    "table",
]

CATEGORIES: tuple[str, ...] = ("timecard", "expense", "milestone", "misc_adjustment", "budget")
"""The item categories, in the order the filters show them (a category's bit in category
masks is its position here). The CHECK on ``billing_event_items.category`` holds the same."""

ColumnType = Literal[
    "int", "bigint", "dec2", "dec6", "date", "timestamp", "bool", "text", "currency", "category"
]

SQL_TYPES: dict[str, str] = {
    "int": "INTEGER",
    "bigint": "BIGINT",
    "dec2": "DECIMAL(18,2)",
    "dec6": "DECIMAL(18,6)",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "bool": "BOOLEAN",
    "text": "VARCHAR",
    "currency": "VARCHAR",  # a code of the currencies table
    "category": "VARCHAR",  # one of CATEGORIES
}
"""The DuckDB type of each column type, spelled as ``information_schema`` reports it."""


@dataclass(frozen=True)
class Column:
    """One column of a declared table.

    ``default`` is the SQL default the table applies (as the migration writes it); a column
    that is not nullable and has no default is *required*: an import file must carry it with
    a value in every row. ``ref`` names the table whose ``id`` a value must be (the importer
    checks it). ``test_value`` is what a row built by ``bear.testing`` gets when the test
    names no value: a ``str`` is formatted with the row's ``id`` (``"Project {id}"``);
    columns ``bear.testing`` derives from other rows leave it ``None``.
    """

    name: str
    type: ColumnType
    nullable: bool = True
    default: str | None = None
    ref: str | None = None
    test_value: Any = None

    @property
    def sql_type(self) -> str:
        return SQL_TYPES[self.type]

    @property
    def required(self) -> bool:
        """An import file must carry this column, with a value in every row."""
        return not self.nullable and self.default is None


@dataclass(frozen=True)
class Table:
    """A declared table: its columns in table order, its key and how its rows are ordered.

    ``noun`` names one row in messages (``"billing event"``); ``order_by`` is the order rows
    are written and exported in (the key unless it says otherwise)."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ("id",)
    noun: str = ""
    order_by: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def row_order(self) -> tuple[str, ...]:
        return self.order_by or self.key

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name} has no column {name!r}")

    def test_row(self, row_id: object = None) -> dict[str, object]:
        """Every column's ``test_value`` (strings formatted with ``id=row_id``)."""
        return {
            c.name: c.test_value.format(id=row_id)
            if isinstance(c.test_value, str)
            else c.test_value
            for c in self.columns
        }


_C = Column

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "currencies",
            (_C("code", "text", nullable=False), _C("name", "text", nullable=False)),
            key=("code",),
            noun="currency",
        ),
        Table(
            "companies",
            (
                _C("id", "int", nullable=False),
                _C("name", "text", nullable=False, test_value="Company {id}"),
                _C("home_currency", "currency", nullable=False, test_value="USD"),
            ),
            noun="company",
        ),
        Table(
            "company_currencies",
            (
                _C("company_id", "int", nullable=False, ref="companies"),
                _C("currency", "currency", nullable=False),
            ),
            key=("company_id", "currency"),
        ),
        Table(
            "accounting_periods",
            (
                _C("company_id", "int", nullable=False, ref="companies", test_value=1),
                _C("start_date", "date", nullable=False),
                _C("end_date", "date", nullable=False),  # bear.testing: the end of that month
                _C("closed", "bool", nullable=False, default="false", test_value=False),
            ),
            key=("company_id", "start_date"),
        ),
        Table(
            "accounts",
            (
                _C("id", "int", nullable=False),
                _C("name", "text", nullable=False, test_value="Account {id}"),
                _C("billing_email", "text", test_value="billing@account{id}.example.com"),
                _C("active", "bool", nullable=False, default="true", test_value=True),
            ),
            noun="account",
        ),
        Table(
            "products",
            (
                _C("id", "int", nullable=False),
                _C("name", "text", nullable=False, test_value="Product {id}"),
                _C("revenue_gl", "text", nullable=False, test_value="4000-{id}"),
            ),
            noun="product",
        ),
        Table(
            "projects",
            (
                _C("id", "int", nullable=False),
                _C("name", "text", nullable=False, test_value="Project {id}"),
                _C("account_id", "int", ref="accounts", test_value=1),
                _C("company_id", "int", ref="companies", test_value=1),
                _C("region", "text", test_value="EMEA"),
                _C("practice", "text", test_value="Advisory"),
                _C("grp", "text", test_value="Group A"),
                _C("currency", "currency", nullable=False, test_value="USD"),
                _C("billable", "bool", nullable=False, default="true", test_value=True),
                _C(
                    "exclude_from_billing",
                    "bool",
                    nullable=False,
                    default="false",
                    test_value=False,
                ),
                _C("active", "bool", nullable=False, default="true", test_value=True),
                _C("billing_cap", "dec2"),
            ),
            noun="project",
        ),
        Table(
            "billing_event_batches",
            (
                _C("id", "int", nullable=False),
                _C("account_id", "int"),
                _C("currency", "currency", nullable=False),
                _C("period", "text", nullable=False),
            ),
            noun="billing event batch",
        ),
        Table(
            "billing_events",
            (
                _C("id", "bigint", nullable=False),
                _C("name", "text", nullable=False, test_value="BE-{id:07d}"),
                _C("batch_id", "int"),
                _C("project_id", "int", nullable=False, ref="projects", test_value=1),
                # bear.testing takes account, company and currency from the event's project.
                _C("account_id", "int", ref="accounts"),
                _C("company_id", "int", ref="companies"),
                _C("currency", "currency", nullable=False),
                _C("event_date", "date", nullable=False, test_value=dt.date(2026, 1, 15)),
                _C("invoice_date", "date"),
                _C("summary_amount", "dec2", nullable=False),  # bear.testing: its items' sum
                # An eligible event by default in tests, though a table row defaults to not approved.
                _C("approved", "bool", nullable=False, default="false", test_value=True),
                _C("released", "bool", nullable=False, default="false", test_value=False),
                _C("released_at", "timestamp"),
                _C("release_run_id", "bigint", ref="runs"),
                _C("invoiced", "bool", nullable=False, default="false", test_value=False),
                _C("document_id", "bigint"),
            ),
            noun="billing event",
        ),
        Table(
            "billing_event_items",
            (
                _C("id", "bigint", nullable=False),
                _C("billing_event_id", "bigint", nullable=False, ref="billing_events"),
                _C("category", "category", nullable=False, test_value="timecard"),
                _C("description", "text", test_value="Consulting hours"),
                _C("quantity", "dec6", nullable=False, test_value=Decimal("1")),
                _C("unit_price", "dec6", nullable=False),  # bear.testing: amount / quantity
                _C("amount", "dec2", nullable=False, test_value=Decimal("100.00")),
                _C("product_id", "int", ref="products", test_value=1),
                _C("source_id", "text", test_value="TC-{id}"),
                _C("source_changed", "bool", nullable=False, default="false", test_value=False),
                _C("billing_hold", "bool", nullable=False, default="false", test_value=False),
            ),
            noun="billing event item",
            # Items stored in event order let DuckDB skip row groups by event id range.
            order_by=("billing_event_id", "id"),
        ),
    )
}


def table(name: str) -> Table:
    """The declared table ``name``."""
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"no declared table {name!r}; declared: {', '.join(TABLES)}") from None
