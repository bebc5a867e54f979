"""The rule model: any object with id, stage, severity, description and a way to find failures.

Two kinds: a ``SqlRule`` is a SQL predicate over the batch view (all SQL rules of a stage run
in one DuckDB pass); any other object with ``evaluate(batch)`` is a vectorized Python rule
that returns the failing rows as a DuckDB relation, an Arrow table or a DataFrame.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from bear.errors import PluginError
from bear.models import Severity, Stage

RULE_ID_RE = re.compile(r"^[a-z][a-z0-9_]*\.[a-z0-9_]+$")


@runtime_checkable
class Rule(Protocol):
    """What the engine needs of a rule. ``evaluate`` is needed unless it is a ``SqlRule``."""

    id: str
    stage: str
    severity: str
    description: str

    def evaluate(self, batch: Any) -> Any: ...


def sql_string(text: str) -> str:
    """A SQL string literal of ``text``."""
    return "'" + text.replace("'", "''") + "'"


def template_to_sql(template: str) -> tuple[str, list[str]]:
    """Turn "item {first_item_on_hold} is on hold" into a SQL concatenation; returns (sql, columns)."""
    parts: list[str] = []
    columns: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise PluginError(f"message template {template!r}: {exc}") from None
    for literal, field, spec, conv in parsed:
        if literal:
            parts.append(sql_string(literal))
        if field is None:
            continue
        if spec or conv or not re.fullmatch(r"[a-z_][a-z0-9_]*", field):
            raise PluginError(
                f"message template {template!r}: {{{field}}} must name one batch column, e.g. {{project_name}}"
            )
        columns.append(field)
        parts.append(f"coalesce(CAST({field} AS VARCHAR), '∅')")
    return (" || ".join(parts) or "''"), columns


@dataclass(frozen=True)
class SqlRule:
    """A rule written as a SQL predicate over the batch view.

    :param id: stable namespaced id, e.g. ``acme.po_required``.
    :param stage: ``release`` or ``invoice``.
    :param severity: ``block`` (the event is not processed) or ``warn`` (reported only).
    :param description: one sentence for the rules list.
    :param fail_when: SQL boolean expression over batch columns; true means the event fails.
    :param message: text shown to the analyst; ``{column}`` inserts a batch column's value.
    :param message_sql: alternatively, a SQL expression giving the message.
    """

    id: str
    stage: str
    fail_when: str
    message: str = ""
    severity: str = "block"
    description: str = ""
    message_sql: str | None = None

    def message_expression(self) -> tuple[str, list[str]]:
        if self.message_sql:
            return f"CAST(({self.message_sql}) AS VARCHAR)", []
        return template_to_sql(self.message or self.description or self.id)


def normalise(rule: Any, plugin: str) -> tuple[str, str, str, str]:
    """Check a rule's metadata; returns (id, stage, severity, description) as plain strings."""
    missing = [a for a in ("id", "stage", "severity", "description") if not hasattr(rule, a)]
    if missing:
        raise PluginError(
            f"plugin {plugin!r} registered {rule!r}, which lacks {', '.join(missing)}"
        )
    rid = str(rule.id)
    if not RULE_ID_RE.fullmatch(rid):
        raise PluginError(
            f"plugin {plugin!r}: rule id {rid!r} must look like 'namespace.name' "
            "(lower-case letters, digits, underscores)"
        )
    try:
        stage = Stage(str(getattr(rule.stage, "value", rule.stage))).value
    except ValueError:
        raise PluginError(
            f"plugin {plugin!r}: rule {rid!r} has stage {rule.stage!r}; expected release, invoice or revert"
        ) from None
    try:
        severity = Severity(str(getattr(rule.severity, "value", rule.severity))).value
    except ValueError:
        raise PluginError(
            f"plugin {plugin!r}: rule {rid!r} has severity {rule.severity!r}; expected block or warn"
        ) from None
    if not isinstance(rule, SqlRule) and not callable(getattr(rule, "evaluate", None)):
        raise PluginError(
            f"plugin {plugin!r}: rule {rid!r} is neither a SqlRule nor has evaluate(batch)"
        )
    return rid, stage, severity, str(rule.description or "")


def declared_columns(rule: Any, plugin: str, rid: str, known: Any) -> tuple[str, ...] | None:
    """The batch columns a Python rule says it reads (attribute ``columns``), checked against
    ``known``; None when it does not say (it then gets every column)."""
    cols = getattr(rule, "columns", None)
    if cols is None or isinstance(rule, SqlRule):
        return None
    if isinstance(cols, str) or not all(isinstance(c, str) for c in cols):
        raise PluginError(
            f"plugin {plugin!r}: rule {rid!r} has columns={cols!r}; expected a list of column names"
        )
    unknown = [c for c in cols if c not in known]
    if unknown:
        raise PluginError(
            f"plugin {plugin!r}: rule {rid!r} reads unknown batch column(s) {', '.join(map(repr, unknown))}; "
            "see the batch view's columns in docs/plugins.md"
        )
    return tuple(dict.fromkeys(["billing_event_id", *cols]))
