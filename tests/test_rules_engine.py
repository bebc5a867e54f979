"""The rule engine and the plugin host: start-up checks, fail-closed rules, plugin sources and
switches, ``ws.rules()``, the preview (writes nothing, validation limit, blast radius, expected
documents), notifier hooks, and the CLI's ``bear plugins`` / ``bear preview --json``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

import bear
from bear.errors import BearError, PluginError
from bear.models import RunSummary
from bear.testing import make_workspace

BUILTIN_PLUGINS = {
    "builtin_release",
    "builtin_invoice",
    "builtin_revert",
    "rules_file",
    "in_app",
    "email",
    "log",
}


@pytest.fixture(autouse=True)
def _no_entry_points(monkeypatch):
    """Keep plugins installed in the environment out, unless a test asks for them."""
    monkeypatch.setenv("BEAR_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.delenv("BEAR_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("BEAR_PLUGINS_DIR", raising=False)


class RulesPlugin:
    """A plugin object (named ``name``) whose ``bear_register_rules`` returns ``rules``."""

    def __init__(self, name: str, *rules: Any) -> None:
        self.__name__ = name
        self.rules = rules

    @bear.hookimpl
    def bear_register_rules(self, settings: Any) -> list[Any]:
        return list(self.rules)


class PyRule:
    """A Python rule whose ``evaluate`` is the function given."""

    def __init__(self, rid: str, fn: Any, stage: str = "release", severity: str = "block") -> None:
        self.id = rid
        self.stage = stage
        self.severity = severity
        self.description = f"test rule {rid}"
        self.fn = fn

    def evaluate(self, batch: Any) -> Any:
        return self.fn(batch)


def big_events(batch: Any) -> Any:
    """A well-behaved vectorized rule: events above 500."""
    return batch.sql(
        "SELECT billing_event_id, 'big: ' || summary_amount AS message FROM batch "
        "WHERE summary_amount > 500"
    )


THREE = [{"id": 1}, {"id": 2, "approved": False}, {"id": 3, "summary_amount": "900.00"}]


def violations(ws: bear.Workspace, ids: list[int] | None = None, action: str = "release") -> Any:
    pv = ws.preview(ids or [1, 2, 3], action=action)
    return pv.violations


def by_rule(v: pd.DataFrame, rule_id: str) -> dict[int, str]:
    rows = v[v.rule_id == rule_id]
    return dict(zip(rows.billing_event_id, rows.message, strict=True))


# -- start-up checks ------------------------------------------------------------------------
def test_duplicate_rule_ids_across_two_plugins_fail_at_start_up_naming_both():
    rule = bear.SqlRule(id="acme.same", stage="release", fail_when="false", message="x")
    with pytest.raises(PluginError) as e:
        bear.connect(":memory:", plugins=[RulesPlugin("acme", rule), RulesPlugin("globex", rule)])
    msg = str(e.value)
    assert "'acme.same'" in msg and "'acme'" in msg and "'globex'" in msg


def test_duplicate_of_a_built_in_rule_id_fails():
    rule = bear.SqlRule(id="release.not_approved", stage="release", fail_when="false")
    with pytest.raises(PluginError, match="registered twice.*builtin_release.*acme"):
        bear.connect(":memory:", plugins=[RulesPlugin("acme", rule)])


@pytest.mark.parametrize("namespace", ["release", "invoice"])
def test_third_party_rule_in_reserved_namespace_fails(namespace):
    rule = bear.SqlRule(id=f"{namespace}.mine", stage=namespace, fail_when="false")
    with pytest.raises(PluginError) as e:
        bear.connect(":memory:", plugins=[RulesPlugin("acme", rule)])
    msg = str(e.value)
    assert f"'{namespace}.mine'" in msg and "'acme'" in msg and "namespace" in msg


class _Bare:
    id = "acme.bare"
    stage = "release"
    severity = "block"
    description = "has no evaluate"


class _NoDescription:
    id = "acme.nodesc"
    stage = "release"
    severity = "block"

    def evaluate(self, batch: Any) -> Any:
        return None


@pytest.mark.parametrize(
    ("rule", "words"),
    [
        (bear.SqlRule(id="NoDot", stage="release", fail_when="false"), "'NoDot' must look like"),
        (bear.SqlRule(id="acme.", stage="release", fail_when="false"), "must look like"),
        (bear.SqlRule(id="Acme.rule", stage="release", fail_when="false"), "must look like"),
        (bear.SqlRule(id="acme.a-b", stage="release", fail_when="false"), "must look like"),
        (bear.SqlRule(id="acme.x", stage="deploy", fail_when="false"), "stage 'deploy'"),
        (
            bear.SqlRule(id="acme.x", stage="release", severity="fatal", fail_when="false"),
            "severity 'fatal'",
        ),
        (_Bare(), "neither a SqlRule nor has evaluate"),
        (_NoDescription(), "lacks description"),
        (
            bear.SqlRule(id="acme.typo", stage="release", fail_when="summary_amout > 0"),
            "'acme.typo' of plugin 'acme' is invalid SQL",
        ),
        (
            bear.SqlRule(id="acme.msg", stage="release", fail_when="true", message="{nope}"),
            "'acme.msg' of plugin 'acme' is invalid SQL",
        ),
        (
            bear.SqlRule(id="acme.fmt", stage="release", fail_when="true", message="{x:.2f}"),
            "must name one batch column",
        ),
    ],
)
def test_bad_rule_definitions_fail_at_start_up(rule, words):
    with pytest.raises(PluginError, match=words.replace("(", r"\(")):
        bear.connect(":memory:", plugins=[RulesPlugin("acme", rule)])


def test_an_aggregate_sql_rule_fails_at_start_up():
    rule = bear.SqlRule(id="acme.agg", stage="release", fail_when="count(*) > 0", message="x")
    with pytest.raises(PluginError, match="acme.agg"):
        bear.connect(":memory:", plugins=[RulesPlugin("acme", rule)]).close()


def test_a_register_hook_that_raises_fails_at_start_up():
    class Broken:
        __name__ = "broken"

        @bear.hookimpl
        def bear_register_rules(self, settings: Any) -> list[Any]:
            raise KeyError("no config")

    with pytest.raises(PluginError, match="plugin 'broken' failed to register its rules"):
        bear.connect(":memory:", plugins=[Broken()])


def test_unknown_hook_name_fails_at_start_up():
    class Typo:
        __name__ = "typo"

        @bear.hookimpl
        def bear_register_rulez(self, settings: Any) -> list[Any]:
            return []

    with pytest.raises(PluginError, match="unknown hook") as e:
        bear.connect(":memory:", plugins=[Typo()])
    assert "bear_register_rulez" in str(e.value)


def test_a_class_instead_of_an_instance_is_refused():
    with pytest.raises(PluginError, match="is a class"):
        bear.connect(":memory:", plugins=[RulesPlugin])


# -- fail closed ----------------------------------------------------------------------------
def _raises(batch: Any) -> Any:
    raise RuntimeError("boom in rule code")


@pytest.mark.parametrize(
    ("fn", "words"),
    [
        (_raises, "RuntimeError: boom in rule code"),
        (lambda b: "not a table", "returned str"),
        (lambda b: None, "returned NoneType"),
        (
            lambda b: pd.DataFrame({"id": [1], "reason": ["x"]}),
            "expected billing_event_id and message",
        ),
        (
            lambda b: pa.table({"billing_event_id": [1, 999_999], "message": ["a", "b"]}),
            "not in the batch (e.g. 999999)",
        ),
        (
            lambda b: pa.table({"billing_event_id": ["one"], "message": ["a"]}),
            "not a column of whole numbers",
        ),
    ],
    ids=["raises", "string", "none", "wrong-columns", "unknown-ids", "non-integer-ids"],
)
def test_python_rule_that_fails_fails_closed_while_others_still_work(fn, words):
    plugin = RulesPlugin("acme", PyRule("acme.bad", fn), PyRule("acme.big", big_events))
    with make_workspace(THREE, plugins=[plugin]) as ws:
        pv = ws.preview([1, 2, 3], action="release")
        v = pv.violations
        bad = by_rule(v, "acme.bad")
        assert sorted(bad) == [1, 2, 3]  # every event it was judging
        for msg in bad.values():
            assert msg.startswith("rule acme.bad (acme) failed: ") and words in msg
        assert set(v[v.rule_id == "acme.bad"].severity) == {"block"}
        assert by_rule(v, "acme.big") == {3: "big: 900.00"}
        assert list(by_rule(v, "release.not_approved")) == [2]
        assert pv.eligible_ids == []
        rules = ws.rules().set_index("id")
        assert words in rules.loc["acme.bad", "last_error"]
        assert pd.isna(rules.loc["acme.big", "last_error"])
        assert rules.loc["acme.big", "last_violations"] == 1


def test_python_rule_that_hangs_fails_closed_after_rule_timeout():
    release = threading.Event()

    def hangs(batch: Any) -> Any:
        release.wait(60)
        return pa.table({"billing_event_id": pa.array([], pa.int64()), "message": []})

    plugin = RulesPlugin("acme", PyRule("acme.hangs", hangs), PyRule("acme.big", big_events))
    try:
        with make_workspace(THREE, plugins=[plugin], settings={"rule_timeout_s": 0.5}) as ws:
            t0 = time.monotonic()
            v = violations(ws)
            assert time.monotonic() - t0 < 10
            hung = by_rule(v, "acme.hangs")
            assert sorted(hung) == [1, 2, 3]
            assert all(
                "rule acme.hangs (acme) failed: timed out after 0.5 s" in m for m in hung.values()
            )
            assert list(by_rule(v, "acme.big")) == [3]
            assert list(by_rule(v, "release.not_approved")) == [2]
    finally:
        release.set()


def test_sql_rule_with_a_runtime_error_fails_closed_alone():
    bad = bear.SqlRule(
        id="acme.cast",
        stage="release",
        fail_when="CAST(event_name AS INTEGER) > 0",  # binds, then fails on 'BE-0000001'
        message="never",
    )
    good = bear.SqlRule(
        id="acme.big_sql",
        stage="release",
        fail_when="summary_amount > 500",
        message="{event_name} is big",
    )
    with make_workspace(THREE, plugins=[RulesPlugin("acme", bad, good)]) as ws:
        v = violations(ws)
        failed = by_rule(v, "acme.cast")
        assert sorted(failed) == [1, 2, 3]
        assert all(
            m.startswith("rule acme.cast (acme) failed: Conversion Error") for m in failed.values()
        )
        assert by_rule(v, "acme.big_sql") == {3: "BE-0000003 is big"}
        assert list(by_rule(v, "release.not_approved")) == [2]
        rules = ws.rules().set_index("id")
        assert "Conversion Error" in rules.loc["acme.cast", "last_error"]
        assert pd.isna(rules.loc["release.not_approved", "last_error"])


def test_warn_rules_report_but_do_not_block():
    warn = bear.SqlRule(
        id="acme.note", stage="release", severity="warn", fail_when="true", message="fyi"
    )
    with make_workspace(THREE, plugins=[RulesPlugin("acme", warn)]) as ws:
        pv = ws.preview([1, 2, 3], action="release")
        assert set(pv.violations[pv.violations.rule_id == "acme.note"].severity) == {"warn"}
        assert pv.eligible_ids == [1, 3]


# -- prepare_connection ---------------------------------------------------------------------
class MacroPlugin:
    """Registers a macro on every evaluating cursor, and a SQL and a Python rule that use it."""

    __name__ = "macros"

    def __init__(self) -> None:
        self.prepared = 0

    @bear.hookimpl
    def bear_prepare_connection(self, con: Any) -> None:
        self.prepared += 1
        con.execute("CREATE OR REPLACE TEMP MACRO acme_is_big(x) AS x > 500")

    @bear.hookimpl
    def bear_register_rules(self, settings: Any) -> list[Any]:
        def py(batch: Any) -> Any:
            return batch.sql(
                "SELECT billing_event_id, 'py big' AS message FROM batch "
                "WHERE acme_is_big(summary_amount)"
            )

        return [
            bear.SqlRule(
                id="acme.big_macro",
                stage="release",
                fail_when="acme_is_big(summary_amount)",
                message="{event_name} is big",
            ),
            PyRule("acme.big_py", py),
        ]


class SqlMacroPlugin(MacroPlugin):
    """Only the SQL rule of ``MacroPlugin``."""

    __name__ = "sql_macros"

    @bear.hookimpl
    def bear_register_rules(self, settings: Any) -> list[Any]:
        return [
            r
            for r in MacroPlugin.bear_register_rules(self, settings)
            if isinstance(r, bear.SqlRule)
        ]


def test_bear_prepare_connection_macros_serve_sql_rules():
    plugin = SqlMacroPlugin()
    with make_workspace(THREE, plugins=[plugin]) as ws:
        assert set(ws.rules().id) >= {"acme.big_macro"}
        v = violations(ws)
        assert by_rule(v, "acme.big_macro") == {3: "BE-0000003 is big"}
        assert plugin.prepared >= 1


def test_bear_prepare_connection_macros_serve_python_rules_every_time():
    plugin = MacroPlugin()
    with make_workspace(THREE, plugins=[plugin]) as ws:
        for _ in range(10):
            assert by_rule(violations(ws), "acme.big_py") == {3: "py big"}


def test_a_settings_change_revalidates_macro_rules_on_a_prepared_cursor():
    with make_workspace(THREE, plugins=[SqlMacroPlugin()]) as ws:
        for _ in range(3):
            ws.settings.update(disabled_rules=["release.no_items"])
            ws.settings.update(disabled_rules=[])


def test_every_new_cursor_is_prepared():
    plugin = MacroPlugin()
    with make_workspace(THREE, plugins=[plugin]) as ws:
        for _ in range(10):
            con = ws.db.con.cursor()
            ws.plugins.prepare(con)
            assert con.execute("SELECT acme_is_big(1000)").fetchall() == [(True,)]
            con.close()


# -- switches: disabled_rules, BEAR_DISABLE_PLUGINS, autoload, plugins folder ---------------
def test_disabled_rules_are_listed_as_disabled_and_not_evaluated():
    with make_workspace(THREE, settings={"disabled_rules": ["release.not_approved"]}) as ws:
        rules = ws.rules().set_index("id")
        assert not rules.loc["release.not_approved", "enabled"]
        assert rules.loc["release.no_items", "enabled"]
        pv = ws.preview([1, 2, 3], action="release")
        assert "release.not_approved" not in set(pv.violations.rule_id)
        assert pv.eligible_ids == [1, 2, 3]


def test_disabled_rules_persist_across_reopening(tmp_path):
    path = tmp_path / "book.duckdb"
    make_workspace(THREE, path=path).close()
    with bear.connect(path) as ws:
        ws.settings.update(disabled_rules=["release.not_approved"])
    with bear.connect(path) as ws:
        assert not ws.rules().set_index("id").loc["release.not_approved", "enabled"]
        assert ws.preview([2], action="release").eligible_ids == [2]


def test_a_settings_change_takes_effect_without_reopening():
    with make_workspace(THREE) as ws:
        ws.settings.update(disabled_rules=["release.not_approved"], max_lines_per_document=7)
        rules = ws.rules().set_index("id")
        assert not rules.loc["release.not_approved", "enabled"]
        assert "(7)" in rules.loc["invoice.too_many_lines", "description"]
        assert ws.preview([2], action="release").eligible_ids == [2]


def test_bear_disable_plugins_blocks_builtins_and_others(monkeypatch):
    monkeypatch.setenv("BEAR_DISABLE_PLUGINS", "builtin_invoice, acme")
    rule = bear.SqlRule(id="acme.any", stage="release", fail_when="true")
    with bear.connect(":memory:", plugins=[RulesPlugin("acme", rule)]) as ws:
        rules = ws.rules()
        assert not any(rules.id.str.startswith("invoice."))
        assert "acme.any" not in set(rules.id)
        assert any(rules.id.str.startswith("release."))
        names = set(ws.plugin_list().name)
        assert "builtin_invoice" not in names and "acme" not in names
        assert "builtin_release" in names


def _fake_distribution(site: Path, module_body: str, name: str = "fake-bear-plugin") -> None:
    """An installed distribution on ``site`` (dist-info + module) with a ``bear`` entry point."""
    dist = site / f"{name.replace('-', '_')}-1.2.3.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text(f"[bear]\nfake = {name.replace('-', '_')}\n")
    (site / f"{name.replace('-', '_')}.py").write_text(textwrap.dedent(module_body))


FAKE_PLUGIN = """
    import bear

    @bear.hookimpl
    def bear_register_rules(settings):
        return [bear.SqlRule(id="fake.rule", stage="release", fail_when="summary_amount > 500",
                             message="fake says no to {event_name}")]
