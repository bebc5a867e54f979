"""A run queued on a server: the remote twin of ``bear.pipeline.RunHandle``."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from bear.models import RunResult
from bear.progress import follow
from bear.wire import run_of

if TYPE_CHECKING:
    from bear.remote.http import Http

# How often a waiting client asks: soon at first (small runs end in a moment), then every
# half second, so a long run costs the server two requests a second per waiting client.
FIRST_POLL_S = 0.05
MAX_POLL_S = 0.5


class RemoteRunHandle:
    """A submitted run: ``.id``, ``.result()`` for its current state, ``.wait()`` for the end,
    ``.cancel()`` to ask it to stop."""

    def __init__(self, http: Http, run_id: int) -> None:
        self._http = http
        self.id = run_id

    def result(self) -> RunResult:
        return run_of(self._http.json("GET", f"/runs/{self.id}"))

    @property
    def status(self) -> str:
        return self.result().status

    def wait(self, timeout: float | None = None) -> RunResult:
        """Block until the run has finished (or ``timeout`` seconds pass: ``TimeoutError``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = FIRST_POLL_S
        while True:
            res = self.result()
            if res.finished:
                return res
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(
                    f"run {self.id} still {res.status} ({res.stage}) after {timeout:g} s"
                )
            left = MAX_POLL_S if deadline is None else max(0.01, deadline - time.monotonic())
            time.sleep(min(pause, left))
            pause = min(pause * 2, MAX_POLL_S)

    def watch(self, every: float = 0.25, timeout: float | None = None) -> RunResult:
        """Show the run's progress until it ends, live in a notebook (a status line and bars
        for release batches and documents, updated in place) or as lines on standard error;
        returns the final ``RunResult``. ``timeout``: give up watching (``TimeoutError``)."""
        return follow(self, every=every, timeout=timeout)

    def cancel(self) -> RunResult:
        """Ask the run to stop at its next batch boundary."""
        return run_of(self._http.json("POST", f"/runs/{self.id}/cancel"))

    def __repr__(self) -> str:
        return f"<RemoteRunHandle {self.id}>"

    def _repr_html_(self) -> str:
        return self.result()._repr_html_()
