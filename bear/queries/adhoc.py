"""The sandbox of an analyst's own SQL (``ws.sql``; later the HTTP API and remote workspace).

User SQL is never trusted by its text or its statement type: a ``SELECT`` can hide a
``DELETE … RETURNING`` in a CTE, read a server file through a table function or a quoted
path, or advance a sequence. Three independent walls keep it read-only:

1. **An allow-list over DuckDB's own parse tree** (``json_serialize_sql``): only query nodes
   that read (SELECT, set operations, CTEs), only tables and views of the book (or a CTE in
   scope, or the ``information_schema`` / ``pg_catalog`` views), only the table functions
   that generate rows or list the catalog, and only built-in functions that have no side
   effect and read nothing outside the query (``nextval``, ``setseed``, ``current_setting``,
   ``getvariable``, ``sleep_ms`` … are refused; so are ``read_csv``, ``glob``, ``query`` …).
   Anything the walker does not recognise is refused.
2. **A transaction that is always rolled back**: whatever the statement did to a table is
   undone before the result is returned.
3. **One statement**, and ``EXPLAIN`` only of a statement that passes (never ``ANALYZE``,
   which executes).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from typing import Any

import duckdb
import pyarrow as pa

from bear.errors import QueryError

log = logging.getLogger(__name__)

__all__ = ["ALLOWED_TABLE_FUNCTIONS", "check_read_only", "run_read_only"]

# Query nodes that only read.
_QUERY_NODES = {"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE"}
# Table references a read-only query may use; BASE_TABLE and TABLE_FUNCTION are checked further.
_TABLE_REFS = {
    "BASE_TABLE",
    "TABLE_FUNCTION",
    "SUBQUERY",
    "JOIN",
    "EXPRESSION_LIST",
    "EMPTY",
    "EMPTY_FROM",
    "SHOW_REF",
    "PIVOT",
}
# Table functions that generate rows or describe the catalog: nothing else (no file readers,
# no ``query()``/``query_table()`` that run SQL text, no settings or secrets, no checkpoint).
ALLOWED_TABLE_FUNCTIONS = frozenset(
    {
        "range",
        "generate_series",
        "unnest",
        "repeat",
        "json_each",
        "json_tree",
        "duckdb_tables",
        "duckdb_views",
        "duckdb_columns",
        "duckdb_constraints",
        "duckdb_indexes",
        "duckdb_schemas",
        "duckdb_types",
        "duckdb_keywords",
        "pragma_table_info",
        "pg_timezone_names",
    }
)
# Volatile built-ins that touch nothing: random numbers and ids.
_HARMLESS_VOLATILE = {"random", "uuid", "uuidv4", "uuidv7", "gen_random_uuid"}
# Functions the parser knows that are not in duckdb_functions() (UNNEST in a select list).
_SYNTAX_FUNCTIONS = {"unnest", "unlist"}
# Built-ins that are not volatile but reveal the server's configuration or session state.
_REVEALING = {"current_setting", "getvariable", "current_query", "txid_current"}
_SYSTEM_SCHEMAS = {"information_schema", "pg_catalog"}
_EXPLAIN = re.compile(r"^\s*EXPLAIN\s+(?!ANALY[SZ]E\b)", re.IGNORECASE)

_allowed_functions: frozenset[str] | None = None
_functions_lock = threading.Lock()


def _functions(cur: duckdb.DuckDBPyConnection) -> frozenset[str]:
    """Built-in scalar, aggregate, window and macro functions without side effects."""
    global _allowed_functions
    with _functions_lock:
        if _allowed_functions is None:
            rows = cur.execute(
                "SELECT DISTINCT lower(function_name), stability FROM duckdb_functions() "
                "WHERE database_name = 'system' "
                "AND function_type IN ('scalar', 'aggregate', 'window', 'macro')"
            ).fetchall()
            volatile = {name for name, stability in rows if stability == "VOLATILE"}
            names = {name for name, _ in rows} - (volatile - _HARMLESS_VOLATILE) - _REVEALING
            names |= _SYNTAX_FUNCTIONS
            _allowed_functions = frozenset(names)
        return _allowed_functions


def _book_tables(cur: duckdb.DuckDBPyConnection) -> tuple[str, set[str]]:
    """The book's catalog name and its tables and views (lower case)."""
    catalog = cur.execute("SELECT current_database()").fetchall()[0][0]
    rows = cur.execute(
        "SELECT lower(table_name) FROM information_schema.tables "
        "WHERE table_catalog = current_database() AND table_schema = 'main'"
    ).fetchall()
    return catalog, {r[0] for r in rows}


def _refuse(what: str) -> QueryError:
    return QueryError(f"sql: {what} is not allowed here (read-only SQL over the book's tables)")


