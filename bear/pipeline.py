"""The stages: preview, release (batched, all-or-nothing per batch), invoice, notify; the runner.

Every state change is written as "update where still in the expected state" inside one
transaction with the bookkeeping that records it, so a replay after a crash is a no-op and
a run resumes from its last committed batch. One runner thread per owning process executes
queued runs in order; readers follow progress in ``runs``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from bear.config import is_email
from bear.db.documents import create_documents, exclude_culprits
from bear.errors import BearError
from bear.models import FINAL_STATUSES, Action, Preview, RuleTiming, RunResult, RunSummary
from bear.plugins.messages import compose
from bear.rules.engine import Registry, evaluate
from bear.selection import Selection

if TYPE_CHECKING:
    from bear.workspace import Workspace

log = logging.getLogger(__name__)

INVOICE_CHUNK = 100_000
CONFLICT_RETRIES = 5
NOTIFY_BACKOFF_S = (5, 30, 120, 600, 1800, 3600)
NOTIFY_TIMEOUT_S = 30.0  # a notifier that takes longer is abandoned; its entry stays pending


# -- ids ------------------------------------------------------------------------------------
def load_ids(
    ws: Workspace, cur: duckdb.DuckDBPyConnection, ids_or_selection: Any, table: str
) -> int:
    """Fill temp table ``table`` (billing_event_id) with the ids of a selection or list, in
    id order (so ``rowid`` is each id's rank)."""
    if isinstance(ids_or_selection, Selection):
        if ids_or_selection.ws is not ws:
            raise BearError("the selection belongs to another workspace")
        sql, params = ids_or_selection.ids_sql()
        cur.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {sql} ORDER BY 1", params)
    else:
        ids = ws.resolve_id_array(ids_or_selection)
        cur.register("_ids_in", pa.table({"billing_event_id": ids}))
        try:
            cur.execute(
                f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT billing_event_id FROM _ids_in ORDER BY 1"
            )
        finally:
            cur.unregister("_ids_in")
    return int(cur.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])


def _action(action: str | Action) -> Action:
    try:
        return Action(str(getattr(action, "value", action)).replace("-", "_"))
    except ValueError:
        raise BearError(
            f"unknown action {action!r}; expected release_and_invoice, release or invoice"
        ) from None


def judge(
    ws: Workspace,
    cur: duckdb.DuckDBPyConnection,
    stages: Sequence[str],
    source: str,
    *,
    target: str = "_violations",
    as_released: bool = False,
    run_id: int | None = None,
    registry: Registry | None = None,
) -> list[RuleTiming]:
    """Evaluate ``stages`` over the ids in temp table ``source`` of ``cur`` with the
    workspace's rules (or ``registry``); violations go to temp table ``target``."""
    host = ws.plugins
    host.prepare(cur)

    def new_cursor() -> duckdb.DuckDBPyConnection:
        con = ws.db.con.cursor()
        host.prepare(con, remember=False)
        return con

    return evaluate(
        cur,
        host.registry if registry is None else registry,
        tuple(stages),
        source,
        target=target,
        settings=ws.settings,
        new_cursor=new_cursor,
        timeout=float(ws.settings.rule_timeout_s),
        invoice_as_released=as_released,
        run_id=run_id,
    )


# -- preview --------------------------------------------------------------------------------
def preview(
    ws: Workspace,
    ids_or_selection: Any,
    action: str | Action = "release_and_invoice",
    full: bool = False,
) -> Preview:
    """Judge a selection for ``action`` without writing anything (temp tables only)."""
    act = _action(action)
    t0 = time.perf_counter()
    cur = ws.db.cursor()
    n = load_ids(ws, cur, ids_or_selection, "_pv_ids")
    limit = int(ws.settings.validation_limit)
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
    if validated:
        timings = judge(ws, cur, stages, "_pv_ids", as_released=act is Action.RELEASE_AND_INVOICE)
        violations = cur.sql("SELECT * FROM _violations").to_arrow_table()  # sorted on use
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
        if validated
        else "billing_events e WHERE e.id IN (SELECT billing_event_id FROM _pv_ok)"
    )
    docs = ws._frame(
        f"""
        SELECT CASE WHEN e.summary_amount < 0 THEN 'SCN' ELSE 'SIN' END AS doc_type, e.currency,
               count(*) AS count, sum(abs(e.summary_amount)) AS total
        FROM {events} AND e.summary_amount <> 0
        GROUP BY ALL ORDER BY doc_type DESC, currency
        """
    )
    by_rule = ws._frame(
        # one row per event and rule by construction (Python rules' rows are made distinct)
        "SELECT stage, rule_id, severity, count(*) AS events FROM _violations "
        "GROUP BY ALL ORDER BY events DESC, rule_id"
    )
    blast_sql = """
            WITH b AS (  -- _pv_ids is in id order: rowid is the rank, no window needed
                SELECT billing_event_id, (rowid // $bs + 1)::INTEGER AS batch_seq,
                       billing_event_id IN (SELECT billing_event_id FROM _violations
                                            WHERE stage = 'release' AND severity = 'block') AS culprit
                FROM _pv_ids
            ), bad AS (
                SELECT batch_seq, count(*) AS culprits, min(billing_event_id) AS first_culprit
                FROM b WHERE culprit GROUP BY batch_seq
            )
            SELECT b.billing_event_id, b.batch_seq, bad.culprits, bad.first_culprit
            FROM b JOIN bad USING (batch_seq) WHERE NOT b.culprit {limit}
            """
    if (
        validated
        and Action.RELEASE.value in (s.value for s in act.stages)
        and ws.settings.release_failure_mode == "batch"
    ):
        blast = cur.sql(
            blast_sql.format(limit=""), params={"bs": int(ws.settings.release_batch_size)}
        ).to_arrow_table()
    else:
        blast = cur.sql(blast_sql.format(limit="AND false"), params={"bs": 1}).to_arrow_table()
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


