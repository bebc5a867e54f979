"""Rules without code: a TOML file of SQL predicates (setting ``rules_file``).

::

    [[rule]]
    id = "acme.large_credit"
    stage = "release"            # or "invoice"
    severity = "warn"            # or "block" (default)
    description = "Credits above 10,000 need a second look."
    when = "summary_amount < -10000"
    message = "credit of {summary_amount} {currency} on project {project_name}"

Each ``when`` must be ONE boolean expression over the batch view's columns: statements,
semicolons, subqueries, table functions and functions that read outside the batch are
refused, and so is any column the batch view does not have. A bad file raises
``RulesFileError`` naming the file, the rule and the problem; it is never skipped.
"""

from __future__ import annotations

import functools
import json
import tomllib
from pathlib import Path
from typing import Any

import duckdb

from bear.errors import PluginError, RulesFileError
from bear.markers import hookimpl
from bear.rules.batch import COLUMNS
from bear.rules.model import RULE_ID_RE, SqlRule, template_to_sql

_ALLOWED_CLASSES = {
    "COLUMN_REF",
    "CONSTANT",
    "COMPARISON",
    "CONJUNCTION",
    "OPERATOR",
    "FUNCTION",
    "CASE",
    "CAST",
    "TYPE",  # the target type of a CAST (DuckDB ≥ 2 serialises it as its own node)
    "BETWEEN",
    "COLLATE",
}
_DENIED_FUNCTIONS = {
    "getenv",
    "current_setting",
    "nextval",
    "currval",
    "setseed",
    "random",
    "uuid",
    "gen_random_uuid",
    "query",
    "query_table",
    "glob",
    "current_database",
    "current_schema",
    "current_schemas",
    "current_query",
    "txid_current",
    "version",
    "current_user",
    "session_user",
    "user",
    "system",
    "shell",
}
_DENIED_PREFIXES = (
    "duckdb_",
    "pg_",
    "read_",
    "sqlite_",
    "parquet_",
    "json_serialize",
    "json_deserialize",
    "icu_",
    "pragma_",
    "which_secret",
    "sniff_",
    "iceberg_",
    "delta_",
    "http",
)
_KEYS = {"id", "stage", "severity", "description", "when", "message"}
# Macros that aggregate (duckdb_functions() lists them as plain macros).
_AGGREGATE_MACROS = {"geomean", "json_group_array", "json_group_object", "wavg", "weighted_avg"}


@functools.cache
def _aggregate_functions() -> frozenset[str]:
    """Names of DuckDB's aggregate and window functions (a rule judges one event at a time).

    Without this, ``count(*) > 0`` would pass the start-up check (``SELECT count(*) > 0 FROM
    _batch`` binds) and only fail when evaluated, failing closed for every event.
    """
    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False})
    try:
        rows = con.execute(
            "SELECT function_name FROM duckdb_functions() WHERE function_type IN ('aggregate', 'window') "
            "EXCEPT SELECT function_name FROM duckdb_functions() WHERE function_type IN ('scalar', 'macro')"
        ).fetchall()
    finally:
        con.close()
    return frozenset(r[0].lower() for r in rows) | _AGGREGATE_MACROS


def check_predicate(expr: str) -> list[str]:
    """Check that ``expr`` is a single safe expression over batch columns; returns its columns.

    Raises ``ValueError`` with the problem otherwise.
    """
    if not isinstance(expr, str) or not expr.strip():
        raise ValueError("'when' must be a non-empty SQL expression")
    if ";" in expr:
        raise ValueError("'when' must not contain ';' (one expression, no statements)")
    if "--" in expr or "/*" in expr:
        raise ValueError("'when' must not contain SQL comments")
    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False})
    try:
        raw = con.execute("SELECT json_serialize_sql($q)", {"q": f"SELECT ({expr})"}).fetchall()[0][
            0
        ]
    finally:
        con.close()
    tree = json.loads(raw)
    if tree.get("error"):
        raise ValueError(f"not a valid SQL expression: {tree.get('error_message', 'syntax error')}")
    statements = tree.get("statements", [])
    if len(statements) != 1:
        raise ValueError("'when' must be one expression")
    node = statements[0]["node"]
    if (
        node.get("type") != "SELECT_NODE"
        or node.get("from_table", {}).get("type") != "EMPTY"
        or len(node.get("select_list", [])) != 1
        or node.get("where_clause")
        or node.get("group_expressions")
        or node.get("cte_map", {}).get("map")
    ):
        raise ValueError("'when' must be a single expression, not a query")
    columns: list[str] = []

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            cls = x.get("class")
            if cls is not None:
                if cls not in _ALLOWED_CLASSES:
                    raise ValueError(
                        f"{cls.lower().replace('_', ' ')} expressions are not allowed in 'when'"
                    )
                if cls == "COLUMN_REF":
                    names = x.get("column_names", [])
                    if len(names) != 1:
                        raise ValueError(
                            f"column {'.'.join(names)!r}: use plain batch column names"
                        )
                    if names[0] not in COLUMNS:
                        raise ValueError(
                            f"unknown column {names[0]!r}; see the batch view's columns"
                        )
                    columns.append(names[0])
                if cls == "TYPE" and (x.get("schema") or x.get("catalog")):
                    raise ValueError(f"type {x.get('type_name')!r}: use a built-in type")
                if cls == "FUNCTION":
                    name = str(x.get("function_name", "")).lower()
                    if (
                        name in _DENIED_FUNCTIONS
                        or name.startswith(_DENIED_PREFIXES)
                        or x.get("schema")
                        or x.get("catalog")
                    ):
                        raise ValueError(f"function {name!r} is not allowed in 'when'")
                    if (
                        name in _aggregate_functions()
                        or x.get("filter")
                        or x.get("distinct")
                        or (x.get("order_bys") or {}).get("orders")
                    ):
                        shown = "count" if name == "count_star" else name
                        raise ValueError(
                            f"aggregate function {shown!r} is not allowed in 'when': a rule "
                            "judges each event on its own row of the batch"
                        )
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(node["select_list"])
    return columns


