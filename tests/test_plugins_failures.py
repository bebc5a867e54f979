"""An installed (entry-point) plugin that fails — to import, to declare its settings, or to
register its rules — is named with its entry point, distribution and version, its error in
one line and the way out (``BEAR_DISABLE_PLUGINS=<name>``); BEAR still opens, the other
plugins load, and while the broken plugin may hold rules every event is held back (it fails
closed). In the CLI every command still works, with one warning line, never a traceback."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
from netutil import bear_cli

import bear
from bear.errors import PluginError
from bear.testing import make_workspace

ROOT = Path(__file__).resolve().parents[1]
THREE = [{"id": 1}, {"id": 2}, {"id": 3, "summary_amount": "900.00"}]

HEALTHY = """
    import bear

    @bear.hookimpl
    def bear_register_rules(settings):
        return [bear.SqlRule(id="healthy.big", stage="release", fail_when="summary_amount > 500",
                             message="healthy says {event_name} is big")]
"""
BROKEN_IMPORT = "raise ImportError('missing dependency frobnicate')\n"
BROKEN_RULES = """
    import bear

    @bear.hookimpl
    def bear_register_rules(settings):
        raise RuntimeError("cannot reach the rules service\\nsecond line")
"""
BAD_DECLARATION = """
    import bear

    @bear.hookimpl
    def bear_register_settings():
        return [bear.PluginSetting("limit", "int", 50, "A limit.", maximum=10)]

    @bear.hookimpl
    def bear_register_rules(settings):
        return []
"""
NOTIFIER_BAD_DECLARATION = """
    import bear

    @bear.hookimpl
    def bear_register_settings():
        return [bear.PluginSetting("channel", "color", "red", "Which channel.")]

    @bear.hookimpl
    def bear_release_finished(summary):
        pass
"""
REFUSES_A_VALUE = """
    import bear

    @bear.hookimpl
    def bear_register_settings():
        return [bear.PluginSetting("limit", "int", 500, "Events above it are flagged.")]

    @bear.hookimpl
    def bear_register_rules(settings):
        limit = settings["picky.limit"]
        if limit == 13:
            raise ValueError("13 is unlucky")
        return [bear.SqlRule(id="picky.big", stage="release",
                             fail_when=f"summary_amount > {limit}", message="picky")]
