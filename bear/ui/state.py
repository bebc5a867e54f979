"""State and actions of the analyst dashboard: ``param.Parameterized`` classes without panel.

Every class here holds what one dashboard session needs — filters, a grid page paged in SQL
with its selection kept as ids (or as the filter itself for "select all"), the Release and
Invoice flow with its warning and progress, run records, documents, settings and rules,
in-app notifications — and talks to the core through the ``Workspace``. Views bind to these
parameters and call these methods; they never hold SQL. The classes are unit-tested without
a browser (``tests/test_ui_state.py``) and timed by ``bench/bench_ui.py``.

Threading: the methods are synchronous and guarded by a lock per instance; every read goes
through ``ws.db.cursor()``, which is per thread. Work that can be slow at a million events
(eligibility of a whole kind right after the data changed, a large preview) is handed to the
``background`` callable a view supplies (a thread); without one it runs inline (tests, bench).
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import math
import os
import re
import smtplib
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import duckdb
import pandas as pd
import param

from bear.errors import BearError
from bear.selection import (
    CATEGORIES,
    COLUMNS,
    FILTERS,
    FROM_SQL,
    ID_FILTERS,
    KIND_SQL,
    Filters,
    Selection,
)

if TYPE_CHECKING:
    from bear.models import Preview, RunResult
    from bear.workspace import Workspace

log = logging.getLogger(__name__)

PAGE_SIZE = 50
CANCEL_TRIES = 8
EXCEL_MAX_ROWS = 1_000_000  # Excel holds 1,048,576 rows per sheet

Background = Callable[[Callable[[], None]], None]

KINDS = ("awaiting_release", "awaiting_invoice")
KIND_ACTION = {"awaiting_release": "release_and_invoice", "awaiting_invoice": "invoice"}
ACTION_LABEL = {
    "release_and_invoice": "Release and Invoice",
    "release": "Release",
    "invoice": "Create Sales Invoices and Credit Notes",
}

# Columns each grid shows (all of them sortable: they are keys of selection.COLUMNS).
GRID_COLUMNS: dict[str, tuple[str, ...]] = {
    "awaiting_release": (
        "id",
        "name",
        "account",
        "project",
        "currency",
        "summary_amount",
        "event_date",
        "invoice_date",
        "company",
        "region",
        "practice",
        "grp",
        "approved",
    ),
    "awaiting_invoice": (
        "id",
        "name",
        "account",
        "project",
        "currency",
        "summary_amount",
        "event_date",
        "invoice_date",
        "released_at",
        "company",
        "region",
        "practice",
        "grp",
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
    "invoice_date": "Invoice date",
    "approved": "Approved",
    "released_at": "Released at",
    "ok": "OK",
    "eligibility": "Eligibility",
    "reasons": "Reasons",
}


# -- small helpers ---------------------------------------------------------------------------
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


def _cell(value: Any) -> Any:
    """A value ready for display: Decimal → float, dates → ISO text, None → ''."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
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
            out[col] = s.dt.strftime("%Y-%m-%d %H:%M:%S").fillna("")
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


def frame_csv(frame: pd.DataFrame) -> io.BytesIO:
    """CSV bytes of a frame (Decimal written exactly)."""
    buf = io.BytesIO()
    frame.to_csv(buf, index=False, encoding="utf-8")
    buf.seek(0)
    return buf


def frame_xlsx(frame: pd.DataFrame, sheet: str = "data") -> io.BytesIO:
    """An Excel workbook (openpyxl) of a frame; at most ``EXCEL_MAX_ROWS`` rows."""
    out = frame.head(EXCEL_MAX_ROWS).copy()
    for col in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[col]) and getattr(out[col].dt, "tz", None):
            out[col] = out[col].dt.tz_localize(None)
    buf = io.BytesIO()
    with pd.ExcelWriter(buf, engine="openpyxl") as xl:
        out.to_excel(xl, index=False, sheet_name=sheet[:31])
    buf.seek(0)
    return buf


def _rows(ws: Workspace, sql: str, params: dict[str, Any]) -> tuple[list[str], list[tuple]]:
    cur = ws.db.cursor()
    res = cur.execute(sql, params)
    cols = [d[0] for d in res.description]
    return cols, res.fetchall()


def _scalar(ws: Workspace, sql: str, params: dict[str, Any] | None = None) -> Any:
    return ws.db.cursor().execute(sql, params or {}).fetchall()[0][0]


# -- keyset paging ---------------------------------------------------------------------------
class _Navigation:
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


@dataclass(frozen=True)
class PageQuery:
    """One sorted, filtered listing paged in SQL, in two steps: the page's keys (id and sort
    value) from a lean source — only the joins the filter and sort need — then the display
    columns of those ids alone. ``next``/``previous`` move by keyset (the sort value and id
    of the edge row: cost independent of depth); jumps use OFFSET."""

    select: str  # "expr AS name, ..." (SQL text built from whitelists only)
    source: str  # lean "FROM ... WHERE ..." with $parameters: which rows, in which order
    params: dict[str, Any]
    sort_expr: str
    descending: bool
    id_expr: str
    rows_from: str  # "FROM ..." with every join the display columns need
    columns: tuple[str, ...]  # names of the display columns, in ``select`` order

    def order(self, reverse: bool = False) -> str:
        desc = self.descending != reverse
        if self.sort_expr == self.id_expr:
            return f"{self.id_expr} {'DESC' if desc else 'ASC'}"
        nulls = "NULLS FIRST" if reverse else "NULLS LAST"
        return (
            f"{self.sort_expr} {'DESC' if desc else 'ASC'} {nulls}, "
            f"{self.id_expr} {'DESC' if reverse else 'ASC'}"
        )

    def keyset(self, key: tuple[Any, Any], after: bool) -> tuple[str, dict[str, Any]]:
        """Rows strictly after (or before) ``key`` = (sort value, id) in this order."""
        value, rid = key
        x, i = self.sort_expr, self.id_expr
        p = {"k_v": value, "k_i": rid}
        if x == i:
            op = (">" if after else "<") if not self.descending else ("<" if after else ">")
            return f"{i} {op} $k_i", {"k_i": rid}
        beyond = "<" if self.descending else ">"  # the direction rows advance in
        behind = ">" if self.descending else "<"
        if after:
            if value is None:
                return f"({x} IS NULL AND {i} > $k_i)", {"k_i": rid}
            return f"({x} IS NULL OR {x} {beyond} $k_v OR ({x} = $k_v AND {i} > $k_i))", p
        if value is None:
            return f"({x} IS NOT NULL OR {i} < $k_i)", {"k_i": rid}
        return f"({x} IS NOT NULL AND ({x} {behind} $k_v OR ({x} = $k_v AND {i} < $k_i)))", p

    def keys_sql(
        self,
        limit: int,
        offset: int = 0,
        key: tuple[Any, Any] | None = None,
        after: bool = True,
        reverse: bool = False,
    ) -> tuple[str, dict[str, Any]]:
        """The page's (id, sort value) pairs, in order."""
        params = dict(self.params)
        where = ""
        if key is not None:
            cond, kp = self.keyset(key, after)
            params.update(kp)
            where = f" AND {cond}"
        sql = (
            f"SELECT {self.id_expr} AS _row_id, {self.sort_expr} AS _sort_key "
            f"{self.source}{where} ORDER BY {self.order(reverse)} LIMIT {int(limit)}"
            + (f" OFFSET {int(offset)}" if offset else "")
        )
        return sql, params

    def rows_sql(self) -> str:
        """The display columns of the ids in ``$page_ids`` (the primary key finds them)."""
        return f"SELECT {self.select}, {self.id_expr} AS _row_id {self.rows_from} WHERE {self.id_expr} = ANY($page_ids)"


