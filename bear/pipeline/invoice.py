"""The invoicing stage: a process run, then chunk by chunk the invoice rules decide and each
eligible event becomes one document (a sales invoice, or a credit note when its amount is
negative) with an ``OK`` process log; each other event an ``ERROR`` process log with why."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import duckdb

from bear.db.documents import create_documents, exclude_culprits
from bear.models import FINAL_STATUSES, Action
from bear.pipeline.ids import judge
from bear.pipeline.outbox import owe
from bear.pipeline.post import auto_post
from bear.pipeline.release import Judgement
from bear.pipeline.runs import check_cancel, close_run, read_run, run_settings
from bear.pipeline.tx import retrying

if TYPE_CHECKING:
    from bear.pipeline.core import Core

INVOICE_CHUNK = 100_000


def invoice_stage(
    core: Core,
    run_id: int,
    stopping: Callable[[], bool],
    judged: Judgement | None = None,
) -> None:
    """Invoice the stage's events chunk by chunk until none is left (or the run is cancelled)."""
    cur = core.db.cursor()
    run = read_run(cur, run_id)
    if run.stage == "done":
        return
    if run.process_run_id is None:
        retrying(_start_invoicing, core, run_id)
    # The stage's events, listed once on this cursor (a temp table) rather than joined from
    # run_events and billing_events for every chunk; rebuilt whenever the stage (re)starts.
    cur.execute(
        f"CREATE OR REPLACE TEMP TABLE _inv_targets AS {_invoice_targets_sql(run.action)} ORDER BY ord",
        {"r": run_id},
    )
    size = INVOICE_CHUNK
    while True:
        check_cancel(core, run_id, stopping())
        try:
            more = retrying(_invoice_chunk, core, run_id, judged, size)
        except (duckdb.IntegrityError, duckdb.DataError) as exc:
            # One event's data broke the chunk's insert (a constraint or a value the rules did
            # not foresee, data changed behind BEAR's back): the chunk rolled back whole.
            # Bisect — smaller chunks until the culprit stands alone — and give it an ERROR
            # log; the others still get their documents. Anything else (a table gone, a full
            # disk) is no event's fault and stops the run.
            if core.db.closed or stopping():
                raise
            if size > 1:
                size = max(1, size // 2)
            else:
                retrying(_log_unprocessable, core, run_id, _db_message(exc))
            continue
        if not more:
            break
        size = min(INVOICE_CHUNK, size * 2)  # back to full chunks once past the culprit
    retrying(_finish_invoicing, core, run_id)


def _db_message(exc: Exception) -> str:
    """The database's own words, first line, without its exception-class prefix."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return re.sub(r"^[A-Za-z ]*Error: ", "", first)


def _log_unprocessable(core: Core, run_id: int, why: str) -> None:
    """The next event of the stage could not get its document even alone: an ERROR log saying
    what the database refused, and the counters, in one transaction."""
    with core.db.transaction() as tx:
        pr = read_run(tx, run_id).process_run_id
        n = tx.execute(
            """
            INSERT INTO process_logs (process_run_id, billing_event_id, status, message, rule_id, document_id)
            SELECT $p, billing_event_id, 'ERROR',
                   'no document could be created for this event: ' || $why, NULL, NULL
            FROM _inv_targets
            WHERE billing_event_id NOT IN (SELECT billing_event_id FROM process_logs WHERE process_run_id = $p)
            ORDER BY ord LIMIT 1
            """,
            {"p": pr, "why": why[:500]},
        ).fetchall()[0][0]
        tx.execute(
            "UPDATE process_runs SET processed = processed + $n, failed = failed + $n WHERE id = $p",
            {"p": pr, "n": n},
        )
        tx.execute(
            "UPDATE runs SET invoice_done = invoice_done + $n, not_passed = not_passed + $n, "
            "updated_at = current_timestamp WHERE id = $r",
            {"r": run_id, "n": n},
        )


def _invoice_targets_sql(action: str) -> str:
    # For release-and-invoice, the events this run released; for invoice, every selected event.
    if action == Action.RELEASE_AND_INVOICE.value:
        return (
            "SELECT re.billing_event_id, re.ord FROM run_events re JOIN billing_events e ON e.id = re.billing_event_id "
            "WHERE re.run_id = $r AND e.release_run_id = $r"
        )
    return "SELECT re.billing_event_id, re.ord FROM run_events re WHERE re.run_id = $r"


def _start_invoicing(core: Core, run_id: int) -> None:
    with core.db.transaction() as tx:
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
        # Not passed so far: the selected events the release stage did not release (none for
        # Invoice, whose every selected event is processed and logged by this stage).
        tx.execute(
            "UPDATE runs SET process_run_id = $p, stage = 'invoice', invoice_total = $t, "
            "not_passed = selected - $t, updated_at = current_timestamp WHERE id = $r",
            {"p": pr, "r": run_id, "t": total},
        )


def _invoice_chunk(
    core: Core, run_id: int, judged: Judgement | None = None, size: int = INVOICE_CHUNK
) -> bool:
    """Invoice the next chunk of not-yet-logged events in one transaction; False when none is left.

    The invoice rules judge the chunk inside the transaction — unless they judged the run's
    events as released when the run was prepared and no other thread has committed since
    (only this run's own releases and documents, which that judgement assumed)."""
    with core.db.transaction() as tx:
        run = read_run(tx, run_id)
        pr = run.process_run_id
        tx.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _inv_ids AS
            SELECT billing_event_id FROM _inv_targets t
            WHERE billing_event_id NOT IN (SELECT billing_event_id FROM process_logs WHERE process_run_id = $p)
            ORDER BY ord LIMIT {int(size)}
            """,
            {"p": pr},
        )
        n = tx.execute("SELECT count(*) FROM _inv_ids").fetchall()[0][0]
        if n == 0:
            return False
        if judged is not None and judged.invoice_foreign == core.db.foreign_commits():
            tx.execute(
                "CREATE OR REPLACE TEMP TABLE _inv_v AS SELECT * FROM _inv_pre "
                "WHERE billing_event_id IN (SELECT billing_event_id FROM _inv_ids)"
            )
        else:
            if judged is not None:
                judged.invoice_foreign = None  # another thread committed: judge afresh from now on
            judge(core, tx, ["invoice"], "_inv_ids", target="_inv_v", run_id=run_id)
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
        tx.execute(
            "INSERT INTO billing_event_history (billing_event_id, action, run_id, actor, "
            "document_after, outcome) SELECT billing_event_id, 'invoice', $r, $u, id, doc_type "
            "FROM _new_docs ORDER BY billing_event_id",
            {"r": run_id, "u": run.requested_by},
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


def _finish_invoicing(core: Core, run_id: int) -> None:
    with core.db.transaction() as tx:
        run = read_run(tx, run_id)
        if run.status in FINAL_STATUSES or run.stage == "done":
            return
        tx.execute(
            "UPDATE process_runs SET status = 'completed', finished_at = current_timestamp "
            "WHERE id = ? AND status = 'running'",
            [run.process_run_id],
        )
        if run_settings(core, tx, run_id).auto_post:
            auto_post(tx, run.process_run_id, run.requested_by)
        close_run(tx, run_id, "completed")
        owe(core, tx, run_id, "invoicing_finished")
