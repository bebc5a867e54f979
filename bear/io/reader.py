"""Reading import files: each CSV or Parquet file is staged, as text, into a temporary table.

DuckDB reads each file into a temporary table of VARCHAR columns (CSV with an explicit
dialect; Parquet values cast to text), so nothing about a value is lost before validation.
A row's number is its position in the file (1-based, header excluded). File-level problems —
not found, wrong type, empty, unknown or missing columns, and malformed CSV rows (ragged,
unterminated quote, bad encoding, listed from DuckDB's rejects table) — are noted on the
``ImportFile``; row values are checked later (``bear.io.validate``). Two kinds of value are
refused right after staging, row by row in SQL, before anything is typed: text holding a NUL
byte, and a Parquet value that is not a single value (a list, struct, map, union or array);
a file holding either is not checked further (``refuse_unsafe``).
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from bear.io.shapes import SHAPES, Shape
from bear.io.sql import PREFIX, first_line, ident, lit

log = logging.getLogger(__name__)


@dataclass
class ImportFile:
    """One import file being staged: what was found about it, and where its rows went."""

    kind: str
    path: str
    order: int
    problems: list[tuple[int | None, int, str | None, str]] = field(default_factory=list)
    present: set[str] = field(default_factory=set)  # the shape's columns the file has
    stage: str | None = None  # temp table of staged text values, when the rows could be read
    typed: str | None = None  # temp table of typed values
    rows: int = 0
    malformed: bool = False  # structure broken (CSV) or unsafe values: not checked further
    nested: dict[str, str] = field(default_factory=dict)  # known column -> its nested type
    refused: str | None = None  # temp table of (row, o, col, problem): NUL bytes, nested values

    @property
    def shape(self) -> Shape:
        return SHAPES[self.kind]

    def problem(self, row: int | None, column: str | None, text: str) -> None:
        order = self.shape.names.index(column) if column in self.shape.names else -1
        self.problems.append((row, order, column, text))

    @property
    def keys_known(self) -> bool:
        """The file was read and has its key columns: references into it can be checked."""
        return (
            self.stage is not None
            and not self.malformed
            and all(k in self.present for k in self.shape.key)
        )


def map_header(f: ImportFile, header: list[str]) -> list[str]:
    """Staged column names for the file's columns (spec names for known ones); notes problems."""
    names = f.shape.names
    staged: list[str] = []
    seen: set[str] = set()
    for i, original in enumerate(header):
        name = original.strip().lower()
        if name in names and name not in seen:
            seen.add(name)
            f.present.add(name)
            staged.append(name)
            continue
        staged.append(f"_x{i}")
        if not name:
            f.problem(None, None, f"column {i + 1} of the header has no name")
        elif name in seen:
            f.problem(None, original, "column appears more than once in the header")
        else:
            f.problem(None, original, f"unknown column (expected columns: {', '.join(names)})")
    for col in f.shape.columns:
        if col.required and col.name not in f.present:
            f.problem(None, col.name, "required column is missing")
    return staged


def _stage_csv(cur: duckdb.DuckDBPyConnection, f: ImportFile, table: str) -> None:
    try:
        # Undecodable bytes are replaced here; DuckDB reports the lines holding them.
        with open(f.path, encoding="utf-8-sig", errors="replace", newline="") as fh:
            header = next(csv.reader(fh), None)
    except csv.Error as exc:
        f.problem(None, None, f"malformed CSV header: {exc}")
        return
    if header is None or not any(h.strip() for h in header):
        f.problem(None, None, "empty file: no header row")
        return
    staged = map_header(f, header)
    originals = dict(zip(staged, header, strict=True))
    columns = "{" + ", ".join(f"{lit(n)}: 'VARCHAR'" for n in staged) + "}"
    options = (
        f"header = true, auto_detect = false, columns = {columns}, delim = ',', quote = '\"', "
        "escape = '\"', allow_quoted_nulls = false, strict_mode = true"
    )
    try:
        cur.execute(
            f"CREATE TEMP TABLE {table} AS SELECT * FROM read_csv($path, {options})",
            {"path": f.path},
        )
    except duckdb.InvalidInputException as exc:
        f.malformed = True
        _stage_rejects(cur, f, table, options, originals, str(exc))
        return
    except duckdb.Error as exc:
        f.problem(None, None, f"cannot be read: {first_line(exc)}")
        return
    f.stage = table


def _stage_rejects(
    cur: duckdb.DuckDBPyConnection,
    f: ImportFile,
    table: str,
    options: str,
    originals: dict[str, str],
    strict_error: str,
) -> None:
    """Read a malformed CSV again, keeping DuckDB's list of rejected lines as problems."""
    rejects, scans = f"{table}_rej", f"{table}_scan"
    found: list[tuple[Any, ...]] = []
    try:
        cur.execute(
            f"CREATE TEMP TABLE {table} AS SELECT * FROM read_csv($path, {options}, store_rejects = true, "
            f"rejects_table = {lit(rejects)}, rejects_scan = {lit(scans)})",
            {"path": f.path},
        )
        found = cur.execute(
            f"SELECT line, column_name, error_type, error_message FROM {rejects} ORDER BY line, column_idx"
        ).fetchall()
    except duckdb.Error:
        log.debug("re-reading %s for its rejected lines failed", f.path, exc_info=True)
    finally:
        for t in (table, rejects, scans):
            cur.execute(f"DROP TABLE IF EXISTS {t}")
    for line, column_name, error_type, message in found:
        column = column_name if column_name in f.shape.names else originals.get(column_name or "")
        counts = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", message or "")
        expected = f" (expected {counts.group(1)}, found {counts.group(2)})" if counts else ""
        text = {
            "MISSING COLUMNS": f"malformed CSV (line {line}): too few values{expected}",
            "TOO MANY COLUMNS": f"malformed CSV (line {line}): too many values{expected}",
            "UNQUOTED VALUE": f"malformed CSV (line {line}): unterminated or misplaced quote",
            "INVALID ENCODING": f"line {line} is not UTF-8 text",
        }.get(error_type, f"malformed CSV (line {line}): {message}")
        f.problem(int(line) - 1, column, text)
    if not found:
        match = re.search(r"Line: (\d+)", strict_error)
        row = int(match.group(1)) - 1 if match else None
        f.problem(row, None, f"malformed CSV: {first_line(strict_error)}")
    f.problem(None, None, "the file's values were not checked further: fix its structure first")


