"""What the dashboard's views share: the button factory, and ``Toggled``."""

from __future__ import annotations

from typing import Any

import panel as pn


def button(name: str, kind: str = "default", **kw: Any) -> pn.widgets.Button:
    """A button of a colour (``default``, ``primary``, ``light``, ``warning``…)."""
    return pn.widgets.Button(label=name, color=kind, **kw)


class Toggled:
    """A viewer laid out once as ``self.layout``, shown or hidden as a whole (``visible``)."""

    layout: pn.viewable.Viewable

    @property
    def visible(self) -> bool:
        return bool(self.layout.visible)

    @visible.setter
    def visible(self, value: bool) -> None:
        self.layout.visible = value

    def __panel__(self) -> pn.viewable.Viewable:
        return self.layout
