"""Shared fixtures: fresh databases (in memory or on disk), seeded demo books, a real SMTP server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from netutil import Inbox, free_port  # noqa: E402,F401  (re-exported for older imports)

import bear


@pytest.fixture
def ws():
    """An empty in-memory workspace."""
    w = bear.connect(":memory:")
    yield w
    w.close()


@pytest.fixture(scope="session")
def demo_path(tmp_path_factory) -> Path:
    """A seeded demo database file (5,000 events) built once; copy it before writing."""
    path = tmp_path_factory.mktemp("demo") / "demo.duckdb"
    with bear.connect(path) as w:
        bear.demo.seed(w, events=5_000, seed=7)
    return path


@pytest.fixture
def demo_ws(demo_path, tmp_path):
    """A private copy of the seeded demo database, opened."""
    import shutil

    path = tmp_path / "book.duckdb"
    shutil.copy(demo_path, path)
    w = bear.connect(path)
    yield w
    w.close()


@pytest.fixture
def smtp_server():
    """A real SMTP server (aiosmtpd) on 127.0.0.1; yields (host, port, inbox)."""
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield "127.0.0.1", port, inbox
    finally:
        controller.stop()


# -- added for the Foundation tests ------------------------------------------------------------
VOLATILE_COLUMNS = frozenset({"created_at", "updated_at", "applied_at"})


def table_checksums(cur, exclude_columns=frozenset()) -> dict[str, tuple[int, int]]:
    """(row count, order-independent hash sum) of every base table of the main database.

    ``exclude_columns`` leaves out columns whose values legitimately differ between two
    otherwise identical databases (creation timestamps)."""
    tables = [
        r[0]
        for r in cur.execute(
            "SELECT table_name FROM duckdb_tables() WHERE NOT temporary AND schema_name = 'main' "
            "AND database_name = current_database() ORDER BY table_name"
        ).fetchall()
    ]
    out: dict[str, tuple[int, int]] = {}
    for t in tables:
        cols = [
            r[0]
            for r in cur.execute(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = ? AND schema_name = 'main' "
                "AND database_name = current_database() ORDER BY column_index",
                [t],
            ).fetchall()
            if r[0] not in exclude_columns
        ]
        expr = ", ".join(f'"{c}"' for c in cols)
        n, h = cur.execute(
            f'SELECT count(*), coalesce(sum(hash({expr})::HUGEINT), 0) FROM "{t}"'
        ).fetchall()[0]
        out[t] = (int(n), int(h))
    return out


@pytest.fixture
def checksums():
    """``checksums(ws_or_cursor, exclude_columns=())`` -> {table: (rows, hash sum)}."""

    def _sums(target, exclude_columns=frozenset()):
        cur = target.db.cursor() if hasattr(target, "db") else target
        return table_checksums(cur, frozenset(exclude_columns))

    return _sums


_HOLDER = (
    "import sys, time, bear; ws = bear.connect(sys.argv[1]); print('holding', flush=True); "
    "time.sleep(120)"
)


@pytest.fixture
def hold_database():
    """``hold_database(path, code=None)`` starts another process that opens ``path`` with
    ``bear.connect`` and keeps it open (``code``: the ``python -c`` program, default a
    one-liner); returns the ``Popen`` once it holds the database. Killed at teardown."""
    import select
    import subprocess
    import sys

    started: list[subprocess.Popen] = []

    def _hold(path, code: str | None = None) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-c", code or _HOLDER, str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=str(Path(__file__).resolve().parents[1]),
        )
        started.append(proc)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready and proc.stdout.readline().strip() == "holding":
                return proc
        proc.kill()
        raise AssertionError(f"the holder process did not open {path}: {proc.stderr.read()}")

    yield _hold
    for proc in started:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
