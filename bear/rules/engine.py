"""The rule engine: evaluate every enabled rule of a stage over a batch of events, set-based.

All ``SqlRule``s of a stage run in ONE DuckDB pass over the batch view. Python rules get the
batch (as a relation on a cursor of their own) in a worker thread with a timeout. Each rule
is timed and guarded on its own: a rule that raises, times out or returns garbage fails
closed — every event it was judging gets a ``block`` violation naming the rule and its plugin.
Violations land in the temp table named by ``target`` on the evaluating cursor.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from bear.models import RuleTiming
from bear.rules.batch import COLUMNS, Batch, batch_view, build_batch
from bear.rules.model import SqlRule, declared_columns, normalise, sql_string

log = logging.getLogger(__name__)

VIOLATIONS_DDL = (
    "CREATE OR REPLACE TEMP TABLE {target} (billing_event_id BIGINT, stage VARCHAR, rule_id VARCHAR,"
    " severity VARCHAR, message VARCHAR)"
)


@dataclass
class RegisteredRule:
    """A rule as the registry holds it: the object, its plugin and its checked metadata."""

    rule: Any
    plugin: str
    id: str
    stage: str
    severity: str
    description: str
    enabled: bool = True
    fail_sql: str | None = None  # SqlRule: predicate
    message_sql: str | None = None  # SqlRule: message expression
    columns: tuple[str, ...] | None = None  # Python rule: the batch columns it reads

    @classmethod
    def of(cls, rule: Any, plugin: str, enabled: bool = True) -> RegisteredRule:
        """Check ``rule``'s metadata and wrap it (raises ``PluginError`` naming the plugin)."""
        rid, stage, severity, description = normalise(rule, plugin)
        rr = cls(rule, plugin, rid, stage, severity, description, enabled)
        if isinstance(rule, SqlRule):
            rr.fail_sql = rule.fail_when
            rr.message_sql, _ = rule.message_expression()
        rr.columns = declared_columns(rule, plugin, rid, COLUMNS)
        return rr

    @property
    def kind(self) -> str:
        return "sql" if isinstance(self.rule, SqlRule) else "python"


