"""The dashboard's views: ``pn.viewable.Viewer`` classes that lay out and delegate to state,
one module per screen.

Each view creates its widgets in ``__init__``, binds them to a state object of
``bear.ui.state`` and calls its methods; no SQL and no business rule lives here. Text from
the data reaches the browser only escaped (``esc``) or through plain-text table cells.
``from bear.ui.views import EventGrid`` (and the other names below) keeps working.
"""

from __future__ import annotations

from bear.ui.views.action import ActionDialog
from bear.ui.views.documents import DOC_TITLES, DocumentsView
from bear.ui.views.filters import FilterPanel, SavedViewsPanel
from bear.ui.views.grid import EventGrid
from bear.ui.views.notifications import BELL_SVG, NotificationBell
from bear.ui.views.overview import OverviewView
from bear.ui.views.progress import ProgressPanel
from bear.ui.views.runs import (
    APP_TITLES,
    BATCH_TITLES,
    PROCESS_TITLES,
    RUN_TITLES,
    RunDetail,
    RunsView,
)
from bear.ui.views.settings import SettingsView

__all__ = [
    "APP_TITLES",
    "BATCH_TITLES",
    "BELL_SVG",
    "DOC_TITLES",
    "PROCESS_TITLES",
    "RUN_TITLES",
    "ActionDialog",
    "DocumentsView",
    "EventGrid",
    "FilterPanel",
    "NotificationBell",
    "OverviewView",
    "ProgressPanel",
    "RunDetail",
    "RunsView",
    "SavedViewsPanel",
    "SettingsView",
]
