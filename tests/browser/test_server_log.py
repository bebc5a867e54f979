"""A whole browser session against `bear serve` with Python's warnings on: the server's log
must hold no traceback and no warning (a reset of the filters while everything is selected,
sorting, every tab, a dialog opened and closed, a revert dialog, dark mode)."""

from __future__ import annotations

import re
import shutil

import pytest
from conftest import USER
from netutil import serving
from playwright.sync_api import Page, expect

pytestmark = [
    pytest.mark.browser,
    pytest.mark.filterwarnings("ignore::pytest.PytestRemovedIn10Warning"),
]

TABS = ("Awaiting Invoice", "Invoiced", "Runs", "Documents", "Settings & Rules", "Awaiting Release")


def visible_text(page: Page, pattern: str):
    return page.get_by_text(re.compile(pattern)).filter(visible=True).first


def test_a_browser_session_leaves_no_traceback_or_warning_in_the_server_log(
    page: Page, demo_path, tmp_path
):
    path = tmp_path / "book.duckdb"
    shutil.copy(demo_path, path)
    page.set_default_timeout(30_000)
    with serving(path, "--user", USER, env={"PYTHONWARNINGS": "default"}) as url:
        page.goto(url)
        expect(visible_text(page, r"Page 1 of")).to_be_visible()
        # select everything, then reset the filters (the measured KeyError came from this)
        page.get_by_role("button", name=re.compile(r"Select all [\d,]+ matching")).click()
        expect(page.get_by_text(re.compile(r"[\d,]+ selected"))).to_be_visible()
        box = page.get_by_label("Amount from")
        box.fill("100")
        box.press("Enter")
        page.get_by_role("button", name="Reset filters").click()
        page.get_by_role("button", name=re.compile(r"Select all [\d,]+ matching")).click()
        page.locator(".tabulator-col[tabulator-field=name] .tabulator-col-title").click()
        page.get_by_text("Overview — what awaits", exact=False).click()
        expect(page.get_by_text("Computed in", exact=False)).to_be_visible()
        page.get_by_role("button", name="Preview", exact=True).click()
        expect(page.locator(".dialog-content").filter(visible=True).first).to_be_visible()
        page.keyboard.press("Escape")
        for name in TABS:
            page.locator(".bk-tab", has_text=name).first.click()
            page.wait_for_timeout(500)
        page.goto(f"{url}/?theme=dark")
        expect(visible_text(page, r"Page 1 of")).to_be_visible()
        page.wait_for_timeout(1000)
    log = (tmp_path / "serve.log").read_text(errors="replace")
    bad = [
        line for line in log.splitlines() if re.search(r"Traceback|Warning|Error|Exception", line)
    ]
    assert not bad, "\n".join(bad[:20])


def test_a_fresh_servers_first_page_comes_first_and_its_ineligible_count_follows(
    page: Page, demo_path, tmp_path
):
    # the start-up judgement of every awaiting event waits for the first page being drawn,
    # and the page's own ineligible count for the page: both must still arrive
    path = tmp_path / "book.duckdb"
    shutil.copy(demo_path, path)
    page.set_default_timeout(30_000)
    with serving(path, "--user", USER) as url:
        page.goto(url)
        expect(visible_text(page, r"Page 1 of")).to_be_visible()
        card = page.locator(".bear-card", has_text="Ineligible").first
        expect(card).to_contain_text("blocked by a rule")
        count = re.search(r"Ineligible\s*([1-9][\d,]*)", card.inner_text(), re.IGNORECASE)
        assert count, card.inner_text()
        # and the eligibility filter lists exactly those events
        page.get_by_label("Eligibility").select_option("ineligible")
        events = page.locator(".bear-card", has_text="matching the filters").first
        expect(events).to_contain_text(
            re.compile(rf"Events\s*{count.group(1)}(?![\d,])", re.IGNORECASE)
        )