@dataclass
class Registry:
    """The rules of a workspace, plus the last timing and failure of each (for display)."""

    rules: list[RegisteredRule] = field(default_factory=list)
    timings: dict[str, RuleTiming] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Python rules whose evaluation outlived its time limit and is still running (a thread
    # cannot be killed): rule id -> (thread, when it timed out). While it runs, the rule fails
    # closed at once instead of starting another thread — one stray thread per rule at most,
    # and one time-out per run, not one per batch.
    hung: dict[str, tuple[threading.Thread, float]] = field(default_factory=dict)

    def still_running(self, rule_id: str) -> float | None:
        """When the rule's last evaluation timed out, if it is still running; else None."""
        with self.lock:
            got = self.hung.get(rule_id)
            if got is None:
                return None
            if not got[0].is_alive():
                del self.hung[rule_id]
                return None
            return got[1]

    def mark_hung(self, rule_id: str, thread: threading.Thread) -> None:
        with self.lock:
            self.hung[rule_id] = (thread, time.time())

    def for_stage(self, stage: str) -> list[RegisteredRule]:
        return [r for r in self.rules if r.stage == stage and r.enabled]

    def record(self, timings: list[RuleTiming]) -> None:
        with self.lock:
            for t in timings:
                self.timings[t.rule_id] = t


def _fail_closed(
    cur: duckdb.DuckDBPyConnection, target: str, stage: str, rr: RegisteredRule, error: str
) -> None:
    """Every event of the batch gets a ``block`` violation naming the rule and its error."""
    msg = f"rule {rr.id} ({rr.plugin}) failed: {error}"
    cur.execute(
        f"INSERT INTO {target} SELECT billing_event_id, $stage, $rid, 'block', $msg FROM _batch_core",
        {"stage": stage, "rid": rr.id, "msg": msg[:2000]},
    )
    log.warning("%s", msg)


def _sql_select(rr: RegisteredRule) -> str:
    return (
        f"SELECT billing_event_id, $stage, {sql_string(rr.id)}, {sql_string(rr.severity)}, "
        f"CAST(({rr.message_sql}) AS VARCHAR) FROM _batch WHERE ({rr.fail_sql}) IS TRUE"
    )


def _run_sql_rules(
    cur: duckdb.DuckDBPyConnection, rules: list[RegisteredRule], target: str, stage: str
) -> None:
    """All the stage's SQL rules in ONE statement. ``_batch`` is a table, so a UNION ALL of
    filtered scans reads only each rule's columns (twice as fast as one list per row)."""
    cur.execute(
        f"INSERT INTO {target} " + " UNION ALL ".join(_sql_select(r) for r in rules),
        {"stage": stage},
    )


def _quietly(con: duckdb.DuckDBPyConnection | None, action: str) -> None:
    """``interrupt`` or ``close`` a rule's cursor; a cursor already gone is no error."""
    if con is None:
        return
    try:
        getattr(con, action)()
    except duckdb.Error:
        log.debug("%s of a rule's cursor failed", action, exc_info=True)


class _Interrupter:
    """Interrupts a cursor's running query when a time limit passes."""

    def __init__(self, cur: duckdb.DuckDBPyConnection, seconds: float) -> None:
        self.fired = False
        self._cur = cur
        self._lock = threading.Lock()
        self._done = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        # Only while the guarded statement runs: a timer that fires as it returns must not
        # interrupt whatever the cursor runs next (the batch's commit, the next run).
        with self._lock:
            if self._done:
                return
            self.fired = True
            _quietly(self._cur, "interrupt")

    def __enter__(self) -> _Interrupter:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._done = True
        self._timer.cancel()


def _normalise_output(out: Any) -> pa.Table:
    if isinstance(out, duckdb.DuckDBPyRelation):
        out = out.to_arrow_table()
    elif isinstance(out, pa.RecordBatchReader):
        out = out.read_all()
    elif hasattr(out, "to_arrow") and not isinstance(out, pa.Table):  # polars and friends
        out = out.to_arrow()
    elif out.__class__.__name__ == "DataFrame" and hasattr(out, "columns"):
        out = pa.Table.from_pandas(out, preserve_index=False)
    if not isinstance(out, pa.Table):
        raise TypeError(
            f"returned {type(out).__name__}; expected a DuckDB relation, Arrow table or DataFrame"
        )
    missing = {"billing_event_id", "message"} - set(out.column_names)
    if missing:
        raise TypeError(
            f"returned columns {out.column_names}; expected billing_event_id and message (missing {sorted(missing)})"
        )
    try:
        ids = out.column("billing_event_id").cast(pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise TypeError(f"billing_event_id is not a column of whole numbers ({exc})") from None
    msgs = out.column("message").cast(pa.string())
    return pa.table({"billing_event_id": ids, "message": msgs})


def _call_python_rule(
    rr: RegisteredRule,
    table: pa.Table,
    stage: str,
    settings: Any,
    new_cursor: Callable[[], duckdb.DuckDBPyConnection],
    timeout: float,
    registry: Registry | None = None,
) -> tuple[pa.Table | None, str | None]:
    """Run one Python rule in a worker thread; returns (failing rows, error). A rule whose
    previous evaluation timed out and still runs fails closed at once (no second thread)."""
    if registry is not None and (since := registry.still_running(rr.id)) is not None:
        return None, (
            f"timed out at {time.strftime('%H:%M:%S', time.localtime(since))} and is still "
            "running; not started again until it returns"
        )
    fut: Future[pa.Table] = Future()
    holder: dict[str, Any] = {}

    def work() -> None:
        try:
            con = new_cursor()
            holder["con"] = con
            out = rr.rule.evaluate(Batch(con, table, stage, settings))
            fut.set_result(_normalise_output(out))
        except BaseException as exc:  # noqa: BLE001 — reported as this rule's failure
            if not fut.done():
                fut.set_exception(exc)
        finally:
            _quietly(holder.get("con"), "close")

    thread = threading.Thread(target=work, name=f"rule-{rr.id}", daemon=True)
    thread.start()
    try:
        return fut.result(timeout=timeout), None
    except TimeoutError:
        _quietly(holder.get("con"), "interrupt")  # stops the rule's DuckDB work, if any
        thread.join(0.2)
        if registry is not None and thread.is_alive():
            registry.mark_hung(rr.id, thread)  # its Python code runs on: accounted for
        return None, f"timed out after {timeout:g} s"
    except BaseException as exc:  # noqa: BLE001
        return None, f"{type(exc).__name__}: {exc}"


def _store_python_output(
    cur: duckdb.DuckDBPyConnection, out: pa.Table, target: str, stage: str, rr: RegisteredRule
) -> str | None:
    """Store a Python rule's failing rows (one per event, its messages joined); returns an
    error when it named events that are not in the batch (then nothing of it is kept)."""
    ids = out.column("billing_event_id")
    present = np.sort(ids.drop_null().to_numpy())  # sorting 300k ids: ~15 ms (hashing: ~130)
    distinct = int(present.size - np.count_nonzero(present[1:] == present[:-1]))
    wanted = distinct + (1 if ids.null_count else 0)
    # An event named once (the usual case) needs no grouping, which costs ~0.1 s per 300k rows.
    message = (
        "coalesce(message, $r) FROM _rule_out WHERE {cond}"
        if distinct == out.num_rows
        else "coalesce(string_agg(DISTINCT message, '; ' ORDER BY message), $r) FROM _rule_out "
        "WHERE {cond} GROUP BY billing_event_id"
    ).format(cond="billing_event_id IN (SELECT billing_event_id FROM _batch_core)")
    cur.register("_rule_out", out)
    try:
        stored = cur.execute(
            f"INSERT INTO {target} SELECT billing_event_id, $s, $r, $sev, {message}",
            {"s": stage, "r": rr.id, "sev": rr.severity},
        ).fetchall()[0][0]
        if stored == wanted:
            return None
        n, example = cur.execute(
            "SELECT count(*), min(billing_event_id) FROM _rule_out "
            "WHERE billing_event_id NOT IN (SELECT billing_event_id FROM _batch_core) OR billing_event_id IS NULL"
        ).fetchall()[0]
        cur.execute(
            f"DELETE FROM {target} WHERE rule_id = $r AND stage = $s", {"r": rr.id, "s": stage}
        )
        return f"returned {n} id(s) that are not in the batch (e.g. {example})"
    finally:
        cur.unregister("_rule_out")


def evaluate_stage(
    cur: duckdb.DuckDBPyConnection,
    registry: Registry,
    stage: str,
    n_events: int,
    *,
    target: str,
    settings: Any,
    new_cursor: Callable[[], duckdb.DuckDBPyConnection],
    timeout: float,
) -> list[RuleTiming]:
    """Evaluate the enabled rules of ``stage`` over ``_batch`` (already built on ``cur``,
    ``n_events`` rows)."""
    rules = registry.for_stage(stage)
    timings: list[RuleTiming] = []
    if not rules or n_events == 0:
        return timings
    sql_rules = [r for r in rules if r.kind == "sql"]
    py_rules = [r for r in rules if r.kind == "python"]

    def count_for(rule_id: str) -> int:
        return int(
            cur.execute(
                f"SELECT count(*) FROM {target} WHERE rule_id = $r AND stage = $s",
                {"r": rule_id, "s": stage},
            ).fetchall()[0][0]
        )

    def conclude(rr: RegisteredRule, started: float, err: str | None) -> None:
        """Fail the rule closed if it erred; record its timing and count."""
        if err:
            _fail_closed(cur, target, stage, rr, err)
        timings.append(
            RuleTiming(
                rr.id,
                rr.plugin,
                stage,
                time.perf_counter() - started,
                n_events,
                count_for(rr.id),
                err,
            )
        )

    if sql_rules:
        t0 = time.perf_counter()
        ok = False
        error = None
        with _Interrupter(cur, timeout) as guard:
            try:
                _run_sql_rules(cur, sql_rules, target, stage)
                ok = True
            except duckdb.Error as exc:
                error = "timed out" if guard.fired else str(exc)
        shared = time.perf_counter() - t0
        if ok:
            counts = dict(
                cur.execute(
                    f"SELECT rule_id, count(*) FROM {target} WHERE stage = $s GROUP BY 1",
                    {"s": stage},
                ).fetchall()
            )
            timings += [
                RuleTiming(r.id, r.plugin, stage, shared, n_events, counts.get(r.id, 0))
                for r in sql_rules
            ]
        else:
            log.info("one-pass SQL rules failed (%s); evaluating them one by one", error)
            for rr in sql_rules:
                t1 = time.perf_counter()
                err = None
                with _Interrupter(cur, timeout) as guard:
                    try:
                        _run_sql_rules(cur, [rr], target, stage)
                    except duckdb.Error as exc:
                        err = (
                            f"timed out after {timeout:g} s"
                            if guard.fired
                            else str(exc).splitlines()[0]
                        )
                conclude(rr, t1, err)
    whole: pa.Table | None = None
    for rr in py_rules:
        t1 = time.perf_counter()
        if rr.columns is None:  # every column, exported once for all such rules
            if whole is None:
                whole = cur.sql("SELECT * FROM _batch").to_arrow_table()
            table = whole
        else:  # just what the rule reads: a few columns export in milliseconds
            table = cur.sql(f"SELECT {', '.join(rr.columns)} FROM _batch").to_arrow_table()
        out, err = _call_python_rule(rr, table, stage, settings, new_cursor, timeout, registry)
        if out is not None:
            err = _store_python_output(cur, out, target, stage, rr)
        conclude(rr, t1, err)
    registry.record(timings)
    return timings


def evaluate(
    cur: duckdb.DuckDBPyConnection,
    registry: Registry,
    stages: tuple[str, ...],
    source: str,
    *,
    target: str = "_violations",
    settings: Any,
    new_cursor: Callable[[], duckdb.DuckDBPyConnection],
    timeout: float,
    invoice_as_released: bool = False,
    run_id: int | None = None,
    where: str | None = None,
) -> list[RuleTiming]:
    """Evaluate ``stages`` for the ids in table ``source``; violations go to ``target``.
    ``where``: a condition selecting exactly those ids, if known (see ``build_batch``)."""
    cur.execute(VIOLATIONS_DDL.format(target=target))
    timings: list[RuleTiming] = []
    n_events = build_batch(
        cur,
        source,
        run_id=run_id,
        require_approval=bool(getattr(settings, "require_approval", True)),
        documents="revert" in stages,
        where=where,
    )
    for stage in stages:
        if invoice_as_released and stage == "invoice":
            # Judged as if released: same rows, only the flag differs (cheaper than a rebuild).
            batch_view(cur, as_released=True)
        timings += evaluate_stage(
            cur,
            registry,
            stage,
            n_events,
            target=target,
            settings=settings,
            new_cursor=new_cursor,
            timeout=timeout,
        )
    return timings