def load_rules_file(path: str | Path) -> list[SqlRule]:
    """Read and validate a rules file; every problem raises ``RulesFileError``."""
    p = Path(path)
    where = str(p)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RulesFileError(f"rules file {where}: file not found", path=where) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesFileError(f"rules file {where}: cannot be read ({exc})", path=where) from None
    except tomllib.TOMLDecodeError as exc:
        raise RulesFileError(f"rules file {where}: not valid TOML ({exc})", path=where) from None
    extra = set(data) - {"rule"}
    if extra:
        raise RulesFileError(
            f"rules file {where}: unexpected top-level key(s) {sorted(extra)}; use [[rule]] tables",
            path=where,
        )
    entries = data.get("rule", [])
    if not isinstance(entries, list):
        raise RulesFileError(
            f"rules file {where}: 'rule' must be an array of tables ([[rule]])", path=where
        )
    rules: list[SqlRule] = []
    seen: set[str] = set()
    for n, entry in enumerate(entries, 1):
        rid = entry.get("id") if isinstance(entry, dict) else None
        label = f"rule {rid!r}" if rid else f"rule #{n}"

        def fail(problem: str, label: str = label, rid: Any = rid) -> RulesFileError:
            return RulesFileError(
                f"rules file {where}, {label}: {problem}",
                path=where,
                rule_id=rid if isinstance(rid, str) else None,
            )

        if not isinstance(entry, dict):
            raise fail("must be a table")
        unknown = set(entry) - _KEYS
        if unknown:
            raise fail(f"unknown key(s) {sorted(unknown)}; allowed: {sorted(_KEYS)}")
        for key in ("id", "stage", "when", "message"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise fail(f"'{key}' is required and must be text")
        if not RULE_ID_RE.fullmatch(rid):
            raise fail(
                "id must look like 'namespace.name' (lower-case letters, digits, underscores)"
            )
        if rid.split(".")[0] in ("release", "invoice", "revert"):
            raise fail(
                "the 'release.', 'invoice.' and 'revert.' namespaces belong to the built-in "
                "rules; use your own"
            )
        if rid in seen:
            raise fail("duplicate id in this file")
        seen.add(rid)
        if entry["stage"] not in ("release", "invoice", "revert"):
            raise fail(f"stage {entry['stage']!r} must be 'release', 'invoice' or 'revert'")
        severity = entry.get("severity", "block")
        if severity not in ("block", "warn"):
            raise fail(f"severity {severity!r} must be 'block' or 'warn'")
        try:
            check_predicate(entry["when"])
        except ValueError as exc:
            raise fail(f"'when': {exc}") from None
        try:
            _, cols = template_to_sql(entry["message"])
        except PluginError as exc:
            raise fail(f"'message': {exc}") from None
        unknown_cols = [c for c in cols if c not in COLUMNS]
        if unknown_cols:
            raise fail(f"'message': unknown column {{{unknown_cols[0]}}}")
        rules.append(
            SqlRule(
                id=rid,
                stage=entry["stage"],
                severity=severity,
                description=str(entry.get("description", "")),
                fail_when=entry["when"],
                message=entry["message"],
            )
        )
    return rules


@hookimpl
def bear_register_rules(settings: Any) -> list[SqlRule]:
    path = settings.rules_file
    if not path:
        return []
    return load_rules_file(path)
