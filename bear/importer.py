"""CSV/Parquet import (all-or-nothing, row-level error report) and export of the same shapes.

A file of each *kind* (``events``, ``items``, ``projects`` …) has the columns of its table
(see ``SHAPES``). Importing works in three set-based steps, never one Python call per row:

1. **Stage**: DuckDB reads each file into a temporary table of VARCHAR columns (CSV with an
   explicit dialect; Parquet values cast to text), so nothing about a value is lost yet. A row's
   number is its position in the file (1-based, header excluded). Malformed CSV rows (ragged,
   unterminated quote, bad encoding) are listed from DuckDB's rejects table.
2. **Validate** (inside the one write transaction): typed copies of the staged tables are made
   with ``TRY_CAST`` guarded by strict formats; SQL then lists every problem — missing or
   malformed values, unknown currencies and categories, duplicate keys (within a file and
   against the database), references to rows neither in the files nor in the database.
3. **Write**: when there is no problem and this is not a dry run, ``INSERT … SELECT`` per table,
   in dependency order, in that same transaction. Otherwise ``ImportProblemError`` lists the
   problems (``file``, ``row``, ``column``, ``problem``) and nothing is written.

``export_files`` writes every kind's table in exactly these shapes, so an export imports back.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from bear.db import item_stats
from bear.errors import BearError, ImportProblemError

log = logging.getLogger(__name__)

KINDS = (
    "companies",
    "company_currencies",
    "accounting_periods",
    "accounts",
    "products",
    "projects",
    "events",
    "items",
)

MAX_PROBLEMS = 1000
"""At most this many problems are reported (the message gives the full count)."""

CATEGORIES = ("timecard", "expense", "milestone", "misc_adjustment", "budget")
FORMATS = ("csv", "parquet")

_PREFIX = "_bear_imp_"


@dataclass(frozen=True)
class Column:
    """One column of an import shape.

    ``type`` is one of ``int``, ``bigint``, ``dec2`` (DECIMAL(18,2)), ``dec6`` (DECIMAL(18,6)),
    ``date``, ``timestamp``, ``bool``, ``text``, ``currency``, ``category``. A ``required``
    column must be in the file and hold a value in every row. ``default`` (SQL) replaces an
    empty value or a column left out; ``absent`` (SQL over the typed row ``t``) is used only
    when the column is left out. ``ref`` names the kind (or, with ``ref_table`` only, the
    table) whose ``id`` a value must be.
    """

    name: str
    type: str
    required: bool = False
    default: str | None = None
    absent: str | None = None
    ref: str | None = None
    ref_table: str | None = None


@dataclass(frozen=True)
class Check:
    """A row rule beyond the column types: rows of typed table ``t`` matching ``where`` fail."""

    column: str
    where: str
    message: str


@dataclass(frozen=True)
class Shape:
    """The file shape of one kind: its table, columns, key and extra row rules."""

    kind: str
    table: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ("id",)
    checks: tuple[Check, ...] = ()
    order_by: str = "id"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


_C = Column
SHAPES: dict[str, Shape] = {
    s.kind: s
    for s in (
        Shape(
            "companies",
            "companies",
            (
                _C("id", "int", required=True),
                _C("name", "text", required=True),
                _C("home_currency", "currency", required=True),
            ),
        ),
        Shape(
            "company_currencies",
            "company_currencies",
            (
                _C("company_id", "int", required=True, ref="companies"),
                _C("currency", "currency", required=True),
            ),
            key=("company_id", "currency"),
            order_by="company_id, currency",
        ),
        Shape(
            "accounting_periods",
            "accounting_periods",
            (
                _C("company_id", "int", required=True, ref="companies"),
                _C("start_date", "date", required=True),
                _C("end_date", "date", required=True),
                _C("closed", "bool", default="false"),
            ),
            key=("company_id", "start_date"),
            checks=(
                Check(
                    "end_date",
                    "t.end_date < t.start_date",
                    "'end_date ' || t.end_date::VARCHAR || ' is before start_date ' || t.start_date::VARCHAR",
                ),
            ),
            order_by="company_id, start_date",
        ),
        Shape(
            "accounts",
            "accounts",
            (
                _C("id", "int", required=True),
                _C("name", "text", required=True),
                _C("billing_email", "text"),
                _C("active", "bool", default="true"),
            ),
        ),
        Shape(
            "products",
            "products",
            (
                _C("id", "int", required=True),
                _C("name", "text", required=True),
                _C("revenue_gl", "text", required=True),
            ),
        ),
        Shape(
            "projects",
            "projects",
            (
                _C("id", "int", required=True),
                _C("name", "text", required=True),
                _C("account_id", "int", ref="accounts"),
                _C("company_id", "int", ref="companies"),
                _C("region", "text"),
                _C("practice", "text"),
                _C("grp", "text"),
                _C("currency", "currency", required=True),
                _C("billable", "bool", default="true"),
                _C("exclude_from_billing", "bool", default="false"),
                _C("active", "bool", default="true"),
                _C("billing_cap", "dec2"),
            ),
            checks=(
                Check(
                    "billing_cap",
                    "t.billing_cap < 0",
                    "'billing_cap must be zero or more, not ' || t.billing_cap::VARCHAR",
                ),
            ),
        ),
        Shape(
            "events",
            "billing_events",
            (
                _C("id", "bigint", required=True),
                _C("name", "text", required=True),
                _C("batch_id", "int"),
                _C("project_id", "int", required=True, ref="projects"),
                _C(
                    "account_id",
                    "int",
                    ref="accounts",
                    absent="(SELECT p.account_id FROM projects p WHERE p.id = t.project_id)",
                ),
                _C(
                    "company_id",
                    "int",
                    ref="companies",
                    absent="(SELECT p.company_id FROM projects p WHERE p.id = t.project_id)",
                ),
                _C("currency", "currency", required=True),
                _C("event_date", "date", required=True),
                _C("invoice_date", "date"),
                _C("summary_amount", "dec2", required=True),
                _C("approved", "bool", default="false"),
                _C("released", "bool", default="false"),
                _C("released_at", "timestamp"),
                _C("release_run_id", "bigint", ref_table="runs"),
                _C("invoiced", "bool", default="false"),
                _C("document_id", "bigint"),
            ),
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
        Shape(
            "items",
            "billing_event_items",
            (
                _C("id", "bigint", required=True),
                _C("billing_event_id", "bigint", required=True, ref="events"),
                _C("category", "category", required=True),
                _C("description", "text"),
                _C("quantity", "dec6", required=True),
                _C("unit_price", "dec6", required=True),
                _C("amount", "dec2", required=True),
                _C("product_id", "int", ref="products"),
                _C("source_id", "text"),
                _C("source_changed", "bool", default="false"),
                _C("billing_hold", "bool", default="false"),
            ),
            checks=(
                Check(
                    "billing_event_id",
                    "t.billing_event_id IN (SELECT id FROM billing_events WHERE released)",
                    "'billing event ' || t.billing_event_id::VARCHAR || ' is already released; "
                    "items cannot be added to it'",
                ),
            ),
            # Items stored in event order let DuckDB skip row groups by event id range.
            order_by="billing_event_id, id",
        ),
    )
}
assert tuple(SHAPES) == KINDS

_SQL_TYPES = {
    "int": "INTEGER",
    "bigint": "BIGINT",
    "dec2": "DECIMAL(18, 2)",
    "dec6": "DECIMAL(18, 6)",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "bool": "BOOLEAN",
    "text": "VARCHAR",
    "currency": "VARCHAR",
    "category": "VARCHAR",
}
_DECIMALS = {"dec2": (18, 2), "dec6": (18, 6)}
_NOUNS = {
    "companies": "company",
    "accounts": "account",
    "products": "product",
    "projects": "project",
    "events": "billing event",
}
_BOOL_WORDS = "('true', 'false', 't', 'f', 'yes', 'no', 'y', 'n', '1', '0')"


# -- small SQL helpers -----------------------------------------------------------------------
def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    """A SQL string literal (single quotes doubled)."""
    return "'" + text.replace("'", "''") + "'"


def _shown(v: str) -> str:
    """SQL showing value ``v`` in a message: quoted, cut at 40 characters."""
    return f"'''' || CASE WHEN length({v}) > 40 THEN left({v}, 37) || '...' ELSE {v} END || ''''"


_INT_RE = "'[+-]?[0-9]+(\\.0*)?'"
_DATE_RE = "'[0-9]{4}-[0-9]{2}-[0-9]{2}([ T]00:00(:00(\\.0+)?)?)?'"
_TIMESTAMP_RE = "'[0-9]{4}-[0-9]{2}-[0-9]{2}([ T][0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]{1,9})?)?)?'"


def _raw_name(name: str) -> str:
    """Name, in the typed table, of a non-text column's trimmed source text."""
    return f"_raw_{name}"


