"""The Runs screen: the run list and one run's detail — its counts, release batches, app
logs and process logs (each a ``PagedRows`` listing), and downloads of any of them.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import pandas as pd
import param

from bear.errors import BearError
from bear.models import Scopes
from bear.queries import AppLogQuery, ProcessLogQuery
from bear.ui.downloads import download
from bear.ui.state.common import PagedRows, display_frame

if TYPE_CHECKING:
    from bear.workspace import Workspace


class RunsState(param.Parameterized):
    """The run list and one run's detail: batches, app logs, process logs, documents."""

    runs = param.DataFrame(default=None, allow_None=True)
    run_id = param.Integer(default=None, allow_None=True)
    result = param.Parameter(default=None, doc="bear.models.RunResult of the open run")
    batches = param.DataFrame(default=None, allow_None=True)
    log_status = param.Selector(default="all", objects=["all", "OK", "ERROR"])
    error = param.String(default="")

    def __init__(
        self, ws: Workspace, scope: Scopes | None = None, load: bool = True, **params: Any
    ) -> None:
        super().__init__(**params)
        self.ws = ws
        self.scope = scope  # the signed-in person's scopes: logs of their events only
        self.process = PagedRows(ws)  # the open run's process logs (of ``log_status``)
        self.app = PagedRows(ws)  # the open run's app logs
        if load:  # else on first use (the dashboard's Runs tab, when shown)
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
        with param.parameterized.discard_events(self):
            self.log_status = "all"
        self.param.update(run_id=int(run_id), result=result)
        self.batches = display_frame(self.ws.release_batches(int(run_id)))
        self.process.show(self._process_query())
        self.app.show(AppLogQuery(int(run_id), self.scope))
        return True

    def reload(self) -> None:
        """Re-read the open run (while it progresses)."""
        if self.run_id is not None:
            self.result = self.ws.run(self.run_id)
            self.batches = display_frame(self.ws.release_batches(self.run_id))
            # the process run appears when invoicing starts: the query follows the run
            self.process.query = self._process_query()
            self.process.refresh()
            self.app.refresh()

    def close(self) -> None:
        self.param.update(run_id=None, result=None)

    @param.depends("log_status", watch=True)
    def _on_status(self) -> None:
        self.process.show(self._process_query())

    def _process_query(self) -> ProcessLogQuery:
        r = self.result
        status = None if self.log_status == "all" else self.log_status
        return ProcessLogQuery(None if r is None else r.process_run_id, status, self.scope)

    def export_frame(self, what: str) -> pd.DataFrame:
        """A whole listing of the open run, for download."""
        if self.run_id is None:
            raise BearError("open a run first")
        if what == "process_logs":
            if self.result is None or self.result.process_run_id is None:
                return pd.DataFrame(columns=["billing_event_id", "status", "message"])
            status = None if self.log_status == "all" else self.log_status
            return self.ws.process_logs(self.result.process_run_id, status, scope=self.scope)
        if what == "app_logs":
            return self.ws.app_logs(run_id=self.run_id, scope=self.scope)
        if what == "batches":
            return self.ws.release_batches(self.run_id)
        if what == "documents":
            return self.ws.documents(run_id=self.run_id, scope=self.scope)
        raise BearError(f"unknown listing {what!r}")

    def download(self, what: str, fmt: str) -> io.BytesIO:
        return download(self.export_frame(what), fmt, what)

    def filename(self, what: str, fmt: str) -> str:
        return f"bear-run-{self.run_id}-{what.replace('_', '-')}.{fmt}"
