"""The notification outbox: what a finished stage owes (written in the stage's transaction)
and its delivery after commit, one guarded call per channel and recipient, with backoff."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import duckdb

from bear.config import is_email
from bear.models import RunSummary
from bear.pipeline.runs import read_run, run_settings
from bear.pipeline.tx import write
from bear.plugins.messages import compose

if TYPE_CHECKING:
    from bear.pipeline.core import Core

log = logging.getLogger("bear.pipeline")

NOTIFY_BACKOFF_S = (5, 30, 120, 600, 1800, 3600)
NOTIFY_TIMEOUT_S = 30.0  # a notifier that takes longer is abandoned; its entry stays pending


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
    core: Core, run_id: int | None = None, *, force: bool = False
) -> dict[str, int]:
    """Deliver owed notifications (after their work is committed); failures stay pending with backoff."""
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
    sent = failed = 0
    settings = core.snapshot()  # delivery uses today's settings (e.g. a corrected SMTP host)
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
            )
        else:
            failed += 1
            delay = NOTIFY_BACKOFF_S[min(attempts, len(NOTIFY_BACKOFF_S) - 1)]
            write(
                core.db,
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
