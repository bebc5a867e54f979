"""All-or-nothing import of CSV and Parquet files into a BEAR database, in one transaction.

Importing works in three set-based steps, never one Python call per row: **stage** each file
as text (``bear.io.reader``); **validate** every row inside the one write transaction
(``bear.io.validate``); **write**, when there is no problem and this is not a dry run, one
``INSERT … SELECT`` per table in dependency order, in that same transaction, and refresh the
item aggregates of the events whose items arrived. Otherwise ``ImportProblemError`` lists the
problems (``file``, ``row``, ``column``, ``problem``) and nothing is written. The caller
passes the database and what to call after a write (the workspace's ``refresh``); this module
knows nothing of the workspace.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TypedDict

import duckdb

from bear.db import Database, item_stats
from bear.errors import BearError, ImportProblemError
from bear.io.reader import ImportFile, stage
from bear.io.shapes import KINDS, SHAPES
from bear.io.sql import PREFIX, ident
from bear.io.validate import MAX_PROBLEMS, make_typed, validate

log = logging.getLogger(__name__)

__all__ = ["ImportReport", "import_files"]


class ImportReport(TypedDict):
    """What an import did: the rows of each kind's file, and whether it was a dry run."""

    rows: dict[str, int]
    dry_run: bool


def import_files(
    db: Database,
    *,
    dry_run: bool = False,
    after_write: Callable[[], None] | None = None,
    **files: str | os.PathLike[str],
) -> ImportReport:
    """Import CSV or Parquet files (by extension), all or nothing, in one transaction.

    :param db: the database to import into.
    :param dry_run: validate only; write nothing.
    :param after_write: called once the rows are committed (not on a dry run), e.g. to drop
        cached eligibility.
    :param files: a path per kind (``KINDS``: ``events=``, ``items=``, ``projects=`` …).
    :returns: ``{"rows": {kind: rows in its file}, "dry_run": dry_run}``.
    :raises ImportProblemError: when any file has any problem (``problems`` lists them as
        ``{file, row, column, problem}``; ``row`` is the 1-based data row, ``None`` for the file).
    """
    unknown = sorted(k for k in files if k not in SHAPES)
    if unknown:
        raise BearError(
            f"unknown import kind(s) {', '.join(unknown)}; expected: {', '.join(KINDS)}"
        )
    given = {
        kind: ImportFile(kind, os.fspath(path), order)
        for order, kind in enumerate(KINDS)
        if (path := files.get(kind)) not in (None, "")
    }
    if not given:
        raise BearError(f"nothing to import: give a file for at least one of {', '.join(KINDS)}")
    cur = db.cursor()
    try:
        for f in given.values():
            stage(cur, f)
        with db.transaction() as tx:  # one transaction, serialised with the process's writers
            for f in given.values():
                if f.stage is not None and not f.malformed:
                    make_typed(tx, f)
            total, n_files, problems = validate(tx, given)
            if total:
                message = _summary(total, n_files, len(given), len(problems), dry_run)
                raise ImportProblemError(message, problems=problems)
            if not dry_run:
                for f in given.values():
                    _insert(tx, f)
                items = given.get("items")
                if items is not None:
                    item_stats.refresh(tx, f"SELECT billing_event_id FROM {items.typed}")
    finally:
        _drop_temp_tables(cur)
    rows = {kind: f.rows for kind, f in given.items()}
    if not dry_run and after_write is not None:
        after_write()
    log.info("%s %s", "validated (dry run)" if dry_run else "imported", rows)
    return {"rows": rows, "dry_run": bool(dry_run)}


def _insert(cur: duckdb.DuckDBPyConnection, f: ImportFile) -> None:
    shape = f.shape
    cols: list[str] = []
    exprs: list[str] = []
    for col in shape.columns:
        if col.name in f.present:
            expr = f"t.{ident(col.name)}"
            exprs.append(f"coalesce({expr}, {col.default})" if col.default else expr)
        elif col.absent:
            exprs.append(col.absent)
        else:
            continue  # the table's default applies
        cols.append(ident(col.name))
    order = ", ".join(f"t.{ident(c.strip())}" for c in shape.order_by.split(","))
    cur.execute(
        f"INSERT INTO {shape.table} ({', '.join(cols)}) SELECT {', '.join(exprs)} FROM {f.typed} t ORDER BY {order}"
    )


def _summary(total: int, n_files: int, n_given: int, listed: int, dry_run: bool) -> str:
    shown = f" (the first {MAX_PROBLEMS} are listed)" if total > listed else ""
    outcome = "dry run, nothing would be written" if dry_run else "nothing was imported"
    return (
        f"{total} problem{'s' if total != 1 else ''} in {n_files} of {n_given} import "
        f"file{'s' if n_given != 1 else ''}{shown}; {outcome}"
    )


def _drop_temp_tables(cur: duckdb.DuckDBPyConnection) -> None:
    names = cur.execute(
        "SELECT table_name FROM duckdb_tables() WHERE temporary AND starts_with(table_name, $p)",
        {"p": PREFIX},
    ).fetchall()
    for (name,) in names:
        cur.execute(f"DROP TABLE IF EXISTS {ident(name)}")