def eligibility_table(ws: Workspace, kind: str) -> tuple[pa.Table, pa.Table]:
    """Blocking violations of every event of ``kind`` (cached until data or settings change).

    Returns (per event: reasons, first_rule_id, first_message; and the long event × rule table).
    """
    key = (kind, ws.data_version)
    cached = ws._eligibility_cache.get(key)
    if cached is not None:
        return cached
    cur = ws.db.cursor()
    where = {
        "awaiting_release": "NOT released",
        "awaiting_invoice": "released AND NOT invoiced",
    }.get(kind, "true")
    cur.execute(
        f"CREATE OR REPLACE TEMP TABLE _el_ids AS SELECT id AS billing_event_id FROM billing_events WHERE {where}"
    )
    stages = ["invoice"] if kind == "awaiting_invoice" else ["release", "invoice"]
    judge(ws, cur, stages, "_el_ids", target="_el_v", as_released=kind != "awaiting_invoice")
    table = cur.sql(
        """
        SELECT billing_event_id, count(*) AS reasons,
               arg_min(rule_id, CASE stage WHEN 'release' THEN 0 ELSE 1 END || rule_id) AS first_rule_id,
               arg_min(message, CASE stage WHEN 'release' THEN 0 ELSE 1 END || rule_id) AS first_message
        FROM _el_v WHERE severity = 'block' GROUP BY billing_event_id
        """
    ).to_arrow_table()
    rules = cur.sql(
        "SELECT billing_event_id, rule_id FROM _el_v WHERE severity = 'block'"
    ).to_arrow_table()
    cur.execute("DROP TABLE IF EXISTS _el_v")
    result = (table, rules)
    if ws.data_version == key[1]:
        ws._eligibility_cache[key] = result
    return result


def eligibility_condition(ws: Workspace, kind: str, eligibility: str) -> tuple[str, dict[str, Any]]:
    """SQL condition for the eligibility filter (``eligible``, ``ineligible`` or a rule id)."""
    table, rules = eligibility_table(ws, "awaiting_release" if kind == "all" else kind)
    cur = ws.db.cursor()
    cur.register("_elig", table)
    cur.register("_elig_rules", rules)
    if eligibility == "eligible":
        return "e.id NOT IN (SELECT billing_event_id FROM _elig)", {}
    if eligibility == "ineligible":
        return "e.id IN (SELECT billing_event_id FROM _elig)", {}
    if eligibility in {r.id for r in ws.plugins.registry.rules}:
        return "e.id IN (SELECT billing_event_id FROM _elig_rules WHERE rule_id = $f_elig_rule)", {
            "f_elig_rule": eligibility
        }
    raise BearError(
        f"filter 'eligibility': expected 'eligible', 'ineligible' or a rule id, not {eligibility!r}"
    )


# -- runs -----------------------------------------------------------------------------------
_RUN_COLUMNS = (
    "id, action, requested_by, status, stage, validated, selected, excluded, batches_total, "
    "batches_done, failed_batches, released, not_released, invoice_total, invoice_done, "
    "sales_invoices, credit_notes, not_passed, process_run_id, error, created_at, started_at, "
    "updated_at, finished_at"
)


def read_run(cur: duckdb.DuckDBPyConnection, run_id: int) -> RunResult:
    rows = cur.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", [run_id]).fetchall()
    row = rows[0] if rows else None
    if row is None:
        raise BearError(f"unknown run id {run_id!r}")
    return RunResult(*row)  # _RUN_COLUMNS lists RunResult's fields in order


def _undelivered(cur: duckdb.DuckDBPyConnection, run_id: int) -> int:
    return int(
        cur.execute(
            "SELECT count(*) FROM notifications WHERE run_id = ? AND status = 'pending' "
            "AND attempts = 0",
            [run_id],
        ).fetchall()[0][0]
    )


class RunHandle:
    """A submitted run: ``.id``, ``.result()`` for its current state, ``.wait()`` for the end."""

    def __init__(self, ws: Workspace, run_id: int) -> None:
        self.ws = ws
        self.id = run_id

    def result(self) -> RunResult:
        return self.ws.run(self.id)

    @property
    def status(self) -> str:
        return self.result().status

    def wait(self, timeout: float | None = None) -> RunResult:
        """Block until the run has finished (or ``timeout`` seconds pass: ``TimeoutError``)."""
        return self.ws.runner.wait(self.id, timeout)

    def cancel(self) -> RunResult:
        """Ask the run to stop at its next batch boundary."""
        return cancel(self.ws, self.id)

    def __repr__(self) -> str:
        return f"<RunHandle {self.id}>"

    def _repr_html_(self) -> str:
        return self.result()._repr_html_()


def check_user(user: Any) -> str:
    if not isinstance(user, str) or not user.strip():
        raise BearError("user: give the name or e-mail address of the person starting the run")
    user = user.strip()
    if len(user) > 254 or any(ch in user for ch in "\r\n\0"):
        raise BearError(f"user {user[:40]!r}: at most 254 characters on one line")
    if "@" in user and not is_email(user):
        raise BearError(f"user {user!r} looks like an e-mail address but is not a valid one")
    return user


def submit(
    ws: Workspace,
    action: str | Action,
    ids_or_selection: Any,
    user: str,
    *,
    full: bool = False,
    wake: bool = True,
) -> int:
    """Queue a run: record it, its events in order, and claim the events no other run holds."""
    act = _action(action)
    user = check_user(user)
    cur = ws.db.cursor()
    n = load_ids(ws, cur, ids_or_selection, "_submit_ids")
    if n == 0:
        raise BearError("nothing to run: the selection is empty")
    validated = bool(full) or n <= int(ws.settings.validation_limit)
    snapshot = json.dumps({k: v for k, v in ws.settings.as_dict().items()}, default=str)
    with ws.db.transaction() as tx:
        run_id = tx.execute(
            "INSERT INTO runs (action, requested_by, validated, selected, settings_snapshot, updated_at) "
            "VALUES (?, ?, ?, ?, ?::JSON, current_timestamp) RETURNING id",
            [act.value, user, validated, n, snapshot],
        ).fetchall()[0][0]
        tx.execute(
            "INSERT INTO run_events (run_id, billing_event_id, ord) "
            "SELECT $r, billing_event_id, row_number() OVER (ORDER BY billing_event_id) FROM _submit_ids",
            {"r": run_id},
        )
        tx.execute(
            "INSERT INTO event_claims SELECT billing_event_id, $r FROM _submit_ids "
            "WHERE billing_event_id NOT IN (SELECT billing_event_id FROM event_claims)",
            {"r": run_id},
        )
    if wake:
        ws.runner.wake()
    log.info("run %s queued: %s of %s events by %s", run_id, act.value, n, user)
    return int(run_id)


class _Cancelled(Exception):
    pass


