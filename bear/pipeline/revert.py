"""The revert stage (DESIGN §8): batch by batch, in one transaction each, the revert rules
judge the events and every event they let through goes back to Awaiting Release:

- released, not invoiced: only its release is undone;
- invoiced with a document in progress: the document is marked ``discarded`` (kept, its
  number never given again);
- invoiced with a complete (posted) document: an opposite document reverses it
  (``bear.db.reversals``) and the original is marked ``reversed``.

Failures are per event, as in the invoicing stage: an event a rule blocks stays as it is and
gets an app log saying why; the others of its batch are reverted. Each batch's transaction
also writes the events' history, their app logs and the run's counters, including the batch
cursor (``runs.batches_done``), so a run resumes after a crash from the first batch not yet
committed and a replay reverts nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import duckdb

from bear.config import SettingsSnapshot
from bear.db.reversals import create_reversals
from bear.errors import BearError
from bear.models import FINAL_STATUSES
from bear.pipeline.ids import judge
from bear.pipeline.outbox import owe
from bear.pipeline.post import auto_post
from bear.pipeline.runs import check_cancel, close_run, read_run, run_settings
from bear.pipeline.tx import retrying

if TYPE_CHECKING:
    from bear.pipeline.core import Core


# A revert batch holds this many times ``release_batch_size`` events (20,000 by default): a
# revert fails per event, never per batch, so a batch is only the unit of a transaction, of
# progress and of cancelling, and each one pays a fixed cost (the rules' batch view, the
# numbering, scans of documents and lines, a commit that usually checkpoints) that small
# batches multiply: 100k events took about 1.9 times longer in batches of 5,000 than of 20,000.
REVERT_BATCH_FACTOR = 100


def revert_stage(
    core: Core, run_id: int, settings: SettingsSnapshot, stopping: Callable[[], bool]
) -> None:
    """Revert the run's events batch by batch until none is left (or the run is cancelled)."""
    cur = core.db.cursor()
    if read_run(cur, run_id).stage == "done":
        return
    retrying(_prepare, core, run_id, settings.release_batch_size * REVERT_BATCH_FACTOR)
    while True:
        check_cancel(core, run_id, stopping())
        if not retrying(_revert_batch, core, run_id):
            break
    retrying(_finish, core, run_id)


def _prepare(core: Core, run_id: int, batch_size: int) -> None:
    """Plan the batches and open the run's process run (its reversing documents point at it)."""
    with core.db.transaction() as tx:
        run = read_run(tx, run_id)
        if run.process_run_id is not None:
            return  # planned before a crash
        pr = tx.execute(
            "INSERT INTO process_runs (run_id, started_by) VALUES (?, ?) RETURNING id",
            [run_id, run.requested_by],
        ).fetchall()[0][0]
        tx.execute(
            """
            UPDATE run_events SET batch_seq = b.seq FROM (
                SELECT billing_event_id, ((row_number() OVER (ORDER BY ord) - 1) // $bs + 1)::INTEGER AS seq
                FROM run_events WHERE run_id = $r
            ) b WHERE run_events.run_id = $r AND run_events.billing_event_id = b.billing_event_id
            """,
            {"r": run_id, "bs": batch_size},
        )
        tx.execute(
            "UPDATE runs SET process_run_id = $p, stage = 'revert', invoice_total = selected, "
            "batches_total = (SELECT count(DISTINCT batch_seq) FROM run_events WHERE run_id = $r), "
            "updated_at = current_timestamp WHERE id = $r",
            {"r": run_id, "p": pr},
        )


# What each event judged fit becomes: its document before, and what the revert does to it.
_TODO = """
CREATE OR REPLACE TEMP TABLE _rv_do AS
SELECT e.id AS billing_event_id, e.document_id, d.number, d.doc_type,
       CASE WHEN e.document_id IS NULL THEN 'unreleased'
            WHEN d.status = 'in_progress' THEN 'discarded' ELSE 'reversed' END AS outcome
FROM _rv_ids i
JOIN billing_events e ON e.id = i.billing_event_id
LEFT JOIN documents d ON d.id = e.document_id
WHERE i.billing_event_id NOT IN (SELECT billing_event_id FROM _rv_bad)
  AND e.released
  AND (e.document_id IS NULL OR (d.status IN ('in_progress', 'complete') AND d.reverses_document_id IS NULL))
ORDER BY e.id
"""

