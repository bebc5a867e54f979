"""Hook specifications for notifications (pluggy project ``bear``).

Notifiers are called after the work they report has been committed, once per outbox entry;
a notifier that raises leaves its entry in the outbox to be retried, and never undoes a run.
"""

from __future__ import annotations

from bear.markers import hookspec
from bear.models import RunSummary


@hookspec
def bear_release_finished(summary: RunSummary) -> None:
    """The release stage of a run has finished.

    :param summary: the run's counts (released, not released, batches, failed batches), its
        user, the dashboard link and the recipients this delivery is for.
    """


@hookspec
def bear_invoicing_finished(summary: RunSummary) -> None:
    """The invoicing stage of a run has finished.

    :param summary: the run's counts (sales invoices, credit notes, events not passed to
        accounting), its process run id, the dashboard link and the recipients this
        delivery is for.
    """


@hookspec
def bear_run_failed(summary: RunSummary, error: str) -> None:
    """A run stopped on an unexpected error (its committed batches stay committed).

    :param summary: the run's counts at the time it failed.
    :param error: what went wrong, in one line.
    """
