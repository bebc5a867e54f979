"""The progress panel of a run: stage, batches, events released, documents, rate and ETA.

``RunProgress`` reads ``ws.run(id)`` on each poll of the session's periodic callback and
derives the rate and ETA of the current stage from its recent samples (once the run has
finished, its average rate over the whole run); ``cancel`` asks the run to stop at its next
batch boundary. ``outcome_kind`` says how an outcome looks in every view of the dashboard.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import param

from bear.errors import BearError

if TYPE_CHECKING:
    from bear.models import RunResult
    from bear.workspace import Workspace


# How each outcome of a run (``RunResult.outcome``) looks: the kind of its toast, and the
# colour of its bar, card and notification (a success is never shown like a failure).
OUTCOME_KIND = {
    "completed": "success",
    "completed with failures": "warning",
    "failed": "error",
    "cancelled": "warning",
}


def outcome_kind(outcome: str | None, default: str = "info") -> str:
    """``success``, ``warning`` or ``error`` for a finished run's outcome; ``default`` for one
    still going on or unknown."""
    return OUTCOME_KIND.get(outcome or "", default)


def processed(r: RunResult) -> int:
    """Events a run has got through: each selected event once, when its last stage has
    judged it (released or not; invoiced or logged; reverted or not)."""
    if r.action == "release" or (r.action == "release_and_invoice" and r.process_run_id is None):
        return r.released + r.not_released
    if r.action == "release_and_invoice":
        return r.not_released + r.invoice_done
    return r.invoice_done  # invoice, revert: one process-log or revert verdict per event


def average_rate(r: RunResult) -> float | None:
    """A finished run's events per second over the whole run (``None`` without its times)."""
    if r.started_at is None or r.finished_at is None:
        return None
    seconds = (r.finished_at - r.started_at).total_seconds()
    n = processed(r)
    return n / seconds if seconds > 0 and n > 0 else None


