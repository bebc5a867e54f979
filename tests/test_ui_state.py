"""The dashboard's state classes, driven without a browser (bear.ui.state).

Filters → SQL-paged grid, keyset paging equal to OFFSET paging, sorting, selection kept as
ids across pages, "select all" as a filter, totals, the Release and Invoice flow (warning,
confirmation, validation skipped), progress and cancel, runs, documents, notifications,
settings validation, rule toggles, deep links; and the views build and render.
"""

from __future__ import annotations

import io
import warnings
from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pytest

import bear
from bear.errors import BearError
from bear.selection import Selection
from bear.ui.state import (
    PAGE_SIZE,
    ActionFlow,
    DocumentsState,
    FilterState,
    GridState,
    NotificationState,
    RunProgress,
    RunsState,
    SettingsState,
    display_frame,
    eligibility_ready,
    filter_options,
    parse_run_link,
    resolve_user,
)

USER = "ana@example.com"


@pytest.fixture
def grid(demo_ws):
    g = GridState(demo_ws, FilterState())
    g.refresh()
    return g


def offset_ids(ws, kind, sort, start, n=PAGE_SIZE, **filters):
    sel = ws.selection(kind, bear.selection.Filters.build(**filters))
    return [int(i) for i in sel.page(start, n, sort)["id"]]


# -- filters, page, sort ------------------------------------------------------------------------
def test_filters_drive_count_page_and_cards(demo_ws, grid):
    assert grid.total == len(demo_ws.awaiting_release())
    grid.filter_state.currency = ["EUR"]
    expected = demo_ws.awaiting_release(currency="EUR")
    assert grid.total == len(expected) > 0
    assert set(grid.rows["currency"]) == {"EUR"}
    assert len(grid.rows) == min(PAGE_SIZE, grid.total)
    totals = expected.totals()
    assert grid.cards["events"] == grid.total
    assert dict(grid.cards["amounts"]) == {r.currency: r.amount for r in totals.itertuples()}
    assert grid.cards["projects"] == len(
        set(
            demo_ws.sql(
                "SELECT project_id FROM billing_events WHERE NOT released AND currency = 'EUR'"
            )["project_id"]
        )
    )
    grid.filter_state.search = "Acme"
    assert grid.total == len(demo_ws.awaiting_release(currency="EUR", search="Acme"))
    grid.filter_state.reset()
    assert grid.total == len(demo_ws.awaiting_release())


def test_every_filter_is_accepted(demo_ws, grid):
    import datetime as dt

    opts = filter_options(demo_ws)
    fs = grid.filter_state
    fs.param.update(
        company=[next(iter(opts["company"].values()))],
        account=list(opts["account"].values())[:5],
        project=list(opts["project"].values())[:40],
        region=opts["region"][:1],
        practice=opts["practice"][:3],
        grp=opts["grp"][:3],
        currency=opts["currency"],
        date_from=dt.date(2025, 1, 1),
        date_to=dt.date(2027, 1, 1),
        min_amount=-1e9,
        max_amount=1e9,
        category=["timecard", "expense"],
        search="e",
    )
    assert grid.error == ""
    f = fs.filters()
    assert f.min_amount == Decimal("-1000000000.0") and f.category == ("timecard", "expense")
    assert grid.total == len(demo_ws.selection("awaiting_release", f))


@pytest.mark.parametrize("kind", ["awaiting_release", "awaiting_invoice"])
def test_costly_filters_match_the_selection(demo_ws, kind):
    """Category (answered from category masks) and free text (ids found once) give exactly
    the rows of the core's selection."""
    demo_ws.release(demo_ws.awaiting_release(eligibility="eligible").ids()[:300], user=USER)
    g = GridState(demo_ws, FilterState(), kind=kind)
    g.refresh()
    select = demo_ws.awaiting_release if kind == "awaiting_release" else demo_ws.awaiting_invoice
    for filters in (
        {"category": ["expense"]},
        {"category": ["milestone", "budget"]},
        {"category": ["timecard"], "search": "a"},
        {"search": "Stark", "currency": ["USD"]},
        {"search": "BE-00001"},
    ):
        g.filter_state.reset()
        g.filter_state.param.update(**filters)
        expected = select(**filters)
        assert g.total == len(expected), filters
        assert g.row_ids == [int(i) for i in expected.page(0, PAGE_SIZE)["id"]], filters
        assert g.ineligible == len(select(**filters, eligibility="ineligible")), filters


def test_invalid_filters_are_reported_not_raised(grid):
    grid.filter_state.param.update(min_amount=10, max_amount=5)
    assert "min_amount" in grid.filter_state.error
    assert grid.error


@pytest.mark.parametrize(
    "sort_by, desc",
    [
        ("id", False),
        ("id", True),
        ("summary_amount", True),
        ("account", False),
        ("invoice_date", True),
    ],
)
def test_keyset_pages_equal_offset_pages(demo_ws, grid, sort_by, desc):
    grid.sort(sort_by, desc)
    sort = [(sort_by, "desc" if desc else "asc")]
    assert grid.row_ids == offset_ids(demo_ws, "awaiting_release", sort, 0)
    for target in (1, 2, 3):
        grid.next_page()
        assert grid.pager.last_method == "keyset-next"
        assert grid.row_ids == offset_ids(demo_ws, "awaiting_release", sort, target * PAGE_SIZE)
    grid.previous_page()
    assert grid.pager.last_method == "keyset-previous"
    assert grid.row_ids == offset_ids(demo_ws, "awaiting_release", sort, 2 * PAGE_SIZE)
    grid.last_page()
    last = grid.pages - 1
    assert grid.page == last and grid.pager.last_method == "last"
    assert grid.row_ids == offset_ids(demo_ws, "awaiting_release", sort, last * PAGE_SIZE)
    grid.previous_page()
    assert grid.row_ids == offset_ids(demo_ws, "awaiting_release", sort, (last - 1) * PAGE_SIZE)
    grid.goto(7)
    assert grid.pager.last_method == "offset"
    assert grid.row_ids == offset_ids(demo_ws, "awaiting_release", sort, 7 * PAGE_SIZE)