class Runner:
    """The one background thread of the owning process that executes queued runs in order."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = False
        self._finished = 0  # runs ended so far: waiters sleep until it moves
        self._idle_retry_s = 5.0

    # -- control ---------------------------------------------------------------------------
    def start(self) -> None:
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop = False
            self._thread = threading.Thread(target=self._loop, name="bear-runner", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        self.start()
        with self._cond:
            self._cond.notify_all()

    def resume(self) -> None:
        """Start the thread when unfinished runs or undelivered notifications are waiting."""
        cur = self.ws.db.cursor()
        pending = cur.execute(
            "SELECT (SELECT count(*) FROM runs WHERE status IN ('queued', 'running'))"
            " + (SELECT count(*) FROM notifications WHERE status = 'pending')"
        ).fetchall()[0][0]
        if pending:
            self.start()

    def stop(self, timeout: float = 30.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, run_id: int, timeout: float | None = None) -> RunResult:
        deadline = None if timeout is None else time.monotonic() + timeout
        cur = self.ws.db.cursor()
        while True:
            with self._cond:
                seen = self._finished
            res = read_run(cur, run_id)
            if res.status in FINAL_STATUSES and not _undelivered(cur, run_id):
                # Finished, and each notification it owes has had its first delivery attempt.
                return res
            if not self.alive:
                self.start()
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(
                    f"run {run_id} still {res.status} ({res.stage}) after {timeout:g} s"
                )
            with self._cond:  # woken when a run ends (no polling that slows the run down)
                if self._finished == seen:
                    self._cond.wait(
                        1.0
                        if deadline is None
                        else min(1.0, max(0.01, deadline - time.monotonic()))
                    )

    # -- loop ------------------------------------------------------------------------------
    def _next_run(self) -> int | None:
        rows = (
            self.ws.db.cursor()
            .execute(
                "SELECT id FROM runs WHERE status IN ('queued', 'running') ORDER BY id LIMIT 1"
            )
            .fetchall()
        )
        return int(rows[0][0]) if rows else None

    def _loop(self) -> None:
        last_retry = 0.0
        while True:
            with self._cond:
                if self._stop:
                    return
            try:
                run_id = self._next_run()
            except (duckdb.Error, BearError):
                if self.ws.db.closed:
                    return
                log.exception("runner: reading the queue failed")
                run_id = None
            if run_id is not None:
                try:
                    execute_run(self.ws, run_id, self)
                except _Stopped:
                    return
                except Exception:
                    if self.ws.db.closed:
                        return
                    log.exception("run %s failed", run_id)
                with self._cond:
                    self._finished += 1
                    self._cond.notify_all()
                continue
            now = time.monotonic()
            if now - last_retry >= self._idle_retry_s:
                last_retry = now
                try:
                    deliver_pending(self.ws)
                except Exception:
                    if self.ws.db.closed:
                        return
                    log.exception("runner: delivering notifications failed")
            with self._cond:
                if self._stop:
                    return
                self._cond.wait(self._idle_retry_s)

    def idle(self) -> bool:
        """No queued or unfinished run is waiting."""
        return self._next_run() is None

    def should_stop(self) -> bool:
        return self._stop


# -- executing a run ------------------------------------------------------------------------
def _write(ws: Workspace, sql: str, params: Any) -> None:
    """One small write as a transaction of its own, serialised with the process's other writers."""

    def work() -> None:
        with ws.db.transaction() as tx:
            tx.execute(sql, params)

    _retrying(work)


def _retrying(fn: Any, *args: Any) -> Any:
    """Run a transaction function, retrying a bounded number of times on write conflicts."""
    for attempt in range(CONFLICT_RETRIES):
        try:
            return fn(*args)
        except duckdb.TransactionException as exc:
            if attempt == CONFLICT_RETRIES - 1:
                raise BearError(
                    f"the database stayed busy after {CONFLICT_RETRIES} tries: {exc}"
                ) from exc
            time.sleep(0.05 * (attempt + 1))
    return None


def execute_run(ws: Workspace, run_id: int, runner: Runner | None = None) -> RunResult:
    cur = ws.db.cursor()
    run = read_run(cur, run_id)
    if run.status in FINAL_STATUSES:
        return run
    act = Action(run.action)
    settings = _run_settings(cur, run_id, ws)
    _write(
        ws,
        "UPDATE runs SET status = 'running', started_at = coalesce(started_at, current_timestamp), "
        "updated_at = current_timestamp WHERE id = ? AND status IN ('queued', 'running')",
        [run_id],
    )
    try:
        judged = None
        if act in (Action.RELEASE, Action.RELEASE_AND_INVOICE):
            judged = _release_stage(ws, run_id, settings, runner)
        if act in (Action.INVOICE, Action.RELEASE_AND_INVOICE):
            _invoice_stage(ws, run_id, settings, runner, judged)
        else:
            _finish(ws, run_id, "completed")
    except _Cancelled:
        _finish(ws, run_id, "cancelled")
    except Exception as exc:
        if ws.db.closed:
            raise
        if runner is not None and runner.should_stop() and isinstance(exc, duckdb.Error):
            raise  # closing under our feet: the run resumes next time
        log.exception("run %s failed", run_id)
        _finish(ws, run_id, "failed", f"{type(exc).__name__}: {exc}"[:1000])
    ws.refresh()
    deliver_pending(ws, run_id=run_id)
    return read_run(cur, run_id)


def _run_settings(cur: duckdb.DuckDBPyConnection, run_id: int, ws: Workspace) -> dict[str, Any]:
    raw = cur.execute("SELECT settings_snapshot FROM runs WHERE id = ?", [run_id]).fetchall()[0][0]
    snap = json.loads(raw) if raw else {}
    return {**ws.settings.as_dict(), **snap}


def _check_cancel(ws: Workspace, run_id: int, runner: Runner | None) -> None:
    cur = ws.db.cursor()
    if cur.execute("SELECT cancel_requested FROM runs WHERE id = ?", [run_id]).fetchall()[0][0]:
        raise _Cancelled()
    if runner is not None and runner.should_stop():
        raise _Stopped()


class _Stopped(BaseException):
    """The workspace is closing: leave the run as it is; it resumes when next opened."""


def _release_stage(
    ws: Workspace, run_id: int, settings: dict[str, Any], runner: Runner | None
) -> _Judgement | None:
    """Release the run's batches; returns the rules' verdicts (for the invoicing stage)."""
    cur = ws.db.cursor()
    stage = cur.execute("SELECT stage FROM runs WHERE id = ?", [run_id]).fetchall()[0][0]
    if stage not in ("queued", "release"):
        return None  # release already finished before a crash
    judged = _Judgement()
    if not cur.execute(
        "SELECT count(*) FROM release_batches WHERE run_id = ?", [run_id]
    ).fetchall()[0][0]:
        _retrying(_prepare_release, ws, run_id, settings, judged)
    else:
        _retrying(_reconcile_release, ws, run_id)  # batches committed before a crash
    isolate = settings.get("release_failure_mode") == "isolate"
    seqs = [
        r[0]
        for r in cur.execute(
            "SELECT seq FROM release_batches WHERE run_id = ? AND status = 'pending' ORDER BY seq",
            [run_id],
        ).fetchall()
    ]
    progress = _Progress()
    for seq in seqs:
        if runner is not None and runner.should_stop():
            raise _Stopped()
        _retrying(_release_batch, ws, run_id, seq, isolate, judged, progress)
    _retrying(_finish_release, ws, run_id)
    deliver_pending(ws, run_id=run_id)  # the release-finished notification, now (not at the end)
    return judged