def _value_sql(col: Column, v: str) -> str:
    """SQL of source text ``v`` (trimmed, never empty) as the column's type; NULL when invalid.

    Every format is checked by one regular expression before the cast: casts alone are lenient
    (``'1.5'`` would become the integer 2, ``'1.005'`` the amount 1.01)."""
    sql_type = _SQL_TYPES[col.type]
    if col.type == "text":
        return v
    if col.type in ("int", "bigint"):
        return f"CASE WHEN regexp_full_match({v}, {_INT_RE}) THEN TRY_CAST({v} AS {sql_type}) END"
    if col.type in _DECIMALS:
        p, s = _DECIMALS[col.type]
        # At most p - s digits before the point and s after it (leading and trailing zeros free).
        pattern = f"'[+-]?0*[0-9]{{0,{p - s}}}(\\.[0-9]{{0,{s}}}0*)?'"
        return f"CASE WHEN regexp_full_match({v}, {pattern}) THEN TRY_CAST({v} AS {sql_type}) END"
    if col.type == "date":
        return f"CASE WHEN regexp_full_match({v}, {_DATE_RE}) THEN TRY_CAST({v} AS DATE) END"
    if col.type == "timestamp":
        return (
            f"CASE WHEN regexp_full_match({v}, {_TIMESTAMP_RE}) THEN TRY_CAST({v} AS TIMESTAMP) END"
        )
    if col.type == "bool":
        return f"CASE WHEN lower({v}) IN {_BOOL_WORDS} THEN TRY_CAST(lower({v}) AS BOOLEAN) END"
    if col.type == "currency":
        return f"CASE WHEN {v} IN (SELECT code FROM currencies) THEN {v} END"
    if col.type == "category":
        return f"CASE WHEN {v} IN ({', '.join(_lit(c) for c in CATEGORIES)}) THEN {v} END"
    raise AssertionError(f"unknown column type {col.type!r}")


