"""The awaiting-release and awaiting-invoice grids: cards, sort and pager, the SQL-paged
table with checkbox selection kept server-side, the selection bar and the action buttons.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import urlencode

import pandas as pd
import panel as pn
from panel.viewable import Viewer

from bear.auth import allowed
from bear.errors import BearError
from bear.ui.components import (
    PagerBar,
    ScrollToTop,
    alert,
    cards_html,
    esc,
    fmt_num,
    html_pane,
    set_frame,
    table,
)
from bear.ui.state import (
    TIME_FORMAT,
    TITLES,
    ActionFlow,
    GridState,
)
from bear.ui.views.action import ActionDialog
from bear.ui.views.common import button

log = logging.getLogger(__name__)

# Each grid's buttons: (label, Bokeh button type, action, preview only).
ACTIONS: dict[str, list[tuple[str, str, str, bool]]] = {
    "awaiting_release": [
        ("Preview", "default", "release_and_invoice", True),
        ("Release", "default", "release", False),
        ("Release and Invoice", "primary", "release_and_invoice", False),
    ],
    "awaiting_invoice": [
        ("Preview", "default", "invoice", True),
        ("Revert billing", "light", "revert", False),
        ("Create Sales Invoices and Credit Notes", "primary", "invoice", False),
    ],
    "invoiced": [
        ("Preview", "default", "revert", True),
        ("Revert billing", "warning", "revert", False),
    ],
}
HISTORY_ACTION = {"release": "Released", "invoice": "Invoiced", "revert": "Reverted"}


# Every column's width, in pixels: the browser then lays the table out without measuring
# each cell of the page first (that measuring was a third of the dashboard's first load).
# Longer text is cut with an ellipsis; a row's detail shows it whole.
WIDTHS = {
    "id": 80,
    "name": 110,
    "account": 180,
    "project": 180,
    "company": 170,
    "region": 82,
    "practice": 90,
    "grp": 80,
    "currency": 96,
    "summary_amount": 130,
    "event_date": 106,
    "days_awaiting": 128,
    "invoice_date": 116,
    "approved": 100,
    "released_at": 170,
    "document_number": 130,
    "document_type": 80,
    "document_status": 110,
    "document_date": 130,
    "ok": 56,
    "eligibility": 260,
    "reasons": 93,
}


class EventGrid(Viewer):
    """Cards, sort and pager, the SQL-paged grid with checkbox selection, selection bar, actions."""

    def __init__(
        self,
        grid: GridState,
        flow: ActionFlow,
        on_started: Callable[[int], None],
        exports: str | None = None,
        **params: Any,
    ):
        super().__init__(**params)
        self.grid = grid
        self._exports = exports  # the streamed export's address (served); None: no links
        self.downloads = html_pane(visible=exports is not None)
        self.flow = flow
        self._syncing = False
        self.cards = html_pane(min_height=90)
        cols = grid.columns()
        self.sort_by = pn.widgets.Select(
            label="Sort by", options={TITLES[c]: c for c in cols}, value=grid.sort_by, width=170
        )
        self.sort_dir = pn.widgets.RadioButtonGroup(
            options=["Ascending", "Descending"],
            value="Descending" if grid.descending else "Ascending",
            margin=(26, 5, 5, 5),
            # outlined, the chosen one filled: the active direction reads at a glance
            color="primary",
            variant="outline",
        )
        self.sort_by.param.watch(lambda e: grid.sort(e.new, grid.descending), "value")
        self.sort_dir.param.watch(lambda e: grid.sort(grid.sort_by, e.new == "Descending"), "value")
        self.select_all = button("Select all matching", "default", margin=(26, 5, 5, 5))
        self.clear = button("Clear selection", "light", margin=(26, 5, 5, 5))
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
            height=400,  # cards, toolbar, table and pager fit a 900 px high window
            row_content=self._row_detail,
            embed_content=False,
            frozen_columns=["id"],
            widths=WIDTHS,
            sortable=True,  # a header click sorts every matching event, in SQL (see _header)
            sorters=[{"field": grid.sort_by, "dir": "desc" if grid.descending else "asc"}],
        )
        self.to_top = ScrollToTop(self.table)
        self.table.param.watch(self._ticked, "selection")
        self.table.param.watch(self._header, "sorters")
        grid.param.watch(self._sorted, ["sort_by", "descending"])
        self.selection_bar = html_pane()
        self.error = html_pane()
        self.dialog = ActionDialog(flow, on_started)
        specs = ACTIONS[grid.kind]
        self.buttons = []
        for label, kind, action, preview_only in specs:
            b = button(label, kind)
            # a viewer sees no action they may not take (the core refuses it anyway)
            b.visible = allowed(
                flow.account,
                "preview" if preview_only else ("revert" if action == "revert" else "run"),
            )
            b.on_click(partial(self._act, action, preview_only))
            self.buttons.append(b)
        grid.param.watch(self._rows, "rows")
        grid.param.watch(self._selection, ["selected_count", "select_all", "selection_totals"])
        grid.param.watch(self._cards, ["cards", "ineligible"])
        grid.param.watch(self._loading, "loading")
        grid.param.watch(self._error, "error")
        grid.param.watch(self._links, ["version", "sort_by", "descending", "total"])
        self._rows()
        self._cards()
        self._selection()
        self._links()

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
        self.select_all.label = f"Select all {c.get('events', 0):,} matching"

    def _rows(self, *_: Any) -> None:
        frame = self.grid.rows
        if frame is None:
            return
        self._syncing = True
        try:
            changed = set_frame(self.table, frame, money=self._money, integers=("reasons",))
            self.table.selection = self.grid.page_selection()
        finally:
            self._syncing = False
        if changed:
            self.to_top()  # a new page, sort or filter starts at its first row

    def _links(self, *_: Any) -> None:
        """CSV and Excel links for every event the grid lists (filters and sort as shown):
        the browser downloads them as they stream, with its own progress."""
        if self._exports is None:
            return
        try:
            links = [
                f"<a class='bear-download' href='{esc(self._exports)}?"
                f"{esc(urlencode(self.grid.export_query(fmt)))}' download>{label}</a>"
                for fmt, label in (("csv", "CSV"), ("xlsx", "Excel"))
            ]
        except BearError:  # filters refused: the sidebar says why; no link to a bad query
            self.downloads.object = ""
            return
        n = self.grid.total
        self.downloads.object = (
            f"<div class='bear-line'>Download the {n:,} events listed: {' · '.join(links)}"
            + (
                " <span class='bear-muted'>(Excel: the first 1,000,000)</span>"
                if n > 1_000_000
                else ""
            )
            + "</div>"
        )

    def _header(self, event: Any) -> None:
        """A column header was clicked: sort the whole selection that way, not just the page."""
        if self._syncing or not event.new:
            return
        first = event.new[0]
        column, descending = first.get("field"), first.get("dir") == "desc"
        if column in self.grid.columns():
            self.grid.sort(column, descending)
        else:  # a computed column (eligibility, reasons): not sortable in SQL
            self._sorted()

    def _sorted(self, *_: Any) -> None:
        """The sort changed (header, list or code): every control shows it."""
        g = self.grid
        self._syncing = True
        try:
            self.sort_by.value = g.sort_by
            self.sort_dir.value = "Descending" if g.descending else "Ascending"
            self.table.sorters = [{"field": g.sort_by, "dir": "desc" if g.descending else "asc"}]
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
            self.to_top()
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
        # counted from the amounts alone: Preview says how many are eligible
        docs = (
            f"<span class='bear-muted'>before eligibility: {sin:,} sales invoices, "
            f"{scn:,} credit notes</span>"
            if g.kind != "invoiced"
            else ""
        )
        self.selection_bar.object = (
            f"<div class='bear-line'><b>{n:,} selected</b> <span class='bear-muted'>"
            f"({esc(g.selection_ids_hint())})</span> · {' · '.join(parts)} · {docs}</div>"
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
        return html_pane(text + _lineage_html(self.grid.history(event_id)), margin=(0, 30))

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
            self.downloads,
            self.dialog,
            self.to_top.widget,
            sizing_mode="stretch_width",
        )


def _lineage_html(history: pd.DataFrame) -> str:
    """The event's chain, oldest first: each release, invoice and revert with its documents."""
    if history is None or not len(history):
        return ""

    def text(value: Any) -> str:
        return "" if value is None or pd.isna(value) else esc(str(value))

    rows = []
    for h in history.itertuples():
        docs = []
        if text(h.document_after_number):
            docs.append(f"created <b>{text(h.document_after_number)}</b>")
        if text(h.document_before_number):
            verb = "reversed" if text(h.reversing_document_number) else "discarded"
            docs.append(f"{verb} <b>{text(h.document_before_number)}</b>")
        if text(h.reversing_document_number):
            docs.append(f"by <b>{text(h.reversing_document_number)}</b>")
        when = pd.Timestamp(h.happened_at).strftime(TIME_FORMAT) if text(h.happened_at) else ""
        rows.append(
            f"<tr><td>{HISTORY_ACTION.get(str(h.action), text(h.action))}</td><td>{when}</td>"
            f"<td>run {text(h.run_id)}</td><td>{text(h.actor)}</td><td>{' '.join(docs)}</td>"
            f"<td>{text(h.document_status)}</td><td class='bear-wrap'>{text(h.reason)}</td></tr>"
        )
    return (
        "<div class='bear-line bear-lineage'><b>History</b> (oldest first)"
        "<table class='bear-kv'><tr><th>Step</th><th>When</th><th>Run</th><th>By</th>"
        "<th>Documents</th><th>Document status now</th><th>Reason</th></tr>"
        f"{''.join(rows)}</table></div>"
    )
