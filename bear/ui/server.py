"""Serving the dashboard: one process owns the database, runs the runner, serves every session.

``bear serve`` calls ``serve()``; ``panel serve app.py`` calls ``create_app()`` per session and
opens the database named by ``$BEAR_DB`` on first use. Either way there is one ``Workspace``
per process, shared by all sessions; each session thread reads through its own cursor.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import warnings
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

SESSION_THREADS = 4

_WS: Any = None
_WS_LOCK = threading.Lock()


def _quiet_warnings() -> None:
    # Bokeh checks every document for "fixed sizing without width/height" and logs W-1005 for
    # Panel's own HTML panes on each page load: noise in the server log, not a fault of ours.
    from bokeh.core.validation import silence
    from bokeh.core.validation.warnings import FIXED_SIZING_MODE

    silence(FIXED_SIZING_MODE, True)
    try:
        from pandas.errors import Pandas4Warning
    except ImportError:  # pandas < 3
        return
    # Panel 1.9 / bokeh 3.9 trigger it inside every table update; it is not ours to fix.
    warnings.filterwarnings("ignore", category=Pandas4Warning)


def workspace(path: str | None = None, *, safe_mode: bool = False) -> Any:
    """The process's one Workspace (opened on first use from ``path`` or ``$BEAR_DB``);
    its runner is started, so unfinished runs resume. Start-up settings (plugins folder,
    rules file) cannot be changed through it: it serves people, who must not load code."""
    global _WS
    with _WS_LOCK:
        if _WS is None:
            import bear

            _WS = bear.connect(
                path or os.environ.get("BEAR_DB") or "data/bear.duckdb",
                resume=True,
                safe_mode=safe_mode,
            )
            _WS.settings.lock_startup()
            _WS.runner.start()
        return _WS


def current_user(cli_user: str | None = None) -> str:
    """Panel's authenticated user when auth is on, else ``--user`` / ``$BEAR_USER``, else
    ``analyst``."""
    import panel as pn

    from bear.ui.state import resolve_user

    return resolve_user(pn.state.user, cli_user)


def create_app(ws: Any = None, user: str | None = None) -> Any:
    """The page of one session: the dashboard in its frame, opened at ``/?run=N`` if asked."""
    import panel as pn

    from bear.ui.dashboard import Dashboard
    from bear.ui.state import parse_run_link

    _quiet_warnings()
    pn.extension("tabulator", "modal", notifications=True)
    ws = ws or workspace()
    args = dict(pn.state.session_args or {}) if pn.state.curdoc is not None else {}
    dash = Dashboard(ws, current_user(user), run_link=parse_run_link(args))
    return dash.template()


def serve(
    path: str,
    port: int = 5006,
    address: str = "127.0.0.1",
    user: str | None = None,
    show: bool = False,
    *,
    startup: dict[str, Any] | None = None,
    allow_hosts: Iterable[str] = (),
    safe_mode: bool = False,
) -> None:
    """Own the database at ``path``, start the runner and serve the dashboard until stopped.

    ``startup`` holds start-up settings given on the command line (``plugins_dir``,
    ``rules_file``): validated and stored before anything is served, then locked. Requests are
    answered only for the served address and ``allow_hosts`` (``bear.ui.guard``).
    """
    import panel as pn

    from bear.ui.guard import allowed_hosts, protect, websocket_origins

    if user:
        os.environ["BEAR_USER"] = user
    _quiet_warnings()
    if startup:
        import bear

        with bear.connect(path, resume=False, safe_mode=safe_mode) as owner:
            owner.settings.update(**startup)  # refused (and not stored) if it fails to load
    ws = workspace(path, safe_mode=safe_mode)
    hosts = allowed_hosts(address, allow_hosts)
    # Events from the browser are handled on a small thread pool, so one session's slow
    # callback (a big download, a preview) never holds up the others; each thread reads
    # through its own cursor.
    pn.config.nthreads = SESSION_THREADS
    log.info("serving %s on http://%s:%s (hosts: %s)", path, address, port, ", ".join(hosts))

    def _terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # leave the server loop; the finally below closes the database

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        server = pn.serve(
            {"/": lambda: create_app(ws, user)},
            port=port,
            address=address,
            show=show,
            websocket_origin=websocket_origins(hosts, port),
            title="BEAR",
            threaded=False,
            start=False,
        )
        protect(server._tornado, hosts)
        server.start()
        server.io_loop.start()
    except KeyboardInterrupt:
        log.info("stopping: closing %s", path)
    finally:
        signal.signal(signal.SIGTERM, previous)
        ws.close()
