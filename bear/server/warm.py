"""The server's start-up warm-up, after any dashboard page being drawn.

``ws.warm()`` judges every awaiting event and builds the grid's aggregates (about a second of
both cores at a million events), so that no session waits for them later. A page requested
meanwhile shared the two cores with it and came up that much later. ``Pages`` counts the
dashboard pages being built and drawn; the warm-up waits for the server to listen, a moment
for a first visitor, then for no page to be loading — bounded, so a page that never reports
back only delays it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

SETTLE_S = 1.0  # after the server listens: time for a first visitor's page to begin
LIMIT_S = 15.0  # the warm-up starts by then whatever the pages do


class Pages:
    """Dashboard pages between their request and the browser drawing them."""

    def __init__(self) -> None:
        self._loading = 0
        self._cond = threading.Condition()

    @property
    def loading(self) -> int:
        with self._cond:
            return self._loading

    def begin(self) -> Callable[[], None]:
        """Count a page being built; call what is returned once it is drawn (or gone).
        Calling it again does nothing."""
        with self._cond:
            self._loading += 1
        done = False

        def end() -> None:
            nonlocal done
            with self._cond:
                if done:
                    return
                done = True
                self._loading -= 1
                self._cond.notify_all()

        return end

    def wait_quiet(self, timeout: float) -> bool:
        """Wait until no page is loading, at most ``timeout`` seconds; True if none is."""
        with self._cond:
            return self._cond.wait_for(lambda: self._loading == 0, timeout=timeout)


def warm_when_quiet(
    ws: Any, pages: Pages, listening: Callable[[], bool], *, settle: float = SETTLE_S
) -> None:
    """Once ``listening()``, give a first visitor ``settle`` seconds, wait for the pages being
    drawn, then ``ws.warm()`` (all within ``LIMIT_S``). Errors are logged, not raised: a
    session computes what it needs itself."""
    deadline = time.monotonic() + LIMIT_S
    while not listening() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(max(0.0, min(settle, deadline - time.monotonic())))
    pages.wait_quiet(max(0.0, deadline - time.monotonic()))
    try:
        ws.warm()
    except Exception:  # noqa: BLE001 — the book closing under it, a rule failing: a session retries
        log.debug("warming the eligibility failed", exc_info=True)