def _prepare_release(
    ws: Workspace, run_id: int, settings: dict[str, Any], judged: _Judgement
) -> None:
    """Leave out (validated runs) the events failing a blocking release rule; plan the batches.

    A validated run's rules have just judged every event: what stays in the batches passed
    them, so that verdict serves the batches as long as nothing else commits (``_Judgement``).
    """
    bs = int(settings["release_batch_size"])
    with ws.db.transaction() as tx:
        # Read while this transaction holds the write lock: what commits after it is news.
        seq0, foreign0 = ws.db.commit_seq, ws.db.foreign_commits()
        validated, action, cancel = tx.execute(
            "SELECT validated, action, cancel_requested FROM runs WHERE id = ?", [run_id]
        ).fetchall()[0]
        if cancel:  # asked before the verdict below, which only a later commit would undo
            raise _Cancelled()
        tx.execute(
            "CREATE OR REPLACE TEMP TABLE _run_ids AS SELECT billing_event_id FROM run_events WHERE run_id = ?",
            [run_id],
        )
        both = validated and action == Action.RELEASE_AND_INVOICE.value
        if validated:
            # A release-and-invoice run's invoice rules judge in the same pass, as if released
            # (as the preview does); the invoicing stage uses that verdict while it holds.
            stages = ["release", "invoice"] if both else ["release"]
            judge(ws, tx, stages, "_run_ids", target="_prep_v", as_released=both, run_id=run_id)
            tx.execute(
                """
                CREATE OR REPLACE TEMP TABLE _prep_x AS
                SELECT billing_event_id, count(*) AS n, arg_min(rule_id, rule_id) AS rule_id,
                       arg_min(message, rule_id) AS message, string_agg(rule_id || ': ' || message, '; ') AS detail
                FROM _prep_v WHERE severity = 'block' AND stage = 'release' GROUP BY billing_event_id
                """
            )
            if both:
                tx.execute(
                    "CREATE OR REPLACE TEMP TABLE _inv_pre AS SELECT * FROM _prep_v WHERE stage = 'invoice'"
                )
            tx.execute(
                "UPDATE run_events SET excluded = true FROM _prep_x x "
                "WHERE run_events.run_id = $r AND run_events.billing_event_id = x.billing_event_id",
                {"r": run_id},
            )
            tx.execute(
                "INSERT INTO app_logs (run_id, level, origin, record_id, rule_id, message, detail) "
                "SELECT $r, 3, 'release', billing_event_id, rule_id, 'not released: ' || message, detail "
                "FROM _prep_x ORDER BY billing_event_id",
                {"r": run_id},
            )
        tx.execute(
            """
            UPDATE run_events SET batch_seq = b.seq FROM (
                SELECT billing_event_id, ((row_number() OVER (ORDER BY ord) - 1) // $bs + 1)::INTEGER AS seq
                FROM run_events WHERE run_id = $r AND NOT excluded
            ) b WHERE run_events.run_id = $r AND run_events.billing_event_id = b.billing_event_id
            """,
            {"r": run_id, "bs": bs},
        )
        tx.execute(
            "INSERT INTO release_batches (run_id, seq, size) SELECT $r, batch_seq, count(*) FROM run_events "
            "WHERE run_id = $r AND batch_seq IS NOT NULL GROUP BY batch_seq",
            {"r": run_id},
        )
        tx.execute(
            """
            UPDATE runs SET stage = 'release', updated_at = current_timestamp,
                excluded = (SELECT count(*) FROM run_events WHERE run_id = $r AND excluded),
                not_released = (SELECT count(*) FROM run_events WHERE run_id = $r AND excluded),
                batches_total = (SELECT count(*) FROM release_batches WHERE run_id = $r)
            WHERE id = $r
            """,
            {"r": run_id},
        )
        if validated:
            tx.execute(
                "CREATE OR REPLACE TEMP TABLE _rw_ids AS SELECT billing_event_id, batch_seq FROM run_events "
                "WHERE run_id = ? AND batch_seq IS NOT NULL ORDER BY batch_seq, billing_event_id",
                [run_id],
            )
            batches = {
                r[0]: (int(r[1]), 0, r[2], r[3])
                for r in tx.execute(
                    "SELECT batch_seq, count(*), min(billing_event_id), max(billing_event_id) "
                    "FROM _rw_ids GROUP BY 1"
                ).fetchall()
            }
    if validated and batches:  # committed: the verdict covers every batch
        judged.valid, judged.commit_seq = True, seq0 + 1
        judged.until_seq, judged.batches = max(batches), batches
    if both:
        judged.invoice_foreign = foreign0


class _Judgement:
    """The release rules' verdict on a window of upcoming batches, and when it was made.

    Judging costs about the same for 200 events as for thousands (planning and the batch view
    dominate), so the rules judge a window of batches at once, inside the first batch's
    transaction. A later batch of the window reuses the verdict only if no transaction but this
    run's own batches has committed since (``Database.commit_seq``): a cancel request, another
    run, an import — any other commit, or a failed batch, and the next batch is judged afresh
    in its own transaction. The billing-cap rule counts the window's earlier events as pending,
    so the run's own releases change nothing it judged. The window starts at ``JUDGE_WINDOW``
    batches and doubles (up to ``JUDGE_WINDOW_MAX``) each time a verdict serves to its end;
    an interrupted verdict starts it over, so concurrent writers never make judging quadratic.
    """

    def __init__(self) -> None:
        self.valid = False
        self.until_seq = 0
        self.commit_seq = -1
        self.window = JUDGE_WINDOW
        self.batches: dict[int, tuple[int, int, int, int]] = {}  # seq -> size, culprits, lo, hi
        # The invoice rules' verdict made with the release rules' (temp table ``_inv_pre``):
        # valid while no other thread commits (``Database.foreign_commits``); None when none.
        self.invoice_foreign: int | None = None

    def next_window(self, seq: int) -> int:
        """The size of the window starting at ``seq``: doubled when the last one served to its
        end, back to the start when it was cut short."""
        if self.until_seq and seq == self.until_seq + 1:
            self.window = min(self.window * 2, JUDGE_WINDOW_MAX)
        elif self.until_seq:
            self.window = JUDGE_WINDOW
        return self.window


