"""docs/plugins.md keeps up with the code: every hook has a heading with its signature, a
docstring and a test that implements it; every batch column is documented; the first rule
example is at most 15 lines and works as printed."""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

import bear
from bear.plugins import hookspecs as notify_specs
from bear.rules import hookspecs as rule_specs
from bear.rules.batch import COLUMNS
from bear.testing import make_workspace

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "plugins.md"
TESTS = Path(__file__).resolve().parent


def hookspecs() -> list[tuple[str, object]]:
    """(name, function) of every hookspec BEAR declares."""
    found = []
    for module in (rule_specs, notify_specs):
        assert isinstance(module, ModuleType)
        for name, fn in vars(module).items():
            if callable(fn) and getattr(fn, "bear_spec", None) is not None:
                found.append((name, fn))
    return sorted(found)


HOOKS = hookspecs()


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def test_the_hookspecs_are_the_documented_eight():
    assert [n for n, _ in HOOKS] == sorted(
        [
            "bear_register_settings",
            "bear_register_rules",
            "bear_prepare_connection",
            "bear_release_finished",
            "bear_invoicing_finished",
            "bear_run_failed",
            "bear_notifier_options",
            "bear_send_test_notification",
        ]
    )


@pytest.mark.parametrize(("name", "fn"), HOOKS, ids=[n for n, _ in HOOKS])
def test_every_hook_has_a_heading_with_its_signature(doc, name, fn):
    params = ", ".join(inspect.signature(fn).parameters)
    headings = [line for line in doc.splitlines() if re.match(r"^#{2,4} ", line)]
    assert any(f"{name}({params})" in h for h in headings), (
        f"docs/plugins.md needs a heading for `{name}({params})`"
    )


def test_every_hook_heading_is_a_real_hook(doc):
    documented = set(re.findall(r"^#{2,4} `(bear_\w+)\(", doc, flags=re.M))
    assert documented == {n for n, _ in HOOKS}


@pytest.mark.parametrize(("name", "fn"), HOOKS, ids=[n for n, _ in HOOKS])
def test_every_hook_has_a_docstring_naming_its_parameters(name, fn):
    text = inspect.getdoc(fn) or ""
    assert text, f"{name} has no docstring"
    for param in inspect.signature(fn).parameters:
        assert f":param {param}:" in text, f"{name}: document :param {param}:"


@pytest.mark.parametrize(("name", "fn"), HOOKS, ids=[n for n, _ in HOOKS])
def test_every_hook_is_exercised_by_a_test(name, fn):
    implemented_in = [
        p.name
        for p in sorted(TESTS.glob("test_*.py"))
        if p.name != Path(__file__).name
        and re.search(rf"def {name}\(", p.read_text(encoding="utf-8"))
    ]
    assert implemented_in, f"no test implements the hook {name}"


def test_every_batch_column_is_documented(doc):
    section = doc.split("## The batch view", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| (.+?) \|$", section, flags=re.M)
    documented = dict(rows)
    assert set(documented) == set(COLUMNS), (
        f"missing: {sorted(set(COLUMNS) - set(documented))}; "
        f"stale: {sorted(set(documented) - set(COLUMNS))}"
    )
    assert [name for name, _ in rows] == list(COLUMNS)  # in the view's order
    assert all(len(meaning.strip()) > 5 for meaning in documented.values())


def test_the_docs_cover_the_switches_and_the_entry_point_recipe(doc):
    for words in (
        "[project.entry-points.bear]",
        "disabled_rules",
        "BEAR_DISABLE_PLUGINS",
        "BEAR_DISABLE_PLUGIN_AUTOLOAD",
        "BEAR_PLUGINS_DIR",
        "rule_timeout_s",
        "bear plugins",
        "last_error",
        "[[rule]]",
        "NotifierOptions(per_recipient=True)",
        "[build-system]",
        "pip install -e .",
        "python -m pytest",
        "bear.PluginSetting",
        "bear settings set acme.min_amount=25",
        "bear events --eligibility",
        "bear preview --reasons",
        "release.plugin_failed",
        "BEAR_DISABLE_PLUGINS=acme",
    ):
        assert words in doc, words
    from bear.models import RunSummary

    for field in RunSummary.__dataclass_fields__:
        assert f"`{field}`" in doc, f"RunSummary.{field} is not documented"


def test_the_first_rule_is_at_most_15_lines_and_works(doc, tmp_path, monkeypatch):
    section = doc.split("## A first rule", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(code.strip().splitlines()) <= 15
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "acme_rules.py").write_text(code, encoding="utf-8")
    monkeypatch.setenv("BEAR_PLUGINS_DIR", str(folder))
    events = [{"id": 1, "summary_amount": "60000.00"}, {"id": 2}]
    with make_workspace(events) as ws:
        rules = ws.rules().set_index("id")
        assert rules.loc["acme.partner_review", "plugin"] == "acme_rules"
        v = ws.preview([1, 2], action="release").violations
        mine = v[v.rule_id == "acme.partner_review"]
        assert mine.billing_event_id.tolist() == [1]
        assert mine.message.iloc[0].startswith("BE-0000001 bills 60000.00 USD")
        assert ws.preview([1, 2], action="release").eligible_ids == [1, 2]  # a warning


def test_the_testing_example_in_the_docs_works(doc, tmp_path, monkeypatch):
    """The "Testing a rule" snippet runs as printed against the first rule's module."""
    first = doc.split("## A first rule", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    section = doc.split("## Testing a rule", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "acme_rules.py").write_text(first, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "acme_rules", raising=False)
    namespace: dict[str, object] = {"bear": bear}
    exec(compile(snippet, "docs/plugins.md", "exec"), namespace)  # noqa: S102 — our own docs
    namespace["test_partner_review"]()  # type: ignore[operator]


def _block(doc: str, heading: str, n: int = 0) -> str:
    """The ``n``-th Python code block of the section under ``heading``."""
    section = doc.split(heading, 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n")[n + 1].split("```", 1)[0]


def test_the_plugin_settings_example_and_the_make_workspace_test_work(doc, tmp_path, monkeypatch):
    """The plugin of "Plugin settings", installed as module bear_rules_acme, passes the test
    printed under "make_workspace, argument by argument"; its settings behave as told."""
    (tmp_path / "bear_rules_acme.py").write_text(_block(doc, "## Plugin settings"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "bear_rules_acme", raising=False)
    namespace: dict[str, object] = {}
    snippet = _block(doc, "### `make_workspace`, argument by argument\n", 1)
    exec(compile(snippet, "docs/plugins.md", "exec"), namespace)  # noqa: S102 — our own docs
    namespace["test_small_events_are_held_back"]()  # type: ignore[operator]
    namespace["test_a_book_file_for_the_cli"](tmp_path)  # type: ignore[operator]
    import bear_rules_acme

    with make_workspace(
        [{"id": 1, "summary_amount": "5.00"}], plugins={"acme": bear_rules_acme}
    ) as ws:
        described = {r["name"]: r for r in ws.settings.describe()}
        assert described["acme.max_items"]["kind"] == "int"
        assert ws.awaiting_release(eligibility="acme.min_amount").ids() == [1]
        ws.settings.update_by("ana", **{"acme.min_amount": "1"})
        assert ws.awaiting_release(eligibility="acme.min_amount").ids() == []
