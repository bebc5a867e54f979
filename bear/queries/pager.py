"""The one pager: every listing BEAR shows or returns a page of is paged here, in SQL.

A ``Listing`` describes a sorted, filtered listing: a lean source (only the joins the filter
and the sort need) that picks the page's keys, and the display columns joined to those keys
alone. ``window()`` reads rows ``offset … offset+limit`` (OFFSET); ``Pager`` remembers where
a screen is and moves one page forward or back by keyset (the sort value and id of the edge
row: cost independent of depth) when the sort allows it — one sort column plus the id —
falling back to OFFSET for jumps and multi-column sorts. The order is always total: ties are
broken by the listing's id.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from bear.wire import to_pandas

PAGE_SIZE = 50


def frame(
    cur: duckdb.DuckDBPyConnection,
    sql: str,
    params: Mapping[str, Any] | None = None,
    *,
    nullable_ints: bool = False,
) -> pd.DataFrame:
    """A query's result as a DataFrame, DECIMAL kept as ``Decimal``; with ``nullable_ints``
    integer columns stay integers where values are missing (pandas ``Int64``)."""
    table = cur.sql(sql, params=dict(params or {})).to_arrow_table()
    return to_pandas(table, nullable_ints)


@dataclass(frozen=True)
class Listing:
    """One sorted, filtered listing, as SQL text built from whitelists only.

    ``sort`` holds (SQL expression, descending) pairs; the id is appended as the last key
    unless it is one already, so the order is total.
    """

    columns: tuple[str, ...]  # display names, in ``select`` order
    select: str  # "expr AS name, ..."
    base: str  # the listed table and its alias, e.g. "billing_events e"
    joins: str  # every join the display columns need (made for the page's rows only)
    lean_joins: str  # the joins ``where`` and ``sort`` need (made for every matching row)
    where: str
    params: Mapping[str, Any]
    id_expr: str
    sort: tuple[tuple[str, bool], ...] = ()
    tables: Mapping[str, Any] = field(default_factory=dict)  # Arrow tables the SQL reads

    @property
    def keyset_ok(self) -> bool:
        """Keyset paging needs a single sort key besides the id (else OFFSET)."""
        return len([s for s in self.sort if s[0] != self.id_expr]) <= 1

    def register(self, cur: duckdb.DuckDBPyConnection) -> None:
        """Make the Arrow tables the listing reads visible to ``cur`` (per cursor, so per thread)."""
        for name, table in self.tables.items():
            cur.register(name, table)

    def _keys(self) -> list[tuple[str, bool]]:
        keys = list(self.sort)
        if not any(x == self.id_expr for x, _ in keys):
            keys.append((self.id_expr, False))
        return keys

    def order(self, reverse: bool = False) -> str:
        parts = []
        for x, desc in self._keys():
            d = "DESC" if desc != reverse else "ASC"
            if x == self.id_expr:
                parts.append(f"{x} {d}")
            else:
                parts.append(f"{x} {d} {'NULLS FIRST' if reverse else 'NULLS LAST'}")
        return ", ".join(parts)

    def lean(self) -> str:
        return f"FROM {self.base} {self.lean_joins} WHERE {self.where}"

    def count_sql(self) -> str:
        return f"SELECT count(*) {self.lean()}"

    def export_sql(self, limit: int | None = None) -> str:
        lim = "" if limit is None else f" LIMIT {int(limit)}"
        return (
            f"SELECT {self.select} FROM {self.base} {self.joins} WHERE {self.where} "
            f"ORDER BY {self.order()}{lim}"
        )

    def keyset(self, key: tuple[Any, Any], after: bool) -> tuple[str, dict[str, Any]]:
        """Rows strictly after (or before) ``key`` = (sort value, id) in this order."""
        value, rid = key
        i = self.id_expr
        sort = [s for s in self.sort if s[0] != i]
        if not sort:
            desc = bool(self.sort and self.sort[0][1])
            op = (">" if after else "<") if not desc else ("<" if after else ">")
            return f"{i} {op} $k_i", {"k_i": rid}
        x, descending = sort[0]
        p = {"k_v": value, "k_i": rid}
        beyond = "<" if descending else ">"  # the direction rows advance in
        behind = ">" if descending else "<"
        if after:
            if value is None:
                return f"({x} IS NULL AND {i} > $k_i)", {"k_i": rid}
            return f"({x} IS NULL OR {x} {beyond} $k_v OR ({x} = $k_v AND {i} > $k_i))", p
        if value is None:
            return f"({x} IS NOT NULL OR {i} < $k_i)", {"k_i": rid}
        return f"({x} IS NOT NULL AND ({x} {behind} $k_v OR ({x} = $k_v AND {i} < $k_i)))", p

    def keys_sql(
        self,
        limit: int,
        offset: int = 0,
        key: tuple[Any, Any] | None = None,
        after: bool = True,
        reverse: bool = False,
    ) -> tuple[str, dict[str, Any]]:
        """The page's (id, first sort value) pairs, in order."""
        params = dict(self.params)
        where = ""
        if key is not None:
            cond, kp = self.keyset(key, after)
            params.update(kp)
            where = f" AND {cond}"
        first = next((x for x, _ in self.sort if x != self.id_expr), self.id_expr)
        sql = (
            f"SELECT {self.id_expr} AS _row_id, {first} AS _sort_key "
            f"{self.lean()}{where} ORDER BY {self.order(reverse)} LIMIT {int(limit)}"
            + (f" OFFSET {int(offset)}" if offset else "")
        )
        return sql, params

    def rows_sql(self) -> str:
        """The display columns of the ids in ``$page_ids`` (the primary key finds them)."""
        return (
            f"SELECT {self.select}, {self.id_expr} AS _row_id FROM {self.base} {self.joins} "
            f"WHERE {self.id_expr} = ANY($page_ids::BIGINT[])"
        )


