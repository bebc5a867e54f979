"""The store: opening databases, migrations, schema constraints, the lock held by another process."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import duckdb
import pytest

import bear
from bear.db.connection import _migrations
from bear.errors import BearError, DatabaseLockedError

DESIGN_TABLES = (
    "companies",
    "company_currencies",
    "accounting_periods",
    "accounts",
    "products",
    "projects",
    "billing_event_batches",
    "billing_events",
    "billing_event_items",
    "documents",
    "document_lines",
    "runs",
    "release_batches",
    "process_runs",
    "process_logs",
    "app_logs",
    "notifications",
    "settings",
)


def _tables(ws) -> set[str]:
    return {
        r[0]
        for r in ws.db.cursor()
        .execute(
            "SELECT table_name FROM duckdb_tables() WHERE NOT temporary AND schema_name = 'main' "
            "AND database_name = current_database()"
        )
        .fetchall()
    }


@pytest.fixture(scope="module")
def small_book(tmp_path_factory) -> Path:
    """A seeded file (400 events, with invoiced history) built once; copy it before writing."""
    path = tmp_path_factory.mktemp("store") / "small.duckdb"
    with bear.connect(path) as w:
        bear.demo.seed(w, events=400, seed=3)
    return path


@pytest.fixture
def book(small_book, tmp_path):
    import shutil

    path = tmp_path / "book.duckdb"
    shutil.copy(small_book, path)
    w = bear.connect(path)
    yield w
    w.close()


# -- opening ---------------------------------------------------------------------------------
def test_connect_memory_has_the_whole_schema():
    ws = bear.connect(":memory:")
    try:
        assert isinstance(ws, bear.Workspace)
        assert set(DESIGN_TABLES) <= _tables(ws)
        assert ws.sql("SELECT count(*) AS n FROM billing_events")["n"][0] == 0
    finally:
        ws.close()


def test_connect_file_creates_it_and_keeps_data(tmp_path):
    path = tmp_path / "bear.duckdb"
    ws = bear.connect(path)
    assert path.exists()
    assert set(DESIGN_TABLES) <= _tables(ws)
    ws.settings.update(release_batch_size=77)
    ws.close()
    with bear.connect(str(path)) as again:
        assert again.settings.release_batch_size == 77


def test_context_manager_closes_and_close_is_idempotent(tmp_path):
    path = tmp_path / "cm.duckdb"
    with bear.connect(path) as ws:
        assert ws.sql("SELECT 1 AS x")["x"][0] == 1
    assert ws.db.closed
    with pytest.raises(BearError, match="closed"):
        ws.sql("SELECT 1 AS x")
    ws.close()  # a second close is harmless
    # Closed means released: the same process can open the file again at once.
    with bear.connect(path) as again:
        assert again.sql("SELECT 1 AS x")["x"][0] == 1


def test_context_manager_closes_on_error(tmp_path):
    path = tmp_path / "err.duckdb"
    with pytest.raises(RuntimeError), bear.connect(path) as ws:
        raise RuntimeError("boom")
    assert ws.db.closed


# -- migrations ------------------------------------------------------------------------------
def test_migrations_recorded(tmp_path):
    expected = [(number, name) for number, name, _ in _migrations()]
    assert expected, "no migrations found in bear/db/migrations"
    assert [n for n, _ in expected] == sorted({n for n, _ in expected}), "duplicate numbers"
    with bear.connect(tmp_path / "m.duckdb") as ws:
        rows = ws.sql("SELECT number, name, applied_at FROM schema_migrations ORDER BY number")
        assert list(zip(rows["number"], rows["name"], strict=True)) == expected
        assert rows["applied_at"].notna().all()


def test_reopening_an_up_to_date_database_changes_nothing(book, checksums):
    path = book.path
    book.settings.update(release_batch_size=123)
    before = checksums(book)
    migrations_before = book.sql("SELECT * FROM schema_migrations ORDER BY number")
    book.close()
    for _ in range(2):
        with bear.connect(path) as ws:
            assert checksums(ws) == before
            after = ws.sql("SELECT * FROM schema_migrations ORDER BY number")
            assert after.equals(migrations_before)
            assert ws.settings.release_batch_size == 123


# -- constraints -----------------------------------------------------------------------------
def _fails(cur, sql, params=None):
    with pytest.raises(duckdb.Error):
        cur.execute(sql, params or [])


def test_a_second_document_for_the_same_event_is_refused(book):
    cur = book.db.cursor()
    row = cur.execute(
        "SELECT billing_event_id, account_id, company_id, currency FROM documents LIMIT 1"
    ).fetchall()
    assert row, "the demo seed should have invoiced history"
    ev, acct, co, cur_code = row[0]
    before = cur.execute("SELECT count(*) FROM documents").fetchall()[0][0]
    _fails(
        cur,
        "INSERT INTO documents (id, number, doc_type, billing_event_id, account_id, company_id, "
        "currency, total, document_date, seq) VALUES (999999, 'SIN999999', 'SIN', ?, ?, ?, ?, 1, "
        "DATE '2026-01-01', 999999)",
        [ev, acct, co, cur_code],
    )
    assert cur.execute("SELECT count(*) FROM documents").fetchall()[0][0] == before


def test_a_second_line_for_the_same_item_is_refused(book):
    cur = book.db.cursor()
    doc_id, item_id, product = cur.execute(
        "SELECT document_id, billing_event_item_id, product_id FROM document_lines LIMIT 1"
    ).fetchall()[0]
    _fails(
        cur,
        "INSERT INTO document_lines VALUES (999999, ?, ?, ?, 'dup', 1, 1, 1)",
        [doc_id, item_id, product],
    )


def test_document_numbers_unique_per_company_and_type(book):
    cur = book.db.cursor()
    co, doc_type, seq = cur.execute(
        "SELECT company_id, doc_type, seq FROM documents LIMIT 1"
    ).fetchall()[0]
    ev = cur.execute(
        "SELECT id FROM billing_events WHERE id NOT IN (SELECT billing_event_id FROM documents) LIMIT 1"
    ).fetchall()[0][0]
    _fails(
        cur,
        "INSERT INTO documents (id, number, doc_type, billing_event_id, account_id, company_id, "
        "currency, total, document_date, seq) VALUES (999999, 'X', ?, ?, 1, ?, 'USD', 1, "
        "DATE '2026-01-01', ?)",
        [doc_type, ev, co, seq],
    )


def _doc_insert(doc_type="SIN", total="1.00", seq=999999, ev=999999):
    return (
        "INSERT INTO documents (id, number, doc_type, billing_event_id, account_id, company_id, "
        f"currency, total, document_date, seq) VALUES ({ev}, 'N', '{doc_type}', {ev}, 1, 1, 'USD', "
        f"{total}, DATE '2026-01-01', {seq})"
    )


@pytest.mark.parametrize(
    "sql",
    [
        pytest.param(_doc_insert(doc_type="INV"), id="doc_type"),
        pytest.param(_doc_insert(total="-5.00"), id="document-total-negative"),
        pytest.param(_doc_insert(seq=0), id="document-seq-zero"),
        pytest.param(
            "INSERT INTO billing_event_items (id, billing_event_id, category, quantity, unit_price, amount) "
            "VALUES (999999999, 1, 'travel', 1, 1, 1)",
            id="item-category",
        ),
        pytest.param(
            "INSERT INTO runs (action, requested_by, status) VALUES ('release', 'a@b.com', 'done')",
            id="run-status",
        ),
        pytest.param(
            "INSERT INTO runs (action, requested_by) VALUES ('delete_everything', 'a@b.com')",
            id="run-action",
        ),
        pytest.param(
            "INSERT INTO release_batches (run_id, seq, size, status) VALUES (1, 1, 1, 'ok')",
            id="release-batch-status",
        ),
        pytest.param(
            "INSERT INTO release_batches (run_id, seq, size) VALUES (1, 1, -1)",
            id="release-batch-size",
        ),
        pytest.param(
            "INSERT INTO process_runs (started_by, status) VALUES ('a', 'finished')",
            id="process-run-status",
        ),
        pytest.param(
            "INSERT INTO process_logs (process_run_id, billing_event_id, status, message) "
            "VALUES (1, 1, 'WARN', 'x')",
            id="process-log-status",
        ),
        pytest.param(
            "INSERT INTO process_logs (process_run_id, billing_event_id, status, message) "
            "VALUES (1, 1, 'OK', 'no document')",
            id="process-log-ok-needs-document",
        ),
        pytest.param(
            "INSERT INTO notifications (kind, channel, subject, body, status) "
            "VALUES ('k', 'c', 's', 'b', 'lost')",
            id="notification-status",
        ),
        pytest.param(
            "INSERT INTO app_logs (level, origin, message) VALUES (9, 'x', 'y')",
            id="app-log-level",
        ),
        pytest.param(
            "INSERT INTO billing_events (id, name, project_id, currency, event_date, summary_amount) "
            "VALUES (999999999, 'x', 1, 'usd', DATE '2026-01-01', 1)",
            id="event-currency-lowercase",
        ),
        pytest.param(
            "INSERT INTO billing_events (id, name, project_id, currency, event_date, summary_amount) "
            "VALUES (999999999, 'x', 1, 'US', DATE '2026-01-01', 1)",
            id="event-currency-short",
        ),
        pytest.param(
            "INSERT INTO billing_events (id, name, project_id, currency, event_date, summary_amount, "
            "released, invoiced) VALUES (999999999, 'x', 1, 'USD', DATE '2026-01-01', 1, false, true)",
            id="event-invoiced-without-release",
        ),
        pytest.param(
            "INSERT INTO billing_events (id, name, project_id, currency, event_date, summary_amount) "
            "VALUES (1, 'dup', 1, 'USD', DATE '2026-01-01', 1)",
            id="event-duplicate-id",
        ),
        pytest.param("INSERT INTO companies VALUES (99, 'X', 'EURO')", id="company-home-currency"),
        pytest.param(
            "INSERT INTO company_currencies VALUES (1, 'E1R')", id="company-currency-format"
        ),
        pytest.param(
            "INSERT INTO projects (id, name, currency, billing_cap) VALUES (999999, 'x', 'USD', -1)",
            id="project-negative-cap",
        ),
        pytest.param("INSERT INTO document_counters VALUES (1, 'SIN', -1)", id="counter-negative"),
        pytest.param(
            "INSERT INTO settings (key, value) VALUES ('release_batch_size', 'not json')",
            id="settings-json",
        ),
    ],
)
def test_schema_checks_refuse_bad_rows(book, checksums, sql):
    before = checksums(book)
    _fails(book.db.cursor(), sql)
    assert checksums(book) == before


def test_money_columns_are_decimal(ws):
    types = dict(
        ws.db.cursor()
        .execute(
            "SELECT table_name || '.' || column_name, data_type FROM duckdb_columns() "
            "WHERE schema_name = 'main' AND database_name = current_database()"
        )
        .fetchall()
    )
    for col in (
        "billing_events.summary_amount",
        "billing_event_items.amount",
        "billing_event_items.unit_price",
        "billing_event_items.quantity",
        "documents.total",
        "document_lines.amount",
        "document_lines.unit_price",
        "projects.billing_cap",
    ):
        assert types[col].startswith("DECIMAL"), (col, types[col])


# -- lock held by another process ------------------------------------------------------------
@pytest.fixture
def held_db(tmp_path, hold_database):
    """A database file held open by another process; yields (path, process)."""
    path = tmp_path / "held.duckdb"
    bear.connect(path).close()
    return path, hold_database(path)


def test_database_held_by_another_process(held_db):
    path, proc = held_db
    with pytest.raises(DatabaseLockedError) as info:
        bear.connect(path)
    err = info.value
    msg = str(err)
    assert isinstance(err, BearError)
    assert err.pid == proc.pid
    assert str(proc.pid) in msg
    assert err.command and Path(sys.executable).name in err.command  # its command line
    assert err.holder == f"{Path(sys.executable).name} -c … (pid {proc.pid})"  # in words
    assert err.holder in msg
    assert str(path) in msg
    # says what to do, in plain words
    assert "stop" in msg.lower() or "close" in msg.lower()
    assert "try again" in msg.lower() or "copy" in msg.lower()
    # not just DuckDB's raw lock text
    assert "Could not set lock" not in msg
    assert "IO Error" not in msg
    # and the file is untouched: after the holder goes, it opens normally
    proc.kill()
    proc.wait(10)
    with bear.connect(path) as ws:
        assert ws.sql("SELECT count(*) AS n FROM schema_migrations")["n"][0] >= 1


def test_lock_message_is_one_line_whatever_the_holder_command(tmp_path, hold_database):
    path = tmp_path / "held2.duckdb"
    bear.connect(path).close()
    proc = hold_database(
        path,
        "import sys, time\nimport bear\nws = bear.connect(sys.argv[1])\n"
        "print('holding', flush=True)\ntime.sleep(120)\n",
    )
    with pytest.raises(DatabaseLockedError) as info:
        bear.connect(path)
    assert str(proc.pid) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_parent_folder_is_a_clear_error(tmp_path):
    missing = tmp_path / "no" / "such" / "folder"
    with pytest.raises(BearError) as info:
        bear.connect(missing / "bear.duckdb")
    msg = str(info.value)
    assert "does not exist" in msg
    assert str(missing) in msg
    assert not (tmp_path / "no").exists()


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.duckdb"
    path.write_text("hello, this is not a database\n" * 100)
    with pytest.raises(BearError) as info:
        bear.connect(path)
    assert str(path) in str(info.value)
    assert path.read_text().startswith("hello")


# -- extensions ------------------------------------------------------------------------------
def _setting(cur, name):
    rows = cur.execute("SELECT value FROM duckdb_settings() WHERE name = ?", [name]).fetchall()
    if rows:
        return rows[0][0]
    # DuckDB 2.0 lists `extension_directories` in duckdb_settings(); the scalar one is here:
    return cur.execute(f"SELECT current_setting('{name}')").fetchall()[0][0]


def test_extensions_stay_in_the_data_folder_and_are_never_installed(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with bear.connect(data / "bear.duckdb") as ws:
        cur = ws.db.cursor()
        assert str(_setting(cur, "autoinstall_known_extensions")).lower() == "false"
        ext = Path(_setting(cur, "extension_directory"))
        assert ext.is_absolute()
        assert ext.resolve().is_relative_to(data.resolve()), ext
    home = Path(os.path.expanduser("~")).resolve()
    assert not ext.resolve().is_relative_to(home) or data.resolve().is_relative_to(home)


def test_memory_database_does_not_autoinstall(ws):
    assert str(_setting(ws.db.cursor(), "autoinstall_known_extensions")).lower() == "false"
