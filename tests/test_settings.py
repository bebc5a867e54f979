"""Settings: defaults, validation of every setting, all-or-nothing updates, persistence, CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

import bear
from bear.config import SETTINGS
from bear.errors import BearError, SettingError

ROOT = Path(__file__).resolve().parents[1]

DESIGN_DEFAULTS = {
    "release_batch_size": 200,
    "validation_limit": 1_000_000,
    "release_failure_mode": "batch",
    "additional_notification_recipients": [],
    "max_lines_per_document": 500,
    "require_approval": True,
    "disabled_rules": [],
    "rule_timeout_s": 10,
}
DESIGN_NAMES = {
    *DESIGN_DEFAULTS,
    "base_url",
    "smtp_host",
    "smtp_port",
    "smtp_sender",
    "smtp_starttls",
    "smtp_username",
    "rules_file",
    "plugins_dir",
}


def test_every_design_setting_exists_with_its_default(ws):
    assert set(SETTINGS) >= DESIGN_NAMES
    values = ws.settings.as_dict()
    # BEAR's own (an installed plugin may add settings named "<plugin>.<setting>")
    assert {k for k in values if "." not in k} == set(SETTINGS)
    for name, default in DESIGN_DEFAULTS.items():
        assert values[name] == default, name
        assert getattr(ws.settings, name) == default
    for name, d in SETTINGS.items():
        assert values[name] == d.default, name
    assert values["base_url"].startswith("http")
    assert "password" not in " ".join(SETTINGS).lower()  # never stored


def test_describe_lists_every_setting(ws):
    rows = ws.settings.describe()
    assert [r["name"] for r in rows if r["plugin"] is None] == list(SETTINGS)
    for r in rows:
        assert r["allowed"] and r["help"]
        assert r["value"] == r["default"]


# (setting, bad value, text the message must name)
BAD = [
    ("release_batch_size", -1, "-1"),
    ("release_batch_size", 0, "0"),
    ("release_batch_size", 10**12, str(10**12)),
    ("release_batch_size", "abc", "abc"),
    ("release_batch_size", "12.5", "12.5"),
    ("release_batch_size", "", "''"),
    ("release_batch_size", 2.5, "2.5"),
    ("release_batch_size", True, "True"),
    ("release_batch_size", None, "None"),
    ("release_batch_size", [50], "[50]"),
    ("release_batch_size", float("nan"), "nan"),
    ("release_batch_size", float("inf"), "inf"),
    ("validation_limit", -5, "-5"),
    ("validation_limit", "lots", "lots"),
    ("validation_limit", False, "False"),
    ("validation_limit", 10**15, str(10**15)),
    ("max_lines_per_document", 0, "0"),
    ("max_lines_per_document", "1e3x", "1e3x"),
    ("smtp_port", 0, "0"),
    ("smtp_port", 70000, "70000"),
    ("smtp_port", "smtp", "smtp"),
    ("release_failure_mode", "everything", "everything"),
    ("release_failure_mode", "BATCH", "BATCH"),
    ("release_failure_mode", "", "''"),
    ("release_failure_mode", 1, "1"),
    ("require_approval", "maybe", "maybe"),
    ("require_approval", 2, "2"),
    ("require_approval", None, "None"),
    ("smtp_starttls", "perhaps", "perhaps"),
    ("additional_notification_recipients", "not-an-address", "not-an-address"),
    ("additional_notification_recipients", ["ana@example.com", "bob"], "bob"),
    ("additional_notification_recipients", "a@b.com\r\nBcc: x@y.com", "Bcc:"),
    ("additional_notification_recipients", ["a@b.com\r\nBcc: x@y.com"], "Bcc: x@y.com"),
    ("additional_notification_recipients", ["Ana <ana@example.com>"], "Ana <ana@example.com>"),
    ("additional_notification_recipients", ["ana@exa mple.com"], "ana@exa mple.com"),
    ("additional_notification_recipients", 42, "42"),
    ("additional_notification_recipients", [1, 2], "[1, 2]"),
    ("additional_notification_recipients", "[not json", "[not json"),
    ("smtp_sender", "nobody", "nobody"),
    ("smtp_sender", "a@b.com\r\nBcc: x@y.com", "Bcc: x@y.com"),
    ("disabled_rules", "Release.Not_Approved", "Release.Not_Approved"),
    ("disabled_rules", ["nodot"], "nodot"),
    ("disabled_rules", ["release.not approved"], "release.not"),
    ("disabled_rules", ["release.x; DROP TABLE settings"], "DROP TABLE settings"),
    ("base_url", "ftp://example.com", "ftp://example.com"),
    ("base_url", "not a url", "not a url"),
    ("base_url", "http://example.com/?next=evil", "next=evil"),
    ("base_url", "javascript:alert(1)", "javascript:alert(1)"),
    ("base_url", "http://a.com\r\nX-Evil: 1", "X-Evil"),
    ("base_url", 5006, "5006"),
    ("rule_timeout_s", float("nan"), "nan"),
    ("rule_timeout_s", "nan", "nan"),
    ("rule_timeout_s", float("inf"), "inf"),
    ("rule_timeout_s", -1, "-1"),
    ("rule_timeout_s", 0, "0"),
    ("rule_timeout_s", 10**9, str(10**9)),
    ("rule_timeout_s", "soon", "soon"),
    ("rule_timeout_s", True, "True"),
    ("smtp_host", "h" * 300, "hhhh"),
    ("smtp_host", "mail.example.com\r\nRCPT TO:<x@y.com>", "RCPT"),
    ("smtp_username", "user\nname", "user"),
    ("smtp_username", 7, "7"),
    ("rules_file", 42, "42"),
    ("rules_file", "rules\0.toml", "rules"),
    ("plugins_dir", ["a"], "['a']"),
]


@pytest.mark.parametrize(
    ("name", "value", "shown"), BAD, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(BAD)]
)
def test_bad_values_are_refused_naming_setting_value_and_rule(ws, name, value, shown):
    before = ws.settings.as_dict()
    with pytest.raises(SettingError) as info:
        ws.settings.update(**{name: value})
    err = info.value
    msg = str(err)
    assert err.name == name
    assert repr(name) in msg or name in msg
    assert shown in msg, msg
    assert SETTINGS[name].allowed() in msg, msg
    assert ws.settings.as_dict() == before
    assert ws.sql("SELECT count(*) AS n FROM settings")["n"][0] == 0


def test_int_messages_give_the_range(ws):
    with pytest.raises(SettingError) as info:
        ws.settings.update(release_batch_size=0)
    assert "≥ 1" in str(info.value) and "integer" in str(info.value)
    with pytest.raises(SettingError) as info:
        ws.settings.update(smtp_port=99999)
    assert "≤ 65535" in str(info.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("additional_notification_recipients", ["a@b.com\n"]),
        ("disabled_rules", ["release.not_approved\n"]),
    ],
)
def test_trailing_line_breaks_are_refused(ws, name, value):
    with pytest.raises(SettingError):
        ws.settings.update(**{name: value})


GOOD = [
    ("release_batch_size", "50", 50),
    ("release_batch_size", 1, 1),
    ("release_batch_size", 100_000, 100_000),
    ("release_batch_size", 300.0, 300),
    ("validation_limit", 0, 0),
    ("release_failure_mode", "isolate", "isolate"),
    ("require_approval", "false", False),
    ("require_approval", "yes", True),
    ("smtp_starttls", True, True),
    ("additional_notification_recipients", "a@b.com, c@d.org", ["a@b.com", "c@d.org"]),
    ("additional_notification_recipients", '["a@b.com"]', ["a@b.com"]),
    ("additional_notification_recipients", ["a@b.com", "a@b.com"], ["a@b.com"]),
    ("additional_notification_recipients", [], []),
    ("disabled_rules", "release.not_approved", ["release.not_approved"]),
    ("base_url", "https://bear.example.com/app/", "https://bear.example.com/app"),
    ("rule_timeout_s", "2.5", 2.5),
    ("rule_timeout_s", 1, 1.0),
    ("smtp_sender", "billing@example.com", "billing@example.com"),
    ("smtp_port", "587", 587),
]


@pytest.mark.parametrize(("name", "value", "stored"), GOOD)
def test_good_values_are_coerced(ws, name, value, stored):
    assert ws.settings.update(**{name: value}) == {name: stored}
    assert getattr(ws.settings, name) == stored
    assert type(getattr(ws.settings, name)) is type(stored)


def test_update_is_all_or_nothing(tmp_path):
    path = tmp_path / "s.duckdb"
    with bear.connect(path) as ws:
        before = ws.settings.as_dict()
        with pytest.raises(SettingError) as info:
            ws.settings.update(
                release_batch_size=50,
                release_failure_mode="isolate",
                additional_notification_recipients=["ok@example.com"],
                smtp_port=0,  # the one bad value
                base_url="https://good.example.com",
            )
        assert info.value.name == "smtp_port"
        assert ws.settings.as_dict() == before
        with pytest.raises(SettingError):
            ws.settings.update(release_batch_size=50, no_such_setting=1)
        assert ws.settings.as_dict() == before
        assert ws.sql("SELECT count(*) AS n FROM settings")["n"][0] == 0
    with bear.connect(path) as ws:
        assert ws.settings.as_dict() == before


def test_update_refused_by_a_validator_changes_nothing(ws):
    before = ws.settings.as_dict()

    def refuse(proposed, changed):
        assert proposed.release_batch_size == changed["release_batch_size"]
        if proposed.release_batch_size == 13:
            raise SettingError("unlucky", name="release_batch_size", value=13)

    ws.settings.add_validator(refuse)
    with pytest.raises(SettingError):
        ws.settings.update(release_batch_size=13, smtp_port=2525)
    assert ws.settings.as_dict() == before


def test_settings_persist_across_reopen(tmp_path):
    path = tmp_path / "p.duckdb"
    values = {
        "release_batch_size": 25,
        "validation_limit": 0,
        "release_failure_mode": "isolate",
        "additional_notification_recipients": ["a@example.com", "b@example.org"],
        "require_approval": False,
        "base_url": "https://bear.example.com",
        "smtp_host": "mail.example.com",
        "smtp_port": 2525,
        "smtp_starttls": True,
        "rule_timeout_s": 0.5,
        "disabled_rules": ["release.not_approved"],
    }
    with bear.connect(path) as ws:
        ws.settings.update(**values)
        ws.settings.max_lines_per_document = 42  # attribute assignment is a validated update
    with bear.connect(path) as ws:
        got = ws.settings.as_dict()
        for k, v in values.items():
            assert got[k] == v, k
            assert type(got[k]) is type(v), k
        assert got["max_lines_per_document"] == 42


def test_unknown_setting_is_refused(ws):
    with pytest.raises(SettingError) as info:
        ws.settings.update(release_batch_sise=10)
    assert "release_batch_sise" in str(info.value)
    assert "release_batch_size" in str(info.value)  # lists the known ones
    with pytest.raises(SettingError):
        ws.settings.no_such_thing = 1
    with pytest.raises(AttributeError, match="no_such_thing"):
        _ = ws.settings.no_such_thing


def test_listeners_hear_only_changes(ws):
    heard = []
    ws.settings.add_listener(heard.append)
    ws.settings.update(release_batch_size=200, smtp_port=2525)
    assert heard == [{"smtp_port": 2525}]


def test_float_nan_detected():
    assert math.isnan(float("nan"))  # guard: the NaN cases above really are NaN
    with pytest.raises(SettingError):
        SETTINGS["rule_timeout_s"].coerce(float("nan"))


# -- CLI -------------------------------------------------------------------------------------
def bear_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bear.cli", *args],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        env=env,
        timeout=120,
    )


def test_cli_settings_list_get_set(tmp_path):
    db = str(tmp_path / "cli.duckdb")
    r = bear_cli("settings", "list", "--json", "--db", db)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [x["name"] for x in rows if x["plugin"] is None] == list(SETTINGS)

    r = bear_cli(
        "settings", "set", "release_batch_size=50", "release_failure_mode=isolate", "--db", db
    )
    assert r.returncode == 0, r.stderr
    assert "release_batch_size = 50" in r.stdout
    r = bear_cli("settings", "get", "release_batch_size", "--db", db)
    assert r.returncode == 0 and r.stdout.strip() == "50"
    with bear.connect(db, resume=False) as ws:
        assert ws.settings.release_failure_mode == "isolate"


@pytest.mark.parametrize(
    ("pairs", "words"),
    [
        (["release_batch_size=abc"], ["release_batch_size", "abc", "integer"]),
        (["release_batch_size=10", "smtp_port=0"], ["smtp_port", "65535"]),
        (["nosuch=1"], ["nosuch"]),
        (["release_batch_size"], ["NAME=VALUE"]),
        (
            ["additional_notification_recipients=a@b.com\r\nBcc: x@y.com"],
            ["additional_notification_recipients"],
        ),
    ],
)
def test_cli_settings_set_bad_input(tmp_path, pairs, words):
    db = str(tmp_path / "bad.duckdb")
    with bear.connect(db, resume=False) as ws:
        ws.settings.update(release_batch_size=50)
    r = bear_cli("settings", "set", *pairs, "--db", db)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    with bear.connect(db, resume=False) as ws:
        assert ws.settings.release_batch_size == 50
        assert ws.settings.smtp_port == 25
        assert ws.settings.additional_notification_recipients == []


def test_cli_settings_get_unknown_name(tmp_path):
    r = bear_cli("settings", "get", "nosuch", "--db", str(tmp_path / "g.duckdb"))
    assert r.returncode == 2
    assert r.stderr.startswith("error: ") and "nosuch" in r.stderr
    assert "Traceback" not in r.stderr


def test_setting_error_is_a_bear_error():
    assert issubclass(SettingError, BearError)


def test_the_snapshot_has_one_typed_field_per_setting(ws):
    import dataclasses
    from dataclasses import fields

    from bear.config import SETTINGS, SettingsSnapshot

    snap = ws.settings.snapshot()
    assert isinstance(snap, SettingsSnapshot)
    # one field per setting, then the plugins' settings as (name, value) pairs
    assert [f.name for f in fields(SettingsSnapshot)] == [*SETTINGS, "plugin_values"]
    for d in SETTINGS.values():  # the dataclass defaults are the declared defaults
        default = getattr(SettingsSnapshot(), d.name)
        assert (list(default) if isinstance(default, tuple) else default) == d.default, d.name
    ws.settings.update(release_batch_size=77, disabled_rules=["release.not_approved"])
    snap2 = ws.settings.snapshot()
    assert snap2.release_batch_size == 77 and snap2.disabled_rules == ("release.not_approved",)
    assert snap.release_batch_size == 200  # a snapshot never changes under its holder
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap2.release_batch_size = 1


def test_a_stored_snapshot_reloads_typed_and_fills_what_it_lacks(ws):
    from bear.config import SettingsSnapshot

    current = ws.settings.snapshot()
    got = SettingsSnapshot.from_json(
        '{"release_batch_size": "50", "validation_limit": -3, "no_such": 1}', current
    )
    assert got.release_batch_size == 50  # coerced to its type
    assert got.validation_limit == current.validation_limit  # no longer valid: today's value
    assert got.rule_timeout_s == current.rule_timeout_s  # missing: today's value
    assert SettingsSnapshot.from_json("not json", current) == current


def test_which_settings_affect_rules_is_declared_once():
    from bear.config import RULE_SETTINGS

    assert {
        "max_lines_per_document",
        "require_approval",
        "disabled_rules",
        "rules_file",
        "plugins_dir",
    } == RULE_SETTINGS
