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
    assert plugins["example"]["hooks"] == "bear_register_rules"
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
    assert "4 passed" in out.stdout
