"""Plugins' own settings (hook ``bear_register_settings``): declared with ``bear.PluginSetting``,
named ``<plugin>.<setting>``, validated, stored, recorded and reset like BEAR's own, read by the
plugin's rules as ``settings["<plugin>.<setting>"]``, and a change rebuilds the rules and drops
cached eligibility. A setting of a plugin that is not loaded keeps its stored value and says
so; a bad declaration names the plugin; safe mode still opens; the dashboard shows them."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import bear
from bear.config import SettingsSnapshot
from bear.errors import PluginError, SettingError
from bear.testing import make_workspace

ROOT = Path(__file__).resolve().parents[1]
EVENTS = [{"id": 1, "summary_amount": "100.00"}, {"id": 2, "summary_amount": "400.00"}]


@pytest.fixture(autouse=True)
def _no_entry_points(monkeypatch):
    """Only the plugins a test names (an installed example plugin would add its own)."""
    monkeypatch.setenv("BEAR_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.delenv("BEAR_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("BEAR_PLUGINS_DIR", raising=False)


class Acme:
    """A plugin with two settings: a money limit its rule reads, and a note no rule reads."""

    def __init__(
        self, declarations: Any = None, refuse: Decimal | None = None, name: str = "acme"
    ) -> None:
        self.name = name  # the name it is passed under: its settings' and rules' namespace
        self.declarations = declarations
        self.refuse = refuse  # a limit its rules refuse to register with
        self.registered = 0

    @bear.hookimpl
    def bear_register_settings(self) -> Any:
        if self.declarations is not None:
            return self.declarations
        return [
            bear.PluginSetting(
                "limit", "decimal", Decimal("300"), "Events above this need review.", minimum=0
            ),
            bear.PluginSetting(
                "note", "str", "", "A note for the e-mails.", maximum=40, affects_rules=False
            ),
        ]

    @bear.hookimpl
    def bear_register_rules(self, settings: Any) -> list[Any]:
        self.registered += 1
        limit = settings[f"{self.name}.limit"]
        if limit == self.refuse:
            raise ValueError(f"a limit of {limit} is reserved")
        return [
            bear.SqlRule(
                id=f"{self.name}.above_limit",
                stage="release",
                fail_when=f"summary_amount > {limit:f}",
                message=f"{{event_name}} is above {limit}",
                description=f"Events above {limit} need review.",
            )
        ]


def blocked(ws: bear.Workspace) -> list[int]:
    v = ws.preview([1, 2], action="release").violations
    return sorted(v[v.rule_id == "acme.above_limit"].billing_event_id)


# -- declaring, reading, writing ---------------------------------------------------------------
def test_a_plugin_declares_settings_its_rules_read():
    acme = Acme()
    with make_workspace(EVENTS, plugins={"acme": acme}) as ws:
        rows = {r["name"]: r for r in ws.settings.describe()}
        limit = rows["acme.limit"]
        assert (limit["plugin"], limit["kind"], limit["value"], limit["default"]) == (
            "acme",
            "decimal",
            Decimal("300"),
            Decimal("300"),
        )
        assert limit["allowed"] == "a decimal number (at most 6 decimals) ≥ 0"
        assert limit["affects_rules"] and not rows["acme.note"]["affects_rules"]
        assert rows["release_batch_size"]["plugin"] is None
        assert list(rows).index("acme.limit") > list(rows).index("rule_timeout_s")  # BEAR's first
        assert ws.settings["acme.limit"] == Decimal("300")
        assert ws.settings.snapshot()["acme.limit"] == Decimal("300")
        assert blocked(ws) == [2]

        ws.settings.update_by("ana", **{"acme.limit": "50.25"})
        assert ws.settings["acme.limit"] == Decimal("50.25")
        assert ws.rules().set_index("id").loc["acme.above_limit", "description"] == (
            "Events above 50.25 need review."
        )
        assert blocked(ws) == [1, 2]
        history = ws.settings.history("acme.limit")
        assert history[["actor", "name", "old", "new"]].values.tolist() == [
            ["ana", "acme.limit", "300", "50.25"]
        ]
        ws.settings.reset("acme.limit", actor="bob")
        assert ws.settings["acme.limit"] == Decimal("300") and blocked(ws) == [2]
        assert ws.settings.history(limit=1).actor.tolist() == ["bob"]


def test_a_change_drops_cached_eligibility_and_only_rule_settings_rebuild_the_rules():
    acme = Acme()
    with make_workspace(EVENTS, plugins={"acme": acme}) as ws:
        assert ws.eligibility().billing_event_id.tolist() == [2]
        assert ws.eligibility_ready()
        calls = acme.registered
        ws.settings.update(**{"acme.note": "hello"})  # no rule reads it
        assert acme.registered == calls
        ws.settings.update(**{"acme.limit": 10})
        assert acme.registered > calls
        assert not ws.eligibility_ready()  # the cached verdicts were dropped
        assert ws.eligibility().billing_event_id.tolist() == [1, 2]
        assert ws.awaiting_release(eligibility="acme.above_limit").ids() == [1, 2]


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("-1", ["'acme.limit'", "-1", "≥ 0"]),
        ("ten", ["'acme.limit'", "'ten'", "a decimal number"]),
        ("1.0000001", ["'acme.limit'", "at most 6 decimals"]),
        ("NaN", ["'acme.limit'"]),
        (True, ["'acme.limit'"]),
    ],
)
def test_bad_values_are_refused_naming_the_setting_and_what_it_allows(value, words):
    with make_workspace(EVENTS, plugins={"acme": Acme()}) as ws:
        with pytest.raises(SettingError) as e:
            ws.settings.update(**{"acme.limit": value})
        for w in words:
            assert w in str(e.value)
        assert ws.settings["acme.limit"] == Decimal("300")
        assert ws.settings.history().empty


def test_a_value_the_plugins_rules_refuse_is_not_saved():
    with make_workspace(EVENTS, plugins={"acme": Acme(refuse=Decimal("13"))}) as ws:
        with pytest.raises(PluginError, match=r"plugin 'acme'.*ValueError: a limit of 13"):
            ws.settings.update(**{"acme.limit": 13})
        assert ws.settings["acme.limit"] == Decimal("300") and blocked(ws) == [2]


def test_unknown_names_are_explained():
    with make_workspace(EVENTS, plugins={"acme": Acme()}) as ws:
        with pytest.raises(SettingError, match="plugin 'acme' has no setting 'limt'"):
            ws.settings.update(**{"acme.limt": 1})
        with pytest.raises(SettingError, match="belongs to plugin 'other', which is not loaded"):
            ws.settings.update(**{"other.limit": 1})
        snap = ws.settings.snapshot()
        with pytest.raises(SettingError, match="unknown setting 'acme.nope'"):
            snap["acme.nope"]
        assert snap.get("acme.nope", 7) == 7
        assert snap["release_batch_size"] == 200


def test_make_workspace_sets_a_plugins_setting():
    with make_workspace(EVENTS, plugins={"acme": Acme()}, settings={"acme.limit": "150"}) as ws:
        assert ws.settings["acme.limit"] == Decimal("150") and blocked(ws) == [2]


def test_a_run_keeps_plugin_values_in_its_snapshot_as_text():
    snap = SettingsSnapshot.of({"release_batch_size": 5, "acme.limit": Decimal("2.50")})
    assert '"acme.limit": "2.50"' in snap.to_json()
    assert SettingsSnapshot.from_json(snap.to_json(), snap) == snap


# -- a plugin that is not loaded ---------------------------------------------------------------
def test_the_value_of_a_plugin_not_loaded_is_kept_and_said_so(tmp_path, monkeypatch):
    path = tmp_path / "book.duckdb"
    with make_workspace(EVENTS, plugins={"acme": Acme()}, path=path) as ws:
        ws.settings.update(**{"acme.limit": "120"})
    with bear.connect(path) as ws:
        assert "BEAR_DISABLE_PLUGIN_AUTOLOAD is set" in ws.settings.unloaded()[0]["note"]
    monkeypatch.delenv("BEAR_DISABLE_PLUGIN_AUTOLOAD")
    with bear.connect(path) as ws:  # the plugin is gone: the book opens all the same
        assert "acme.limit" not in {r["name"] for r in ws.settings.describe()}
        assert ws.settings.unloaded() == [
            {
                "name": "acme.limit",
                "value": "120",
                "plugin": "acme",
                "note": "plugin 'acme' is not loaded: it is not installed, or not enabled",
            }
        ]
        with pytest.raises(SettingError) as e:
            ws.settings.update(**{"acme.limit": "5"})
        assert str(e.value) == (
            "setting 'acme.limit' belongs to plugin 'acme', which is not loaded: it is not "
            'installed, or not enabled; the stored value "120" is kept, and applies again once '
            "the plugin is loaded"
        )
        with pytest.raises(SettingError, match="not loaded"):
            ws.settings.reset("acme.limit")
        assert len(ws.settings.history("acme.limit")) == 1  # its history stays readable
    with bear.connect(path, plugins={"acme": Acme()}) as ws:
        assert ws.settings["acme.limit"] == Decimal("120")


def test_a_stored_value_the_plugin_no_longer_allows_falls_back_to_the_default(tmp_path, caplog):
    path = tmp_path / "book.duckdb"
    with make_workspace(EVENTS, plugins={"acme": Acme()}, path=path) as ws:
        ws.settings.update(**{"acme.limit": "5"})
    narrower = Acme(
        [bear.PluginSetting("limit", "decimal", Decimal("300"), "Events above it.", minimum=100)]
    )
    with (
        caplog.at_level(logging.WARNING, logger="bear.config"),
        bear.connect(path, plugins={"acme": narrower}) as ws,
    ):
        assert ws.settings["acme.limit"] == Decimal("300")
    assert "'acme.limit': the stored value '5' is not allowed" in caplog.text


def test_safe_mode_opens_a_book_with_plugin_settings(tmp_path):
    path = tmp_path / "book.duckdb"
    with make_workspace(EVENTS, plugins={"acme": Acme()}, path=path) as ws:
        ws.settings.update(**{"acme.limit": "120"})
    with bear.connect(path, safe_mode=True) as ws:
        note = ws.settings.unloaded()[0]["note"]
        assert "safe mode" in note
    env = {k: v for k, v in os.environ.items() if k != "BEAR_DB"}
    r = subprocess.run(
        [sys.executable, "-m", "bear.cli", "--safe-mode", "settings", "list", "--db", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    assert "Stored for plugins that are not loaded" in r.stdout
    assert 'acme.limit = "120"' in r.stdout and "safe mode" in r.stdout


# -- bad declarations ------------------------------------------------------------------------
def decl(**kw: Any) -> bear.PluginSetting:
    base: dict[str, Any] = {"name": "limit", "kind": "int", "default": 5, "help": "A limit."}
    return bear.PluginSetting(**{**base, **kw})


@pytest.mark.parametrize(
    ("declarations", "words"),
    [
        ([decl(kind="money")], ["plugin 'acme'", "'limit'", "type 'money'", "decimal"]),
        ([decl(default=50, maximum=10)], ["plugin 'acme'", "default 50", "≤ 10"]),
        ([decl(kind="choice", default="a")], ["plugin 'acme'", "give its choices"]),
        ([decl(), decl()], ["plugin 'acme'", "'acme.limit' twice"]),
        ([decl(name="Bad Name")], ["plugin 'acme'", "'Bad Name'"]),
        ([decl(help="")], ["plugin 'acme'", "help"]),
        ([decl(minimum=5, maximum=1)], ["plugin 'acme'", "minimum 5 is above maximum 1"]),
        (["limit"], ["plugin 'acme'", "bear.PluginSetting"]),
        (decl(), ["plugin 'acme'", "a list of bear.PluginSetting"]),
    ],
)
def test_a_bad_declaration_names_the_plugin(declarations, words):
    with pytest.raises(PluginError) as e:
        bear.connect(":memory:", plugins={"acme": Acme(declarations)})
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_two_plugins_declaring_the_same_name_each_get_their_own():
    with make_workspace(EVENTS, plugins={"acme": Acme(), "zeta": Acme(name="zeta")}) as ws:
        names = [r["name"] for r in ws.settings.describe() if r["plugin"]]
        assert names == ["acme.limit", "acme.note", "zeta.limit", "zeta.note"]
        ws.settings.update(**{"zeta.limit": 1})
        assert ws.settings["acme.limit"] == Decimal("300") and blocked(ws) == [2]


def test_a_plugins_name_must_fit_a_settings_name():
    with pytest.raises(PluginError, match="cannot begin a setting's name"):
        bear.connect(":memory:", plugins={"my plugin": Acme()})


def test_a_plugin_name_given_twice_is_refused():
    with pytest.raises(PluginError, match="'email' is taken"):
        bear.connect(":memory:", plugins={"email": Acme()})


# -- the dashboard -----------------------------------------------------------------------------
def test_the_dashboard_shows_and_saves_a_plugins_settings():
    from bear.ui.state import SettingsState
    from bear.ui.views.settings import SettingsView

    with make_workspace(EVENTS, plugins={"acme": Acme()}) as ws:
        state = SettingsState(ws, env={}, user="ana")
        groups = dict(state.groups())
        assert [i["name"] for i in groups["acme"]] == ["acme.limit", "acme.note"]
        assert "release_batch_size" in [i["name"] for i in groups[None]]
        assert state.label(groups["acme"][0]) == "Limit"
        assert state.value_text("acme.limit") == "300"
        ok, msg = state.save("acme.limit", "-3")
        assert not ok and "'acme.limit'" in msg and "≥ 0" in msg
        ok, msg = state.save("acme.limit", "75.5")
        assert (ok, msg) == (True, "saved: 75.5")
        assert ws.settings["acme.limit"] == Decimal("75.5")
        rules = state.rules.set_index("id")  # rebuilt: the rules list shows the new limit
        assert rules.loc["acme.above_limit", "description"] == "Events above 75.5 need review."
        assert state.history_frame().iloc[0].tolist()[1:] == ["ana", "acme.limit", "300 → 75.5"]
        view = SettingsView(state)
        field = view.fields["acme.limit"]
        assert field.css_classes == ["bear-setting-acme-limit"] and field.value == "75.5"
        assert field.name == "Limit"
        field.value = "80"  # typing in the field saves it
        assert ws.settings["acme.limit"] == Decimal("80")
