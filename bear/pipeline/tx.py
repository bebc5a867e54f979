"""Write transactions that may meet a conflict: bounded retries, and one-statement writes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import duckdb

from bear.db import Database
from bear.errors import BearError

CONFLICT_RETRIES = 5
T = TypeVar("T")


def retrying(fn: Callable[..., T], *args: Any) -> T:
    """Run a transaction function, retrying a bounded number of times on write conflicts
    (DuckDB fails the second writer of a row at once); a lasting conflict is a plain error."""
    for attempt in range(CONFLICT_RETRIES):
        try:
            return fn(*args)
        except duckdb.TransactionException as exc:
            if attempt == CONFLICT_RETRIES - 1:
                raise BearError(
                    f"the database stayed busy after {CONFLICT_RETRIES} tries: {exc}"
                ) from exc
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def write(db: Database, sql: str, params: Any, *, rule_neutral: bool = False) -> None:
    """One small write as a transaction of its own, serialised with the process's other writers
    (``rule_neutral``: a write no rule reads, see ``Database.transaction``)."""

    def work() -> None:
        with db.transaction(rule_neutral=rule_neutral) as tx:
            tx.execute(sql, params)

    retrying(work)


def drop_temp(cur: duckdb.DuckDBPyConnection, *tables: str, views: tuple[str, ...] = ()) -> None:
    """Drop temp ``tables`` (and ``views``) of ``cur`` that exist: a temp table lives as long
    as its cursor (the thread's), so a stage's million-row working tables would otherwise hold
    their memory until the next run replaced them."""
    for v in views:
        cur.execute(f"DROP VIEW IF EXISTS temp.{v}")
    for t in tables:
        cur.execute(f"DROP TABLE IF EXISTS temp.{t}")