class _Progress:
    """Released batches committed but not yet recorded in ``release_batches``/``runs``.

    A batch's transaction releases its events; its ``release_batches`` row and the run's
    counters are written with a later batch (every ``PROGRESS_EVERY_S`` and whenever a batch is
    judged afresh or fails), so a clean batch costs one statement and a commit. A crash in
    between loses nothing: the events carry ``release_run_id``, and the stage's start and end
    reconcile the batches from them (``_reconcile_release``).
    """

    def __init__(self) -> None:
        self.done: list[int] = []
        self.recorded_at = time.monotonic()


JUDGE_WINDOW = 25
JUDGE_WINDOW_MAX = 200
PROGRESS_EVERY_S = 0.25


def _judge_window(
    ws: Workspace, tx: duckdb.DuckDBPyConnection, run_id: int, seq: int, judged: _Judgement
) -> int:
    """Judge the batches ``seq`` … ``seq + window - 1`` with the release rules; returns the last."""
    until = seq + judged.next_window(seq) - 1
    tx.execute(
        "CREATE OR REPLACE TEMP TABLE _rw_ids AS SELECT billing_event_id, batch_seq FROM run_events "
        "WHERE run_id = ? AND batch_seq BETWEEN ? AND ? ORDER BY billing_event_id",
        [run_id, seq, until],
    )
    judge(ws, tx, ["release"], "_rw_ids", target="_rw_v", run_id=run_id)
    tx.execute(
        """
        CREATE OR REPLACE TEMP TABLE _rw_x AS
        SELECT v.billing_event_id, re.batch_seq, arg_min(v.rule_id, v.rule_id) AS rule_id,
               arg_min(v.message, v.rule_id) AS message,
               string_agg(v.rule_id || ': ' || v.message, '; ') AS detail
        FROM _rw_v v JOIN _rw_ids re ON re.billing_event_id = v.billing_event_id
        WHERE v.severity = 'block'
        GROUP BY ALL
        """
    )
    # Per batch of the window: size, culprits and id bounds, read once instead of per batch.
    judged.batches = {
        r[0]: (int(r[1]), int(r[2]), r[3], r[4])
        for r in tx.execute(
            "SELECT i.batch_seq, count(*), count(x.billing_event_id), min(i.billing_event_id), "
            "max(i.billing_event_id) FROM _rw_ids i LEFT JOIN _rw_x x USING (billing_event_id) "
            "GROUP BY 1"
        ).fetchall()
    }
    return until


def _release_batch(
    ws: Workspace,
    run_id: int,
    seq: int,
    isolate: bool,
    judged: _Judgement,
    progress: _Progress,
) -> None:
    """One batch, one transaction: re-check the release rules, then release all or none."""
    fresh = judged.valid and seq <= judged.until_seq
    judged.valid = False  # until this transaction commits
    with ws.db.transaction() as tx:
        seq0 = ws.db.commit_seq  # no other write transaction can commit while we hold the lock
        fresh = fresh and judged.commit_seq == seq0
        if fresh:
            # Nothing else committed since the verdict: no cancel request (it commits), no
            # other run, no replay (this process alone runs the run's batches, in order).
            until = judged.until_seq
        else:
            status, cancel = tx.execute(
                "SELECT b.status, r.cancel_requested FROM release_batches b JOIN runs r ON r.id = b.run_id "
                "WHERE b.run_id = ? AND b.seq = ?",
                [run_id, seq],
            ).fetchall()[0]
            if status != "pending":
                return  # done before a crash: replaying is a no-op
            if cancel:
                raise _Cancelled()
            until = _judge_window(ws, tx, run_id, seq, judged)
        size, culprits, lo, hi = judged.batches[seq]
        if culprits:
            _failed_batch(tx, run_id, seq, culprits, isolate)
            _record_progress(tx, run_id, progress.done)
            progress.done, progress.recorded_at = [], time.monotonic()
            return  # committed; the next batch is judged afresh
        released = _release_ids(tx, run_id, seq, bounds=(lo, hi))
        if released != size:
            raise BearError(
                f"batch {seq}: {size - released} event(s) changed state during the release"
            )
        record = not fresh or time.monotonic() - progress.recorded_at >= PROGRESS_EVERY_S
        if record:
            _record_progress(tx, run_id, [*progress.done, seq])
    # committed: the verdict holds for the window's next batches
    judged.valid, judged.until_seq, judged.commit_seq = True, until, seq0 + 1
    if record:
        progress.done, progress.recorded_at = [], time.monotonic()
    else:
        progress.done.append(seq)


def _failed_batch(
    tx: duckdb.DuckDBPyConnection, run_id: int, seq: int, culprits: int, isolate: bool
) -> None:
    """A batch with culprits: bisect it (``isolate``) or fail it whole, with an app log each."""
    tx.execute(
        "CREATE OR REPLACE TEMP TABLE _rb_ids AS SELECT billing_event_id FROM _rw_ids WHERE batch_seq = ?",
        [seq],
    )
    tx.execute(
        "CREATE OR REPLACE TEMP TABLE _rb_culprits AS "
        "SELECT billing_event_id, rule_id, message, detail FROM _rw_x WHERE batch_seq = ?",
        [seq],
    )
    size = int(tx.execute("SELECT count(*) FROM _rb_ids").fetchall()[0][0])
    if isolate:
        released = _isolate(tx, run_id, seq)
        cause = f"{size - released} culprit(s) left unreleased, {released} released (isolate)"
        status = "released" if released else "failed"
    else:
        first = tx.execute(
            "SELECT billing_event_id, message FROM _rb_culprits ORDER BY billing_event_id LIMIT 1"
        ).fetchall()[0]
        cause = f"event {first[0]}: {first[1]}" + (
            f" (+{culprits - 1} more)" if culprits > 1 else ""
        )
        tx.execute(
            "INSERT INTO app_logs (run_id, batch_seq, level, origin, record_id, rule_id, message, detail) "
            "SELECT $r, $s, 2, 'release', billing_event_id, rule_id, "
            "'batch ' || $s || ' failed: this event cannot be released: ' || message, detail "
            "FROM _rb_culprits ORDER BY billing_event_id",
            {"r": run_id, "s": seq},
        )
        tx.execute(
            "INSERT INTO app_logs (run_id, batch_seq, level, origin, record_id, message, detail) "
            "SELECT $r, $s, 3, 'release', i.billing_event_id, "
            "'not released: batch ' || $s || ' failed because of ' || $cause, NULL "
            "FROM _rb_ids i WHERE i.billing_event_id NOT IN (SELECT billing_event_id FROM _rb_culprits) "
            "ORDER BY i.billing_event_id",
            {"r": run_id, "s": seq, "cause": cause},
        )
        released, status = 0, "failed"
    tx.execute(
        "UPDATE release_batches SET status = $st, released = $n, cause = $c, finished_at = current_timestamp "
        "WHERE run_id = $r AND seq = $s AND status = 'pending'",
        {"r": run_id, "s": seq, "n": released, "c": cause, "st": status},
    )


