"""The query layer: every SQL statement the faces and the workspace read with, in one place.

``filters`` validates a selection's filters and turns them into conditions; ``events`` holds
the event kinds, columns, joins (made only when used), counts, ids, totals per currency,
category masks and filter options; ``records`` the runs, logs, documents, notifications and a
preview's violations; ``pager`` the one pager every listing is paged with (keyset where the
sort allows it, OFFSET otherwise, ties broken by id); ``bounds`` the allowed range of every
id, amount, offset and limit a caller hands in. Functions take a DuckDB cursor
explicitly; this package imports only ``bear.db``, ``bear.models``, ``bear.errors`` and
``bear.config`` of BEAR, so it sits below the workspace and the services.
"""

from __future__ import annotations

from bear.queries.events import COLUMNS, FROM_SQL, KIND_SQL, Condition
from bear.queries.filters import CATEGORIES, FILTERS, ID_FILTERS, Filters
from bear.queries.pager import PAGE_SIZE, Listing, Pager
from bear.queries.records import (
    DOC_COLUMNS,
    AppLogQuery,
    DocumentQuery,
    ProcessLogQuery,
    ViolationQuery,
)

__all__ = [
    "CATEGORIES",
    "COLUMNS",
    "DOC_COLUMNS",
    "FILTERS",
    "FROM_SQL",
    "ID_FILTERS",
    "KIND_SQL",
    "PAGE_SIZE",
    "AppLogQuery",
    "Condition",
    "DocumentQuery",
    "Filters",
    "Listing",
    "Pager",
    "ProcessLogQuery",
    "ViolationQuery",
]
