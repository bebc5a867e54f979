"""A test's rows, completed: every column a test does not name gets the declared test value.

``book_rows(events, items, …)`` turns the few dicts a test gives into complete rows of every
table a tiny book needs — the projects, accounts, companies and products the rows refer to
are added — with the defaults of ``bear.db.schema`` (``Column.test_value``) and the ones
that depend on other rows (an event's account, company and currency come from its project;
its summary amount is the sum of its items). ``arrow_table`` makes one Arrow table of a
table's rows, typed as the schema declares. Pure Python: nothing here opens a database.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pyarrow as pa

from bear.db.schema import table
from bear.errors import BearError

_EVENTS = table("billing_events")
_ITEMS = table("billing_event_items")
DEFAULT_DATE: dt.date = _EVENTS.column("event_date").test_value  # a Thursday: no weekend rule fires
DEFAULT_AMOUNT: Decimal = _ITEMS.column("amount").test_value

_CENTS = Decimal("0.01")
_MICROS = Decimal("0.000001")
_MONEY = pa.decimal128(18, 2)
_QTY = pa.decimal128(18, 6)
_ARROW_TYPES = {
    "int": pa.int32(),
    "bigint": pa.int64(),
    "dec2": _MONEY,
    "dec6": _QTY,
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "bool": pa.bool_(),
    "text": pa.string(),
    "currency": pa.string(),
    "category": pa.string(),
}


def _defaults(name: str, row_id: object, *derived: str) -> dict[str, Any]:
    """The schema's test values of a row of table ``name`` (``id`` included), less the
    ``derived`` columns this module computes from other rows."""
    row = table(name).test_row(row_id)
    row["id"] = row_id
    for column in derived:
        del row[column]
    return row


def arrow_schema(name: str) -> dict[str, pa.DataType]:
    """Column -> Arrow type of a declared table; the keys are also the keys a test may give."""
    return {c.name: _ARROW_TYPES[c.type] for c in table(name).columns}


_COMPANY = arrow_schema("companies")
_ACCOUNT = arrow_schema("accounts")
_PRODUCT = arrow_schema("products")
_PROJECT = arrow_schema("projects")
_PERIOD = arrow_schema("accounting_periods")
_EVENT = arrow_schema("billing_events")
_ITEM = arrow_schema("billing_event_items")
_DEFAULT_PROJECT: int = _EVENTS.column("project_id").test_value
_DEFAULT_COMPANY: int = table("accounting_periods").column("company_id").test_value
_EVENT_EXTRA = {"items", "claimed_by_run"}  # event keys that are not billing_events columns
_COMPANY_EXTRA = {"currencies"}


def _check_keys(kind: str, row: Mapping[str, Any], allowed: Iterable[str]) -> None:
    if not isinstance(row, Mapping):
        raise BearError(f"{kind}: each row must be a dict of column values, not {row!r}")
    unknown = sorted(set(row) - set(allowed))
    if unknown:
        raise BearError(
            f"{kind}: unknown column(s) {unknown}; allowed: {', '.join(sorted(allowed))}"
        )


def _date(v: Any) -> dt.date | None:
    if v is None or (isinstance(v, dt.date) and not isinstance(v, dt.datetime)):
        return v
    if isinstance(v, dt.datetime):
        return v.date()
    return dt.date.fromisoformat(str(v))


def _timestamp(v: Any) -> dt.datetime | None:
    if v is None or isinstance(v, dt.datetime):
        return v
    if isinstance(v, dt.date):
        return dt.datetime.combine(v, dt.time())
    return dt.datetime.fromisoformat(str(v))


def _decimal(v: Any, quantum: Decimal) -> Decimal | None:
    return None if v is None else _number(v, quantum)


def _number(v: Any, quantum: Decimal, what: str = "value") -> Decimal:
    """``v`` as a ``Decimal`` rounded to ``quantum``; a clear error when it is no number."""
    try:
        return Decimal(str(v)).quantize(quantum, rounding=ROUND_HALF_UP)  # as SQL round()
    except ArithmeticError:
        raise BearError(f"{what}: {v!r} is not a number") from None


def _convert(value: Any, typ: pa.DataType) -> Any:
    if typ == pa.date32():
        return _date(value)
    if pa.types.is_timestamp(typ):
        return _timestamp(value)
    if typ == _MONEY:
        return _decimal(value, _CENTS)
    if typ == _QTY:
        return _decimal(value, _MICROS)
    return value


def arrow_table(rows: Sequence[Mapping[str, Any]], name: str) -> pa.Table:
    """An Arrow table of ``rows`` (complete dicts) typed as declared table ``name``."""
    return pa.table(
        {
            column: pa.array([_convert(r[column], typ) for r in rows], type=typ)
            for column, typ in arrow_schema(name).items()
        }
    )


def _by_id(kind: str, rows: Iterable[Mapping[str, Any]] | None) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for r in rows or ():
        if not isinstance(r, Mapping) or "id" not in r:
            raise BearError(f"{kind}: each row needs an 'id', got {r!r}")
        out[int(r["id"])] = dict(r)
    return out


def book_rows(
    events: Sequence[Mapping[str, Any]],
    items: Sequence[Mapping[str, Any]] | None,
    projects: Sequence[Mapping[str, Any]] | None,
    accounts: Sequence[Mapping[str, Any]] | None,
    companies: Sequence[Mapping[str, Any]] | None,
    products: Sequence[Mapping[str, Any]] | None,
    periods: Sequence[Mapping[str, Any]] | None,
) -> dict[str, Any]:
    """Complete every row with defaults; returns the rows per table (plain dicts)."""
    for e in events:
        _check_keys("events", e, set(_EVENT) | _EVENT_EXTRA)
    for i in items or ():
        _check_keys("items", i, _ITEM)
    for p in projects or ():
        _check_keys("projects", p, _PROJECT)
    for a in accounts or ():
        _check_keys("accounts", a, _ACCOUNT)
    for c in companies or ():
        _check_keys("companies", c, set(_COMPANY) | _COMPANY_EXTRA)
    for p in products or ():
        _check_keys("products", p, _PRODUCT)
    for p in periods or ():
        _check_keys("periods", p, _PERIOD)

    # Projects: the ones given, then the ones events refer to.
    proj = {
        pid: {**_defaults("projects", pid), **p} for pid, p in _by_id("projects", projects).items()
    }
    for e in events:
        pid = int(e.get("project_id", _DEFAULT_PROJECT))
        proj.setdefault(pid, _defaults("projects", pid))

    # Events: ids, project-derived columns, flags.
    used = {int(e["id"]) for e in events if "id" in e}
    next_id = 1
    evs: list[dict[str, Any]] = []
    for e in events:
        if "id" in e:
            eid = int(e["id"])
        else:
            while next_id in used:
                next_id += 1
            eid = next_id
            used.add(eid)
        p = proj[int(e.get("project_id", _DEFAULT_PROJECT))]
        invoiced = bool(e.get("invoiced", False))
        released = bool(e.get("released", invoiced))
        evs.append(
            {
                # summary_amount, when not given, is the sum of the event's items (below).
                **_defaults("billing_events", eid, "summary_amount"),
                "project_id": p["id"],
                "account_id": p["account_id"],
                "company_id": p["company_id"],
                "currency": p["currency"],
                "released_at": dt.datetime(2026, 1, 16, 9) if released else None,
                **{k: v for k, v in e.items() if k not in _EVENT_EXTRA},
                "id": eid,
                "released": released,
                "invoiced": invoiced,
            }
        )

    # Items: an event's own "items", else top-level items naming it, else one default item.
    first = evs[0]["id"] if evs else None
    top: dict[int, list[dict[str, Any]]] = {}
    for it in items or ():
        eid = it.get("billing_event_id", first)
        if eid is None:
            raise BearError("items: there is no event for the item to belong to")
        top.setdefault(int(eid), []).append(dict(it))
    unknown_events = sorted(set(top) - {e["id"] for e in evs})
    if unknown_events:
        raise BearError(f"items: billing_event_id {unknown_events} is not among the events")
    its: list[dict[str, Any]] = []
    for e, src in zip(evs, events, strict=True):
        given = src.get("items")
        if given is not None:
            for it in given:
                _check_keys("items", it, _ITEM)
            rows = [dict(it) for it in given]
        elif e["id"] in top:
            rows = top[e["id"]]
        else:
            amount = e.get("summary_amount", DEFAULT_AMOUNT)
            rows = [{"amount": amount}]
        for k, it in enumerate(rows):
            its.append(_complete_item(it, e["id"], k))
        if "summary_amount" not in e:
            e["summary_amount"] = sum(
                (_number(i["amount"], _CENTS) for i in its if i["billing_event_id"] == e["id"]),
                Decimal("0.00"),
            )

    # Accounts, companies and products the rows refer to.
    acc = {
        aid: {**_defaults("accounts", aid), **a} for aid, a in _by_id("accounts", accounts).items()
    }
    for ref in [p["account_id"] for p in proj.values()] + [e["account_id"] for e in evs]:
        if ref is not None and int(ref) not in acc:
            acc[int(ref)] = _defaults("accounts", int(ref))
    comp = {
        cid: {**_defaults("companies", cid), "currencies": None, **c}
        for cid, c in _by_id("companies", companies).items()
    }
    refs = [p["company_id"] for p in proj.values()] + [e["company_id"] for e in evs]
    refs += [int(p.get("company_id", _DEFAULT_COMPANY)) for p in periods or ()]
    for ref in refs:
        if ref is not None and int(ref) not in comp:
            comp[int(ref)] = {**_defaults("companies", int(ref)), "currencies": None}
    pairs: set[tuple[int, str]] = set()
    for cid, c in comp.items():
        if c["currencies"] is not None:
            pairs |= {(cid, str(cur)) for cur in c["currencies"]}
        else:  # by default a company may invoice in its home currency and every one it meets
            pairs.add((cid, c["home_currency"]))
            pairs |= {
                (cid, r["currency"])
                for r in [*proj.values(), *evs]
                if r["company_id"] is not None and int(r["company_id"]) == cid
            }
    prod = {
        pid: {**_defaults("products", pid), **p} for pid, p in _by_id("products", products).items()
    }
    for it in its:
        ref = it["product_id"]
        if ref is not None and int(ref) not in prod:
            prod[int(ref)] = _defaults("products", int(ref))
    pers = []
    for p in periods or ():
        start = _date(p.get("start_date"))
        if start is None:
            raise BearError("periods: each period needs a start_date")
        nxt = (start.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
        pers.append(
            {
                **_defaults("accounting_periods", None, "id"),
                "end_date": nxt - dt.timedelta(days=1),
                **p,
                "start_date": start,
            }
        )
    return {
        "companies": list(comp.values()),
        "company_currencies": sorted(pairs),
        "accounts": list(acc.values()),
        "products": list(prod.values()),
        "projects": list(proj.values()),
        "periods": pers,
        "events": evs,
        "items": its,
        "claims": [
            (e["id"], int(src["claimed_by_run"]))
            for e, src in zip(evs, events, strict=True)
            if src.get("claimed_by_run") is not None
        ],
    }


def _complete_item(it: Mapping[str, Any], event_id: int, k: int) -> dict[str, Any]:
    """An item with every column: amount = quantity × unit price unless given."""
    iid = int(it.get("id", event_id * 1000 + k))
    qty = _number(
        it.get("quantity", _ITEMS.column("quantity").test_value), _MICROS, "items: quantity"
    )
    if "unit_price" in it:
        price = _number(it["unit_price"], _MICROS, "items: unit_price")
        amount = _number(it.get("amount", qty * price), _CENTS, "items: amount")
    else:
        amount = _number(it.get("amount", DEFAULT_AMOUNT), _CENTS, "items: amount")
        price = (amount / qty).quantize(_MICROS) if qty else Decimal("0")
    return {
        **_defaults("billing_event_items", iid),
        **it,
        "id": iid,
        "billing_event_id": event_id,
        "quantity": qty,
        "unit_price": price,
        "amount": amount,
    }