def _invalid_sql(col: Column, v: str) -> str:
    """SQL of the message for source text ``v`` that ``_value_sql`` refused."""
    q = _shown(v)
    if col.type in ("int", "bigint"):
        return (
            f"CASE WHEN regexp_full_match({v}, {_INT_RE}) "
            f"THEN {q} || ' is out of range for {_SQL_TYPES[col.type]}' "
            f"ELSE {q} || ' is not a whole number' END"
        )
    if col.type in _DECIMALS:
        p, s = _DECIMALS[col.type]
        scale = f"length(rtrim(regexp_extract({v}, '\\.([0-9]*)$', 1), '0'))"
        digits = f"length(ltrim(regexp_extract({v}, '^[+-]?([0-9]*)', 1), '0'))"
        return (
            f"CASE WHEN NOT regexp_full_match({v}, '[+-]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)') "
            f"THEN {q} || ' is not a number' "
            f"WHEN {scale} > {s} THEN {q} || ' has more than {s} decimal places' "
            f"WHEN {digits} > {p - s} THEN {q} || ' is too large for DECIMAL({p},{s})' "
            f"ELSE {q} || ' is not a number' END"
        )
    if col.type == "date":
        return f"{q} || ' is not a valid date (expected YYYY-MM-DD)'"
    if col.type == "timestamp":
        return f"{q} || ' is not a valid timestamp (expected YYYY-MM-DD HH:MM:SS)'"
    if col.type == "bool":
        return f"{q} || ' is not true or false'"
    if col.type == "currency":
        return f"'unknown currency ' || {q} || ' (not in the currencies table)'"
    if col.type == "category":
        return f"'unknown category ' || {q} || ' (expected one of {', '.join(CATEGORIES)})'"
    raise AssertionError(f"unknown column type {col.type!r}")


_MISSING = "'missing value in a required column'"


def _column_problem(col: Column) -> tuple[str, str] | None:
    """(predicate, message) SQL over typed row ``t`` for a bad value of a present column."""
    c = f"t.{_ident(col.name)}"
    if col.type == "text":
        if not col.required:
            return None
        return f"({c} IS NULL OR trim({c}) = '')", _MISSING
    raw = f"t.{_ident(_raw_name(col.name))}"
    invalid = f"({raw} IS NOT NULL AND {c} IS NULL)"
    if col.required:
        return (
            f"({raw} IS NULL OR {invalid})",
            f"CASE WHEN {raw} IS NULL THEN {_MISSING} ELSE {_invalid_sql(col, raw)} END",
        )
    return invalid, _invalid_sql(col, raw)