def test_sort_is_whitelisted_and_resets_to_first_page(grid):
    grid.goto(3)
    grid.sort("summary_amount", True)
    assert grid.page == 0
    amounts = list(grid.rows["summary_amount"])
    assert amounts == sorted(amounts, reverse=True)
    with pytest.raises(BearError):
        grid.sort("summary_amount; DROP TABLE billing_events", False)


def test_page_is_display_ready(grid):
    frame = grid.rows
    assert frame["summary_amount"].dtype == float
    assert not any(isinstance(v, Decimal) for col in frame for v in frame[col])
    assert {"eligibility", "reasons"} <= set(frame.columns)


def test_eligibility_column_gives_first_reason(demo_ws, grid):
    table = demo_ws.eligibility("awaiting_release").set_index("billing_event_id")
    for eid, text, n in zip(
        grid.rows["id"], grid.rows["eligibility"], grid.rows["reasons"], strict=True
    ):
        if eid in table.index:
            assert text == table.loc[eid, "first_message"] and n == table.loc[eid, "reasons"]
        else:
            assert text == "eligible" and n == 0
    bad = next(int(i) for i in grid.rows["id"] if i in table.index)
    reasons = grid.reasons(bad)
    assert len(reasons) >= table.loc[bad, "reasons"]
    assert set(reasons.columns) == {"stage", "rule_id", "severity", "message"}


def test_cold_eligibility_judges_only_the_page_and_warms_in_background(demo_ws):
    jobs = []
    g = GridState(demo_ws, FilterState(), background=jobs.append)
    demo_ws.refresh()  # drop the cached eligibility
    assert not eligibility_ready(demo_ws, "awaiting_release")
    g.refresh()
    assert g.rows is not None and g.ineligible is None and len(jobs) == 1
    cold = list(g.rows["eligibility"])
    jobs.pop()()  # the background warm-up
    assert eligibility_ready(demo_ws, "awaiting_release") and g.ineligible is not None
    g.goto(0)
    assert list(g.rows["eligibility"]) == cold
    assert g.ineligible == len(demo_ws.awaiting_release(eligibility="ineligible"))


def test_eligibility_filter(demo_ws, grid):
    grid.filter_state.eligibility = "ineligible"
    assert grid.total == len(demo_ws.awaiting_release(eligibility="ineligible")) > 0
    assert "eligible" not in set(grid.rows["eligibility"])
    assert grid.ineligible == grid.total
    grid.filter_state.eligibility = "release.not_approved"
    assert grid.total == len(demo_ws.awaiting_release(eligibility="release.not_approved")) > 0


# -- selection ------------------------------------------------------------------------------------
def test_selection_is_kept_as_ids_across_pages(grid):
    first = list(grid.row_ids)
    grid.set_page_selection([0, 2])
    grid.next_page()
    second = list(grid.row_ids)
    grid.set_page_selection([1])
    assert grid.selected_count == 3
    grid.previous_page()
    assert grid.page_selection() == [0, 2]
    assert grid.selection() == sorted([first[0], first[2], second[1]])
    grid.set_page_selection([2])  # untick one on this page
    assert grid.selection() == sorted([first[2], second[1]])
    totals = grid.selection_totals
    assert int(totals["events"].sum()) == 2
    grid.clear_selection()
    assert grid.selection() is None and grid.selected_count == 0


def test_select_all_keeps_the_filter_not_the_ids(demo_ws, grid):
    grid.filter_state.currency = ["GBP"]
    grid.select_all_matching()
    sel = grid.selection()
    assert isinstance(sel, Selection) and sel.filters.currency == ("GBP",)
    assert grid.selected_count == grid.total
    assert grid.page_selection() == list(range(len(grid.row_ids)))
    grid.next_page()
    assert grid.page_selection() == list(range(len(grid.row_ids)))
    gone = grid.row_ids[0]
    grid.set_page_selection(range(1, len(grid.row_ids)))
    assert grid.selected_count == grid.total - 1
    sel = grid.selection()  # still the filter, now with the unticked row left out
    assert isinstance(sel, Selection) and sel.filters.exclude_ids == (gone,)
    ids = sel.ids()
    assert gone not in ids and len(ids) == len(sel) == grid.total - 1
    assert int(grid.selection_totals["events"].sum()) == grid.total - 1
    # a new filter drops "select all" (it meant the old filter)
    grid.filter_state.currency = ["EUR"]
    assert not grid.select_all and grid.selection() is None


def test_ticked_ids_survive_a_filter_change(grid):
    grid.set_page_selection([0])
    kept = grid.row_ids[0]
    grid.filter_state.search = "zzz-no-such-event"
    assert grid.total == 0 and grid.selection() == [kept]


# -- the Release and Invoice flow ----------------------------------------------------------------
def _select_mixed(grid):
    """Tick a page that has both eligible and ineligible events."""
    for _ in range(grid.pages):
        elig = list(grid.rows["eligibility"])
        if "eligible" in elig and any(e != "eligible" for e in elig):
            grid.set_page_selection(range(len(grid.row_ids)))
            return
        grid.next_page()
    raise AssertionError("no page with both eligible and ineligible events")


def test_warning_then_continue_runs_the_whole_selection(demo_ws, grid):
    _select_mixed(grid)
    flow = ActionFlow(demo_ws, grid, USER)
    flow.open("release_and_invoice")
    pv = flow.preview
    assert flow.phase == "warning" and pv.validated and pv.ineligible > 0
    block = pv.violations[pv.violations.severity == "block"]
    rows = flow.violations.rows
    assert flow.violations.total == len(block) and flow.violations.pages == 1
    assert set(rows["billing_event_id"]) == set(block.billing_event_id)
    csv = pd.read_csv(flow.violations_csv())
    assert {"billing_event_id", "rule_id", "message"} <= set(csv.columns) and len(csv) == len(rows)
    run_id = flow.proceed()
    assert flow.phase == "started" and run_id is not None
    assert grid.selection() is None  # a started run clears the selection
    result = demo_ws.runner.wait(run_id, timeout=60)
    assert result.status == "completed"
    # the whole selection: the run leaves out the release-ineligible itself, an app log each
    assert result.selected == pv.selected and result.released == pv.releasable
    assert result.excluded == result.not_released == pv.selected - pv.releasable
    assert len(demo_ws.app_logs(run_id)) == result.excluded
    assert result.documents == pv.eligible


