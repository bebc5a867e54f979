"""Saved views: a person's named filters and sort for one event grid (migration 006).

The caller validates the filters (``bear.queries.filters.Filters``) before they are stored;
here they are JSON text. Saving a name the person already uses replaces that view. Writes no
rule reads: ``rule_neutral``, so a saved view never makes a run judge its events again.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from bear.db.connection import Database
from bear.errors import BearError, NotFoundError

NAME_MAX = 80
KINDS = ("awaiting_release", "awaiting_invoice", "invoiced")


def check_name(name: object) -> str:
    """A view's name: 1 to ``NAME_MAX`` characters of printable text."""
    if not isinstance(name, str) or not name.strip():
        raise BearError("a saved view needs a name")
    name = name.strip()
    if len(name) > NAME_MAX:
        raise BearError(f"a saved view's name has at most {NAME_MAX} characters, not {len(name)}")
    if not name.isprintable():
        raise BearError("a saved view's name may hold printable text only")
    return name


def save(
    db: Database,
    owner: str,
    name: str,
    kind: str,
    filters: dict[str, Any],
    sort_by: str,
    descending: bool,
) -> None:
    """Store (or replace) ``owner``'s view ``name``."""
    if kind not in KINDS:
        raise BearError(f"a saved view is of one of {', '.join(KINDS)}, not {kind!r}")
    params = {
        "o": owner,
        "n": check_name(name),
        "k": kind,
        "f": json.dumps(filters, default=str, sort_keys=True),
        "s": sort_by,
        "d": bool(descending),
    }
    with db.transaction(rule_neutral=True) as tx:
        tx.execute(
            "DELETE FROM saved_views WHERE owner = $o AND name = $n", {"o": owner, "n": params["n"]}
        )
        tx.execute(
            "INSERT INTO saved_views (owner, name, kind, filters, sort_by, descending) "
            "VALUES ($o, $n, $k, $f, $s, $d)",
            params,
        )


def listed(db: Database, owner: str) -> pd.DataFrame:
    """``owner``'s views, by name: name, kind, filters (a dict), sort_by, descending, saved_at."""
    frame = (
        db.cursor()
        .execute(
            "SELECT name, kind, filters::VARCHAR AS filters, sort_by, descending, saved_at "
            "FROM saved_views WHERE owner = $o ORDER BY lower(name), name",
            {"o": owner},
        )
        .df()
    )
    frame["filters"] = [json.loads(f) for f in frame["filters"]]
    return frame


def delete(db: Database, owner: str, name: str) -> None:
    """Forget ``owner``'s view ``name`` (an unknown name is named in the error)."""
    name = check_name(name)
    with db.transaction(rule_neutral=True) as tx:
        found = tx.execute(
            "SELECT count(*) FROM saved_views WHERE owner = $o AND name = $n",
            {"o": owner, "n": name},
        ).fetchall()[0][0]
        if not found:
            raise NotFoundError(f"no saved view named {name!r}")
        tx.execute(
            "DELETE FROM saved_views WHERE owner = $o AND name = $n", {"o": owner, "n": name}
        )