_LOGS = """
INSERT INTO app_logs (run_id, batch_seq, level, origin, record_id, rule_id, message, detail)
SELECT $r, $s, 4, 'revert', d.billing_event_id, NULL,
       'reverted: ' || CASE d.outcome
           WHEN 'unreleased' THEN 'its release is undone'
           WHEN 'discarded' THEN CASE d.doc_type WHEN 'SIN' THEN 'sales invoice ' ELSE 'credit note ' END
                                 || d.number || ' (in progress) discarded'
           ELSE CASE r.doc_type WHEN 'SIN' THEN 'sales invoice ' ELSE 'credit note ' END || r.number
                || ' reverses ' || CASE d.doc_type WHEN 'SIN' THEN 'sales invoice ' ELSE 'credit note ' END
                || d.number || ' (dated ' || r.document_date || ')'
       END || '; the event is back in Awaiting Release',
       'reason: ' || $why
FROM _rv_do d LEFT JOIN _rev_docs r ON r.reverses_document_id = d.document_id
UNION ALL
SELECT $r, $s, 3, 'revert', w.billing_event_id, w.rule_id, 'warning: ' || w.message, NULL
FROM _rv_v w WHERE w.severity = 'warn' AND w.billing_event_id IN (SELECT billing_event_id FROM _rv_do)
UNION ALL
SELECT $r, $s, 3, 'revert', b.billing_event_id, b.rule_id, 'not reverted: ' || b.message, b.detail
FROM _rv_bad b
UNION ALL
SELECT $r, $s, 3, 'revert', i.billing_event_id, NULL,
       'not reverted: the event changed state and can no longer be reverted', NULL
FROM _rv_ids i
WHERE i.billing_event_id NOT IN (SELECT billing_event_id FROM _rv_bad)
  AND i.billing_event_id NOT IN (SELECT billing_event_id FROM _rv_do)
ORDER BY 5, 3 DESC
"""


def _revert_batch(core: Core, run_id: int) -> bool:
    """Revert the next batch in one transaction; False when every batch is done."""
    with core.db.transaction() as tx:
        run = read_run(tx, run_id)
        seq = run.batches_done + 1
        if run.status in FINAL_STATUSES or seq > run.batches:
            return False
        tx.execute(
            "CREATE OR REPLACE TEMP TABLE _rv_ids AS SELECT billing_event_id FROM run_events "
            "WHERE run_id = ? AND batch_seq = ? ORDER BY billing_event_id",
            [run_id, seq],
        )
        n = int(tx.execute("SELECT count(*) FROM _rv_ids").fetchall()[0][0])
        judge(core, tx, ["revert"], "_rv_ids", target="_rv_v", run_id=run_id)
        tx.execute(
            """
            CREATE OR REPLACE TEMP TABLE _rv_bad AS
            SELECT billing_event_id, arg_min(rule_id, rule_id) AS rule_id,
                   arg_min(message, rule_id) AS message,
                   string_agg(rule_id || ': ' || message, '; ' ORDER BY rule_id) AS detail
            FROM _rv_v WHERE severity = 'block' GROUP BY billing_event_id
            """
        )
        tx.execute(_TODO)
        tx.execute(
            "CREATE OR REPLACE TEMP TABLE _rv_rev AS "
            "SELECT document_id FROM _rv_do WHERE outcome = 'reversed'"
        )
        sin, scn = create_reversals(tx, "_rv_rev", run.process_run_id)
        expect = dict(tx.execute("SELECT outcome, count(*) FROM _rv_do GROUP BY 1").fetchall())
        done = _apply(tx, expect)
        if done != sum(expect.values()) or sin + scn != expect.get("reversed", 0):
            raise BearError(f"revert batch {seq}: events changed state during the revert")
        tx.execute(
            """
            INSERT INTO billing_event_history (billing_event_id, action, run_id, actor, reason,
                document_before, document_after, outcome, reversing_document_id)
            SELECT d.billing_event_id, 'revert', $r, $u, $why, d.document_id, NULL, d.outcome, r.id
            FROM _rv_do d LEFT JOIN _rev_docs r ON r.reverses_document_id = d.document_id
            ORDER BY d.billing_event_id
            """,
            {"r": run_id, "u": run.requested_by, "why": run.reason},
        )
        tx.execute(_LOGS, {"r": run_id, "s": seq, "why": run.reason or ""})
        failed = n - done
        tx.execute(
            "UPDATE process_runs SET processed = processed + $n, succeeded = succeeded + $ok, "
            "failed = failed + $f WHERE id = $p",
            {"p": run.process_run_id, "n": n, "ok": done, "f": failed},
        )
        tx.execute(
            "UPDATE runs SET batches_done = $s, invoice_done = invoice_done + $n, "
            "reverted = reverted + $ok, discarded = discarded + $disc, "
            "sales_invoices = sales_invoices + $sin, credit_notes = credit_notes + $scn, "
            "not_reverted = not_reverted + $f, updated_at = current_timestamp "
            "WHERE id = $r AND batches_done = $s - 1",
            {
                "r": run_id,
                "s": seq,
                "n": n,
                "ok": done,
                "disc": expect.get("discarded", 0),
                "sin": sin,
                "scn": scn,
                "f": failed,
            },
        )
    return True