def test_confirm_when_everything_is_eligible_and_nothing_when_none(demo_ws, grid):
    grid.filter_state.eligibility = "eligible"
    grid.set_page_selection([0, 1, 2])
    flow = ActionFlow(demo_ws, grid, USER)
    flow.open("release")
    assert flow.phase == "confirm" and flow.preview.eligible == 3
    grid.clear_selection()
    # "nothing" means nothing can even start: every event is blocked at release (events that
    # can be released but not invoiced are run, and logged as errors: see the test above)
    grid.filter_state.eligibility = "release.not_approved"
    grid.set_page_selection([0, 1])
    flow.open("release_and_invoice")
    assert flow.phase == "nothing" and flow.preview.releasable == 0
    assert flow.proceed() is None
    flow.close()
    assert flow.phase == "idle"


def test_validation_skipped_above_the_limit(demo_ws, grid):
    demo_ws.settings.update(validation_limit=10)
    grid.select_all_matching()
    flow = ActionFlow(demo_ws, grid, USER)
    flow.open("release_and_invoice")
    assert flow.phase == "unvalidated" and "validation_limit" in flow.message
    flow.validate_all()
    assert flow.phase == "warning" and flow.preview.validated
    assert flow.preview.selected == grid.total


def test_preview_only_and_empty_selection(demo_ws, grid):
    flow = ActionFlow(demo_ws, grid, USER)
    flow.open("release_and_invoice")
    assert flow.phase == "error" and "Select" in flow.message
    grid.set_page_selection([0, 1])
    flow.open("release_and_invoice", preview_only=True)
    assert flow.phase == "preview"
    assert set(flow.expected_documents().columns) >= {"doc_type", "currency", "count", "total"}


def test_background_preview_does_not_run_inline(demo_ws, grid):
    jobs = []
    grid.set_page_selection([0])
    flow = ActionFlow(demo_ws, grid, USER, background=jobs.append)
    flow.open("release")
    assert flow.phase == "working" and len(jobs) == 1
    jobs.pop()()
    assert flow.phase in ("confirm", "warning", "nothing")


def test_progress_and_notifications_of_a_run(demo_ws, grid):
    notes = NotificationState(demo_ws, USER)
    assert notes.poll() == []
    grid.filter_state.eligibility = "eligible"
    grid.set_page_selection(range(10))
    flow = ActionFlow(demo_ws, grid, USER)
    flow.open("release_and_invoice")
    run_id = flow.proceed()
    progress = RunProgress(demo_ws)
    progress.watch_run(run_id)
    demo_ws.runner.wait(run_id, timeout=60)
    assert progress.poll() is False
    assert progress.finished and progress.status == "completed" and progress.fraction == 1.0
    assert progress.released == 10 and progress.documents == 10
    assert f"Run {run_id}" in progress.summary()
    new = notes.poll()
    assert {n["kind"] for n in new} == {"release_finished", "invoicing_finished"}
    assert all(n["run_id"] == run_id for n in new)
    assert notes.unread == 2 and notes.poll() == []
    # a poll that finds nothing new leaves the bell alone: nothing is sent to the browser
    shown = notes.items
    assert notes.poll() == [] and notes.items is shown
    # read in another session (another tab of the same person): this bell follows
    other = NotificationState(demo_ws, USER)
    assert other.mark_read() == 2 and other.unread == 0
    assert notes.poll() == [] and notes.unread == 0
    assert set(notes.items["status"]) == {"read"}
    # the grid notices the data changed and reloads
    assert grid.refresh_if_stale() is True


def test_release_then_invoice_from_the_awaiting_invoice_grid(demo_ws):
    filters = FilterState(currency=["EUR"])
    release = GridState(demo_ws, filters, kind="awaiting_release")
    invoice = GridState(demo_ws, filters, kind="awaiting_invoice")
    release.refresh()
    invoice.refresh()
    before = invoice.total
    filters.eligibility = "eligible"
    release.set_page_selection(range(20))
    flow = ActionFlow(demo_ws, release, USER)
    flow.open("release")
    assert flow.phase == "confirm"
    result = demo_ws.runner.wait(flow.proceed(), timeout=60)
    assert result.status == "completed" and result.released == 20 and result.documents == 0
    filters.eligibility = ""
    assert invoice.refresh_if_stale() or invoice.total
    invoice.refresh()
    assert invoice.total == before + 20
    assert "eligibility" in invoice.rows.columns
    invoice.select_all_matching()
    iflow = ActionFlow(demo_ws, invoice, USER)
    iflow.open("invoice")
    pv = iflow.preview
    assert iflow.phase in ("confirm", "warning") and pv.eligible >= 20
    assert set(pv.violations["stage"]) <= {"invoice"}
    result = demo_ws.runner.wait(iflow.proceed(), timeout=60)
    assert result.action == "invoice" and result.status == "completed"
    assert result.documents == pv.eligible
    invoice.refresh_if_stale()
    assert invoice.total == before + 20 - pv.eligible


