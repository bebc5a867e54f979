"""Built-in notifier: writes each notification to the ``bear.notify`` logger."""

from __future__ import annotations

import logging

from bear.markers import hookimpl
from bear.models import RunSummary
from bear.plugins.messages import compose

log = logging.getLogger("bear.notify")


@hookimpl
def bear_release_finished(summary: RunSummary) -> None:
    log.info("%s", compose("release_finished", summary)[0])


@hookimpl
def bear_invoicing_finished(summary: RunSummary) -> None:
    log.info("%s", compose("invoicing_finished", summary)[0])


@hookimpl
def bear_run_failed(summary: RunSummary, error: str) -> None:
    log.warning("%s", compose("run_failed", summary, error)[0])
