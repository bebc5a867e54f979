"""A background thread of the owning process that can be started, woken and stopped: what the
runner and the outbox have in common."""

from __future__ import annotations

import threading


class Worker:
    """One daemon thread running ``_loop``; ``_cond`` guards ``_stop`` and wakes the loop.

    Subclasses name the thread (``thread_name``) and write ``_loop``, which returns once
    ``self._stop`` is set.
    """

    thread_name = "bear-worker"
    stop_timeout_s = 30.0

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = False

    def start(self) -> None:
        """Start the thread unless it runs already."""
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop = False
            self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """There is work: start the thread if needed and wake it."""
        self.start()
        with self._cond:
            self._woken()
            self._cond.notify_all()

    def stop(self, timeout: float | None = None) -> None:
        """Ask the loop to end and wait for it (``timeout`` s at most)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(self.stop_timeout_s if timeout is None else timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def should_stop(self) -> bool:
        return self._stop

    def _woken(self) -> None:
        """Called under ``_cond`` when woken (e.g. to note that work is due)."""

    def _loop(self) -> None:  # pragma: no cover - every subclass has its own
        raise NotImplementedError
