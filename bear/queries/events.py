"""Billing events as the grids, selections and the CLI read them: kinds, columns, joins,
conditions, counts, ids, totals per currency, pages, category masks and filter options.

A selection's rows are ``billing_events e`` joined to its project (``p``), account (``a``),
company (``c``) and current document (``d``). Joins are made only when a condition or a sort
uses the alias — DuckDB keeps unused LEFT JOINs, which costs 5-7x on a count over a million
events — and the display columns are joined to the page's rows alone. Every function takes a cursor and a
``Condition`` (SQL text over those aliases, its parameters, and any Arrow tables it reads).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from bear.errors import QueryError
from bear.queries.filters import CATEGORIES, Filters
from bear.queries.pager import Listing, frame
from bear.wire import to_pandas

KIND_SQL = {
    "awaiting_release": "NOT e.released",
    "awaiting_invoice": "e.released AND NOT e.invoiced",
    "released": "e.released",
    "invoiced": "e.invoiced",
    "all": "true",
}

JOINS = {
    "p": "JOIN projects p ON p.id = e.project_id",
    "a": "LEFT JOIN accounts a ON a.id = e.account_id",
    "c": "LEFT JOIN companies c ON c.id = e.company_id",
    # an event's current document (the Invoiced view shows its number, type, status, date)
    "d": "LEFT JOIN documents d ON d.id = e.document_id",
}
FROM_SQL = "FROM billing_events e " + " ".join(JOINS.values())

# Columns a page shows and may be sorted by: name -> SQL expression (whitelist).
COLUMNS: dict[str, str] = {
    "id": "e.id",
    "name": "e.name",
    "event_date": "e.event_date",
    # days since the event date (how long it has been waiting to be billed)
    "days_awaiting": "(current_date - e.event_date)",
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
    "document_number": "d.number",
    "document_type": "d.doc_type",
    "document_status": "d.status",
    "document_date": "d.document_date",
}

# An alias is used when "x." appears not as the tail of a longer name or a $parameter.
_ALIAS_RE: dict[str, re.Pattern[str]] = {}


def aliases_of(sql: str, aliases: Sequence[str] = tuple(JOINS)) -> set[str]:
    """The table aliases ``sql`` refers to (``p.name`` uses ``p``; ``ep.name`` does not)."""
    found = set()
    for a in aliases:
        pattern = _ALIAS_RE.get(a)
        if pattern is None:
            pattern = _ALIAS_RE[a] = re.compile(rf"(?<![\w$]){re.escape(a)}\.")
        if pattern.search(sql):
            found.add(a)
    return found


def joins_for(sql: str, joins: Mapping[str, str]) -> str:
    """The joins of ``joins`` (alias -> JOIN clause, in order) that ``sql`` needs."""
    used = aliases_of(sql, tuple(joins))
    return " ".join(j for a, j in joins.items() if a in used)


def from_sql(aliases: set[str]) -> str:
    """FROM billing_events with only the joins the given aliases need."""
    return "FROM billing_events e " + " ".join(JOINS[a] for a in JOINS if a in aliases)


@dataclass(frozen=True)
class Condition:
    """A WHERE condition over ``e``, ``p``, ``a``, ``c``: SQL text, its parameters, and the
    Arrow tables (name -> table) it reads, registered on the cursor before it runs."""

    where: str
    params: Mapping[str, Any] = field(default_factory=dict)
    tables: Mapping[str, Any] = field(default_factory=dict)

    def and_(self, other: Condition) -> Condition:
        return Condition(
            f"({self.where}) AND ({other.where})",
            {**self.params, **other.params},
            {**self.tables, **other.tables},
        )

    def register(self, cur: duckdb.DuckDBPyConnection) -> None:
        for name, table in self.tables.items():
            cur.register(name, table)

    def source(self, extra: str = "") -> str:
        """``FROM … WHERE …`` with the joins the condition (and ``extra``) need."""
        return f"{from_sql(aliases_of(f'{self.where} {extra}'))} WHERE {self.where}"


def condition(kind: str, filters: Filters) -> Condition:
    """The condition of a kind and its filters (the eligibility filter excepted)."""
    cond, params = filters.where()
    cond.insert(0, KIND_SQL[kind])
    return Condition(" AND ".join(f"({c})" for c in cond), params)


def mask_condition(categories: Sequence[str], masks: Any, name: str) -> Condition:
    """Events with an item in one of ``categories``, answered from the category masks
    (``category_masks``) instead of a join to every item."""
    bits = sum(1 << CATEGORIES.index(c) for c in categories)
    ids = masks.column("id").to_numpy()
    chosen = ids[(masks.column("mask").to_numpy() & bits) != 0]
    return in_ids(pa.table({"id": chosen}), name)


# Up to this many ids an id set is looked up in a bit string (one bit per id, 16 MB at most);
# above it, in a join.
BITMAP_MAX_ID = 128_000_000


def in_ids(ids: Any, name: str) -> Condition:
    """Events whose id is in the Arrow table ``ids`` (column ``id``).

    The set becomes a string of bits, bit i set for id i, and each event's bit is read with
    ``get_bit``: a lookup per row instead of a semi-join. At a million events with half of
    them in the set that is ~30 ms against ~125 ms for the join (the item-category filter,
    a search's matches, the eligibility filter and the grid's ineligible count).

    The bits are packed eight to a byte, first bit highest (``np.packbits``), and given as a
    BLOB that DuckDB casts to BIT in that order: each statement that reads the set binds and
    casts 125 kB at a million ids, where a string of '0' and '1' was 1 MB (3–4 ms more per
    statement)."""
    values = np.asarray(ids.column("id").to_numpy(zero_copy_only=False), dtype=np.int64)
    top = int(values.max()) if values.size else 0
    if values.size and (int(values.min()) < 0 or top >= BITMAP_MAX_ID):
        return Condition(f"e.id IN (SELECT id FROM {name})", {}, {name: ids})
    size = top + 2  # the last bit is 0: every id past the set reads it
    present = np.zeros(size, dtype=bool)
    present[values] = True
    # a parameter, so the bit string is a constant of the statement (a scalar subquery may be
    # planned as a nested-loop join that copies it for every row)
    return Condition(
        f"get_bit(${name}::BLOB::BIT, least(e.id, {size - 1})::INTEGER) = 1",
        {name: np.packbits(present).tobytes()},
    )


def category_masks(cur: duckdb.DuckDBPyConnection) -> Any:
    """Per billing event, a bit mask of its items' categories (bit i = ``CATEGORIES[i]``),
    as an Arrow table (id, mask)."""
    names = ", ".join(f"'{c}'" for c in CATEGORIES)  # fixed, known words: not user input
    return cur.sql(
        "SELECT billing_event_id AS id, bit_or((1 << (list_position("
        f"[{names}], category) - 1))::INTEGER) AS mask "
        "FROM billing_event_items GROUP BY billing_event_id"
    ).to_arrow_table()


def match_ids(cur: duckdb.DuckDBPyConnection, cond: Condition) -> Any:
    """The ids matching ``cond`` as an Arrow table (column ``id``)."""
    cond.register(cur)
    return cur.sql(f"SELECT e.id AS id {cond.source()}", params=dict(cond.params)).to_arrow_table()


def count(cur: duckdb.DuckDBPyConnection, cond: Condition) -> int:
    cond.register(cur)
    return int(cur.execute(f"SELECT count(*) {cond.source()}", dict(cond.params)).fetchall()[0][0])


def ids_sql(cond: Condition) -> tuple[str, dict[str, Any]]:
    """A query returning the ids (column ``billing_event_id``), and its parameters."""
    return f"SELECT e.id AS billing_event_id {cond.source()}", dict(cond.params)


def ids(cur: duckdb.DuckDBPyConnection, cond: Condition) -> list[int]:
    cond.register(cur)
    sql, params = ids_sql(cond)
    return [r[0] for r in cur.execute(sql + " ORDER BY 1", params).fetchall()]


def totals(
    cur: duckdb.DuckDBPyConnection,
    cond: Condition,
    *,
    projects: str = "per_currency",
    flagged: Condition | None = None,
) -> pd.DataFrame:
    """Per currency: events, amount (Decimal), expected sales invoices and credit notes, and
    the distinct projects — of that currency (``projects="per_currency"``: column
    ``projects``) or of every currency together (``projects="overall"``: column
    ``all_projects``, the same on each row, as the grid's summary card shows it). Each form
    counts distinct projects once; asking for both would double the cost at a million rows.

    ``flagged``: a second condition, counted among the same rows in column ``flagged`` (the
    grid's ineligible events) in the same pass, instead of a statement of its own."""
    if projects not in ("per_currency", "overall"):
        raise QueryError(f"totals: projects must be 'per_currency' or 'overall', not {projects!r}")
    params = dict(cond.params)
    flag, extra = "", ""
    if flagged is not None:
        clash = [k for k, v in flagged.params.items() if k in params and params[k] is not v]
        if clash:
            raise QueryError(f"totals: the flagged condition reuses parameter {clash[0]!r}")
        params.update(flagged.params)
        flagged.register(cur)
        flag, extra = f", ({flagged.where}) AS flag", flagged.where
    cond.register(cur)
    if projects == "per_currency":
        sql = f"""
            SELECT e.currency, count(*) AS events, sum(e.summary_amount) AS amount,
                   count(*) FILTER (e.summary_amount > 0) AS sales_invoices,
                   count(*) FILTER (e.summary_amount < 0) AS credit_notes,
                   count(DISTINCT e.project_id) AS projects
                   {", count(*) FILTER (" + flagged.where + ") AS flagged" if flagged else ""}
            {cond.source(extra)} GROUP BY ALL ORDER BY e.currency
        """
    else:
        # One statement: DuckDB reuses the filtered rows for the distinct project count.
        sql = f"""
            WITH s AS (SELECT e.currency, e.project_id, e.summary_amount{flag}
                       {cond.source(extra)})
            SELECT currency, count(*) AS events, sum(summary_amount) AS amount,
                   count(*) FILTER (summary_amount > 0) AS sales_invoices,
                   count(*) FILTER (summary_amount < 0) AS credit_notes,
                   (SELECT count(DISTINCT project_id) FROM s) AS all_projects
                   {", count(*) FILTER (flag) AS flagged" if flagged else ""}
            FROM s GROUP BY currency ORDER BY currency
        """
    return frame(cur, sql, params)


# Dimensional filters (``Filters.dimensional``) as the aggregate's column each one limits.
_AGG_FILTERS = {
    "company": "company_id",
    "account": "account_id",
    "project": "project_id",
    "region": "region",
    "practice": "practice",
    "grp": "grp",
    "currency": "currency",
}
_AGG_SCOPES = {
    "companies": "company_id",
    "regions": "region",
    "practices": "practice",
    "groups": "grp",
}


def aggregate(
    cur: duckdb.DuckDBPyConnection,
    kind: str,
    flagged: Condition | None,
    masks: Any = None,
    name: str = "_bear_agg_masks",
) -> pa.Table:
    """The events of ``kind`` summed per project, account, company, currency and ``flagged``
    (column ``flag``, false without it), with the project's region, practice and group, as an
    Arrow table: a few thousand rows that answer the totals of every dimensional selection
    (``aggregate_totals``) without reading the events. With the ``category_masks`` table
    ``masks`` (registered as ``name``), the sums are also per item-category mask (column
    ``mask``), so the category filter is answered too (~15 times the rows)."""
    flag = "false"
    params: dict[str, Any] = {}
    if flagged is not None:
        flagged.register(cur)
        flag, params = flagged.where, dict(flagged.params)
    mask, join = "", ""
    if masks is not None:
        cur.register(name, masks)
        mask, join = ", coalesce(m.mask, 0) AS mask", f"LEFT JOIN {name} m ON m.id = e.id"
    return cur.sql(
        f"""WITH g AS (
                SELECT e.project_id, e.account_id, e.company_id, e.currency, ({flag}) AS flag{mask},
                       count(*) AS events, sum(e.summary_amount) AS amount,
                       count(*) FILTER (e.summary_amount > 0) AS sales_invoices,
                       count(*) FILTER (e.summary_amount < 0) AS credit_notes
                FROM billing_events e {join} WHERE {KIND_SQL[kind]} GROUP BY ALL)
            SELECT g.*, p.region, p.practice, p.grp
            FROM g LEFT JOIN projects p ON p.id = g.project_id""",
        params=params,
    ).to_arrow_table()


def aggregate_totals(
    agg: pa.Table, filters: Filters, *, projects: str = "per_currency", flagged: bool = False
) -> pd.DataFrame:
    """``totals`` of the dimensional ``filters`` summed from ``aggregate``'s table, in Arrow:
    each filter keeps the rows whose column is among its values (a row without a project has
    no region, practice or group, as the events' inner join to ``projects`` drops it there);
    eligibility ``eligible`` / ``ineligible`` reads the flag."""
    if projects not in ("per_currency", "overall"):
        raise QueryError(f"totals: projects must be 'per_currency' or 'overall', not {projects!r}")
    if not filters.dimensional(categories="mask" in agg.column_names):
        raise QueryError("totals from the aggregate: the filters must be dimensional")
    limits = [(col, getattr(filters, name)) for name, col in _AGG_FILTERS.items()]
    if filters.scope is not None:
        limits += [(col, getattr(filters.scope, name)) for name, col in _AGG_SCOPES.items()]
    masks = [
        pc.is_in(agg[col], pa.array(values, agg.schema.field(col).type))
        for col, values in limits
        if values
    ]
    if filters.category:
        bits = sum(1 << CATEGORIES.index(c) for c in filters.category)
        masks.append(pc.not_equal(pc.bit_wise_and(agg["mask"], bits), 0))
    if filters.eligibility:
        flag = agg["flag"]
        masks.append(flag if filters.eligibility == "ineligible" else pc.invert(flag))
    rows = agg
    if masks:  # a NULL (no project row under a region filter) drops the row
        keep = masks[0]
        for mask in masks[1:]:
            keep = pc.and_(keep, mask)
        rows = agg.filter(keep)
    sums = [
        ("events", "sum"),
        ("amount", "sum"),
        ("sales_invoices", "sum"),
        ("credit_notes", "sum"),
    ]
    if projects == "per_currency":
        sums.append(("project_id", "count_distinct"))
    if flagged:
        rows = rows.append_column("flagged", pc.if_else(rows["flag"], rows["events"], 0))
        sums.append(("flagged", "sum"))
    out = rows.group_by("currency").aggregate(sums).sort_by("currency")
    names = {f"{c}_{f}": c for c, f in sums} | {"project_id_count_distinct": "projects"}
    out = out.rename_columns([names.get(n, n) for n in out.column_names])
    ints = [
        c
        for c in ("events", "sales_invoices", "credit_notes", "projects", "flagged")
        if c in out.column_names
    ]
    for c in ints:
        out = out.set_column(out.column_names.index(c), c, out[c].cast(pa.int64()))
    if projects == "overall":
        distinct = pc.count_distinct(rows["project_id"]).as_py()
        out = out.append_column("all_projects", pa.array([distinct] * out.num_rows, pa.int64()))
    order = ["currency", "events", "amount", "sales_invoices", "credit_notes"]
    order += ["projects" if projects == "per_currency" else "all_projects"]
    return to_pandas(out.select(order + (["flagged"] if flagged else [])))


def sort_keys(sort: Sequence[tuple[str, str]] | None) -> tuple[tuple[str, bool], ...]:
    """Whitelisted (column, 'asc'|'desc') pairs as (SQL expression, descending) pairs."""
    keys = []
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
        keys.append((COLUMNS[col], d == "desc"))
    return tuple(keys)


def order_by(sort: Sequence[tuple[str, str]] | None) -> str:
    """ORDER BY text from whitelisted (column, direction) pairs; ties broken by id."""
    return listing(Condition("true"), sort=sort).order()


def listing(
    cond: Condition,
    columns: Sequence[str] | None = None,
    sort: Sequence[tuple[str, str]] | None = None,
) -> Listing:
    """The events of ``cond`` as a pageable listing of ``columns`` (default: every column)."""
    cols = tuple(COLUMNS) if columns is None else tuple(columns)
    unknown = [c for c in cols if c not in COLUMNS]
    if unknown:
        raise QueryError(f"unknown column {unknown[0]!r}; columns: {', '.join(COLUMNS)}")
    keys = sort_keys(sort)
    select = ", ".join(f"{COLUMNS[c]} AS {c}" for c in cols)
    return Listing(
        columns=cols,
        select=select,
        base="billing_events e",
        # only the joins the shown columns read: each one builds a hash table over its whole
        # table (~10 ms for the documents at a million events) to name 50 rows
        joins=joins_for(select, JOINS),
        lean_joins=" ".join(
            JOINS[a]
            for a in JOINS
            if a in aliases_of(f"{cond.where} {' '.join(x for x, _ in keys)}")
        ),
        where=cond.where,
        params=cond.params,
        id_expr="e.id",
        sort=keys,
        tables=cond.tables,
    )


def filter_options(
    cur: duckdb.DuckDBPyConnection, block_rules: Mapping[str, str] | Sequence[str]
) -> dict[str, Any]:
    """Choices for the filter widgets: labels (raw text from the data; views escape) → values.
    ``block_rules``: the blocking rules' ids, or ids → descriptions (the label then says what
    the rule checks, its id in brackets)."""

    def pairs(sql: str) -> dict[str, Any]:
        return {str(label): value for value, label in cur.execute(sql).fetchall()}

    def values(sql: str) -> list[str]:
        return [r[0] for r in cur.execute(sql).fetchall() if r[0] is not None]

    eligibility = {"any": "", "eligible": "eligible", "ineligible": "ineligible"}
    described = block_rules if isinstance(block_rules, Mapping) else dict.fromkeys(block_rules, "")
    for rule, text in described.items():
        text = text.strip().rstrip(".")
        label = (
            f"fails: {text[:90]}{'…' if len(text) > 90 else ''} [{rule}]"
            if text
            else f"fails {rule}"
        )
        eligibility[label] = rule
    return {
        "company": pairs("SELECT id, name || ' (' || id || ')' FROM companies ORDER BY name"),
        "account": pairs("SELECT id, name FROM accounts ORDER BY name, id"),
        "project": pairs("SELECT id, name FROM projects ORDER BY name, id"),
        "region": values("SELECT DISTINCT region FROM projects ORDER BY 1"),
        "practice": values("SELECT DISTINCT practice FROM projects ORDER BY 1"),
        "grp": values("SELECT DISTINCT grp FROM projects ORDER BY 1"),
        "currency": values(
            "SELECT DISTINCT currency FROM (SELECT currency FROM projects UNION ALL "
            "SELECT currency FROM company_currencies) ORDER BY 1"
        ),
        "category": list(CATEGORIES),
        "eligibility": eligibility,
    }
