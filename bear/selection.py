"""Selections: a kind of billing events (awaiting release, awaiting invoice, all) and filters.

A ``Selection`` is a plain, frozen value — ``kind`` and validated ``Filters`` — so "all events
matching this filter" costs nothing to carry around and the dashboard never ships ids to the
browser. Reading one goes through the workspace (``ws.count(sel)``, ``ws.resolve_ids(sel)``,
``ws.page(sel, …)``, ``ws.totals(sel)``), which builds its SQL in ``bear.queries``. A
selection made by a workspace keeps a reference to it for one purpose only: so that
``len(sel)``, ``sel.ids()``, ``sel.page()``, ``sel.totals()`` and ``sel.refine()`` work as
short-hands that delegate to that workspace; the reference takes no part in equality. The
workspace may be a remote one (``bear.remote.RemoteWorkspace``): it answers the same calls
through the server.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from bear.errors import BearError
from bear.queries.events import COLUMNS, FROM_SQL, KIND_SQL, aliases_of, from_sql, order_by
from bear.queries.filters import CATEGORIES, FILTERS, ID_FILTERS, Filters

if TYPE_CHECKING:
    from bear.remote import RemoteWorkspace
    from bear.workspace import Workspace

# ``released``: every released event, invoiced or not (what a revert can take back);
# ``invoiced``: the events with a document.
Kind = Literal["awaiting_release", "awaiting_invoice", "released", "invoiced", "all"]
KINDS: tuple[str, ...] = ("awaiting_release", "awaiting_invoice", "released", "invoiced", "all")

__all__ = [
    "CATEGORIES",
    "COLUMNS",
    "FILTERS",
    "FROM_SQL",
    "ID_FILTERS",
    "KINDS",
    "KIND_SQL",
    "Filters",
    "Kind",
    "Selection",
    "aliases_of",
    "from_sql",
    "order_by",
]


@dataclass(frozen=True)
class Selection:
    """A lazy set of billing events: a kind (awaiting release / invoice / all) plus filters.

    ``ws`` is the workspace the selection came from, kept only for the short-hands below.
    """

    kind: Kind
    filters: Filters = field(default_factory=Filters)
    ws: Workspace | RemoteWorkspace | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BearError(f"unknown selection kind {self.kind!r}; kinds: {', '.join(KINDS)}")
        if not isinstance(self.filters, Filters):
            raise BearError("a selection's filters are built with Filters.build(**filters)")

    def _workspace(self) -> Workspace | RemoteWorkspace:
        if self.ws is None:
            raise BearError(
                "this selection is not bound to a workspace: read it with ws.count(sel)"
            )
        return self.ws

    # -- short-hands that delegate to the workspace ------------------------------------------
    def __len__(self) -> int:
        return self._workspace().count(self)

    def count(self) -> int:
        return len(self)

    def ids(self) -> list[int]:
        return self._workspace().resolve_ids(self)

    def page(
        self, offset: int = 0, limit: int = 50, sort: Sequence[tuple[str, str]] | None = None
    ) -> pd.DataFrame:
        """One page of events, display-ready (amounts as Decimal; sort columns whitelisted)."""
        return self._workspace().page(self, offset, limit, sort)

    def totals(self) -> pd.DataFrame:
        """Count and amount per currency, with expected sales invoices and credit notes."""
        return self._workspace().totals(self)

    def where_sql(self) -> tuple[str, dict[str, Any]]:
        """The selection's SQL condition (over aliases e, p, a, c) and its parameters."""
        return self._workspace().selection_where(self)

    def ids_sql(self) -> tuple[str, dict[str, Any]]:
        """A query returning the selected ids (column ``billing_event_id``), and its parameters."""
        return self._workspace().selection_sql(self)

    # -- values ------------------------------------------------------------------------------
    def refine(self, **filters: Any) -> Selection:
        """A new selection with these filters added to (or replacing) the current ones."""
        built = Filters.build(**{**self.filters.as_dict(), **filters})
        return Selection(self.kind, built.scoped(self.filters.scope), self.ws)

    def describe(self) -> str:
        """The filters in words, e.g. ``currency=EUR, GBP; min_amount=0``."""
        parts = []
        for k, v in self.filters.as_dict().items():
            text = ", ".join(map(str, v)) if isinstance(v, tuple) else str(v)
            if k in ID_FILTERS and isinstance(v, tuple) and len(v) > 5:
                text = f"{len(v):,} ids"
            parts.append(f"{k}={text}")
        return "; ".join(parts)

    def __repr__(self) -> str:
        return f"<Selection {self.kind}({self.describe()})>"

    def _repr_html_(self) -> str:
        totals = self.totals()
        n = int(totals["events"].sum()) if len(totals) else 0
        rows = "".join(
            f"<tr><td>{html.escape(str(r.currency))}</td><td style='text-align:right'>{r.events:,}</td>"
            f"<td style='text-align:right'>{r.amount:,.2f}</td><td style='text-align:right'>{r.sales_invoices:,}</td>"
            f"<td style='text-align:right'>{r.credit_notes:,}</td></tr>"
            for r in totals.itertuples()
        )
        f = html.escape(self.describe() or "no filter")
        return (
            f"<div><b>{n:,} events {self.kind.replace('_', ' ')}</b> <small>({f})</small>"
            "<table><thead><tr><th>currency</th><th>events</th><th>amount</th>"
            "<th>expected invoices</th><th>expected credit notes</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></div>"
        )