def _record_progress(tx: duckdb.DuckDBPyConnection, run_id: int, done: list[int]) -> None:
    """Mark the batches ``done`` (fully released) in ``release_batches`` and recount the run's
    release counters from its batches (set-based; readers show rate and ETA from them)."""
    if done:
        tx.execute(
            "UPDATE release_batches SET status = 'released', released = size, finished_at = current_timestamp "
            "WHERE run_id = $r AND status = 'pending' AND seq IN (SELECT unnest($d::INTEGER[]))",
            {"r": run_id, "d": done},
        )
    tx.execute(
        """
        UPDATE runs SET batches_done = x.done, failed_batches = x.failed, released = x.released,
               not_released = runs.excluded + x.not_released, updated_at = current_timestamp
        FROM (
            SELECT count(*) FILTER (status <> 'pending') AS done,
                   count(*) FILTER (status = 'failed') AS failed,
                   coalesce(sum(released), 0) AS released,
                   coalesce(sum(size - released) FILTER (status <> 'pending'), 0) AS not_released
            FROM release_batches WHERE run_id = $r
        ) x
        WHERE runs.id = $r
        """,
        {"r": run_id},
    )


def _reconcile_release(ws: Workspace, run_id: int) -> None:
    """Record the batches whose release committed without being recorded (a crash, a cancel
    or a stop in between): their events carry this run's ``release_run_id``."""
    with ws.db.transaction() as tx:
        _reconcile(tx, run_id)


def _reconcile(tx: duckdb.DuckDBPyConnection, run_id: int) -> None:
    tx.execute(
        """
        UPDATE release_batches SET status = 'released', released = x.n, finished_at = current_timestamp
        FROM (
            SELECT re.batch_seq, count(*) AS n
            FROM run_events re JOIN billing_events e ON e.id = re.billing_event_id
            WHERE re.run_id = $r AND re.batch_seq IS NOT NULL AND e.release_run_id = $r
            GROUP BY 1
        ) x
        WHERE release_batches.run_id = $r AND release_batches.seq = x.batch_seq
          AND release_batches.status = 'pending'
        """,
        {"r": run_id},
    )
    _record_progress(tx, run_id, [])


def _release_ids(
    tx: duckdb.DuckDBPyConnection,
    run_id: int,
    seq: int | None,
    table: str = "",
    bounds: tuple[int, int] | None = None,
) -> int:
    """Release batch ``seq``'s events (from ``_rw_ids``) or those listed in ``table``, still
    unreleased; returns how many (UPDATE's count: RETURNING costs ~10 ms a batch). ``bounds``
    (lowest, highest id) lets DuckDB skip row groups of billing_events."""
    if table:
        source, cond = f"{table} t", "billing_events.id = t.billing_event_id"
    else:
        source, cond = "_rw_ids t", "t.batch_seq = $s AND billing_events.id = t.billing_event_id"
    params: dict[str, Any] = {"r": run_id}
    if not table:
        params["s"] = seq
    if bounds is not None and bounds[0] is not None:
        cond += f" AND billing_events.id BETWEEN {int(bounds[0])} AND {int(bounds[1])}"
    return int(
        tx.execute(
            f"UPDATE billing_events SET released = true, released_at = current_timestamp, release_run_id = $r "
            f"FROM {source} WHERE {cond} AND NOT billing_events.released",
            params,
        ).fetchall()[0][0]
    )


def _isolate(tx: duckdb.DuckDBPyConnection, run_id: int, seq: int) -> int:
    """Bisect the failed batch: halves without culprits are released, culprits stay behind."""
    ids = [r[0] for r in tx.execute("SELECT billing_event_id FROM _rb_ids ORDER BY 1").fetchall()]
    bad = {r[0] for r in tx.execute("SELECT billing_event_id FROM _rb_culprits").fetchall()}
    clean: list[int] = []
    stack = [ids]
    while stack:  # bisection over the batch (at most a few dozen halves), not a loop per event
        part = stack.pop()
        if not bad.intersection(part):
            clean.extend(part)
        elif len(part) > 1:
            mid = len(part) // 2
            stack += [part[mid:], part[:mid]]
    tx.register("_iso_ok", pa.table({"billing_event_id": pa.array(sorted(clean), pa.int64())}))
    try:
        released = _release_ids(tx, run_id, None, "_iso_ok")
    finally:
        tx.unregister("_iso_ok")
    tx.execute(
        "INSERT INTO app_logs (run_id, batch_seq, level, origin, record_id, rule_id, message, detail) "
        "SELECT $r, $s, 2, 'release', billing_event_id, rule_id, "
        "'not released (isolated from batch ' || $s || '): ' || message, detail "
        "FROM _rb_culprits ORDER BY billing_event_id",
        {"r": run_id, "s": seq},
    )
    return released


def _finish_release(ws: Workspace, run_id: int) -> None:
    with ws.db.transaction() as tx:
        run = read_run(tx, run_id)
        if run.stage not in ("queued", "release"):
            return
        _reconcile(tx, run_id)  # the last batches' records and the final counters
        nxt = "invoice" if run.action == Action.RELEASE_AND_INVOICE.value else "done"
        tx.execute(
            "UPDATE runs SET stage = $st, release_finished_at = current_timestamp, updated_at = current_timestamp "
            "WHERE id = $r AND stage IN ('queued', 'release')",
            {"r": run_id, "st": nxt},
        )
        owe(ws, tx, run_id, "release_finished")


def _invoice_stage(
    ws: Workspace,
    run_id: int,
    settings: dict[str, Any],
    runner: Runner | None,
    judged: _Judgement | None = None,
) -> None:
    cur = ws.db.cursor()
    run = read_run(cur, run_id)
    if run.stage == "done":
        return
    if run.process_run_id is None:
        _retrying(_start_invoicing, ws, run_id)
    # The stage's events, listed once on this cursor (a temp table) rather than joined from
    # run_events and billing_events for every chunk; rebuilt whenever the stage (re)starts.
    cur.execute(
        f"CREATE OR REPLACE TEMP TABLE _inv_targets AS {_invoice_targets_sql(run.action)} ORDER BY ord",
        {"r": run_id},
    )
    while True:
        _check_cancel(ws, run_id, runner)
        if not _retrying(_invoice_chunk, ws, run_id, judged):
            break
    _retrying(_finish_invoicing, ws, run_id)


