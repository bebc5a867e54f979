"""The served dashboard in headless Chromium: filter → select → Release and Invoice → warning →
continue → progress → run detail; deep links; settings validation; notifications; XSS;
a screenshot of every tab (test-artifacts/).
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

pytestmark = [
    pytest.mark.browser,
    # pytest-playwright's own base_url fixture trips a pytest deprecation: not ours to fix
    pytest.mark.filterwarnings("ignore::pytest.PytestRemovedIn10Warning"),
]

TIMEOUT = 30_000
TABS = ("Awaiting Release", "Awaiting Invoice", "Runs", "Documents", "Settings & Rules")


def pager(page: Page, pattern: str):
    """The first visible pager label matching ``pattern`` (hidden tabs and the closed dialog
    hold pager labels too)."""
    return page.get_by_text(re.compile(pattern)).filter(visible=True).first


def open_dashboard(page: Page, url: str) -> None:
    page.set_default_timeout(TIMEOUT)
    page.goto(url)
    expect(pager(page, r"Page 1 of")).to_be_visible()


def tab(page: Page, name: str) -> None:
    page.locator(".bk-tab", has_text=name).first.click()


def toast(page: Page, text: str | re.Pattern[str]):
    return page.locator(".notyf__message", has_text=text).first


def pager_label(page: Page) -> str:
    return pager(page, r"Page \d+ of").inner_text()


def search(page: Page, text: str) -> None:
    before = pager_label(page)
    box = page.get_by_placeholder("event, project or account name, or event id")
    box.fill(text)
    box.press("Enter")
    expect(pager(page, r"Page \d+ of")).not_to_have_text(before)


def test_release_and_invoice_flow(page: Page, served, artifacts):
    open_dashboard(page, served.url)
    search(page, "Stark")
    page.get_by_role("button", name=re.compile(r"Select all [\d,]+ matching")).click()
    expect(page.get_by_text(re.compile(r"[\d,]+ selected"))).to_be_visible()
    page.get_by_role("button", name="Release and Invoice", exact=True).click()

    # the warning: ineligible events listed with reasons, downloadable, continue with the rest
    expect(page.get_by_text("cannot be fully processed", exact=False)).to_be_visible()
    expect(page.locator("[tabulator-field=rule_id]").nth(1)).to_be_visible()
    page.screenshot(path=artifacts / "dialog-warning.png")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    csv = download.value.path().read_text()
    assert csv.startswith("billing_event_id,name,stage,rule_id,severity,message")
    assert len(csv.splitlines()) > 1
    # Continue runs the whole selection; the run leaves out what cannot be released
    proceed = page.get_by_role(
        "button", name=re.compile(r"Continue with all [\d,]+ selected \([\d,]+ to release\)")
    )
    eligible = int(  # the events the run will release (each then gets a process log)
        re.search(r"\(([\d,]+) to release\)", proceed.inner_text()).group(1).replace(",", "")
    )
    proceed.click()

    # toast, live progress to completion, notifications as toasts
    started = toast(page, re.compile(r"Run \d+ started"))
    expect(started).to_be_visible()
    run_id = int(re.search(r"Run (\d+) started", started.inner_text()).group(1))
    assert run_id > served.first_run
    # the run left the ineligible events out: it completed with failures, and says so
    outcome = "completed with failures"
    expect(page.get_by_text(f"Run {run_id} · Release and Invoice · {outcome}")).to_be_visible()
    expect(toast(page, re.compile(rf"BEAR run {run_id} .*release finished"))).to_be_visible()
    expect(
        toast(page, re.compile(rf"BEAR run {run_id} .*finished with failures: [\d,]+ sales inv"))
    ).to_be_visible()
    expect(toast(page, f"Run {run_id} {outcome}: ")).to_be_visible()
    page.screenshot(path=artifacts / "progress-completed.png")

    # the run's detail: counts and per-event logs
    page.get_by_role("button", name="Open run details").click()
    expect(page.get_by_text(f"Run {run_id} — Release and Invoice")).to_be_visible()
    released = page.locator(".bear-card", has_text="Released").first
    expect(released).to_contain_text(f"{eligible:,}")
    expect(page.locator("[tabulator-field=status]", has_text="OK").first).to_be_visible()
    expect(pager(page, rf"\({eligible:,} events\)")).to_be_visible()
    page.get_by_role("button", name="ERROR").click()
    expect(pager(page, r"Page 1 of \d+ \(\d+ events\)")).to_be_visible()
    page.screenshot(path=artifacts / "run-detail.png")
    # what the release stage left out, each with its level in words; times in UTC
    page.locator(".bk-tab", has_text="App logs").first.click()
    level = page.locator(".tabulator-cell[tabulator-field=level_name]").filter(visible=True)
    expect(level.first).to_have_text(re.compile(r"^(error|warning)$"))
    expect(
        page.locator(".tabulator-cell[tabulator-field=level]").filter(visible=True)
    ).to_have_count(0)
    expect(
        page.locator(".tabulator-cell[tabulator-field=created_at]").filter(visible=True).first
    ).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"))


def test_selection_is_kept_across_pages(page: Page, served):
    open_dashboard(page, served.url)
    boxes = page.locator(".tabulator-row input[type=checkbox]")
    # each tick goes to the server and re-renders the page: wait for it before the next
    boxes.nth(0).click()
    expect(page.get_by_text("1 selected")).to_be_visible()
    boxes.nth(1).click()
    expect(page.get_by_text("2 selected")).to_be_visible()
    page.get_by_role("button", name="›").first.click()
    expect(pager(page, r"Page 2 of")).to_be_visible()
    expect(page.locator(".tabulator-row.tabulator-selected")).to_have_count(0)
    page.locator(".tabulator-row input[type=checkbox]").nth(0).click()
    expect(page.get_by_text("3 selected")).to_be_visible()
    page.get_by_role("button", name="‹").first.click()
    expect(pager(page, r"Page 1 of")).to_be_visible()
    expect(page.locator(".tabulator-row.tabulator-selected")).to_have_count(2)
    page.get_by_role("button", name="Clear selection").click()
    expect(page.get_by_text("No events selected", exact=False)).to_be_visible()


def test_a_page_loaded_or_selected_shows_its_first_row(page: Page, served):
    """Ticking every row of a page (Select all matching) used to scroll the table to the last
    row, and every page, sort or filter loaded after it kept that scroll: the first rows of the
    new order were out of view. The table now stays at its top."""
    open_dashboard(page, served.url)
    holder = page.locator(".tabulator-tableholder").filter(visible=True).first
    first = page.locator(".tabulator-row [tabulator-field=id]").first

    def at_top() -> None:
        page.wait_for_timeout(700)  # the table's own scrolls run after the rows are drawn
        assert holder.evaluate("e => e.scrollTop") == 0
        assert first.is_visible()

    page.get_by_role("button", name=re.compile(r"Select all [\d,]+ matching")).click()
    expect(page.get_by_text(re.compile(r"[\d,]+ selected")).first).to_be_visible()
    at_top()
    page.get_by_role("button", name="›").first.click()
    expect(pager(page, r"Page 2 of")).to_be_visible()
    at_top()
    shown = first.inner_text()
    page.locator(".tabulator-col[tabulator-field=summary_amount] .tabulator-col-title").click()
    expect(pager(page, r"Page 1 of")).to_be_visible()
    expect(first).not_to_have_text(shown)
    at_top()
    page.get_by_role("button", name="Clear selection").click()
    expect(page.get_by_text("No events selected", exact=False)).to_be_visible()
    at_top()


def test_deep_link_opens_the_run(page: Page, served):
    page.set_default_timeout(TIMEOUT)
    page.goto(f"{served.url}/?run={served.first_run}")
    expect(page.get_by_text(f"Run {served.first_run} — Release and Invoice")).to_be_visible()
    expect(page.locator(".bear-card", has_text="Released").first).to_contain_text(
        str(served.first_run_released)
    )
    expect(page.locator("[tabulator-field=document_number]").nth(1)).to_be_visible()


def test_settings_validation_message(page: Page, served):
    open_dashboard(page, served.url)
    tab(page, "Settings & Rules")
    field = page.locator(".bear-setting-release_batch_size input")
    field.fill("-5")
    field.press("Enter")
    expect(
        page.get_by_text(re.compile(r"✗ setting 'release_batch_size': '-5' is not allowed"))
    ).to_be_visible()
    field.fill("300")
    field.press("Enter")
    expect(page.get_by_text("✓ saved: 300")).to_be_visible()
    expect(page.get_by_text("SMTP password:", exact=False)).to_be_visible()
    # one click on a rule's tick disables it (disabled_rules), another enables it again
    # (the rules table's row: the settings history below the form names the rule too)
    rule_rows = page.locator(".tabulator-row", has_text="release.not_approved")
    enabled = rule_rows.filter(has=page.locator("[tabulator-field=enabled]")).first.locator(
        "[tabulator-field=enabled]"
    )
    enabled.click()
    expect(page.get_by_text("release.not_approved disabled")).to_be_visible()
    enabled.click()
    expect(page.get_by_text("release.not_approved enabled")).to_be_visible()


def test_notification_bell(page: Page, served):
    open_dashboard(page, served.url)
    bell = page.locator(".bear-bell button")
    expect(bell).to_have_text(re.compile(r"[1-9]\d*"))
    bell.click()
    expect(
        page.get_by_text(re.compile(rf"BEAR run {served.first_run} .*release finished"))
    ).to_be_visible()
    page.get_by_role("button", name="Mark all read").click()
    expect(bell).to_have_text("0")


def test_text_from_data_is_shown_not_executed(page: Page, served):
    open_dashboard(page, served.url)
    search(page, "onerror")
    cell = page.locator("[tabulator-field=account]", has_text=served.xss_name).first
    expect(cell).to_be_visible()
    accounts = page.locator(".choices").nth(1)  # the account filter lists the name too
    expect(accounts).not_to_have_class(re.compile(r"is-disabled"))
    accounts.click()
    expect(accounts.locator(".choices__item--choice", has_text=served.xss_name)).to_be_visible()
    assert page.evaluate("typeof window.__xss") == "undefined"


def test_the_project_filter_offers_every_project_once_the_page_is_shown(page: Page, served):
    """A served session's account and project choices (thousands in a big book) are sent
    after its first page of events, not in it; they then arrive and filter the grid."""
    open_dashboard(page, served.url)
    name = page.locator(".tabulator-row [tabulator-field=project]").first.inner_text()
    before = pager_label(page)
    box = page.locator(".choices").nth(2)  # company, account, project
    expect(box).not_to_have_class(re.compile(r"is-disabled"))  # its choices have arrived
    box.click()
    box.locator("input.choices__input").first.fill(name)
    box.locator(".choices__item--choice", has_text=name).first.click()
    expect(pager(page, r"Page \d+ of")).not_to_have_text(before)
    # the label can move first for another reason (a run of an earlier test finishing): wait
    # for the rows themselves
    cells = page.locator(".tabulator-row [tabulator-field=project]")
    expect(cells.filter(has_not_text=re.compile(rf"^\s*{re.escape(name)}\s*$"))).to_have_count(0)
    shown = cells.all_inner_texts()
    assert shown and set(shown) == {name}


def test_screenshot_of_every_tab(page: Page, served, artifacts):
    open_dashboard(page, served.url)
    page.wait_for_timeout(500)
    for i, name in enumerate(TABS):
        tab(page, name)
        expect(page.locator(".bk-tab.bk-active", has_text=name).first).to_be_visible()
        page.wait_for_timeout(700)
        slug = name.lower().replace(" & ", "-").replace(" ", "-")
        page.screenshot(path=artifacts / f"tab-{i + 1}-{slug}.png")
