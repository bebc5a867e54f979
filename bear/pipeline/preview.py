"""The preview (what an action would do, writing nothing) and the eligibility of every event
of a kind, cached until the data or the settings change (the dashboard's eligibility column
and filter read it)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from bear.errors import BearError
from bear.models import Action, Preview, RuleTiming
from bear.pipeline.ids import IdSource, action_of, judge, load_ids
from bear.pipeline.tx import drop_temp
from bear.queries.events import KIND_SQL, in_ids
from bear.rules.batch import BATCH_VIEWS

if TYPE_CHECKING:
    from bear.pipeline.core import Core


def preview(
    core: Core,
    source: IdSource,
    action: str | Action = "release_and_invoice",
    full: bool = False,
) -> Preview:
    """Judge the events of ``source`` for ``action`` without writing anything (temp tables only)."""
    act = action_of(action)
    t0 = time.perf_counter()
    settings = core.snapshot()
    cur = core.db.cursor()
    n = load_ids(cur, source, "_pv_ids")
    limit = settings.validation_limit
    validated = bool(full) or n <= limit
    reason = (
        ""
        if validated
        else (
            f"validation skipped: {n:,} events is above validation_limit ({limit:,}); rules still run "
            "in the background stage. Ask for a full validation to see every reason now."
        )
    )
    stages = [s.value for s in act.stages]
    timings: list[Any] = []
    # Every event of a kind (the dashboard's "select all"): the verdict the eligibility column
    # keeps is this very judgement (same events, stages, data and settings), so it is reused —
    # and a judgement made here is kept for it.
    kind = _whole_kind(core, cur, act, n, getattr(source, "whole", None))
    key = None if kind is None else (kind, core.data_version)
    # one judgement of a whole kind at a time: a preview asked for while the eligibility
    # column's is being made (or the reverse) waits for it and reuses it
    with nullcontext() if key is None else core.judging(key):
        kept = None if key is None else core.eligibility_cache.get(key)
        batch_built = False
        if kept is not None:
            validated, reason = True, ""
            timings = list(kept.timings)
            violations = kept.violations
            cur.register("_kept_v", violations)
            try:
                cur.execute("CREATE OR REPLACE TEMP TABLE _violations AS SELECT * FROM _kept_v")
            finally:
                cur.unregister("_kept_v")
        elif validated:
            version = core.data_version
            timings = judge(
                core,
                cur,
                stages,
                "_pv_ids",
                as_released=act is Action.RELEASE_AND_INVOICE,
                settings=settings,
                where=None if kind is None else KIND_SQL[kind],
            )
            batch_built = True
            violations = cur.sql("SELECT * FROM _violations").to_arrow_table()  # sorted on use
            if kind is not None:
                # kept as it is: what the eligibility column reads of it is made when first asked
                _keep(core, (kind, version), violations, timings)
    if validated:
        cur.execute(
            "CREATE OR REPLACE TEMP TABLE _pv_ok AS SELECT billing_event_id FROM _pv_ids "
            "WHERE billing_event_id NOT IN (SELECT billing_event_id FROM _violations WHERE severity = 'block')"
        )
    else:
        cur.execute("CREATE OR REPLACE TEMP TABLE _pv_ok AS SELECT billing_event_id FROM _pv_ids")
        cur.execute(
            "CREATE OR REPLACE TEMP TABLE _violations AS SELECT * FROM (SELECT 1::BIGINT AS billing_event_id,"
            " ''::VARCHAR AS stage, ''::VARCHAR AS rule_id, ''::VARCHAR AS severity, ''::VARCHAR AS message) WHERE false"
        )
        violations = cur.sql("SELECT * FROM _violations").to_arrow_table()
    eligible = (
        cur.sql("SELECT billing_event_id FROM _pv_ok ORDER BY 1")
        .fetchnumpy()["billing_event_id"]
        .tolist()
    )
    # The batch view, when built, holds the amounts and currencies: no second read of events.
    events = (
        "_batch_core e WHERE e.billing_event_id NOT IN "
        "(SELECT billing_event_id FROM _violations WHERE severity = 'block')"
        if batch_built
        # every event of a kind: an anti-join on the blocked few, not a semi-join on the many
        else f"billing_events e WHERE {KIND_SQL[kind]} AND e.id NOT IN "
        "(SELECT billing_event_id FROM _violations WHERE severity = 'block')"
        if kind is not None and validated
        else "billing_events e WHERE e.id IN (SELECT billing_event_id FROM _pv_ok)"
    )
    docs = core.frame((_REVERT_DOCS if act is Action.REVERT else _DOCS).format(events=events))
    by_rule = core.frame(
        # one row per event and rule by construction (Python rules' rows are made distinct)
        "SELECT stage, rule_id, severity, count(*) AS events FROM _violations "
        "GROUP BY ALL ORDER BY events DESC, rule_id"
    )
    # _pv_ids is in id order: rowid is the rank, no window needed. The batches with culprits
    # are found from the culprits alone, and the events are read once more for their batch
    # mates (a quarter faster than flagging every event first, a CTE read twice).
    blast_sql = """
            WITH c AS (
                SELECT DISTINCT billing_event_id FROM _violations
                WHERE stage = 'release' AND severity = 'block'
            ), bad AS (
                SELECT (p.rowid // $bs + 1)::INTEGER AS batch_seq, count(*) AS culprits,
                       min(p.billing_event_id) AS first_culprit
                FROM _pv_ids p SEMI JOIN c ON c.billing_event_id = p.billing_event_id GROUP BY 1
            )
            SELECT p.billing_event_id, bad.batch_seq, bad.culprits, bad.first_culprit
            FROM _pv_ids p JOIN bad ON bad.batch_seq = (p.rowid // $bs + 1)::INTEGER
            WHERE p.billing_event_id NOT IN (SELECT billing_event_id FROM c) {limit}
            """
    if (
        validated
        and Action.RELEASE.value in (s.value for s in act.stages)
        and settings.release_failure_mode == "batch"
    ):
        blast = cur.sql(
            blast_sql.format(limit=""), params={"bs": settings.release_batch_size}
        ).to_arrow_table()
    else:
        blast = cur.sql(blast_sql.format(limit="AND false"), params={"bs": 1}).to_arrow_table()
    # Everything the caller gets is in Arrow or pandas now: the working tables (a wide row per
    # event, ~450 MiB at a million) would otherwise stay on this thread's cursor until its next
    # preview replaced them.
    drop_temp(cur, *PREVIEW_TEMP_TABLES, views=BATCH_VIEWS)
    return Preview(
        act.value,
        n,
        validated,
        reason,
        eligible,
        violations,
        docs,
        blast,
        by_rule,
        tuple(timings),
        time.perf_counter() - t0,
    )


# A preview's working tables on its thread's cursor (the batch view's among them).
PREVIEW_TEMP_TABLES = ("_pv_ids", "_pv_ok", "_violations", "_batch_core")

# The documents an action would create: one per event, by the sign of its amount.
_DOCS = """
SELECT CASE WHEN e.summary_amount < 0 THEN 'SCN' ELSE 'SIN' END AS doc_type, e.currency,
       count(*) AS count, sum(abs(e.summary_amount)) AS total
FROM {events} AND e.summary_amount <> 0
GROUP BY ALL ORDER BY doc_type DESC, currency
"""

# A revert: the reversing documents it would create (effect ``create``: a credit note for a
# complete sales invoice, a sales invoice for a complete credit note) and the documents in
# progress it would discard (effect ``discard``, of their own type).
_REVERT_DOCS = """
SELECT CASE WHEN d.status = 'complete' THEN 'create' ELSE 'discard' END AS effect,
       CASE WHEN d.status = 'in_progress' THEN d.doc_type
            WHEN d.doc_type = 'SIN' THEN 'SCN' ELSE 'SIN' END AS doc_type,
       d.currency, count(*) AS count, sum(d.total) AS total
FROM documents d
WHERE d.status IN ('in_progress', 'complete') AND d.reverses_document_id IS NULL
  AND d.id IN (SELECT e.document_id FROM {events} AND e.document_id IS NOT NULL)
GROUP BY ALL ORDER BY effect, doc_type DESC, currency
"""


# The stages that judge the events of each kind (``KIND_SQL``) the eligibility is kept for,
# and the action whose preview of every such event is that same judgement.
_KIND_STAGES = {"awaiting_invoice": ["invoice"], "released": ["revert"], "invoiced": ["revert"]}
_ACTION_KINDS = {
    Action.RELEASE_AND_INVOICE: ("awaiting_release",),
    Action.INVOICE: ("awaiting_invoice",),
    Action.REVERT: ("invoiced", "released"),
}


@dataclass(frozen=True)
class Verdict:
    """The rules' judgement of every event of a kind, kept until data or settings change."""

    violations: pa.Table  # every violation (all severities, with messages)
    timings: tuple[RuleTiming, ...]
    conditions: dict[str, Any] = field(default_factory=dict, compare=False)  # made of it on use

    def blocked(self, cursor: Callable[[], Any]) -> tuple[pa.Table, pa.Table]:
        """The blocking violations as (per blocked event: reasons, first_rule_id,
        first_message; and the long event × rule table), made on a ``cursor()`` when first
        asked and kept (a preview keeps its verdict without making them: an API caller does not
        read them; the dashboard's eligibility column does)."""
        made = self.conditions.get("blocked_tables")
        if made is None:
            cur = cursor()
            cur.register("_verdict_v", self.violations)
            try:
                made = _blocked(cur, "_verdict_v")
            finally:
                cur.unregister("_verdict_v")
            made = self.conditions.setdefault("blocked_tables", made)  # one copy if two made it
        return made


def _blocked(cur: Any, target: str) -> tuple[pa.Table, pa.Table]:
    per_event = cur.sql(
        f"""
        SELECT billing_event_id, count(*) AS reasons,
               arg_min(rule_id, CASE stage WHEN 'release' THEN 0 ELSE 1 END || rule_id) AS first_rule_id,
               arg_min(message, CASE stage WHEN 'release' THEN 0 ELSE 1 END || rule_id) AS first_message
        FROM {target} WHERE severity = 'block' GROUP BY billing_event_id
        """
    ).to_arrow_table()
    rules = cur.sql(
        f"SELECT billing_event_id, rule_id FROM {target} WHERE severity = 'block'"
    ).to_arrow_table()
    return per_event, rules


def _whole_kind(core: Core, cur: Any, act: Action, n: int, whole: str | None) -> str | None:
    """The kind whose events are exactly the ids in ``_pv_ids`` (``n`` of them), if any; that
    kind's verdict is the preview's. ``whole``: the source says it selects every event of that
    kind; otherwise the ids are counted (a count, then a membership scan only when the counts
    agree: about 0.15 s at a million events)."""
    kinds = _ACTION_KINDS.get(act, ()) if n > 0 else ()
    if whole in kinds:
        return whole
    for kind in kinds:
        where = KIND_SQL[kind]
        if (
            cur.execute(f"SELECT count(*) FROM billing_events e WHERE {where}").fetchall()[0][0]
            != n
        ):
            continue
        inside = cur.execute(
            "SELECT count(*) FROM _pv_ids WHERE billing_event_id IN "
            f"(SELECT e.id FROM billing_events e WHERE {where})"
        ).fetchall()[0][0]
        if inside == n:  # _pv_ids holds distinct ids
            return kind
    return None


def _keep(core: Core, key: tuple[str, int], violations: pa.Table, timings: Any) -> Verdict:
    """The verdict of ``violations``, kept for ``key`` unless the data changed while it was
    being made."""
    verdict = Verdict(violations, tuple(timings))
    if core.data_version == key[1]:  # (a refresh racing this leaves a key never asked for)
        core.eligibility_cache[key] = verdict
    return verdict


def eligibility_table(core: Core, kind: str) -> tuple[pa.Table, pa.Table]:
    """Blocking violations of every event of ``kind`` (cached until data or settings change).

    Returns (per event: reasons, first_rule_id, first_message; and the long event × rule table).
    """
    key = (kind, core.data_version)
    cached = core.eligibility_cache.get(key)
    if cached is not None:
        return cached.blocked(core.db.cursor)
    with core.judging(key):  # the server's warm-up and a session ask at once: judged once
        cached = core.eligibility_cache.get(key)
        if cached is not None:
            return cached.blocked(core.db.cursor)
        return _judge_kind(core, key)


def _judge_kind(core: Core, key: tuple[str, int]) -> tuple[pa.Table, pa.Table]:
    kind = key[0]
    cur = core.db.cursor()
    where = KIND_SQL.get(kind, "true")
    cur.execute(
        f"CREATE OR REPLACE TEMP TABLE _el_ids AS SELECT e.id AS billing_event_id FROM billing_events e WHERE {where}"
    )
    stages = _KIND_STAGES.get(kind, ["release", "invoice"])
    timings = judge(
        core,
        cur,
        stages,
        "_el_ids",
        target="_el_v",
        as_released=stages[0] == "release",
        where=where,
    )
    violations = cur.sql("SELECT * FROM _el_v").to_arrow_table()
    verdict = _keep(core, key, violations, timings)
    verdict.conditions.setdefault("blocked_tables", _blocked(cur, "_el_v"))  # asked for now
    drop_temp(cur, "_el_v", "_el_ids", "_batch_core", views=BATCH_VIEWS)
    return verdict.blocked(lambda: cur)


def blocked_reasons(core: Core, kind: str, ids: Iterable[int]) -> dict[int, tuple[str, int]]:
    """{event id: (first message, number of reasons)} for the events among ``ids`` that the
    rules of ``kind`` block, looked up in a dict kept with the verdict: every session's page
    reads the one dict (~130,000 entries at a million events, built once per data version)."""
    table, _ = eligibility_table(core, kind)
    verdict = core.eligibility_cache.get((kind, core.data_version))
    lookup = verdict.conditions.get("by_id") if verdict is not None else None
    if lookup is None:
        why = zip(
            [str(m) for m in table.column("first_message").to_pylist()],
            table.column("reasons").to_pylist(),
            strict=True,
        )
        lookup = dict(zip(table.column("billing_event_id").to_pylist(), why, strict=True))
        if verdict is not None and verdict.conditions.get("blocked_tables", (None,))[0] is table:
            verdict.conditions["by_id"] = lookup
    return {i: lookup[i] for i in ids if i in lookup}


def eligibility_condition(core: Core, kind: str, eligibility: str) -> tuple[str, dict[str, Any]]:
    """SQL condition for the eligibility filter (``eligible``, ``ineligible`` or a rule id).

    The events are looked up in a string of bits (``in_ids``), made once per kept verdict:
    ~20 ms at a million events, where a semi-join on the blocked ids took ~100."""
    key = ("awaiting_release" if kind == "all" else kind, core.data_version)
    table, rules = eligibility_table(core, key[0])
    if eligibility in ("eligible", "ineligible"):
        blocked = _kept_bits(core, key, "blocked", lambda: table.column("billing_event_id"))
        where = blocked.where if eligibility == "ineligible" else f"NOT ({blocked.where})"
        return where, dict(blocked.params)
    if eligibility in {r.id for r in core.plugins.registry.rules}:
        by_rule = _kept_bits(
            core,
            key,
            eligibility,
            lambda: rules.filter(pc.equal(rules.column("rule_id"), eligibility)).column(
                "billing_event_id"
            ),
        )
        return by_rule.where, dict(by_rule.params)
    raise BearError(
        f"filter 'eligibility': expected 'eligible', 'ineligible' or a rule id, not {eligibility!r}"
    )


def _kept_bits(core: Core, key: tuple[str, int], name: str, ids: Any) -> Any:
    """The ``in_ids`` condition of the ids ``ids()`` returns, kept with the verdict."""
    verdict = core.eligibility_cache.get(key)
    kept = verdict.conditions.get(name) if verdict is not None else None
    if kept is None:
        kept = in_ids(pa.table({"id": ids()}), "f_elig_bits")
        if verdict is not None:
            verdict.conditions[name] = kept
    return kept
