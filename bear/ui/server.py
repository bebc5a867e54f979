"""Serving the dashboard: one process owns the database, runs the runner, serves every session."""

from __future__ import annotations

import os
from typing import Any

_WS: Any = None


def workspace(path: str | None = None) -> Any:
    """The process's one Workspace (opened on first use from ``path`` or ``$BEAR_DB``)."""
    global _WS
    if _WS is None:
        import bear

        _WS = bear.connect(path or os.environ.get("BEAR_DB") or "data/bear.duckdb", resume=True)
        _WS.runner.start()
    return _WS


def create_app(ws: Any = None, user: str | None = None) -> Any:
    """The page for one session (a simple summary until the full dashboard lands)."""
    import panel as pn

    ws = ws or workspace()
    totals = ws.awaiting_release().totals()
    table = pn.pane.DataFrame(totals, index=False)
    return pn.Column("# BEAR — Billing Events Awaiting Release", table)


def serve(
    path: str,
    port: int = 5006,
    address: str = "127.0.0.1",
    user: str | None = None,
    show: bool = False,
) -> None:
    import panel as pn

    if user:
        os.environ["BEAR_USER"] = user
    ws = workspace(path)
    pn.serve(
        {"/": lambda: create_app(ws)},
        port=port,
        address=address,
        show=show,
        websocket_origin=[f"{address}:{port}", f"localhost:{port}", f"127.0.0.1:{port}"],
        title="BEAR",
    )
