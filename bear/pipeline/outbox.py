"""The notification outbox: what a finished stage owes (written in the stage's transaction)
and its delivery after commit, one guarded call per channel and recipient, with backoff."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any

import duckdb

from bear.config import is_email
from bear.models import RunSummary
from bear.pipeline.runs import read_run, run_settings
from bear.pipeline.tx import write
from bear.pipeline.worker import Worker
from bear.plugins.messages import compose

if TYPE_CHECKING:
    from bear.pipeline.core import Core

log = logging.getLogger("bear.pipeline")

NOTIFY_BACKOFF_S = (5, 30, 120, 600, 1800, 3600)
NOTIFY_TIMEOUT_S = 10.0  # one attempt that takes longer is abandoned; its entry stays pending
RETRY_BUDGET_S = 20.0  # a "retry now" starts no new attempt after this long
IDLE_SWEEP_S = 5.0  # how often the outbox thread looks for deliveries that came due


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
        selected=run.selected,
        excluded=run.excluded,
        batches=run.batches,
        failed_batches=run.failed_batches,
        sales_invoices=run.sales_invoices,
        credit_notes=run.credit_notes,
        not_passed=run.not_passed,
        process_run_id=run.process_run_id,
        reason=run.reason,
        reverted=run.reverted,
        discarded=run.discarded,
        not_reverted=run.not_reverted,
        link=f"{base_url.rstrip('/')}/?run={run.id}",
        recipients=recipients,
    )


_SUMMARY_FIELDS = frozenset(f.name for f in fields(RunSummary))


def _summary_payload(s: RunSummary) -> str:
    d = {k: v for k, v in s.__dict__.items() if k not in ("settings", "totals")}
    d["recipients"] = list(s.recipients)
    d["outcome"] = s.outcome  # read by the inbox (the bell's style); derived again on delivery
    return json.dumps(d)


def _summary_of_payload(s: dict[str, Any]) -> RunSummary:
    """The ``RunSummary`` an outbox row's payload holds (what it holds beyond, dropped)."""
    values = {k: v for k, v in s.items() if k in _SUMMARY_FIELDS}
    return RunSummary(**{**values, "recipients": tuple(s.get("recipients", ()))})


