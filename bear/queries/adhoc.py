"""The checks ``ws.sql`` puts on an analyst's own SQL before it runs: one statement, read-only
by type, no EXPLAIN ANALYZE of a write, no function with side effects."""

from __future__ import annotations

import re

import duckdb

from bear.errors import QueryError

_READ_ONLY_TYPES = {"SELECT", "EXPLAIN"}
_SIDE_EFFECT_FUNCTIONS = re.compile(r"\b(nextval|setval|setseed|currval)\s*\(", re.IGNORECASE)


def check_read_only(cur: duckdb.DuckDBPyConnection, query: object) -> None:
    """Raise ``QueryError`` naming why ``query`` may not run as exploration SQL."""
    if not isinstance(query, str) or not query.strip():
        raise QueryError("sql: expected a SELECT statement")
    try:
        statements = cur.extract_statements(query)
    except duckdb.Error as exc:
        raise QueryError(f"sql: {exc}") from None
    if len(statements) != 1:
        raise QueryError(f"sql: expected exactly one statement, got {len(statements)}")
    kind = statements[0].type.name
    if kind not in _READ_ONLY_TYPES or kind == "PRAGMA":
        raise QueryError(f"sql: only read-only statements are allowed here, not {kind}")
    if kind == "EXPLAIN":
        # EXPLAIN ANALYZE executes its statement: only a plain SELECT may be explained.
        inner = re.sub(r"^\s*EXPLAIN\s+(ANALY[SZ]E\s+)?", "", query, flags=re.IGNORECASE)
        if (
            re.match(r"^\s*EXPLAIN\s+ANALY[SZ]E", query, re.IGNORECASE)
            or cur.extract_statements(inner)[0].type.name != "SELECT"
        ):
            raise QueryError(
                "sql: only EXPLAIN of a SELECT is allowed (EXPLAIN ANALYZE runs its statement)"
            )
    if _SIDE_EFFECT_FUNCTIONS.search(query):
        raise QueryError(
            "sql: functions with side effects (nextval, setval, setseed) are not allowed here"
        )