"""


def test_entry_point_plugins_load_unless_autoload_is_disabled(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, FAKE_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fake_bear_plugin", raising=False)
    monkeypatch.delenv("BEAR_DISABLE_PLUGIN_AUTOLOAD")
    with make_workspace(THREE, autoload=True) as ws:
        plugins = ws.plugin_list().set_index("name")
        assert plugins.loc["fake", "version"] == "1.2.3"
        assert plugins.loc["fake", "source"] == "entry point (fake-bear-plugin 1.2.3)"
        assert ws.rules().set_index("id").loc["fake.rule", "plugin"] == "fake"
        assert by_rule(violations(ws), "fake.rule") == {3: "fake says no to BE-0000003"}
    monkeypatch.setenv("BEAR_DISABLE_PLUGIN_AUTOLOAD", "1")
    with bear.connect(":memory:") as ws:
        assert "fake" not in set(ws.plugin_list().name)
        assert "fake.rule" not in set(ws.rules().id)
    monkeypatch.setenv("BEAR_DISABLE_PLUGIN_AUTOLOAD", "0")
    monkeypatch.setenv("BEAR_DISABLE_PLUGINS", "fake")
    with bear.connect(":memory:") as ws:
        assert "fake.rule" not in set(ws.rules().id)


# An entry point that fails to import: tests/test_plugins_failures.py.


PLUGIN_FILE = """
    \"\"\"A plugin dropped in the plugins folder.\"\"\"
    import bear

    __version__ = "0.3"

    @bear.hookimpl
    def bear_register_rules(settings):
        return [bear.SqlRule(id="folder.big", stage="release", fail_when="summary_amount > 500",
                             message="folder rule: {event_name} is big")]
