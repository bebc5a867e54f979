"""Selections: lazy, filtered sets of billing events, every filter bound as a SQL parameter.

A selection is never a list of ids in memory unless asked (``ids()``): it is a WHERE clause
with its parameters, so "all events matching this filter" costs nothing to carry around and
the dashboard never needs to ship ids to the browser.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from bear.db.schema import CATEGORIES
from bear.errors import BearError, QueryError

if TYPE_CHECKING:
    from bear.workspace import Workspace

Kind = Literal["awaiting_release", "awaiting_invoice", "all"]


FROM_SQL = """
FROM billing_events e
JOIN projects p ON p.id = e.project_id
LEFT JOIN accounts a ON a.id = e.account_id
LEFT JOIN companies c ON c.id = e.company_id
"""

_JOINS = {
    "p": "JOIN projects p ON p.id = e.project_id",
    "a": "LEFT JOIN accounts a ON a.id = e.account_id",
    "c": "LEFT JOIN companies c ON c.id = e.company_id",
}


def from_sql(aliases: set[str]) -> str:
    """FROM billing_events with only the joins the given aliases need (DuckDB keeps unused
    LEFT JOINs, which costs 5-7x on a count over a million events)."""
    return "FROM billing_events e " + " ".join(_JOINS[a] for a in ("p", "a", "c") if a in aliases)


def aliases_of(sql: str) -> set[str]:
    return {a for a in ("p", "a", "c") if f"{a}." in sql}


KIND_SQL = {
    "awaiting_release": "NOT e.released",
    "awaiting_invoice": "e.released AND NOT e.invoiced",
    "all": "true",
}

# Columns a page shows and may be sorted by: name -> SQL expression (whitelist).
COLUMNS: dict[str, str] = {
    "id": "e.id",
    "name": "e.name",
    "event_date": "e.event_date",
    "invoice_date": "e.invoice_date",
    "account_id": "e.account_id",
    "account": "a.name",
    "project_id": "e.project_id",
    "project": "p.name",
    "company_id": "e.company_id",
    "company": "c.name",
    "region": "p.region",
    "practice": "p.practice",
    "grp": "p.grp",
    "currency": "e.currency",
    "summary_amount": "e.summary_amount",
    "approved": "e.approved",
    "released": "e.released",
    "released_at": "e.released_at",
    "invoiced": "e.invoiced",
    "document_id": "e.document_id",
}

# Filters by event id: set by code (an id list, the unticked rows), not by a filter form.
ID_FILTERS = ("ids", "exclude_ids")

FILTERS = (
    "company",
    "account",
    "project",
    "region",
    "practice",
    "grp",
    "currency",
    "date_from",
    "date_to",
    "min_amount",
    "max_amount",
    "category",
    "search",
    "eligibility",
    "ids",
    "exclude_ids",
)


def _as_list(name: str, value: Any) -> list[Any]:
    if isinstance(value, str | int | Decimal) and not isinstance(value, bool):
        return [value]
    if isinstance(value, Iterable) and not isinstance(value, bytes | dict):
        out = list(value)
        if all(isinstance(v, str | int) and not isinstance(v, bool) for v in out):
            return out
    raise BearError(f"filter {name!r}: expected a value or a list of values, not {value!r}")


def _as_ints(name: str, value: Any) -> list[int]:
    out = []
    for v in _as_list(name, value):
        try:
            out.append(int(v))
        except (TypeError, ValueError):
            raise BearError(f"filter {name!r}: {v!r} is not a whole-number id") from None
    return out


def _as_date(name: str, value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise BearError(f"filter {name!r}: {value!r} is not a date (YYYY-MM-DD)") from None


def _as_decimal(name: str, value: Any) -> Decimal:
    if isinstance(value, float):
        value = repr(value)
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise BearError(f"filter {name!r}: {value!r} is not an amount") from None
    if not d.is_finite():
        raise BearError(f"filter {name!r}: {value!r} is not an amount")
    return d


@dataclass(frozen=True)
class Filters:
    """Validated filters of DESIGN §2.1. Empty / None means "any"."""

    company: tuple[int, ...] = ()
    account: tuple[int, ...] = ()
    project: tuple[int, ...] = ()
    region: tuple[str, ...] = ()
    practice: tuple[str, ...] = ()
    grp: tuple[str, ...] = ()
    currency: tuple[str, ...] = ()
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    min_amount: Decimal | None = None
    max_amount: Decimal | None = None
    category: tuple[str, ...] = ()
    search: str = ""
    eligibility: str | None = None  # "eligible", "ineligible" or a rule id
    ids: tuple[int, ...] | None = None
    exclude_ids: tuple[int, ...] = ()  # e.g. the rows unticked after "select all matching"

    @classmethod
    def build(cls, **raw: Any) -> Filters:
        unknown = sorted(set(raw) - set(FILTERS))
        if unknown:
            raise BearError(f"unknown filter {unknown[0]!r}; filters are: {', '.join(FILTERS)}")
        kw: dict[str, Any] = {}
        for name, value in raw.items():
            if value is None or (
                isinstance(value, str | list | tuple | set) and len(value) == 0 and name != "ids"
            ):
                continue
            if name in ("company", "account", "project", *ID_FILTERS):
                kw[name] = tuple(_as_ints(name, value))
            elif name in ("region", "practice", "grp"):
                kw[name] = tuple(str(v) for v in _as_list(name, value))
            elif name == "currency":
                cur = tuple(str(v).upper() for v in _as_list(name, value))
                kw[name] = cur
            elif name in ("date_from", "date_to"):
                kw[name] = _as_date(name, value)
            elif name in ("min_amount", "max_amount"):
                kw[name] = _as_decimal(name, value)
            elif name == "category":
                cats = tuple(str(v) for v in _as_list(name, value))
                bad = [c for c in cats if c not in CATEGORIES]
                if bad:
                    raise BearError(
                        f"filter 'category': {bad[0]!r} is not one of {', '.join(CATEGORIES)}"
                    )
                kw[name] = cats
            elif name == "search":
                if not isinstance(value, str):
                    raise BearError(f"filter 'search': expected text, not {value!r}")
                if len(value) > 200:
                    raise BearError("filter 'search': at most 200 characters")
                kw[name] = value.strip()
            elif name == "eligibility":
                kw[name] = str(value)
        f = cls(**kw)
        if f.date_from and f.date_to and f.date_from > f.date_to:
            raise BearError(f"filter dates: date_from {f.date_from} is after date_to {f.date_to}")
        if f.min_amount is not None and f.max_amount is not None and f.min_amount > f.max_amount:
            raise BearError(
                f"filter amounts: min_amount {f.min_amount} is above max_amount {f.max_amount}"
            )
        return f

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, (), "")}

    def where(self) -> tuple[list[str], dict[str, Any]]:
        """SQL conditions (over aliases e, p, a, c) and their parameters."""
        cond: list[str] = []
        params: dict[str, Any] = {}
        for name, col in (
            ("company", "e.company_id"),
            ("account", "e.account_id"),
            ("project", "e.project_id"),
            ("region", "p.region"),
            ("practice", "p.practice"),
            ("grp", "p.grp"),
            ("currency", "e.currency"),
        ):
            values = getattr(self, name)
            if values:
                cond.append(f"{col} IN (SELECT unnest(${'f_' + name}))")
                params["f_" + name] = list(values)
        if self.ids is not None:
            cond.append("e.id IN (SELECT unnest($f_ids))")
            params["f_ids"] = list(self.ids)
        if self.exclude_ids:
            cond.append("e.id NOT IN (SELECT unnest($f_exclude_ids))")
            params["f_exclude_ids"] = list(self.exclude_ids)
        if self.date_from:
            cond.append("e.event_date >= $f_date_from")
            params["f_date_from"] = self.date_from
        if self.date_to:
            cond.append("e.event_date <= $f_date_to")
            params["f_date_to"] = self.date_to
        if self.min_amount is not None:
            cond.append("e.summary_amount >= $f_min_amount::DECIMAL(38, 6)")
            params["f_min_amount"] = str(self.min_amount)
        if self.max_amount is not None:
            cond.append("e.summary_amount <= $f_max_amount::DECIMAL(38, 6)")
            params["f_max_amount"] = str(self.max_amount)
        if self.category:
            cond.append(
                "e.id IN (SELECT i.billing_event_id FROM billing_event_items i "
                "WHERE i.category IN (SELECT unnest($f_category)))"
            )
            params["f_category"] = list(self.category)
        if self.search:
            # strpos, not LIKE: the text is matched literally, wildcards and quotes included.
            cond.append(
                "(strpos(lower(e.name), lower($f_search)) > 0 OR strpos(lower(p.name), lower($f_search)) > 0"
                " OR strpos(lower(coalesce(a.name, '')), lower($f_search)) > 0"
                " OR e.id::VARCHAR = $f_search)"
            )
            params["f_search"] = self.search
        return cond, params


@dataclass
class Selection:
    """A lazy set of billing events: a kind (awaiting release / invoice) plus filters."""

    ws: Workspace
    kind: Kind
    filters: Filters = field(default_factory=Filters)

    # -- SQL -------------------------------------------------------------------------------
    def where_sql(self) -> tuple[str, dict[str, Any]]:
        cond, params = self.filters.where()
        cond.insert(0, KIND_SQL[self.kind])
        if self.filters.eligibility:
            c, p = self.ws._eligibility_condition(self.kind, self.filters.eligibility)
            cond.append(c)
            params.update(p)
        return " AND ".join(f"({c})" for c in cond), params

    def ids_sql(self) -> tuple[str, dict[str, Any]]:
        """A query returning the selected ids (column ``billing_event_id``), and its parameters."""
        where, params = self.where_sql()
        return (
            f"SELECT e.id AS billing_event_id {from_sql(aliases_of(where))} WHERE {where}",
            params,
        )

    # -- reading ---------------------------------------------------------------------------
    def __len__(self) -> int:
        where, params = self.where_sql()
        return int(
            self.ws._query(
                f"SELECT count(*) {from_sql(aliases_of(where))} WHERE {where}", params
            ).fetchall()[0][0]
        )

    def count(self) -> int:
        return len(self)

    def ids(self) -> list[int]:
        sql, params = self.ids_sql()
        return [r[0] for r in self.ws._query(sql + " ORDER BY 1", params).fetchall()]

    def page(
        self, offset: int = 0, limit: int = 50, sort: Sequence[tuple[str, str]] | None = None
    ) -> pd.DataFrame:
        """One page of events, display-ready (amounts as Decimal; sort columns whitelisted)."""
        if not isinstance(offset, int) or offset < 0:
            raise BearError(f"page offset must be a whole number ≥ 0, not {offset!r}")
        if not isinstance(limit, int) or not 0 < limit <= 10_000:
            raise BearError(f"page limit must be between 1 and 10000, not {limit!r}")
        order = order_by(sort)
        where, params = self.where_sql()
        cols = ", ".join(f"{expr} AS {name}" for name, expr in COLUMNS.items())
        # Late join: pick the page's ids with only the joins the filter and sort need, then
        # join the display columns to those rows alone.
        sql = f"""
            WITH top AS (
                SELECT e.id FROM billing_events e
                {" ".join(_JOINS[a] for a in ("p", "a", "c") if a in aliases_of(where + " " + order))}
                WHERE {where} ORDER BY {order} LIMIT {limit} OFFSET {offset}
            )
            SELECT {cols} FROM top JOIN billing_events e ON e.id = top.id
            {_JOINS["p"]} {_JOINS["a"]} {_JOINS["c"]}
            ORDER BY {order}
        """
        return self.ws._frame(sql, params, nullable_ints=True)

    def totals(self) -> pd.DataFrame:
        """Count and amount per currency, with expected sales invoices and credit notes."""
        where, params = self.where_sql()
        sql = f"""
            SELECT e.currency, count(*) AS events, sum(e.summary_amount) AS amount,
                   count(*) FILTER (e.summary_amount > 0) AS sales_invoices,
                   count(*) FILTER (e.summary_amount < 0) AS credit_notes,
                   count(DISTINCT e.project_id) AS projects
            {from_sql(aliases_of(where))} WHERE {where} GROUP BY ALL ORDER BY e.currency
        """
        return self.ws._frame(sql, params)

    def refine(self, **filters: Any) -> Selection:
        """A new selection with these filters added to (or replacing) the current ones."""
        return Selection(self.ws, self.kind, Filters.build(**{**self.filters.as_dict(), **filters}))

    def describe(self) -> str:
        """The filters in words, e.g. ``currency=EUR, GBP; min_amount=0``."""
        parts = []
        for k, v in self.filters.as_dict().items():
            text = ", ".join(map(str, v)) if isinstance(v, tuple) else str(v)
            if k in ID_FILTERS and isinstance(v, tuple) and len(v) > 5:
                text = f"{len(v):,} ids"
            parts.append(f"{k}={text}")
        return "; ".join(parts)

    def __repr__(self) -> str:
        return f"<Selection {self.kind}({self.describe()})>"

    def _repr_html_(self) -> str:
        totals = self.totals()
        n = int(totals["events"].sum()) if len(totals) else 0
        rows = "".join(
            f"<tr><td>{html.escape(str(r.currency))}</td><td style='text-align:right'>{r.events:,}</td>"
            f"<td style='text-align:right'>{r.amount:,.2f}</td><td style='text-align:right'>{r.sales_invoices:,}</td>"
            f"<td style='text-align:right'>{r.credit_notes:,}</td></tr>"
            for r in totals.itertuples()
        )
        f = html.escape(self.describe() or "no filter")
        return (
            f"<div><b>{n:,} events {self.kind.replace('_', ' ')}</b> <small>({f})</small>"
            "<table><thead><tr><th>currency</th><th>events</th><th>amount</th>"
            "<th>expected invoices</th><th>expected credit notes</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></div>"
        )


def order_by(sort: Sequence[tuple[str, str]] | None) -> str:
    """ORDER BY text from whitelisted (column, direction) pairs; ties broken by id."""
    parts = []
    for item in sort or ():
        try:
            col, direction = item
        except (TypeError, ValueError):
            raise QueryError(f"sort: expected (column, 'asc'|'desc') pairs, not {item!r}") from None
        if col not in COLUMNS:
            raise QueryError(
                f"sort: unknown column {col!r}; sortable columns: {', '.join(COLUMNS)}"
            )
        d = str(direction).lower()
        if d not in ("asc", "desc"):
            raise QueryError(
                f"sort: direction of {col!r} must be 'asc' or 'desc', not {direction!r}"
            )
        parts.append(f"{COLUMNS[col]} {d.upper()} NULLS LAST")
    if not any(p.startswith("e.id ") for p in parts):
        parts.append("e.id ASC")
    return ", ".join(parts)
