"""What the dashboard's views share: the button factory."""

from __future__ import annotations

from typing import Any

import panel as pn


def button(name: str, kind: str = "default", **kw: Any) -> pn.widgets.Button:
    """A button of a colour (``default``, ``primary``, ``light``, ``warning``…)."""
    return pn.widgets.Button(label=name, color=kind, **kw)