_ALIAS_RE = {alias: re.compile(rf"(?<![\w$]){alias}\.") for alias in ("p", "a", "c", "pr")}
_EVENT_JOINS = {
    "p": "JOIN projects p ON p.id = e.project_id",
    "a": "LEFT JOIN accounts a ON a.id = e.account_id",
    "c": "LEFT JOIN companies c ON c.id = e.company_id",
}


def lean_event_source(where: str, sort_expr: str = "") -> str:
    """``FROM … WHERE …`` over the same rows as ``selection.FROM_SQL`` with ``where``, with
    the accounts and companies joined only when ``where`` or ``sort_expr`` use them: joining
    a million rows to names nobody looks at is most of a page's cost. (Projects stay joined:
    FROM_SQL's inner join decides which rows exist, and a join that projects nothing is
    cheaper than a semi-join here.)"""
    text = f"{where} {sort_expr}"
    joins = [_EVENT_JOINS["p"]]
    joins += [_EVENT_JOINS[a] for a in ("a", "c") if _ALIAS_RE[a].search(text)]
    return f"FROM billing_events e {' '.join(joins)} WHERE {where}"


@dataclass
class Pager:
    """Where a listing is: page number and the keys of the page's first and last rows."""

    size: int = PAGE_SIZE
    page: int = 0
    first_key: tuple[Any, Any] | None = None
    last_key: tuple[Any, Any] | None = None
    last_method: str = ""

    def pages(self, total: int) -> int:
        return max(1, math.ceil(total / self.size))

    def reset(self) -> None:
        self.page, self.first_key, self.last_key = 0, None, None

    def load(self, ws: Workspace, q: PageQuery, total: int, target: int) -> pd.DataFrame:
        """Rows of page ``target`` (clamped), by keyset when moving one page or to the end."""
        pages = self.pages(total)
        target = max(0, min(int(target), pages - 1))
        reverse = False
        if target == self.page + 1 and self.last_key is not None:
            sql, params = q.keys_sql(self.size, key=self.last_key, after=True)
            method = "keyset-next"
        elif target == self.page - 1 and self.first_key is not None:
            sql, params = q.keys_sql(self.size, key=self.first_key, after=False, reverse=True)
            reverse, method = True, "keyset-previous"
        elif target == pages - 1 and target > 0:
            sql, params = q.keys_sql(total - target * self.size, reverse=True)
            reverse, method = True, "last"
        else:
            sql, params = q.keys_sql(self.size, offset=target * self.size)
            method = "offset"
        keys = _rows(ws, sql, params)[1]
        if reverse:
            keys.reverse()
        ids = [k[0] for k in keys]
        rows = _rows(ws, q.rows_sql(), {"page_ids": ids})[1] if ids else []
        by_id = {r[-1]: r for r in rows}
        ordered = [by_id[i] for i in ids if i in by_id]
        frame = pd.DataFrame.from_records(ordered, columns=[*q.columns, "_row_id"])
        if keys:
            self.first_key = (keys[0][1], keys[0][0])
            self.last_key = (keys[-1][1], keys[-1][0])
        else:
            self.first_key = self.last_key = None
        self.page = target
        self.last_method = method
        return frame.drop(columns=["_row_id"])


# -- filters ---------------------------------------------------------------------------------
def filter_options(ws: Workspace) -> dict[str, Any]:
    """Choices for the filter widgets: labels (raw text from the data; views escape) → values."""

    def pairs(sql: str) -> dict[str, Any]:
        return {str(label): value for value, label in _rows(ws, sql, {})[1]}

    def values(sql: str) -> list[str]:
        return [r[0] for r in _rows(ws, sql, {})[1] if r[0] is not None]

    rules = [r for r in ws.rules().itertuples() if r.severity == "block"]
    eligibility = {"any": "", "eligible": "eligible", "ineligible": "ineligible"}
    eligibility.update({f"fails {r.id}": r.id for r in rules})
    return {
        "company": pairs("SELECT id, name || ' (' || id || ')' FROM companies ORDER BY name"),
        "account": pairs("SELECT id, name FROM accounts ORDER BY name, id"),
        "project": pairs("SELECT id, name FROM projects ORDER BY name, id"),
        "region": values("SELECT DISTINCT region FROM projects ORDER BY 1"),
        "practice": values("SELECT DISTINCT practice FROM projects ORDER BY 1"),
        "grp": values("SELECT DISTINCT grp FROM projects ORDER BY 1"),
        "currency": values(
            "SELECT DISTINCT currency FROM (SELECT currency FROM projects UNION ALL "
            "SELECT currency FROM company_currencies) ORDER BY 1"
        ),
        "category": list(CATEGORIES),
        "eligibility": eligibility,
    }


class FilterState(param.Parameterized):
    """The sidebar filters of DESIGN §2.1, shared by the session's grids."""

    company = param.List(default=[], doc="company ids")
    account = param.List(default=[], doc="account ids")
    project = param.List(default=[], doc="project ids")
    region = param.List(default=[])
    practice = param.List(default=[])
    grp = param.List(default=[], doc="project group")
    currency = param.List(default=[])
    date_from = param.CalendarDate(default=None, allow_None=True)
    date_to = param.CalendarDate(default=None, allow_None=True)
    min_amount = param.Number(default=None, allow_None=True)
    max_amount = param.Number(default=None, allow_None=True)
    category = param.List(default=[])
    eligibility = param.String(default="", doc="'', 'eligible', 'ineligible' or a rule id")
    search = param.String(default="")
    error = param.String(default="", doc="why the current filters are refused, if they are")
    version = param.Integer(default=0, doc="bumped once per change of the filters")

    NAMES = tuple(f for f in FILTERS if f not in ID_FILTERS)  # the core's filters, in order

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._batch = False
        self.param.watch(self._changed, list(self.NAMES))

    def _changed(self, *events: Any) -> None:
        if not self._batch:
            self.version += 1

    def filters(self) -> Filters:
        """Validated ``Filters``; raises ``BearError`` naming the bad filter."""
        raw: dict[str, Any] = {name: getattr(self, name) for name in self.NAMES}
        for name in ("min_amount", "max_amount"):
            if raw[name] is not None:
                raw[name] = Decimal(repr(float(raw[name])))
        return Filters.build(**raw)

    @classmethod
    def list_names(cls) -> tuple[str, ...]:
        """The filters that take several values."""
        return tuple(n for n in cls.NAMES if isinstance(cls.param[n], param.List))

    def reset(self) -> None:
        """Every filter back to "any", its default (one refresh, not fourteen)."""
        fresh = {n: self.param[n].default for n in self.NAMES}
        fresh.update({n: [] for n in self.list_names()})  # a fresh list each, not the shared one
        self._batch = True
        try:
            self.param.update(**fresh)
        finally:
            self._batch = False
        self.version += 1

    def active(self) -> dict[str, Any]:
        """The filters that are set (for display)."""
        return {n: getattr(self, n) for n in self.NAMES if getattr(self, n) not in (None, [], "")}


