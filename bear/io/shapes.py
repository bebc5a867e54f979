"""The file shape of each import kind, derived from the schema declaration (``bear.db.schema``).

A file of each *kind* (``events``, ``items``, ``projects`` …) has the columns of its table, in
table order: a column that is not nullable and has no default must be in the file with a value
in every row; the others may be left out (the table's default, or ``absent``, applies). What
the schema cannot say is added here: how a left-out column is filled from other rows, and the
row rules beyond the column types (``Check``).
"""

from __future__ import annotations

from dataclasses import dataclass

from bear.db.schema import CATEGORIES, SQL_TYPES, TABLES, ColumnType

__all__ = ["CATEGORIES", "KINDS", "SHAPES", "Check", "Column", "Shape"]

_TABLE_OF_KIND = {
    "companies": "companies",
    "company_currencies": "company_currencies",
    "accounting_periods": "accounting_periods",
    "accounts": "accounts",
    "products": "products",
    "projects": "projects",
    "events": "billing_events",
    "items": "billing_event_items",
}
KINDS: tuple[str, ...] = tuple(_TABLE_OF_KIND)
"""The import kinds, in the order their rows are written (a kind's references come before it)."""
_KIND_OF_TABLE = {t: k for k, t in _TABLE_OF_KIND.items()}


@dataclass(frozen=True)
class Column:
    """One column of an import shape.

    ``type`` is a ``bear.db.schema.ColumnType`` (``int``, ``dec2``, ``date``, ``currency``,
    ``category`` …). A ``required`` column must be in the file and hold a value in every row.
    ``default`` (SQL) replaces an empty value; ``absent`` (SQL over the typed row ``t``) is used
    only when the column is left out. ``ref`` names the kind (or, with ``ref_table`` only, the
    table) whose ``id`` a value must be.
    """

    name: str
    type: ColumnType
    required: bool = False
    default: str | None = None
    absent: str | None = None
    ref: str | None = None
    ref_table: str | None = None

    @property
    def sql_type(self) -> str:
        return SQL_TYPES[self.type]


@dataclass(frozen=True)
class Check:
    """A row rule beyond the column types: rows of typed table ``t`` matching ``where`` fail."""

    column: str
    where: str
    message: str


@dataclass(frozen=True)
class Shape:
    """The file shape of one kind: its table, columns, key, extra row rules and row order."""

    kind: str
    table: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ("id",)
    checks: tuple[Check, ...] = ()
    order_by: str = "id"
    noun: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


def _shape(
    kind: str, absent: dict[str, str] | None = None, checks: tuple[Check, ...] = ()
) -> Shape:
    spec = TABLES[_TABLE_OF_KIND[kind]]
    absent = absent or {}
    unknown = set(absent) - set(spec.names) | {c.column for c in checks} - set(spec.names)
    assert not unknown, f"{kind}: no such column(s) {sorted(unknown)}"
    columns = tuple(
        Column(
            c.name,
            c.type,
            required=c.required,
            default=c.default,
            absent=absent.get(c.name),
            ref=_KIND_OF_TABLE.get(c.ref) if c.ref else None,
            ref_table=c.ref if c.ref and c.ref not in _KIND_OF_TABLE else None,
        )
        for c in spec.columns
    )
    return Shape(
        kind,
        spec.name,
        columns,
        key=spec.key,
        checks=checks,
        order_by=", ".join(spec.row_order),
        noun=spec.noun,
    )


def _from_project(column: str) -> str:
    return f"(SELECT p.{column} FROM projects p WHERE p.id = t.project_id)"


SHAPES: dict[str, Shape] = {
    "companies": _shape("companies"),
    "company_currencies": _shape("company_currencies"),
    "accounting_periods": _shape(
        "accounting_periods",
        checks=(
            Check(
                "end_date",
                "t.end_date < t.start_date",
                "'end_date ' || t.end_date::VARCHAR || ' is before start_date ' || t.start_date::VARCHAR",
            ),
        ),
    ),
    "accounts": _shape("accounts"),
    "products": _shape("products"),
    "projects": _shape(
        "projects",
        checks=(
            Check(
                "billing_cap",
                "t.billing_cap < 0",
                "'billing_cap must be zero or more, not ' || t.billing_cap::VARCHAR",
            ),
        ),
    ),
    "events": _shape(
        "events",
        # An event file may leave account and company out: the event's project gives them.
        absent={
            "account_id": _from_project("account_id"),
            "company_id": _from_project("company_id"),
        },
        checks=(
            Check(
                "invoiced",
                "t.invoiced",
                "'invoiced events cannot be imported (their sales invoice or credit note is "
                "not part of an import); import the event with invoiced = false or leave it out'",
            ),
            Check(
                "document_id",
                "t.document_id IS NOT NULL",
                "'document_id must be empty: documents are not imported'",
            ),
            Check(
                "released_at",
                "t.released_at IS NOT NULL AND NOT coalesce(t.released, false)",
                "'released_at is given but released is false'",
            ),
        ),
    ),
    "items": _shape(
        "items",
        checks=(
            Check(
                "billing_event_id",
                "t.billing_event_id IN (SELECT id FROM billing_events WHERE released)",
                "'billing event ' || t.billing_event_id::VARCHAR || ' is already released; "
                "items cannot be added to it'",
            ),
        ),
    ),
}
