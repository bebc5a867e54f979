"""The dashboard's page for one browser session, and the process's one workspace.

``bear serve`` (``bear.server``) mounts ``create_app`` behind sign-in on FastAPI;
``panel serve app.py`` calls ``create_app()`` per session and opens the database named by
``$BEAR_DB`` on first use (a single-user development server). Either way there is one
``Workspace`` per process, shared by all sessions; each session thread reads through its own
cursor.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

_WS: Any = None
_WS_LOCK = threading.Lock()


def quiet_warnings() -> None:
    # Bokeh checks every document for "fixed sizing without width/height" and logs W-1005 for
    # Panel's own HTML panes on each page load: noise in the server log, not a fault of ours.
    from bokeh.core.validation import silence
    from bokeh.core.validation.warnings import EMPTY_LAYOUT, FIXED_SIZING_MODE

    silence(FIXED_SIZING_MODE, True)
    silence(EMPTY_LAYOUT, True)
    # panel.io.fastapi builds Tornado requests the pre-6.7 way on every page: Panel's to fix.
    warnings.filterwarnings(
        "ignore",
        message=r"The (method, uri, and version arguments|start_line argument) to HTTPServerRequest",
        category=DeprecationWarning,
    )
    try:
        from pandas.errors import Pandas4Warning
    except ImportError:  # pandas < 3
        return
    # Panel 1.9 / bokeh 3.9 trigger it inside every table update; it is not ours to fix.
    warnings.filterwarnings("ignore", category=Pandas4Warning)


def websocket_origins(hosts: Iterable[str], port: int) -> list[str]:
    """Bokeh's websocket origin allow-list for ``hosts`` (the served port; 443 for a proxy)."""
    out = set()
    for h in hosts:
        if ":" not in h:  # Bokeh's allow-list cannot say an IPv6 address
            out |= {f"{h}:{port}", h, f"{h}:443"}
    return sorted(out)


def workspace(path: str | None = None) -> Any:
    """The process's one Workspace for ``panel serve app.py`` (opened on first use from
    ``path`` or ``$BEAR_DB``); its runner is started, so unfinished runs resume. Start-up
    settings cannot be changed through it: it serves people, who must not load code."""
    global _WS
    with _WS_LOCK:
        if _WS is None:
            import bear

            _WS = bear.connect(path or os.environ.get("BEAR_DB") or "data/bear.duckdb")
            _WS.settings.lock_startup()
            _WS.runner.start()
        return _WS


def resolve_owner(cli_user: str | None = None) -> str:
    """Who acts in single-user mode: ``--user``, else ``$BEAR_USER``, else ``analyst``."""
    from bear.ui.state import resolve_user

    return resolve_user(None, cli_user)


def create_app(
    ws: Any = None,
    user: str | None = None,
    account: Any = None,
    exports: str | None = None,
    on_shown: Any = None,
) -> Any:
    """The page of one session: the dashboard in its frame, opened at ``/?run=N`` if asked.
    ``account`` is the signed-in ``bear.models.User`` (``None`` in single-user mode): its
    role decides what the page offers. ``exports`` is the address of the API's streamed
    event export (``bear serve``), for the grids' CSV and Excel links; ``on_shown`` is
    called once the browser has drawn the page."""
    import panel as pn

    from bear.ui.dashboard import Dashboard
    from bear.ui.state import parse_run_link

    quiet_warnings()
    pn.extension("tabulator", "modal", notifications=True)
    ws = ws or workspace()
    args = dict(pn.state.session_args or {}) if pn.state.curdoc is not None else {}
    name = user or resolve_owner(None)
    dash = Dashboard(
        ws,
        name,
        run_link=parse_run_link(args),
        account=account,
        exports=exports,
        on_shown=on_shown,
    )
    return dash.template()


def rehearse(ws: Any, user: str) -> None:
    """Build one dashboard page and let it go, before the server listens.

    A process's first page costs more than the next ones: Panel and pandas import modules on
    first use and compile their page templates. The first visitor after a start paid that
    inside their page load; the server pays it here instead. The page has no session: its
    background work is dropped (the start-up warm-up does it) and it is released as a
    finished session's page is. Failing here only means the first page pays it."""
    import types

    import panel as pn
    from bokeh.document import Document
    from panel.io.state import set_curdoc, state

    from bear.ui.dashboard import Dashboard

    quiet_warnings()
    pn.extension("tabulator", "modal", notifications=True)
    doc = Document()
    try:
        with set_curdoc(doc):
            page = Dashboard(ws, user, background=lambda *a, **k: None, poll=False)
            page.template().server_doc(doc)
    except Exception:  # noqa: BLE001 — a rehearsal; the real page reports its own errors
        log.debug("rehearsing a page failed", exc_info=True)
    ended = types.SimpleNamespace(id="rehearsal", _document=doc, destroyed=True)
    callbacks, doc.session_destroyed_callbacks = doc.session_destroyed_callbacks, set()
    for callback in callbacks:  # as Bokeh ends a session: every hook, whatever one raises
        try:
            callback(ended)
        except Exception:  # noqa: BLE001
            log.debug("releasing the rehearsed page", exc_info=True)
    # Two of Panel's hooks release the page's location; whichever runs second raises before
    # the location's entry is dropped (the set's order decides): drop what is left.
    for held in (state._locations, state._templates, state._notifications, state._periodic):
        held.pop(doc, None)
