"""Filters of a selection (DESIGN §2.1): validated values, and the SQL conditions they stand for.

``Filters.build(**raw)`` checks every filter an analyst, a notebook or the CLI may pass and
names the bad one; ``Filters.where()`` turns the validated values into conditions over the
event query's aliases (``e``, ``p``, ``a``, ``c``), every value bound as a parameter. The
eligibility filter is not answered here: it needs the preview's verdicts, which the workspace
resolves and hands to ``bear.queries.events`` as a condition of its own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from decimal import Decimal
from typing import Any

from bear.db.schema import CATEGORIES
from bear.errors import InputError
from bear.models import Scopes
from bear.queries import bounds

__all__ = ["CATEGORIES", "FILTERS", "ID_FILTERS", "Filters"]  # CATEGORIES: bear.db.schema's

# Filters by event id: set by code (an id list, the unticked rows), not by a filter form.
ID_FILTERS = ("ids", "exclude_ids")

FILTERS = (
    "company",
    "account",
    "project",
    "region",
    "practice",
    "grp",
    "currency",
    "date_from",
    "date_to",
    "min_amount",
    "max_amount",
    "category",
    "search",
    "eligibility",
    "ids",
    "exclude_ids",
)


def _as_list(name: str, value: Any) -> list[Any]:
    if isinstance(value, str | int | Decimal) and not isinstance(value, bool):
        return [value]
    if isinstance(value, Iterable) and not isinstance(value, bytes | dict):
        out = list(value)
        if all(isinstance(v, str | int) and not isinstance(v, bool) for v in out):
            return out
    raise InputError(
        f"filter {name!r}: expected a value or a list of values, not {value!r}",
        name=name,
        value=value,
    )


def _as_ids(name: str, value: Any) -> tuple[int, ...]:
    return bounds.ids(name, _as_list(name, value), label=f"filter {name!r}", text=True)


def _as_date(name: str, value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise InputError(
            f"filter {name!r}: {value!r} is not a date (YYYY-MM-DD)", name=name, value=value
        ) from None


@dataclass(frozen=True)
class Filters:
    """Validated filters of DESIGN §2.1. Empty / None means "any"."""

    company: tuple[int, ...] = ()
    account: tuple[int, ...] = ()
    project: tuple[int, ...] = ()
    region: tuple[str, ...] = ()
    practice: tuple[str, ...] = ()
    grp: tuple[str, ...] = ()
    currency: tuple[str, ...] = ()
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    min_amount: Decimal | None = None
    max_amount: Decimal | None = None
    category: tuple[str, ...] = ()
    search: str = ""
    eligibility: str | None = None  # "eligible", "ineligible" or a rule id
    ids: tuple[int, ...] | None = None
    exclude_ids: tuple[int, ...] = ()  # e.g. the rows unticked after "select all matching"
    # Not a filter a person chooses: the events the person may see and act on (their user's
    # scopes), ANDed with everything above. Set with ``scoped``; kept by ``refine``.
    scope: Scopes | None = None

    def scoped(self, scopes: Scopes | None) -> Filters:
        """These filters limited to ``scopes`` (``None`` or unlimited scopes: unchanged)."""
        if scopes is None or scopes.unlimited:
            return self
        return replace(self, scope=scopes)

    @classmethod
    def build(cls, **raw: Any) -> Filters:
        unknown = sorted(set(raw) - set(FILTERS))
        if unknown:
            raise InputError(
                f"unknown filter {unknown[0]!r}; filters are: {', '.join(FILTERS)}",
                name=unknown[0],
            )
        kw: dict[str, Any] = {}
        for name, value in raw.items():
            if value is None or (
                isinstance(value, str | list | tuple | set) and len(value) == 0 and name != "ids"
            ):
                continue
            if name in ("company", "account", "project", *ID_FILTERS):
                kw[name] = _as_ids(name, value)
            elif name in ("region", "practice", "grp"):
                kw[name] = tuple(str(v) for v in _as_list(name, value))
            elif name == "currency":
                cur = tuple(str(v).upper() for v in _as_list(name, value))
                kw[name] = cur
            elif name in ("date_from", "date_to"):
                kw[name] = _as_date(name, value)
            elif name in ("min_amount", "max_amount"):
                kw[name] = bounds.amount(name, value, label=f"filter {name!r}")
            elif name == "category":
                cats = tuple(str(v) for v in _as_list(name, value))
                bad = [c for c in cats if c not in CATEGORIES]
                if bad:
                    raise InputError(
                        f"filter 'category': {bad[0]!r} is not one of {', '.join(CATEGORIES)}",
                        name=name,
                        value=bad[0],
                    )
                kw[name] = cats
            elif name == "search":
                if not isinstance(value, str):
                    raise InputError(
                        f"filter 'search': expected text, not {value!r}", name=name, value=value
                    )
                if len(value) > 200:
                    raise InputError("filter 'search': at most 200 characters", name=name)
                kw[name] = value.strip()
            elif name == "eligibility":
                kw[name] = str(value)
        f = cls(**kw)
        if f.date_from and f.date_to and f.date_from > f.date_to:
            raise InputError(
                f"filter dates: date_from {f.date_from} is after date_to {f.date_to}",
                name="date_from",
            )
        if f.min_amount is not None and f.max_amount is not None and f.min_amount > f.max_amount:
            raise InputError(
                f"filter amounts: min_amount {f.min_amount} is above max_amount {f.max_amount}",
                name="min_amount",
            )
        return f

    def dimensional(self, categories: bool = False) -> bool:
        """Whether these filters read only what an event shares with its project, account,
        company and currency (and the ineligible flag; with ``categories``, its items'
        categories too): the totals of such a selection can be summed from a per-project
        aggregate instead of the events (``queries.events.aggregate``)."""
        allowed = DIMENSIONAL | {"category"} if categories else DIMENSIONAL
        return all(
            getattr(self, n) == f.default for n, f in _FIELDS.items() if n not in allowed
        ) and self.eligibility in (None, "eligible", "ineligible")

    def as_dict(self) -> dict[str, Any]:
        """The filters a person chose (never the scope)."""
        return {k: v for k, v in self.__dict__.items() if k != "scope" and v not in (None, (), "")}

    def where(self) -> tuple[list[str], dict[str, Any]]:
        """SQL conditions (over aliases e, p, a, c) and their parameters."""
        cond: list[str] = []
        params: dict[str, Any] = {}
        for name, col in (
            ("company", "e.company_id"),
            ("account", "e.account_id"),
            ("project", "e.project_id"),
            ("region", "p.region"),
            ("practice", "p.practice"),
            ("grp", "p.grp"),
            ("currency", "e.currency"),
        ):
            values = getattr(self, name)
            if values:
                cond.append(f"{col} IN (SELECT unnest(${'f_' + name}))")
                params["f_" + name] = list(values)
        if self.ids is not None:
            cond.append("e.id IN (SELECT unnest($f_ids))")
            params["f_ids"] = list(self.ids)
        if self.exclude_ids:
            cond.append("e.id NOT IN (SELECT unnest($f_exclude_ids))")
            params["f_exclude_ids"] = list(self.exclude_ids)
        if self.date_from:
            cond.append("e.event_date >= $f_date_from")
            params["f_date_from"] = self.date_from
        if self.date_to:
            cond.append("e.event_date <= $f_date_to")
            params["f_date_to"] = self.date_to
        if self.min_amount is not None:
            cond.append("e.summary_amount >= $f_min_amount::DECIMAL(38, 6)")
            params["f_min_amount"] = str(self.min_amount)
        if self.max_amount is not None:
            cond.append("e.summary_amount <= $f_max_amount::DECIMAL(38, 6)")
            params["f_max_amount"] = str(self.max_amount)
        if self.category:
            cond.append(
                "e.id IN (SELECT i.billing_event_id FROM billing_event_items i "
                "WHERE i.category IN (SELECT unnest($f_category)))"
            )
            params["f_category"] = list(self.category)
        if self.search:
            # strpos, not LIKE: the text is matched literally, wildcards and quotes included.
            # The documents with that number (a few at most: a number repeats only across
            # companies and document types) are listed once, by a scalar subquery; an
            # ``IN (SELECT …)`` inside the OR made a mark join over every event, half of a
            # filtered page's time at 1M events.
            cond.append(
                "(strpos(lower(e.name), lower($f_search)) > 0 OR strpos(lower(p.name), lower($f_search)) > 0"
                " OR strpos(lower(coalesce(a.name, '')), lower($f_search)) > 0"
                " OR e.id::VARCHAR = $f_search"
                " OR list_contains((SELECT list(id) FROM documents"
                " WHERE lower(number) = lower($f_search)), e.document_id))"
            )
            params["f_search"] = self.search
        if self.scope is not None:
            for name, col in (
                ("companies", "e.company_id"),
                ("regions", "p.region"),
                ("practices", "p.practice"),
                ("groups", "p.grp"),
            ):
                values = getattr(self.scope, name)
                if values:
                    cond.append(f"{col} IN (SELECT unnest($s_{name}))")
                    params["s_" + name] = list(values)
        return cond, params


_FIELDS = {f.name: f for f in fields(Filters)}
# Filters over an event's project, account, company or currency (and the person's scope).
DIMENSIONAL = frozenset((*FILTERS[: FILTERS.index("currency") + 1], "scope", "eligibility"))
