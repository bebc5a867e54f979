"""The release stage: leave out the events that cannot be released (a validated run), plan
the batches, then release each batch in one transaction — all of it or none of it (or, in
``isolate`` mode, all but its culprits) — re-checking the release rules inside it.

Every state change is written as "update where still in the expected state" inside the
transaction that records it, so a replay after a crash is a no-op and a run resumes from its
last committed batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from bear.config import SettingsSnapshot
from bear.errors import BearError
from bear.models import Action
from bear.pipeline.ids import judge
from bear.pipeline.outbox import owe
from bear.pipeline.runs import Cancelled, Stopped, read_run
from bear.pipeline.tx import drop_temp, retrying
from bear.rules.batch import BATCH_VIEWS

if TYPE_CHECKING:
    from bear.pipeline.core import Core


def release_stage(
    core: Core, run_id: int, settings: SettingsSnapshot, stopping: Callable[[], bool]
) -> Judgement | None:
    """Release the run's batches; returns the rules' verdicts (for the invoicing stage)."""
    cur = core.db.cursor()
    stage = cur.execute("SELECT stage FROM runs WHERE id = ?", [run_id]).fetchall()[0][0]
    if stage not in ("queued", "release"):
        return None  # release already finished before a crash
    judged = Judgement()
    if not cur.execute(
        "SELECT count(*) FROM release_batches WHERE run_id = ?", [run_id]
    ).fetchall()[0][0]:
        retrying(_prepare_release, core, run_id, settings, judged)
    else:
        retrying(_reconcile_release, core, run_id)  # batches committed before a crash
    isolate = settings.release_failure_mode == "isolate"
    seqs = [
        r[0]
        for r in cur.execute(
            "SELECT seq FROM release_batches WHERE run_id = ? AND status = 'pending' ORDER BY seq",
            [run_id],
        ).fetchall()
    ]
    progress = _Progress()
    for seq in seqs:
        if stopping():
            raise Stopped()
        retrying(_release_batch, core, run_id, seq, isolate, judged, progress)
    retrying(finish_release, core, run_id)
    core.notify()  # the release-finished notification, now (not at the end of the run)
    return judged


def _prepare_release(
    core: Core, run_id: int, settings: SettingsSnapshot, judged: Judgement
) -> None:
    """Leave out (validated runs) the events failing a blocking release rule; plan the batches.

    A validated run's rules have just judged every event: what stays in the batches passed
    them, so that verdict serves the batches as long as nothing else commits (``Judgement``).
    """
    bs = settings.release_batch_size
    with core.db.transaction() as tx:
        # Read while this transaction holds the write lock: what commits after it is news.
        seq0, foreign0 = core.db.commit_seq, core.db.foreign_commits()
        validated, action, cancel = tx.execute(
            "SELECT validated, action, cancel_requested FROM runs WHERE id = ?", [run_id]
        ).fetchall()[0]
        if cancel:  # asked before the verdict below, which only a later commit would undo
            raise Cancelled()
        tx.execute(
            "CREATE OR REPLACE TEMP TABLE _run_ids AS SELECT billing_event_id FROM run_events WHERE run_id = ?",
            [run_id],
        )
        both = validated and action == Action.RELEASE_AND_INVOICE.value
        if validated:
            # A release-and-invoice run's invoice rules judge in the same pass, as if released
            # (as the preview does); the invoicing stage uses that verdict while it holds.
            stages = ["release", "invoice"] if both else ["release"]
            judge(core, tx, stages, "_run_ids", target="_prep_v", as_released=both, run_id=run_id)
            tx.execute(
                """
                CREATE OR REPLACE TEMP TABLE _prep_x AS
                SELECT billing_event_id, count(*) AS n, arg_min(rule_id, rule_id) AS rule_id,
                       arg_min(message, rule_id) AS message, string_agg(rule_id || ': ' || message, '; ') AS detail
                FROM _prep_v WHERE severity = 'block' AND stage = 'release' GROUP BY billing_event_id
                """
            )
            if both:
                # Only what the invoicing stage reads of it (its blocking verdicts): warnings
                # are a third of a million-event run's violations.
                tx.execute(
                    "CREATE OR REPLACE TEMP TABLE _inv_pre AS SELECT * FROM _prep_v "
                    "WHERE stage = 'invoice' AND severity = 'block'"
                )
            # The verdict is distilled: the run's batch view and violations (a wide row per
            # event, ~330 MiB at 1M events) would otherwise stay on this cursor for the run.
            drop_temp(tx, "_prep_v", "_batch_core", views=BATCH_VIEWS)
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
        drop_temp(tx, "_run_ids", "_prep_x")
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


class Judgement:
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
    core: Core, tx: duckdb.DuckDBPyConnection, run_id: int, seq: int, judged: Judgement
) -> int:
    """Judge the batches ``seq`` … ``seq + window - 1`` with the release rules; returns the last."""
    until = seq + judged.next_window(seq) - 1
    tx.execute(
        "CREATE OR REPLACE TEMP TABLE _rw_ids AS SELECT billing_event_id, batch_seq FROM run_events "
        "WHERE run_id = ? AND batch_seq BETWEEN ? AND ? ORDER BY billing_event_id",
        [run_id, seq, until],
    )
    judge(core, tx, ["release"], "_rw_ids", target="_rw_v", run_id=run_id)
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
    core: Core,
    run_id: int,
    seq: int,
    isolate: bool,
    judged: Judgement,
    progress: _Progress,
) -> None:
    """One batch, one transaction: re-check the release rules, then release all or none."""
    fresh = judged.valid and seq <= judged.until_seq
    judged.valid = False  # until this transaction commits
    with core.db.transaction() as tx:
        seq0 = core.db.commit_seq  # no other write transaction can commit while we hold the lock
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
                raise Cancelled()
            until = _judge_window(core, tx, run_id, seq, judged)
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


def _reconcile_release(core: Core, run_id: int) -> None:
    """Record the batches whose release committed without being recorded (a crash, a cancel
    or a stop in between): their events carry this run's ``release_run_id``."""
    with core.db.transaction() as tx:
        reconcile(tx, run_id)


