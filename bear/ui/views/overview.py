"""The overview of what awaits release: four bar charts (hvPlot) over the current filters —
by age, by customer, by currency, by blocking reason. A click on a bar filters the grid.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pandas as pd
import panel as pn
from panel.viewable import Viewer

from bear.ui.components import alert, html_pane, toast
from bear.ui.state.overview import OverviewState

HEIGHT = 260


class OverviewView(Viewer):
    """A collapsible card of four charts; computed only while it is open."""

    def __init__(self, state: OverviewState, **params: Any) -> None:
        super().__init__(**params)
        self.state = state
        self.charts = pn.GridBox(ncols=2, sizing_mode="stretch_width")
        self.note = html_pane()
        self.card = pn.Card(
            self.note,
            self.charts,
            title="Overview — what awaits, by age, customer, currency and reason (click a bar to filter)",
            collapsed=True,
            sizing_mode="stretch_width",
        )
        self.card.param.watch(lambda e: setattr(state, "open", not e.new), "collapsed")
        state.param.watch(self._render, ["age", "customers", "currency", "reasons", "error"])
        self._taps: list[Any] = []

    def _bars(self, chart: str, frame: pd.DataFrame, **kw: Any) -> Any:
        # imported when the overview is first drawn, not with the views: importing hvPlot
        # loads HoloViews' notebook extension, which must come after bear.extension()
        import holoviews as hv
        import hvplot.pandas  # noqa: F401  (registers .hvplot on DataFrames)

        plot = frame.hvplot.bar(height=HEIGHT, responsive=True, **kw).opts(
            tools=["hover", "tap"], active_tools=["tap"]
        )
        tap = hv.streams.Tap(source=plot)
        tap.param.watch(partial(self._tapped, chart), "x")
        self._taps.append(tap)
        return pn.pane.HoloViews(plot, sizing_mode="stretch_width")

    def _tapped(self, chart: str, event: Any) -> None:
        if event.new is None:
            return
        done = self.state.pick(chart, event.new)
        if done:
            toast("info", f"Filtered: {done}")

    def _render(self, *_: Any) -> None:
        s = self.state
        if s.error:
            self.note.object = alert(s.error, "err")
            return
        if s.age is None:
            return
        self._taps = []
        age = s.age.dropna(subset=["currency"])
        customers = s.customers.groupby("account", sort=False, as_index=False)["events"].sum()
        currency = s.currency.assign(amount=[float(a) for a in s.currency["amount"]])
        reasons = s.reasons.head(12).iloc[::-1]
        self.note.object = (
            f"<p class='bear-muted'>Computed in {s.seconds * 1000:,.0f} ms for the current "
            "filters. Amounts are per currency; a click on a bar narrows the grid to it.</p>"
        )
        self.charts.objects = [
            self._bars(
                "age", age, x="bucket", y="events", by="currency", stacked=True,
                title="Events by days since the event date", xlabel="", ylabel="events",
            ),
            self._bars(
                "customers", customers.iloc[::-1], x="account", y="events", invert=True,
                title="Events by customer (top 10, then the rest)", xlabel="", ylabel="events",
            ),
            self._bars(
                "currency", currency, x="currency", y="amount",
                title="Amount per currency", xlabel="", ylabel="amount", yformatter="%.0f",
            ),
            self._bars(
                "reasons", reasons, x="rule_id", y="events", invert=True,
                title="Ineligible events by blocking rule", xlabel="", ylabel="events",
                hover_cols=["description"],
            ),
        ]  # fmt: skip

    def __panel__(self) -> pn.viewable.Viewable:
        return self.card
