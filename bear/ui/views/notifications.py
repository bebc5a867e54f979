"""The notification bell: unread count, the recent in-app notifications, mark as read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import panel as pn
from panel.viewable import Viewer

from bear.ui.components import (
    dialog,
    esc,
    html_pane,
)
from bear.ui.state import (
    NotificationState,
)
from bear.ui.views.common import button
from bear.ui.views.progress import OUTCOME_COLOUR

BELL_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="20" height="20" viewBox="0 0 24 24" fill="none" '
    'stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">'
    '<path d="M10 5a2 2 0 1 1 4 0a7 7 0 0 1 4 6v3a4 4 0 0 0 2 3h-16a4 4 0 0 0 2 -3v-3a7 7 0 0 1 4 -6"/>'
    '<path d="M9 17v1a3 3 0 0 0 6 0v-1"/></svg>'
)


class NotificationBell(Viewer):
    """The header bell: unread count; the list in a dialog; mark all read."""

    def __init__(
        self,
        state: NotificationState,
        open_run: Callable[[int], None] | None = None,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.state = state
        self._open_run = open_run
        self.button = pn.widgets.Button(
            label="0",
            icon=BELL_SVG,
            color="light",
            width=80,
            margin=(8, 5),
            css_classes=["bear-bell"],
        )
        self.list = html_pane()
        self.mark = button("Mark all read", "primary", width=140)
        self.mark.on_click(lambda e: state.mark_read())
        # a run opens inside the page (no reload: filters and selection are kept)
        self.run_pick = pn.widgets.Select(label="", options={}, width=200, margin=(5, 5))
        self.run_open = button("Open run", "default", width=100)
        self.run_open.on_click(self._open_picked)
        self.run_row = pn.Row(self.run_pick, self.run_open, visible=open_run is not None)
        self.modal = dialog(
            pn.Column(
                html_pane("<h3 style='margin:4px 0'>Notifications</h3>"),
                pn.Row(self.mark, self.run_row),  # on top: never below the fold
                self.list,
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

    def _open_picked(self, event: Any) -> None:
        run = self.run_pick.value
        if run is not None and self._open_run is not None:
            self.modal.open = False
            self._open_run(int(run))

    def _render(self, *_: Any) -> None:
        n = self.state.unread
        self.button.label = f"{n}"
        self.button.color = "warning" if n else "light"
        items = self.state.items
        if items is None or not len(items):
            self.list.object = "<p class='bear-muted'>No notifications yet.</p>"
            return
        runs = [int(r) for r in pd.unique(items["run_id"].dropna())]
        self.run_pick.options = {f"Run {r}": r for r in runs}
        self.run_row.visible = self._open_run is not None and bool(runs)
        notes = []
        for r in items.itertuples():
            unread = r.status == "sent"
            link = f" · run {int(r.run_id)}" if pd.notna(r.run_id) else ""
            look = str(getattr(r, "look", "info"))  # NotificationState: kind and outcome
            outcome = getattr(r, "outcome", None)
            said = f" · {esc(outcome)}" if isinstance(outcome, str) and outcome else ""
            colour = OUTCOME_COLOUR.get(look)
            style = f" style='color:{colour}'" if colour else ""
            notes.append(
                f"<div class='bear-note{' unread' if unread else ''}' data-look='{esc(look)}'>"
                f"<div{style}>{esc(r.subject)}</div>"
                f"<div class='when'>{esc(r.created_at)} · {esc(r.kind.replace('_', ' '))}{said} · "
                f"{'unread' if unread else esc(r.status)}{link}</div></div>"
            )
        self.list.object = "".join(notes)

    def __panel__(self) -> pn.viewable.Viewable:
        return self.button
