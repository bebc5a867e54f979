"""The Documents screen: sales invoices and credit notes paged in SQL with filters, sort,
downloads, the lines of the document clicked, and Post (to accounting).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pandas as pd
import panel as pn
from panel.viewable import Viewer

from bear.auth import allowed
from bear.ui.components import (
    PagerBar,
    alert,
    html_pane,
    set_frame,
    table,
    toast,
)
from bear.ui.state import (
    DocumentsState,
)
from bear.ui.views.common import button

DOC_TITLES = {
    "id": "Id",
    "number": "Number",
    "doc_type": "Type",
    "account": "Account",
    "company": "Company",
    "currency": "Currency",
    "total": "Total",
    "document_date": "Date",
    "status": "Status",
    "billing_event_id": "Event",
    "reverses_document_id": "Reverses",
    "reversed_by_document_id": "Reversed by",
    "process_run_id": "Process run",
    "run_id": "Run",
}


class DocumentsView(Viewer):
    """Sales invoices and credit notes, paged in SQL, lines on demand, CSV / Excel downloads."""

    def __init__(self, state: DocumentsState, **params: Any) -> None:
        super().__init__(**params)
        self.state = state
        self.doc_type = pn.widgets.RadioButtonGroup.from_param(
            state.param.doc_type, options=["all", "SIN", "SCN"], margin=(26, 5, 5, 5)
        )
        self.status = pn.widgets.Select.from_param(
            state.param.status,
            label="Status",
            options={
                "any": "all",
                "in progress": "in_progress",
                "complete (posted)": "complete",
                "discarded": "discarded",
                "reversed": "reversed",
            },
            width=150,
        )
        self.run = pn.widgets.IntInput.from_param(state.param.run_id, label="Run", width=110)
        self.search = pn.widgets.TextInput.from_param(
            state.param.search, label="Number or account", width=220, description=None
        )
        self.sort_by = pn.widgets.Select.from_param(
            state.param.sort_by,
            label="Sort by",
            options={DOC_TITLES[c]: c for c in DOC_TITLES},
            width=150,
        )
        self.descending = pn.widgets.Checkbox.from_param(
            state.param.descending, label="Descending", margin=(32, 5, 5, 5)
        )
        self.csv = pn.widgets.FileDownload(
            callback=partial(state.download, "csv"),
            filename="bear-documents.csv",
            label="CSV",
            color="light",
            width=80,
            margin=(26, 5, 5, 5),
        )
        self.xlsx = pn.widgets.FileDownload(
            callback=partial(state.download, "xlsx"),
            filename="bear-documents.xlsx",
            label="Excel",
            color="light",
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
            selectable="checkbox",
        )
        self._syncing = False
        self.table.param.watch(self._ticked, "selection")
        may_post = allowed(state.account, "post")
        self.post = button("Post ticked", "primary", margin=(26, 5, 5, 5), disabled=True)
        self.post.on_click(lambda e: self._post(None))
        self.post_run = button("Post the run's documents", "default", margin=(26, 5, 5, 5))
        self.post_run.on_click(lambda e: self._post(self.state.run_id))
        self.post.visible = may_post
        self.post_run.visible = may_post and state.run_id is not None
        self.outcome = html_pane()
        state.param.watch(self._rows, "rows")
        state.param.watch(self._ticks, "ticked")
        state.param.watch(self._run, "run_id")
        self._rows()

    def _rows(self, *_: Any) -> None:
        self._syncing = True
        try:
            set_frame(self.table, self.state.rows, money=("total",))
            self.table.selection = self.state.page_ticked()
        finally:
            self._syncing = False

    def _ticked(self, event: Any) -> None:
        if not self._syncing:
            self.state.tick(list(event.new))

    def _ticks(self, *_: Any) -> None:
        n = len(self.state.ticked)
        self.post.label = f"Post {n:,} ticked" if n else "Post ticked"
        self.post.disabled = n == 0

    def _run(self, *_: Any) -> None:
        run = self.state.run_id
        self.post_run.visible = allowed(self.state.account, "post") and run is not None
        if run is not None:
            self.post_run.label = f"Post run {run}'s documents in progress"

    def _post(self, run_id: int | None) -> None:
        n = self.state.post(run_id)
        message = self.state.message
        self.outcome.object = alert(message, "ok" if n else "err")
        toast("success" if n else "error", message)

    def _lines(self, row: pd.Series) -> pn.viewable.Viewable:
        lines = self.state.open_lines(int(row["id"]))
        return table(
            lines,
            money=("unit_price", "amount"),
            titles={
                "id": "Line",
                "product": "Product",
                "description": "Description",
                "quantity": "Quantity",
                "unit_price": "Unit price",
                "amount": "Amount",
            },
            sizing_mode="stretch_width",
            margin=(0, 30),
        )

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.Row(
                self.doc_type,
                self.status,
                self.run,
                self.search,
                self.sort_by,
                self.descending,
                pn.layout.HSpacer(),
                self.csv,
                self.xlsx,
                sizing_mode="stretch_width",
            ),
            pn.Row(
                html_pane(
                    "<p class='bear-muted'>Expand a row (▸) to see the document's lines. Tick "
                    "documents in progress and Post them to accounting: a posted document is "
                    "reversed, not discarded, when its billing is reverted.</p>"
                ),
                pn.layout.HSpacer(),
                self.post_run,
                self.post,
                sizing_mode="stretch_width",
            ),
            self.outcome,
            self.table,
            self.pager,
            sizing_mode="stretch_width",
        )
