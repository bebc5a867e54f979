"""The progress panel of the run in progress: stage, batches, events, documents, rate,
ETA, cancel, and a link to the run's detail.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import panel as pn
from panel.viewable import Viewer

from bear.ui.components import (
    CSS,
    alert,
    esc,
    html_pane,
    toast,
)
from bear.ui.state import (
    ACTION_LABEL,
    RunProgress,
)
from bear.ui.state.progress import outcome_kind
from bear.ui.views.common import button

# The bar's colour for each look of an outcome (``outcome_kind``): amber for a run with
# failures, red for one that failed.
BAR_COLOR: dict[str, Any] = {"success": "success", "warning": "warning", "error": "danger"}
# The text colour of an outcome's words (the stylesheet's green, amber and red): the progress
# title here, the bell's notifications (the run detail uses the stylesheet's cards and alerts).
OUTCOME_COLOUR = {"success": "#067647", "warning": "#b54708", "error": "#b42318"}


class ProgressPanel(Viewer):
    """Live progress of the run this session started; polled by the dashboard's callback."""

    def __init__(
        self,
        state: RunProgress,
        open_run: Callable[[int], None] | None = None,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.state = state
        self.title = html_pane()
        self.bar = pn.indicators.Progress(value=0, max=100, sizing_mode="stretch_width", height=14)
        self.stats = html_pane()
        self.cancel = button("Cancel run", "danger", width=110)
        self.details = button("Open run details", "primary", width=140)
        self.dismiss = button("Dismiss", "light", width=80)
        self.cancel.on_click(self._cancel)
        self.details.on_click(lambda e: open_run and state.run_id and open_run(state.run_id))
        self.dismiss.on_click(lambda e: setattr(self.layout, "visible", False))
        self.layout = pn.Column(
            pn.Row(
                pn.Column(self.title, self.stats, sizing_mode="stretch_width"),
                self.cancel,
                self.details,
                self.dismiss,
                sizing_mode="stretch_width",
            ),
            self.bar,
            visible=False,
            sizing_mode="stretch_width",
            styles={
                "border": "1px solid rgba(128,128,128,.3)",
                "border-radius": "8px",
                "padding": "4px 12px 8px 12px",
            },
            stylesheets=[CSS],
        )
        state.param.watch(self._render, list(RunProgress.param)[1:])
        self._render()  # the run already followed, if any (the panel is made on first use)

    def _cancel(self, event: Any) -> None:
        toast("warning", self.state.cancel())

    def _render(self, *_: Any) -> None:
        s = self.state
        if s.run_id is None:
            return
        self.layout.visible = True
        label = ACTION_LABEL.get(s.action, s.action)
        state = s.outcome or s.status
        if not s.finished:
            state = f"{state} — {s.stage} stage"
        kind = outcome_kind(s.outcome) if s.finished else "info"
        self.title.object = (
            f"<b class='bear-line' data-outcome='{esc(s.outcome)}' "
            f"style='color:{OUTCOME_COLOUR.get(kind, 'inherit')}'>"
            f"Run {s.run_id} · {esc(label)} · {esc(state)}</b>"
        )
        self.bar.value = int(round(100 * s.fraction))
        self.bar.bar_color = BAR_COLOR.get(kind, "primary")
        if s.action == "revert":
            counts = [
                ("reverted", f"{s.reverted:,}"),
                ("not reverted", f"{s.not_reverted:,}"),
                ("documents discarded", f"{s.discarded:,}"),
                (
                    "reversing documents",
                    f"{s.documents:,} ({s.sales_invoices:,} invoices, "
                    f"{s.credit_notes:,} credit notes)",
                ),
            ]
        else:
            counts = [
                ("released", f"{s.released:,}"),
                ("not released", f"{s.not_released:,}"),
                (
                    "documents",
                    f"{s.documents:,} ({s.sales_invoices:,} invoices, "
                    f"{s.credit_notes:,} credit notes)",
                ),
            ]
        parts = [
            ("stage", s.stage or "—"),
            ("batches", f"{s.batches_done:,}/{s.batches:,}"),
            *counts,
            ("failed batches", f"{s.failed_batches:,}"),
            (
                "average rate" if s.finished else "rate",
                "—" if not s.rate else f"{s.rate:,.0f} events/s",
            ),
            ("ETA", "—" if s.eta_s is None else f"{s.eta_s:,.0f} s"),
        ]
        line = " · ".join(f"{esc(k)} <b>{esc(v)}</b>" for k, v in parts)
        extra = ""
        if s.error:
            extra = alert(s.error, "err")
        elif s.message:
            extra = alert(s.message)
        self.stats.object = f"<div class='bear-line'>{line}</div>{extra}"
        self.cancel.visible = not s.finished  # a finished run has nothing to cancel

    def __panel__(self) -> pn.viewable.Viewable:
        return self.layout
