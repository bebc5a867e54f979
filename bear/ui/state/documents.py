"""The Documents screen: sales invoices and credit notes paged in SQL (filter by type,
status, run and number or account; sort by any column), their lines on demand, downloads,
and posting to accounting (the ticked documents, or every one in progress of a run).
"""

from __future__ import annotations

import io
import threading
import time
from typing import TYPE_CHECKING, Any

import pandas as pd
import param

from bear.auth import require
from bear.errors import BearError
from bear.models import Scopes, User
from bear.queries import Pager
from bear.queries.records import DOC_COLUMNS, DOC_STATUSES, DocumentQuery
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
    "status",
    "billing_event_id",
    "reverses_document_id",
    "reversed_by_document_id",
    "process_run_id",
    "run_id",
)


class DocumentsState(Navigation, param.Parameterized):
    """Sales invoices and credit notes, paged in SQL, with lines on demand."""

    doc_type = param.Selector(default="all", objects=["all", "SIN", "SCN"])
    status = param.Selector(default="all", objects=["all", *DOC_STATUSES])
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
    ticked = param.List(default=[], doc="ids of the documents ticked for posting")
    message = param.String(default="", doc="the outcome of the last post")

    def __init__(
        self,
        ws: Workspace,
        scope: Scopes | None = None,
        user: str = "analyst",
        account: User | None = None,
        load: bool = True,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.ws = ws
        self.scope = scope  # the signed-in person's scopes: documents of their events only
        self.user = user
        self.account = account  # the signed-in person; None: the single-user owner
        self.pager = Pager()
        self._lock = threading.RLock()
        self._seen_data = -1
        if load:  # else on first use (``refresh_if_stale``: the dashboard's tab, when shown)
            self.refresh()

    def query(self) -> DocumentQuery:
        return DocumentQuery(self.doc_type, self.run_id, self.search, self.scope, self.status)

    def _sort(self) -> list[tuple[str, str]]:
        return [(self.sort_by, "desc" if self.descending else "asc")]

    @param.depends("doc_type", "status", "run_id", "search", "sort_by", "descending", watch=True)
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

    # -- posting ------------------------------------------------------------------------------
    def tick(self, positions: list[int]) -> None:
        """The table's ticked rows of the current page (positions) replace those of this page."""
        page = set(self.row_ids)
        kept = [i for i in self.ticked if i not in page]
        self.ticked = kept + [self.row_ids[p] for p in positions if 0 <= p < len(self.row_ids)]

    def page_ticked(self) -> list[int]:
        ticked = set(self.ticked)
        return [pos for pos, i in enumerate(self.row_ids) if i in ticked]

    def post(self, run_id: int | None = None) -> int:
        """Post the ticked documents — or, with ``run_id``, every document in progress of that
        run — to accounting. All or nothing: a document not in progress is named in
        ``message`` and nothing is posted. Returns how many were posted."""
        try:
            require(self.account, "post")
            if run_id is not None:
                done = self.ws.post(int(run_id), user=self.user)
            elif self.ticked:
                done = self.ws.post(list(self.ticked), user=self.user)
            else:
                raise BearError("tick the documents to post first")
        except BearError as exc:
            self.message = f"Nothing was posted: {exc}"
            return 0
        n = len(done)
        what = f"run {run_id}'s documents" if run_id is not None else "the ticked documents"
        self.message = f"Posted {n:,} document{'s' if n != 1 else ''} ({what})."
        self.ticked = []
        self.refresh()
        return n