def owe(core: Core, tx: duckdb.DuckDBPyConnection, run_id: int, kind: str, error: str = "") -> None:
    """Write what ``kind`` owes to the outbox, in the caller's transaction (one row per channel,
    and one per recipient for per-recipient channels such as e-mail); links and extra
    recipients come from the settings the run was queued with."""
    settings = run_settings(core, tx, run_id)
    summary = summary_of(tx, run_id, settings.base_url, settings.additional_notification_recipients)
    subject, text, page = compose(kind, summary, error)
    rows: list[tuple[str, str | None]] = []
    for name in core.plugins.notifier_names(kind):
        if core.plugins.notifier_options(name).per_recipient:
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
    core: Core,
    run_id: int | None = None,
    *,
    force: bool = False,
    budget_s: float | None = None,
) -> dict[str, int]:
    """Deliver owed notifications (after their work is committed); failures stay pending with
    backoff. ``force`` ignores the backoff; ``budget_s`` starts no attempt after that many
    seconds (what is left stays pending, counted as ``left``). Callers serialise sweeps
    (``Outbox.sweep``), so no notification is sent twice by two threads."""
    t0 = time.monotonic()
    cur = core.db.cursor()
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
    sent = failed = left = 0
    settings = core.snapshot()  # delivery uses today's settings (e.g. a corrected SMTP host)
    for (
        nid,
        kind,
        channel,
        recipient,
        payload,
        attempts,
    ) in rows:  # one call per notification, not per event
        if budget_s is not None and time.monotonic() - t0 > budget_s:
            left += 1
            continue
        data: dict[str, Any] = json.loads(payload) if payload else {"summary": {}, "error": ""}
        summary = _summary_of_payload(data["summary"])
        if core.plugins.notifier_options(channel).per_recipient:
            summary = replace(summary, recipients=(recipient,) if recipient else ())
        summary = replace(summary, settings=settings)
        ok, err, _ = core.plugins.deliver(
            kind, channel, summary, data.get("error", ""), NOTIFY_TIMEOUT_S
        )
        if ok:
            sent += 1
            write(
                core.db,
                "UPDATE notifications SET status = 'sent', attempts = attempts + 1, sent_at = current_timestamp, "
                "last_error = NULL WHERE id = ? AND status = 'pending'",
                [nid],
                rule_neutral=True,
            )
        else:
            failed += 1
            delay = NOTIFY_BACKOFF_S[min(attempts, len(NOTIFY_BACKOFF_S) - 1)]
            write(
                core.db,
                "UPDATE notifications SET attempts = attempts + 1, last_error = ?, "
                "next_attempt_at = current_timestamp + to_seconds(?) WHERE id = ? AND status = 'pending'",
                [f"{channel}: {err}"[:1000], delay, nid],
                rule_neutral=True,
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
    return {"sent": sent, "failed": failed, "left": left}


class Outbox(Worker):
    """The delivery thread of the owning process: notifications are sent off the runner, so a
    channel that hangs never holds up a run (each attempt is timed out, failures back off).

    The runner wakes it when a stage has committed what it owes; it also looks every
    ``IDLE_SWEEP_S`` for deliveries whose backoff has passed.
    """

    thread_name = "bear-outbox"
    stop_timeout_s = NOTIFY_TIMEOUT_S + 2  # the attempt in progress is abandoned after that

    def __init__(self, core: Core) -> None:
        super().__init__()
        self.core = core
        self._sweep_lock = threading.Lock()  # one sweep at a time: nothing is sent twice
        self._due = False

    def _woken(self) -> None:
        self._due = True  # something was owed: deliver it now (in the outbox thread)

    def resume(self) -> None:
        """Start the thread when notifications are waiting to be delivered."""
        pending = (
            self.core.db.cursor()
            .execute("SELECT count(*) FROM notifications WHERE status = 'pending'")
            .fetchall()[0][0]
        )
        if pending:
            self.start()

    def sweep(
        self, run_id: int | None = None, *, force: bool = False, budget_s: float | None = None
    ) -> dict[str, int]:
        """Deliver what is due now (all that is pending with ``force``), in the calling thread,
        serialised with the outbox thread; bounded by ``budget_s`` when given."""
        wait = -1 if budget_s is None else budget_s
        if not self._sweep_lock.acquire(timeout=wait):
            return {"sent": 0, "failed": 0, "left": self._pending(run_id)}
        try:
            return deliver_pending(self.core, run_id, force=force, budget_s=budget_s)
        finally:
            self._sweep_lock.release()

    def settle(self, run_id: int | None = None, timeout: float = 30.0) -> bool:
        """Wait until each notification owed (by ``run_id``, or by any run) has had a delivery
        attempt; True if so before ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self._unattempted(run_id):
            if time.monotonic() > deadline:
                return False
            self.wake()
            time.sleep(0.05)
        return True

    def _unattempted(self, run_id: int | None) -> int:
        cond, params = ("", {}) if run_id is None else (" AND run_id = $r", {"r": run_id})
        return int(
            self.core.db.cursor()
            .execute(
                "SELECT count(*) FROM notifications WHERE status = 'pending' AND attempts = 0"
                + cond,
                params,
            )
            .fetchall()[0][0]
        )

    def _pending(self, run_id: int | None) -> int:
        cond, params = ("", {}) if run_id is None else (" AND run_id = $r", {"r": run_id})
        return int(
            self.core.db.cursor()
            .execute("SELECT count(*) FROM notifications WHERE status = 'pending'" + cond, params)
            .fetchall()[0][0]
        )

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._stop:
                    return
                if not self._due:
                    self._cond.wait(IDLE_SWEEP_S)
                self._due = False
                if self._stop:
                    return
            try:
                self.sweep()
            except Exception:
                if self.core.db.closed:
                    return
                log.exception("outbox: delivering notifications failed")
