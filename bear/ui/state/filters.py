"""The sidebar filters of the awaiting-release and awaiting-invoice grids (DESIGN §2.1).

``FilterState`` holds one value per filter of the core (``bear.selection.FILTERS``, the id
filters excepted), validates them into ``Filters`` and bumps ``version`` once per change so
the session's grids refresh once; ``filter_options`` asks the workspace for the choices.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

import param

from bear.errors import BearError
from bear.models import Scopes
from bear.selection import FILTERS, ID_FILTERS, Filters

if TYPE_CHECKING:
    from bear.workspace import Workspace


def filter_options(ws: Workspace) -> dict[str, Any]:
    """Choices for the filter widgets: labels (raw text from the data; views escape) → values."""
    return ws.filter_options()


class FilterState(param.Parameterized):
    """The sidebar filters of DESIGN §2.1, shared by the session's grids."""

    company = param.List(default=[], doc="company ids")
    account = param.List(default=[], doc="account ids")
    project = param.List(default=[], doc="project ids")
    region = param.List(default=[])
    practice = param.List(default=[])
    grp = param.List(default=[], doc="project group")
    currency = param.List(default=[])
    date_from = param.CalendarDate(default=None, allow_None=True)
    date_to = param.CalendarDate(default=None, allow_None=True)
    min_amount = param.Number(default=None, allow_None=True)
    max_amount = param.Number(default=None, allow_None=True)
    category = param.List(default=[])
    eligibility = param.String(default="", doc="'', 'eligible', 'ineligible' or a rule id")
    search = param.String(default="")
    error = param.String(default="", doc="why the current filters are refused, if they are")
    version = param.Integer(default=0, doc="bumped once per change of the filters")

    NAMES = tuple(f for f in FILTERS if f not in ID_FILTERS)  # the core's filters, in order

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._batch = False
        self.scope: Scopes | None = None  # the signed-in person's scopes (set by the dashboard)
        self.param.watch(self._changed, list(self.NAMES))

    def _changed(self, *events: Any) -> None:
        if not self._batch:
            self.version += 1

    def filters(self) -> Filters:
        """Validated ``Filters``; raises ``BearError`` naming the bad filter."""
        raw: dict[str, Any] = {name: getattr(self, name) for name in self.NAMES}
        for name in ("min_amount", "max_amount"):
            value = raw[name]
            if value is not None and value == value:  # NaN (value != value) means "any"
                raw[name] = Decimal(repr(float(value)))
            else:
                raw[name] = None
        return Filters.build(**raw).scoped(self.scope)

    @classmethod
    def list_names(cls) -> tuple[str, ...]:
        """The filters that take several values."""
        return tuple(n for n in cls.NAMES if isinstance(cls.param[n], param.List))

    def reset(self) -> None:
        """Every filter back to "any", its default (one refresh, not fourteen)."""
        fresh = {n: self.param[n].default for n in self.NAMES}
        fresh.update({n: [] for n in self.list_names()})  # a fresh list each, not the shared one
        self._batch = True
        try:
            self.param.update(**fresh)
        finally:
            self._batch = False
        self.version += 1

    def active(self) -> dict[str, Any]:
        """The filters that are set (for display)."""
        return {n: getattr(self, n) for n in self.NAMES if getattr(self, n) not in (None, [], "")}


class SavedViews(param.Parameterized):
    """A person's saved views: the current filters and a grid's sort under a name, stored in
    the book (``ws.save_view``), and put back with one choice."""

    names = param.List(default=[], doc="the person's saved views, by name")
    message = param.String(default="")
    ok = param.Boolean(default=True)

    def __init__(
        self, ws: Workspace, filters: FilterState, grids: dict[str, Any], user: str, **params: Any
    ) -> None:
        super().__init__(**params)
        self.ws = ws
        self.filters = filters
        self.grids = grids  # kind -> GridState
        self.user = user
        self.refresh()

    def refresh(self) -> None:
        self.names = list(self.ws.saved_views(user=self.user)["name"])

    def _say(self, message: str, ok: bool) -> None:
        self.param.update(message=message, ok=ok)

    def save(self, name: str, kind: str) -> bool:
        """Save the current filters and the sort of grid ``kind`` as ``name``."""
        grid = self.grids[kind]
        try:
            chosen = self.filters.filters().as_dict()
            self.ws.save_view(
                name,
                kind,
                chosen,
                user=self.user,
                sort=(grid.sort_by, "desc" if grid.descending else "asc"),
            )
        except BearError as exc:
            self._say(f"Not saved: {exc}", False)
            return False
        self.refresh()
        self._say(f"Saved view {name.strip()!r}.", True)
        return True

    def apply(self, name: str) -> str | None:
        """Put view ``name`` back (filters, and its grid's sort); returns its grid's kind."""
        views = self.ws.saved_views(user=self.user)
        found = views[views["name"] == name]
        if not len(found):
            self._say(f"No saved view named {name!r}.", False)
            return None
        view = found.iloc[0]
        try:
            built = Filters.build(**view["filters"]).as_dict()
        except BearError as exc:  # e.g. a rule id that no longer exists
            self._say(f"View {name!r} no longer applies: {exc}", False)
            return None
        fresh: dict[str, Any] = {n: self.filters.param[n].default for n in self.filters.NAMES}
        fresh.update({n: [] for n in self.filters.list_names()})
        for key, value in built.items():
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Decimal):
                value = float(value)
            fresh[key] = value
        self.filters._batch = True
        try:
            self.filters.param.update(**fresh)
        finally:
            self.filters._batch = False
        grid = self.grids.get(str(view["kind"]))
        if grid is not None:
            grid.param.update(sort_by=str(view["sort_by"]), descending=bool(view["descending"]))
        self.filters.version += 1
        self._say(f"View {name!r} applied.", True)
        return str(view["kind"])

    def delete(self, name: str) -> None:
        try:
            self.ws.delete_view(name, user=self.user)
        except BearError as exc:
            self._say(str(exc), False)
            return
        self.refresh()
        self._say(f"Deleted view {name!r}.", True)
