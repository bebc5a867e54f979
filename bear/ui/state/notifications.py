"""The notification bell: the current user's in-app notifications, unread count, new ones.

``NotificationState.poll`` returns what arrived since the last poll (for toasts, each with
its ``look``) and refreshes the bell; everything is read through the workspace's inbox
methods. ``note_look`` says how a notification looks, from its kind and the outcome it
reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd
import param

from bear.ui.state.progress import outcome_kind

if TYPE_CHECKING:
    from bear.workspace import Workspace


def note_look(kind: str, outcome: Any) -> str:
    """How a notification looks (``success``, ``warning``, ``error``, ``info``): a failed run
    is an error; a finished stage looks like the outcome it reports (``info`` for one written
    before outcomes were recorded)."""
    if kind == "run_failed":
        return "error"
    return outcome_kind(outcome if isinstance(outcome, str) else None, "info")


class NotificationState(param.Parameterized):
    """The in-app notifications of the current user: unread count, recent list, new ones."""

    user = param.String(default="analyst")
    unread = param.Integer(default=0)
    items = param.DataFrame(default=None, allow_None=True)

    def __init__(self, ws: Workspace, user: str = "analyst", **params: Any) -> None:
        super().__init__(user=user, **params)
        self.ws = ws
        self._last_id = ws.inbox_state(user)[0]
        self.refresh()

    def refresh(self) -> None:
        self.items = self._looked(self.ws.inbox(self.user, limit=50))
        self.unread = self.ws.inbox_state(self.user)[1]

    @staticmethod
    def _looked(frame: pd.DataFrame) -> pd.DataFrame:
        outcomes = frame["outcome"] if "outcome" in frame else [None] * len(frame)
        looks = [note_look(k, o) for k, o in zip(frame["kind"], outcomes, strict=True)]
        return frame.assign(look=pd.Series(looks, index=frame.index, dtype=object))

    def poll(self) -> list[dict[str, Any]]:
        """Notifications that arrived since the last poll (for toasts, each with its ``look``);
        refreshes the bell when anything changed. A poll runs every second in every session:
        when the newest id and the unread count are as they were (the usual case) it costs one
        small query and sends nothing to the browser."""
        newest, unread = self.ws.inbox_state(self.user)
        if newest == self._last_id and unread == self.unread:
            return []
        frame = self._looked(self.ws.inbox(self.user, after_id=self._last_id))
        new = [
            {k: r[k] for k in ("id", "run_id", "kind", "subject", "status", "look")}
            for r in frame.to_dict("records")
        ]
        if new:
            self._last_id = max(int(n["id"]) for n in new)
        self.refresh()
        return new

    def mark_read(self, ids: Sequence[int] | None = None) -> int:
        """Mark delivered notifications read (all of the user's, or these ids)."""
        n = self.ws.mark_notifications_read(self.user, ids)
        self.refresh()
        return n
