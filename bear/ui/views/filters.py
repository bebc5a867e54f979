"""The sidebar filters of the grids: one widget per filter of ``FilterState``, the refusal
message when a filter value is not allowed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
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
    SavedViews,
)
from bear.ui.views.common import Toggled, button


class FilterPanel(Toggled, Viewer):
    """The sidebar: every filter of DESIGN §2.1 and a reset button.

    ``deferred``: filters whose choices are left out of the widgets made now (they hold only
    what is chosen) and given by ``fill`` later — the thousands of accounts and projects of a
    large book, sent once the page is on screen rather than in the first load. Until then
    they are disabled and say they are loading (typing into a list about to be replaced
    would be lost)."""

    def __init__(
        self,
        state: FilterState,
        options: dict[str, Any],
        deferred: tuple[str, ...] = (),
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.state = state
        self.deferred = deferred
        if deferred:  # only what is chosen (usually nothing): not a walk over 10,000 choices
            options = dict(options)
            for k in deferred:
                chosen = set(getattr(state, k) or ())
                options[k] = (
                    {label: v for label, v in options[k].items() if v in chosen} if chosen else {}
                )

        def choice(name: str, label: str, opts: Any, **kw: Any) -> pn.widgets.MultiChoice:
            return pn.widgets.MultiChoice.from_param(
                state.param[name],
                label=label,
                options=opts,
                sizing_mode="stretch_width",
                search_option_limit=40,
                description=None,
                **kw,
            )

        self.company = choice("company", "Company", labelled(options["company"]))
        self.account = choice("account", "Account", labelled(options["account"]), option_limit=300)
        self.project = choice("project", "Project", labelled(options["project"]), option_limit=300)
        for name in deferred:
            getattr(self, name).param.update(disabled=True, placeholder="loading the choices…")
        for name, label in (
            ("region", "Region"),
            ("practice", "Practice"),
            ("grp", "Group"),
            ("currency", "Currency"),
        ):
            setattr(self, name, choice(name, label, [esc(v) for v in options[name]]))
        self.date_from = pn.widgets.DatePicker.from_param(
            state.param.date_from, label="Event date from", sizing_mode="stretch_width"
        )
        self.date_to = pn.widgets.DatePicker.from_param(
            state.param.date_to, label="Event date to", sizing_mode="stretch_width"
        )
        # Amounts are typed as text and parsed here: a numeric spinner shows "NaN" once reset
        # and then drops what is typed; text shows exactly what the filter holds.
        self.min_amount = self._amount("min_amount", "Amount from")
        self.max_amount = self._amount("max_amount", "Amount to")
        self.category = choice("category", "Item category", options["category"])
        self.eligibility = pn.widgets.Select.from_param(
            state.param.eligibility,
            label="Eligibility",
            options=labelled(options["eligibility"]),
            sizing_mode="stretch_width",
            description=None,
        )
        self.search = pn.widgets.TextInput.from_param(
            state.param.search,
            label="Search",
            placeholder="event, project or account name, or event id, or document number — Enter",
            sizing_mode="stretch_width",
        )
        self.reset = button("Reset filters", "light", sizing_mode="stretch_width")
        self.reset.on_click(lambda e: state.reset())
        self.message = html_pane()
        state.param.watch(self._error, "error")
        self.layout = self._layout()

    def fill(self, options: dict[str, Any]) -> None:
        """Give the ``deferred`` filters all their choices."""
        for name in self.deferred:
            getattr(self, name).param.update(
                options=labelled(options[name]),
                disabled=False,
                placeholder="",
            )

    def _amount(self, name: str, label: str) -> pn.widgets.TextInput:
        widget = pn.widgets.TextInput(
            label=label, placeholder="any", sizing_mode="stretch_width", value=""
        )

        def typed(event: param.parameterized.Event) -> None:
            try:
                value = parse_amount(event.new)
            except ValueError:
                self.state.error = f"{label}: {event.new!r} is not an amount (e.g. 1000 or -250.50)"
                return
            self.state.error = ""
            setattr(self.state, name, value)

        def shown(event: param.parameterized.Event) -> None:
            text = "" if event.new is None else f"{event.new:g}"
            if parse_amount_or_none(widget.value) != event.new:
                widget.value = text

        widget.param.watch(typed, "value")
        self.state.param.watch(shown, name)
        return widget

    def _error(self, event: param.parameterized.Event) -> None:
        self.message.object = alert(event.new, "err") if event.new else ""

    def _layout(self) -> pn.Column:
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


def labelled(options: dict[str, Any]) -> dict[str, Any]:
    """Choices.js renders option labels as HTML: names coming from the data are escaped."""
    return {esc(k): v for k, v in options.items()}


def parse_amount(text: str | None) -> float | None:
    """An amount typed in a filter: empty is "any"; thousands separators and spaces are
    allowed; anything else that is not a finite number raises ``ValueError``."""
    cleaned = (text or "").replace(",", "").replace(" ", "").replace("\u00a0", "")
    if not cleaned:
        return None
    value = float(cleaned)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def parse_amount_or_none(text: str | None) -> float | None:
    try:
        return parse_amount(text)
    except ValueError:
        return None


class SavedViewsPanel(Toggled, Viewer):
    """Saved views in the sidebar: pick one to put it back; name the current one to save it."""

    def __init__(
        self, state: SavedViews, current_kind: Callable[[], str], on_applied: Callable[[str], None]
    ) -> None:
        super().__init__()
        self.state = state
        self._current_kind = current_kind
        self._on_applied = on_applied
        self.pick = pn.widgets.Select(
            label="Saved views", options=self._options(), sizing_mode="stretch_width"
        )
        self.view_name = pn.widgets.TextInput(
            label="Save the current filters and sort as",
            placeholder="e.g. EMEA credits over 10k",
            max_length=80,
            sizing_mode="stretch_width",
        )
        self.save = button("Save view", "default", width=110)
        self.delete = button("Delete", "light", width=80, disabled=True)
        self.message = html_pane()
        self.pick.param.watch(self._picked, "value")
        self.save.on_click(lambda e: self._save())
        self.view_name.param.watch(lambda e: self._save(), "enter_pressed")
        self.delete.on_click(lambda e: self._delete())
        state.param.watch(self._names, "names")
        state.param.watch(self._message, ["message", "ok"])
        self.layout = pn.Column(
            html_pane("<h3 style='margin:12px 0 0 0'>Saved views</h3>"),
            pn.Row(self.pick, self.delete, sizing_mode="stretch_width"),
            pn.Row(self.view_name, self.save, sizing_mode="stretch_width"),
            self.message,
            sizing_mode="stretch_width",
        )

    def _options(self) -> list[str]:
        return ["", *self.state.names]

    def _names(self, *_: Any) -> None:
        self.pick.options = self._options()

    def _message(self, *_: Any) -> None:
        text = self.state.message
        self.message.object = alert(text, "ok" if self.state.ok else "err") if text else ""

    def _picked(self, event: Any) -> None:
        self.delete.disabled = not event.new
        if event.new:
            kind = self.state.apply(event.new)
            if kind is not None:
                self._on_applied(kind)

    def _save(self) -> None:
        if self.state.save(
            self.view_name.value_input or self.view_name.value, self._current_kind()
        ):
            self.view_name.value = self.view_name.value_input = ""

    def _delete(self) -> None:
        if self.pick.value:
            self.state.delete(self.pick.value)
            self.pick.value = ""