_NESTED = {"list": "list", "array": "array", "struct": "struct", "map": "map", "union": "union"}
"""DuckDB type ids of values that are not a single value, and what a message calls them."""


def _stage_parquet(cur: duckdb.DuckDBPyConnection, f: ImportFile, table: str) -> None:
    try:
        described = cur.execute(
            "SELECT * FROM read_parquet($path) LIMIT 0", {"path": f.path}
        ).description
    except duckdb.Error as exc:
        f.problem(None, None, f"not a readable Parquet file: {first_line(exc)}")
        return
    names = [row[0] for row in described or ()]
    if not names:
        f.problem(None, None, "empty file: no columns")
        return
    staged = map_header(f, names)
    for (_, dtype, *_), name in zip(described, staged, strict=True):
        if getattr(dtype, "id", None) in _NESTED and name in f.shape.names:
            f.nested[name] = f"{_NESTED[dtype.id]} ({dtype})"
    select = ", ".join(
        f"CAST({ident(orig)} AS VARCHAR) AS {ident(name)}"
        for orig, name in zip(names, staged, strict=True)
    )
    try:
        cur.execute(
            f"CREATE TEMP TABLE {table} AS SELECT {select} FROM read_parquet($path)",
            {"path": f.path},
        )
    except duckdb.Error as exc:
        f.problem(None, None, f"cannot be read: {first_line(exc)}")
        return
    f.stage = table


def stage(cur: duckdb.DuckDBPyConnection, f: ImportFile) -> None:
    """Read one file into a temp table of text values; file-level problems are noted on ``f``."""
    path = Path(f.path)
    suffix = path.suffix.lower()
    if not path.exists():
        f.problem(None, None, "file not found")
        return
    if path.is_dir():
        f.problem(None, None, "is a folder, not a file")
        return
    if not path.is_file():
        # a device or a pipe: reading it could block or never end
        f.problem(None, None, "not a regular file")
        return
    if "*" in f.path or "?" in f.path:
        # DuckDB would read every file the name matches as a pattern.
        f.problem(None, None, "file names with * or ? cannot be imported: rename the file")
        return
    if suffix not in (".csv", ".parquet"):
        f.problem(
            None,
            None,
            f"unsupported file type {suffix or '(no extension)'!r}: use .csv or .parquet",
        )
        return
    try:
        with open(path, "rb") as fh:
            empty = not fh.read(1)
    except OSError as exc:
        f.problem(None, None, f"cannot be read: {exc.strerror or exc}")
        return
    if empty:
        f.problem(None, None, "empty file")
        return
    table = f"{PREFIX}s_{f.kind}"
    cur.execute(f"DROP TABLE IF EXISTS {table}")
    if suffix == ".csv":
        _stage_csv(cur, f, table)
    else:
        _stage_parquet(cur, f, table)
    if f.stage is not None:
        f.rows = int(cur.execute(f"SELECT count(*) FROM {f.stage}").fetchall()[0][0])
        refuse_unsafe(cur, f)


def refuse_unsafe(cur: duckdb.DuckDBPyConnection, f: ImportFile) -> None:
    """Every staged value BEAR refuses to store, one problem per row and column, in SQL: text
    holding a NUL byte (it would cut the text short in other programs), and any value of a
    nested Parquet column (only single values are imported). A file with any is not checked
    further; its problems are in temp table ``f.refused``."""
    assert f.stage is not None
    checks = []
    for name in f.shape.names:
        if name not in f.present:
            continue
        c, o = ident(name), f.shape.names.index(name)
        if name in f.nested:
            what = lit(
                f"a {f.nested[name]} value, not a single value: lists, structs, maps and "
                "unions cannot be imported"
            )
            checks.append((o, name, f"{c} IS NOT NULL", what))
        else:
            at = f"strpos({c}, chr(0))"
            what = (
                f"'contains a NUL byte (character ' || {at}::VARCHAR || '); "
                "text cannot hold NUL bytes'"
            )
            checks.append((o, name, f"{at} > 0", what))
    if not checks:
        return
    structs = ", ".join(
        f"{{'o': {o}, 'c': {lit(name)}, 'p': CASE WHEN {pred} THEN {what} END}}"
        for o, name, pred, what in checks
    )
    any_bad = " OR ".join(f"coalesce({pred}, false)" for _, _, pred, _ in checks)
    table = f"{PREFIX}r_{f.kind}"
    cur.execute(f"DROP TABLE IF EXISTS {table}")
    cur.execute(
        f"CREATE TEMP TABLE {table} AS SELECT _row, x.o, x.c, x.p FROM (SELECT rowid + 1 AS _row, "
        f"unnest([{structs}]) AS x FROM {f.stage} WHERE {any_bad}) WHERE x.p IS NOT NULL"
    )
    if cur.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]:
        f.refused, f.malformed = table, True
        f.problem(None, None, "the file's values were not checked further: fix these values first")
