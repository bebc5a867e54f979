"""Run records: reading a run, queueing one (with its events and claims), asking it to stop,
closing it, and the handle a caller waits on."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import duckdb

from bear.config import SettingsSnapshot, is_email
from bear.errors import BearError, NotFoundError
from bear.models import FINAL_STATUSES, Action, RunResult
from bear.pipeline.ids import IdSource, action_of, load_ids
from bear.pipeline.tx import drop_temp, retrying
from bear.progress import follow

if TYPE_CHECKING:
    from bear.pipeline.core import Core

log = logging.getLogger("bear.pipeline")

RUN_COLUMNS = (
    "id, action, requested_by, status, stage, validated, selected, excluded, batches_total, "
    "batches_done, failed_batches, released, not_released, invoice_total, invoice_done, "
    "sales_invoices, credit_notes, not_passed, process_run_id, error, created_at, started_at, "
    "updated_at, finished_at, reason, reverted, discarded, not_reverted"
)


def read_run(cur: duckdb.DuckDBPyConnection, run_id: int) -> RunResult:
    """The ``RunResult`` of run ``run_id``; an unknown id raises ``BearError``."""
    rows = cur.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?", [run_id]).fetchall()
    row = rows[0] if rows else None
    if row is None:
        raise NotFoundError(f"unknown run id {run_id!r}")
    return RunResult(*row)  # RUN_COLUMNS lists RunResult's fields in order


class RunHandle:
    """A submitted run: ``.id``, ``.result()`` for its current state, ``.wait()`` for the end."""

    def __init__(self, core: Core, run_id: int) -> None:
        self.core = core
        self.id = run_id

    def result(self) -> RunResult:
        return read_run(self.core.db.cursor(), self.id)

    @property
    def status(self) -> str:
        return self.result().status

    def wait(self, timeout: float | None = None) -> RunResult:
        """Block until the run has finished (or ``timeout`` seconds pass: ``TimeoutError``)."""
        if self.core.runner is None:
            raise BearError(
                f"run {self.id} is queued; this process does not execute runs "
                "(`bear worker` or the dashboard does)"
            )
        return self.core.runner.wait(self.id, timeout)

    def watch(self, every: float = 0.25, timeout: float | None = None) -> RunResult:
        """Show the run's progress until it ends, live in a notebook (a status line and bars
        for release batches and documents, updated in place) or as lines on standard error;
        returns the final ``RunResult``. ``timeout``: give up watching (``TimeoutError``)."""
        return follow(self, every=every, timeout=timeout)

    def cancel(self) -> RunResult:
        """Ask the run to stop at its next batch boundary."""
        return cancel(self.core, self.id)

    def __repr__(self) -> str:
        return f"<RunHandle {self.id}>"

    def _repr_html_(self) -> str:
        return self.result()._repr_html_()


def check_user(user: Any) -> str:
    """The name or e-mail address of the person starting a run, checked."""
    if not isinstance(user, str) or not user.strip():
        raise BearError("user: give the name or e-mail address of the person starting the run")
    user = user.strip()
    if len(user) > 254 or any(ch in user for ch in "\r\n\0"):
        raise BearError(f"user {user[:40]!r}: at most 254 characters on one line")
    if "@" in user and not is_email(user):
        raise BearError(f"user {user!r} looks like an e-mail address but is not a valid one")
    return user


REASON_MAX = 500


def check_reason(reason: object) -> str:
    """A revert's reason, checked: required, one to ``REASON_MAX`` characters of text."""
    if not isinstance(reason, str) or not reason.strip():
        raise BearError("revert: give a reason (why these events are reverted)")
    reason = reason.strip()
    if len(reason) > REASON_MAX:
        raise BearError(f"revert: the reason has {len(reason)} characters; at most {REASON_MAX}")
    if any(not ch.isprintable() and ch not in "\n\t" for ch in reason):
        raise BearError("revert: the reason may hold text, line breaks and tabs only")
    return reason