# The documents the batch ends, as they will read: discarded (in progress before) or reversed
# (complete before), each only from its expected prior state and never a reversing document.
_ENDED = """
CREATE OR REPLACE TEMP TABLE _rv_ended AS
SELECT d.* REPLACE (CASE d.status WHEN 'in_progress' THEN 'discarded' ELSE 'reversed' END AS status,
                    current_timestamp::TIMESTAMP AS status_changed_at)
FROM documents d
SEMI JOIN _rv_do o ON o.document_id = d.id
    AND o.outcome = CASE d.status WHEN 'in_progress' THEN 'discarded' WHEN 'complete' THEN 'reversed' END
WHERE d.reverses_document_id IS NULL
"""


def _apply(cur: duckdb.DuckDBPyConnection, expect: dict[str, int]) -> int:
    """Mark the documents discarded or reversed and put the events back in Awaiting Release,
    each only from its expected prior state; returns the events put back.

    DuckDB executes any UPDATE of ``documents`` as a delete and an insert of whole rows (an
    UPDATE binds the columns of every multi-column CHECK, and those include indexed columns),
    and that internal path is about 2.5 times slower than the same delete and insert written
    out (2,500 documents: 0.13 s against 0.05 s, DuckDB 2.0). So the documents' new rows are
    computed once (``_rv_ended``), the old rows deleted and the new ones inserted, in the
    batch's transaction; the insert checks every constraint of the table."""
    cur.execute(_ENDED)
    got = dict(cur.execute("SELECT status, count(*) FROM _rv_ended GROUP BY 1").fetchall())
    for outcome in ("discarded", "reversed"):
        if got.get(outcome, 0) != expect.get(outcome, 0):
            raise BearError(
                f"{expect.get(outcome, 0) - got.get(outcome, 0)} document(s) changed state "
                "during the revert"
            )
    if got:
        cur.execute("DELETE FROM documents WHERE id IN (SELECT id FROM _rv_ended)")
        cur.execute("INSERT INTO documents BY NAME SELECT * FROM _rv_ended")
    return int(
        cur.execute(
            "UPDATE billing_events SET released = false, released_at = NULL, release_run_id = NULL, "
            "invoiced = false, document_id = NULL FROM _rv_do d "
            "WHERE billing_events.id = d.billing_event_id AND billing_events.released "
            "AND billing_events.document_id IS NOT DISTINCT FROM d.document_id"
        ).fetchall()[0][0]
    )


def _finish(core: Core, run_id: int) -> None:
    with core.db.transaction() as tx:
        run = read_run(tx, run_id)
        if run.status in FINAL_STATUSES or run.stage == "done":
            return
        if run_settings(core, tx, run_id).auto_post:
            auto_post(tx, run.process_run_id, run.requested_by)
        tx.execute(
            "UPDATE process_runs SET status = 'completed', finished_at = current_timestamp "
            "WHERE id = ? AND status = 'running'",
            [run.process_run_id],
        )
        close_run(tx, run_id, "completed")
        owe(core, tx, run_id, "invoicing_finished")
