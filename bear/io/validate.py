"""Validating staged import files, set-based: every problem of every row, as rows of SQL.

Inside the import's one write transaction, a typed copy of each staged table is made with
``TRY_CAST`` guarded by strict formats (casts alone are lenient: ``'1.5'`` would become the
integer 2). SQL then lists every problem — missing or malformed values, unknown currencies
and categories, duplicate keys (within a file and against the database), references to rows
neither in the files nor in the database, and each shape's extra row rules — as
(``file``, ``row``, ``column``, ``problem``) rows; nothing here loops over rows in Python.
"""

from __future__ import annotations

from typing import Any

import duckdb

from bear.io.reader import ImportFile
from bear.io.shapes import CATEGORIES, SHAPES, Column
from bear.io.sql import PREFIX, ident, lit, shown

MAX_PROBLEMS = 1000
"""At most this many problems are reported (the message gives the full count)."""

_DECIMALS = {"dec2": (18, 2), "dec6": (18, 6)}
_BOOL_WORDS = "('true', 'false', 't', 'f', 'yes', 'no', 'y', 'n', '1', '0')"


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
    sql_type = col.sql_type
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
        return f"CASE WHEN {v} IN ({', '.join(lit(c) for c in CATEGORIES)}) THEN {v} END"
    raise AssertionError(f"unknown column type {col.type!r}")


def _invalid_sql(col: Column, v: str) -> str:
    """SQL of the message for source text ``v`` that ``_value_sql`` refused."""
    q = shown(v)
    if col.type in ("int", "bigint"):
        return (
            f"CASE WHEN regexp_full_match({v}, {_INT_RE}) "
            f"THEN {q} || ' is out of range for {col.sql_type}' "
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
    c = f"t.{ident(col.name)}"
    if col.type == "text":
        if not col.required:
            return None
        return f"({c} IS NULL OR trim({c}) = '')", _MISSING
    raw = f"t.{ident(_raw_name(col.name))}"
    invalid = f"({raw} IS NOT NULL AND {c} IS NULL)"
    if col.required:
        return (
            f"({raw} IS NULL OR {invalid})",
            f"CASE WHEN {raw} IS NULL THEN {_MISSING} ELSE {_invalid_sql(col, raw)} END",
        )
    return invalid, _invalid_sql(col, raw)


def make_typed(cur: duckdb.DuckDBPyConnection, f: ImportFile) -> None:
    """Typed copy of the staged rows: every column of the shape (NULL when absent or invalid),
    and for present non-text columns their trimmed source text (``_raw_<name>``)."""
    inner = ["rowid + 1 AS _row"]
    outer = ["_row"]
    for col in f.shape.columns:
        name = ident(col.name)
        if col.name not in f.present:
            outer.append(f"NULL::{col.sql_type} AS {name}")
        elif col.type == "text":
            inner.append(name)
            outer.append(name)
        else:
            raw = ident(_raw_name(col.name))
            inner.append(f"nullif(trim({name}), '') AS {raw}")
            outer += [raw, f"{_value_sql(col, raw)} AS {name}"]
    f.typed = f"{PREFIX}t_{f.kind}"
    cur.execute(f"DROP TABLE IF EXISTS {f.typed}")
    cur.execute(
        f"CREATE TEMP TABLE {f.typed} AS SELECT {', '.join(outer)} "
        f"FROM (SELECT {', '.join(inner)} FROM {f.stage})"
    )


def _checks_sql(f: ImportFile, files: dict[str, ImportFile]) -> list[str]:
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
            f"{{'o': {o}, 'c': {lit(name)}, 'p': CASE WHEN {pred} THEN {msg} END}}"
            for o, name, (pred, msg) in found
        )
        any_bad = " OR ".join(pred for _, _, (pred, _) in found)
        selects.append(
            f"SELECT _row, x.o, x.c, x.p FROM (SELECT t._row, unnest([{structs}]) AS x "
            f"FROM {f.typed} t WHERE {any_bad}) WHERE x.p IS NOT NULL"
        )
    typed = f.typed
    if all(k in f.present for k in shape.key):
        keys = ", ".join(f"t.{ident(k)}" for k in shape.key)
        not_null = " AND ".join(f"t.{ident(k)} IS NOT NULL" for k in shape.key)
        first, o = lit(shape.key[0]), names.index(shape.key[0])
        if len(shape.key) == 1:
            what = f"'id ' || t.{ident(shape.key[0])}::VARCHAR"
        else:
            what = (
                "'(' || "
                + " || ', ' || ".join(f"{lit(k + ' ')} || t.{ident(k)}::VARCHAR" for k in shape.key)
                + " || ')'"
            )
        selects.append(
            f"SELECT _row, {o}, {first}, 'duplicate ' || {what} || ' (first in row ' || _first::VARCHAR || ')' "
            f"FROM (SELECT t.*, min(t._row) OVER (PARTITION BY {keys}) AS _first FROM {typed} t "
            f"WHERE {not_null}) t WHERE _row > _first"
        )
        on = " AND ".join(f"d.{ident(k)} = t.{ident(k)}" for k in shape.key)
        selects.append(
            f"SELECT t._row, {o}, {first}, {what} || ' already exists in the database' "
            f"FROM {typed} t WHERE EXISTS (SELECT 1 FROM {shape.table} d WHERE {on})"
        )
    for col in shape.columns:
        if col.name not in f.present or not (col.ref or col.ref_table):
            continue
        c, o = ident(col.name), names.index(col.name)
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
            noun = SHAPES[col.ref].noun
            message = f"'{col.name} ' || t.{c}::VARCHAR || ': no such {noun} {place}'"
        else:
            table = col.ref_table or ""
            where = f"t.{c} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {table} d WHERE d.id = t.{c})"
            message = f"'{col.name} ' || t.{c}::VARCHAR || ': no such id in the {table} table of the database'"
        selects.append(
            f"SELECT t._row, {o}, {lit(col.name)}, {message} FROM {typed} t WHERE {where}"
        )
    for check in shape.checks:
        o = names.index(check.column)
        selects.append(
            f"SELECT t._row, {o}, {lit(check.column)}, {check.message} FROM {typed} t WHERE {check.where}"
        )
    return selects


def validate(
    cur: duckdb.DuckDBPyConnection, files: dict[str, ImportFile]
) -> tuple[int, int, list[dict[str, Any]]]:
    """Every problem of the staged files: (count, files with problems, first ``MAX_PROBLEMS``)."""
    table = f"{PREFIX}problems"
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
        if f.refused is not None:
            cur.execute(
                f"INSERT INTO {table} SELECT $k, $file, _row, o, c, p FROM {f.refused}",
                {"k": f.order, "file": f.path},
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