def submit(
    core: Core,
    action: str | Action,
    source: IdSource,
    user: str,
    *,
    full: bool = False,
    wake: bool = True,
    reason: str | None = None,
) -> int:
    """Queue a run: record it with the settings it runs with, its events in order, and claim
    the events no other run holds; ``wake`` tells this process's runner. A revert needs a
    ``reason`` (checked by ``check_reason``); the other actions take none."""
    act = action_of(action)
    user = check_user(user)
    if act is Action.REVERT:
        reason = check_reason(reason)
    elif reason is not None:
        raise BearError(f"{act.value}: a reason is given to a revert only")
    settings = core.snapshot()
    clear_stale_claims(core)
    cur = core.db.cursor()
    n = load_ids(cur, source, "_submit_ids")
    if n == 0:
        raise BearError("nothing to run: the selection is empty")
    validated = bool(full) or n <= settings.validation_limit
    with core.db.transaction() as tx:
        run_id = tx.execute(
            "INSERT INTO runs (action, requested_by, validated, selected, settings_snapshot, "
            "reason, updated_at) VALUES (?, ?, ?, ?, ?::JSON, ?, current_timestamp) RETURNING id",
            [act.value, user, validated, n, settings.to_json(), reason],
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
    drop_temp(cur, "_submit_ids")  # recorded in run_events: not kept on the caller's cursor
    if wake:
        core.wake()
    log.info("run %s queued: %s of %s events by %s", run_id, act.value, n, user)
    return int(run_id)


def cancel(core: Core, run_id: int) -> RunResult:
    """Ask a run to stop at its next batch boundary (a queued run stops before it starts)."""
    cur = core.db.cursor()
    run = read_run(cur, int(run_id))
    if run.status in FINAL_STATUSES:
        raise BearError(f"run {run_id} has already finished ({run.status}); nothing to cancel")

    def request() -> None:
        with core.db.transaction() as tx:
            tx.execute(
                "UPDATE runs SET cancel_requested = true, updated_at = current_timestamp WHERE id = ?",
                [run_id],
            )

    retrying(request)  # the runner may be writing the same row: a conflict is retried, never shown
    core.wake()
    return read_run(cur, int(run_id))


def clear_stale_claims(core: Core) -> int:
    """Drop the claims on events held by runs that no longer exist or have finished (a run
    deleted by hand, a book restored from a copy), with an app log each; returns how many.
    Called when a book is opened and before each run is queued or executed."""
    stale = (
        "SELECT c.billing_event_id, c.run_id, r.status FROM event_claims c "
        "LEFT JOIN runs r ON r.id = c.run_id "
        "WHERE r.id IS NULL OR r.status NOT IN ('queued', 'running')"
    )
    cur = core.db.cursor()
    if not cur.execute(f"SELECT count(*) FROM ({stale})").fetchall()[0][0]:
        return 0  # the common case: one cheap read, no write transaction

    def work() -> int:
        with core.db.transaction() as tx:
            tx.execute(f"CREATE OR REPLACE TEMP TABLE _stale_claims AS {stale}")
            tx.execute(
                "INSERT INTO app_logs (run_id, level, origin, record_id, message) "
                "SELECT NULL, 4, 'claims', billing_event_id, 'claim of run ' || run_id || "
                "' cleared: ' || CASE WHEN status IS NULL THEN 'that run no longer exists' "
                "ELSE 'that run has ended (' || status || ')' END FROM _stale_claims "
                "ORDER BY billing_event_id"
            )
            n = tx.execute(
                "DELETE FROM event_claims WHERE billing_event_id IN "
                "(SELECT billing_event_id FROM _stale_claims)"
            ).fetchall()[0][0]
            tx.execute("DROP TABLE _stale_claims")
            return int(n)

    n = retrying(work)
    if n:
        log.warning("cleared %s claim(s) held by runs that no longer exist or have ended", n)
        core.refresh()
    return n


def close_run(
    tx: duckdb.DuckDBPyConnection, run_id: int, status: str, error: str | None = None
) -> None:
    """End a run (in the caller's transaction) and release its claims on events.

    For actions that pass events to accounting, ``not_passed`` becomes exact here: every
    selected event that got no document (left out, in a failed batch, not invoiceable, or not
    reached because the run was cancelled or failed)."""
    tx.execute(
        "UPDATE runs SET status = $st, stage = 'done', error = coalesce($e, error), "
        "not_passed = CASE WHEN action = 'release' THEN not_passed "
        "WHEN action = 'revert' THEN selected - reverted "
        "ELSE selected - sales_invoices - credit_notes END, "
        "not_reverted = CASE WHEN action = 'revert' THEN selected - reverted ELSE 0 END, "
        "finished_at = current_timestamp, updated_at = current_timestamp "
        "WHERE id = $r AND status IN ('queued', 'running')",
        {"r": run_id, "st": status, "e": error},
    )
    tx.execute("DELETE FROM event_claims WHERE run_id = ?", [run_id])


class Cancelled(Exception):
    """The run was asked to stop: it ends ``cancelled`` at this batch boundary."""


class Stopped(BaseException):
    """The workspace is closing: leave the run as it is; it resumes when next opened."""


def check_cancel(core: Core, run_id: int, should_stop: bool) -> None:
    """Raise ``Cancelled`` when the run was asked to stop, ``Stopped`` when the process is."""
    cur = core.db.cursor()
    if cur.execute("SELECT cancel_requested FROM runs WHERE id = ?", [run_id]).fetchall()[0][0]:
        raise Cancelled()
    if should_stop:
        raise Stopped()


def run_settings(core: Core, cur: duckdb.DuckDBPyConnection, run_id: int) -> SettingsSnapshot:
    """The settings run ``run_id`` was queued with (a setting added since takes today's value)."""
    raw = cur.execute("SELECT settings_snapshot FROM runs WHERE id = ?", [run_id]).fetchall()
    return SettingsSnapshot.from_json(raw[0][0] if raw else None, core.snapshot())