class RunProgress(param.Parameterized):
    """The live progress of one run, read from ``ws.run(id)`` by a periodic poll."""

    run_id = param.Integer(default=None, allow_None=True)
    action = param.String(default="")
    status = param.String(default="")
    outcome = param.String(default="", doc="RunResult.outcome: completed, … with failures, …")
    stage = param.String(default="")
    batches_done = param.Integer(default=0)
    batches = param.Integer(default=0)
    failed_batches = param.Integer(default=0)
    released = param.Integer(default=0)
    not_released = param.Integer(default=0)
    invoice_done = param.Integer(default=0)
    invoice_total = param.Integer(default=0)
    sales_invoices = param.Integer(default=0)
    credit_notes = param.Integer(default=0)
    documents = param.Integer(default=0)
    not_passed = param.Integer(default=0)
    reverted = param.Integer(default=0, doc="a revert run: events back in Awaiting Release")
    discarded = param.Integer(default=0, doc="a revert run: documents discarded")
    not_reverted = param.Integer(default=0, doc="a revert run: events left as they were")
    fraction = param.Number(default=0.0, bounds=(0, 1))
    rate = param.Number(
        default=None,
        allow_None=True,
        doc="events per second in this stage; once finished, the average over the run",
    )
    eta_s = param.Number(default=None, allow_None=True)
    finished = param.Boolean(default=False)
    error = param.String(default="")
    message = param.String(default="")

    def __init__(self, ws: Workspace, **params: Any) -> None:
        super().__init__(**params)
        self.ws = ws
        self._samples: list[tuple[float, str, int]] = []

    def watch_run(self, run_id: int) -> None:
        self._samples = []
        self.param.update(run_id=int(run_id), finished=False, message="", error="")
        self.poll()

    @staticmethod
    def stage_work(r: RunResult) -> tuple[str, int, int]:
        """(stage, events done, events to do) of a run's current stage."""
        if r.stage in ("queued", "release") and r.action != "invoice":
            return "release", r.released + r.not_released - r.excluded, r.selected - r.excluded
        if r.stage in ("invoice", "done") or r.action == "invoice":
            total = r.invoice_total or (r.released if r.action != "invoice" else r.selected)
            return "invoice", r.invoice_done, total
        return r.stage, 0, 0

    def poll(self, now: float | None = None) -> bool:
        """Read the run; returns True while it is still going."""
        if self.run_id is None:
            return False
        try:
            r = self.ws.run(self.run_id)
        except BearError as exc:
            self.param.update(error=str(exc), finished=True)
            return False
        now = time.monotonic() if now is None else now
        stage, done, todo = self.stage_work(r)
        self._samples = [s for s in self._samples if s[1] == stage][-30:]
        self._samples.append((now, stage, done))
        rate = eta = None
        t0, _, d0 = self._samples[0]
        if now > t0 and done > d0:
            rate = (done - d0) / (now - t0)
            eta = max(0.0, (todo - done) / rate) if rate > 0 else None
        rel = r.batches_done / r.batches if r.batches else 0.0
        inv = r.invoice_done / r.invoice_total if r.invoice_total else 0.0
        if r.finished:
            fraction, eta, rate = 1.0, 0.0, average_rate(r)
        elif r.action == "release_and_invoice":
            fraction = 0.5 + 0.5 * inv if stage == "invoice" else 0.5 * rel
        else:
            fraction = inv if r.action == "invoice" else rel  # a revert goes by batches
        self.param.update(
            action=r.action,
            status=r.status,
            outcome=r.outcome,
            stage=r.stage,
            batches_done=r.batches_done,
            batches=r.batches,
            failed_batches=r.failed_batches,
            released=r.released,
            not_released=r.not_released,
            invoice_done=r.invoice_done,
            invoice_total=r.invoice_total,
            sales_invoices=r.sales_invoices,
            credit_notes=r.credit_notes,
            documents=r.sales_invoices + r.credit_notes,
            not_passed=r.not_passed,
            reverted=r.reverted,
            discarded=r.discarded,
            not_reverted=r.not_reverted,
            fraction=max(0.0, min(1.0, fraction)),
            rate=rate,
            eta_s=eta,
            finished=r.finished,
            error=r.error or "",
        )
        return not r.finished

    def cancel(self) -> str:
        """Ask the run to stop at its next batch boundary; returns what happened, in words."""
        if self.run_id is None:
            return "No run to cancel."
        # ws.cancel retries a write conflict with the runner itself: nothing to retry here
        try:
            self.ws.cancel(self.run_id)
        except BearError as exc:
            self.message = str(exc)
            return self.message
        self.message = f"Cancelling run {self.run_id} at the next batch boundary…"
        self.poll()
        return self.message

    def finished_toast(self) -> tuple[str, str]:
        """(kind, text) of the toast saying how the watched run ended: ``success`` when
        completed, ``warning`` with failures (or cancelled), ``error`` when it failed."""
        if self.action == "revert":
            counts = f"{self.reverted:,} reverted, {self.not_reverted:,} not reverted"
        else:
            counts = f"{self.released:,} released, {self.not_released:,} not released"
        counts += f", {self.documents:,} documents"
        if self.failed_batches:
            counts += f", {self.failed_batches:,} failed batches"
        if not self.outcome:  # the run could not be read (``error`` says why)
            return "error", f"Run {self.run_id}: {self.error or self.status}"
        return outcome_kind(self.outcome, "error"), f"Run {self.run_id} {self.outcome}: {counts}"

    def summary(self) -> str:
        """One line for the progress panel."""
        if self.run_id is None:
            return ""
        parts = [f"Run {self.run_id}: {self.outcome or self.status}", f"stage {self.stage}"]
        if self.batches:
            parts.append(f"batches {self.batches_done:,}/{self.batches:,}")
        parts += [f"released {self.released:,}", f"documents {self.documents:,}"]
        if self.failed_batches:
            parts.append(f"failed batches {self.failed_batches:,}")
        if self.rate:
            parts.append(f"{self.rate:,.0f} events/s" + (" on average" if self.finished else ""))
        if self.eta_s is not None and not self.finished:
            parts.append(f"ETA {self.eta_s:,.0f} s")
        return " · ".join(parts)
