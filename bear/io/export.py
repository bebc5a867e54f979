"""Export of a BEAR book as one file per import kind, in exactly the import shapes.

Every kind's table is written to ``<out_dir>/<kind>.<fmt>`` from one consistent snapshot,
with the columns and row order of its shape, so an export imports back. Money stays DECIMAL
(in CSV, its exact decimal text).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import duckdb

from bear.db import Database
from bear.errors import BearError
from bear.io.shapes import SHAPES
from bear.io.sql import first_line, ident, lit

log = logging.getLogger(__name__)

__all__ = ["FORMATS", "export_files"]

FORMATS = ("csv", "parquet")


def export_files(
    db: Database, out_dir: str | os.PathLike[str], fmt: str = "csv"
) -> dict[str, Path]:
    """Write every kind's table to ``out_dir/<kind>.<fmt>`` in the import shapes.

    :param db: the database to export.
    :param out_dir: the folder to write into (created if needed).
    :param fmt: ``"csv"`` or ``"parquet"``.
    :returns: the path written per kind, in ``KINDS`` order.
    """
    if fmt not in FORMATS:
        raise BearError(f"unknown export format {fmt!r}; expected csv or parquet")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BearError(
            f"cannot create the export folder {str(out)!r}: {exc.strerror or exc}"
        ) from None
    options = "FORMAT csv, HEADER true, DELIMITER ','" if fmt == "csv" else "FORMAT parquet"
    written: dict[str, Path] = {}
    # A transaction, though nothing is written to the book: every file sees the same snapshot.
    with db.transaction() as tx:
        for kind, shape in SHAPES.items():
            path = out / f"{kind}.{fmt}"
            cols = ", ".join(ident(n) for n in shape.names)
            try:
                tx.execute(
                    f"COPY (SELECT {cols} FROM {shape.table} ORDER BY {shape.order_by}) "
                    f"TO {lit(str(path))} ({options})"
                )
            except duckdb.Error as exc:
                raise BearError(f"cannot write {str(path)!r}: {first_line(exc)}") from None
            written[kind] = path
    log.info("exported %d files to %s", len(written), out)
    return written
