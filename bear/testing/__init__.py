"""Helpers for rule authors: build a tiny book in a few lines and run a rule on it, no app needed.

``make_workspace(events=[{"approved": False}])`` gives an in-memory workspace holding those
events, with every column a test does not name filled with a sensible, *eligible* default
(a Thursday event of 100.00 USD with one timecard item, on an active, billable project of an
active account with a billing e-mail, in a company that may invoice in that currency); the
companies, accounts, projects and products the rows refer to are created as needed.
``evaluate_rule(rule, events=[...])`` runs the real engine (``bear.rules.engine.evaluate``)
with a registry holding just that rule and returns its violations as a DataFrame.
Rows are written set-based: one Arrow table and one ``INSERT … SELECT`` per table. The rows
are completed in ``rows`` (defaults from ``bear.db.schema``), written in ``book`` and judged in
``rules``; import the names from ``bear.testing``.
"""

from __future__ import annotations

from bear.testing.book import make_workspace
from bear.testing.rows import DEFAULT_AMOUNT, DEFAULT_DATE
from bear.testing.rules import (
    builtin_rule,
    builtin_rules,
    evaluate_rule,
    registry_of,
    settings_view,
)

__all__ = [
    "DEFAULT_AMOUNT",
    "DEFAULT_DATE",
    "builtin_rule",
    "builtin_rules",
    "evaluate_rule",
    "make_workspace",
    "registry_of",
    "settings_view",
]