def reconcile(tx: duckdb.DuckDBPyConnection, run_id: int) -> None:
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
    # The history of the run's releases, written once per release stage (when it ends, is
    # cancelled or resumes) rather than by every batch: a statement per batch would cost a
    # tenth of the stage. The run's claims keep every released event out of another run (a
    # revert) until this has been written; a replay writes nothing twice.
    tx.execute(
        """
        INSERT INTO billing_event_history (billing_event_id, action, run_id, actor, happened_at)
        SELECT e.id, 'release', $r, (SELECT requested_by FROM runs WHERE id = $r),
               coalesce(e.released_at, current_timestamp)
        FROM run_events re JOIN billing_events e ON e.id = re.billing_event_id
        WHERE re.run_id = $r AND e.release_run_id = $r
          AND e.id NOT IN (SELECT billing_event_id FROM billing_event_history
                           WHERE run_id = $r AND action = 'release')
        ORDER BY e.id
        """,
        {"r": run_id},
    )


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


def finish_release(core: Core, run_id: int) -> None:
    with core.db.transaction() as tx:
        run = read_run(tx, run_id)
        if run.stage not in ("queued", "release"):
            return
        reconcile(tx, run_id)  # the last batches' records and the final counters
        nxt = "invoice" if run.action == Action.RELEASE_AND_INVOICE.value else "done"
        tx.execute(
            "UPDATE runs SET stage = $st, release_finished_at = current_timestamp, updated_at = current_timestamp "
            "WHERE id = $r AND stage IN ('queued', 'release')",
            {"r": run_id, "st": nxt},
        )
        owe(core, tx, run_id, "release_finished")
