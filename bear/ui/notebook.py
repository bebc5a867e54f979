"""Dashboard views inline in a notebook: ``ws.dashboard("run", run_id=3)``.

``dashboard(ws, view, **kwargs)`` returns a Panel object of one dashboard view, built from
the same state classes and views as the served dashboard, so it displays in Jupyter
(``pn.extension()`` is loaded on first use) without any server.
"""

from __future__ import annotations

from typing import Any

import panel as pn
from panel.viewable import Viewer

from bear.errors import BearError
from bear.ui.state import (
    ActionFlow,
    DocumentsState,
    FilterState,
    GridState,
    RunProgress,
    RunsState,
    SettingsState,
    resolve_user,
)

VIEWS = (
    "runs",
    "run",
    "awaiting_release",
    "awaiting_invoice",
    "documents",
    "settings",
    "dashboard",
)

_loaded = False


def _extension() -> None:
    global _loaded
    if not _loaded:
        pn.extension("tabulator", "modal")
        _loaded = True


class _NotebookGrid(Viewer):
    """A grid with its own filters and a progress panel that polls while a run goes on."""

    def __init__(self, ws: Any, kind: str, user: str, filters: dict[str, Any]) -> None:
        super().__init__()
        from bear.ui.views import EventGrid, ProgressPanel

        self.filters = FilterState(**filters)
        self.grid = GridState(ws, self.filters, kind=kind)
        self.flow = ActionFlow(ws, self.grid, user)
        self.progress = RunProgress(ws)
        self.view = EventGrid(self.grid, self.flow, self._started)
        self.panel = ProgressPanel(self.progress)
        self._callback: Any = None
        self.grid.refresh()

    def _started(self, run_id: int) -> None:
        self.progress.watch_run(run_id)
        if self._callback is None:
            self._callback = pn.state.add_periodic_callback(self._tick, period=1000)

    def _tick(self) -> None:
        if not self.progress.poll() and self._callback is not None:
            self._callback.stop()
            self._callback = None
            self.grid.refresh_if_stale()

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(self.panel, self.view, sizing_mode="stretch_width")


def dashboard(ws: Any, view: str = "runs", **kwargs: Any) -> pn.viewable.Viewable | Viewer:
    """A Panel object of one dashboard view for inline display.

    :param ws: an open ``Workspace``.
    :param view: ``runs``, ``run`` (needs ``run_id``), ``awaiting_release`` /
        ``awaiting_invoice`` (filters as keyword arguments, e.g. ``currency=["EUR"]``, and
        ``user``), ``documents`` (``run_id``), ``settings`` or ``dashboard`` (every tab).
    :returns: a Panel object (display it, or ``pn.panel(obj)``).
    """
    from bear.ui import views as v

    _extension()
    user = resolve_user(None, kwargs.pop("user", None))
    if view == "runs":
        state = RunsState(ws)
        if kwargs.get("run_id") is not None:
            state.open(int(kwargs["run_id"]))
        return v.RunsView(state)
    if view == "run":
        if kwargs.get("run_id") is None:
            raise BearError("dashboard('run') needs run_id=<the run's id>")
        state = RunsState(ws)
        if not state.open(int(kwargs["run_id"])):
            raise BearError(state.error)
        return v.RunDetail(state)
    if view in ("awaiting_release", "awaiting_invoice"):
        filters = {k: list(val) if isinstance(val, tuple) else val for k, val in kwargs.items()}
        for name in FilterState.list_names():
            if name in filters and not isinstance(filters[name], list):
                filters[name] = [filters[name]]
        unknown = sorted(set(filters) - set(FilterState.NAMES))
        if unknown:
            raise BearError(
                f"unknown filter {unknown[0]!r}; filters are: {', '.join(FilterState.NAMES)}"
            )
        return _NotebookGrid(ws, view, user, filters)
    if view == "documents":
        docs = DocumentsState(ws)
        if kwargs.get("run_id") is not None:
            docs.run_id = int(kwargs["run_id"])
        return v.DocumentsView(docs)
    if view == "settings":
        return v.SettingsView(SettingsState(ws, user=user), user=user)
    if view == "dashboard":
        from bear.ui.dashboard import Dashboard

        return Dashboard(ws, user, run_link=kwargs.get("run_id"), background=None, poll=False)
    raise BearError(f"unknown dashboard view {view!r}; views are: {', '.join(VIEWS)}")