"""


def _plugins_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "folder_rules.py").write_text(textwrap.dedent(PLUGIN_FILE))
    (folder / "notes.txt").write_text("not a plugin")
    return folder


def test_plugins_dir_setting_loads_py_files(tmp_path):
    folder = _plugins_dir(tmp_path)
    path = tmp_path / "book.duckdb"
    make_workspace(THREE, path=path).close()
    with bear.connect(path) as ws:
        ws.settings.update(plugins_dir=str(folder))
    with bear.connect(path) as ws:
        plugins = ws.plugin_list().set_index("name")
        assert (
            plugins.loc["folder_rules", "source"]
            == f"plugins folder ({folder / 'folder_rules.py'})"
        )
        assert plugins.loc["folder_rules", "version"] == "0.3"
        assert ws.rules().set_index("id").loc["folder.big", "plugin"] == "folder_rules"
        assert by_rule(violations(ws), "folder.big") == {3: "folder rule: BE-0000003 is big"}


def test_plugins_dir_that_does_not_exist_is_refused(tmp_path):
    with make_workspace(THREE) as ws:
        with pytest.raises(BearError, match="does not exist"):
            ws.settings.update(plugins_dir=str(tmp_path / "nowhere"))
        assert ws.settings.plugins_dir == ""


def test_bear_plugins_dir_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("BEAR_PLUGINS_DIR", str(_plugins_dir(tmp_path)))
    with make_workspace(THREE) as ws:
        assert "folder.big" in set(ws.rules().id)


def test_a_plugin_file_that_fails_to_import_fails_at_start_up(tmp_path, monkeypatch):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "broken.py").write_text("import bear\n1 / 0\n")
    monkeypatch.setenv("BEAR_PLUGINS_DIR", str(folder))
    with pytest.raises(PluginError, match="broken.py failed to import: ZeroDivisionError"):
        bear.connect(":memory:")


def test_connect_with_plugin_objects():
    rule = bear.SqlRule(id="acme.any", stage="release", fail_when="summary_amount > 500")
    with bear.connect(":memory:", plugins=[RulesPlugin("acme", rule)]) as ws:
        plugins = ws.plugin_list().set_index("name")
        assert plugins.loc["acme", "source"] == "passed to connect()"
        assert plugins.loc["acme", "hooks"] == "bear_register_rules"
        assert set(plugins.index) >= BUILTIN_PLUGINS
        assert set(plugins.loc[sorted(BUILTIN_PLUGINS), "source"]) == {"built-in"}
        assert ws.rules().set_index("id").loc["acme.any", "plugin"] == "acme"


def test_two_plugin_objects_with_one_name_get_distinct_names():
    a = RulesPlugin("acme", bear.SqlRule(id="acme.one", stage="release", fail_when="false"))
    b = RulesPlugin("acme", bear.SqlRule(id="acme.two", stage="release", fail_when="false"))
    with bear.connect(":memory:", plugins=[a, b]) as ws:
        owners = ws.rules().set_index("id").plugin
        assert owners["acme.one"] == "acme" and owners["acme.two"] == "acme-2"


# -- ws.rules() -----------------------------------------------------------------------------
def test_rules_frame_columns_and_timings():
    plugin = RulesPlugin("acme", PyRule("acme.big", big_events))
    with make_workspace(THREE, plugins=[plugin]) as ws:
        rules = ws.rules()
        assert list(rules.columns[:6]) == [
            "id",
            "stage",
            "severity",
            "description",
            "plugin",
            "enabled",
        ]
        assert set(rules.kind) == {"sql", "python"}
        assert rules.set_index("id").loc["acme.big", "kind"] == "python"
        assert rules.last_seconds.isna().all()
        ws.preview([1, 2, 3], action="release_and_invoice")
        after = ws.rules().set_index("id")
        assert after.loc["acme.big", "last_events"] == 3
        assert after.loc["acme.big", "last_violations"] == 1
        assert after.loc["release.not_approved", "last_violations"] == 1
        assert after.loc["invoice.zero_total", "last_events"] == 3
        assert (after.last_seconds.dropna() >= 0).all()


# -- preview --------------------------------------------------------------------------------
def _checksums(ws: bear.Workspace) -> dict[str, tuple[int, int]]:
    """(rows, hash of all rows) of every table of the database."""
    cur = ws.db.cursor()
    tables = [
        r[0]
        for r in cur.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'main' AND table_type = 'BASE TABLE' ORDER BY 1"
        ).fetchall()
    ]
    assert {"billing_events", "billing_event_items", "documents", "runs"} <= set(tables)
    return {
        t: tuple(
            cur.execute(f'SELECT count(*), coalesce(sum(hash(x)), 0) FROM "{t}" x').fetchall()[0]
        )
        for t in tables
    }


def test_preview_writes_nothing():
    plugin = RulesPlugin("acme", PyRule("acme.big", big_events), PyRule("acme.bad", _raises))
    with bear.connect(":memory:", plugins=[plugin]) as ws:
        bear.demo.seed(ws, events=2000, seed=7)
        ws.settings.update(validation_limit=500)
        before = _checksums(ws)
        for action in ("release_and_invoice", "release"):
            ws.preview(ws.awaiting_release(), action=action, full=True)
            ws.preview(ws.awaiting_release(), action=action)  # above the limit: not validated
            ws.preview(ws.awaiting_release(currency="EUR"), action=action)
        pv = ws.preview(ws.awaiting_invoice(), action="invoice", full=True)
        assert pv.validated and len(pv.violations)
        assert _checksums(ws) == before
        assert ws.runs().empty


def test_preview_above_validation_limit_is_not_validated_unless_full():
    events = [{"id": i, "approved": i != 2} for i in range(1, 7)]
    with make_workspace(events, settings={"validation_limit": 5}) as ws:
        pv = ws.preview(list(range(1, 7)))
        assert not pv.validated
        assert "validation_limit" in pv.reason and "6" in pv.reason
        assert pv.violations.empty and pv.by_rule.empty and pv.blast_radius.empty
        assert pv.eligible_ids == [1, 2, 3, 4, 5, 6]
        assert list(pv.violations.columns) == [
            "billing_event_id",
            "stage",
            "rule_id",
            "severity",
            "message",
        ]
        full = ws.preview(list(range(1, 7)), full=True)
        assert full.validated and full.reason == ""
        assert full.eligible_ids == [1, 3, 4, 5, 6]
        assert set(full.violations.rule_id) == {"release.not_approved"}
        at_limit = ws.preview([1, 2, 3, 4, 5])
        assert at_limit.validated and at_limit.eligible_ids == [1, 3, 4, 5]


def test_blast_radius_names_good_events_sharing_a_batch_with_a_bad_one():
    # Batches of 3 in id order: [1 2 3] [4 5 6] [7 8]; 2, 3 and 8 cannot be released;
    # 5 has an invoice-stage problem only, which does not fail a release batch.
    events = [
        {"id": i, "approved": i not in (2, 3, 8), **({"company_id": None} if i == 5 else {})}
        for i in range(1, 9)
    ]
    with make_workspace(events, settings={"release_batch_size": 3}) as ws:
        pv = ws.preview(list(range(1, 9)))
        blast = pv.blast_radius
        assert list(blast.columns) == ["billing_event_id", "batch_seq", "culprits", "first_culprit"]
        assert blast.billing_event_id.tolist() == [1, 7]
        assert blast.batch_seq.tolist() == [1, 3]
        assert blast.culprits.tolist() == [2, 1]
        assert blast.first_culprit.tolist() == [2, 8]
        assert pv.eligible_ids == [1, 4, 6, 7]
        assert ws.preview(list(range(1, 9)), action="invoice").blast_radius.empty
        ws.settings.update(release_failure_mode="isolate")
        assert ws.preview(list(range(1, 9))).blast_radius.empty


def test_expected_documents_count_and_total_per_type_and_currency():
    events = [
        {"id": 1, "summary_amount": "100.00"},
        {"id": 2, "summary_amount": "50.50"},
        {"id": 3, "summary_amount": "-30.00"},
        {"id": 4, "summary_amount": "200.00", "currency": "EUR"},
        {"id": 5, "summary_amount": "-12.25", "currency": "EUR"},
        {"id": 6, "summary_amount": "0.00"},  # zero total: no document
        {"id": 7, "summary_amount": "1000.00", "approved": False},  # not eligible
        {"id": 8, "summary_amount": "75.00", "currency": "GBP", "company_id": 2},
    ]
    companies = [{"id": 2, "currencies": ["EUR"]}]  # cannot invoice GBP: not eligible
    with make_workspace(events, companies=companies) as ws:
        pv = ws.preview(list(range(1, 9)))
        assert pv.eligible_ids == [1, 2, 3, 4, 5]
        docs = pv.expected_documents
        assert list(docs.columns) == ["doc_type", "currency", "count", "total"]
        got = {
            (r.doc_type, r.currency): (int(r.count), Decimal(r.total)) for r in docs.itertuples()
        }
        assert got == {
            ("SIN", "EUR"): (1, Decimal("200.00")),
            ("SIN", "USD"): (2, Decimal("150.50")),
            ("SCN", "EUR"): (1, Decimal("12.25")),
            ("SCN", "USD"): (1, Decimal("30.00")),
        }
        assert all(isinstance(t, Decimal) for t in docs.total)
        # What a run then creates matches the preview.
        run = ws.release_and_invoice(list(range(1, 9)), user="ana@example.com", timeout=60)
        assert (run.sales_invoices, run.credit_notes) == (3, 2)
        made = ws.documents(run_id=run.id).groupby(["doc_type", "currency"]).total.sum()
        assert {k: Decimal(v) for k, v in made.items()} == {k: v[1] for k, v in got.items()}


# -- notifier hooks -------------------------------------------------------------------------
def wait_for(condition: Any, timeout: float = 20.0) -> None:
    """Wait until ``condition()`` is true (deliveries follow a run's final commit)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.02)


class Recorder:
    """A notifier plugin that records what it is told; fails its first ``fail_first`` calls."""

    __name__ = "recorder"

    def __init__(self, fail_first: int = 0) -> None:
        self.calls: list[tuple[str, RunSummary, str]] = []
        self.fail_first = fail_first

    def _record(self, kind: str, summary: RunSummary, error: str = "") -> None:
        if self.fail_first > 0:
            self.fail_first -= 1
            raise ConnectionError("chat server unreachable")
        self.calls.append((kind, summary, error))

    @bear.hookimpl
    def bear_release_finished(self, summary: RunSummary) -> None:
        self._record("release_finished", summary)

    @bear.hookimpl
    def bear_invoicing_finished(self, summary: RunSummary) -> None:
        self._record("invoicing_finished", summary)

    @bear.hookimpl
    def bear_run_failed(self, summary: RunSummary, error: str) -> None:
        self._record("run_failed", summary, error)


def test_notifier_hooks_get_run_summaries_after_the_work():
    rec = Recorder()
    events = [{"id": 1}, {"id": 2, "approved": False}, {"id": 3, "summary_amount": "-5.00"}]
    with make_workspace(events, plugins=[rec]) as ws:
        run = ws.release_and_invoice([1, 2, 3], user="ana@example.com", timeout=60)
        assert run.status == "completed"
        wait_for(lambda: len(rec.calls) == 2)
        kinds = {k: s for k, s, _ in rec.calls}
        rel = kinds["release_finished"]
        assert (rel.run_id, rel.released, rel.not_released) == (run.id, 2, 1)
        inv = kinds["invoicing_finished"]
        # event 2 (not approved) was left out up front: not passed to accounting
        assert (inv.sales_invoices, inv.credit_notes, inv.not_passed) == (1, 1, 1)
        assert inv.process_run_id == run.process_run_id and inv.requested_by == "ana@example.com"
        assert inv.link.endswith(f"?run={run.id}")
        assert ws.wait_notifications(run.id, timeout=30)
        outbox = ws.notifications(run_id=run.id, channel="recorder")
        assert sorted(outbox.kind) == ["invoicing_finished", "release_finished"]
        assert set(outbox.status) == {"sent"}


def test_a_failing_notifier_leaves_its_notification_in_the_outbox_for_a_retry():
    rec = Recorder(fail_first=1)
    with make_workspace([{"id": 1}], plugins=[rec]) as ws:
        run = ws.release([1], user="ana@example.com", timeout=60)
        assert run.status == "completed" and run.released == 1  # the work stands
        wait_for(lambda: ws.notifications(run_id=run.id, channel="recorder").attempts.sum() == 1)
        outbox = ws.notifications(run_id=run.id, channel="recorder")
        assert outbox.status.tolist() == ["pending"]
        assert outbox.attempts.tolist() == [1]
        assert "chat server unreachable" in outbox.last_error.iloc[0]
        assert ws.retry_notifications()["failed"] == 0
        again = ws.notifications(run_id=run.id, channel="recorder")
        assert again.status.tolist() == ["sent"] and again.attempts.tolist() == [2]
        assert [k for k, _, _ in rec.calls] == ["release_finished"]


def test_bear_run_failed_is_told_when_a_run_stops_on_an_error():
    """A table the invoicing stage writes is gone (renamed outside BEAR): no event's data is
    to blame, the run stops on that error and the run_failed notifiers are told. (One event's
    bad data no longer stops a run: the final check before the documents logs it instead.)"""
    rec = Recorder()
    with make_workspace([{"id": 1}], plugins=[rec]) as ws:
        with ws.db.transaction() as tx:
            tx.execute("ALTER TABLE document_lines RENAME TO document_lines_elsewhere")
        run = ws.release_and_invoice([1], user="ana@example.com", timeout=60)
        assert run.status == "failed" and "document_lines" in run.error
        wait_for(lambda: any(k == "run_failed" for k, _, _ in rec.calls))
        summary, error = next((s, e) for k, s, e in rec.calls if k == "run_failed")
        assert summary.run_id == run.id and summary.status == "failed"
        assert "document_lines" in error
        assert ws.sql("SELECT count(*) AS n FROM documents").n.iloc[0] == 0


# -- CLI ------------------------------------------------------------------------------------
def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "BEAR_DISABLE_PLUGIN_AUTOLOAD": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "bear.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=full_env,
    )


