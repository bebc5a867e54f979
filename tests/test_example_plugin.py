"""The example plugin package (examples/bear-rules-example) installed into the venv: found
through its ``bear`` entry point in a fresh process, listed by ``bear plugins --json`` with its
version and source, enforced in a preview, switched off by the environment; its own tests pass."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bear.testing import make_workspace

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "bear-rules-example"
_WHERE = (
    "import importlib.metadata as m, bear_rules_example as x; "
    "print(m.version('bear-rules-example')); print(x.__file__)"
)


def _env(**extra: str) -> dict[str, str]:
    """This environment without BEAR's plugin switches, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("BEAR_DISABLE_PLUGIN_AUTOLOAD", "BEAR_DISABLE_PLUGINS", "BEAR_PLUGINS_DIR")
    }
    return {**env, **extra}


def _installed_here() -> bool:
    """The example is installed, from this checkout (asked in a fresh process)."""
    out = subprocess.run(
        [sys.executable, "-c", _WHERE], capture_output=True, text=True, timeout=60, env=_env()
    )
    if out.returncode != 0:
        return False
    return Path(out.stdout.splitlines()[1]).resolve().is_relative_to(EXAMPLE)


@pytest.fixture(scope="module")
def example_installed() -> None:
    """Install the example (editable, no dependencies) unless `make venv` already did."""
    if _installed_here():
        return
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps"]
    out = subprocess.run(
        [*cmd, "--no-build-isolation", "-e", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if out.returncode != 0:
        # setuptools older than 70.1 cannot build an editable wheel without the 'wheel'
        # package; let pip bring a build environment from the configured index instead.
        out = subprocess.run(
            [*cmd, "-e", str(EXAMPLE)], capture_output=True, text=True, timeout=300
        )
    assert out.returncode == 0, out.stderr
    assert _installed_here()


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bear.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(**env),
    )


@pytest.fixture
def book(tmp_path) -> Path:
    """A small book: a large credit, a clean event, and an event dated on a Saturday."""
    path = tmp_path / "book.duckdb"
    make_workspace(
        [
            {"id": 1, "summary_amount": "-20000.00"},
            {"id": 2},
            {"id": 3, "event_date": "2026-01-17"},
        ],
        projects=[{"id": 1, "name": "Cyber review 12"}],
        path=path,
    ).close()
    return path


def test_example_is_discovered_through_its_entry_point(example_installed, book):
    out = _cli("plugins", "--json", "--db", str(book))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    plugins = {p["name"]: p for p in data["plugins"]}
    assert plugins["example"]["version"] == "0.1.0"
    assert plugins["example"]["source"] == "entry point (bear-rules-example 0.1.0)"
    assert plugins["example"]["hooks"] == "bear_register_rules, bear_register_settings"
    assert plugins["example"]["status"] == "ok"
    rules = {r["id"]: r for r in data["rules"]}
    assert rules["example.large_credit"]["plugin"] == "example"
    assert (rules["example.large_credit"]["stage"], rules["example.large_credit"]["kind"]) == (
        "release",
        "sql",
    )
    assert rules["example.weekend_event"]["plugin"] == "example"
    assert (rules["example.weekend_event"]["severity"], rules["example.weekend_event"]["kind"]) == (
        "warn",
        "python",
    )


def test_example_rules_are_enforced_in_a_preview(example_installed, book):
    out = _cli("preview", "--json", "--with-ids", "--db", str(book))
    assert out.returncode == 0, out.stderr
    pv = json.loads(out.stdout)
    found = {(v["billing_event_id"], v["rule_id"]): v for v in pv["violations"]}
    credit = found[(1, "example.large_credit")]
    assert credit["severity"] == "block"
    assert "credit of -20000.00 USD on project Cyber review 12" in credit["message"]
    weekend = found[(3, "example.weekend_event")]
    assert weekend["severity"] == "warn"
    assert weekend["message"].startswith("document date 2026-01-17 is a Saturday")
    assert set(found) == {(1, "example.large_credit"), (3, "example.weekend_event")}
    assert pv["eligible_ids"] == [2, 3]  # a warning does not block


@pytest.mark.parametrize(
    "switch",
    [{"BEAR_DISABLE_PLUGINS": "example"}, {"BEAR_DISABLE_PLUGIN_AUTOLOAD": "1"}],
    ids=["disable-plugins", "disable-autoload"],
)
def test_example_is_switched_off_by_the_environment(example_installed, book, switch):
    out = _cli("plugins", "--json", "--db", str(book), **switch)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert "example" not in {p["name"] for p in data["plugins"]}
    assert not [r for r in data["rules"] if r["id"].startswith("example.")]
    pv = json.loads(_cli("preview", "--json", "--with-ids", "--db", str(book), **switch).stdout)
    assert pv["eligible_ids"] == [1, 2, 3]


def test_its_setting_is_listed_set_and_read_by_its_rule(example_installed, book):
    listed = json.loads(_cli("settings", "list", "--json", "--db", str(book)).stdout)
    row = next(r for r in listed if r["name"] == "example.large_credit_limit")
    assert (row["plugin"], row["kind"], row["value"], row["default"]) == (
        "example",
        "decimal",
        "10000",
        "10000",
    )
    text = _cli("settings", "list", "--db", str(book)).stdout
    assert "example.large_credit_limit" in text
    out = _cli("events", "--eligibility", "example.large_credit", "--json", "--db", str(book))
    assert [e["id"] for e in json.loads(out.stdout)["events"]] == [1]
    out = _cli("settings", "set", "example.large_credit_limit=25000", "--db", str(book))
    assert out.returncode == 0 and out.stdout.strip() == 'example.large_credit_limit = "25000"'
    out = _cli("settings", "get", "example.large_credit_limit", "--db", str(book))
    assert out.stdout.strip() == "25000"
    pv = json.loads(_cli("preview", "--json", "--with-ids", "--db", str(book)).stdout)
    assert pv["eligible_ids"] == [1, 2, 3]  # -20,000 is within the new limit
    history = json.loads(_cli("settings", "history", "--json", "--db", str(book)).stdout)
    assert (history[0]["name"], history[0]["old"], history[0]["new"]) == (
        "example.large_credit_limit",
        "10000",
        "25000",
    )
    out = _cli("settings", "set", "example.large_credit_limit=-5", "--db", str(book))
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "error: setting 'example.large_credit_limit': '-5' is not allowed; expected a decimal "
        "number (at most 6 decimals) ≥ 0"
    )


