"""BEAR — Billing Events Awaiting Release: release billing events, create invoices and credit notes.

Public API: ``connect()``, ``Workspace``, ``hookimpl``, ``SqlRule``, ``PluginSetting``,
``BearError``, ``extension()`` (notebooks), ``__version__``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping

from bear import demo
from bear.config import PluginSetting
from bear.errors import BearError
from bear.markers import hookimpl
from bear.workspace import Workspace

__version__ = "0.1.0"

# A library stays quiet unless the application configures logging (the CLI does).
logging.getLogger("bear").addHandler(logging.NullHandler())


def connect(
    path: str | os.PathLike[str] = ":memory:",
    plugins: Iterable[object] | Mapping[str, object] = (),
    *,
    resume: bool = True,
    safe_mode: bool = False,
    token: str | None = None,
) -> Workspace:
    """Open (creating and migrating) a BEAR database and return its ``Workspace``; or, for a
    server's URL, return a ``bear.remote.RemoteWorkspace`` with the same methods.

    :param path: a DuckDB file, ``":memory:"``, or the URL of a ``bear serve`` server
        (``http://…`` or ``https://…``).
    :param plugins: extra plugin objects (modules or instances with ``@bear.hookimpl`` methods),
        named after their ``__name__``; or a mapping ``{name: plugin}`` that names them — a
        plugin's settings are named after it (``{"example": module}`` gives
        ``example.<setting>``, as its entry point ``example`` would).
    :param resume: resume unfinished runs in the background (the owner of a database does).
    :param safe_mode: open without the stored plugins folder and rules file, without
        entry-point plugins and without resuming runs — the way back in when a stored setting
        stops the book from opening (fix it, e.g. ``ws.settings.reset("plugins_dir")``).
    :param token: for a server: the API token (else ``$BEAR_TOKEN``, else the one ``bear
        login`` stored for that URL). The server's user acts: their role and scopes decide
        what the workspace may do, and runs and changes are recorded as theirs.
    """
    if isinstance(path, str) and path.strip().lower().startswith(("http://", "https://")):
        if tuple(plugins) or safe_mode:
            raise BearError(
                "plugins and safe mode belong to the server: start `bear serve` with them"
            )
        from bear.remote import connect as connect_remote  # lazy: httpx only when needed

        return connect_remote(path, token)  # type: ignore[return-value]  # the same API
    if token is not None:
        raise BearError("a token is for a server's URL (http://…), not a database file")
    return Workspace(path, plugins, resume=resume, safe_mode=safe_mode)


def extension(*extensions: str) -> None:
    """In a notebook: load what BEAR's inline views (``ws.dashboard``) and hvPlot charts need
    into the page, from the installed packages — never from a CDN, so they draw on a machine
    without internet access. Call it once at the top, before importing hvPlot, and again after
    reloading the page. ``extensions``: more Panel extensions to load."""
    from bear.ui.notebook import extension as load  # lazy: Panel only when asked for

    load(*extensions)


from bear.rules import SqlRule  # noqa: E402  (after Workspace: rules import nothing of it)

__all__ = [
    "BearError",
    "PluginSetting",
    "SqlRule",
    "Workspace",
    "__version__",
    "connect",
    "demo",
    "extension",
    "hookimpl",
]
