"""The core every stage works with: the database, the live settings, the plugin host, the
cache of eligibility verdicts and the runner — explicit collaborators instead of the whole
``Workspace``, so the stages can serve any face (the local workspace, a server)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pandas as pd

from bear.config import Settings, SettingsSnapshot
from bear.db import Database
from bear.plugins.manager import PluginHost
from bear.wire import to_pandas

if TYPE_CHECKING:
    from bear.pipeline.outbox import Outbox
    from bear.pipeline.runner import Runner


class Core:
    """What the stages need of an open book, and nothing else.

    :ivar db: the database (a cursor per thread, one write transaction at a time).
    :ivar settings: the live settings; a stage works from ``settings.snapshot()`` or a run's
        stored snapshot.
    :ivar plugins: the plugin host (rule registry, notifier hooks).
    :ivar runner: the background runner, once started by the owner (else ``None``).
    :ivar outbox: the notification delivery thread of the owner (else ``None``).
    """

    def __init__(self, db: Database, settings: Settings, plugins: PluginHost) -> None:
        self.db = db
        self.settings = settings
        self.plugins = plugins
        self.runner: Runner | None = None
        self.outbox: Outbox | None = None
        self.data_version = 0
        self.eligibility_cache: dict[tuple[str, int], Any] = {}
        # other readings kept for a data version, by (name, version): the filters' choices
        self.kept: dict[tuple[str, int], Any] = {}
        self._judging: dict[tuple[str, int], threading.RLock] = {}
        self._lock = threading.RLock()

    def snapshot(self) -> SettingsSnapshot:
        return self.settings.snapshot()

    def refresh(self) -> None:
        """Data changed (import, seed, run, setting): cached eligibility is recomputed on demand."""
        with self._lock:
            self.data_version += 1
            self.eligibility_cache.clear()
            self.kept.clear()
            self._judging.clear()  # a judgement of older data still running keeps its lock

    @contextmanager
    def judging(self, key: tuple[str, int]) -> Iterator[None]:
        """Held while the verdict of ``key`` (kind, data version) is made: one thread makes
        it and the others asking for it meanwhile wait, then read it from the cache."""
        with self._lock:
            lock = self._judging.setdefault(key, threading.RLock())
        with lock:
            yield

    def wake(self) -> None:
        """Tell the runner there is work (no-op in a process that only queues)."""
        if self.runner is not None:
            self.runner.wake()

    def notify(self) -> None:
        """Tell the outbox that a committed transaction owes notifications."""
        if self.outbox is not None:
            self.outbox.wake()

    def frame(
        self, sql: str, params: dict[str, Any] | None = None, *, nullable_ints: bool = False
    ) -> pd.DataFrame:
        """A query's result as a DataFrame, DECIMAL kept as ``Decimal``; with ``nullable_ints``
        integer columns stay integers where values are missing (pandas ``Int64``)."""
        table = self.db.cursor().sql(sql, params=params or {}).to_arrow_table()
        return to_pandas(table, nullable_ints)