class _Walker:
    """Walks a serialized parse tree and raises ``QueryError`` at the first thing not allowed."""

    def __init__(self, functions: frozenset[str], catalog: str, tables: set[str]) -> None:
        self.functions = functions
        self.catalog = catalog.lower()
        self.tables = tables

    def walk(self, node: Any, scope: frozenset[str]) -> None:
        if isinstance(node, list):
            for item in node:
                self.walk(item, scope)
            return
        if not isinstance(node, dict):
            return
        kind = node.get("type")
        if "cte_map" in node:  # a query node: its CTEs are in scope for all it holds
            if kind not in _QUERY_NODES:
                raise _refuse(f"a {str(kind).replace('_QUERY_NODE', '')} statement")
            names = {str(entry.get("key", "")).lower() for entry in node["cte_map"].get("map", [])}
            scope = scope | names
        elif "sample" in node and kind is not None:  # a table reference
            if kind not in _TABLE_REFS:
                raise _refuse(f"the table reference {kind}")
            if kind == "BASE_TABLE":
                self._table(node, scope)
            elif kind == "TABLE_FUNCTION":
                self._table_function(node, scope)
                return
        elif "function_name" in node:  # a function call in an expression
            self._function(node)
        for key, value in node.items():
            if key == "function" and kind == "TABLE_FUNCTION":
                continue
            self.walk(value, scope)

    def _table(self, node: dict[str, Any], scope: frozenset[str]) -> None:
        name = str(node.get("table_name", ""))
        schema = str(node.get("schema_name", "")).lower()
        catalog = str(node.get("catalog_name", "")).lower()
        low = name.lower()
        if not schema and not catalog and low in scope:
            return  # a CTE in scope
        if schema in _SYSTEM_SCHEMAS and catalog in ("", self.catalog, "system"):
            return
        if schema in ("", "main") and catalog in ("", self.catalog) and low in self.tables:
            return
        raise QueryError(
            f"sql: {name!r} is not a table or view of this book; "
            "only the book's tables can be read here (no files, no other databases)"
        )

    def _table_function(self, node: dict[str, Any], scope: frozenset[str]) -> None:
        function = node.get("function") or {}
        name = str(function.get("function_name", "")).lower()
        if name not in ALLOWED_TABLE_FUNCTIONS:
            raise _refuse(f"the table function {name}()")
        for key, value in function.items():
            if key != "function_name":
                self.walk(value, scope)

    def _function(self, node: dict[str, Any]) -> None:
        name = str(node.get("function_name", "")).lower()
        schema = str(node.get("schema", "")).lower()
        catalog = str(node.get("catalog", "")).lower()
        if (
            name not in self.functions
            or schema not in ("", "main", "pg_catalog")
            or catalog
            not in (
                "",
                "system",
            )
        ):
            raise _refuse(f"the function {name}()")


def _statement(cur: duckdb.DuckDBPyConnection, query: object) -> tuple[str, bool]:
    """The one statement of ``query`` and whether it is an EXPLAIN; refuses the rest."""
    if not isinstance(query, str) or not query.strip():
        raise QueryError("sql: expected a SELECT statement")
    if "\x00" in query:
        raise QueryError("sql: the statement contains a NUL character")
    try:
        statements = cur.extract_statements(query)
    except duckdb.Error as exc:
        raise QueryError(f"sql: {_first_line(exc)}") from None
    if len(statements) != 1:
        raise QueryError(f"sql: expected exactly one statement, got {len(statements)}")
    kind = statements[0].type.name
    if kind == "EXPLAIN":
        match = _EXPLAIN.match(query)
        if match is None:
            raise QueryError(
                "sql: only EXPLAIN of a SELECT is allowed (EXPLAIN ANALYZE runs its statement)"
            )
        return query[match.end() :], True
    if kind != "SELECT":
        raise QueryError(f"sql: only read-only statements are allowed here, not {kind}")
    return query, False


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def check_read_only(cur: duckdb.DuckDBPyConnection, query: object) -> str:
    """Raise ``QueryError`` naming why ``query`` may not run as exploration SQL; returns the
    statement to run (``EXPLAIN`` prefixed again when it was one)."""
    body, explain = _statement(cur, query)
    raw = cur.execute("SELECT json_serialize_sql($q)", {"q": body}).fetchall()[0][0]
    tree = json.loads(raw)
    if tree.get("error"):
        message = str(tree.get("error_message") or "cannot be parsed")
        if "Only SELECT" in message:
            raise QueryError("sql: only read-only statements (SELECT, EXPLAIN SELECT) are allowed")
        raise QueryError(f"sql: {message.splitlines()[0]}")
    if len(tree.get("statements", [])) != 1:
        raise QueryError("sql: expected exactly one statement")
    catalog, tables = _book_tables(cur)
    _Walker(_functions(cur), catalog, tables).walk(tree["statements"][0]["node"], frozenset())
    return f"EXPLAIN {body}" if explain else body


def run_read_only(
    cur: duckdb.DuckDBPyConnection, query: object, params: dict[str, Any] | None = None
) -> pa.Table:
    """Check ``query`` and run it inside a transaction that is always rolled back; returns the
    result as an Arrow table. Every refusal and database error is a ``QueryError``."""
    statement = check_read_only(cur, query)
    cur.execute("BEGIN TRANSACTION")
    try:
        return cur.sql(statement, params=params or {}).to_arrow_table()
    except duckdb.Error as exc:
        raise QueryError(f"sql: {_first_line(exc)}") from None
    finally:
        try:
            cur.execute("ROLLBACK")
        except duckdb.Error:  # the transaction may already be aborted
            log.debug("rollback after user SQL raised", exc_info=True)
