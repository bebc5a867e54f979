"""The Documents screen: sales invoices and credit notes paged in SQL with filters, sort,
downloads and the lines of the document clicked.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pandas as pd
import panel as pn
from panel.viewable import Viewer

from bear.ui.components import (
    PagerBar,
    html_pane,
    set_frame,
    table,
)
from bear.ui.state import (
    DocumentsState,
)

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