def test_rate_and_eta_from_samples():
    from bear.models import RunResult

    class Stub:
        def __init__(self) -> None:
            self.results: list[RunResult] = []

        def run(self, run_id: int) -> RunResult:
            return self.results.pop(0)

    def r(stage: str, released: int = 0, done: int = 0, status: str = "running") -> RunResult:
        return RunResult(
            1,
            "release_and_invoice",
            USER,
            status,
            stage,
            selected=1000,
            batches=10,
            batches_done=released // 100,
            released=released,
            invoice_total=1000 if stage != "release" else 0,
            invoice_done=done,
            sales_invoices=done,
        )

    stub = Stub()
    stub.results = [
        r("release", 200),
        r("release", 600),
        r("invoice", 1000, 250),
        r("done", 1000, 1000, "completed"),
    ]
    p = RunProgress(stub)  # type: ignore[arg-type]
    p.run_id = 1
    assert p.poll(now=10.0) and p.rate is None and p.fraction == 0.1
    assert p.poll(now=12.0)
    assert p.rate == 200.0 and p.eta_s == 2.0 and p.fraction == 0.3  # 400 events in 2 s
    assert p.poll(now=13.0) and p.stage == "invoice" and p.rate is None  # a new stage
    assert p.fraction == 0.625 and p.documents == 250
    assert not p.poll(now=14.0) and p.finished and p.fraction == 1.0 and p.eta_s == 0.0
    assert RunProgress.stage_work(r("release", 600)) == ("release", 600, 1000)


def test_cancel_stops_a_run_at_a_batch_boundary(demo_ws, grid):
    demo_ws.settings.update(release_batch_size=1)  # thousands of batches: time to cancel
    grid.filter_state.eligibility = "eligible"
    grid.select_all_matching()
    flow = ActionFlow(demo_ws, grid, USER)
    flow.open("release")
    run_id = flow.proceed()
    progress = RunProgress(demo_ws)
    progress.watch_run(run_id)
    assert not progress.finished
    assert "Cancelling" in progress.cancel()
    result = demo_ws.runner.wait(run_id, timeout=60)
    assert result.status == "cancelled" and result.released < result.selected
    progress.poll()
    assert progress.finished and progress.status == "cancelled"
    assert "already finished" in progress.cancel()


# -- runs and documents ----------------------------------------------------------------------------
@pytest.fixture
def finished_run(demo_ws):
    sel = demo_ws.awaiting_release(currency="EUR")
    demo_ws.settings.update(release_batch_size=100)
    return demo_ws.release_and_invoice(sel, user=USER, timeout=120)


def test_runs_list_detail_logs_and_downloads(demo_ws, finished_run):
    runs = RunsState(demo_ws)
    assert finished_run.id in set(runs.runs["id"])
    assert runs.open(finished_run.id)
    assert runs.result.status == "completed"
    assert len(runs.batches) == finished_run.batches
    # the invoicing stage processes the released events: a document or an ERROR log each
    processed = finished_run.released
    assert runs.process.total == processed
    assert len(runs.process.rows) == min(PAGE_SIZE, processed)
    runs.log_status = "ERROR"
    assert runs.process.total == finished_run.not_passed - finished_run.not_released
    assert set(runs.process.rows["status"]) <= {"ERROR"}
    runs.log_status = "all"
    runs.process.goto(1)
    assert runs.process.page == 1 and runs.process.pager.last_method == "keyset-next"
    assert runs.app.total == len(demo_ws.app_logs(run_id=finished_run.id))
    csv = pd.read_csv(runs.download("process_logs", "csv"))
    assert len(csv) == processed
    xlsx = pd.read_excel(runs.download("app_logs", "xlsx"), engine="openpyxl")
    assert len(xlsx) == runs.app.total
    docs = pd.read_csv(runs.download("documents", "csv"))
    assert len(docs) == finished_run.sales_invoices + finished_run.credit_notes
    assert runs.filename("process_logs", "csv") == f"bear-run-{finished_run.id}-process-logs.csv"
    assert not runs.open(999_999) and "999999" in runs.error


def test_documents_paged_filtered_with_lines(demo_ws, finished_run):
    docs = DocumentsState(demo_ws)
    total = int(demo_ws.sql("SELECT count(*) AS n FROM documents")["n"][0])
    assert docs.total == total and len(docs.rows) == min(PAGE_SIZE, total)
    ids = list(docs.row_ids)
    assert ids == sorted(ids, reverse=True)
    docs.next_page()
    assert docs.pager.last_method == "keyset-next" and max(docs.row_ids) < min(ids)
    docs.last_page()
    assert docs.page == docs.pages - 1
    docs.run_id = finished_run.id
    assert docs.total == finished_run.sales_invoices + finished_run.credit_notes
    docs.doc_type = "SCN"
    assert docs.total == finished_run.credit_notes
    docs.param.update(
        doc_type="all",
        run_id=None,
        search=str(docs.rows["number"].iloc[0] if len(docs.rows) else "SIN"),
    )
    assert docs.total >= 1
    lines = docs.open_lines(docs.row_ids[0])
    assert len(lines) >= 1 and "amount" in lines.columns
    assert len(pd.read_csv(docs.download("csv"))) == docs.total
    assert len(pd.read_excel(docs.download("xlsx"), engine="openpyxl")) == docs.total


def test_a_refresh_that_changes_nothing_on_the_page_leaves_the_table_alone(demo_ws, finished_run):
    """A change elsewhere (a run, another analyst) makes every open page read its rows again.
    Rows equal to those shown are not sent again: the browser keeps its scroll position and a
    tick it has not yet told the server of (it was lost when the table was redrawn)."""
    from bear.ui.views.documents import DocumentsView
    from bear.ui.views.grid import EventGrid

    docs = DocumentsState(demo_ws)
    view = DocumentsView(docs)
    grid = GridState(demo_ws, FilterState())
    grid.refresh()
    events = EventGrid(grid, ActionFlow(demo_ws, grid, user=USER), on_started=lambda run_id: None)
    sent: list[str] = []
    for table in (view.table, events.table):
        table.param.watch(lambda e: sent.append(e.name), "value")
    scrolled: list[int] = []
    events.to_top = lambda: scrolled.append(1)
    demo_ws.refresh()  # the data changed: each page reads its rows again
    assert docs.refresh_if_stale() and grid.refresh_if_stale()
    assert sent == [] and scrolled == []
    # a change on the page is shown, and the grid starts at its first row
    docs.search = str(docs.rows["number"].iloc[-1])
    grid.next_page()
    assert sent == ["value", "value"] and scrolled == [1]
    assert list(view.table.value["number"]) == list(docs.rows["number"])


