"""Times in the book are UTC, whatever the machine's zone, and every face says so; an app log's
level reads as a word."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess

import pandas as pd
import pytest
from netutil import bear_cli

import bear
from bear.ui.state import display_frame


@pytest.fixture
def book(demo_path, tmp_path):
    path = tmp_path / "times.duckdb"
    shutil.copy(demo_path, path)
    return str(path)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return bear_cli(*args, TZ="Asia/Tokyo")  # UTC+9, no daylight saving time


def test_a_run_made_on_a_machine_in_tokyo_is_stamped_in_utc_and_printed_with_its_zone(book):
    before = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    out = _cli("run", "release", "--db", book, "--currency", "GBP", "--user", "ana@example.com")
    assert out.returncode == 0, out.stderr
    after = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with bear.connect(book, resume=False) as ws:
        run = ws.runs().iloc[0]
        created = run["created_at"]
        stamps = ws.db.cursor().execute(
            "SELECT released_at FROM billing_events WHERE release_run_id = ?", [int(run["id"])]
        )
        released_at = pd.Series([r[0] for r in stamps.fetchall()])
    assert len(released_at) > 0
    slack = dt.timedelta(seconds=5)  # the column keeps microseconds; the clocks agree
    assert before - slack <= created.to_pydatetime() <= after + slack, (before, created, after)
    assert released_at.between(before - slack, after + slack).all()
    listing = _cli("runs", "--db", book)
    assert listing.returncode == 0, listing.stderr
    assert f"{created:%Y-%m-%d %H:%M:%S} UTC" in listing.stdout, listing.stdout


def test_the_dashboard_shows_times_to_the_second_with_the_zone():
    frame = pd.DataFrame(
        {"created_at": pd.to_datetime(["2026-11-30 18:54:27.123456", None]), "n": [1, 2]}
    )
    shown = display_frame(frame)
    assert list(shown["created_at"]) == ["2026-11-30 18:54:27 UTC", ""]


def test_an_app_log_level_reads_as_a_word(book):
    with bear.connect(book, resume=False) as ws:
        pv = ws.preview(ws.awaiting_release(), action="release")
        assert pv.ineligible, "the demo book has ineligible events"
        ws.release(ws.awaiting_release(), "ana@example.com")
        logs = ws.app_logs()
    assert not logs.empty
    assert list(logs.columns[4:6]) == ["level", "level_name"]
    names = {1: "fatal", 2: "error", 3: "warning", 4: "info", 5: "debug", 6: "trace"}
    assert (logs["level"].map(names) == logs["level_name"]).all()
