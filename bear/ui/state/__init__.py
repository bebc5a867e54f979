"""State and actions of the analyst dashboard: ``param.Parameterized`` classes without panel,
one module per screen.

``filters`` and ``grid`` (the awaiting-release / awaiting-invoice grids), ``action`` (the
Release and Invoice flow and its warning dialog), ``progress`` (a run's progress), ``runs``
(the run list and a run's detail), ``documents``, ``settings``, ``notifications``; ``common``
holds what they share, among it ``PagedRows``. Every class talks to the core through the
``Workspace`` only — no SQL, no cursor — and is unit-tested without a browser
(``tests/test_ui_state.py``) and timed by ``bench/bench_ui.py``. The names below are the
package's public face: ``from bear.ui.state import GridState`` keeps working.
"""

from __future__ import annotations

from bear.queries import PAGE_SIZE
from bear.ui.downloads import EXCEL_MAX_ROWS, frame_csv, frame_xlsx
from bear.ui.state.action import PHASES, ActionFlow
from bear.ui.state.common import (
    ACTION_LABEL,
    GRID_COLUMNS,
    KIND_ACTION,
    KINDS,
    TIME_FORMAT,
    TITLES,
    Background,
    PagedRows,
    display_frame,
    parse_run_link,
    resolve_user,
)
from bear.ui.state.documents import DocumentsState
from bear.ui.state.filters import FilterState, SavedViews, filter_options
from bear.ui.state.grid import GridState, eligibility_ready
from bear.ui.state.notifications import NotificationState
from bear.ui.state.progress import RunProgress
from bear.ui.state.runs import RunsState
from bear.ui.state.settings import RULE_SETTINGS, SettingsState

__all__ = [
    "ACTION_LABEL",
    "EXCEL_MAX_ROWS",
    "GRID_COLUMNS",
    "KINDS",
    "KIND_ACTION",
    "PAGE_SIZE",
    "PHASES",
    "RULE_SETTINGS",
    "TITLES",
    "ActionFlow",
    "Background",
    "DocumentsState",
    "FilterState",
    "GridState",
    "NotificationState",
    "PagedRows",
    "RunProgress",
    "RunsState",
    "SettingsState",
    "TIME_FORMAT",
    "display_frame",
    "eligibility_ready",
    "filter_options",
    "SavedViews",
    "frame_csv",
    "frame_xlsx",
    "parse_run_link",
    "resolve_user",
]
