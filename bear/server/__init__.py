"""``bear serve``: one process, one port — the dashboard at ``/``, the HTTP API at ``/api/v1``.

The process owns the book (DuckDB allows one writer process), runs the runner, and serves
both faces from one FastAPI application under uvicorn: the API routes (``bear.api``), the
sign-in page (``bear.server.login``) and the Panel dashboard mounted with
``panel.io.fastapi`` (Bokeh's websocket included), all behind one ``Guard`` (host check,
sign-in gate, security headers). FastAPI was chosen over Panel's Tornado server because the
API then gets request validation and its OpenAPI document from the route signatures, and one
ASGI middleware guards the page, the API and the websocket alike.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterable
from typing import Any

from bear.errors import BearError
from bear.server.warm import Pages, warm_when_quiet

log = logging.getLogger(__name__)

SESSION_THREADS = 4
EXPORTS = "/api/v1/events/export"  # the dashboard's CSV / Excel links stream from here


def build_app(
    ws: Any, *, owner: str, hosts: Iterable[str], port: int, pages: Pages | None = None
) -> Any:
    """The served application over ``ws``: API, sign-in, dashboard, guard. ``pages`` counts
    the dashboard pages being drawn (the start-up warm-up waits for them)."""
    import panel as pn
    from panel.io.fastapi import add_applications

    from bear.api import Context, create_api
    from bear.auth.sessions import COOKIE
    from bear.server.guard import Guard
    from bear.server.login import router as login_router
    from bear.ui.server import create_app, quiet_warnings, websocket_origins

    quiet_warnings()
    ctx = Context(ws=ws, owner=owner)
    api = create_api(ws, owner, ctx)
    api.include_router(login_router)

    def dashboard() -> Any:
        uid = ctx.sessions.user_id(pn.state.cookies.get(COOKIE))
        user = ws.team.by_id(uid) if uid is not None else None
        if user is not None and user.disabled:
            user = None
        drawn = pages.begin() if pages is not None else None
        if drawn is not None:
            pn.state.on_session_destroyed(lambda _ctx: drawn())  # closed before it was drawn
        return create_app(
            ws, user.name if user else owner, account=user, exports=EXPORTS, on_shown=drawn
        )

    hosts = list(hosts)
    add_applications(
        {"/": dashboard},
        app=api,
        title="BEAR",
        websocket_origin=websocket_origins(hosts, port),
    )
    for route in api.routes:  # the OpenAPI document describes the API, not the dashboard's pages
        if not str(getattr(route, "path", "")).startswith("/api/v1"):
            route.include_in_schema = False  # type: ignore[attr-defined]
    api.openapi_schema = None
    guarded = Guard(
        api,
        hosts=hosts,
        signed_in=lambda sid: ctx.sessions.user_id(sid) is not None,
        team_mode=ctx.team_mode,
    )
    guarded.context = ctx  # type: ignore[attr-defined]
    return guarded


def _stop(signum: int, frame: Any) -> None:
    raise SystemExit(0)  # stopping a server with SIGTERM is how it is meant to stop


def local_url(address: str, port: int) -> str:
    """The URL a process on this machine reaches the server at (a wildcard address is
    reached on loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(address, address)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def serve(
    path: str,
    port: int = 5006,
    address: str = "127.0.0.1",
    user: str | None = None,
    *,
    startup: dict[str, Any] | None = None,
    allow_hosts: Iterable[str] = (),
    safe_mode: bool = False,
) -> None:
    """Own the database at ``path``, start the runner and serve until stopped (SIGTERM or
    Ctrl-C close the book cleanly).

    ``startup`` holds start-up settings given on the command line (``plugins_dir``,
    ``rules_file``): validated and stored before anything is served, then locked. A
    non-loopback ``address`` needs an admin user (anyone who can reach it must sign in).
    """
    import uvicorn

    import bear
    from bear.db import served
    from bear.server.guard import allowed_hosts
    from bear.server.pool import install as install_pool
    from bear.ui.server import rehearse, resolve_owner
    from bear.wire import is_loopback

    if startup:
        with bear.connect(path, resume=False, safe_mode=safe_mode) as owner_ws:
            owner_ws.settings.update(**startup)  # refused (and not stored) if it fails to load
    ws = bear.connect(path, resume=True, safe_mode=safe_mode)
    try:
        if not is_loopback(address) and ws.team.count(role="admin") == 0:
            raise BearError(
                f"refusing to serve on {address!r}: anyone who can reach it could act on the "
                "book. Add an admin first (bear users add NAME --role admin), or serve on "
                "127.0.0.1"
            )
        ws.settings.lock_startup()
        ws.runner.start()
        hosts = allowed_hosts(address, allow_hosts)
        owner = resolve_owner(user)
        pages = Pages()
        app = build_app(ws, owner=owner, hosts=hosts, port=port, pages=pages)
        rehearse(ws, owner)  # the process's first page is built here, not by its first visitor
        # Events from the browser are handled on a small thread pool, so one session's slow
        # callback (a big download, a preview) never holds up the others; each session's own
        # callbacks still run in the order the browser sent them (bear.server.pool).
        install_pool(SESSION_THREADS)
        mode = "sign-in required" if ws.team.count() else f"single-user mode as {owner}"
        log.info("serving %s on http://%s:%s (%s)", path, address, port, mode)
        print(f"BEAR serving {path} on http://{address}:{port} ({mode})", flush=True)
        config = uvicorn.Config(
            app,
            host=address,
            port=port,
            log_level="warning",
            lifespan="off",
            server_header=False,
        )
        server = uvicorn.Server(config)
        # No session must wait for the eligibility of every awaiting event (a second of both
        # cores at a million): it is computed once the server listens, before anyone asks —
        # after a page being drawn then, which comes first (bear.server.warm).
        threading.Thread(
            target=warm_when_quiet,
            args=(ws, pages, lambda: server.started),
            name="bear-warm",
            daemon=True,
        ).start()
        # uvicorn shuts down gracefully on SIGTERM, then raises the signal again with the
        # handler it found: with the default one the process would die there, before the
        # book is closed and the note removed. This one ends serve() through its finally
        # blocks instead (and stops a server that is signalled while it starts).
        previous = signal.signal(signal.SIGTERM, _stop)
        if path != ":memory:":
            # beside the book: where it is served, for the error another process gets
            served.write_note(path, local_url(address, port))
        try:
            server.run()
        finally:
            signal.signal(signal.SIGTERM, previous)
            if path != ":memory:":
                served.remove_note(path)
    finally:
        log.info("stopping: closing %s", path)
        ws.close()