def test_cli_plugins_lists_plugins_and_rules(tmp_path):
    path = tmp_path / "book.duckdb"
    make_workspace(THREE, path=path).close()
    folder = _plugins_dir(tmp_path)
    out = _cli("plugins", "--json", "--db", str(path), env={"BEAR_PLUGINS_DIR": str(folder)})
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    plugins = {p["name"]: p for p in data["plugins"]}
    assert set(plugins) == BUILTIN_PLUGINS | {"folder_rules"}
    assert plugins["builtin_release"]["source"] == "built-in"
    assert plugins["folder_rules"]["source"].startswith("plugins folder (")
    assert "bear_register_rules" in plugins["builtin_invoice"]["hooks"]
    rules = {r["id"]: r for r in data["rules"]}
    assert len([r for r in rules.values() if r["plugin"].startswith("builtin_")]) == 36
    assert rules["folder.big"]["plugin"] == "folder_rules"
    assert set(data["rules"][0]) >= {"id", "stage", "severity", "description", "plugin", "enabled"}
    text = _cli("plugins", "--db", str(path))
    assert text.returncode == 0 and "release.not_approved" in text.stdout


def test_cli_preview_json(tmp_path):
    path = tmp_path / "book.duckdb"
    make_workspace(THREE, path=path).close()
    out = _cli("preview", "--json", "--with-ids", "--db", str(path))
    assert out.returncode == 0, out.stderr
    pv = json.loads(out.stdout)
    assert pv["action"] == "release_and_invoice" and pv["validated"] is True
    assert (pv["selected"], pv["eligible"], pv["ineligible"]) == (3, 2, 1)
    assert pv["eligible_ids"] == [1, 3]
    assert [(v["billing_event_id"], v["rule_id"]) for v in pv["violations"]] == [
        (2, "release.not_approved")
    ]
    assert "approve it on project Project 1" in pv["violations"][0]["message"]
    assert [(r["rule_id"], r["events"]) for r in pv["by_rule"]] == [("release.not_approved", 1)]
    assert pv["expected_documents"] == [
        {"doc_type": "SIN", "currency": "USD", "count": 2, "total": "1000.00"}
    ]
    with bear.connect(path) as ws:  # and nothing was written
        assert ws.runs().empty
        assert not ws.sql("SELECT bool_or(released) AS r FROM billing_events").r.iloc[0]
    bad = _cli("preview", "--json", "--db", str(path), "--ids-file", str(tmp_path / "none.txt"))
    # under --json the error is a JSON object on stdout
    assert bad.returncode == 2 and bad.stderr == ""
    error = json.loads(bad.stdout)
    assert error["type"] == "BearError" and error["error"].startswith("ids file")


def test_a_python_rule_naming_an_event_twice_gives_one_violation_with_both_reasons():
    twice = PyRule(
        "acme.twice",
        lambda b: pa.table(
            {"billing_event_id": [1, 1, 3, 3], "message": ["late PO", "no contact", "big", "big"]}
        ),
    )
    with make_workspace(THREE, plugins=[RulesPlugin("acme", twice)]) as ws:
        pv = ws.preview([1, 2, 3], action="release")
        assert by_rule(pv.violations, "acme.twice") == {1: "late PO; no contact", 3: "big"}
        counts = dict(zip(pv.by_rule.rule_id, pv.by_rule.events, strict=True))
        assert counts["acme.twice"] == 2
