"""The dashboard's views: ``pn.viewable.Viewer`` classes that lay out and delegate to state.

Each view creates its widgets in ``__init__``, binds them to a state object of
``bear.ui.state`` and calls its methods; no SQL and no business rule lives here. Text from
the data reaches the browser only escaped (``esc``) or through plain-text table cells.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer

from bear.ui.components import (
    CSS,
    PagerBar,
    alert,
    cards_html,
    esc,
    fmt_num,
    html_pane,
    kv_table,
    set_frame,
    table,
    toast,
)
from bear.ui.state import (
    ACTION_LABEL,
    TITLES,
    ActionFlow,
    Background,
    DocumentsState,
    FilterState,
    GridState,
    NotificationState,
    RunProgress,
    RunsState,
    SettingsState,
)

log = logging.getLogger(__name__)

RUN_TITLES = {
    "id": "Run",
    "action": "Action",
    "requested_by": "User",
    "status": "Status",
    "stage": "Stage",
    "selected": "Selected",
    "released": "Released",
    "not_released": "Not released",
    "failed_batches": "Failed batches",
    "documents": "Documents",
    "sales_invoices": "Sales invoices",
    "credit_notes": "Credit notes",
    "not_passed": "Not passed",
    "started_at": "Started",
    "seconds": "Duration (s)",
}
PROCESS_TITLES = {
    "billing_event_id": "Event",
    "event": "Name",
    "status": "Status",
    "message": "Message",
    "rule_id": "Rule",
    "document_id": "Document id",
    "document_number": "Document",
    "created_at": "Logged at",
}
APP_TITLES = {
    "created_at": "Time",
    "batch_seq": "Batch",
    "level": "Level",
    "origin": "Origin",
    "record_id": "Event",
    "rule_id": "Rule",
    "message": "Message",
    "detail": "Detail",
}
BATCH_TITLES = {
    "run_id": "Run",
    "seq": "Batch",
    "size": "Size",
    "status": "Status",
    "released": "Released",
    "cause": "Cause",
    "finished_at": "Finished",
}
DOC_TITLES = {
    "id": "Id",
    "number": "Number",
    "doc_type": "Type",
    "account": "Account",
    "company": "Company",
    "currency": "Currency",
    "total": "Total",
    "document_date": "Date",
    "billing_event_id": "Event",
    "process_run_id": "Process run",
    "run_id": "Run",
}


BELL_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="20" height="20" viewBox="0 0 24 24" fill="none" '
    'stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">'
    '<path d="M10 5a2 2 0 1 1 4 0a7 7 0 0 1 4 6v3a4 4 0 0 0 2 3h-16a4 4 0 0 0 2 -3v-3a7 7 0 0 1 4 -6"/>'
    '<path d="M9 17v1a3 3 0 0 0 6 0v-1"/></svg>'
)


def _button(name: str, kind: str = "default", **kw: Any) -> pn.widgets.Button:
    return pn.widgets.Button(name=name, button_type=kind, **kw)


# -- filters ---------------------------------------------------------------------------------
class FilterPanel(Viewer):
    """The sidebar: every filter of DESIGN §2.1 and a reset button."""

    def __init__(self, state: FilterState, options: dict[str, Any], **params: Any) -> None:
        super().__init__(**params)
        self.state = state

        def labelled(d: dict[str, Any]) -> dict[str, Any]:
            # Choices.js renders option labels as HTML: escape names coming from the data.
            return {esc(k): v for k, v in d.items()}

        def choice(name: str, label: str, opts: Any, **kw: Any) -> pn.widgets.MultiChoice:
            return pn.widgets.MultiChoice.from_param(
                state.param[name],
                name=label,
                options=opts,
                sizing_mode="stretch_width",
                search_option_limit=40,
                description=None,
                **kw,
            )

        self.company = choice("company", "Company", labelled(options["company"]))
        self.account = choice("account", "Account", labelled(options["account"]), option_limit=300)
        self.project = choice("project", "Project", labelled(options["project"]), option_limit=300)
        for name, label in (
            ("region", "Region"),
            ("practice", "Practice"),
            ("grp", "Group"),
            ("currency", "Currency"),
        ):
            setattr(self, name, choice(name, label, [esc(v) for v in options[name]]))
        self.date_from = pn.widgets.DatePicker.from_param(
            state.param.date_from, name="Event date from", sizing_mode="stretch_width"
        )
        self.date_to = pn.widgets.DatePicker.from_param(
            state.param.date_to, name="Event date to", sizing_mode="stretch_width"
        )
        self.min_amount = pn.widgets.FloatInput.from_param(
            state.param.min_amount, name="Amount from", sizing_mode="stretch_width"
        )
        self.max_amount = pn.widgets.FloatInput.from_param(
            state.param.max_amount, name="Amount to", sizing_mode="stretch_width"
        )
        self.category = choice("category", "Item category", options["category"])
        self.eligibility = pn.widgets.Select.from_param(
            state.param.eligibility,
            name="Eligibility",
            options=labelled(options["eligibility"]),
            sizing_mode="stretch_width",
            description=None,
        )
        self.search = pn.widgets.TextInput.from_param(
            state.param.search,
            name="Search",
            placeholder="event, project or account name, or event id",
            sizing_mode="stretch_width",
        )
        self.reset = _button("Reset filters", "light", sizing_mode="stretch_width")
        self.reset.on_click(lambda e: state.reset())
        self.message = html_pane()
        state.param.watch(self._error, "error")

    def _error(self, event: param.parameterized.Event) -> None:
        self.message.object = alert(event.new, "err") if event.new else ""

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            self.search,
            self.company,
            self.account,
            self.project,
            pn.Row(self.region, self.practice, sizing_mode="stretch_width"),
            pn.Row(self.grp, self.currency, sizing_mode="stretch_width"),
            pn.Row(self.date_from, self.date_to, sizing_mode="stretch_width"),
            pn.Row(self.min_amount, self.max_amount, sizing_mode="stretch_width"),
            self.category,
            self.eligibility,
            self.message,
            self.reset,
            sizing_mode="stretch_width",
        )


# -- progress --------------------------------------------------------------------------------
class ProgressPanel(Viewer):
    """Live progress of the run this session started; polled by the dashboard's callback."""

    def __init__(
        self,
        state: RunProgress,
        open_run: Callable[[int], None] | None = None,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.state = state
        self.title = html_pane()
        self.bar = pn.indicators.Progress(value=0, max=100, sizing_mode="stretch_width", height=14)
        self.stats = html_pane()
        self.cancel = _button("Cancel run", "danger", width=110)
        self.details = _button("Open run details", "primary", width=140)
        self.dismiss = _button("Dismiss", "light", width=80)
        self.cancel.on_click(self._cancel)
        self.details.on_click(lambda e: open_run and state.run_id and open_run(state.run_id))
        self.dismiss.on_click(lambda e: setattr(self.layout, "visible", False))
        self.layout = pn.Column(
            pn.Row(
                pn.Column(self.title, self.stats, sizing_mode="stretch_width"),
                self.cancel,
                self.details,
                self.dismiss,
                sizing_mode="stretch_width",
            ),
            self.bar,
            visible=False,
            sizing_mode="stretch_width",
            styles={
                "border": "1px solid rgba(128,128,128,.3)",
                "border-radius": "8px",
                "padding": "4px 12px 8px 12px",
            },
            stylesheets=[CSS],
        )
        state.param.watch(self._render, list(RunProgress.param)[1:])

    def _cancel(self, event: Any) -> None:
        toast("warning", self.state.cancel())

    def _render(self, *_: Any) -> None:
        s = self.state
        if s.run_id is None:
            return
        self.layout.visible = True
        label = ACTION_LABEL.get(s.action, s.action)
        state = s.status if s.finished else f"{s.status} — {s.stage} stage"
        self.title.object = f"<b class='bear-line'>Run {s.run_id} · {esc(label)} · {esc(state)}</b>"
        self.bar.value = int(round(100 * s.fraction))
        self.bar.bar_color = (
            "success" if s.status == "completed" else "danger" if s.finished else "primary"
        )
        parts = [
            ("stage", s.stage or "—"),
            ("batches", f"{s.batches_done:,}/{s.batches:,}"),
            ("released", f"{s.released:,}"),
            ("not released", f"{s.not_released:,}"),
            (
                "documents",
                f"{s.documents:,} ({s.sales_invoices:,} invoices, {s.credit_notes:,} credit notes)",
            ),
            ("failed batches", f"{s.failed_batches:,}"),
            ("rate", "—" if not s.rate else f"{s.rate:,.0f} events/s"),
            ("ETA", "—" if s.eta_s is None else f"{s.eta_s:,.0f} s"),
        ]
        line = " · ".join(f"{esc(k)} <b>{esc(v)}</b>" for k, v in parts)
        extra = ""
        if s.error:
            extra = alert(s.error, "err")
        elif s.message:
            extra = alert(s.message)
        self.stats.object = f"<div class='bear-line'>{line}</div>{extra}"
        self.cancel.disabled = s.finished

    def __panel__(self) -> pn.viewable.Viewable:
        return self.layout


# -- the Release and Invoice dialog -----------------------------------------------------------
class ActionDialog(Viewer):
    """Confirmation, warning (ineligible events with reasons), validation-skipped notice."""

    def __init__(
        self,
        flow: ActionFlow,
        on_started: Callable[[int], None],
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.flow = flow
        self._on_started = on_started
        self.body = pn.Column(sizing_mode="stretch_width", min_height=120)
        self.modal = pn.Modal(self.body, width=900, background_close=False)
        self.violations = table(
            height=300,
            titles={
                "billing_event_id": "Event",
                "name": "Name",
                "stage": "Stage",
                "rule_id": "Rule",
                "severity": "Severity",
                "message": "Reason",
            },
        )
        self.download = pn.widgets.FileDownload(
            callback=flow.violations_csv,
            filename="ineligible-events.csv",
            label="Download CSV",
            button_type="light",
            width=160,
        )
        # one row per event and reason: the pager counts rows, as the table shows them
        self.vpager = PagerBar(flow.violations, noun="reasons")
        self.modal.param.watch(self._closed, "open")
        flow.param.watch(self._render, ["phase", "preview"])
        flow.violations.param.watch(self._page, "rows")

    def show(self, action: str, preview_only: bool = False) -> None:
        self.body.objects = [self._working(action)]
        self.modal.open = True
        self.flow.open(action, preview_only=preview_only)

    def _closed(self, event: Any) -> None:
        if not event.new and self.flow.phase not in ("idle", "started"):
            self.flow.close()

    def _working(self, action: str) -> pn.viewable.Viewable:
        n = self.flow.grid.selected_count
        return pn.Row(
            pn.indicators.LoadingSpinner(value=True, size=28, name=""),
            html_pane(
                f"<div class='bear-line'>Checking {n:,} selected events against the rules for "
                f"<b>{esc(ACTION_LABEL[action])}</b>…</div>"
            ),
        )

    def _page(self, *_: Any) -> None:
        set_frame(self.violations, self.flow.violations.rows)

    def _buttons(self, *buttons: pn.widgets.Button) -> pn.Row:
        close = _button("Cancel", "light", width=100)
        close.on_click(lambda e: self._close())
        return pn.Row(*buttons, close, margin=(10, 0, 0, 0))

    def _close(self) -> None:
        self.modal.open = False
        self.flow.close()

    def _continue_button(self, label: str) -> pn.widgets.Button:
        b = _button(label, "primary")
        b.on_click(self._proceed)
        return b

    def _proceed(self, event: Any) -> None:
        run_id = self.flow.proceed()
        if run_id is not None:
            self.modal.open = False
            self._on_started(run_id)

    def _docs_html(self) -> str:
        docs = self.flow.expected_documents()
        if not len(docs):
            return "<p class='bear-muted'>No documents would be created.</p>"
        rows = "".join(
            f"<tr><td>{'Sales invoices' if r.doc_type == 'SIN' else 'Credit notes'}</td>"
            f"<td>{esc(r.currency)}</td><td class='n'>{int(r.count):,}</td>"
            f"<td class='n'>{fmt_num(r.total, 2)}</td></tr>"
            for r in docs.itertuples()
        )
        return (
            "<table class='bear-kv'><tr><th>Expected</th><th>Currency</th><th>Count</th><th>Total</th></tr>"
            f"{rows}</table>"
        )

    def _violations_block(self) -> list[Any]:
        self._page()
        return [self.violations, pn.Row(self.vpager, pn.Spacer(), self.download)]

    def _render(self, *_: Any) -> None:
        f, pv = self.flow, self.flow.preview
        label = esc(f.label)
        phase = f.phase
        if phase in ("idle", "started"):
            return
        if phase == "working":
            self.body.objects = [self._working(f.action)]
            return
        head = html_pane(f"<h3 style='margin:4px 0'>{label}</h3>")
        if phase == "error" or pv is None:
            close = _button("Close", "primary")
            close.on_click(lambda e: self._close())
            self.body.objects = [
                head,
                html_pane(alert(f.message or "Something went wrong.", "err")),
                close,
            ]
            return
        intro = (
            f"{pv.selected:,} events selected · {pv.eligible:,} eligible · "
            f"{pv.ineligible:,} ineligible · checked in {pv.seconds:.2f} s"
        )
        objs: list[Any] = [head, html_pane(f"<p class='bear-line'>{esc(intro)}</p>")]
        if phase == "unvalidated":
            validate = _button("Validate all", "default")
            validate.on_click(lambda e: f.validate_all())
            objs += [
                html_pane(
                    alert(
                        f"Validation was skipped: {pv.selected:,} events is more than the validation "
                        f"limit of {f.ws.settings.validation_limit:,} events. The rules still run in "
                        "the background for every batch, so ineligible events will make their "
                        "batch fail. Validate all to see every reason now (this can take a while)."
                    )
                ),
                self._buttons(validate, self._continue_button("Continue without validation")),
            ]
        elif phase == "confirm":
            objs += [
                html_pane(
                    alert(f"All {pv.eligible:,} selected events are eligible.", "ok")
                    + self._docs_html()
                ),
                self._buttons(self._continue_button(f"Continue: {f.label} {pv.eligible:,} events")),
            ]
        elif phase == "warning":
            objs += [
                html_pane(
                    alert(
                        f"{pv.ineligible:,} of the {pv.selected:,} selected events cannot be "
                        "processed; they are listed below with every reason. Continue processes "
                        f"only the {pv.eligible:,} eligible events."
                    )
                ),
                *self._violations_block(),
                html_pane(self._docs_html()),
                self._buttons(self._continue_button(f"Continue with {pv.eligible:,} eligible")),
            ]
        elif phase == "nothing":
            objs += [
                html_pane(
                    alert(f"None of the {pv.selected:,} selected events can be processed.", "err")
                ),
                *self._violations_block(),
                self._buttons(),
            ]
        elif phase == "preview":
            blast = ""
            if pv.validated and len(pv.blast_radius):
                blast = alert(
                    f"Blast radius: {len(pv.blast_radius):,} eligible events share a release batch "
                    "with an ineligible one and would fail with it if the run were not validated."
                )
            objs += [html_pane(self._docs_html() + blast)]
            if not pv.validated:
                objs.append(html_pane(alert(pv.reason)))
            elif pv.ineligible:
                objs += self._violations_block()
            buttons = []
            if pv.eligible:
                buttons.append(
                    self._continue_button(
                        f"{f.label} {pv.eligible:,} eligible" if pv.validated else f.label
                    )
                )
            objs.append(self._buttons(*buttons))
        self.body.objects = objs

    def __panel__(self) -> pn.viewable.Viewable:
        return self.modal


# -- the event grids ---------------------------------------------------------------------------
class EventGrid(Viewer):
    """Cards, sort and pager, the SQL-paged grid with checkbox selection, selection bar, actions."""

    def __init__(
        self, grid: GridState, flow: ActionFlow, on_started: Callable[[int], None], **params: Any
    ):
        super().__init__(**params)
        self.grid = grid
        self.flow = flow
        self._syncing = False
        self.cards = html_pane(min_height=90)
        cols = grid.columns()
        self.sort_by = pn.widgets.Select(
            name="Sort by", options={TITLES[c]: c for c in cols}, value=grid.sort_by, width=170
        )
        self.sort_dir = pn.widgets.RadioButtonGroup(
            options=["Ascending", "Descending"],
            value="Descending" if grid.descending else "Ascending",
            margin=(26, 5, 5, 5),
        )
        self.sort_by.param.watch(lambda e: grid.sort(e.new, grid.descending), "value")
        self.sort_dir.param.watch(lambda e: grid.sort(grid.sort_by, e.new == "Descending"), "value")
        self.select_all = _button("Select all matching", "default", margin=(26, 5, 5, 5))
        self.clear = _button("Clear selection", "light", margin=(26, 5, 5, 5))
        self.select_all.on_click(lambda e: grid.select_all_matching())
        self.clear.on_click(lambda e: grid.clear_selection())
        self.pager = PagerBar(grid, noun="events")
        money = ("summary_amount",)
        self._money = money
        self.table = table(
            None,
            titles=TITLES,
            money=money,
            selectable="checkbox",
            height=560,
            row_content=self._row_detail,
            embed_content=False,
            frozen_columns=["id"],
            widths={"eligibility": 300, "name": 110},
        )
        self.table.param.watch(self._ticked, "selection")
        self.selection_bar = html_pane()
        self.error = html_pane()
        self.dialog = ActionDialog(flow, on_started)
        if grid.kind == "awaiting_release":
            specs = [
                ("Preview", "default", "release_and_invoice", True),
                ("Release", "default", "release", False),
                ("Release and Invoice", "primary", "release_and_invoice", False),
            ]
        else:
            specs = [
                ("Preview", "default", "invoice", True),
                ("Create Sales Invoices and Credit Notes", "primary", "invoice", False),
            ]
        self.buttons = []
        for label, kind, action, preview_only in specs:
            b = _button(label, kind)
            b.on_click(partial(self._act, action, preview_only))
            self.buttons.append(b)
        grid.param.watch(self._rows, "rows")
        grid.param.watch(self._selection, ["selected_count", "select_all", "selection_totals"])
        grid.param.watch(self._cards, ["cards", "ineligible"])
        grid.param.watch(self._loading, "loading")
        grid.param.watch(self._error, "error")
        self._rows()
        self._cards()
        self._selection()

    # -- rendering --------------------------------------------------------------------------
    def _cards(self, *_: Any) -> None:
        c = self.grid.cards or {}
        amounts = c.get("amounts", [])
        amount_lines = "<br>".join(f"{esc(cur)} {fmt_num(a, 2)}" for cur, a in amounts) or "—"
        inel = self.grid.ineligible
        cards = [
            ("Events", fmt_num(c.get("events", 0)), "matching the filters", False),
            ("Projects", fmt_num(c.get("projects", 0)), "", False),
            (
                "Amount",
                f"{len(amounts)} currenc{'y' if len(amounts) == 1 else 'ies'}",
                amount_lines,
                False,
            ),
            (
                "Ineligible",
                "…" if inel is None else fmt_num(inel),
                "computing eligibility…" if inel is None else "blocked by a rule",
                bool(inel),
            ),
        ]
        self.cards.object = cards_html(cards)
        self.select_all.name = f"Select all {c.get('events', 0):,} matching"

    def _rows(self, *_: Any) -> None:
        frame = self.grid.rows
        if frame is None:
            return
        self._syncing = True
        try:
            set_frame(self.table, frame, money=self._money, integers=("reasons",))
            self.table.selection = self.grid.page_selection()
        finally:
            self._syncing = False

    def _ticked(self, event: Any) -> None:
        if self._syncing:
            return
        self.grid.set_page_selection(event.new)

    def _selection(self, *_: Any) -> None:
        g = self.grid
        wanted = g.page_selection()
        if sorted(self.table.selection) != wanted:
            self._syncing = True
            try:
                self.table.selection = wanted
            finally:
                self._syncing = False
        n = g.selected_count
        for b in self.buttons:
            b.disabled = n == 0
        if n == 0:
            self.selection_bar.object = (
                "<div class='bear-line bear-muted'>No events selected — tick rows, or select all "
                "matching events.</div>"
            )
            return
        totals = g.selection_totals
        parts = []
        sin = scn = 0
        if totals is not None and len(totals):
            parts = [f"{esc(r.currency)} {fmt_num(r.amount, 2)}" for r in totals.itertuples()]
            sin, scn = int(totals["sales_invoices"].sum()), int(totals["credit_notes"].sum())
        self.selection_bar.object = (
            f"<div class='bear-line'><b>{n:,} selected</b> <span class='bear-muted'>"
            f"({esc(g.selection_ids_hint())})</span> · {' · '.join(parts)} · expected "
            f"<b>{sin:,}</b> sales invoices, <b>{scn:,}</b> credit notes</div>"
        )

    def _loading(self, event: Any) -> None:
        self.table.loading = event.new

    def _error(self, event: Any) -> None:
        self.error.object = alert(event.new, "err") if event.new else ""

    def _row_detail(self, row: pd.Series) -> pn.viewable.Viewable:
        event_id = int(row["id"])
        reasons = self.grid.reasons(event_id)
        if not len(reasons):
            text = "<p class='bear-ok'>Eligible: no rule blocks this event.</p>"
        else:
            items = "".join(
                f"<li><b>{esc(r.rule_id)}</b> ({esc(r.stage)}, {esc(r.severity)}): {esc(r.message)}</li>"
                for r in reasons.itertuples()
            )
            text = (
                f"<div class='bear-line'>Every reason for event {event_id}:<ul>{items}</ul></div>"
            )
        return html_pane(text, margin=(0, 30))

    def _act(self, action: str, preview_only: bool, event: Any) -> None:
        self.dialog.show(action, preview_only=preview_only)

    def __panel__(self) -> pn.viewable.Viewable:
        toolbar = pn.Row(
            self.sort_by,
            self.sort_dir,
            self.select_all,
            self.clear,
            pn.layout.HSpacer(),
            sizing_mode="stretch_width",
        )
        actions = pn.Row(self.selection_bar, *self.buttons, sizing_mode="stretch_width")
        return pn.Column(
            self.cards,
            toolbar,
            actions,
            self.error,
            self.table,
            self.pager,
            self.dialog,
            sizing_mode="stretch_width",
        )


# -- runs --------------------------------------------------------------------------------------
class RunDetail(Viewer):
    """One run: counts, release batches, app logs, process logs by status, downloads, documents."""

    def __init__(
        self,
        state: RunsState,
        open_documents: Callable[[int, str], None] | None = None,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.state = state
        self._open_documents = open_documents
        self.header = html_pane()
        self.batches = table(height=260, titles=BATCH_TITLES)
        self.app_table = table(height=320, titles=APP_TITLES)
        self.process_table = table(height=360, titles=PROCESS_TITLES)
        self.status = pn.widgets.RadioButtonGroup.from_param(
            state.param.log_status, name="Status", options=["all", "OK", "ERROR"]
        )
        self.app_pager = PagerBar(state.app, noun="log records")
        self.process_pager = PagerBar(state.process, noun="events")
        self.downloads: dict[tuple[str, str], pn.widgets.FileDownload] = {}
        for what in ("batches", "app_logs", "process_logs", "documents"):
            for fmt in ("csv", "xlsx"):
                self.downloads[(what, fmt)] = pn.widgets.FileDownload(
                    callback=partial(state.download, what, fmt),
                    filename=f"{what}.{fmt}",
                    label=f"{'CSV' if fmt == 'csv' else 'Excel'}",
                    button_type="light",
                    width=90,
                )
        self.show_docs = _button("Show this run's documents", "primary")
        self.show_docs.on_click(self._docs)
        self.process_table.on_click(self._process_click)
        self.body = pn.Column(sizing_mode="stretch_width")
        state.param.watch(self._render, ["result"])
        state.param.watch(lambda e: set_frame(self.batches, e.new), "batches")
        state.app.param.watch(lambda e: set_frame(self.app_table, e.new), "rows")
        state.process.param.watch(lambda e: set_frame(self.process_table, e.new), "rows")
        self._render()

    def _dl(self, what: str) -> pn.Row:
        return pn.Row(
            html_pane(
                "<span class='bear-muted'>Download</span>",
                width=70,
                sizing_mode="fixed",
                margin=(12, 4),
            ),
            self.downloads[(what, "csv")],
            self.downloads[(what, "xlsx")],
        )

    def _docs(self, event: Any) -> None:
        if self._open_documents and self.state.run_id is not None:
            self._open_documents(self.state.run_id, "")

    def _process_click(self, event: Any) -> None:
        if event.column != "document_number" or self._open_documents is None:
            return
        frame = self.process_table.value
        number = frame.iloc[event.row]["document_number"] if event.row < len(frame) else ""
        if number and self.state.run_id is not None:
            self._open_documents(self.state.run_id, str(number))

    def _render(self, *_: Any) -> None:
        r = self.state.result
        if r is None:
            self.body.objects = [
                html_pane("<p class='bear-muted'>Pick a run in the list to see its detail.</p>")
            ]
            return
        for (what, fmt), w in self.downloads.items():
            w.filename = self.state.filename(what, fmt)
        status_kind = "ok" if r.status == "completed" else "err" if r.finished else ""
        cards = [
            ("Status", r.status, r.stage if not r.finished else "", status_kind == "err"),
            ("Selected", fmt_num(r.selected), f"left out up front {r.excluded:,}", False),
            (
                "Released",
                fmt_num(r.released),
                f"not released {r.not_released:,}",
                r.not_released > 0,
            ),
            (
                "Batches",
                f"{r.batches_done:,}/{r.batches:,}",
                f"failed {r.failed_batches:,}",
                r.failed_batches > 0,
            ),
            ("Sales invoices", fmt_num(r.sales_invoices), "", False),
            ("Credit notes", fmt_num(r.credit_notes), "", False),
            ("Not passed", fmt_num(r.not_passed), "to accounting", r.not_passed > 0),
        ]
        duration = "—"
        if r.started_at is not None:
            end = r.finished_at or r.updated_at
            if end is not None:
                duration = f"{(end - r.started_at).total_seconds():,.1f} s"
        info = kv_table(
            [
                ("Action", ACTION_LABEL.get(r.action, r.action)),
                ("Requested by", r.requested_by),
                ("Created", r.created_at),
                ("Started", r.started_at or "—"),
                ("Finished", r.finished_at or "—"),
                ("Duration", duration),
                ("Validated", "yes" if r.validated else "no (above the validation limit)"),
                ("Process run", r.process_run_id if r.process_run_id is not None else "—"),
            ],
            per_row=4,
        )
        error = alert(r.error, "err") if r.error else ""
        head = f"<h3 style='margin:6px 0'>Run {r.id} — {esc(ACTION_LABEL.get(r.action, r.action))}</h3>"
        self.header.object = head + cards_html(cards) + info + error
        tabs = pn.Tabs(
            (
                "Process log",
                pn.Column(
                    html_pane(
                        "<p class='bear-muted'>One record per event the invoicing stage processed. "
                        "Click a document number to open it.</p>"
                    ),
                    pn.Row(self.status, pn.layout.HSpacer(), self._dl("process_logs")),
                    self.process_table,
                    self.process_pager,
                ),
            ),
            (
                "Release batches",
                pn.Column(self._dl("batches"), self.batches),
            ),
            (
                "App logs",
                pn.Column(self._dl("app_logs"), self.app_table, self.app_pager),
            ),
            ("Documents", pn.Column(self.show_docs, self._dl("documents"))),
            dynamic=False,
            sizing_mode="stretch_width",
        )
        self.body.objects = [self.header, tabs]

    def __panel__(self) -> pn.viewable.Viewable:
        return self.body


class RunsView(Viewer):
    """The run list (newest first) and the selected run's detail."""

    def __init__(
        self,
        state: RunsState,
        open_documents: Callable[[int, str], None] | None = None,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.state = state
        self.table = table(
            height=230,
            pagination="local",
            page_size=6,
            titles=RUN_TITLES,
            sortable=True,
        )
        self.table.on_click(self._click)
        self.refresh = _button("Refresh", "light", width=100)
        self.refresh.on_click(lambda e: state.refresh_runs())
        self.message = html_pane()
        self.detail = RunDetail(state, open_documents)
        state.param.watch(self._runs, "runs")
        state.param.watch(self._error, "error")
        self._runs()

    def _runs(self, *_: Any) -> None:
        frame = self.state.runs
        if frame is None:
            return
        cols = [c for c in RUN_TITLES if c in frame.columns]
        shown = frame[cols].copy()
        shown["action"] = [ACTION_LABEL.get(a, a) for a in shown["action"]]
        from bear.ui.state import display_frame

        set_frame(self.table, display_frame(shown))

    def _error(self, event: Any) -> None:
        self.message.object = alert(event.new, "err") if event.new else ""

    def _click(self, event: Any) -> None:
        frame = self.table.value
        if 0 <= event.row < len(frame):
            self.state.open(int(frame.iloc[event.row]["id"]))

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.Row(
                html_pane(
                    "<p class='bear-muted'>Every background run, newest first. Click a run to see "
                    "its batches, logs and documents.</p>"
                ),
                self.refresh,
            ),
            self.table,
            self.message,
            self.detail,
            sizing_mode="stretch_width",
        )


# -- documents ---------------------------------------------------------------------------------
class DocumentsView(Viewer):
    """Sales invoices and credit notes, paged in SQL, lines on demand, CSV / Excel downloads."""

    def __init__(self, state: DocumentsState, **params: Any) -> None:
        super().__init__(**params)
        self.state = state
        self.doc_type = pn.widgets.RadioButtonGroup.from_param(
            state.param.doc_type, options=["all", "SIN", "SCN"], margin=(26, 5, 5, 5)
        )
        self.run = pn.widgets.IntInput.from_param(state.param.run_id, name="Run", width=110)
        self.search = pn.widgets.TextInput.from_param(
            state.param.search, name="Number or account", width=220, description=None
        )
        self.sort_by = pn.widgets.Select.from_param(
            state.param.sort_by,
            name="Sort by",
            options={DOC_TITLES[c]: c for c in DOC_TITLES},
            width=150,
        )
        self.descending = pn.widgets.Checkbox.from_param(
            state.param.descending, name="Descending", margin=(32, 5, 5, 5)
        )
        self.csv = pn.widgets.FileDownload(
            callback=partial(state.download, "csv"),
            filename="bear-documents.csv",
            label="CSV",
            button_type="light",
            width=80,
            margin=(26, 5, 5, 5),
        )
        self.xlsx = pn.widgets.FileDownload(
            callback=partial(state.download, "xlsx"),
            filename="bear-documents.xlsx",
            label="Excel",
            button_type="light",
            width=80,
            margin=(26, 5, 5, 5),
        )
        self.pager = PagerBar(state, noun="documents")
        self.table = table(
            height=560,
            titles=DOC_TITLES,
            money=("total",),
            row_content=self._lines,
            embed_content=False,
        )
        state.param.watch(self._rows, "rows")
        self._rows()

    def _rows(self, *_: Any) -> None:
        set_frame(self.table, self.state.rows, money=("total",))

    def _lines(self, row: pd.Series) -> pn.viewable.Viewable:
        lines = self.state.open_lines(int(row["id"]))
        return table(
            lines,
            money=("unit_price", "amount"),
            titles={"id": "Line", "product": "Product", "description": "Description"},
            sizing_mode="stretch_width",
            margin=(0, 30),
        )

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.Row(
                self.doc_type,
                self.run,
                self.search,
                self.sort_by,
                self.descending,
                pn.layout.HSpacer(),
                self.csv,
                self.xlsx,
                sizing_mode="stretch_width",
            ),
            html_pane("<p class='bear-muted'>Expand a row (▸) to see the document's lines.</p>"),
            self.table,
            self.pager,
            sizing_mode="stretch_width",
        )


# -- settings and rules --------------------------------------------------------------------------
class SettingsView(Viewer):
    """Every setting with validation next to the field, test e-mail, rules and plugins."""

    def __init__(
        self,
        state: SettingsState,
        background: Background | None = None,
        user: str = "",
        **params: Any,
    ):
        super().__init__(**params)
        self.state = state
        self._background = background
        self.fields: dict[str, pn.widgets.Widget] = {}
        self.notes: dict[str, pn.pane.HTML] = {}
        rows = []
        for item in state.items:
            name, kind = item["name"], item["kind"]
            value = state.value_text(name)
            label = name.replace("_", " ").capitalize()
            if kind == "bool":
                w: pn.widgets.Widget = pn.widgets.Checkbox(
                    name=label, value=bool(value), margin=(22, 10, 5, 10)
                )
            elif kind == "choice":
                choices = item["allowed"].removeprefix("one of ").replace("'", "").split(", ")
                w = pn.widgets.Select(name=label, options=choices, value=value, width=260)
            else:
                w = pn.widgets.TextInput(
                    name=label, value="" if value is None else str(value), width=260
                )
            w.css_classes = [f"bear-setting-{name}"]
            w.param.watch(partial(self._save, name), "value")
            note = html_pane(
                f"<div class='bear-muted'>{esc(item['help'])} <i>Allowed: {esc(item['allowed'])}.</i></div>",
                margin=(20, 10, 0, 10),
            )
            self.fields[name] = w
            self.notes[name] = note
            rows.append(pn.Row(w, note, sizing_mode="stretch_width"))
        pw = "set" if state.password_set else "not set"
        self.password = html_pane(
            f"<div class='bear-line'>SMTP password: <b>{pw}</b> "
            "<span class='bear-muted'>(read from $BEAR_SMTP_PASSWORD in the server's environment; "
            "never shown or stored)</span></div>"
        )
        self.recipient = pn.widgets.TextInput(
            name="Send a test e-mail to", value=user if "@" in user else "", width=260
        )
        self.send = _button("Send test e-mail", "default", margin=(26, 5, 5, 5))
        self.send.on_click(self._send)
        self.test_message = html_pane()
        self.rules_message = html_pane()
        self.rules = table(
            height=420,
            sortable=True,
            titles={
                "id": "Rule",
                "stage": "Stage",
                "severity": "Severity",
                "plugin": "Plugin",
                "enabled": "Enabled",
                "last_seconds": "Last time (s)",
                "last_violations": "Last violations",
                "last_error": "Last failure",
                "description": "Description",
            },
        )
        self.rules.on_click(self._rule_clicked)
        self.plugins = table(height=200, sortable=True)
        state.param.watch(self._rules, "rules")
        state.param.watch(self._plugins, "plugins")
        state.param.watch(self._messages, "messages")
        state.param.watch(self._rules_message, ["rules_message", "rules_ok"])
        state.param.watch(self._test, ["test_message", "test_ok"])
        self.form = pn.Column(*rows, sizing_mode="stretch_width")
        self._rules()
        self._plugins()

    def _save(self, name: str, event: Any) -> None:
        self.state.save(name, event.new)

    def _messages(self, event: Any) -> None:
        items = {i["name"]: i for i in self.state.items}
        for name, (ok, text) in event.new.items():
            note = self.notes.get(name)
            if note is None:
                continue
            item = items[name]
            hint = f"<div class='bear-muted'>{esc(item['help'])} <i>Allowed: {esc(item['allowed'])}.</i></div>"
            cls = "bear-ok" if ok else "bear-err"
            note.object = f"<div class='{cls}'>{'✓ ' if ok else '✗ '}{esc(text)}</div>{hint}"

    def _send(self, event: Any) -> None:
        self.test_message.object = "<div class='bear-muted'>Sending…</div>"
        recipient = self.recipient.value
        if self._background is None:
            self.state.send_test_email(recipient)
        else:
            self._background(lambda: self.state.send_test_email(recipient))

    def _test(self, *_: Any) -> None:
        s = self.state
        self.test_message.object = (
            alert(s.test_message, "ok" if s.test_ok else "err") if s.test_message else ""
        )

    def _rules(self, *_: Any) -> None:
        frame = self.state.rules
        if frame is None:
            return
        cols = [
            "id",
            "enabled",
            "stage",
            "severity",
            "plugin",
            "last_seconds",
            "last_violations",
            "last_error",
            "description",
        ]
        from bear.ui.state import display_frame

        shown = display_frame(frame[[c for c in cols if c in frame.columns]])
        set_frame(self.rules, shown)
        self.rules.formatters = {**self.rules.formatters, "enabled": {"type": "tickCross"}}

    def _plugins(self, *_: Any) -> None:
        from bear.ui.state import display_frame

        if self.state.plugins is not None:
            set_frame(self.plugins, display_frame(self.state.plugins))

    def _rule_clicked(self, event: Any) -> None:
        """One click on the Enabled tick turns the rule off or on."""
        frame = self.rules.value
        if event.column != "enabled" or not 0 <= event.row < len(frame):
            return
        row = frame.iloc[event.row]
        self.state.set_rule_enabled(str(row["id"]), not bool(row["enabled"]))

    def _rules_message(self, *_: Any) -> None:
        s = self.state
        self.rules_message.object = (
            alert(s.rules_message, "ok" if s.rules_ok else "err") if s.rules_message else ""
        )

    def __panel__(self) -> pn.viewable.Viewable:
        left = pn.Column(
            html_pane(
                "<h3 style='margin:4px 0'>Settings</h3><p class='bear-muted'>Changes are validated and saved when you leave a field or press Enter.</p>"
            ),
            self.form,
            self.password,
            pn.Row(self.recipient, self.send),
            self.test_message,
            sizing_mode="stretch_width",
        )
        right = pn.Column(
            html_pane(
                "<h3 style='margin:4px 0'>Rules</h3><p class='bear-muted'>Click a rule's tick to disable it (it is added to disabled_rules) or enable it again.</p>"
            ),
            self.rules_message,
            self.rules,
            html_pane("<h3 style='margin:4px 0'>Plugins</h3>"),
            self.plugins,
            sizing_mode="stretch_width",
        )
        return pn.Row(left, right, sizing_mode="stretch_width")


# -- notifications -------------------------------------------------------------------------------
class NotificationBell(Viewer):
    """The header bell: unread count; the list in a dialog; mark all read."""

    def __init__(self, state: NotificationState, **params: Any) -> None:
        super().__init__(**params)
        self.state = state
        self.button = pn.widgets.Button(
            name="0",
            icon=BELL_SVG,
            button_type="light",
            width=80,
            margin=(8, 5),
            css_classes=["bear-bell"],
        )
        self.list = html_pane()
        self.mark = _button("Mark all read", "primary", width=140)
        self.mark.on_click(lambda e: state.mark_read())
        self.modal = pn.Modal(
            pn.Column(
                html_pane("<h3 style='margin:4px 0'>Notifications</h3>"),
                self.list,
                self.mark,
                sizing_mode="stretch_width",
            ),
            width=640,
        )
        self.button.on_click(self._open)
        state.param.watch(self._render, ["unread", "items"])
        self._render()

    def _open(self, event: Any) -> None:
        self.state.refresh()
        self.modal.open = True

    def _render(self, *_: Any) -> None:
        n = self.state.unread
        self.button.name = f"{n}"
        self.button.button_type = "warning" if n else "light"
        items = self.state.items
        if items is None or not len(items):
            self.list.object = "<p class='bear-muted'>No notifications yet.</p>"
            return
        notes = []
        for r in items.itertuples():
            unread = r.status == "sent"
            link = (
                f" · <a href='?run={int(r.run_id)}'>open run {int(r.run_id)}</a>"
                if pd.notna(r.run_id)
                else ""
            )
            notes.append(
                f"<div class='bear-note{' unread' if unread else ''}'><div>{esc(r.subject)}</div>"
                f"<div class='when'>{esc(r.created_at)} · {esc(r.kind.replace('_', ' '))} · "
                f"{'unread' if unread else esc(r.status)}{link}</div></div>"
            )
        self.list.object = "".join(notes)

    def __panel__(self) -> pn.viewable.Viewable:
        return self.button
