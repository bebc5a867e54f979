"""Small helpers that write SQL text for the import and export code: quoted names and literals,
a value shown in a message, the first line of an error, and the temporary-table prefix."""

from __future__ import annotations

PREFIX = "_bear_imp_"
"""Every temporary table of an import starts with this, so all of them can be dropped after."""


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def lit(text: str) -> str:
    """A SQL string literal (single quotes doubled)."""
    return "'" + text.replace("'", "''") + "'"


def shown(v: str) -> str:
    """SQL showing value ``v`` in a message: quoted, cut at 40 characters."""
    return f"'''' || CASE WHEN length({v}) > 40 THEN left({v}, 37) || '...' ELSE {v} END || ''''"


def first_line(error: BaseException | str) -> str:
    """The first line of an error's text (DuckDB's messages carry context lines after it)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
