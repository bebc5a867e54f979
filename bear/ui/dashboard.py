"""The dashboard of one session: state objects, views, tabs, the frame, the periodic poll.

``Dashboard(ws, user)`` wires the state classes of ``bear.ui.state`` to the views of
``bear.ui.views``; ``Dashboard.template()`` wraps it in the page frame (product name, user,
notification bell, light/dark toggle, sidebar filters). A periodic callback per session
polls the run in progress and the user's notifications and refreshes what changed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import panel as pn
from panel.theme.fast import Fast as PanelFast
from panel.viewable import Viewable, Viewer

from bear.models import User
from bear.ui.components import (
    CSS,
    FOCUS_CSS,
    TEMPLATE_CSS,
    AfterShown,
    WhenIdle,
    esc,
    html_pane,
    run_in_background,
    toast,
)
from bear.ui.state import (
    ActionFlow,
    Background,
    DocumentsState,
    FilterState,
    GridState,
    NotificationState,
    RunProgress,
    RunsState,
    SavedViews,
    SettingsState,
    filter_options,
)
from bear.ui.state.overview import OverviewState
from bear.ui.views import (
    DocumentsView,
    EventGrid,
    FilterPanel,
    NotificationBell,
    OverviewView,
    ProgressPanel,
    RunsView,
    SavedViewsPanel,
    SettingsView,
)

log = logging.getLogger(__name__)

TAB_NAMES = (
    "Awaiting Release",
    "Awaiting Invoice",
    "Invoiced",
    "Runs",
    "Documents",
    "Settings & Rules",
)
RELEASE, INVOICE, INVOICED, RUNS, DOCUMENTS, SETTINGS = range(len(TAB_NAMES))
POLL_MS = 1000
SHOWN_TIMEOUT_S = 8.0  # a served session's held-back work starts by then, drawn or not
ACCENT = "#1f5fa8"


class LocalFast(PanelFast):
    """Panel's Fast design without its web font: the page loads nothing from another site
    (offline networks, and the server's Content-Security-Policy allows only its own origin).
    Panel finds a design's files by the lower-cased class name, hence ``__name__``."""

    _resources = {**PanelFast._resources, "font": {}}
    # every component also gets a visible keyboard focus ring
    modifiers = {
        **PanelFast.modifiers,
        Viewable: {"stylesheets": [*PanelFast.modifiers[Viewable]["stylesheets"], FOCUS_CSS]},
    }


LocalFast.__name__ = "Fast"


class Page(pn.template.FastListTemplate):
    """The page frame. Panel puts a page into its document in steps (its roots, the theme's
    hooks, each dialog's browser-side callback), and Bokeh walks every model of the page after
    each step; here the walk is done once, when the page is in (the same models, a third less
    time to build a session's page)."""

    def _init_doc(
        self,
        doc: Any = None,
        comm: Any = None,
        title: str | None = None,
        notebook: bool = False,
        location: Any = True,
    ) -> Any:
        document = doc if doc is not None else pn.state.curdoc
        if document is None or comm is not None:
            return super()._init_doc(doc, comm, title, notebook, location)
        with document.models.freeze():
            return super()._init_doc(document, comm, title, notebook, location)


class Dashboard(Viewer):
    """Every tab of the analyst dashboard for one session."""

    def __init__(
        self,
        ws: Any,
        user: str = "analyst",
        run_link: int | None = None,
        background: Background | None = run_in_background,
        poll: bool = True,
        account: User | None = None,
        exports: str | None = None,
        on_shown: Callable[[], None] | None = None,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.ws = ws
        # In a served session the page comes first: its background work (the ineligible
        # count, the accounts' and projects' choices) follows once the browser has drawn it.
        served = pn.state.curdoc is not None and pn.state.curdoc.session_context is not None
        self._after_shown = (
            AfterShown(background, SHOWN_TIMEOUT_S) if served and background is not None else None
        )
        background = self._after_shown or background
        self.user = user
        self.account = account  # the signed-in person (None: single-user mode)
        self.filters = FilterState()
        self.filters.scope = account.scopes if account is not None else None
        self.release_grid = GridState(ws, self.filters, background, kind="awaiting_release")
        self.invoice_grid = GridState(
            ws, self.filters, background, kind="awaiting_invoice", active=False
        )
        self.invoiced_grid = GridState(ws, self.filters, background, kind="invoiced", active=False)
        self.release_flow = ActionFlow(ws, self.release_grid, user, background, account=account)
        self.invoice_flow = ActionFlow(ws, self.invoice_grid, user, background, account=account)
        self.invoiced_flow = ActionFlow(ws, self.invoiced_grid, user, background, account=account)
        self.progress = RunProgress(ws)
        self.notes = NotificationState(ws, user)
        scope = account.scopes if account is not None else None
        self.runs = RunsState(ws, scope=scope, load=False)
        self.docs = DocumentsState(ws, scope=scope, user=user, account=account, load=False)
        self.settings = SettingsState(ws, user=user, account=account)

        options = filter_options(ws)
        # The accounts' and projects' choices (10,000 projects: ~300 kB and a Choices.js list
        # to build) follow once the page is shown, not in its first load.
        self.filter_panel = FilterPanel(
            self.filters, options, deferred=("account", "project") if served else ()
        )
        self.when_idle = WhenIdle(width=0, height=0, margin=0)
        self._on_shown = on_shown
        if served:  # once the browser has drawn the first page and is idle
            self.when_idle.param.watch(lambda e: self._shown(options), "idle")
        grids = {
            "awaiting_release": self.release_grid,
            "awaiting_invoice": self.invoice_grid,
            "invoiced": self.invoiced_grid,
        }
        self.saved = SavedViews(ws, self.filters, grids, user)
        self.saved_panel = SavedViewsPanel(self.saved, self._event_kind, self._show_kind)
        self.filters_elsewhere = html_pane(
            "<p class='bear-muted'>The filters choose billing events: they show on the "
            "Awaiting Release, Awaiting Invoice and Invoiced tabs.</p>",
            visible=False,
        )
        # The progress panel is made when this session first follows a run (most pages never
        # show it): its slot holds it from then on.
        self._progress_slot = pn.Column(sizing_mode="stretch_width", margin=0)
        self._progress_panel: ProgressPanel | None = None
        self.progress.param.watch(lambda e: self.progress_panel, "run_id")
        self.overview = OverviewState(self.release_grid)
        self.overview_view = OverviewView(self.overview)
        self.release_view = EventGrid(
            self.release_grid, self.release_flow, self.run_started, exports=exports
        )
        # The other tabs' views are built when first shown: a session starts with one grid's
        # widgets to make and send, not six tabs' (a third of the first load at 1M events).
        self._factories: dict[int, Callable[[], Any]] = {
            INVOICE: lambda: EventGrid(
                self.invoice_grid, self.invoice_flow, self.run_started, exports=exports
            ),
            INVOICED: lambda: EventGrid(
                self.invoiced_grid, self.invoiced_flow, self.run_started, exports=exports
            ),
            RUNS: lambda: RunsView(self.runs, open_documents=self.open_documents),
            DOCUMENTS: lambda: DocumentsView(self.docs),
            SETTINGS: lambda: SettingsView(self.settings, background, user=user),
        }
        self._views: dict[int, Any] = {}
        self._slots = {i: pn.Column(sizing_mode="stretch_width") for i in self._factories}
        self.bell = NotificationBell(self.notes, open_run=self.open_run)
        self.tabs = pn.Tabs(
            (
                TAB_NAMES[RELEASE],
                pn.Column(self.overview_view, self.release_view, sizing_mode="stretch_width"),
            ),
            *(
                (TAB_NAMES[i], self._slots[i])
                for i in (INVOICE, INVOICED, RUNS, DOCUMENTS, SETTINGS)
            ),
            dynamic=True,
            sizing_mode="stretch_width",
        )
        self.tabs.param.watch(self._tab, "active")
        self.runs.param.watch(self._run_url, "run_id")
        self._last_runs_refresh = 0.0
        self.release_grid.refresh()
        if run_link is not None:
            self.open_run(run_link)
        self._callback = None
        if poll and pn.state.curdoc is not None:
            self._callback = pn.state.add_periodic_callback(self.tick, period=POLL_MS)

    def _shown(self, options: Any) -> None:
        if self._after_shown is not None:
            self._after_shown.shown()
        try:
            self.filter_panel.fill(options)
        finally:  # the server's warm-up waits for this page: tell it whatever happens
            if self._on_shown is not None:
                self._on_shown()

    @property
    def progress_panel(self) -> ProgressPanel:
        """The progress panel of the run this session follows (made on first use)."""
        if self._progress_panel is None:
            self._progress_panel = panel = ProgressPanel(self.progress, open_run=self.open_run)
            self._progress_slot.objects = [panel]
        return self._progress_panel

    # -- the views of the tabs, built when first shown ----------------------------------------
    def _view(self, index: int) -> Any:
        if index not in self._views:
            self._views[index] = view = self._factories[index]()
            self._slots[index].objects = [view]
        return self._views[index]

    @property
    def invoice_view(self) -> EventGrid:
        return self._view(INVOICE)

    @property
    def invoiced_view(self) -> EventGrid:
        return self._view(INVOICED)

    @property
    def runs_view(self) -> RunsView:
        return self._view(RUNS)

    @property
    def docs_view(self) -> DocumentsView:
        return self._view(DOCUMENTS)

    @property
    def settings_view(self) -> SettingsView:
        return self._view(SETTINGS)

    # -- navigation ---------------------------------------------------------------------------
    def _tab(self, event: Any) -> None:
        if event.new in self._factories:
            self._view(event.new)
        events_tab = event.new in (RELEASE, INVOICE, INVOICED)
        self.filter_panel.visible = events_tab  # the filters choose events: hidden elsewhere
        self.saved_panel.visible = events_tab
        self.filters_elsewhere.visible = not events_tab
        self.release_grid.active = event.new == RELEASE
        self.invoice_grid.active = event.new == INVOICE
        self.invoiced_grid.active = event.new == INVOICED
        if event.new == RUNS:
            self.runs.refresh_runs()
        elif event.new == DOCUMENTS:
            self.docs.refresh_if_stale()
        elif event.new == SETTINGS:
            self.settings.refresh_rules()

    def open_run(self, run_id: int) -> None:
        """Show the Runs tab with this run's detail (deep links, progress panel)."""
        self.runs.refresh_runs()
        if not self.runs.open(run_id):
            toast("error", self.runs.error)
        self.tabs.active = RUNS

    def _event_kind(self) -> str:
        """The grid kind of the tab shown (Awaiting Release when it is not an event tab)."""
        return {INVOICE: "awaiting_invoice", INVOICED: "invoiced"}.get(
            self.tabs.active, "awaiting_release"
        )

    def _show_kind(self, kind: str) -> None:
        self.tabs.active = {"awaiting_invoice": INVOICE, "invoiced": INVOICED}.get(kind, RELEASE)

    def _run_url(self, event: Any) -> None:
        """The address bar follows the run shown (``/?run=N``): a link to share, and Back."""
        location = pn.state.location
        if location is not None and event.new is not None:
            location.update_query(run=int(event.new))

    def open_documents(self, run_id: int | None, search: str = "") -> None:
        self.docs.param.update(run_id=run_id, search=search, doc_type="all")
        self.tabs.active = DOCUMENTS

    def run_started(self, run_id: int) -> None:
        toast("success", f"Run {run_id} started")
        self.progress.watch_run(run_id)

    # -- polling ------------------------------------------------------------------------------
    def tick(self) -> None:
        """Periodic: notifications → toasts and bell; progress; refresh what the data changed."""
        try:
            for n in self.notes.poll():  # styled by what each reports (NotificationState)
                toast(n["look"], n["subject"], duration=8000)
            if self.progress.run_id is not None and not self.progress.finished:
                self.progress.poll()
                if self.progress.finished:  # success, warning or error, by the run's outcome
                    toast(*self.progress.finished_toast(), duration=8000)
            self.release_grid.refresh_if_stale()
            self.invoice_grid.refresh_if_stale()
            self.invoiced_grid.refresh_if_stale()
            now = time.monotonic()
            if self.tabs.active == RUNS and now - self._last_runs_refresh > 3:
                self._last_runs_refresh = now
                self.runs.refresh_runs()
                if self.runs.result is not None and not self.runs.result.finished:
                    self.runs.reload()
            if self.tabs.active == DOCUMENTS:
                self.docs.refresh_if_stale()
        except Exception:  # keep polling: one failed read must not stop the session's updates
            if getattr(self.ws, "closed", False):  # the server is closing the book: stop quietly
                if self._callback is not None:
                    self._callback.stop()
                return
            log.exception("dashboard poll failed")

    # -- layout -------------------------------------------------------------------------------
    def main(self) -> pn.viewable.Viewable:
        return pn.Column(
            self._progress_slot,
            self.tabs,
            self.bell.modal,
            self.when_idle,
            sizing_mode="stretch_width",
        )

    def template(self) -> pn.template.BaseTemplate:
        if self.account is None:
            who = f"Single-user mode — acting as <b>{esc(self.user)}</b>"
        else:
            who = (
                f"Signed in as <b>{esc(self.user)}</b> ({esc(self.account.role.value)}) "
                "<form method='post' action='/logout' style='display:inline;margin-left:10px'>"
                "<button type='submit' class='bear-signout'>Sign out</button></form>"
            )
        user = html_pane(
            f"<div style='color:white;font-size:14px;margin-top:14px;white-space:nowrap'>"
            f"{who}</div>",
            sizing_mode="fixed",
            width=420,
        )
        return Page(
            title="BEAR — Billing Events Awaiting Release",
            site="",
            header=[pn.Row(pn.layout.HSpacer(), user, self.bell, sizing_mode="stretch_width")],
            sidebar=[
                html_pane("<h3 style='margin:0'>Filters</h3>"),
                self.filter_panel,
                self.saved_panel,
                self.filters_elsewhere,
            ],
            main=[self.main()],
            accent_base_color=ACCENT,
            header_background=ACCENT,
            sidebar_width=330,
            theme_toggle=True,
            raw_css=[CSS, TEMPLATE_CSS],
            design=LocalFast,
            font_url="",
        )

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Row(
            pn.Column(self.filter_panel, width=320),
            self.main(),
            sizing_mode="stretch_width",
        )
