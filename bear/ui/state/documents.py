"""The Documents screen: sales invoices and credit notes paged in SQL (filter by type, run
and number or account; sort by any column), their lines on demand, and downloads.
"""

from __future__ import annotations

import io
import threading
import time
from typing import TYPE_CHECKING, Any

import pandas as pd
import param

from bear.models import Scopes
from bear.queries import Pager
from bear.queries.records import DOC_COLUMNS, DocumentQuery
from bear.ui.downloads import EXCEL_MAX_ROWS, frame_csv, frame_xlsx
from bear.ui.state.common import Navigation, display_frame

if TYPE_CHECKING:
    from bear.workspace import Workspace

# The columns the screen shows (every one sortable), in order.
SHOWN = (
    "id",
    "number",
    "doc_type",
    "account",
    "company",
    "currency",
    "total",
    "document_date",
    "billing_event_id",
    "process_run_id",
    "run_id",
)


class DocumentsState(Navigation, param.Parameterized):
    """Sales invoices and credit notes, paged in SQL, with lines on demand."""

    doc_type = param.Selector(default="all", objects=["all", "SIN", "SCN"])
    run_id = param.Integer(default=None, allow_None=True)
    search = param.String(default="", doc="document number or account name")
    sort_by = param.Selector(default="id", objects=list(DOC_COLUMNS))
    descending = param.Boolean(default=True)
    page = param.Integer(default=0)
    pages = param.Integer(default=1)
    total = param.Integer(default=0)
    rows = param.DataFrame(default=None, allow_None=True)
    row_ids = param.List(default=[])
    document_id = param.Integer(default=None, allow_None=True)
    lines = param.DataFrame(default=None, allow_None=True)
    seconds = param.Number(default=0.0)

    def __init__(self, ws: Workspace, scope: Scopes | None = None, **params: Any) -> None:
        super().__init__(**params)
        self.ws = ws
        self.scope = scope  # the signed-in person's scopes: documents of their events only
        self.pager = Pager()
        self._lock = threading.RLock()
        self._seen_data = -1
        self.refresh()

    def query(self) -> DocumentQuery:
        return DocumentQuery(self.doc_type, self.run_id, self.search, self.scope)

    def _sort(self) -> list[tuple[str, str]]:
        return [(self.sort_by, "desc" if self.descending else "asc")]

    @param.depends("doc_type", "run_id", "search", "sort_by", "descending", watch=True)
    def refresh(self) -> None:
        with self._lock:
            self._seen_data = self.ws.data_version
            self.total = self.ws.count(self.query())
            self.pager.reset()
            self.pager.total = self.total
            self._load(0)

    def refresh_if_stale(self) -> bool:
        if self._seen_data == self.ws.data_version:
            return False
        self.refresh()
        return True

    def _load(self, page: int) -> None:
        t0 = time.perf_counter()
        frame = self.ws.browse(self.query(), self.pager, page, sort=self._sort(), columns=SHOWN)
        self.param.update(
            rows=display_frame(frame),
            row_ids=[int(i) for i in frame["id"]] if len(frame) else [],
            page=self.pager.page,
            pages=self.pager.pages,
            seconds=time.perf_counter() - t0,
        )

    def goto(self, page: int) -> None:
        with self._lock:
            self._load(page)

    def open_lines(self, document_id: int) -> pd.DataFrame:
        frame = self.ws.document_lines(int(document_id), scope=self.scope)
        keep = [
            c
            for c in ("id", "product", "description", "quantity", "unit_price", "amount")
            if c in frame
        ]
        self.document_id = int(document_id)
        self.lines = display_frame(frame[keep])
        return self.lines

    def export_frame(self, limit: int | None = None) -> pd.DataFrame:
        """Every document matching the filters, in the grid's order (Decimal kept)."""
        return self.ws.export(self.query(), sort=self._sort(), columns=SHOWN, limit=limit)

    def download(self, fmt: str) -> io.BytesIO:
        if fmt == "xlsx":
            return frame_xlsx(self.export_frame(EXCEL_MAX_ROWS), "documents")
        return frame_csv(self.export_frame())
