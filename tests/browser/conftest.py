"""Browser-test fixtures: Debian's Chromium for Playwright, and `bear serve` as a subprocess.

The served database is a copy of the session's demo book with one finished run (for the
deep link and the bell) and one account whose name is an XSS attempt. The server owns the
file while it runs, so everything the tests check goes through the browser.
"""

from __future__ import annotations

import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest
from netutil import serving
from playwright.sync_api import expect

import bear

# A loaded 2-core machine (CI runs other suites' processes beside the server) can take more
# than Playwright's default 5 s to re-render; waiting longer costs nothing when it is quick.
expect.set_options(timeout=20_000)

USER = "ana@example.com"
XSS_NAME = '<img src=x onerror="window.__xss=1"><script>window.__xss=1</script>'
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

# Assertions wait as long as page actions do: on a busy machine a first render of the grid
# (count, cards, page, eligibility) can take longer than Playwright's default 5 s.
expect.set_options(timeout=30_000)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian chromium is not installed")
    return {
        **browser_type_launch_args,
        "executable_path": chromium,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1600, "height": 1000}}


@dataclass(frozen=True)
class Served:
    url: str
    path: Path
    first_run: int
    first_run_released: int
    xss_name: str = XSS_NAME


@pytest.fixture(scope="module")
def served(demo_path, tmp_path_factory):
    """`bear serve` on a free 127.0.0.1 port over a prepared copy of the demo book."""
    folder = tmp_path_factory.mktemp("served")
    path = folder / "book.duckdb"
    shutil.copy(demo_path, path)
    with bear.connect(path) as ws:
        ws.db.cursor().execute(
            "UPDATE accounts SET name = $n WHERE id = (SELECT min(account_id) FROM billing_events "
            "WHERE NOT released)",
            {"n": XSS_NAME},
        )
        ids = ws.awaiting_release(eligibility="eligible", currency="USD").ids()[:30]
        run = ws.release_and_invoice(ids, user=USER, timeout=60)
        assert run.status == "completed"
    with serving(path, "--user", USER) as url:
        yield Served(url, path, run.id, run.released)


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