def count(cur: duckdb.DuckDBPyConnection, listing: Listing) -> int:
    listing.register(cur)
    return int(cur.execute(listing.count_sql(), dict(listing.params)).fetchall()[0][0])


def export(
    cur: duckdb.DuckDBPyConnection,
    listing: Listing,
    limit: int | None = None,
    *,
    nullable_ints: bool = False,
) -> pd.DataFrame:
    """The whole listing (or its first ``limit`` rows), in order, Decimal kept."""
    listing.register(cur)
    return frame(cur, listing.export_sql(limit), listing.params, nullable_ints=nullable_ints)


def _rows_table(cur: duckdb.DuckDBPyConnection, listing: Listing, ids: list[Any]) -> pa.Table:
    """The display rows of ``ids``, in the order of ``ids`` (Arrow, DECIMAL kept)."""
    table = cur.sql(listing.rows_sql(), params={"page_ids": ids}).to_arrow_table()
    found = table.column("_row_id")
    order = pc.index_in(pa.array(ids, found.type), value_set=found.combine_chunks())
    return table.take(order.drop_null()).drop_columns(["_row_id"])


def _rows(
    cur: duckdb.DuckDBPyConnection, listing: Listing, ids: list[Any], nullable_ints: bool
) -> pd.DataFrame:
    return to_pandas(_rows_table(cur, listing, ids), nullable_ints)


def window_table(
    cur: duckdb.DuckDBPyConnection, listing: Listing, offset: int, limit: int
) -> pa.Table:
    """Rows ``offset`` … ``offset + limit`` of the listing as Arrow (OFFSET paging, stateless)."""
    listing.register(cur)
    sql, params = listing.keys_sql(limit, offset=offset)
    ids = [k[0] for k in cur.execute(sql, params).fetchall()]
    return _rows_table(cur, listing, ids)


def window(
    cur: duckdb.DuckDBPyConnection,
    listing: Listing,
    offset: int,
    limit: int,
    *,
    nullable_ints: bool = False,
) -> pd.DataFrame:
    """Rows ``offset`` … ``offset + limit`` of the listing (OFFSET paging, stateless)."""
    return to_pandas(window_table(cur, listing, offset, limit), nullable_ints)


@dataclass
class Pager:
    """Where a screen is in a listing: page number, total, and the keys of the page's first
    and last rows (for keyset moves). ``last_method`` says how the last page was read."""

    size: int = PAGE_SIZE
    total: int = 0
    page: int = 0
    first_key: tuple[Any, Any] | None = None
    last_key: tuple[Any, Any] | None = None
    last_method: str = ""

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.size))

    def reset(self) -> None:
        self.page, self.first_key, self.last_key = 0, None, None

    def load(
        self,
        cur: duckdb.DuckDBPyConnection,
        listing: Listing,
        target: int,
        *,
        nullable_ints: bool = False,
    ) -> pd.DataFrame:
        """Rows of page ``target`` (clamped): by keyset when moving one page or to the end
        and the sort allows it, else by OFFSET."""
        pages = self.pages
        target = max(0, min(int(target), pages - 1))
        listing.register(cur)
        reverse = False
        keyset = listing.keyset_ok
        if keyset and target == self.page + 1 and self.last_key is not None:
            sql, params = listing.keys_sql(self.size, key=self.last_key, after=True)
            method = "keyset-next"
        elif keyset and target == self.page - 1 and self.first_key is not None:
            sql, params = listing.keys_sql(self.size, key=self.first_key, after=False, reverse=True)
            reverse, method = True, "keyset-previous"
        elif target == pages - 1 and target > 0:
            # the last page read backwards from the end: no deep OFFSET
            sql, params = listing.keys_sql(self.total - target * self.size, reverse=True)
            reverse, method = True, "last"
        else:
            sql, params = listing.keys_sql(self.size, offset=target * self.size)
            method = "offset"
        keys = cur.execute(sql, params).fetchall()
        if reverse:
            keys.reverse()
        rows = _rows(cur, listing, [k[0] for k in keys], nullable_ints)
        if keys:
            self.first_key = (keys[0][1], keys[0][0])
            self.last_key = (keys[-1][1], keys[-1][0])
        else:
            self.first_key = self.last_key = None
        self.page = target
        self.last_method = method
        return rows
