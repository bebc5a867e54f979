"""Export of a BEAR book as one file per import kind, in exactly the import shapes.

Every kind's table is written to ``<out_dir>/<kind>.<fmt>`` from one consistent snapshot,
with the columns and row order of its shape. Money stays DECIMAL (in CSV, its exact decimal
text). A CSV is meant to be opened by people, so a text cell that a spreadsheet would take for
a formula — one beginning with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return — is
written with a single quote ``'`` before it (OWASP's advice against CSV injection); numbers,
amounts and dates are never touched. Such a cell does not import back as it was: a round trip
uses ``raw=True`` (``bear export --raw``) or Parquet, which is never neutralised (no
spreadsheet opens it).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import duckdb

from bear.db import Database
from bear.errors import BearError
from bear.io.shapes import SHAPES, Shape
from bear.io.sql import first_line, ident, lit

log = logging.getLogger(__name__)

__all__ = ["FORMATS", "FORMULA_START", "export_files", "neutral_sql"]

FORMATS = ("csv", "parquet")

FORMULA_START: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a text cell as a formula (OWASP: CSV
injection); such a cell is written with ``'`` before it unless the export is raw."""


def neutral_sql(expr: str) -> str:
    """SQL of text ``expr`` made safe to open in a spreadsheet: ``'`` before it when it begins
    with one of ``FORMULA_START``, unchanged otherwise (NULL stays NULL)."""
    starts = ", ".join(f"chr({ord(c)})" for c in FORMULA_START)
    return f"CASE WHEN left({expr}, 1) IN ({starts}) THEN '''' || {expr} ELSE {expr} END"


def _select(shape: Shape, neutralise: bool) -> str:
    """The COPY's column list (over the table as ``t``): text columns neutralised when asked,
    the others as they are."""
    cols = []
    for c in shape.columns:
        value, text = f"t.{ident(c.name)}", c.sql_type == "VARCHAR"
        cols.append(f"{neutral_sql(value) if neutralise and text else value} AS {ident(c.name)}")
    return ", ".join(cols)


def _order(shape: Shape) -> str:
    """The shape's row order over the stored values (never the neutralised text)."""
    return ", ".join(f"t.{ident(c.strip())}" for c in shape.order_by.split(","))


def export_files(
    db: Database, out_dir: str | os.PathLike[str], fmt: str = "csv", *, raw: bool = False
) -> dict[str, Path]:
    """Write every kind's table to ``out_dir/<kind>.<fmt>`` in the import shapes.

    :param db: the database to export.
    :param out_dir: the folder to write into (created if needed; an existing file is refused).
    :param fmt: ``"csv"`` or ``"parquet"``.
    :param raw: write CSV text cells exactly as stored, formula-like ones included (for a
        program or a round trip); by default they are neutralised (see the module). Parquet
        is always written as stored.
    :returns: the path written per kind, in ``KINDS`` order.
    """
    if fmt not in FORMATS:
        raise BearError(f"unknown export format {fmt!r}; expected csv or parquet")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise BearError(f"export folder {str(out)!r} is a file, not a folder; nothing was written")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BearError(
            f"cannot create the export folder {str(out)!r}: {exc.strerror or exc}"
        ) from None
    options = "FORMAT csv, HEADER true, DELIMITER ','" if fmt == "csv" else "FORMAT parquet"
    neutralise = fmt == "csv" and not raw
    written: dict[str, Path] = {}
    # A transaction, though nothing is written to the book: every file sees the same snapshot.
    with db.transaction() as tx:
        for kind, shape in SHAPES.items():
            path = out / f"{kind}.{fmt}"
            try:
                tx.execute(
                    f"COPY (SELECT {_select(shape, neutralise)} FROM {shape.table} t "
                    f"ORDER BY {_order(shape)}) TO {lit(str(path))} ({options})"
                )
            except duckdb.Error as exc:
                raise BearError(f"cannot write {str(path)!r}: {first_line(exc)}") from None
            written[kind] = path
    log.info("exported %d files to %s", len(written), out)
    return written