# -- the grids -------------------------------------------------------------------------------
CATEGORY_MASKS = "_bear_category_masks"
# workspace -> (data version, Arrow table (id, mask)); weak, so a closed workspace's go too
_MASKS: weakref.WeakKeyDictionary[Any, tuple[int, Any]] = weakref.WeakKeyDictionary()
_MASKS_LOCK = threading.Lock()


def category_masks(ws: Workspace) -> Any:
    """Per billing event, a bit mask of its items' categories (bit i = ``CATEGORIES[i]``),
    as an Arrow table (id, mask) shared by the workspace's sessions until the data changes."""
    version = ws.data_version
    with _MASKS_LOCK:
        hit = _MASKS.get(ws)
        if hit is not None and hit[0] == version:
            return hit[1]
    names = ", ".join(f"'{c}'" for c in CATEGORIES)  # fixed, known words: not user input
    table = (
        ws.db.cursor()
        .sql(
            "SELECT billing_event_id AS id, bit_or((1 << (list_position("
            f"[{names}], category) - 1))::INTEGER) AS mask "
            "FROM billing_event_items GROUP BY billing_event_id"
        )
        .to_arrow_table()
    )
    with _MASKS_LOCK:
        _MASKS[ws] = (version, table)
    return table


def eligibility_ready(ws: Workspace, kind: str) -> bool:
    """True when the eligibility of every event of ``kind`` is computed for the current data."""
    return ws.eligibility_ready(kind)


