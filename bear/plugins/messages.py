"""The words of notifications: one place composes subject, text and HTML for every channel."""

from __future__ import annotations

import html

from bear.models import RunSummary

ACTION_LABEL = {
    "release_and_invoice": "Release and Invoice",
    "release": "Release",
    "invoice": "Invoice",
    "revert": "Revert billing",
}


# How a subject says the outcome (``RunSummary.outcome``): a run with failures, or one that
# did nothing it was asked, never reads as a plain success.
FINISHED = {"completed with failures": "finished with failures", "failed": "failed"}


def compose(kind: str, s: RunSummary, error: str = "") -> tuple[str, str, str]:
    """(subject, plain text, HTML) of notification ``kind`` for run summary ``s``."""
    action = ACTION_LABEL.get(s.action, s.action)
    finished = FINISHED.get(s.outcome, "finished")
    if kind == "release_finished":
        subject = f"BEAR run {s.run_id} ({action}): release {finished} — {s.released:,} released, {s.not_released:,} not released"
        lines = [
            f"The release stage of run {s.run_id} ({action}, started by {s.requested_by}) has "
            f"finished: {_outcome_words(s)}.",
            f"Released: {s.released:,}",
            f"Not released: {s.not_released:,}",
            f"Batches: {s.batches:,} ({s.failed_batches:,} failed)",
        ]
    elif kind == "invoicing_finished" and s.action == "revert":
        reversing = s.sales_invoices + s.credit_notes
        subject = (
            f"BEAR run {s.run_id} ({action}) {finished}: {s.reverted:,} events reverted, "
            f"{s.discarded:,} documents discarded, {reversing:,} reversing documents, "
            f"{s.not_reverted:,} not reverted"
        )
        lines = [
            f"Run {s.run_id} ({action}, started by {s.requested_by}) has finished: "
            f"{_outcome_words(s)}.",
            f"Reason: {s.reason or ''}",
            f"Events reverted (back in Awaiting Release): {s.reverted:,}",
            f"Documents in progress discarded: {s.discarded:,}",
            f"Reversing documents created: {s.credit_notes:,} credit notes, "
            f"{s.sales_invoices:,} sales invoices",
            f"Events that could not be reverted: {s.not_reverted:,}",
            f"Selected: {s.selected:,}",
        ]
    elif kind == "invoicing_finished":
        subject = (
            f"BEAR run {s.run_id} ({action}) {finished}: {s.sales_invoices:,} sales invoices, "
            f"{s.credit_notes:,} credit notes, {s.not_passed:,} not passed to accounting"
        )
        lines = [
            f"Run {s.run_id} ({action}, started by {s.requested_by}) has finished creating "
            f"documents: {_outcome_words(s)}.",
            f"Sales invoices created: {s.sales_invoices:,}",
            f"Credit notes created: {s.credit_notes:,}",
            f"Billing events that could not be passed to accounting: {s.not_passed:,}",
        ]
        if s.action == "release_and_invoice":
            lines += [
                f"Selected: {s.selected:,}; left out up front: {s.excluded:,}",
                f"Released: {s.released:,}; not released: {s.not_released:,}"
                f" (batches: {s.batches:,}, {s.failed_batches:,} failed)",
            ]
        elif s.selected:
            lines.append(f"Selected: {s.selected:,}")
        if s.process_run_id is not None:
            lines.append(f"Process run: {s.process_run_id}")
    else:
        subject = f"BEAR run {s.run_id} ({action}) failed"
        lines = [
            f"Run {s.run_id} ({action}, started by {s.requested_by}) stopped on an error: {error}",
            f"Released before it stopped: {s.released:,}; documents created: {s.sales_invoices + s.credit_notes:,}",
            "Committed batches stay committed; the run can be resumed by reopening the database.",
        ]
    lines.append(f"Open the run: {s.link}")
    text = "\n".join(lines) + "\n"
    body = "".join(f"<p>{html.escape(line)}</p>" for line in lines[:-1])
    link = html.escape(s.link, quote=True)
    page = (
        f"<html><body><h2>{html.escape(subject)}</h2>{body}"
        f'<p><a href="{link}">Open run {s.run_id} in BEAR</a></p></body></html>'
    )
    return subject, text, page


def _outcome_words(s: RunSummary) -> str:
    """The outcome as the first line of a message says it."""
    if s.outcome == "failed":
        return "failed — nothing was done of what it was asked"
    if s.outcome == "completed with failures":
        return "completed with failures — some events were not processed"
    return s.outcome
