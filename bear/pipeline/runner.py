"""The runner: the one background thread of the owning process that executes queued runs in
order (resuming unfinished ones), and retries owed notifications when idle."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import duckdb

from bear.errors import BearError
from bear.models import FINAL_STATUSES, Action, RunResult
from bear.pipeline.invoice import invoice_stage
from bear.pipeline.outbox import owe
from bear.pipeline.release import reconcile, release_stage
from bear.pipeline.revert import revert_stage
from bear.pipeline.runs import (
    Cancelled,
    Stopped,
    close_run,
    read_run,
    run_settings,
)
from bear.pipeline.tx import drop_temp, retrying, write
from bear.pipeline.worker import Worker
from bear.rules.batch import BATCH_VIEWS

if TYPE_CHECKING:
    from bear.pipeline.core import Core

log = logging.getLogger("bear.pipeline")


class Runner(Worker):
    """The one background thread of the owning process that executes queued runs in order."""

    thread_name = "bear-runner"

    def __init__(self, core: Core) -> None:
        super().__init__()
        self.core = core
        self._finished = 0  # runs ended so far: waiters sleep until it moves
        self._idle_retry_s = 5.0

    def resume(self) -> None:
        """Start the thread when unfinished runs are waiting."""
        cur = self.core.db.cursor()
        pending = cur.execute(
            "SELECT count(*) FROM runs WHERE status IN ('queued', 'running')"
        ).fetchall()[0][0]
        if pending:
            self.start()

    def wait(self, run_id: int, timeout: float | None = None) -> RunResult:
        deadline = None if timeout is None else time.monotonic() + timeout
        cur = self.core.db.cursor()
        while True:
            with self._cond:
                seen = self._finished
            res = read_run(cur, run_id)
            if res.status in FINAL_STATUSES:
                return res  # committed; its notifications are the outbox thread's business
            if not self.alive:
                self.start()
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(
                    f"run {run_id} still {res.status} ({res.stage}) after {timeout:g} s"
                )
            with self._cond:  # woken when a run ends (no polling that slows the run down)
                if self._finished == seen:
                    self._cond.wait(
                        1.0
                        if deadline is None
                        else min(1.0, max(0.01, deadline - time.monotonic()))
                    )

    # -- loop ------------------------------------------------------------------------------
    def _next_run(self) -> int | None:
        rows = (
            self.core.db.cursor()
            .execute(
                "SELECT id FROM runs WHERE status IN ('queued', 'running') ORDER BY id LIMIT 1"
            )
            .fetchall()
        )
        return int(rows[0][0]) if rows else None

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._stop:
                    return
            try:
                run_id = self._next_run()
            except (duckdb.Error, BearError):
                if self.core.db.closed:
                    return
                log.exception("runner: reading the queue failed")
                run_id = None
            if run_id is not None:
                try:
                    execute_run(self.core, run_id, self.should_stop)
                except Stopped:
                    return
                except Exception:
                    if self.core.db.closed:
                        return
                    log.exception("run %s failed", run_id)
                with self._cond:
                    self._finished += 1
                    self._cond.notify_all()
                continue
            with self._cond:
                if self._stop:
                    return
                self._cond.wait(self._idle_retry_s)

    def idle(self) -> bool:
        """No queued or unfinished run is waiting."""
        return self._next_run() is None


def execute_run(core: Core, run_id: int, stopping: Callable[[], bool] = lambda: False) -> RunResult:
    """Execute (or resume) one run to its end; returns its ``RunResult``.

    The run executes with DuckDB's memory bounded (``RUN_MEMORY_LIMIT``). A database error
    under the bound may be DuckDB running out of it (memory it cannot spill; a rule's error
    even hides it behind an aborted transaction): the failed transaction has rolled back, so
    the run resumes once from its last commit without the bound, and only a failure then ends
    it ``failed``. A run is slower or bigger, never failed, for want of memory the machine has."""
    cur = core.db.cursor()
    run = read_run(cur, run_id)
    if run.status in FINAL_STATUSES:
        return run
    with bounded_memory(core, cur) as bound:
        try:
            try:
                _execute(core, cur, run_id, stopping, bound.limited)
            except _UnderBound as exc:
                log.warning(
                    "run %s failed under the %s bound on DuckDB's memory (%s); resuming it "
                    "without the bound",
                    run_id,
                    RUN_MEMORY_LIMIT,
                    str(exc.__cause__).splitlines()[0],
                )
                bound.lift()
                _execute(core, cur, run_id, stopping, False)
        finally:
            _quietly(core, drop_temp, cur, *RUN_TEMP_TABLES, views=BATCH_VIEWS)
    core.refresh()
    core.notify()  # delivered by the outbox thread: a slow channel never holds up the queue
    return read_run(cur, run_id)


class _UnderBound(Exception):
    """A run's database error while DuckDB's memory was bounded (the cause): retried without."""


def _execute(
    core: Core,
    cur: duckdb.DuckDBPyConnection,
    run_id: int,
    stopping: Callable[[], bool],
    bounded: bool,
) -> None:
    """Execute the run's stages; a failure ends the run ``failed`` — except a database error
    under a memory bound (``bounded``): ``_UnderBound``, for ``execute_run`` to lift it."""
    run = read_run(cur, run_id)
    act = Action(run.action)
    settings = run_settings(core, cur, run_id)
    write(
        core.db,
        "UPDATE runs SET status = 'running', started_at = coalesce(started_at, current_timestamp), "
        "updated_at = current_timestamp WHERE id = ? AND status IN ('queued', 'running')",
        [run_id],
    )
    try:
        judged = None
        if act in (Action.RELEASE, Action.RELEASE_AND_INVOICE):
            judged = release_stage(core, run_id, settings, stopping)
        if act is Action.REVERT:
            revert_stage(core, run_id, settings, stopping)
        elif act in (Action.INVOICE, Action.RELEASE_AND_INVOICE):
            invoice_stage(core, run_id, stopping, judged)
        else:
            _finish(core, run_id, "completed")
    except Cancelled:
        _finish(core, run_id, "cancelled")
    except Exception as exc:
        if core.db.closed:
            raise
        if stopping() and isinstance(exc, duckdb.Error):
            raise  # closing under our feet: the run resumes next time
        if bounded and (isinstance(exc, duckdb.Error) or isinstance(exc.__cause__, duckdb.Error)):
            raise _UnderBound() from exc  # rolled back: resumed without the memory bound
        log.exception("run %s failed", run_id)
        _finish(core, run_id, "failed", f"{type(exc).__name__}: {exc}"[:1000])


# The stages' working tables, on the runner's cursor; dropped when a run ends, so that a
# million-event run does not keep its batch view and id lists until the next run replaces them.
RUN_TEMP_TABLES = (
    "_run_ids", "_prep_v", "_prep_x", "_inv_pre", "_rw_ids", "_rw_v", "_rw_x", "_rb_ids",
    "_rb_culprits", "_batch_core", "_inv_targets", "_inv_ids", "_inv_v", "_inv_bad", "_inv_ok",
    "_doc_culprits", "_new_docs", "_rv_ids", "_rv_v", "_rv_bad", "_rv_rev", "_rv_do",
    "_rv_ended", "_rev_docs", "_post_ids",
)  # fmt: skip

# DuckDB's memory while a run executes (the book's, shared by every cursor): beyond it DuckDB
# spills temp tables and operators to ``<book>.tmp`` instead of growing. Measured on a 1M-event
# Release and Invoice (1.35M-event book, 2 cores): peak RSS 1154 MiB unbounded, ~755 MiB at
# 512 MiB, ~600 MiB at 256 MiB, with no measurable change of time (bench/bench_pipeline.py).
RUN_MEMORY_LIMIT = "256MiB"


class _Bound:
    """The memory limit a run executes under, and the limit to put back after it."""

    def __init__(self, core: Core, cur: duckdb.DuckDBPyConnection, prev: str | None) -> None:
        self.core, self.cur, self.prev = core, cur, prev

    @property
    def limited(self) -> bool:
        return self.prev is not None

    def lift(self) -> None:
        """Put the previous limit back now (the run goes on without the bound)."""
        if self.prev is not None:
            prev, self.prev = self.prev, None
            _quietly(self.core, _restore_limit, self.cur, prev)


@contextmanager
def bounded_memory(core: Core, cur: duckdb.DuckDBPyConnection) -> Iterator[_Bound]:
    """Run with DuckDB's memory limited to ``RUN_MEMORY_LIMIT`` (the previous limit back after),
    and its allocator's background threads on, so memory freed by a stage (a dropped temp
    table, a finished chunk) goes back to the system rather than staying with the process."""
    cur.execute("SET GLOBAL allocator_background_threads = true")
    prev = cur.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    try:
        cur.execute(f"SET GLOBAL memory_limit = '{RUN_MEMORY_LIMIT}'")
    except duckdb.Error as exc:  # more is pinned than the limit allows: run unbounded
        log.warning("could not limit DuckDB's memory to %s: %s", RUN_MEMORY_LIMIT, exc)
        prev = None
    bound = _Bound(core, cur, prev)
    try:
        yield bound
    finally:
        bound.lift()


def _restore_limit(cur: duckdb.DuckDBPyConnection, prev: str) -> None:
    # RESET gives the default exactly; a limit someone else set is put back as it reads.
    cur.execute("RESET GLOBAL memory_limit")
    if cur.execute("SELECT current_setting('memory_limit')").fetchall()[0][0] != prev:
        cur.execute(f"SET GLOBAL memory_limit = '{prev}'")


def _quietly(core: Core, fn: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    """Tidy up after a run: skipped when the book closed under it; a failure is logged, never
    raised over the run's own outcome."""
    if core.db.closed:
        return
    try:
        fn(*args, **kwargs)
    except duckdb.Error:
        if not core.db.closed:
            log.warning("tidying up after a run failed", exc_info=True)


def _finish(core: Core, run_id: int, status: str, error: str | None = None) -> None:
    """End the run with ``status`` (exact release counters if it stopped mid-release)."""

    def work() -> None:
        with core.db.transaction() as tx:
            run = read_run(tx, run_id)
            if run.status in FINAL_STATUSES:
                return
            if run.stage in ("queued", "release"):
                reconcile(tx, run_id)  # stopped mid-release: exact counters
            if run.process_run_id is not None:
                tx.execute(
                    "UPDATE process_runs SET status = $st, finished_at = current_timestamp "
                    "WHERE id = $p AND status = 'running'",
                    {
                        "p": run.process_run_id,
                        "st": "cancelled"
                        if status == "cancelled"
                        else ("completed" if status == "completed" else "failed"),
                    },
                )
            close_run(tx, run_id, status, error)
            if status == "failed":
                owe(core, tx, run_id, "run_failed", error or "")

    retrying(work)