class GridState(_Navigation, param.Parameterized):
    """A grid of awaiting-release or awaiting-invoice events: page, sort, selection, totals."""

    kind = param.Selector(default="awaiting_release", objects=list(KINDS))
    sort_by = param.Selector(default="id", objects=list(COLUMNS))
    descending = param.Boolean(default=False)
    page = param.Integer(default=0, doc="current page, 0-based")
    pages = param.Integer(default=1)
    total = param.Integer(default=0, doc="events matching the filters")
    rows = param.DataFrame(default=None, allow_None=True, doc="the current page, display-ready")
    row_ids = param.List(default=[], doc="billing event ids of the current page, in order")
    select_all = param.Boolean(default=False, doc="every event matching the filters is selected")
    selected_count = param.Integer(default=0)
    selection_totals = param.DataFrame(default=None, allow_None=True)
    cards = param.Dict(default={}, doc="events, projects, amount per currency, ineligible")
    ineligible = param.Integer(default=None, allow_None=True, doc="None while being computed")
    active = param.Boolean(default=True, doc="visible: refreshes on filter changes")
    loading = param.Boolean(default=False)
    error = param.String(default="")
    version = param.Integer(default=0, doc="bumped whenever rows or selection change")
    seconds = param.Number(default=0.0, doc="server time of the last page load")

    def __init__(
        self,
        ws: Workspace,
        filters: FilterState | None = None,
        background: Background | None = None,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.ws = ws
        self.filter_state = filters or FilterState()
        self.background = background
        self.pager = Pager()
        self._lock = threading.RLock()
        self._ids: set[int] = set()  # explicitly ticked events
        self._excluded: set[int] = set()  # unticked while "select all" is on
        self._all_selection: Selection | None = None  # the filter snapshot of "select all"
        self._all_count = 0
        self._stale = True
        self._seen_data = -1
        self._matches: tuple[Any, Any] | None = None  # (filters key, Arrow ids) of costly filters
        self._matches_name = f"_bear_grid_{id(self):x}"
        self.filter_state.param.watch(self._on_filters, "version")

    # -- loading ---------------------------------------------------------------------------
    @property
    def action(self) -> str:
        return KIND_ACTION[self.kind]

    def columns(self) -> tuple[str, ...]:
        return GRID_COLUMNS[self.kind]

    def _on_filters(self, *_: Any) -> None:
        self._stale = True
        if self.select_all:
            # "select all matching" meant the old filters: drop it rather than guess.
            self._clear_all()
        if self.active:
            self.refresh()

    @param.depends("active", watch=True)
    def _on_active(self) -> None:
        if self.active and (self._stale or self._seen_data != self.ws.data_version):
            self.refresh()

    @param.depends("sort_by", "descending", watch=True)
    def _on_sort(self) -> None:
        with self._lock:
            self.pager.reset()
            if not self._stale:
                self._load(0)

    def selection_filter(self) -> Selection:
        """The grid's current filters as a lazy selection (raises ``BearError`` if invalid)."""
        return Selection(self.ws, self.kind, self.filter_state.filters())  # type: ignore[arg-type]

    def where_sql(self, sel: Selection) -> tuple[str, dict[str, Any]]:
        """The selection's condition, for this grid's own queries.

        Free text and item category are costly predicates (a scan of every name, a join to
        five million items). Categories are answered from per-event category masks kept per
        data version; with free text the matching ids are found once per filter and data
        version, kept as an Arrow column, and the count, cards and pages select from them.
        """
        f = sel.filters
        extra = ""
        if f.category:
            # the item-category predicate joins five million items: use the per-event
            # category masks (computed once per data version) instead
            masks = category_masks(self.ws)
            sel = Selection(self.ws, sel.kind, replace(f, category=()))
            self.ws.db.cursor().register(CATEGORY_MASKS, masks)
            bits = sum(1 << CATEGORIES.index(c) for c in f.category)
            extra = f" AND e.id IN (SELECT id FROM {CATEGORY_MASKS} WHERE (mask & {bits}) <> 0)"
        where, params = sel.where_sql()
        where += extra
        if not f.search:
            return where, params
        key = (self.kind, f, self.ws.data_version)  # f still holds the category
        if self._matches is None or self._matches[0] != key:
            ids = (
                self.ws.db.cursor()
                .sql(f"SELECT e.id AS id {lean_event_source(where)}", params=params)
                .to_arrow_table()
            )
            self._matches = (key, ids)
        cur = self.ws.db.cursor()
        cur.register(self._matches_name, self._matches[1])  # per cursor, so per thread
        return f"{KIND_SQL[self.kind]} AND e.id IN (SELECT id FROM {self._matches_name})", {}

    def refresh(self) -> None:
        """Recount, reload the first page and the summary cards for the current filters."""
        with self._lock:
            self._stale = False
            self._seen_data = self.ws.data_version
            self.pager.reset()
            try:
                sel = self.selection_filter()
            except BearError as exc:
                self.filter_state.error = str(exc)
                self.error = str(exc)
                return
            self.filter_state.error = ""
            cold = sel.filters.eligibility and not eligibility_ready(self.ws, self.kind)
            if cold and self.background is not None:
                self.loading = True
                self.error = ""
                self.background(self._warm_then_refresh)
                return
            self._summary(sel)
            self._load(0)
            self._update_selection_totals()
        self._schedule_ineligible(sel)

    def refresh_if_stale(self) -> bool:
        """Reload the current page when a run (or anything else) changed the data."""
        if self._seen_data == self.ws.data_version or not self.active:
            return False
        with self._lock:
            self._seen_data = self.ws.data_version
            try:
                sel = self.selection_filter()
            except BearError:
                return False
            self._summary(sel)
            self._load(self.pager.page)
            self._update_selection_totals()
        self._schedule_ineligible(sel)
        return True

    def _warm_then_refresh(self) -> None:
        try:
            self.warm_eligibility()
        finally:
            self.loading = False
        self.refresh()

    def warm_eligibility(self) -> None:
        """Compute the eligibility of every event of this kind (slow at 1M; cached after)."""
        self.ws.eligibility(self.kind)

    def _summary(self, sel: Selection) -> None:
        where, params = self.where_sql(sel)
        source = lean_event_source(where)
        # One statement: DuckDB reuses the filtered rows for the distinct project count.
        cols, rows = _rows(
            self.ws,
            f"""
            WITH s AS (SELECT e.currency, e.project_id, e.summary_amount {source})
            SELECT currency, count(*) AS events, sum(summary_amount) AS amount,
                   count(*) FILTER (summary_amount > 0) AS sales_invoices,
                   count(*) FILTER (summary_amount < 0) AS credit_notes,
                   (SELECT count(DISTINCT project_id) FROM s) AS projects
            FROM s GROUP BY currency ORDER BY currency
            """,
            params,
        )
        per_currency = [dict(zip(cols, r, strict=True)) for r in rows]
        projects = int(per_currency[0]["projects"]) if per_currency else 0
        self.total = sum(int(r["events"]) for r in per_currency)
        self.pages = self.pager.pages(self.total)
        self.cards = {
            "events": self.total,
            "projects": projects,
            "amounts": [(r["currency"], r["amount"]) for r in per_currency],
            "sales_invoices": sum(int(r["sales_invoices"]) for r in per_currency),
            "credit_notes": sum(int(r["credit_notes"]) for r in per_currency),
        }

    def _schedule_ineligible(self, sel: Selection) -> None:
        elig = sel.filters.eligibility
        if elig == "eligible":
            self.ineligible = 0
        elif elig:
            self.ineligible = self.total
        elif eligibility_ready(self.ws, self.kind):
            self._count_ineligible(sel)
        else:
            self.ineligible = None
            if self.background is not None:
                self.background(lambda: self._warm_then_count(sel))
            else:
                self._warm_then_count(sel)

    def _warm_then_count(self, sel: Selection) -> None:
        self.warm_eligibility()
        with self._lock:
            self._count_ineligible(sel)

    def _count_ineligible(self, sel: Selection) -> None:
        try:
            where, params = self.where_sql(sel)
            cond, extra = self.ws._eligibility_condition(self.kind, "ineligible")
            where, params = f"({where}) AND ({cond})", {**params, **extra}
            self.ineligible = int(
                _scalar(self.ws, f"SELECT count(*) {lean_event_source(where)}", params)
            )
        except BearError as exc:
            self.error = str(exc)

    def goto(self, page: int) -> None:
        """Show page ``page`` (0-based, clamped)."""
        with self._lock:
            self._load(page)

    def sort(self, column: str, descending: bool = False) -> None:
        """Sort by a whitelisted column (server-side); shows the first page."""
        if column not in COLUMNS:
            raise BearError(f"cannot sort by {column!r}; sortable: {', '.join(COLUMNS)}")
        self.param.update(sort_by=column, descending=bool(descending))

    def page_query(self, sel: Selection | None = None) -> PageQuery:
        if sel is None:
            sel = self.selection_filter()
        where, params = self.where_sql(sel)
        cols = self.columns()
        sort_expr = COLUMNS[self.sort_by]
        return PageQuery(
            select=", ".join(f"{COLUMNS[c]} AS {c}" for c in cols),
            source=lean_event_source(where, sort_expr),
            params=params,
            sort_expr=sort_expr,
            descending=self.descending,
            id_expr="e.id",
            rows_from=FROM_SQL,
            columns=cols,
        )

    def _load(self, page: int) -> None:
        t0 = time.perf_counter()
        try:
            sel = self.selection_filter()
            frame = self.pager.load(self.ws, self.page_query(sel), self.total, page)
        except BearError as exc:
            self.error = str(exc)
            return
        ids = [int(i) for i in frame["id"]] if len(frame) else []
        elig = self.page_eligibility(ids)
        frame.insert(2, "ok", [i not in elig for i in ids])
        frame.insert(3, "eligibility", [elig.get(i, ("eligible", 0))[0] for i in ids])
        frame.insert(4, "reasons", [elig.get(i, ("", 0))[1] for i in ids])
        self.error = ""
        self.param.update(
            rows=display_frame(frame),
            row_ids=ids,
            page=self.pager.page,
            pages=self.pager.pages(self.total),
            seconds=time.perf_counter() - t0,
        )
        self.version += 1

    def page_eligibility(self, ids: Sequence[int]) -> dict[int, tuple[str, int]]:
        """{event id: (first reason, number of reasons)} for ineligible events among ``ids``.

        From the cached whole-kind eligibility when it is ready; otherwise the page's events
        alone are judged (a preview of ≤ 50 events), so a page never waits for a million.
        """
        if not ids:
            return {}
        if eligibility_ready(self.ws, self.kind) or self.background is None:
            table = self.ws.eligibility(self.kind)
            sub = table[table["billing_event_id"].isin(ids)]
            return {
                int(r.billing_event_id): (str(r.first_message), int(r.reasons))
                for r in sub.itertuples()
            }
        try:
            pv = self.ws.preview(list(ids), action=self.action, full=True)
        except BearError as exc:
            log.warning("page eligibility failed: %s", exc)
            return {i: ("…", 0) for i in ids}
        v = pv.violations
        v = v[v["severity"] == "block"].copy()
        if not len(v):
            return {}
        v["_order"] = (v["stage"] != "release").astype(int).astype(str) + v["rule_id"]
        v = v.sort_values(["billing_event_id", "_order"])
        out: dict[int, tuple[str, int]] = {}
        for eid, g in v.groupby("billing_event_id", sort=False):
            out[int(eid)] = (str(g["message"].iloc[0]), len(g))
        return out

    def reasons(self, event_id: int) -> pd.DataFrame:
        """Every violation of one event for this grid's action (all reasons, on demand)."""
        pv = self.ws.preview([int(event_id)], action=self.action, full=True)
        v = pv.violations
        return v[["stage", "rule_id", "severity", "message"]].reset_index(drop=True)

    # -- selection -------------------------------------------------------------------------
    def is_selected(self, event_id: int) -> bool:
        if self.select_all:
            return event_id not in self._excluded
        return event_id in self._ids

    def page_selection(self) -> list[int]:
        """Row positions of the current page that are selected (for the table widget)."""
        return [pos for pos, i in enumerate(self.row_ids) if self.is_selected(i)]

    def set_page_selection(self, positions: Sequence[int]) -> None:
        """The table's ticked rows of the current page (positions): update the id sets."""
        with self._lock:
            ticked = {self.row_ids[p] for p in positions if 0 <= p < len(self.row_ids)}
            for i in self.row_ids:
                if self.select_all:
                    if i in ticked:
                        self._excluded.discard(i)
                    else:
                        self._excluded.add(i)
                elif i in ticked:
                    self._ids.add(i)
                else:
                    self._ids.discard(i)
            self._selection_changed()

    def select_ids(self, ids: Sequence[int], selected: bool = True) -> None:
        """Tick or untick events by id (whatever page they are on)."""
        with self._lock:
            for i in ids:
                if self.select_all:
                    (self._excluded.discard if selected else self._excluded.add)(int(i))
                else:
                    (self._ids.add if selected else self._ids.discard)(int(i))
            self._selection_changed()

    def select_all_matching(self) -> None:
        """Select every event matching the filters, without listing their ids anywhere."""
        with self._lock:
            sel = self.selection_filter()
            self._all_selection = sel
            self._all_count = self.total
            self._excluded.clear()
            self._ids.clear()
            self.select_all = True
            self._selection_changed()

    def _clear_all(self) -> None:
        self._all_selection = None
        self._excluded.clear()
        self.select_all = False

    def clear_selection(self) -> None:
        with self._lock:
            self._ids.clear()
            self._clear_all()
            self._selection_changed()

    def _selection_changed(self) -> None:
        if self.select_all:
            self.selected_count = max(0, self._all_count - len(self._excluded))
        else:
            self.selected_count = len(self._ids)
        self._update_selection_totals()
        self.version += 1

    def selection(self) -> Selection | list[int] | None:
        """What an action gets: the "select all" filter itself, or the ticked ids."""
        if self.select_all and self._all_selection is not None:
            if not self._excluded:
                return self._all_selection
            return self._all_selection.refine(exclude_ids=sorted(self._excluded))
        if self._ids:
            return sorted(self._ids)
        return None

    def selection_ids_hint(self) -> str:
        """How the selection is held (shown to the analyst)."""
        if self.select_all:
            extra = f", {len(self._excluded):,} unticked" if self._excluded else ""
            return f"all {self._all_count:,} matching events{extra}"
        return f"{len(self._ids):,} ticked events"

    def _update_selection_totals(self) -> None:
        sel = self.selection()
        if sel is None:
            self.selection_totals = None
            return
        if not isinstance(sel, Selection):
            sel = Selection(self.ws, self.kind, Filters(ids=tuple(sel)))  # type: ignore[arg-type]
        try:
            self.selection_totals = sel.totals()
        except BearError as exc:
            self.error = str(exc)


# -- the Release and Invoice flow -----------------------------------------------------------
PHASES = (
    "idle",  # no dialog
    "working",  # a preview is being computed
    "preview",  # the Preview button's answer
    "confirm",  # validated, everything eligible
    "warning",  # validated, some events are ineligible
    "unvalidated",  # above validation_limit: validation skipped
    "nothing",  # validated, nothing is eligible
    "started",  # the run was submitted
    "error",
)


class ActionFlow(param.Parameterized):
    """Preview → warning / confirmation → run, for one grid's selection."""

    phase = param.Selector(default="idle", objects=list(PHASES))
    action = param.Selector(default="release_and_invoice", objects=list(ACTION_LABEL))
    preview = param.Parameter(default=None, doc="the bear.models.Preview shown")
    message = param.String(default="")
    run_id = param.Integer(default=None, allow_None=True, doc="the run this flow started last")
    violations_page = param.Integer(default=0)

    def __init__(
        self,
        ws: Workspace,
        grid: GridState,
        user: str = "analyst",
        background: Background | None = None,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.ws = ws
        self.grid = grid
        self.user = user
        self.background = background
        self._selection: Selection | list[int] | None = None
        self._lock = threading.RLock()

    @property
    def label(self) -> str:
        return ACTION_LABEL[self.action]

    def open(self, action: str, preview_only: bool = False) -> None:
        """Start the flow for the grid's selection: compute the preview (maybe in background)."""
        if action not in ACTION_LABEL:
            raise BearError(f"unknown action {action!r}")
        sel = self.grid.selection()
        self.param.update(action=action, preview=None, violations_page=0, message="")
        if sel is None:
            self.param.update(phase="error", message="Select at least one billing event first.")
            return
        self._selection = sel
        self.phase = "working"
        self._spawn(lambda: self._compute(full=False, preview_only=preview_only))

    def validate_all(self) -> None:
        """Validate the whole selection even above ``validation_limit``."""
        if self._selection is None:
            return
        self.phase = "working"
        self._spawn(lambda: self._compute(full=True, preview_only=False))

    def _spawn(self, fn: Callable[[], None]) -> None:
        if self.background is None:
            fn()
        else:
            self.background(fn)

    def _compute(self, full: bool, preview_only: bool) -> None:
        with self._lock:
            try:
                pv = self.ws.preview(self._selection, action=self.action, full=full)
            except BearError as exc:
                self.param.update(phase="error", message=str(exc))
                return
            if preview_only:
                phase = "preview"
            elif not pv.validated:
                phase = "unvalidated"
            elif pv.eligible == 0:
                phase = "nothing"
            elif pv.ineligible > 0:
                phase = "warning"
            else:
                phase = "confirm"
            self.param.update(preview=pv, phase=phase, violations_page=0, message=pv.reason)

    def proceed(self) -> int | None:
        """Continue: submit the run (only the eligible events when validated). Returns its id."""
        with self._lock:
            pv: Preview | None = self.preview
            if self._selection is None or pv is None:
                self.param.update(phase="error", message="Nothing to run: preview first.")
                return None
            target: Any
            if pv.validated:
                if pv.eligible == 0:
                    self.param.update(phase="nothing")
                    return None
                target = pv.eligible_ids if pv.ineligible else self._selection
            else:
                target = self._selection
            start = {
                "release_and_invoice": self.ws.release_and_invoice,
                "release": self.ws.release,
                "invoice": self.ws.invoice,
            }[self.action]
            try:
                handle = start(target, user=self.user, wait=False, full=bool(pv.validated))
            except BearError as exc:
                self.param.update(phase="error", message=str(exc))
                return None
            run_id = int(handle.id)
            self.param.update(run_id=run_id, phase="started", message=f"Run {run_id} started")
            self.grid.clear_selection()
            return run_id

    def close(self) -> None:
        self.param.update(phase="idle", preview=None, message="")
        self._selection = None

    def ineligible_frame(self) -> pd.DataFrame:
        """Every blocking violation of the preview with the event's name."""
        pv = self.preview
        if pv is None or not len(pv.violations):
            return pd.DataFrame(
                columns=["billing_event_id", "name", "stage", "rule_id", "severity", "message"]
            )
        v = pv.violations
        v = v[v["severity"] == "block"]
        ids = sorted({int(i) for i in v["billing_event_id"]})
        names = self.ws._frame(
            "SELECT id AS billing_event_id, name FROM billing_events WHERE id IN (SELECT unnest($ids))",
            {"ids": ids},
        )
        out = v.merge(names, on="billing_event_id", how="left")
        return out[["billing_event_id", "name", "stage", "rule_id", "severity", "message"]]

    def violations_rows(self, page: int | None = None) -> tuple[pd.DataFrame, int]:
        """One page of ineligible events with reasons (display-ready), and the page count."""
        frame = self.ineligible_frame()
        pages = max(1, math.ceil(len(frame) / PAGE_SIZE))
        p = max(0, min(self.violations_page if page is None else page, pages - 1))
        return display_frame(frame.iloc[p * PAGE_SIZE : (p + 1) * PAGE_SIZE]), pages

    def violations_csv(self) -> io.BytesIO:
        return frame_csv(self.ineligible_frame())

    def expected_documents(self) -> pd.DataFrame:
        pv = self.preview
        if pv is None:
            return pd.DataFrame(columns=["doc_type", "currency", "count", "total"])
        return pv.expected_documents


# -- progress of a run -----------------------------------------------------------------------
class RunProgress(param.Parameterized):
    """The live progress of one run, read from ``ws.run(id)`` by a periodic poll."""

    run_id = param.Integer(default=None, allow_None=True)
    action = param.String(default="")
    status = param.String(default="")
    stage = param.String(default="")
    batches_done = param.Integer(default=0)
    batches = param.Integer(default=0)
    failed_batches = param.Integer(default=0)
    released = param.Integer(default=0)
    not_released = param.Integer(default=0)
    invoice_done = param.Integer(default=0)
    invoice_total = param.Integer(default=0)
    sales_invoices = param.Integer(default=0)
    credit_notes = param.Integer(default=0)
    documents = param.Integer(default=0)
    not_passed = param.Integer(default=0)
    fraction = param.Number(default=0.0, bounds=(0, 1))
    rate = param.Number(default=None, allow_None=True, doc="events per second in this stage")
    eta_s = param.Number(default=None, allow_None=True)
    finished = param.Boolean(default=False)
    error = param.String(default="")
    message = param.String(default="")

    def __init__(self, ws: Workspace, **params: Any) -> None:
        super().__init__(**params)
        self.ws = ws
        self._samples: list[tuple[float, str, int]] = []

    def watch_run(self, run_id: int) -> None:
        self._samples = []
        self.param.update(run_id=int(run_id), finished=False, message="", error="")
        self.poll()

    @staticmethod
    def stage_work(r: RunResult) -> tuple[str, int, int]:
        """(stage, events done, events to do) of a run's current stage."""
        if r.stage in ("queued", "release") and r.action != "invoice":
            return "release", r.released + r.not_released - r.excluded, r.selected - r.excluded
        if r.stage in ("invoice", "done") or r.action == "invoice":
            total = r.invoice_total or (r.released if r.action != "invoice" else r.selected)
            return "invoice", r.invoice_done, total
        return r.stage, 0, 0

    def poll(self, now: float | None = None) -> bool:
        """Read the run; returns True while it is still going."""
        if self.run_id is None:
            return False
        try:
            r = self.ws.run(self.run_id)
        except BearError as exc:
            self.param.update(error=str(exc), finished=True)
            return False
        now = time.monotonic() if now is None else now
        stage, done, todo = self.stage_work(r)
        self._samples = [s for s in self._samples if s[1] == stage][-30:]
        self._samples.append((now, stage, done))
        rate = eta = None
        t0, _, d0 = self._samples[0]
        if now > t0 and done > d0:
            rate = (done - d0) / (now - t0)
            eta = max(0.0, (todo - done) / rate) if rate > 0 else None
        rel = r.batches_done / r.batches if r.batches else 0.0
        inv = r.invoice_done / r.invoice_total if r.invoice_total else 0.0
        if r.finished:
            fraction, eta = 1.0, 0.0
        elif r.action == "release_and_invoice":
            fraction = 0.5 + 0.5 * inv if stage == "invoice" else 0.5 * rel
        else:
            fraction = rel if r.action == "release" else inv
        self.param.update(
            action=r.action,
            status=r.status,
            stage=r.stage,
            batches_done=r.batches_done,
            batches=r.batches,
            failed_batches=r.failed_batches,
            released=r.released,
            not_released=r.not_released,
            invoice_done=r.invoice_done,
            invoice_total=r.invoice_total,
            sales_invoices=r.sales_invoices,
            credit_notes=r.credit_notes,
            documents=r.sales_invoices + r.credit_notes,
            not_passed=r.not_passed,
            fraction=max(0.0, min(1.0, fraction)),
            rate=rate,
            eta_s=eta,
            finished=r.finished,
            error=r.error or "",
        )
        return not r.finished

    def cancel(self) -> str:
        """Ask the run to stop at its next batch boundary; returns what happened, in words."""
        if self.run_id is None:
            return "No run to cancel."
        for attempt in range(CANCEL_TRIES):
            try:
                self.ws.cancel(self.run_id)
                break
            except BearError as exc:
                self.message = str(exc)
                return self.message
            except duckdb.TransactionException:
                # ws.cancel writes the run's row while the runner may be updating it; the
                # conflict is harmless and retryable (see the report: the core should retry).
                time.sleep(0.05 * (attempt + 1))
        else:
            self.message = f"Run {self.run_id} is busy writing; press Cancel again."
            return self.message
        self.message = f"Cancelling run {self.run_id} at the next batch boundary…"
        self.poll()
        return self.message

    def summary(self) -> str:
        """One line for the progress panel."""
        if self.run_id is None:
            return ""
        parts = [f"Run {self.run_id}: {self.status}", f"stage {self.stage}"]
        if self.batches:
            parts.append(f"batches {self.batches_done:,}/{self.batches:,}")
        parts += [f"released {self.released:,}", f"documents {self.documents:,}"]
        if self.failed_batches:
            parts.append(f"failed batches {self.failed_batches:,}")
        if self.rate:
            parts.append(f"{self.rate:,.0f} events/s")
        if self.eta_s is not None and not self.finished:
            parts.append(f"ETA {self.eta_s:,.0f} s")
        return " · ".join(parts)


# -- notifications ---------------------------------------------------------------------------
class NotificationState(param.Parameterized):
    """The in-app notifications of the current user: unread count, recent list, new ones."""

    user = param.String(default="analyst")
    unread = param.Integer(default=0)
    items = param.DataFrame(default=None, allow_None=True)

    def __init__(self, ws: Workspace, user: str = "analyst", **params: Any) -> None:
        super().__init__(user=user, **params)
        self.ws = ws
        self._last_id = int(
            _scalar(
                ws,
                "SELECT coalesce(max(id), 0) FROM notifications WHERE channel = 'in_app' AND recipient = $u",
                {"u": user},
            )
        )
        self.refresh()

    def refresh(self) -> None:
        cols, rows = _rows(
            self.ws,
            "SELECT id, run_id, kind, subject, body, status, created_at FROM notifications "
            "WHERE channel = 'in_app' AND recipient = $u ORDER BY id DESC LIMIT 50",
            {"u": self.user},
        )
        self.items = pd.DataFrame.from_records(rows, columns=cols)
        self.unread = int(
            _scalar(
                self.ws,
                "SELECT count(*) FROM notifications WHERE channel = 'in_app' AND recipient = $u "
                "AND status = 'sent'",
                {"u": self.user},
            )
        )

    def poll(self) -> list[dict[str, Any]]:
        """Notifications that arrived since the last poll (for toasts); refreshes the bell."""
        cols, rows = _rows(
            self.ws,
            "SELECT id, run_id, kind, subject, status FROM notifications WHERE channel = 'in_app' "
            "AND recipient = $u AND id > $last ORDER BY id",
            {"u": self.user, "last": self._last_id},
        )
        new = [dict(zip(cols, r, strict=True)) for r in rows]
        if new:
            self._last_id = max(n["id"] for n in new)
        self.refresh()
        return new

    def mark_read(self, ids: Sequence[int] | None = None) -> int:
        """Mark delivered notifications read (all of the user's, or these ids)."""
        n = self.ws.mark_notifications_read(self.user, ids)
        self.refresh()
        return n


# -- runs ------------------------------------------------------------------------------------
class RunsState(param.Parameterized):
    """The run list and one run's detail: batches, app logs, process logs, documents."""

    runs = param.DataFrame(default=None, allow_None=True)
    run_id = param.Integer(default=None, allow_None=True)
    result = param.Parameter(default=None, doc="bear.models.RunResult of the open run")
    batches = param.DataFrame(default=None, allow_None=True)
    log_status = param.Selector(default="all", objects=["all", "OK", "ERROR"])
    process_rows = param.DataFrame(default=None, allow_None=True)
    process_page = param.Integer(default=0)
    process_pages = param.Integer(default=1)
    process_total = param.Integer(default=0)
    app_rows = param.DataFrame(default=None, allow_None=True)
    app_page = param.Integer(default=0)
    app_pages = param.Integer(default=1)
    app_total = param.Integer(default=0)
    error = param.String(default="")

    def __init__(self, ws: Workspace, **params: Any) -> None:
        super().__init__(**params)
        self.ws = ws
        self.refresh_runs()

    def refresh_runs(self, limit: int = 500) -> None:
        frame = self.ws.runs(limit=limit)
        frame = frame.assign(documents=frame["sales_invoices"] + frame["credit_notes"])
        self.runs = frame

    def open(self, run_id: int) -> bool:
        """Open a run's detail; False (with ``error``) if there is no such run."""
        try:
            result = self.ws.run(int(run_id))
        except (BearError, TypeError, ValueError) as exc:
            self.error = str(exc)
            return False
        self.error = ""
        self.param.update(run_id=int(run_id), result=result, log_status="all")
        self.batches = display_frame(self.ws.release_batches(int(run_id)))
        self.load_process_logs(0)
        self.load_app_logs(0)
        return True

    def reload(self) -> None:
        """Re-read the open run (while it progresses)."""
        if self.run_id is not None:
            self.result = self.ws.run(self.run_id)
            self.batches = display_frame(self.ws.release_batches(self.run_id))
            self.load_process_logs(self.process_page)
            self.load_app_logs(self.app_page)

    def close(self) -> None:
        self.param.update(run_id=None, result=None)

    @param.depends("log_status", watch=True)
    def _on_status(self) -> None:
        self.load_process_logs(0)

    def _process_where(self) -> tuple[str, dict[str, Any]]:
        r = self.result
        pr = r.process_run_id if r is not None else None
        params: dict[str, Any] = {"p": -1 if pr is None else int(pr)}
        where = "l.process_run_id = $p"
        if self.log_status != "all":
            where += " AND l.status = $s"
            params["s"] = self.log_status
        return where, params

    def load_process_logs(self, page: int) -> None:
        where, params = self._process_where()
        total = int(_scalar(self.ws, f"SELECT count(*) FROM process_logs l WHERE {where}", params))
        pages = max(1, math.ceil(total / PAGE_SIZE))
        page = max(0, min(page, pages - 1))
        frame = self.ws._frame(
            "SELECT l.billing_event_id, e.name AS event, l.status, l.message, l.rule_id, "
            "l.document_id, d.number AS document_number, l.created_at FROM process_logs l "
            "LEFT JOIN documents d ON d.id = l.document_id LEFT JOIN billing_events e ON e.id = l.billing_event_id "
            f"WHERE {where} ORDER BY l.billing_event_id LIMIT {PAGE_SIZE} OFFSET {page * PAGE_SIZE}",
            params,
        )
        self.param.update(
            process_rows=display_frame(frame),
            process_page=page,
            process_pages=pages,
            process_total=total,
        )

    def load_app_logs(self, page: int) -> None:
        rid = -1 if self.run_id is None else int(self.run_id)
        total = int(_scalar(self.ws, "SELECT count(*) FROM app_logs WHERE run_id = $r", {"r": rid}))
        pages = max(1, math.ceil(total / PAGE_SIZE))
        page = max(0, min(page, pages - 1))
        frame = self.ws._frame(
            "SELECT created_at, batch_seq, level, origin, record_id, rule_id, message, detail "
            f"FROM app_logs WHERE run_id = $r ORDER BY id LIMIT {PAGE_SIZE} OFFSET {page * PAGE_SIZE}",
            {"r": rid},
        )
        self.param.update(
            app_rows=display_frame(frame), app_page=page, app_pages=pages, app_total=total
        )

    def export_frame(self, what: str) -> pd.DataFrame:
        """A whole listing of the open run, for download."""
        if self.run_id is None:
            raise BearError("open a run first")
        if what == "process_logs":
            if self.result is None or self.result.process_run_id is None:
                return pd.DataFrame(columns=["billing_event_id", "status", "message"])
            status = None if self.log_status == "all" else self.log_status
            return self.ws.process_logs(self.result.process_run_id, status=status)
        if what == "app_logs":
            return self.ws.app_logs(run_id=self.run_id)
        if what == "batches":
            return self.ws.release_batches(self.run_id)
        if what == "documents":
            return self.ws.documents(run_id=self.run_id)
        raise BearError(f"unknown listing {what!r}")

    def download(self, what: str, fmt: str) -> io.BytesIO:
        frame = self.export_frame(what)
        return frame_xlsx(frame, what) if fmt == "xlsx" else frame_csv(frame)

    def filename(self, what: str, fmt: str) -> str:
        return f"bear-run-{self.run_id}-{what.replace('_', '-')}.{fmt}"


# -- documents -------------------------------------------------------------------------------
DOC_COLUMNS: dict[str, str] = {
    "id": "d.id",
    "number": "d.number",
    "doc_type": "d.doc_type",
    "account": "a.name",
    "company": "c.name",
    "currency": "d.currency",
    "total": "d.total",
    "document_date": "d.document_date",
    "billing_event_id": "d.billing_event_id",
    "process_run_id": "d.process_run_id",
    "run_id": "pr.run_id",
}
_DOC_JOINS = {
    "pr": "LEFT JOIN process_runs pr ON pr.id = d.process_run_id",
    "a": "LEFT JOIN accounts a ON a.id = d.account_id",
    "c": "LEFT JOIN companies c ON c.id = d.company_id",
}
DOC_FROM = "FROM documents d " + " ".join(_DOC_JOINS.values())


def lean_document_source(where: str, sort_expr: str = "") -> str:
    """``FROM documents d`` with only the (one-to-one) joins ``where`` and the sort use."""
    text = f"{where} {sort_expr}"
    joins = [j for alias, j in _DOC_JOINS.items() if _ALIAS_RE[alias].search(text)]
    return "FROM documents d " + " ".join(joins)


class DocumentsState(_Navigation, param.Parameterized):
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

    def __init__(self, ws: Workspace, **params: Any) -> None:
        super().__init__(**params)
        self.ws = ws
        self.pager = Pager()
        self._lock = threading.RLock()
        self._seen_data = -1
        self.refresh()

    def _where(self) -> tuple[str, dict[str, Any]]:
        cond, params = ["true"], {}
        if self.doc_type != "all":
            cond.append("d.doc_type = $dt")
            params["dt"] = self.doc_type
        if self.run_id is not None:
            cond.append("pr.run_id = $run")
            params["run"] = int(self.run_id)
        if self.search.strip():
            cond.append(
                "(strpos(lower(d.number), lower($q)) > 0 OR strpos(lower(coalesce(a.name, '')), lower($q)) > 0)"
            )
            params["q"] = self.search.strip()
        return " AND ".join(cond), params

    def query(self) -> PageQuery:
        where, params = self._where()
        sort_expr = DOC_COLUMNS[self.sort_by]
        return PageQuery(
            select=", ".join(f"{e} AS {n}" for n, e in DOC_COLUMNS.items()),
            source=f"{lean_document_source(where, sort_expr)} WHERE {where}",
            params=params,
            sort_expr=sort_expr,
            descending=self.descending,
            id_expr="d.id",
            rows_from=DOC_FROM,
            columns=tuple(DOC_COLUMNS),
        )

    @param.depends("doc_type", "run_id", "search", "sort_by", "descending", watch=True)
    def refresh(self) -> None:
        with self._lock:
            self._seen_data = self.ws.data_version
            where, params = self._where()
            source = lean_document_source(where)
            self.total = int(_scalar(self.ws, f"SELECT count(*) {source} WHERE {where}", params))
            self.pager.reset()
            self._load(0)

    def refresh_if_stale(self) -> bool:
        if self._seen_data == self.ws.data_version:
            return False
        self.refresh()
        return True

    def _load(self, page: int) -> None:
        t0 = time.perf_counter()
        frame = self.pager.load(self.ws, self.query(), self.total, page)
        self.param.update(
            rows=display_frame(frame),
            row_ids=[int(i) for i in frame["id"]] if len(frame) else [],
            page=self.pager.page,
            pages=self.pager.pages(self.total),
            seconds=time.perf_counter() - t0,
        )

    def goto(self, page: int) -> None:
        with self._lock:
            self._load(page)

    def open_lines(self, document_id: int) -> pd.DataFrame:
        frame = self.ws.document_lines(int(document_id))
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
        q = self.query()
        where, params = self._where()
        lim = "" if limit is None else f" LIMIT {int(limit)}"
        return self.ws._frame(
            f"SELECT {q.select} {DOC_FROM} WHERE {where} ORDER BY {q.order()}{lim}", params
        )

    def download(self, fmt: str) -> io.BytesIO:
        if fmt == "xlsx":
            return frame_xlsx(self.export_frame(EXCEL_MAX_ROWS), "documents")
        return frame_csv(self.export_frame())


# -- settings and rules ----------------------------------------------------------------------
RULE_SETTINGS = (
    "disabled_rules",
    "rules_file",
    "plugins_dir",
    "require_approval",
    "max_lines_per_document",
)


class SettingsState(param.Parameterized):
    """Every setting with its validation message, the test e-mail, and the rules list."""

    items = param.List(default=[], doc="ws.settings.describe()")
    messages = param.Dict(default={}, doc="setting name -> (ok, message)")
    rules = param.DataFrame(default=None, allow_None=True)
    plugins = param.DataFrame(default=None, allow_None=True)
    rules_message = param.String(default="")
    rules_ok = param.Boolean(default=True)
    test_message = param.String(default="")
    test_ok = param.Boolean(default=True)

    def __init__(self, ws: Workspace, env: Mapping[str, str] | None = None, **params: Any) -> None:
        super().__init__(**params)
        self.ws = ws
        self._env = env
        self.refresh()

    def refresh(self) -> None:
        self.items = self.ws.settings.describe()
        self.refresh_rules()

    def refresh_rules(self) -> None:
        self.rules = self.ws.rules()
        try:
            self.plugins = self.ws.plugin_list()
        except BearError as exc:  # listing plugins never blocks the settings page
            log.warning("plugin list failed: %s", exc)

    @property
    def password_set(self) -> bool:
        env = os.environ if self._env is None else self._env
        return bool(env.get("BEAR_SMTP_PASSWORD"))

    def value_text(self, name: str) -> Any:
        """The current value as a widget shows it (lists as comma-separated text)."""
        value = getattr(self.ws.settings, name)
        if isinstance(value, list):
            return ", ".join(value)
        return value

    def save(self, name: str, value: Any) -> tuple[bool, str]:
        """Validate and store one setting; (ok, message) is shown next to the field."""
        if isinstance(value, str) and name in ("smtp_password", "password"):
            return False, "the SMTP password is never stored; set $BEAR_SMTP_PASSWORD"
        try:
            clean = self.ws.settings.update(**{name: value})
        except BearError as exc:  # SettingError, and RulesFileError / PluginError from the check
            result = (False, str(exc))
        else:
            shown = clean.get(name, value)
            if isinstance(shown, list):
                shown = ", ".join(shown) or "(none)"
            result = (True, f"saved: {shown}")
            self.items = self.ws.settings.describe()
            if name in RULE_SETTINGS:
                # the workspace rebuilt its rule registry: show the new rules
                self.refresh_rules()
        self.messages = {**self.messages, name: result}
        if name in ("rules_file", "plugins_dir") and not result[0]:
            # a broken rules file or plugin folder is also shown above the rules list
            self.param.update(rules_ok=False, rules_message=result[1])
        elif name in ("rules_file", "plugins_dir"):
            self.param.update(rules_ok=True, rules_message=f"{name} {result[1]}")
        return result

    def set_rule_enabled(self, rule_id: str, enabled: bool) -> tuple[bool, str]:
        """Enable or disable a rule by editing ``disabled_rules``."""
        disabled = list(self.ws.settings.disabled_rules)
        if enabled:
            disabled = [r for r in disabled if r != rule_id]
        elif rule_id not in disabled:
            disabled.append(rule_id)
        ok, msg = self.save("disabled_rules", disabled)
        self.param.update(
            rules_ok=ok,
            rules_message=(f"{rule_id} {'enabled' if enabled else 'disabled'}" if ok else msg),
        )
        if not ok:
            self.refresh_rules()
        return ok, self.rules_message

    def send_test_email(self, recipient: str) -> tuple[bool, str]:
        """Send a test e-mail with the current SMTP settings; (ok, message)."""
        from bear.plugins import notify_email

        recipient = (recipient or "").strip()
        text = (
            "This is a test e-mail from BEAR. If you can read it, the SMTP settings work.\n"
            f"Sent at {dt.datetime.now():%Y-%m-%d %H:%M:%S}.\n"
        )
        page = "<html><body><p>This is a test e-mail from BEAR. The SMTP settings work.</p></body></html>"
        try:
            notify_email.send(self.ws.settings, recipient, "BEAR test e-mail", text, page)
        except BearError as exc:
            ok, msg = False, str(exc)
        except (smtplib.SMTPException, OSError) as exc:
            host = f"{self.ws.settings.smtp_host}:{self.ws.settings.smtp_port}"
            ok, msg = False, f"could not send through {host}: {type(exc).__name__}: {exc}"
        else:
            ok, msg = True, f"test e-mail sent to {recipient}"
        self.param.update(test_ok=ok, test_message=msg)
        return ok, msg
