"""The sidebar filters of the grids: one widget per filter of ``FilterState``, the refusal
message when a filter value is not allowed.
"""

from __future__ import annotations

from typing import Any

import panel as pn
import param
from panel.viewable import Viewer

from bear.ui.components import (
    alert,
    esc,
    html_pane,
)
from bear.ui.state import (
    FilterState,
)
from bear.ui.views.common import button


class FilterPanel(Viewer):
    """The sidebar: every filter of DESIGN §2.1 and a reset button."""

    def __init__(self, state: FilterState, options: dict[str, Any], **params: Any) -> None:
        super().__init__(**params)
        self.state = state

        def labelled(d: dict[str, Any]) -> dict[str, Any]:
            # Choices.js renders option labels as HTML: escape names coming from the data.
            return {esc(k): v for k, v in d.items()}

        def choice(name: str, label: str, opts: Any, **kw: Any) -> pn.widgets.MultiChoice:
            return pn.widgets.MultiChoice.from_param(
                state.param[name],
                name=label,
                options=opts,
                sizing_mode="stretch_width",
                search_option_limit=40,
                description=None,
                **kw,
            )

        self.company = choice("company", "Company", labelled(options["company"]))
        self.account = choice("account", "Account", labelled(options["account"]), option_limit=300)
        self.project = choice("project", "Project", labelled(options["project"]), option_limit=300)
        for name, label in (
            ("region", "Region"),
            ("practice", "Practice"),
            ("grp", "Group"),
            ("currency", "Currency"),
        ):
            setattr(self, name, choice(name, label, [esc(v) for v in options[name]]))
        self.date_from = pn.widgets.DatePicker.from_param(
            state.param.date_from, name="Event date from", sizing_mode="stretch_width"
        )
        self.date_to = pn.widgets.DatePicker.from_param(
            state.param.date_to, name="Event date to", sizing_mode="stretch_width"
        )
        self.min_amount = pn.widgets.FloatInput.from_param(
            state.param.min_amount, name="Amount from", sizing_mode="stretch_width"
        )
        self.max_amount = pn.widgets.FloatInput.from_param(
            state.param.max_amount, name="Amount to", sizing_mode="stretch_width"
        )
        self.category = choice("category", "Item category", options["category"])
        self.eligibility = pn.widgets.Select.from_param(
            state.param.eligibility,
            name="Eligibility",
            options=labelled(options["eligibility"]),
            sizing_mode="stretch_width",
            description=None,
        )
        self.search = pn.widgets.TextInput.from_param(
            state.param.search,
            name="Search",
            placeholder="event, project or account name, or event id",
            sizing_mode="stretch_width",
        )
        self.reset = button("Reset filters", "light", sizing_mode="stretch_width")
        self.reset.on_click(lambda e: state.reset())
        self.message = html_pane()
        state.param.watch(self._error, "error")

    def _error(self, event: param.parameterized.Event) -> None:
        self.message.object = alert(event.new, "err") if event.new else ""

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            self.search,
            self.company,
            self.account,
            self.project,
            pn.Row(self.region, self.practice, sizing_mode="stretch_width"),
            pn.Row(self.grp, self.currency, sizing_mode="stretch_width"),
            pn.Row(self.date_from, self.date_to, sizing_mode="stretch_width"),
            pn.Row(self.min_amount, self.max_amount, sizing_mode="stretch_width"),
            self.category,
            self.eligibility,
            self.message,
            self.reset,
            sizing_mode="stretch_width",
        )
