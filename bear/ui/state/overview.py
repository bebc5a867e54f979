"""The Awaiting Release overview: what awaits, by age, customer, currency and blocking reason,
for the current filters (``ws.overview``), and the filter a click on one of its bars sets.

Nothing is computed while the overview is closed; opened, it follows the filters and the data.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

import pandas as pd
import param

from bear.errors import BearError
from bear.queries.overview import AGE_BUCKETS, OTHERS
from bear.ui.state.filters import FilterState

if TYPE_CHECKING:
    from bear.ui.state.grid import GridState

log = logging.getLogger(__name__)


class OverviewState(param.Parameterized):
    """The overview of one grid's filtered events; ``pick`` turns a bar into a filter."""

    open = param.Boolean(default=False, doc="shown: computed and kept current")
    age = param.DataFrame(default=None, allow_None=True)
    customers = param.DataFrame(default=None, allow_None=True)
    currency = param.DataFrame(default=None, allow_None=True)
    reasons = param.DataFrame(default=None, allow_None=True)
    error = param.String(default="")
    seconds = param.Number(default=0.0)

    def __init__(self, grid: GridState, **params: Any) -> None:
        super().__init__(**params)
        self.grid = grid
        self.filters: FilterState = grid.filter_state
        self._seen: tuple[int, int] | None = None
        grid.param.watch(self._changed, ["total", "version"])

    @param.depends("open", watch=True)
    def _opened(self) -> None:
        if self.open:
            self.refresh()

    def _changed(self, *_: Any) -> None:
        if self.open and self._seen != (self.filters.version, self.grid.ws.data_version):
            self.refresh()

    def refresh(self) -> None:
        import time

        t0 = time.perf_counter()
        try:
            ov = self.grid.ws.overview(self.grid.selection_filter(), cached=True)
        except BearError as exc:
            self.error = str(exc)
            return
        self._seen = (self.filters.version, self.grid.ws.data_version)
        rules = self.grid.ws.rules()
        described = dict(zip(rules["id"], rules["description"], strict=True))
        reasons = ov["reasons"].copy()
        reasons["description"] = [described.get(r, r) for r in reasons["rule_id"]]
        self.param.update(
            age=ov["age"],
            customers=ov["customers"],
            currency=ov["currency"],
            reasons=reasons,
            error="",
            seconds=time.perf_counter() - t0,
        )

    def pick(self, chart: str, value: Any) -> str:
        """Filter the grid by one bar: an age bucket (event dates), a customer (account), a
        currency, or a blocking reason (eligibility). Returns what was done, in words."""
        if isinstance(value, tuple | list):  # a stacked or grouped bar: its category first
            value = value[0]
        value = str(value)
        if chart == "age":
            spans = {label: (lo, hi) for label, lo, hi in AGE_BUCKETS}
            if value not in spans:
                return ""
            lo, hi = spans[value]
            today = dt.date.today()
            self.filters.param.update(
                date_from=None if hi is None else today - dt.timedelta(days=hi),
                date_to=today - dt.timedelta(days=lo),
            )
            return f"events {value} old"
        if chart == "customers":
            rows = self.customers if self.customers is not None else pd.DataFrame()
            hit = rows[rows["account"] == value] if len(rows) else rows
            if value == OTHERS or not len(hit) or pd.isna(hit["account_id"].iloc[0]):
                return ""
            self.filters.account = [int(hit["account_id"].iloc[0])]
            return f"customer {value}"
        if chart == "currency":
            self.filters.currency = [value]
            return f"currency {value}"
        if chart == "reasons":
            rows = self.reasons if self.reasons is not None else pd.DataFrame()
            hit = rows[(rows["rule_id"] == value) | (rows["description"] == value)]
            if not len(hit):
                return ""
            self.filters.eligibility = str(hit["rule_id"].iloc[0])
            return f"events blocked by {hit['rule_id'].iloc[0]}"
        return ""
