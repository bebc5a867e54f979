"""Hook specifications for eligibility rules (pluggy project ``bear``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import duckdb

from bear.markers import hookspec


@hookspec
def bear_register_rules(settings: Any) -> Iterable[Any]:
    """Return the eligibility rules this plugin adds. Called once when the registry is built.

    :param settings: the settings, a read-only ``bear.config.SettingsSnapshot``: BEAR's as
        attributes (``settings.max_lines_per_document``), and any setting, the plugin's own
        included, by name: ``settings["<plugin name>.<setting>"]`` (see
        ``bear_register_settings``).
    :returns: an iterable of rule objects, each with ``id``, ``stage`` (``release`` or
        ``invoice``), ``severity`` (``block`` or ``warn``), ``description`` and either a SQL
        predicate (``SqlRule``) or ``evaluate(batch)`` returning the failing
        ``(billing_event_id, message)`` rows.
    """


@hookspec
def bear_prepare_connection(con: duckdb.DuckDBPyConnection) -> None:
    """Register macros or functions that rules need on a DuckDB connection (cursor).

    Called for every cursor that evaluates rules, before the rules run.

    :param con: the DuckDB cursor rules will run on.
    """