"""


def install(site: Path, entry: str, body: str, dist: str | None = None) -> None:
    """A distribution ``dist`` (1.2.3) on ``site`` whose entry point ``entry`` (group
    ``bear``) is a module of ``body``."""
    dist = dist or f"bear-{entry}-plugin"
    module = dist.replace("-", "_")
    info = site / f"{module}-1.2.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[bear]\n{entry} = {module}\n")
    (site / f"{module}.py").write_text(textwrap.dedent(body))


@pytest.fixture
def site(tmp_path, monkeypatch) -> Path:
    """A folder of installed distributions, on the path of this process and its children."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    paths = [str(folder), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    monkeypatch.delenv("BEAR_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("BEAR_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("BEAR_PLUGINS_DIR", raising=False)
    # modules of distributions earlier tests installed (bear_*_plugin here, fake_bear_plugin
    # in test_rules_engine) would otherwise be reused instead of imported from this site
    for name in [
        m for m in sys.modules if m.endswith("_plugin") and m.startswith(("bear_", "fake_"))
    ]:
        monkeypatch.delitem(sys.modules, name)
    return folder


def held_back(ws: bear.Workspace) -> dict[int, str]:
    v = ws.preview([1, 2, 3], action="release").violations
    rows = v[v.rule_id == "release.plugin_failed"]
    return dict(zip(rows.billing_event_id, rows.message, strict=True))


def test_an_entry_point_that_fails_to_import_is_named_and_holds_every_event_back(site, monkeypatch):
    install(site, "fake", BROKEN_IMPORT, dist="fake-bear-plugin")
    install(site, "healthy", HEALTHY)
    with make_workspace(THREE, autoload=True) as ws:
        plugins = ws.plugin_list().set_index("name")
        assert plugins.loc["fake", "status"] == "failed"
        assert plugins.loc["fake", "version"] == "1.2.3"
        assert plugins.loc["fake", "source"] == "entry point (fake-bear-plugin 1.2.3)"
        error = plugins.loc["fake", "error"]
        assert error.startswith(
            "plugin 'fake' (entry point of fake-bear-plugin 1.2.3) failed to load: "
            "ImportError: missing dependency frobnicate."
        )
        assert "BEAR_DISABLE_PLUGINS=fake" in error
        assert plugins.loc["healthy", "status"] == "ok"  # the others still load
        assert "healthy.big" in set(ws.rules().id)
        assert [f.plugin for f in ws.plugins.failures()] == ["fake"]
        messages = held_back(ws)
        assert sorted(messages) == [1, 2, 3]
        assert messages[1] == (
            "plugin 'fake' (entry point of fake-bear-plugin 1.2.3) failed to load: ImportError: "
            "missing dependency frobnicate, so its rules could not judge this event; fix or "
            "update the plugin, or set BEAR_DISABLE_PLUGINS=fake to work without it (plugin "
            "names separated by commas)"
        )
        assert ws.preview([1, 2, 3], action="release").eligible_ids == []
        rules = ws.rules().set_index("id")
        assert rules.loc["release.plugin_failed", "plugin"] == "fake"
        assert rules.loc["invoice.plugin_failed", "stage"] == "invoice"
        # turning the rule off is not the way out; disabling the plugin is
        ws.settings.update(disabled_rules=["release.plugin_failed"])
        assert sorted(held_back(ws)) == [1, 2, 3]
        assert ws.eligibility().billing_event_id.tolist() == [1, 2, 3]
    monkeypatch.setenv("BEAR_DISABLE_PLUGINS", "fake")
    with make_workspace(THREE, autoload=True) as ws:
        assert held_back(ws) == {} and not ws.plugins.failures()
        assert ws.preview([1, 2, 3], action="release").eligible_ids == [1, 2]


def test_a_plugin_raising_in_bear_register_rules_is_reported_failed(site):
    install(site, "flaky", BROKEN_RULES)
    with make_workspace(THREE, autoload=True) as ws:
        plugins = ws.plugin_list().set_index("name")
        assert plugins.loc["flaky", "status"] == "failed"
        assert plugins.loc["flaky", "error"].startswith(
            "plugin 'flaky' (entry point of bear-flaky-plugin 1.2.3) failed in "
            "bear_register_rules: RuntimeError: cannot reach the rules service."  # line 1 only
        )
        assert sorted(held_back(ws)) == [1, 2, 3]
        # a change of a rule setting that does not concern it is still accepted
        ws.settings.update(max_lines_per_document=7)
        assert ws.settings.max_lines_per_document == 7


def test_a_bad_settings_declaration_of_an_installed_plugin_is_reported_and_bear_opens(
    site, tmp_path
):
    install(site, "acme", BAD_DECLARATION)
    install(site, "chat", NOTIFIER_BAD_DECLARATION)
    with make_workspace(THREE, autoload=True) as ws:
        plugins = ws.plugin_list().set_index("name")
        assert plugins.loc["acme", "error"].startswith(
            "plugin 'acme' (entry point of bear-acme-plugin 1.2.3) failed in "
            "bear_register_settings: setting 'limit' has the default 50, which it does not allow "
            "(expected an integer ≤ 10)."
        )
        assert "type 'color'" in plugins.loc["chat", "error"]
        # acme may hold rules: events are held back; chat only notifies: nothing is held back
        v = ws.preview([1], action="release").violations
        assert v[v.rule_id == "release.plugin_failed"].message.iloc[0].startswith("plugin 'acme' ")
        assert "chat" not in v.message.iloc[0]
        assert "Until then every event is held back" in plugins.loc["acme", "error"]
        assert "To go on: fix or update" in plugins.loc["chat", "error"]
        with pytest.raises(bear.BearError, match="which is not loaded: plugin 'acme' .* failed"):
            ws.settings.update(**{"acme.limit": 5})


def test_a_working_plugin_refusing_a_value_of_its_setting_refuses_the_change(site):
    install(site, "picky", REFUSES_A_VALUE)
    with make_workspace(THREE, autoload=True) as ws:
        with pytest.raises(PluginError, match="plugin 'picky'.*ValueError: 13 is unlucky"):
            ws.settings.update(**{"picky.limit": 13})
        assert ws.settings["picky.limit"] == 500 and not ws.plugins.failures()
        ws.settings.update(**{"picky.limit": 1000})
        assert "picky.big" not in set(ws.preview([1, 2, 3], action="release").violations.rule_id)


def test_a_plugin_passed_to_connect_that_fails_still_stops_the_book_naming_it():
    class Broken:
        __name__ = "broken"

        @bear.hookimpl
        def bear_register_rules(self, settings):
            raise RuntimeError("boom")

    with pytest.raises(PluginError, match="plugin 'broken' failed to register its rules"):
        bear.connect(":memory:", plugins=[Broken()])


# -- the CLI -----------------------------------------------------------------------------------
@pytest.fixture
def book(tmp_path) -> Path:
    path = tmp_path / "book.duckdb"
    make_workspace(THREE, path=path).close()
    return path


def test_every_command_works_with_a_broken_plugin_and_warns_once(site, book):
    install(site, "fake", BROKEN_IMPORT, dist="fake-bear-plugin")
    warning = (
        "warning: plugin 'fake' (entry point of fake-bear-plugin 1.2.3) failed to load: "
        "ImportError: missing dependency frobnicate. Until then every event is held back (its "
        "rules cannot judge them): fix or update the plugin, or set BEAR_DISABLE_PLUGINS=fake "
        "to work without it (plugin names separated by commas)."
    )
    for args in (
        ["plugins"],
        ["events"],
        ["settings", "list"],
        ["preview", "--reasons"],
        ["plugins", "--json"],
    ):
        r = bear_cli(*args, "--db", str(book))
        assert r.returncode == 0, (args, r.stderr)
        assert r.stderr.splitlines() == [warning], args
    r = bear_cli("plugins", "--db", str(book))
    assert "failed: plugin 'fake'" in r.stdout
    data = json.loads(bear_cli("plugins", "--json", "--db", str(book)).stdout)
    fake = next(p for p in data["plugins"] if p["name"] == "fake")
    assert (fake["status"], fake["version"]) == ("failed", "1.2.3")
    r = bear_cli("preview", "--reasons", "--db", str(book))
    assert "release.plugin_failed (block): plugin 'fake'" in r.stdout
    r = bear_cli("plugins", "--db", str(book), BEAR_DISABLE_PLUGINS="fake")
    assert r.returncode == 0 and r.stderr == "" and "fake" not in r.stdout
