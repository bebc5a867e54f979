"""Dashboard views inline in a notebook: ``ws.dashboard("run", run_id=3)``.

``dashboard(ws, view, **kwargs)`` returns a Panel object of one dashboard view, built from
the same state classes and views as the served dashboard, so it displays in Jupyter without
any server. Everything a view or a chart needs in the browser — BokehJS, Panel's JavaScript
and CSS — comes from the installed packages, inline in the notebook (``extension()``), never
from a CDN: notebooks draw on a machine without internet access.
"""

from __future__ import annotations

import importlib.util
import logging
import weakref
from typing import Any

import panel as pn
from panel.viewable import Viewable, Viewer

from bear.errors import BearError
from bear.progress import in_kernel
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

log = logging.getLogger(__name__)

VIEWS = (
    "runs",
    "run",
    "awaiting_release",
    "awaiting_invoice",
    "invoiced",
    "documents",
    "settings",
    "dashboard",
)

PANEL_EXTENSIONS = ("tabulator", "modal")
_LINE = "<div style='padding:6px 10px;border-left:4px solid {};color:#333'>{}</div>"
CLOSED = _LINE.format(
    "#888",
    "The workspace is closed: open it again with <code>bear.connect()</code> and show the "
    "view again.",
)

# the views shown in this kernel, so an error in one of their callbacks finds its view
_views: weakref.WeakSet[NotebookView] = weakref.WeakSet()
_previous_handler: Any = None


def extension(*extensions: str) -> None:
    """Load what BEAR's views and hvPlot charts need into this notebook, from the installed
    packages (inline), never from a CDN.

    Call it once at the top of a notebook, before importing hvPlot; call it again after
    reloading the browser page (a reloaded page has lost what was loaded). ``ws.dashboard``
    calls it itself. ``extensions``: more Panel extensions to load (e.g. ``"plotly"``)."""
    _catch_view_errors()
    if not in_kernel():  # nothing to load outside a notebook
        return
    pn.config.inline = True
    if importlib.util.find_spec("holoviews") is not None:
        # hvPlot loads HoloViews' notebook extension itself on import, with HoloViews'
        # defaults (resources from a CDN): make inline its default too.
        try:
            from holoviews import ipython as hv_ipython
        except ImportError:  # HoloViews without IPython: no notebook to load into
            pass
        else:
            hv_ipython.notebook_extension.inline = True
    pn.extension(*PANEL_EXTENSIONS, *extensions, inline=True)
    if _inline_stylesheets not in Viewable._preprocessing_hooks:
        Viewable._preprocessing_hooks.append(_inline_stylesheets)


def _inline_stylesheets(viewable: Any, root: Any) -> None:
    """Panel's components name their CSS by CDN URL; Panel inlines it for objects it displays
    itself, but not for HoloViews plots (hvPlot charts). This rendering hook inlines them for
    every object while ``pn.config.inline`` is on, from the installed package's files."""
    if not pn.config.inline:
        return
    from bokeh.models import UIElement
    from panel.io.notebook import patch_inline_stylesheets

    for model in root.select({"type": UIElement}):
        patch_inline_stylesheets(model)


def _catch_view_errors() -> None:
    """Errors in a view's callbacks (a click after the workspace closed) become one line in
    the view, not a traceback in the notebook."""
    global _previous_handler
    if pn.config.exception_handler is _on_view_error:
        return
    _previous_handler = pn.config.exception_handler
    pn.config.exception_handler = _on_view_error


def _on_view_error(exc: BaseException) -> None:
    if not isinstance(exc, BearError):
        if _previous_handler is not None:
            _previous_handler(exc)
            return
        raise exc
    closed = [view for view in list(_views) if view.workspace_closed]
    for view in closed:
        view.show_closed()
    if not closed:
        for view in list(_views):
            view.show_error(str(exc))
        log.warning("%s", exc)


class NotebookView(Viewer):
    """A dashboard view shown in a notebook: the view, and one line in its place once the
    workspace it reads is closed (or when one of its actions fails)."""

    def __init__(self, ws: Any, view: Any) -> None:
        super().__init__()
        self.ws = ws
        self.view = view
        self.message = pn.pane.HTML("", sizing_mode="stretch_width", margin=(0, 5))
        self.body = pn.Column(self.message, view, sizing_mode="stretch_width")
        _views.add(self)

    @property
    def workspace_closed(self) -> bool:
        return bool(getattr(self.ws, "closed", False))

    def show_closed(self) -> None:
        self.message.object = ""
        self.body.objects = [pn.pane.HTML(CLOSED, sizing_mode="stretch_width")]

    def show_error(self, text: str) -> None:
        import html

        self.message.object = _LINE.format("#c0392b", html.escape(text))

    def __panel__(self) -> pn.viewable.Viewable:
        return self.body

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        if self.workspace_closed:
            self.show_closed()
        return super()._repr_mimebundle_(include, exclude)


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


def dashboard(ws: Any, view: str = "runs", **kwargs: Any) -> NotebookView:
    """A Panel object of one dashboard view for inline display.

    :param ws: an open ``Workspace``.
    :param view: ``runs``, ``run`` (needs ``run_id``), ``awaiting_release`` /
        ``awaiting_invoice`` / ``invoiced`` (filters as keyword arguments, e.g. ``currency=["EUR"]``, and
        ``user``), ``documents`` (``run_id``), ``settings`` or ``dashboard`` (every tab).
    :returns: a Panel object (display it, or ``pn.panel(obj)``). It works as the first Panel
        call of a fresh kernel: each call loads the browser side again (``extension()``), so
        re-running the cell after a page reload shows it.
    """
    if getattr(ws, "closed", False):
        raise BearError("the workspace is closed; open it again with bear.connect()")
    built = _build(ws, view, **kwargs)
    extension()
    return NotebookView(ws, built)


def _build(ws: Any, view: str, **kwargs: Any) -> Any:
    from bear.ui import views as v

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
    if view in ("awaiting_release", "awaiting_invoice", "invoiced"):
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
