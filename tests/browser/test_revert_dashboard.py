"""Reverting billing from the served dashboard in headless Chromium: the Invoiced view with
each event's document, Revert billing with a required reason, the reversing credit note on
the Documents tab, the event back in Awaiting Release with its history, and Post.
"""

from __future__ import annotations

import re
import shutil

import pytest
from conftest import USER
from netutil import serving
from playwright.sync_api import Page, expect

import bear

pytestmark = [
    pytest.mark.browser,
    pytest.mark.filterwarnings("ignore::pytest.PytestRemovedIn10Warning"),
]

TIMEOUT = 30_000


@pytest.fixture(scope="module")
def invoiced(demo_path, tmp_path_factory):
    """A served copy of the demo book with 6 more invoiced USD events (sales invoices): the
    documents of the first 3 posted (complete), the other 3 still in progress."""
    folder = tmp_path_factory.mktemp("revert-dash")
    path = folder / "book.duckdb"
    shutil.copy(demo_path, path)
    with bear.connect(path) as ws:
        ids = ws.awaiting_release(eligibility="eligible", currency="USD", min_amount=1).ids()[:6]
        run = ws.release_and_invoice(ids, user=USER, timeout=60)
        assert run.status == "completed" and run.sales_invoices == 6
        docs = ws.documents(run_id=run.id).sort_values("billing_event_id")
        ws.post(docs.id.tolist()[:3], user=USER)
        posted = docs.iloc[0].copy()
        posted["event_name"] = ws.events(ids=[int(posted.billing_event_id)]).page().name.iloc[0]
        unposted = docs.iloc[5].copy()
        every = ws.documents()  # the documents a search for its number finds
        unposted["matches"] = int(every.number.str.contains(unposted.number, regex=False).sum())
    with serving(path, "--user", USER) as url:
        yield url, posted, unposted


def pager(page: Page, pattern: str):
    return page.get_by_text(re.compile(pattern)).filter(visible=True).first


def tab(page: Page, name: str) -> None:
    page.locator(".bk-tab", has_text=name).first.click()


def search(page: Page, text: str) -> None:
    box = page.get_by_placeholder("event, project or account name, or event id")
    box.fill(text)
    box.press("Enter")


def visible(page: Page, selector: str):
    return page.locator(selector).filter(visible=True)


def test_revert_from_the_dashboard(page: Page, invoiced, artifacts):
    url, posted, _ = invoiced
    page.set_default_timeout(TIMEOUT)
    page.goto(url)
    expect(pager(page, r"Page 1 of")).to_be_visible()

    # the Invoiced view lists events with their document's number, type, status and date
    tab(page, "Invoiced")
    expect(pager(page, r"\([\d,]+ events\)")).to_be_visible()
    expect(visible(page, "[tabulator-field=document_number]").first).to_be_visible()
    search(page, str(posted.number))  # a document number finds its event
    expect(
        visible(page, "[tabulator-field=document_number]").filter(has_text=str(posted.number)).first
    ).to_be_visible()
    search(page, str(posted.event_name))
    expect(pager(page, r"\(1 events?\)")).to_be_visible()
    rows = visible(page, ".tabulator-row")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(str(posted.event_name))
    rows.first.locator("input[type=checkbox]").click()
    expect(page.get_by_text("1 selected")).to_be_visible()
    page.get_by_role("button", name="Revert billing").filter(visible=True).click()

    # the dialog: the revert rules' verdict, what it creates, and a reason it requires
    expect(page.get_by_text("All 1 selected events are eligible.")).to_be_visible()
    expect(
        page.get_by_text("Reversing credit notes").or_(page.get_by_text("Reversing sales invoices"))
    ).to_be_visible()
    proceed = page.get_by_role("button", name=re.compile(r"Continue: Revert billing"))
    proceed.click()
    expect(page.get_by_text("give a reason", exact=False)).to_be_visible()
    page.get_by_placeholder(re.compile("Why are these events reverted")).fill(
        "Wrong hours on the invoice — re-bill after the timesheet fix"
    )
    page.screenshot(path=artifacts / "revert-dialog.png")
    proceed.click()
    started = page.locator(".notyf__message", has_text=re.compile(r"Run \d+ started")).first
    expect(started).to_be_visible()
    run_id = int(re.search(r"Run (\d+) started", started.inner_text()).group(1))
    expect(page.get_by_text(f"Run {run_id} · Revert billing · completed")).to_be_visible()

    # the reversing document, pointing at the original, on the Documents tab
    tab(page, "Documents")
    page.get_by_label("Run").fill(str(run_id))
    page.get_by_label("Run").press("Enter")
    reverses = visible(page, "[tabulator-field=reverses_document_id]").filter(
        has_text=re.compile(r"^\s*" + str(int(posted.id)) + r"\s*$")
    )
    expect(reverses).to_have_count(1)
    page.screenshot(path=artifacts / "revert-documents.png")

    # the event is back in Awaiting Release, and its row's detail shows the whole chain
    tab(page, "Awaiting Release")
    rows = visible(page, ".tabulator-row")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(str(posted.event_name))
    rows.first.locator(".tabulator-cell", has_text="►").click()
    lineage = page.locator(".bear-lineage").filter(visible=True).first
    expect(lineage).to_contain_text("Released")
    expect(lineage).to_contain_text("Invoiced")
    expect(lineage).to_contain_text("Reverted")
    expect(lineage).to_contain_text(str(posted.number))
    expect(lineage).to_contain_text("Wrong hours on the invoice")
    page.screenshot(path=artifacts / "revert-history.png")


def test_post_from_the_documents_tab(page: Page, invoiced):
    url, _, unposted = invoiced
    page.set_default_timeout(TIMEOUT)
    page.goto(url)
    expect(pager(page, r"Page 1 of")).to_be_visible()
    tab(page, "Documents")
    page.get_by_label("Number or account").fill(str(unposted.number))
    page.get_by_label("Number or account").press("Enter")
    # tick only once the search's rows are shown (a tick is a row position on the page)
    expect(pager(page, rf"\({unposted.matches} documents?\)")).to_be_visible()
    doc_id = page.locator(
        "[tabulator-field=id]", has_text=re.compile(rf"^\s*{int(unposted.id)}\s*$")
    )
    row = visible(page, ".tabulator-row").filter(has=doc_id)
    expect(row.first).to_contain_text("in_progress")
    row.first.locator("input[type=checkbox]").click()
    page.get_by_role("button", name="Post 1 ticked").click()
    expect(page.locator(".notyf__message", has_text="Posted 1 document").first).to_be_visible()
    expect(row.first).to_contain_text("complete")
