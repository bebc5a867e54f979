"""Who changed the settings: every change and rule toggle is recorded in ``change_log`` with
its author, old and new value, in the transaction that makes it; ``Settings.history`` reads it
newest first; the dashboard's settings state, its view and the CLI record their user."""

from __future__ import annotations

import getpass
import json
import subprocess
import sys
from pathlib import Path

import pytest

import bear
from bear.errors import BearError, SettingError
from bear.ui.state import SettingsState

ROOT = Path(__file__).resolve().parents[1]
ACTOR = f"local:{getpass.getuser()}"
RULE = "release.not_approved"


def bear_cli(*args: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-m", "bear.cli", *args],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        env={k: v for k, v in os.environ.items() if k != "BEAR_DB"},
        timeout=120,
    )


def rows(frame) -> list[tuple]:
    return [tuple(r) for r in frame[["actor", "name", "old", "new"]].itertuples(index=False)]


# -- the Python API ----------------------------------------------------------------------------
def test_update_by_records_who_old_and_new_only_for_what_changed(ws):
    assert ws.settings.history().empty
    ws.settings.update_by("ana", release_batch_size=50, release_failure_mode="batch")  # 2nd same
    ws.settings.update(additional_notification_recipients="a@example.com")
    assert rows(ws.settings.history()) == [
        ("local", "additional_notification_recipients", [], ["a@example.com"]),
        ("ana", "release_batch_size", 200, 50),
    ]
    ws.settings.update_by("ana", release_batch_size="50")  # the same value: nothing to record
    assert len(ws.settings.history()) == 2
    assert list(ws.settings.history().columns) == ["changed_at", "actor", "name", "old", "new"]


def test_reset_records_like_an_update(ws):
    ws.settings.update_by("ana", smtp_port=2525, require_approval=False)
    ws.settings.reset("smtp_port", "require_approval", actor="bob")
    ws.settings.reset("smtp_port")  # already the default: nothing recorded
    latest = ws.settings.history().head(2)
    assert sorted(rows(latest)) == [
        ("bob", "require_approval", False, True),
        ("bob", "smtp_port", 2525, 25),
    ]
    assert len(ws.settings.history()) == 4


def test_history_is_newest_first_and_filters_by_name_and_limit(ws):
    for n in (10, 20, 30):
        ws.settings.update_by(f"user{n}", release_batch_size=n)
        ws.settings.update_by(f"user{n}", validation_limit=n)
    history = ws.settings.history()
    assert list(history.actor) == ["user30", "user30", "user20", "user20", "user10", "user10"]
    assert history.changed_at.is_monotonic_decreasing
    batch = ws.settings.history("release_batch_size")
    assert [(o, n) for o, n in zip(batch.old, batch.new, strict=True)] == [
        (20, 30),
        (10, 20),
        (200, 10),
    ]
    assert list(ws.settings.history("validation_limit", limit=1).new) == [30]
    assert ws.settings.history("smtp_host").empty
    with pytest.raises(SettingError, match="unknown setting 'nope'"):
        ws.settings.history("nope")
    with pytest.raises(BearError, match="limit"):
        ws.settings.history(limit=-1)


def test_a_refused_update_records_nothing(ws):
    refusals = [
        lambda: ws.settings.update_by("ana", release_batch_size=0),
        lambda: ws.settings.update_by("ana", release_batch_size=5, nosuch=1),
        lambda: ws.settings.update_by("ana", smtp_username="me"),  # needs smtp_starttls
        lambda: ws.settings.update_by("", release_batch_size=5),  # nobody
        lambda: ws.settings.update_by("ana\nroot", release_batch_size=5),
        lambda: ws.settings.reset("nosuch", actor="ana"),
    ]
    for refuse in refusals:
        with pytest.raises(BearError):
            refuse()

    def veto(proposed, changed):
        raise SettingError("vetoed", name="release_batch_size")

    ws.settings.add_validator(veto)
    with pytest.raises(SettingError, match="vetoed"):
        ws.settings.update_by("ana", release_batch_size=5)
    assert ws.settings.release_batch_size == 200
    assert ws.settings.history().empty and ws.team.changes().empty


def test_a_locked_startup_setting_records_nothing(ws):
    ws.settings.lock_startup()
    with pytest.raises(SettingError, match="plugins_dir"):
        ws.settings.update_by("ana", plugins_dir="/tmp")
    assert ws.team.changes().empty