def test_its_stored_setting_is_kept_while_it_is_disabled(example_installed, book):
    assert (
        _cli("settings", "set", "example.large_credit_limit=25000", "--db", str(book)).returncode
        == 0
    )
    off = {"BEAR_DISABLE_PLUGINS": "example"}
    out = _cli("settings", "list", "--db", str(book), **off)
    assert out.returncode == 0, out.stderr
    assert (
        "Stored for plugins that are not loaded (kept, not applied):\n"
        "  example.large_credit_limit = \"25000\"  (plugin 'example' is not loaded: it is "
        "disabled by BEAR_DISABLE_PLUGINS)"
    ) in out.stdout
    listed = json.loads(_cli("settings", "list", "--json", "--db", str(book), **off).stdout)
    assert listed[-1] == {
        "name": "example.large_credit_limit",
        "value": "25000",
        "plugin": "example",
        "note": "plugin 'example' is not loaded: it is disabled by BEAR_DISABLE_PLUGINS",
        "loaded": False,
    }
    out = _cli("settings", "set", "example.large_credit_limit=1", "--db", str(book), **off)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "error: setting 'example.large_credit_limit' belongs to plugin 'example', which is not "
        'loaded: it is disabled by BEAR_DISABLE_PLUGINS; the stored value "25000" is kept, '
        "and applies again once the plugin is loaded"
    )
    out = _cli("settings", "get", "example.large_credit_limit", "--json", "--db", str(book), **off)
    assert out.returncode == 2 and json.loads(out.stdout)["type"] == "SettingError"
    out = _cli("settings", "get", "example.large_credit_limit", "--db", str(book))
    assert out.stdout.strip() == "25000"  # loaded again, the value applies


def test_bear_plugins_shows_each_rules_kind(example_installed, book, tmp_path):
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text(
        '[[rule]]\nid = "acme.big"\nstage = "release"\nwhen = "summary_amount > 1000"\n'
        'message = "big"\n'
    )
    assert _cli("settings", "set", f"rules_file={rules_file}", "--db", str(book)).returncode == 0
    out = _cli("plugins", "--db", str(book))
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line.split() for line in out.stdout.splitlines() if line.strip()}
    assert lines["example.large_credit"][1] == "sql"
    assert lines["example.weekend_event"][1] == "python"
    assert lines["acme.big"][1] == "declarative"
    assert lines["release.not_approved"][1] == "sql"
    data = json.loads(_cli("plugins", "--json", "--db", str(book)).stdout)
    kinds = {r["id"]: r["kind"] for r in data["rules"]}
    assert (kinds["acme.big"], kinds["example.weekend_event"]) == ("declarative", "python")


def test_the_examples_own_tests_pass(example_installed):
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "6 passed" in out.stdout