# -- settings and rules ------------------------------------------------------------------------------
def test_settings_validation_messages(demo_ws):
    s = SettingsState(demo_ws, env={})
    ok, msg = s.save("release_batch_size", "-5")
    assert not ok and "release_batch_size" in msg and "≥ 1" in msg
    assert demo_ws.settings.release_batch_size == 200
    assert s.messages["release_batch_size"] == (False, msg)
    ok, msg = s.save("release_batch_size", "500")
    assert ok and demo_ws.settings.release_batch_size == 500
    ok, msg = s.save("additional_notification_recipients", "a@example.com, not-an-address")
    assert not ok and "not-an-address" in msg
    ok, _ = s.save("additional_notification_recipients", "a@example.com, b@example.com")
    assert ok and demo_ws.settings.additional_notification_recipients == [
        "a@example.com",
        "b@example.com",
    ]
    assert s.value_text("additional_notification_recipients") == "a@example.com, b@example.com"
    assert {i["name"] for i in s.items} >= {"smtp_host", "validation_limit", "rules_file"}
    assert not s.password_set
    assert SettingsState(demo_ws, env={"BEAR_SMTP_PASSWORD": "x"}).password_set
    assert all("password" not in i["name"] for i in s.items)


def test_rule_toggle_writes_disabled_rules(demo_ws):
    s = SettingsState(demo_ws)
    ok, _ = s.set_rule_enabled("release.not_approved", False)
    assert ok and "release.not_approved" in demo_ws.settings.disabled_rules
    assert not bool(s.rules.set_index("id").loc["release.not_approved", "enabled"])
    ok, _ = s.set_rule_enabled("release.not_approved", True)
    assert ok and "release.not_approved" not in demo_ws.settings.disabled_rules


def test_broken_rules_file_is_shown_plainly(demo_ws, tmp_path):
    bad = tmp_path / "rules.toml"
    bad.write_text(
        '[[rule]]\nid = "acme.x"\nstage = "release"\nwhen = "summary_amount <"\nmessage = "m"\n'
    )
    s = SettingsState(demo_ws)
    ok, msg = s.save("rules_file", str(bad))
    assert not ok and "rules.toml" in msg
    assert demo_ws.settings.rules_file == ""
    assert not s.rules_ok and s.rules_message == msg


def test_test_email(demo_ws, smtp_server):
    host, port, inbox = smtp_server
    s = SettingsState(demo_ws)
    ok, msg = s.send_test_email(USER)
    assert not ok and "smtp_host" in msg
    demo_ws.settings.update(smtp_host=host, smtp_port=port)
    ok, msg = s.send_test_email(USER)
    assert ok and s.test_ok, msg
    rcpt, message = inbox.wait_for(1)[0]
    assert rcpt == [USER] and message["Subject"] == "BEAR test e-mail"
    ok, msg = s.send_test_email("not an address")
    assert not ok and "not a valid e-mail address" in msg


def test_test_email_unreachable_server(demo_ws):
    from netutil import free_port

    demo_ws.settings.update(smtp_host="127.0.0.1", smtp_port=free_port())
    ok, msg = SettingsState(demo_ws).send_test_email(USER)
    assert not ok and "could not send through 127.0.0.1" in msg


# -- small pieces ------------------------------------------------------------------------------------
def test_deep_link_parsing():
    assert parse_run_link({"run": [b"12"]}) == 12
    assert parse_run_link({"run": "7"}) == 7
    assert parse_run_link({"run": ["x"]}) is None
    assert parse_run_link({"run": "-3"}) is None
    assert parse_run_link({"theme": "dark"}) is None
    assert parse_run_link(None) is None


def test_current_user_precedence():
    assert resolve_user("sso@example.com", "cli", {"BEAR_USER": "env"}) == "sso@example.com"
    assert resolve_user(None, "cli", {"BEAR_USER": "env"}) == "cli"
    assert resolve_user(None, None, {"BEAR_USER": "env"}) == "env"
    assert resolve_user(None, None, {}) == "analyst"


def test_display_frame_has_no_decimals_or_nans():
    frame = pd.DataFrame(
        {"amount": [Decimal("1.50"), None], "ref": [1.0, float("nan")], "name": ["a", None]}
    )
    out = display_frame(frame)
    assert list(out["amount"][:1]) == [1.5]
    assert list(out["ref"]) == [1, ""] and list(out["name"]) == ["a", ""]


# -- the views build and render (no browser) ---------------------------------------------------------
def test_dashboard_builds_and_renders(demo_ws, finished_run):
    from bokeh.document import Document

    from bear.ui.dashboard import RUNS, Dashboard

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dash = Dashboard(demo_ws, USER, run_link=finished_run.id, background=None, poll=False)
        assert dash.tabs.active == RUNS and dash.runs.run_id == finished_run.id
        dash.template().server_doc(Document())
        dash.release_view.table.selection = [0, 1]
        assert dash.release_grid.selected_count == 2
        dash.release_view.dialog.show("release_and_invoice")
        assert dash.release_flow.phase in ("confirm", "warning", "nothing")
        dash.tick()


def test_a_card_updated_on_a_hidden_tab_keeps_every_stylesheet_on_the_server(demo_ws):
    # Measured: the ineligible count landing while Settings & Rules was shown rewrote the
    # page's shared loading stylesheet to Panel's CDN (a pane of a tab taken out of the
    # document has no document to read the server's address from), which the browser's
    # Content-Security-Policy then refused 130 times.
    from bokeh.document import Document
    from bokeh.models import ImportedStyleSheet
    from panel.io.resources import CDN_DIST, LOCAL_DIST, patch_model_css
    from panel.io.state import set_curdoc

    from bear.ui.dashboard import SETTINGS, Dashboard

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dash = Dashboard(demo_ws, USER, background=None, poll=False)
        doc = Document()
        dash.template().server_doc(doc)
        doc._template_variables["dist_url"] = LOCAL_DIST  # as the served page sets it
        for root in doc.roots:
            patch_model_css(root, dist_url=LOCAL_DIST)

        def from_cdn() -> list[str]:
            urls = [m.url for m in doc.models if isinstance(m, ImportedStyleSheet)]
            return [u for u in urls if u.startswith(CDN_DIST)]

        assert from_cdn() == []
        dash.tabs.active = SETTINGS
        with set_curdoc(doc):  # the count arrives meanwhile, in the session
            dash.release_grid.ineligible = 12_345
        assert "12,345" in dash.release_view.cards.object
        assert from_cdn() == []