def test_disabled_rules_changes_also_log_each_rule(ws):
    ws.settings.update_by("ana", disabled_rules=[RULE, "release.no_items"])
    ws.settings.update_by("bob", disabled_rules=["release.no_items"])
    rules = ws.team.changes("rule")  # newest first
    logged = [
        (r.actor, r.target, json.loads(r.old_value)["enabled"], json.loads(r.new_value)["enabled"])
        for r in rules.itertuples()
    ]
    assert logged[0] == ("bob", RULE, False, True)
    assert sorted(logged[1:]) == [
        ("ana", "release.no_items", True, False),
        ("ana", RULE, True, False),
    ]


# -- the dashboard's state and view ------------------------------------------------------------
def test_settings_state_records_the_dashboard_user(ws):
    s = SettingsState(ws, env={}, user="ana@example.com")
    assert s.history is not None and s.history.empty
    ok, _ = s.save("release_batch_size", "300")
    assert ok
    ok, _ = s.save("release_batch_size", "-1")  # refused: nothing recorded
    assert not ok
    assert rows(s.history) == [("ana@example.com", "release_batch_size", 200, 300)]
    assert list(s.history_frame().columns) == ["when", "who", "setting", "change"]
    assert s.history_frame().change[0] == "200 → 300"


def test_rule_toggle_in_the_state_records_setting_and_rule(ws):
    s = SettingsState(ws, env={}, user="ana")
    assert s.set_rule_enabled(RULE, False)[0]
    assert s.set_rule_enabled(RULE, True)[0]
    assert rows(s.history) == [
        ("ana", "disabled_rules", [RULE], []),
        ("ana", "disabled_rules", [], [RULE]),
    ]
    assert list(s.history_frame().change) == [f"{RULE} → (none)", f"(none) → {RULE}"]
    log = ws.team.changes("rule", RULE)
    assert [json.loads(v) for v in log.new_value] == [{"enabled": True}, {"enabled": False}]
    assert set(log.actor) == {"ana"}


def test_the_dashboard_passes_its_user_and_the_view_shows_the_history(ws):
    from bear.ui.dashboard import Dashboard

    dash = Dashboard(ws, "carol", background=None, poll=False)
    assert dash.settings.user == "carol"
    dash.settings.save("validation_limit", "99")
    shown = dash.settings_view.history.value
    assert list(shown.columns) == ["when", "who", "setting", "change"]
    assert shown.iloc[0][["who", "setting", "change"]].tolist() == [
        "carol",
        "validation_limit",
        "1000000 → 99",
    ]
    assert ws.settings.history().actor[0] == "carol"


# -- the CLI -----------------------------------------------------------------------------------
def test_cli_set_and_reset_record_the_os_user_and_history_shows_them(tmp_path):
    db = str(tmp_path / "book.duckdb")
    r = bear_cli("settings", "set", "release_batch_size=70", f"disabled_rules={RULE}", "--db", db)
    assert r.returncode == 0, r.stderr
    r = bear_cli("settings", "reset", "release_batch_size", "--db", db)
    assert r.returncode == 0, r.stderr
    r = bear_cli("settings", "set", "release_batch_size=oops", "--db", db)
    assert r.returncode == 2 and "error:" in r.stderr

    r = bear_cli("settings", "history", "--json", "--db", db)
    assert r.returncode == 0, r.stderr
    history = json.loads(r.stdout)
    assert [(h["actor"], h["name"], h["old"], h["new"]) for h in history][0] == (
        ACTOR,
        "release_batch_size",
        70,
        200,
    )
    assert sorted((h["name"], json.dumps(h["old"]), json.dumps(h["new"])) for h in history[1:]) == [
        ("disabled_rules", "[]", json.dumps([RULE])),
        ("release_batch_size", "200", "70"),
    ]
    assert all(h["changed_at"] and h["actor"] == ACTOR for h in history)

    r = bear_cli("settings", "history", "release_batch_size", "--limit", "1", "--db", db)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2 and ACTOR in lines[1] and "70" in lines[1] and "200" in lines[1]
    r = bear_cli("settings", "history", "nope", "--db", db)
    assert r.returncode == 2 and r.stderr.startswith("error: unknown setting 'nope'")
    with bear.connect(db) as ws:
        rule = ws.team.changes("rule", RULE)
        assert list(rule.actor) == [ACTOR]
        assert json.loads(rule.new_value[0]) == {"enabled": False}