# -- staging ---------------------------------------------------------------------------------
@dataclass
class _File:
    """One import file being staged: what was found about it, and where its rows went."""

    kind: str
    path: str
    order: int
    problems: list[tuple[int | None, int, str | None, str]] = field(default_factory=list)
    present: set[str] = field(default_factory=set)  # the shape's columns the file has
    stage: str | None = None  # temp table of staged text values, when the rows could be read
    typed: str | None = None  # temp table of typed values
    rows: int = 0
    malformed: bool = False  # CSV structure broken: row numbers cannot be trusted

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


def _map_header(f: _File, header: list[str]) -> list[str]:
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


def _first_line(error: BaseException | str) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _stage_csv(cur: duckdb.DuckDBPyConnection, f: _File, table: str) -> None:
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
    staged = _map_header(f, header)
    originals = dict(zip(staged, header, strict=True))
    columns = "{" + ", ".join(f"{_lit(n)}: 'VARCHAR'" for n in staged) + "}"
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
        f.problem(None, None, f"cannot be read: {_first_line(exc)}")
        return
    f.stage = table


def _stage_rejects(
    cur: duckdb.DuckDBPyConnection,
    f: _File,
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
            f"rejects_table = {_lit(rejects)}, rejects_scan = {_lit(scans)})",
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
        f.problem(row, None, f"malformed CSV: {_first_line(strict_error)}")
    f.problem(None, None, "the file's values were not checked further: fix its structure first")


def _stage_parquet(cur: duckdb.DuckDBPyConnection, f: _File, table: str) -> None:
    try:
        described = cur.execute(
            "DESCRIBE SELECT * FROM read_parquet($path)", {"path": f.path}
        ).fetchall()
    except duckdb.Error as exc:
        f.problem(None, None, f"not a readable Parquet file: {_first_line(exc)}")
        return
    names = [row[0] for row in described]
    if not names:
        f.problem(None, None, "empty file: no columns")
        return
    staged = _map_header(f, names)
    select = ", ".join(
        f"CAST({_ident(orig)} AS VARCHAR) AS {_ident(name)}"
        for orig, name in zip(names, staged, strict=True)
    )
    try:
        cur.execute(
            f"CREATE TEMP TABLE {table} AS SELECT {select} FROM read_parquet($path)",
            {"path": f.path},
        )
    except duckdb.Error as exc:
        f.problem(None, None, f"cannot be read: {_first_line(exc)}")
        return
    f.stage = table


def _stage(cur: duckdb.DuckDBPyConnection, f: _File) -> None:
    """Read one file into a temp table of text values; file-level problems are noted on ``f``."""
    path = Path(f.path)
    suffix = path.suffix.lower()
    if not path.exists():
        f.problem(None, None, "file not found")
        return
    if path.is_dir():
        f.problem(None, None, "is a folder, not a file")
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
    table = f"{_PREFIX}s_{f.kind}"
    cur.execute(f"DROP TABLE IF EXISTS {table}")
    if suffix == ".csv":
        _stage_csv(cur, f, table)
    else:
        _stage_parquet(cur, f, table)
    if f.stage is not None:
        f.rows = int(cur.execute(f"SELECT count(*) FROM {f.stage}").fetchall()[0][0])


# -- validation ------------------------------------------------------------------------------
def _make_typed(cur: duckdb.DuckDBPyConnection, f: _File) -> None:
    """Typed copy of the staged rows: every column of the shape (NULL when absent or invalid),
    and for present non-text columns their trimmed source text (``_raw_<name>``)."""
    inner = ["rowid + 1 AS _row"]
    outer = ["_row"]
    for col in f.shape.columns:
        name = _ident(col.name)
        if col.name not in f.present:
            outer.append(f"NULL::{_SQL_TYPES[col.type]} AS {name}")
        elif col.type == "text":
            inner.append(name)
            outer.append(name)
        else:
            raw = _ident(_raw_name(col.name))
            inner.append(f"nullif(trim({name}), '') AS {raw}")
            outer += [raw, f"{_value_sql(col, raw)} AS {name}"]
    f.typed = f"{_PREFIX}t_{f.kind}"
    cur.execute(f"DROP TABLE IF EXISTS {f.typed}")
    cur.execute(
        f"CREATE TEMP TABLE {f.typed} AS SELECT {', '.join(outer)} "
        f"FROM (SELECT {', '.join(inner)} FROM {f.stage})"
    )


def _checks_sql(f: _File, files: dict[str, _File]) -> list[str]:
    """SELECTs of (row, column order, column, problem) for every row problem of file ``f``."""
    shape, names = f.shape, f.shape.names
    selects: list[str] = []
    # Column values: only rows with a bad value are unnested into one row per problem.
    found = [
        (names.index(c.name), c.name, checked)
        for c in shape.columns
        if c.name in f.present and (checked := _column_problem(c)) is not None
    ]
    if found:
        structs = ", ".join(
            f"{{'o': {o}, 'c': {_lit(name)}, 'p': CASE WHEN {pred} THEN {msg} END}}"
            for o, name, (pred, msg) in found
        )
        any_bad = " OR ".join(pred for _, _, (pred, _) in found)
        selects.append(
            f"SELECT _row, x.o, x.c, x.p FROM (SELECT t._row, unnest([{structs}]) AS x "
            f"FROM {f.typed} t WHERE {any_bad}) WHERE x.p IS NOT NULL"
        )
    typed = f.typed
    if all(k in f.present for k in shape.key):
        keys = ", ".join(f"t.{_ident(k)}" for k in shape.key)
        not_null = " AND ".join(f"t.{_ident(k)} IS NOT NULL" for k in shape.key)
        first, o = _lit(shape.key[0]), names.index(shape.key[0])
        if len(shape.key) == 1:
            what = f"'id ' || t.{_ident(shape.key[0])}::VARCHAR"
        else:
            what = (
                "'(' || "
                + " || ', ' || ".join(
                    f"{_lit(k + ' ')} || t.{_ident(k)}::VARCHAR" for k in shape.key
                )
                + " || ')'"
            )
        selects.append(
            f"SELECT _row, {o}, {first}, 'duplicate ' || {what} || ' (first in row ' || _first::VARCHAR || ')' "
            f"FROM (SELECT t.*, min(t._row) OVER (PARTITION BY {keys}) AS _first FROM {typed} t "
            f"WHERE {not_null}) t WHERE _row > _first"
        )
        on = " AND ".join(f"d.{_ident(k)} = t.{_ident(k)}" for k in shape.key)
        selects.append(
            f"SELECT t._row, {o}, {first}, {what} || ' already exists in the database' "
            f"FROM {typed} t WHERE EXISTS (SELECT 1 FROM {shape.table} d WHERE {on})"
        )
    for col in shape.columns:
        if col.name not in f.present or not (col.ref or col.ref_table):
            continue
        c, o = _ident(col.name), names.index(col.name)
        if col.ref:
            target = files.get(col.ref)
            if target is not None and not target.keys_known:
                continue  # that file could not be read well enough to know its ids
            table = SHAPES[col.ref].table
            where = f"t.{c} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {table} d WHERE d.id = t.{c})"
            if target is not None:
                where += f" AND NOT EXISTS (SELECT 1 FROM {target.typed} r WHERE r.id = t.{c})"
                place = f"in the {col.ref} file or the database"
            else:
                place = "in the database"
            noun = _NOUNS[col.ref]
            message = f"'{col.name} ' || t.{c}::VARCHAR || ': no such {noun} {place}'"
        else:
            table = col.ref_table or ""
            where = f"t.{c} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {table} d WHERE d.id = t.{c})"
            message = f"'{col.name} ' || t.{c}::VARCHAR || ': no such id in the {table} table of the database'"
        selects.append(
            f"SELECT t._row, {o}, {_lit(col.name)}, {message} FROM {typed} t WHERE {where}"
        )
    for check in shape.checks:
        o = names.index(check.column)
        selects.append(
            f"SELECT t._row, {o}, {_lit(check.column)}, {check.message} FROM {typed} t WHERE {check.where}"
        )
    return selects


def _validate(
    cur: duckdb.DuckDBPyConnection, files: dict[str, _File]
) -> tuple[int, int, list[dict[str, Any]]]:
    """Every problem of the staged files: (count, files with problems, first ``MAX_PROBLEMS``)."""
    table = f"{_PREFIX}problems"
    cur.execute(f"DROP TABLE IF EXISTS {table}")
    cur.execute(
        f"CREATE TEMP TABLE {table} (k INTEGER, file VARCHAR, row BIGINT, o INTEGER, col VARCHAR, "
        "problem VARCHAR)"
    )
    for f in files.values():
        if f.problems:
            rows, orders, cols, texts = (list(x) for x in zip(*f.problems, strict=True))
            cur.execute(
                f"INSERT INTO {table} SELECT $k, $file, unnest($r), unnest($o), unnest($c), unnest($p)",
                {"k": f.order, "file": f.path, "r": rows, "o": orders, "c": cols, "p": texts},
            )
        if f.typed is None:
            continue
        selects = _checks_sql(f, files)
        if selects:
            cur.execute(
                f"INSERT INTO {table} SELECT $k, $file, * FROM ({' UNION ALL '.join(selects)})",
                {"k": f.order, "file": f.path},
            )
    counted = cur.execute(f"SELECT count(*), count(DISTINCT file) FROM {table}").fetchall()
    total, n_files = counted[0]
    found = cur.execute(
        f"SELECT file, row, col, problem FROM {table} ORDER BY k, row NULLS FIRST, o, problem LIMIT {MAX_PROBLEMS}"
    ).fetchall()
    problems = [
        {"file": file, "row": None if row is None else int(row), "column": col, "problem": problem}
        for file, row, col, problem in found
    ]
    return int(total), int(n_files), problems


def _insert(cur: duckdb.DuckDBPyConnection, f: _File) -> None:
    shape = f.shape
    cols: list[str] = []
    exprs: list[str] = []
    for col in shape.columns:
        if col.name in f.present:
            expr = f"t.{_ident(col.name)}"
            exprs.append(f"coalesce({expr}, {col.default})" if col.default else expr)
        elif col.absent:
            exprs.append(col.absent)
        else:
            continue  # the table's default applies
        cols.append(_ident(col.name))
    order = ", ".join(f"t.{_ident(c.strip())}" for c in shape.order_by.split(","))
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


def import_files(ws: Any, *, dry_run: bool = False, **files: str) -> dict[str, Any]:
    """Import CSV or Parquet files (by extension), all or nothing, in one transaction.

    :param ws: an open ``Workspace``.
    :param dry_run: validate only; write nothing.
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
        kind: _File(kind, os.fspath(files[kind]), order)
        for order, kind in enumerate(KINDS)
        if files.get(kind) not in (None, "")
    }
    if not given:
        raise BearError(f"nothing to import: give a file for at least one of {', '.join(KINDS)}")
    cur = ws.db.cursor()
    try:
        for f in given.values():
            _stage(cur, f)
        with ws.db.transaction() as tx:  # one transaction, serialised with the process's writers
            for f in given.values():
                if f.stage is not None and not f.malformed:
                    _make_typed(tx, f)
            total, n_files, problems = _validate(tx, given)
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
    if not dry_run:
        ws.refresh()
    log.info("%s %s", "validated (dry run)" if dry_run else "imported", rows)
    return {"rows": rows, "dry_run": bool(dry_run)}


def _drop_temp_tables(cur: duckdb.DuckDBPyConnection) -> None:
    names = cur.execute(
        "SELECT table_name FROM duckdb_tables() WHERE temporary AND starts_with(table_name, $p)",
        {"p": _PREFIX},
    ).fetchall()
    for (name,) in names:
        cur.execute(f"DROP TABLE IF EXISTS {_ident(name)}")


# -- export ----------------------------------------------------------------------------------
def export_files(ws: Any, out_dir: str | Path, fmt: str = "csv") -> dict[str, Path]:
    """Write every kind's table to ``out_dir/<kind>.<fmt>`` in the import shapes.

    All files are written from one consistent snapshot; money stays DECIMAL (in CSV, its exact
    decimal text). Returns the path written per kind.
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
    with ws.db.transaction() as tx:
        for kind, shape in SHAPES.items():
            path = out / f"{kind}.{fmt}"
            cols = ", ".join(_ident(n) for n in shape.names)
            try:
                tx.execute(
                    f"COPY (SELECT {cols} FROM {shape.table} ORDER BY {shape.order_by}) "
                    f"TO {_lit(str(path))} ({options})"
                )
            except duckdb.Error as exc:
                raise BearError(f"cannot write {str(path)!r}: {_first_line(exc)}") from None
            written[kind] = path
    log.info("exported %d files to %s", len(written), out)
    return written