def test_notebook_views(demo_ws, finished_run):
    import panel as pn
    from bokeh.document import Document

    def renders(obj):
        assert isinstance(obj, pn.viewable.Viewable | pn.viewable.Viewer)
        pn.panel(obj).get_root(Document())
        return True

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert renders(demo_ws.dashboard("run", run_id=finished_run.id))
        assert renders(demo_ws.dashboard("awaiting_release", currency="EUR"))
        for name in ("runs", "documents", "settings", "awaiting_invoice", "dashboard"):
            assert renders(demo_ws.dashboard(name))
        with pytest.raises(BearError):
            demo_ws.dashboard("nope")
        with pytest.raises(BearError):
            demo_ws.dashboard("run")


def test_an_inline_run_view_is_filled_at_once_and_says_when_its_workspace_closed(
    demo_path, tmp_path, finished_run
):
    import shutil

    import panel as pn

    import bear
    from bear.ui.notebook import _on_view_error

    path = tmp_path / "book.duckdb"
    shutil.copy(demo_path, path)
    ws = bear.connect(path)
    run = ws.release_and_invoice(ws.awaiting_release(currency="GBP"), user=USER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shown = ws.dashboard("run", run_id=run.id)
    detail = shown.view
    assert len(detail.batches.value) and len(detail.process_table.value)  # before any change
    assert pn.config.exception_handler is _on_view_error
    ws.close()
    with pytest.raises(BearError, match="closed"):
        ws.dashboard("run", run_id=run.id)
    # a click in the view now: the error reaches Panel's handler, which leaves one line
    with pytest.raises(BearError) as caught:
        detail.state.process.goto(1)
    _on_view_error(caught.value)
    assert [type(o).__name__ for o in shown.body.objects] == ["HTML"]
    assert "The workspace is closed" in shown.body.objects[0].object
    with pytest.raises(ZeroDivisionError):  # anything else is not BEAR's to swallow
        _on_view_error(ZeroDivisionError("x"))


def test_csv_bytes_round_trip():
    from bear.ui.state import frame_csv, frame_xlsx

    frame = pd.DataFrame({"a": [Decimal("1.10")], "b": ["x"]})
    assert frame_csv(frame).read().decode().splitlines() == ["a,b", "1.10,x"]
    assert isinstance(frame_xlsx(frame), io.BytesIO)


def test_warning_dialog_reaches_every_violation_row(demo_ws, grid, monkeypatch):
    """40 ineligible events with 3 blocking reasons each: the warning dialog's pager pages the
    120 violation rows (not the 40 events), so rows 51-120 can be reached."""
    from bear.models import Preview
    from bear.ui.views import ActionDialog

    ids = demo_ws.awaiting_release().ids()[:50]
    bad, good = ids[:40], ids[40:]
    rows = [
        (i, "release", f"acme.rule_{k}", "block", f"reason {k} of {i}")
        for i in bad
        for k in range(3)
    ]
    violations = pa.Table.from_pylist(
        [
            dict(
                zip(("billing_event_id", "stage", "rule_id", "severity", "message"), r, strict=True)
            )
            for r in rows
        ]
    )
    pv = Preview(
        "release_and_invoice",
        50,
        True,
        "",
        good,
        violations,
        pd.DataFrame(columns=["doc_type", "currency", "count", "total"]),
        pa.table({"billing_event_id": pa.array([], pa.int64())}),
        pd.DataFrame(columns=["stage", "rule_id", "severity", "events"]),
    )
    monkeypatch.setattr(demo_ws, "preview", lambda *a, **k: pv)
    grid.select_ids(ids)
    flow = ActionFlow(demo_ws, grid, USER)
    dialog = ActionDialog(flow, on_started=lambda run_id: None)
    flow.open("release_and_invoice")
    assert flow.phase == "warning" and pv.ineligible == 40
    pager = dialog.vpager._state  # what the dialog's pager bar pages
    assert pager.total == 120 and pager.pages == 3
    seen = []
    for page in range(pager.pages):
        pager.goto(page)
        shown = dialog.violations.value
        seen += list(zip(shown["billing_event_id"], shown["rule_id"], strict=True))
    assert len(seen) == 120
    assert set(seen) == {(r[0], r[2]) for r in rows}


def test_revert_from_the_invoiced_grid_with_a_reason_and_post_on_documents(demo_ws):
    filters = FilterState(currency=["USD"])
    release = GridState(demo_ws, filters, kind="awaiting_release")
    filters.eligibility = "eligible"
    release.refresh()
    release.set_page_selection(range(4))
    picked = [release.row_ids[i] for i in range(4)]
    flow = ActionFlow(demo_ws, release, USER)
    flow.open("release_and_invoice")
    run = demo_ws.runner.wait(flow.proceed(), timeout=60)
    assert run.status == "completed" and run.documents == 4
    # Post two of them on the Documents screen: ticked rows, then Post
    docs = DocumentsState(demo_ws, user=USER)
    docs.param.update(run_id=run.id, status="in_progress")
    assert docs.total == 4 and "status" in docs.rows.columns
    docs.tick([0, 1])
    posted = set(docs.ticked)
    assert docs.post() == 2 and docs.message.startswith("Posted 2 documents")
    assert docs.total == 2 and docs.ticked == []
    assert docs.post() == 0 and "tick the documents" in docs.message
    # the Invoiced grid shows each event's document, and reverts with a reason only
    invoiced = GridState(demo_ws, FilterState(currency=["USD"]), kind="invoiced")
    invoiced.refresh()
    assert invoiced.total >= 4
    assert {"document_number", "document_status", "document_date"} <= set(invoiced.rows.columns)
    mine = demo_ws.invoiced(ids=picked).page(0, 10, sort=[("document_status", "asc")])
    assert list(mine["document_status"]) == ["complete"] * 2 + ["in_progress"] * 2
    invoiced.select_ids(picked)
    rflow = ActionFlow(demo_ws, invoiced, USER)
    rflow.open("revert")
    pv = rflow.preview
    assert rflow.phase == "confirm" and pv.eligible == 4
    assert set(pv.expected_documents["effect"]) == {"create", "discard"}
    assert rflow.proceed() is None and "give a reason" in rflow.message  # the dialog stays
    assert rflow.phase == "confirm"
    rflow.reason = "wrong hours"
    result = demo_ws.runner.wait(rflow.proceed(), timeout=60)
    assert (result.action, result.reverted, result.discarded, result.reason) == (
        "revert",
        4,
        2,
        "wrong hours",
    )
    assert result.sales_invoices + result.credit_notes == 2
    # the events are back in Awaiting Release; one's history is the whole chain
    assert sorted(demo_ws.awaiting_release(ids=picked).ids()) == sorted(picked)
    history = release.history(picked[0])
    assert list(history["action"]) == ["release", "invoice", "revert"]
    reversed_docs = demo_ws.documents()
    reversed_docs = reversed_docs[reversed_docs.id.isin(posted)]
    assert set(reversed_docs.status) == {"reversed"}
    assert str(reversed_docs.reversed_by_document_id.dtype) == "Int64"


def test_saved_views_keep_filters_and_sort_per_person(demo_ws):
    from bear.errors import BearError
    from bear.ui.state import SavedViews

    filters = FilterState()
    grid = GridState(demo_ws, filters, kind="awaiting_release")
    grids = {"awaiting_release": grid}
    ana = SavedViews(demo_ws, filters, grids, "ana")
    filters.param.update(currency=["GBP"], min_amount=1000.5, search="Stark")
    grid.sort("summary_amount", descending=True)
    assert ana.save("  GBP credits ", "awaiting_release") and ana.names == ["GBP credits"]
    assert not ana.save("", "awaiting_release") and "needs a name" in ana.message
    filters.reset()
    grid.sort("id")
    assert ana.apply("GBP credits") == "awaiting_release"
    assert (filters.currency, filters.min_amount, filters.search) == (["GBP"], 1000.5, "Stark")
    assert (grid.sort_by, grid.descending) == ("summary_amount", True)
    # another person has their own views; a name saved again replaces the view
    assert SavedViews(demo_ws, filters, grids, "bo").names == []
    filters.param.update(currency=["EUR"])
    assert ana.save("GBP credits", "awaiting_release")
    assert demo_ws.saved_views(user="ana")["filters"].iloc[0]["currency"] == ["EUR"]
    with pytest.raises(BearError, match="unknown filter 'colour'"):
        demo_ws.save_view("x", "awaiting_release", {"colour": "red"}, user="ana")
    with pytest.raises(BearError, match="sort"):
        demo_ws.save_view("x", "awaiting_release", {}, user="ana", sort=("bogus", "asc"))
    ana.delete("GBP credits")
    assert ana.names == [] and ana.apply("GBP credits") is None
    ana.delete("nothing")
    assert "no saved view named 'nothing'" in ana.message


def test_overview_by_age_customer_currency_reason_and_a_bar_filters(demo_ws):
    import datetime as dt

    from bear.ui.state.overview import OverviewState

    filters = FilterState()
    grid = GridState(demo_ws, filters, kind="awaiting_release")
    grid.refresh()
    ov = OverviewState(grid)
    assert ov.age is None  # nothing computed while closed
    ov.open = True
    assert list(ov.age["bucket"].unique()) == ["0–30 days", "31–60 days", "61–90 days", "90+ days"]
    assert int(ov.age["events"].sum()) == grid.total
    assert int(ov.currency["events"].sum()) == grid.total
    assert int(ov.customers["events"].sum()) == grid.total
    assert ov.customers["account"].nunique() <= 11
    totals = grid.ws.totals(grid.selection_filter()).set_index("currency")["amount"]
    for row in ov.currency.itertuples():
        assert row.amount == totals[row.currency]  # Decimal, exact, per currency
    top = ov.reasons.iloc[0]
    assert top.events == grid.ws.count(grid.selection_filter().refine(eligibility=top.rule_id))
    # a click on a bar is a filter; the overview follows
    assert ov.pick("currency", "EUR") == "currency EUR" and filters.currency == ["EUR"]
    assert set(ov.currency["currency"]) == {"EUR"}
    top = ov.reasons.iloc[0]  # of the EUR events now
    assert ov.pick("reasons", top.rule_id).startswith("events blocked by")
    assert filters.eligibility == top.rule_id
    ov.pick("age", ("31–60 days", "EUR"))
    today = dt.date.today()
    assert (filters.date_from, filters.date_to) == (
        today - dt.timedelta(days=60),
        today - dt.timedelta(days=31),
    )
    account = ov.customers.dropna(subset=["account_id"]).iloc[0]
    filters.reset()
    assert ov.pick("customers", account.account) and filters.account == [int(account.account_id)]
    assert ov.pick("customers", "All other customers") == ""


# -- honest outcomes in the dashboard; a finished run's rate (issue 16, items 4 and 8) ----------
def _watched(ws, run_id):
    progress = RunProgress(ws)
    progress.watch_run(run_id)  # the run has finished: one poll reads its end
    return progress


def test_progress_says_each_outcome_and_looks_like_it(demo_ws):
    from bear.ui.views import ProgressPanel

    demo_ws.settings.update(validation_limit=0, release_batch_size=1)
    good = demo_ws.preview(demo_ws.awaiting_release(), full=True).eligible_ids[:4]
    bad = demo_ws.awaiting_release(eligibility="release.not_approved").ids()[:3]
    runs = {
        "failed": demo_ws.release(bad[:2], user=USER, timeout=120),  # 0 released, 2/2 failed
        "completed with failures": demo_ws.release([good[0], bad[2]], user=USER, timeout=120),
        "completed": demo_ws.release(good[1:], user=USER, timeout=120),
    }
    looks = {"failed": ("error", "danger"), "completed with failures": ("warning", "warning")}
    for outcome, run in runs.items():
        assert (run.status, run.outcome) == ("completed", outcome)
        progress = _watched(demo_ws, run.id)
        assert progress.finished and progress.outcome == outcome
        kind, text = progress.finished_toast()
        assert kind == looks.get(outcome, ("success",))[0]
        assert text.startswith(f"Run {run.id} {outcome}: {run.released:,} released")
        assert progress.summary().startswith(f"Run {run.id}: {outcome} · ")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            panel = ProgressPanel(progress)
            panel._render()
        assert f"Release · {outcome}</b>" in panel.title.object
        assert f"data-outcome='{outcome}'" in panel.title.object
        assert panel.bar.bar_color == looks.get(outcome, (None, "success"))[1]
        assert not panel.cancel.visible


def test_a_finished_run_shows_its_average_rate_not_a_dash(demo_ws, finished_run):
    # measured: "rate —" once a run had finished (one sample, no live rate)
    progress = _watched(demo_ws, finished_run.id)
    seconds = (finished_run.finished_at - finished_run.started_at).total_seconds()
    processed = finished_run.not_released + finished_run.invoice_done
    assert processed == finished_run.selected and seconds > 0
    assert progress.rate == pytest.approx(processed / seconds)
    assert " events/s on average" in progress.summary()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from bear.ui.views import ProgressPanel

        panel = ProgressPanel(progress)
        panel._render()
    assert "average rate <b>" in panel.stats.object and "rate <b>—</b>" not in panel.stats.object


def test_runs_list_detail_and_bell_say_the_outcome(demo_ws):
    from bear.ui.views import NotificationBell, RunsView

    demo_ws.settings.update(validation_limit=0, release_batch_size=1)
    notes = NotificationState(demo_ws, USER)
    run = demo_ws.release(
        demo_ws.awaiting_release(eligibility="release.not_approved").ids()[:2],
        user=USER,
        timeout=120,
    )
    state = RunsState(demo_ws)
    assert list(state.runs.loc[state.runs.id == run.id, "outcome"]) == ["failed"]
    assert state.open(run.id) and state.result.outcome == "failed"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        view = RunsView(state)
        bell = NotificationBell(notes)
    shown = view.table.value
    assert list(shown.loc[shown.id == run.id, "outcome"]) == ["failed"]
    assert view.table.titles["outcome"] == "Outcome"
    header = view.detail.header.object
    assert "<div class='t'>Outcome</div><div class='v'>failed</div>" in header
    assert "nothing was done of what it was asked (2 not released, 2 failed batches)" in header
    # the bell and the toasts take their look from what each notification reports
    new = notes.poll()
    assert [(n["kind"], n["look"]) for n in new] == [("release_finished", "error")]
    assert new[0]["subject"].startswith(f"BEAR run {run.id} (Release): release failed")
    bell._render()
    assert (
        "data-look='error'" in bell.list.object and "release finished · failed" in bell.list.object
    )


def test_a_sessions_page_goes_into_its_document_with_one_walk_over_its_models(demo_ws, monkeypatch):
    # Measured at a million events: Bokeh walked the page's ~180 models after each of Panel's
    # steps (the roots, the theme's hooks, each dialog's browser-side callback), a third of
    # the time to build a session's page. The page is the same; the walk is made once.
    import functools

    import panel as pn
    from bokeh.document import Document
    from bokeh.document.models import DocumentModelManager

    from bear.ui.dashboard import Dashboard

    walks: list[int] = []
    real = DocumentModelManager.recompute

    def counting(self):
        walks.append(1)
        real(self)

    monkeypatch.setattr(DocumentModelManager, "recompute", counting)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pages = {}
        for name, frame in (("page", None), ("panel", pn.template.FastListTemplate)):
            dash = Dashboard(demo_ws, USER, background=None, poll=False)
            template = dash.template()
            if frame is not None:  # the same page put in as Panel does it, for comparison
                template._init_doc = functools.partial(frame._init_doc, template)
            doc = Document()
            walks.clear()
            template.server_doc(doc)
            pages[name] = (len(walks), doc)
    assert pages["page"][0] == 1 < pages["panel"][0]
    doc = pages["page"][1]
    models = list(doc.models)
    assert len(models) == len(list(pages["panel"][1].models)) > 100
    assert all(m.document is doc for m in models)  # every model belongs to the page
    dialogs = [m for m in models if type(m).__name__ == "Modal"]
    assert dialogs and all(m.js_property_callbacks.get("change:open") for m in dialogs)


def test_the_runs_and_documents_tabs_read_their_rows_when_first_shown(demo_ws, finished_run):
    # A session's page is built before its HTML is answered: what a hidden tab lists is read
    # when the tab is first shown, not for every page.
    from bear.ui.dashboard import DOCUMENTS, RUNS, Dashboard

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dash = Dashboard(demo_ws, USER, background=None, poll=False)
        assert dash.runs.runs is None and dash.docs.rows is None
        dash.tabs.active = RUNS
        assert finished_run.id in set(dash.runs.runs["id"])
        assert len(dash.runs_view.table.value) == len(dash.runs.runs)
        dash.tabs.active = DOCUMENTS
        assert dash.docs.total > 0 and len(dash.docs_view.table.value) == len(dash.docs.rows) > 0


def test_the_progress_panel_is_made_when_the_session_first_follows_a_run(demo_ws, finished_run):
    from bear.ui.dashboard import Dashboard

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dash = Dashboard(demo_ws, USER, background=None, poll=False)
        assert dash._progress_panel is None and not dash._progress_slot.objects
        dash.progress.watch_run(finished_run.id)
        panel = dash._progress_panel
        assert panel is not None and dash._progress_slot.objects == [panel.layout]
        assert panel.layout.visible and f"Run {finished_run.id}" in panel.title.object
        dash.progress.poll()  # later changes reach the panel made for the run
        assert "events/s" in panel.stats.object or "rate" in panel.stats.object
        assert dash.progress_panel is panel
