"""The Release and Invoice flow of a grid (the preview dialog): preview → warning or
confirmation → run.

``ActionFlow`` computes the preview of the grid's selection (in the background when a view
supplies one), decides which dialog to show (``phase``), pages the preview's blocking
violations — rows, one per event and reason — through ``PagedRows``, and submits the run.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd
import param

from bear.auth import require
from bear.errors import BearError
from bear.models import User
from bear.pipeline import check_reason
from bear.queries.records import VIOLATION_COLUMNS, ViolationQuery
from bear.selection import Selection
from bear.ui.downloads import frame_csv
from bear.ui.state.common import ACTION_LABEL, Background, PagedRows
from bear.ui.state.grid import GridState

if TYPE_CHECKING:
    from bear.models import Preview
    from bear.workspace import Workspace

PHASES = (
    "idle",  # no dialog
    "working",  # a preview is being computed
    "preview",  # the Preview button's answer
    "confirm",  # validated, everything eligible
    "warning",  # validated, some events are ineligible
    "unvalidated",  # above validation_limit: validation skipped
    "nothing",  # validated, nothing can even start (every event blocked at the first stage)
    "started",  # the run was submitted
    "error",
)


class ActionFlow(param.Parameterized):
    """Preview → warning / confirmation → run, for one grid's selection."""

    phase = param.Selector(default="idle", objects=list(PHASES))
    action = param.Selector(default="release_and_invoice", objects=list(ACTION_LABEL))
    preview = param.Parameter(default=None, doc="the bear.models.Preview shown")
    message = param.String(default="")
    reason = param.String(default="", doc="why a revert is made (required for a revert)")
    run_id = param.Integer(default=None, allow_None=True, doc="the run this flow started last")

    def __init__(
        self,
        ws: Workspace,
        grid: GridState,
        user: str = "analyst",
        background: Background | None = None,
        account: User | None = None,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.ws = ws
        self.grid = grid
        self.user = user
        self.account = account  # the signed-in person; None: the single-user owner
        self.background = background
        self._selection: Selection | list[int] | None = None
        self._lock = threading.RLock()
        # the warning's table pages violation rows (an event has one per reason)
        self.violations = PagedRows(ws)

    @param.depends("preview", watch=True)
    def _on_preview(self) -> None:
        pv = self.preview
        self.violations.show(None if pv is None else ViolationQuery(pv.violations_table))

    @property
    def label(self) -> str:
        return ACTION_LABEL[self.action]

    def open(self, action: str, preview_only: bool = False) -> None:
        """Start the flow for the grid's selection: compute the preview (maybe in background)."""
        if action not in ACTION_LABEL:
            raise BearError(f"unknown action {action!r}")
        sel = self.grid.selection()
        self.param.update(action=action, preview=None, message="", reason="")
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
                require(self.account, "preview")
                pv = self.ws.preview(self._selection, action=self.action, full=full)
            except BearError as exc:
                self.param.update(phase="error", message=str(exc))
                return
            if preview_only:
                phase = "preview"
            elif not pv.validated:
                phase = "unvalidated"
            elif pv.releasable == 0:
                phase = "nothing"
            elif pv.ineligible > 0:
                phase = "warning"
            else:
                phase = "confirm"
            self.param.update(preview=pv, phase=phase, message=pv.reason)

    def proceed(self) -> int | None:
        """Continue: run the whole selection, as the API and the CLI do — the run itself leaves
        out the events that cannot be released (an app log each) and gives those released but
        not invoiceable an ERROR process log; the preview's verdict is never turned into a
        narrower list of ids. Returns the run's id."""
        with self._lock:
            pv: Preview | None = self.preview
            if self._selection is None or pv is None:
                self.param.update(phase="error", message="Nothing to run: preview first.")
                return None
            if pv.validated and pv.releasable == 0:
                self.param.update(phase="nothing")
                return None
            reason = None
            if self.action == "revert":
                try:
                    reason = check_reason(self.reason)
                except BearError as exc:
                    # a missing or too long reason: the dialog stays open to fix it
                    self.message = str(exc)
                    return None
            try:
                require(self.account, "revert" if self.action == "revert" else "run")
                handle = self.ws.queue(
                    self.action, self._selection, self.user, full=bool(pv.validated), reason=reason
                )
            except BearError as exc:
                self.param.update(phase="error", message=str(exc))
                return None
            run_id = int(handle.id)
            self.param.update(run_id=run_id, phase="started", message=f"Run {run_id} started")
            self.grid.clear_selection()
            return run_id

    def close(self) -> None:
        self.param.update(phase="idle", preview=None, message="", reason="")
        self._selection = None

    def ineligible_frame(self) -> pd.DataFrame:
        """Every blocking violation of the preview with the event's name."""
        query = self.violations.query
        if query is None:
            return pd.DataFrame(columns=list(VIOLATION_COLUMNS))
        return self.ws.export(query)

    def violations_csv(self) -> io.BytesIO:
        return frame_csv(self.ineligible_frame())

    def expected_documents(self) -> pd.DataFrame:
        pv = self.preview
        if pv is None:
            return pd.DataFrame(columns=["doc_type", "currency", "count", "total"])
        return pv.expected_documents
