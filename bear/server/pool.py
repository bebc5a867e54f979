"""The thread pool the served dashboard's callbacks run on: sessions at once, each in order.

Panel hands every browser event and every widget change of a served session to its thread
pool (``pn.config.nthreads``), so one session's slow callback never holds up the others. But
a plain pool also runs one session's callbacks side by side: a name typed into a text box and
the click on "Save" right after it reach the server in that order, yet the click's callback
could run (and read an empty box) before the typed value was applied, on another thread.

``SessionPool`` keeps the pool's parallelism between sessions and gives each session (a Bokeh
``Document``) a queue of its own: a session's callbacks run one after another, in the order
Panel submitted them, which is the order the browser sent them. Work that belongs to no
session goes straight to the pool.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

from bokeh.document import Document

Task = tuple[Future, Callable[..., Any], tuple[Any, ...], dict[str, Any]]


def session_of(fn: Callable[..., Any], args: tuple[Any, ...]) -> Document | None:
    """The session a submitted callable works for: the first ``Document`` among its arguments
    (Panel passes the session's document to every callback it submits, directly or bound in a
    ``functools.partial``)."""
    candidates = list(args)
    while isinstance(fn, partial):
        candidates.extend(fn.args)
        fn = fn.func
    return next((a for a in candidates if isinstance(a, Document)), None)


class SessionPool(ThreadPoolExecutor):
    """A thread pool that runs the tasks of one session in submission order, one at a time."""

    def __init__(self, max_workers: int) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix="bear-session")
        self._queues: dict[Document, deque[Task]] = {}
        self._queues_lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        session = session_of(fn, args)
        if session is None:
            return super().submit(fn, *args, **kwargs)
        future: Future = Future()
        with self._queues_lock:
            queue = self._queues.get(session)
            idle = queue is None
            if idle:
                queue = self._queues[session] = deque()
            queue.append((future, fn, args, kwargs))
        if idle:  # nothing of this session is running: start draining its queue
            super().submit(self._drain, session)
        return future

    def _drain(self, session: Document) -> None:
        while True:
            with self._queues_lock:
                queue = self._queues[session]
                if not queue:
                    del self._queues[session]
                    return
                future, fn, args, kwargs = queue.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # handed to whoever waits on the future, as a pool does
                future.set_exception(exc)
            else:
                future.set_result(result)


def install(threads: int) -> SessionPool:
    """Make Panel run served sessions' callbacks on a ``SessionPool`` of ``threads`` threads.

    Panel keeps its pool in ``pn.state._thread_pool`` (made when ``pn.config.nthreads`` is set);
    it is replaced here, once Panel has made its own, so every part of Panel that submits work
    finds this one."""
    import panel as pn

    pn.config.nthreads = threads
    made = pn.state._thread_pool
    pool = SessionPool(threads)
    pn.state._thread_pool = pool
    if made is not None and made is not pool:
        made.shutdown(wait=False)
    return pool
