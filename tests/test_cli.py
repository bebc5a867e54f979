"""The ``bear`` command, run as a real subprocess: help, init, events, errors, $BEAR_DB."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

import bear
from bear.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DESIGN_COMMANDS = (
    "seed",
    "import",
    "preview",
    "run",
    "runs",
    "settings",
    "serve",
    "plugins",
    "worker",
)


def bear_cli(
    *args: str, env: dict | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "BEAR_DB"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bear.cli", *args],
        capture_output=True,
        text=True,
        cwd=str(cwd or ROOT),
        env=full_env,
        timeout=120,
    )


def assert_error(r: subprocess.CompletedProcess, *words: str) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.fixture
def book(demo_path, tmp_path) -> Path:
    """A private copy of the 5,000-event demo database file (not opened)."""
    path = tmp_path / "book.duckdb"
    shutil.copy(demo_path, path)
    return path


def _commands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return list(sub.choices)


def test_help_lists_every_command():
    r = bear_cli("--help")
    assert r.returncode == 0, r.stderr
    commands = _commands()
    assert set(DESIGN_COMMANDS) <= set(commands)
    for c in commands:
        assert c in r.stdout, c
    r = bear_cli("events", "--help")
    assert r.returncode == 0 and "--currency" in r.stdout and "--db" in r.stdout


def test_init_creates_and_is_repeatable(tmp_path):
    db = tmp_path / "new.duckdb"
    r = bear_cli("init", "--db", str(db))
    assert r.returncode == 0, r.stderr
    assert db.exists() and "ready" in r.stdout
    r = bear_cli("init", "--db", str(db))
    assert r.returncode == 0, r.stderr
    with bear.connect(db, resume=False) as ws:
        assert ws.sql("SELECT count(*) AS n FROM billing_events")["n"][0] == 0


def test_events_json_matches_the_api(book):
    args = [
        "events", "--db", str(book), "--json",
        "--currency", "EUR", "--currency", "GBP",
        "--min-amount", "100", "--max-amount", "20000",
        "--category", "timecard",
        "--sort", "summary_amount:desc", "--sort", "name",
        "--offset", "7", "--limit", "15",
    ]  # fmt: skip
    r = bear_cli(*args)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    with bear.connect(book, resume=False) as ws:
        sel = ws.awaiting_release(
            currency=["EUR", "GBP"], min_amount="100", max_amount="20000", category="timecard"
        )
        page = sel.page(7, 15, sort=[("summary_amount", "desc"), ("name", "asc")])
        totals = sel.totals()
        count = len(sel)
    assert out["count"] == count > 15
    assert out["offset"] == 7
    assert [e["id"] for e in out["events"]] == [int(i) for i in page["id"]]
    amounts = [Decimal(e["summary_amount"]) for e in out["events"]]
    assert amounts == sorted(amounts, reverse=True)
    assert amounts == list(page["summary_amount"])  # exact, as text, not float
    assert {t["currency"] for t in out["totals"]} == set(totals["currency"])
    assert sum(Decimal(t["amount"]) for t in out["totals"]) == sum(totals["amount"], Decimal(0))


def test_events_text_and_other_views(book):
    r = bear_cli("events", "--db", str(book), "--search", "BE-000012", "--limit", "5")
    assert r.returncode == 0, r.stderr
    assert "BE-0000120" in r.stdout and "matching" in r.stdout
    r = bear_cli("events", "--db", str(book), "--awaiting", "invoice", "--json", "--limit", "3")
    out = json.loads(r.stdout)
    with bear.connect(book, resume=False) as ws:
        assert out["count"] == len(ws.awaiting_invoice())
    assert all(e["released"] and not e["invoiced"] for e in out["events"])


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["events", "--from", "2026-99-99"], ["date_from", "2026-99-99"]),
        (["events", "--min-amount", "lots"], ["min_amount", "lots"]),
        (["events", "--category", "travel"], ["category", "travel"]),
        (["events", "--sort", "bogus:desc"], ["bogus"]),
        (["events", "--from", "2026-06-01", "--to", "2026-01-01"], ["date_from"]),
        (["events", "--limit", "0"], ["limit"]),
        (["events", "--eligibility", "release.nope"], ["release.nope"]),
        (["preview", "--ids-file", "{tmp}/no-such-file.txt"], ["no-such-file.txt"]),
        (
            ["run", "release", "--user", "ana@example.com", "--ids-file", "{tmp}/no-such-file.txt"],
            ["no-such-file.txt"],
        ),
        (["preview", "--ids-file", "{tmp}/unknown.txt"], ["999999998", "999999999"]),
        (["preview", "--ids-file", "{tmp}/garbage.txt"], ["garbage.txt", "line 2"]),
        (["preview", "--ids-file", "{tmp}/unknown.txt", "--currency", "EUR"], ["ids-file"]),
    ],
)
def test_errors_are_one_line_and_exit_2(book, checksums, tmp_path, args, words):
    (tmp_path / "unknown.txt").write_text("1\n999999998\n999999999\n")
    (tmp_path / "garbage.txt").write_text("1\nDROP TABLE billing_events\n")
    with bear.connect(book, resume=False) as ws:
        before = checksums(ws)
    args = [a.format(tmp=tmp_path) for a in args]
    r = bear_cli(*args, "--db", str(book))
    assert_error(r, *words)
    with bear.connect(book, resume=False) as ws:
        assert checksums(ws) == before


def test_db_default_comes_from_bear_db(tmp_path):
    db = tmp_path / "from-env.duckdb"
    r = bear_cli("init", env={"BEAR_DB": str(db)}, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert db.exists() and str(db) in r.stdout
    r = bear_cli("settings", "set", "release_batch_size=31", env={"BEAR_DB": str(db)}, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    with bear.connect(db, resume=False) as ws:
        assert ws.settings.release_batch_size == 31
    # --db wins over $BEAR_DB
    other = tmp_path / "explicit.duckdb"
    r = bear_cli("init", "--db", str(other), env={"BEAR_DB": str(db)}, cwd=tmp_path)
    assert r.returncode == 0 and other.exists()
    # without either, data/bear.duckdb relative to the working folder; a missing folder is a clear error
    r = bear_cli("init", cwd=tmp_path)
    assert_error(r, "data", "does not exist")


def test_locked_database_is_a_plain_error(tmp_path, hold_database):
    """A database held by another process: exit 2 naming the holder, not a raw lock error."""
    db = tmp_path / "held.duckdb"
    bear.connect(db).close()
    proc = hold_database(db)
    r = bear_cli("events", "--db", str(db))
    line = assert_error(r, str(proc.pid), "in use")
    assert "Could not set lock" not in line


# -- what a table shows, and filter values the book does not hold (issue 16, item 12) ------------
def test_a_missing_value_is_shown_empty_never_nan(book):
    with bear.connect(book, resume=False) as ws:
        orphans = ws.sql(
            "SELECT e.id FROM billing_events e LEFT JOIN accounts a ON a.id = e.account_id "
            "WHERE a.id IS NULL ORDER BY e.id LIMIT 2"
        )["id"].tolist()
    assert orphans, "the demo book has events of no known account"
    ids = book.parent / "orphans.txt"
    ids.write_text("\n".join(map(str, orphans)) + "\n")
    r = bear_cli("events", "--db", str(book), "--ids-file", str(ids), "--awaiting", "any")
    assert r.returncode == 0, r.stderr
    rows = r.stdout.splitlines()[1:3]
    assert "NaN" not in r.stdout and "None" not in r.stdout
    assert all(row.split()[3] == "—" for row in rows), r.stdout
    out = json.loads(
        bear_cli(
            "events", "--db", str(book), "--ids-file", str(ids), "--awaiting", "any", "--json"
        ).stdout
    )
    assert [e["account"] for e in out["events"]] == [None, None]


@pytest.mark.parametrize(
    ("args", "warning"),
    [
        (["--currency", "XYZ"], "warning: currency XYZ is not in this book (known: EUR, GBP, USD)"),
        (["--company", "999"], "warning: company 999 is not in this book (known: 1, 2, 3)"),
        (["--region", "Mars"], "warning: region Mars is not in this book (known: "),
        (["--practice", "Magic"], "warning: practice Magic is not in this book (known: "),
        (["--group", "Group Z"], "warning: group Group Z is not in this book (known: Group A"),
    ],
)
def test_a_filter_value_the_book_does_not_hold_is_named_on_stderr(book, args, warning):
    r = bear_cli("events", "--db", str(book), *args)
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith(warning) and r.stderr.count("\n") == 1, r.stderr
    assert "0 matching" in r.stdout
    # --json: the same warning on stderr, stdout stays one JSON document
    r = bear_cli("events", "--db", str(book), "--json", *args)
    assert r.returncode == 0 and r.stderr.startswith(warning)
    assert json.loads(r.stdout)["count"] == 0


def test_known_filter_values_and_previews_warn_alike(book):
    r = bear_cli("events", "--db", str(book), "--currency", "EUR", "--limit", "1")
    assert r.returncode == 0 and r.stderr == ""  # a known value: no warning
    r = bear_cli("preview", "--db", str(book), "--currency", "EUR", "--currency", "eur", "--json")
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith("warning: currency eur is not in this book")
    assert json.loads(r.stdout)["selected"] > 0  # EUR still selects
