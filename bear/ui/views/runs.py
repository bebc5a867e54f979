"""The Runs screen: the run list (newest first) and one run's detail — counts, release
batches, app logs and process logs with their pagers and downloads.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import panel as pn
from panel.viewable import Viewer

from bear.ui.components import (
    PagerBar,
    alert,
    cards_html,
    esc,
    fmt_num,
    html_pane,
    kv_table,
    set_frame,
    table,
)
from bear.ui.state import (
    ACTION_LABEL,
    RunsState,
)
from bear.ui.state.progress import outcome_kind
from bear.ui.views.common import button

RUN_TITLES = {
    "id": "Run",
    "action": "Action",
    "requested_by": "User",
    "outcome": "Outcome",
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
    "level_name": "Level",
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
        self.app_table = table(height=320, titles=APP_TITLES, hidden_columns=["level"])
        self.process_table = table(height=360, titles=PROCESS_TITLES)
        self.status = pn.widgets.RadioButtonGroup.from_param(
            state.param.log_status, label="Status", options=["all", "OK", "ERROR"]
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
                    color="light",
                    width=90,
                )
        self.show_docs = button("Show this run's documents", "primary")
        self.show_docs.on_click(self._docs)
        self.process_table.on_click(self._process_click)
        self.body = pn.Column(sizing_mode="stretch_width")
        state.param.watch(self._render, ["result"])
        state.param.watch(lambda e: set_frame(self.batches, e.new), "batches")
        state.app.param.watch(lambda e: set_frame(self.app_table, e.new), "rows")
        state.process.param.watch(lambda e: set_frame(self.process_table, e.new), "rows")
        # a run opened before the view was built (ws.dashboard("run", run_id=…)) shows at once
        set_frame(self.batches, state.batches)
        set_frame(self.app_table, state.app.rows)
        set_frame(self.process_table, state.process.rows)
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
        look = outcome_kind(r.outcome) if r.finished else "info"
        cards = [
            (
                "Outcome",
                r.outcome,
                f"status {r.status}" + ("" if r.finished else f", stage {r.stage}"),
                look in ("warning", "error"),
            ),
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
        if not r.error and look in ("warning", "error"):
            error = alert(self._shortfall(r), "err" if look == "error" else "")
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

    @staticmethod
    def _shortfall(r: Any) -> str:
        """Why a finished run is not simply completed, in words."""
        head = f"Run {r.id} {r.outcome}"
        if r.outcome == "failed":
            head += ": nothing was done of what it was asked"
            return f"{head} ({r.shortfall})." if r.shortfall else f"{head}."
        return f"{head}: {r.shortfall}. The app logs and the process log say why, event by event."

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
        self.refresh = button("Refresh", "light", width=100)
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
