"""BEAR — Billing Events Awaiting Release: release billing events, create invoices and credit notes.

Public API: ``connect()``, ``Workspace``, ``hookimpl``, ``SqlRule``, ``BearError``, ``__version__``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from bear import demo
from bear.errors import BearError
from bear.markers import hookimpl
from bear.workspace import Workspace

__version__ = "0.1.0"

# A library stays quiet unless the application configures logging (the CLI does).
logging.getLogger("bear").addHandler(logging.NullHandler())


def connect(
    path: str | os.PathLike[str] = ":memory:",
    plugins: Iterable[object] = (),
    *,
    resume: bool = True,
    safe_mode: bool = False,
) -> Workspace:
    """Open (creating and migrating) a BEAR database and return its ``Workspace``.

    :param path: a DuckDB file, or ``":memory:"``.
    :param plugins: extra plugin objects (modules or instances with ``@bear.hookimpl`` methods).
    :param resume: resume unfinished runs in the background (the owner of a database does).
    :param safe_mode: open without the stored plugins folder and rules file, without
        entry-point plugins and without resuming runs — the way back in when a stored setting
        stops the book from opening (fix it, e.g. ``ws.settings.reset("plugins_dir")``).
    """
    return Workspace(path, plugins, resume=resume, safe_mode=safe_mode)


from bear.rules import SqlRule  # noqa: E402  (after Workspace: rules import nothing of it)

__all__ = ["BearError", "SqlRule", "Workspace", "__version__", "connect", "demo", "hookimpl"]
