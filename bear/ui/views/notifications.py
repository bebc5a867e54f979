"""The notification bell: unread count, the recent in-app notifications, mark as read."""

from __future__ import annotations

from typing import Any

import pandas as pd
import panel as pn
from panel.viewable import Viewer

from bear.ui.components import (
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

    def __init__(self, state: NotificationState, **params: Any) -> None:
        super().__init__(**params)
        self.state = state
        self.button = pn.widgets.Button(
            name="0",
            icon=BELL_SVG,
            button_type="light",
            width=80,
            margin=(8, 5),
            css_classes=["bear-bell"],
        )
        self.list = html_pane()
        self.mark = button("Mark all read", "primary", width=140)
        self.mark.on_click(lambda e: state.mark_read())
        self.modal = pn.Modal(
            pn.Column(
                html_pane("<h3 style='margin:4px 0'>Notifications</h3>"),
                self.list,
                self.mark,
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

    def _render(self, *_: Any) -> None:
        n = self.state.unread
        self.button.name = f"{n}"
        self.button.button_type = "warning" if n else "light"
        items = self.state.items
        if items is None or not len(items):
            self.list.object = "<p class='bear-muted'>No notifications yet.</p>"
            return
        notes = []
        for r in items.itertuples():
            unread = r.status == "sent"
            link = (
                f" · <a href='?run={int(r.run_id)}'>open run {int(r.run_id)}</a>"
                if pd.notna(r.run_id)
                else ""
            )
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
