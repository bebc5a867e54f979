"""The awaiting-release and awaiting-invoice grids: a page of events paged in SQL, the sort,
the summary cards, each event's eligibility, and the selection kept as ids (or, for "select
all matching", as the filter itself).

Every read goes through the workspace (``ws.totals``, ``ws.browse``, ``ws.count``), with
``cached=True``: costly filters (item category, free text) are answered from what the
workspace computed for this data version. Work that can be slow at a million events — the
eligibility of a whole kind right after the data changed — is handed to the ``background``
callable a view supplies; without one it runs inline (tests, bench).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd
import param

from bear.errors import BearError
from bear.queries import Pager
from bear.selection import COLUMNS, Filters, Selection
from bear.ui.state.common import (
    GRID_COLUMNS,
    KIND_ACTION,
    KINDS,
    Background,
    Navigation,
    display_frame,
)
from bear.ui.state.filters import FilterState

if TYPE_CHECKING:
    from bear.workspace import Workspace

log = logging.getLogger(__name__)


def eligibility_ready(ws: Workspace, kind: str) -> bool:
    """True when the eligibility of every event of ``kind`` is computed for the current data."""
    return ws.eligibility_ready(kind)


class GridState(Navigation, param.Parameterized):
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
        self._ineligible: int | None = None  # counted with the last totals, when it could be
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
        return self.ws.selection(self.kind, self.filter_state.filters())  # type: ignore[arg-type]

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
        # The ineligible count rides along in the totals' pass when the eligibility is kept
        # (an eligibility filter says it without counting).
        ready = bool(sel.filters.eligibility) or eligibility_ready(self.ws, self.kind)
        totals = self.ws.totals(sel, cached=True, projects="overall", ineligible=ready)
        self._ineligible = int(totals["ineligible"].sum()) if ready else None
        self.total = int(totals["events"].sum()) if len(totals) else 0
        self.pager.total = self.total
        self.pages = self.pager.pages
        self.cards = {
            "events": self.total,
            "projects": int(totals["all_projects"].iloc[0]) if len(totals) else 0,
            "amounts": [(r.currency, r.amount) for r in totals.itertuples()],
            "sales_invoices": int(totals["sales_invoices"].sum()) if len(totals) else 0,
            "credit_notes": int(totals["credit_notes"].sum()) if len(totals) else 0,
        }

    def _schedule_ineligible(self, sel: Selection) -> None:
        if self._ineligible is not None:  # counted with the totals
            self.ineligible = self._ineligible
            return
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
            self.ineligible = self.ws.count(sel.refine(eligibility="ineligible"), cached=True)
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

    def _load(self, page: int) -> None:
        t0 = time.perf_counter()
        try:
            frame = self.ws.browse(
                self.selection_filter(),
                self.pager,
                page,
                sort=[(self.sort_by, "desc" if self.descending else "asc")],
                columns=self.columns(),
                cached=True,
            )
        except BearError as exc:
            self.error = str(exc)
            return
        ids = [int(i) for i in frame["id"]] if len(frame) else []
        elig = self.page_eligibility(ids)
        at = list(frame.columns).index("summary_amount") + 1 if "summary_amount" in frame else 2
        frame.insert(at, "ok", [i not in elig for i in ids])
        frame.insert(at + 1, "eligibility", [elig.get(i, ("eligible", 0))[0] for i in ids])
        frame.insert(at + 2, "reasons", [elig.get(i, ("", 0))[1] for i in ids])
        self.error = ""
        self.param.update(
            rows=display_frame(frame),
            row_ids=ids,
            page=self.pager.page,
            pages=self.pager.pages,
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
            return self.ws.blocked_reasons(ids, self.kind)
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

    def export_query(self, fmt: str) -> dict[str, str]:
        """The query of the API's streamed export of what this grid lists: its kind, filters,
        sort and columns (the person's scopes are applied by the server)."""
        chosen = self.filter_state.filters().as_dict()
        return {
            "kind": self.kind,
            "filters": json.dumps(chosen, default=str, separators=(",", ":")),
            "sort": f"{self.sort_by}:{'desc' if self.descending else 'asc'}",
            "columns": ",".join(self.columns()),
            "fmt": fmt,
        }

    def history(self, event_id: int) -> pd.DataFrame:
        """One event's releases, invoices and reverts with their documents (oldest first)."""
        try:
            return self.ws.history(int(event_id), scope=self.filter_state.scope)
        except BearError as exc:
            log.warning("history of event %s: %s", event_id, exc)
            return pd.DataFrame()

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
            ticked = Filters(ids=tuple(sel)).scoped(self.filter_state.scope)
            sel = self.ws.selection(self.kind, ticked)  # type: ignore[arg-type]
        try:
            self.selection_totals = self.ws.totals(sel, cached=True)
        except BearError as exc:
            self.error = str(exc)
