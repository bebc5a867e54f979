"""pluggy markers of the ``bear`` project: decorate plugin functions with ``@bear.hookimpl``."""

from __future__ import annotations

import pluggy

PROJECT = "bear"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
