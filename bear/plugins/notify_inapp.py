"""Built-in notifier: in-app notifications. The outbox row itself is the notification the
dashboard's bell and ``ws.notifications()`` show, so delivering it needs nothing more."""

from __future__ import annotations

from bear.markers import hookimpl
from bear.models import RunSummary


@hookimpl
def bear_release_finished(summary: RunSummary) -> None:
    """Stored in the outbox; nothing else to do."""


@hookimpl
def bear_invoicing_finished(summary: RunSummary) -> None:
    """Stored in the outbox; nothing else to do."""


@hookimpl
def bear_run_failed(summary: RunSummary, error: str) -> None:
    """Stored in the outbox; nothing else to do."""
