"""Running rules in tests: the real engine over a tiny book, and the built-in rules by id.

``evaluate_rule(rule, events=[...])`` runs the real evaluation (``bear.pipeline.judge``) with
a registry holding just the rules given and returns their violations as a DataFrame;
``builtin_rule(id, **settings)`` gives a built-in rule registered with those settings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
import pyarrow as pa

from bear.config import SettingsSnapshot
from bear.errors import BearError, PluginError
from bear.models import Stage
from bear.pipeline import judge
from bear.rules.engine import RegisteredRule, Registry
from bear.testing.book import make_workspace
from bear.workspace import Workspace


def settings_view(**overrides: Any) -> SettingsSnapshot:
    """The default settings with ``overrides`` (validated), as rules' ``settings`` see them: a
    ``SettingsSnapshot``. An unknown name or a bad value raises ``SettingError``."""
    return SettingsSnapshot().with_values(**overrides)


def builtin_rules(**settings: Any) -> dict[str, Any]:
    """Every built-in rule by id, registered with the default settings plus ``settings``."""
    from bear.rules import builtin_invoice, builtin_release, builtin_revert

    view = settings_view(**settings)
    rules = [
        *builtin_release.bear_register_rules(settings=view),
        *builtin_invoice.bear_register_rules(settings=view),
        *builtin_revert.bear_register_rules(settings=view),
    ]
    return {r.id: r for r in rules}


def builtin_rule(rule_id: str, **settings: Any) -> Any:
    """One built-in rule, e.g. ``builtin_rule("invoice.too_many_lines", max_lines_per_document=2)``."""
    rules = builtin_rules(**settings)
    if rule_id not in rules:
        raise BearError(f"no built-in rule {rule_id!r}; known: {', '.join(rules)}")
    return rules[rule_id]


def registry_of(rules: Iterable[Any], plugin: str = "test") -> Registry:
    """A registry of ``rules``, checked as the plugin host checks them (ids, stage, severity)."""
    registered: list[RegisteredRule] = []
    seen: set[str] = set()
    for rule in rules:
        rr = RegisteredRule.of(rule, plugin)
        if rr.id in seen:
            raise PluginError(f"rule id {rr.id!r} is given twice")
        seen.add(rr.id)
        registered.append(rr)
    return Registry(registered)


def evaluate_rule(
    rule: Any,
    events: Sequence[Mapping[str, Any]] | None = None,
    items: Sequence[Mapping[str, Any]] | None = None,
    *,
    stage: str | None = None,
    as_released: bool = False,
    run_id: int | None = None,
    ws: Workspace | None = None,
    ids: Iterable[int] | None = None,
    raise_errors: bool = True,
    plugin: str = "test",
    **book: Any,
) -> pd.DataFrame:
    """Run ``rule`` (or a list of rules) through the real engine over a tiny book.

    :param rule: a rule object (``SqlRule`` or one with ``evaluate(batch)``), or several.
    :param events: events for ``make_workspace`` (and ``items``, plus ``projects=``,
        ``accounts=``, ``companies=``, ``products=``, ``periods=``, ``settings=`` as keywords).
    :param stage: evaluate only this stage (default: the stages of the rules given).
    :param as_released: judge the invoice stage as if the events were released, as the
        preview of Release and Invoice does.
    :param run_id: judge as this run would (its own claims do not count against it).
    :param ws: evaluate over an existing workspace instead (then give no events).
    :param ids: the events to judge (default: every event of the book).
    :param raise_errors: raise ``PluginError`` when the rule crashes, hangs or returns
        garbage, instead of returning its fail-closed violations.
    :returns: DataFrame ``billing_event_id, rule_id, severity, message``, ordered.
    """
    rules = list(rule) if isinstance(rule, list | tuple) else [rule]
    registry = registry_of(rules, plugin)
    if stage is None:
        stages = tuple(s.value for s in Stage if any(r.stage == s.value for r in registry.rules))
    else:
        try:
            stages = (Stage(stage).value,)
        except ValueError:
            raise BearError(f"stage {stage!r}: expected release, invoice or revert") from None
    own = ws is None
    if own:
        ws = make_workspace(events or (), items, **book)
    elif events or items or book:
        raise BearError("evaluate_rule: give either ws or the rows of a book, not both")
    assert ws is not None
    try:
        cur = ws.db.cursor()
        if ids is None:
            cur.execute(
                "CREATE OR REPLACE TEMP TABLE _testing_eval_ids AS "
                "SELECT id AS billing_event_id FROM billing_events"
            )
        else:
            wanted = pa.table({"billing_event_id": pa.array(list(ids), pa.int64())})
            cur.register("_testing_wanted", wanted)
            try:
                cur.execute(
                    "CREATE OR REPLACE TEMP TABLE _testing_eval_ids AS "
                    "SELECT DISTINCT billing_event_id FROM _testing_wanted"
                )
            finally:
                cur.unregister("_testing_wanted")

        timings = judge(
            ws.core,
            cur,
            stages,
            "_testing_eval_ids",
            target="_testing_eval_v",
            as_released=as_released,
            run_id=run_id,
            registry=registry,
        )
        failed = [t for t in timings if t.error]
        if failed and raise_errors:
            t = failed[0]
            raise PluginError(f"rule {t.rule_id} failed: {t.error}")
        out = (
            cur.sql(
                "SELECT billing_event_id, rule_id, severity, message FROM _testing_eval_v "
                "ORDER BY billing_event_id, rule_id, message"
            )
            .to_arrow_table()
            .to_pandas()
        )
        cur.execute("DROP TABLE IF EXISTS _testing_eval_ids")
        cur.execute("DROP TABLE IF EXISTS _testing_eval_v")
        return out
    finally:
        if own:
            ws.close()
