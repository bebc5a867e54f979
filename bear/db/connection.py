"""Opening a BEAR database: lock errors made plain, migrations applied, one cursor per thread.

DuckDB refuses concurrent use of one connection, so every thread works through its own
cursor (``Database.cursor()``); results are always fetched fully by callers.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import duckdb

from bear.db import documents, holder, item_stats, served
from bear.errors import BearError, DatabaseLockedError

log = logging.getLogger(__name__)

_LOCK_RE = re.compile(r"PID (\d+)")


def _migrations() -> list[tuple[int, str, str]]:
    folder = resources.files("bear.db") / "migrations"
    found = []
    for entry in folder.iterdir():
        name = entry.name
        if not name.endswith(".sql"):
            continue
        number = int(name.split("_", 1)[0])
        found.append((number, name, entry.read_text(encoding="utf-8")))
    return sorted(found)


class FairRLock:
    """A reentrant lock granted in the order it was asked for. The runner writes one release
    batch after another; with a plain lock it would take the lock back before a waiting
    writer (a cancel request, an import, a setting) ever woke, and starve it for the run."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._owner: int | None = None
        self._depth = 0
        self._queue: collections.deque[int] = collections.deque()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return True
            if self._owner is None and not self._queue:
                self._owner, self._depth = me, 1
                return True
            if not blocking:
                return False
            self._queue.append(me)
            deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
            try:
                while self._owner is not None or self._queue[0] != me:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise TimeoutError
                    self._cond.wait(left)
            except BaseException as exc:  # timed out or interrupted: leave the queue
                self._queue.remove(me)
                self._cond.notify_all()
                if isinstance(exc, TimeoutError):
                    return False
                raise
            self._queue.popleft()
            self._owner, self._depth = me, 1
            return True

    def release(self) -> None:
        with self._cond:
            if self._owner != threading.get_ident():
                raise RuntimeError("cannot release a lock this thread does not hold")
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._cond.notify_all()

    def __enter__(self) -> FairRLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Database:
    """A DuckDB database owned by this process, with a cursor per thread."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: str) -> None:
        self.con = con
        self.path = path
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._lock = threading.Lock()
        # Write transactions of this process are serialised, and each commit is counted:
        # the release stage reuses a rule verdict only while no other commit happened.
        self.write_lock = FairRLock()
        self.commit_seq = 0
        self.closed = False

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's own cursor (created on first use)."""
        if self.closed:
            raise BearError("the workspace is closed; open it again with bear.connect()")
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self.con.cursor()
            self._local.cursor = cur
            with self._lock:
                self._cursors.append(cur)
        return cur

    @contextmanager
    def transaction(self, *, rule_neutral: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """One write transaction on this thread's cursor: committed on success, rolled back on
        error. Write transactions of the process run one at a time (``write_lock``), and every
        write that can change what rules read must go through here (``commit_seq`` counts them).
        ``rule_neutral`` marks a write no rule reads (the outbox's delivery bookkeeping): it is
        not counted, so it never makes a run judge its events again.
        """
        with self.write_lock:
            cur = self.cursor()
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
            except BaseException:
                try:
                    cur.execute("ROLLBACK")
                except duckdb.Error:  # the transaction may already be aborted
                    log.debug("rollback after failure raised", exc_info=True)
                raise
            else:
                cur.execute("COMMIT")
                if not rule_neutral:
                    self.commit_seq += 1
                    self._local.commits = getattr(self._local, "commits", 0) + 1

    def foreign_commits(self) -> int:
        """Write transactions committed by threads other than this one (read it while holding
        ``write_lock`` to know that none is committing): a verdict made by this thread holds
        while it does not move."""
        return self.commit_seq - getattr(self._local, "commits", 0)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with self._lock:
            for cur in self._cursors:
                try:
                    cur.close()
                except duckdb.Error:
                    log.debug("closing a cursor failed", exc_info=True)
            self._cursors.clear()
        self.con.close()


def _connect_raw(path: str, read_only: bool) -> duckdb.DuckDBPyConnection:
    config: dict[str, object] = {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": True,
    }
    if path != ":memory:":
        ext_dir = Path(path).resolve().parent / "extensions"
        config["extension_directory"] = str(ext_dir)
    try:
        con = duckdb.connect(path, read_only=read_only, config=config)
        # Times are kept in UTC, whatever the machine's zone: ``current_timestamp`` written to a
        # TIMESTAMP column is converted with the session's zone, and every cursor inherits it.
        con.execute("SET GLOBAL TimeZone = 'UTC'")
        return con
    except duckdb.IOException as exc:
        text = str(exc)
        if "lock" not in text.lower():
            raise BearError(f"cannot open the database {path!r}: {text}") from exc
        match = _LOCK_RE.search(text)
        who = holder.describe(int(match.group(1)) if match else None)
        pid = who.pid
        url = served.served_by(path, pid) if pid else None
        if url:
            message = (
                f"the database {path!r} is in use by {who.words}: it is served at {url}. Work "
                f"on it through the server: `bear --server {url} …` on the command line, "
                f"`bear.connect({url!r}, token=…)` in Python, or the dashboard at {url}."
            )
        else:
            message = (
                f"the database {path!r} is in use by {who.words}. A BEAR database can be open "
                f"in one process at a time: {who.advice}, or work on a copy of the file."
            )
        raise DatabaseLockedError(
            message, path=path, pid=pid, command=who.command, url=url, holder=who.words
        ) from None
    except duckdb.Error as exc:
        raise BearError(f"cannot open the database {path!r}: {exc}") from exc


def open_database(path: str | os.PathLike[str] = ":memory:") -> Database:
    """Open (creating if needed) and migrate a BEAR database; returns the owning ``Database``."""
    path = str(path)
    if path != ":memory:":
        parent = Path(path).resolve().parent
        if not parent.exists():
            raise BearError(
                f"cannot create the database {path!r}: folder {str(parent)!r} does not exist"
            )
    con = _connect_raw(path, read_only=False)
    db = Database(con, path)
    try:
        migrate(db)
        _check_item_stats(db)
    except BaseException:
        db.close()
        raise
    return db


def _check_item_stats(db: Database) -> None:
    """Derived data another program may have left stale while the file was closed: the item
    aggregates (checksum over the item columns they read) and the document counters."""
    if item_stats.stale(db.cursor()):
        with db.transaction() as tx:
            item_stats.refresh(tx)
        log.warning("item aggregates did not match billing_event_items; rebuilt them")
    with db.transaction() as tx:
        documents.rebuild_counters(tx)


def applied_migrations(cur: duckdb.DuckDBPyConnection) -> set[int]:
    if not _has_table(cur, "schema_migrations"):
        cur.execute(
            "CREATE TABLE schema_migrations "
            "(number INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)"
        )
    return {row[0] for row in cur.execute("SELECT number FROM schema_migrations").fetchall()}


def _has_table(cur: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(
        cur.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ? AND table_schema = 'main'",
            [name],
        ).fetchall()[0][0]
    )


def migrate(db: Database) -> list[str]:
    """Apply the numbered migrations not yet recorded, each in its own transaction."""
    cur = db.cursor()
    done = applied_migrations(cur)
    applied = []
    for number, name, sql in _migrations():
        if number in done:
            continue
        with db.transaction() as tx:
            tx.execute(sql)
            tx.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, current_timestamp)", [number, name]
            )
        log.info("applied migration %s", name)
        applied.append(name)
    return applied
