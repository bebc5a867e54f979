"""What every screen's state shares: the current user, deep links, display-ready frames, the
action names, and ``PagedRows`` — one paged listing (page, pages, total, rows) that a pager
bar binds to directly, read through the workspace's one pager.

Nothing here imports panel or holds SQL: listings are plain query values (a ``Selection``,
``bear.queries.ProcessLogQuery``…) that the workspace turns into SQL.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pandas as pd
import param

from bear.queries import PAGE_SIZE, Pager

if TYPE_CHECKING:
    from bear.workspace import Listable, Workspace

Background = Callable[[Callable[[], None]], None]

KINDS = ("awaiting_release", "awaiting_invoice", "invoiced")
KIND_ACTION = {
    "awaiting_release": "release_and_invoice",
    "awaiting_invoice": "invoice",
    "invoiced": "revert",
}
ACTION_LABEL = {
    "release_and_invoice": "Release and Invoice",
    "release": "Release",
    "invoice": "Create Sales Invoices and Credit Notes",
    "revert": "Revert billing",
}

# Columns each grid shows (all of them sortable: they are keys of selection.COLUMNS).
# The amount comes early: at 1500 px it must be on screen whole, before the wide columns.
_COMMON = ("id", "name", "currency", "summary_amount", "account", "project", "event_date")
GRID_COLUMNS: dict[str, tuple[str, ...]] = {
    "awaiting_release": (
        *_COMMON,
        "days_awaiting",
        "invoice_date",
        "company",
        "region",
        "practice",
        "grp",
        "approved",
    ),
    "awaiting_invoice": (
        *_COMMON,
        "invoice_date",
        "released_at",
        "company",
        "region",
        "practice",
        "grp",
    ),
    "invoiced": (
        *_COMMON,
        "document_number",
        "document_type",
        "document_status",
        "document_date",
        "released_at",
        "company",
    ),
}
TITLES = {
    "id": "Event",
    "name": "Name",
    "account": "Account",
    "project": "Project",
    "company": "Company",
    "region": "Region",
    "practice": "Practice",
    "grp": "Group",
    "currency": "Currency",
    "summary_amount": "Amount",
    "event_date": "Event date",
    "days_awaiting": "Days awaiting",
    "invoice_date": "Invoice date",
    "approved": "Approved",
    "released_at": "Released at",
    "document_number": "Document",
    "document_type": "Type",
    "document_status": "Status",
    "document_date": "Document date",
    "ok": "OK",
    "eligibility": "Eligibility",
    "reasons": "Reasons",
}

__all__ = [
    "ACTION_LABEL",
    "GRID_COLUMNS",
    "TITLES",
    "KINDS",
    "KIND_ACTION",
    "PAGE_SIZE",
    "Background",
    "Navigation",
    "PagedRows",
    "display_frame",
    "parse_run_link",
    "resolve_user",
]


def resolve_user(
    auth_user: str | None = None,
    cli_user: str | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """The current user: Panel's authenticated user, else ``--user`` / ``$BEAR_USER``, else
    ``"analyst"``."""
    env = os.environ if env is None else env
    for candidate in (auth_user, cli_user, env.get("BEAR_USER")):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return "analyst"


def parse_run_link(args: Mapping[str, Any] | None) -> int | None:
    """The run id of a ``/?run=<id>`` link (query params or Panel's ``session_args``)."""
    if not args or "run" not in args:
        return None
    value = args["run"]
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    try:
        run_id = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return run_id if run_id > 0 else None


# The book keeps times in UTC (the database session's zone); shown to the second, zone named.
TIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"


def _cell(value: Any) -> Any:
    """A value ready for display: Decimal → float, dates → ISO text, None → ''."""
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        return value.strftime(TIME_FORMAT)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def display_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` safe to hand to a table widget: no Decimal, no NaT, dates as text.

    Money stays ``Decimal`` everywhere else; it becomes float only here, for display. Whole
    numbers with gaps (nullable ids) become ints and blanks rather than floats and NaN.
    """
    out = frame.copy()
    for col in out.columns:
        s = out[col]
        if pd.api.types.is_datetime64_any_dtype(s):
            out[col] = s.dt.strftime(TIME_FORMAT).fillna("")
        elif isinstance(s.dtype, pd.Int64Dtype):
            if s.isna().any():
                out[col] = pd.Series(
                    ["" if pd.isna(v) else int(v) for v in s], index=out.index, dtype=object
                )
            else:
                out[col] = s.astype("int64")
        elif pd.api.types.is_float_dtype(s):
            if s.isna().any() and (s.dropna() % 1 == 0).all():
                out[col] = pd.Series(
                    ["" if pd.isna(v) else int(v) for v in s], index=out.index, dtype=object
                )
        elif s.dtype == object:
            values = list(s)
            if any(isinstance(v, Decimal) for v in values):
                out[col] = [math.nan if v is None else float(v) for v in values]
            else:
                out[col] = pd.Series([_cell(v) for v in values], index=out.index, dtype=object)
        elif pd.api.types.is_string_dtype(s):
            out[col] = s.fillna("")
    return out


class Navigation:
    """Next / previous / first / last for a state with ``page``, ``pages`` and ``goto(page)``."""

    page: int
    pages: int

    def goto(self, page: int) -> None:
        raise NotImplementedError

    def next_page(self) -> None:
        self.goto(self.page + 1)

    def previous_page(self) -> None:
        self.goto(self.page - 1)

    def first_page(self) -> None:
        self.goto(0)

    def last_page(self) -> None:
        self.goto(self.pages - 1)


class PagedRows(Navigation, param.Parameterized):
    """One paged listing of a screen (a run's process logs, its app logs, a preview's
    violations): the rows of the current page, display-ready, and where the pager is."""

    page = param.Integer(default=0, doc="current page, 0-based")
    pages = param.Integer(default=1)
    total = param.Integer(default=0, doc="rows in the listing")
    rows = param.DataFrame(default=None, allow_None=True, doc="the current page, display-ready")
    seconds = param.Number(default=0.0, doc="server time of the last page load")

    def __init__(self, ws: Workspace, size: int = PAGE_SIZE, **params: Any) -> None:
        super().__init__(**params)
        self.ws = ws
        self.pager = Pager(size=size)
        self.query: Listable | None = None
        self._lock = threading.RLock()

    def show(self, query: Listable | None) -> None:
        """List ``query`` from its first page (``None``: nothing)."""
        with self._lock:
            self.query = query
            self.pager.reset()
            self.pager.total = 0 if query is None else self.ws.count(query)
            self._load(0)

    def refresh(self) -> None:
        """Recount and reload the current page (the listing may have grown)."""
        with self._lock:
            if self.query is not None:
                self.pager.total = self.ws.count(self.query)
            self._load(self.pager.page)

    def goto(self, page: int) -> None:
        """Show page ``page`` (0-based, clamped)."""
        with self._lock:
            self._load(page)

    def _load(self, page: int) -> None:
        t0 = time.perf_counter()
        if self.query is None:
            frame = pd.DataFrame()
            self.pager.page = 0
        else:
            frame = self.ws.browse(self.query, self.pager, page)
        self.param.update(
            rows=display_frame(frame),
            page=self.pager.page,
            pages=self.pager.pages,
            total=self.pager.total,
            seconds=time.perf_counter() - t0,
        )