def _invoice_targets_sql(action: str) -> str:
    # For release-and-invoice, the events this run released; for invoice, every selected event.
    if action == Action.RELEASE_AND_INVOICE.value:
        return (
            "SELECT re.billing_event_id, re.ord FROM run_events re JOIN billing_events e ON e.id = re.billing_event_id "
            "WHERE re.run_id = $r AND e.release_run_id = $r"
        )
    return "SELECT re.billing_event_id, re.ord FROM run_events re WHERE re.run_id = $r"


def _start_invoicing(ws: Workspace, run_id: int) -> None:
    with ws.db.transaction() as tx:
        run = read_run(tx, run_id)
        if run.process_run_id is not None:
            return
        pr = tx.execute(
            "INSERT INTO process_runs (run_id, started_by) VALUES (?, ?) RETURNING id",
            [run_id, run.requested_by],
        ).fetchall()[0][0]
        total = tx.execute(
            f"SELECT count(*) FROM ({_invoice_targets_sql(run.action)})", {"r": run_id}
        ).fetchall()[0][0]
        tx.execute(
            "UPDATE runs SET process_run_id = $p, stage = 'invoice', invoice_total = $t, "
            "updated_at = current_timestamp WHERE id = $r",
            {"p": pr, "r": run_id, "t": total},
        )


def _invoice_chunk(ws: Workspace, run_id: int, judged: _Judgement | None = None) -> bool:
    """Invoice the next chunk of not-yet-logged events in one transaction; False when none is left.

    The invoice rules judge the chunk inside the transaction — unless they judged the run's
    events as released when the run was prepared and no other thread has committed since
    (only this run's own releases and documents, which that judgement assumed)."""
    with ws.db.transaction() as tx:
        run = read_run(tx, run_id)
        pr = run.process_run_id
        tx.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _inv_ids AS
            SELECT billing_event_id FROM _inv_targets t
            WHERE billing_event_id NOT IN (SELECT billing_event_id FROM process_logs WHERE process_run_id = $p)
            ORDER BY ord LIMIT {INVOICE_CHUNK}
            """,
            {"p": pr},
        )
        n = tx.execute("SELECT count(*) FROM _inv_ids").fetchall()[0][0]
        if n == 0:
            return False
        if judged is not None and judged.invoice_foreign == ws.db.foreign_commits():
            tx.execute(
                "CREATE OR REPLACE TEMP TABLE _inv_v AS SELECT * FROM _inv_pre "
                "WHERE billing_event_id IN (SELECT billing_event_id FROM _inv_ids)"
            )
        else:
            if judged is not None:
                judged.invoice_foreign = None  # another thread committed: judge afresh from now on
            judge(ws, tx, ["invoice"], "_inv_ids", target="_inv_v", run_id=run_id)
        tx.execute(
            """
            CREATE OR REPLACE TEMP TABLE _inv_bad AS
            SELECT billing_event_id, arg_min(rule_id, rule_id) AS rule_id,
                   string_agg(message, '; ' ORDER BY rule_id) AS message
            FROM _inv_v WHERE severity = 'block' GROUP BY billing_event_id
            """
        )
        tx.execute(
            "CREATE OR REPLACE TEMP TABLE _inv_ok AS SELECT billing_event_id FROM _inv_ids "
            "WHERE billing_event_id NOT IN (SELECT billing_event_id FROM _inv_bad)"
        )
        exclude_culprits(tx, "_inv_ok", "_inv_bad")  # what the rules could not see
        sin, scn = create_documents(tx, "_inv_ok", pr)
        tx.execute(
            """
            INSERT INTO process_logs (process_run_id, billing_event_id, status, message, rule_id, document_id)
            SELECT $p, d.billing_event_id, 'OK', 'created ' || CASE d.doc_type WHEN 'SIN' THEN 'sales invoice '
                   ELSE 'credit note ' END || d.number || ' for ' || d.total || ' ' || d.currency, NULL, d.id
            FROM _new_docs d
            UNION ALL
            SELECT $p, b.billing_event_id, 'ERROR', b.message, b.rule_id, NULL FROM _inv_bad b
            UNION ALL
            SELECT $p, o.billing_event_id, 'ERROR', 'the event changed state and was not invoiced', NULL, NULL
            FROM _inv_ok o WHERE o.billing_event_id NOT IN (SELECT billing_event_id FROM _new_docs)
            """,
            {"p": pr},
        )
        failed = n - sin - scn
        tx.execute(
            "UPDATE process_runs SET processed = processed + $n, succeeded = succeeded + $ok, "
            "failed = failed + $f WHERE id = $p",
            {"p": pr, "n": n, "ok": sin + scn, "f": failed},
        )
        tx.execute(
            "UPDATE runs SET invoice_done = invoice_done + $n, sales_invoices = sales_invoices + $sin, "
            "credit_notes = credit_notes + $scn, not_passed = not_passed + $f, updated_at = current_timestamp "
            "WHERE id = $r",
            {"r": run_id, "n": n, "sin": sin, "scn": scn, "f": failed},
        )
    return True


def _finish_invoicing(ws: Workspace, run_id: int) -> None:
    with ws.db.transaction() as tx:
        run = read_run(tx, run_id)
        if run.status in FINAL_STATUSES or run.stage == "done":
            return
        tx.execute(
            "UPDATE process_runs SET status = 'completed', finished_at = current_timestamp "
            "WHERE id = ? AND status = 'running'",
            [run.process_run_id],
        )
        _close_run(tx, run_id, "completed")
        owe(ws, tx, run_id, "invoicing_finished")


def _close_run(
    tx: duckdb.DuckDBPyConnection, run_id: int, status: str, error: str | None = None
) -> None:
    tx.execute(
        "UPDATE runs SET status = $st, stage = 'done', error = coalesce($e, error), "
        "finished_at = current_timestamp, updated_at = current_timestamp "
        "WHERE id = $r AND status IN ('queued', 'running')",
        {"r": run_id, "st": status, "e": error},
    )
    tx.execute("DELETE FROM event_claims WHERE run_id = ?", [run_id])


def _finish(ws: Workspace, run_id: int, status: str, error: str | None = None) -> None:
    def work() -> None:
        with ws.db.transaction() as tx:
            run = read_run(tx, run_id)
            if run.status in FINAL_STATUSES:
                return
            if run.stage in ("queued", "release"):
                _reconcile(tx, run_id)  # stopped mid-release: exact counters
            if run.process_run_id is not None:
                tx.execute(
                    "UPDATE process_runs SET status = $st, finished_at = current_timestamp "
                    "WHERE id = $p AND status = 'running'",
                    {
                        "p": run.process_run_id,
                        "st": "cancelled"
                        if status == "cancelled"
                        else ("completed" if status == "completed" else "failed"),
                    },
                )
            _close_run(tx, run_id, status, error)
            if status == "failed":
                owe(ws, tx, run_id, "run_failed", error or "")

    _retrying(work)


def cancel(ws: Workspace, run_id: int) -> RunResult:
    """Ask a run to stop at its next batch boundary (a queued run stops before it starts)."""
    cur = ws.db.cursor()
    run = read_run(cur, int(run_id))
    if run.status in FINAL_STATUSES:
        raise BearError(f"run {run_id} has already finished ({run.status}); nothing to cancel")

    def request() -> None:
        with ws.db.transaction() as tx:
            tx.execute(
                "UPDATE runs SET cancel_requested = true, updated_at = current_timestamp WHERE id = ?",
                [run_id],
            )

    _retrying(request)  # the runner may be writing the same row: a conflict is retried, never shown
    ws.runner.wake()
    return read_run(cur, int(run_id))


# -- notifications --------------------------------------------------------------------------
def summary_of(
    tx: duckdb.DuckDBPyConnection, run_id: int, base_url: str, extra: Iterable[str] = ()
) -> RunSummary:
    run = read_run(tx, run_id)
    recipients = tuple(
        dict.fromkeys(([run.requested_by] if is_email(run.requested_by) else []) + list(extra))
    )
    return RunSummary(
        run_id=run.id,
        action=run.action,
        requested_by=run.requested_by,
        status=run.status,
        stage=run.stage,
        released=run.released,
        not_released=run.not_released,
        batches=run.batches,
        failed_batches=run.failed_batches,
        sales_invoices=run.sales_invoices,
        credit_notes=run.credit_notes,
        not_passed=run.not_passed,
        process_run_id=run.process_run_id,
        link=f"{base_url.rstrip('/')}/?run={run.id}",
        recipients=recipients,
    )


def _summary_payload(s: RunSummary) -> str:
    d = {k: v for k, v in s.__dict__.items() if k not in ("settings", "totals")}
    d["recipients"] = list(s.recipients)
    return json.dumps(d)


def owe(
    ws: Workspace, tx: duckdb.DuckDBPyConnection, run_id: int, kind: str, error: str = ""
) -> None:
    """Write what ``kind`` owes to the outbox, in the caller's transaction (one row per channel,
    and one per recipient for per-recipient channels such as e-mail)."""
    settings = ws.settings
    summary = summary_of(tx, run_id, settings.base_url, settings.additional_notification_recipients)
    subject, text, page = compose(kind, summary, error)
    rows: list[tuple[str, str | None]] = []
    for name in ws.plugins.notifier_names(kind):
        plugin = ws.plugins.plugin(name)
        if getattr(plugin, "PER_RECIPIENT", False):
            rows += [(name, r) for r in summary.recipients]
        else:
            rows.append((name, summary.requested_by))
    if not rows:
        return
    payload = _summary_payload(summary)
    tx.execute(
        """
        INSERT INTO notifications (run_id, kind, channel, recipient, subject, body, body_html, payload, status)
        SELECT $r, $k, unnest($c), unnest($to), $sub, $body, $html, $payload::JSON, 'pending'
        ON CONFLICT DO NOTHING
        """,
        {
            "r": run_id,
            "k": kind,
            "c": [c for c, _ in rows],
            "to": [t for _, t in rows],
            "sub": subject,
            "body": text,
            "html": page,
            "payload": json.dumps({"summary": json.loads(payload), "error": error}),
        },
    )


def deliver_pending(
    ws: Workspace, run_id: int | None = None, *, force: bool = False
) -> dict[str, int]:
    """Deliver owed notifications (after their work is committed); failures stay pending with backoff."""
    cur = ws.db.cursor()
    cond = "status = 'pending'"
    params: dict[str, Any] = {}
    if run_id is not None:
        cond += " AND run_id = $r"
        params["r"] = run_id
    if not force:
        cond += " AND (next_attempt_at IS NULL OR next_attempt_at <= current_timestamp)"
    rows = cur.execute(
        f"SELECT id, kind, channel, recipient, payload, attempts FROM notifications WHERE {cond} ORDER BY id",
        params,
    ).fetchall()
    sent = failed = 0
    settings = MappingProxyType(ws.settings.as_dict())
    view = _SettingsView(settings)
    for (
        nid,
        kind,
        channel,
        recipient,
        payload,
        attempts,
    ) in rows:  # one call per notification, not per event
        data = json.loads(payload) if payload else {"summary": {}, "error": ""}
        s = data["summary"]
        summary = RunSummary(**{**s, "recipients": tuple(s.get("recipients", ()))})
        plugin = ws.plugins.plugin(channel)
        if getattr(plugin, "PER_RECIPIENT", False):
            summary = replace(summary, recipients=(recipient,) if recipient else ())
        summary = replace(summary, settings=view)
        ok, err, _ = ws.plugins.deliver(
            kind, channel, summary, data.get("error", ""), NOTIFY_TIMEOUT_S
        )
        if ok:
            sent += 1
            _write(
                ws,
                "UPDATE notifications SET status = 'sent', attempts = attempts + 1, sent_at = current_timestamp, "
                "last_error = NULL WHERE id = ? AND status = 'pending'",
                [nid],
            )
        else:
            failed += 1
            delay = NOTIFY_BACKOFF_S[min(attempts, len(NOTIFY_BACKOFF_S) - 1)]
            _write(
                ws,
                "UPDATE notifications SET attempts = attempts + 1, last_error = ?, "
                "next_attempt_at = current_timestamp + to_seconds(?) WHERE id = ? AND status = 'pending'",
                [f"{channel}: {err}"[:1000], delay, nid],
            )
            level = logging.INFO if "smtp_host is not set" in (err or "") else logging.WARNING
            log.log(
                level,
                "notification %s via %s failed (attempt %s): %s",
                nid,
                channel,
                attempts + 1,
                err,
            )
    return {"sent": sent, "failed": failed}


class _SettingsView:
    """Attribute access over a settings snapshot (what notifiers receive)."""

    def __init__(self, values: MappingProxyType[str, Any]) -> None:
        self._values = values

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None
