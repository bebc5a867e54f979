"""Helpers for rule authors: build a tiny book in a few lines and run a rule on it, no app needed.

``make_workspace(events=[{"approved": False}])`` gives an in-memory workspace holding those
events, with every column a test does not name filled with a sensible, *eligible* default
(a Thursday event of 100.00 USD with one timecard item, on an active, billable project of an
active account with a billing e-mail, in a company that may invoice in that currency); the
companies, accounts, projects and products the rows refer to are created as needed.
``evaluate_rule(rule, events=[...])`` runs the real engine (``bear.rules.engine.evaluate``)
with a registry holding just that rule and returns its violations as a DataFrame.
Rows are written set-based: one Arrow table and one ``INSERT … SELECT`` per table.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from types import SimpleNamespace
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

import bear
from bear.config import SETTINGS
from bear.db import item_stats
from bear.db.documents import create_documents
from bear.db.schema import table
from bear.errors import BearError, PluginError
from bear.models import Stage
from bear.pipeline import judge
from bear.rules.engine import RegisteredRule, Registry
from bear.workspace import Workspace

__all__ = [
    "DEFAULT_DATE",
    "builtin_rule",
    "builtin_rules",
    "evaluate_rule",
    "make_workspace",
    "registry_of",
    "settings_view",
]

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


def _arrow_schema(name: str) -> dict[str, pa.DataType]:
    """Column -> Arrow type of a declared table; the keys are also the keys a test may give."""
    return {c.name: _ARROW_TYPES[c.type] for c in table(name).columns}


_COMPANY = _arrow_schema("companies")
_ACCOUNT = _arrow_schema("accounts")
_PRODUCT = _arrow_schema("products")
_PROJECT = _arrow_schema("projects")
_PERIOD = _arrow_schema("accounting_periods")
_EVENT = _arrow_schema("billing_events")
_ITEM = _arrow_schema("billing_event_items")
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


def _table(rows: Sequence[Mapping[str, Any]], schema: Mapping[str, pa.DataType]) -> pa.Table:
    """An Arrow table of ``rows`` (complete dicts) with the column types of ``schema``."""
    return pa.table(
        {
            name: pa.array([_convert(r[name], typ) for r in rows], type=typ)
            for name, typ in schema.items()
        }
    )


def _insert(cur: duckdb.DuckDBPyConnection, table: str, data: pa.Table) -> None:
    """One set-based ``INSERT … SELECT`` of a whole Arrow table."""
    if data.num_rows == 0:
        return
    cur.register("_testing_rows", data)
    try:
        cur.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _testing_rows")
    finally:
        cur.unregister("_testing_rows")


@contextlib.contextmanager
def _autoload(enabled: bool) -> Iterator[None]:
    """Keep entry-point plugins out unless asked, so a test sees only the plugins it names."""
    if enabled:
        yield
        return
    key = "BEAR_DISABLE_PLUGIN_AUTOLOAD"
    before = os.environ.get(key)
    os.environ[key] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def _by_id(kind: str, rows: Iterable[Mapping[str, Any]] | None) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for r in rows or ():
        if not isinstance(r, Mapping) or "id" not in r:
            raise BearError(f"{kind}: each row needs an 'id', got {r!r}")
        out[int(r["id"])] = dict(r)
    return out


def _book(
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


def make_workspace(
    events: Sequence[Mapping[str, Any]] = (),
    items: Sequence[Mapping[str, Any]] | None = None,
    *,
    projects: Sequence[Mapping[str, Any]] | None = None,
    accounts: Sequence[Mapping[str, Any]] | None = None,
    companies: Sequence[Mapping[str, Any]] | None = None,
    products: Sequence[Mapping[str, Any]] | None = None,
    periods: Sequence[Mapping[str, Any]] | None = None,
    plugins: Iterable[object] = (),
    settings: Mapping[str, Any] | None = None,
    path: str | os.PathLike[str] = ":memory:",
    autoload: bool = False,
) -> Workspace:
    """Open a workspace holding a tiny book built from a few dicts; close it when done.

    :param events: billing events; any ``billing_events`` column may be given (``id``,
        ``approved``, ``summary_amount``, ``invoice_date``…), plus ``items`` (that event's
        items; ``[]`` for none) and ``claimed_by_run`` (an unfinished run holding it).
        Unnamed columns default to an eligible event of project 1 dated ``DEFAULT_DATE``;
        ``summary_amount`` defaults to the sum of its items. ``invoiced=True`` without a
        ``document_id`` creates a real document for it.
    :param items: items of any event (``billing_event_id`` defaults to the first event); an
        event that has none here nor in its own ``items`` gets one timecard item of its
        summary amount (default 100.00).
    :param projects: projects by ``id``; the ones events refer to are created as needed
        (account 1, company 1, USD, billable, active, not excluded, no cap).
    :param accounts: accounts by ``id`` (default: active, with a billing e-mail).
    :param companies: companies by ``id``; ``currencies`` lists the accounting currencies
        (default: its home currency and every currency its projects and events use).
    :param products: products by ``id`` (items use product 1 unless told otherwise).
    :param periods: accounting periods (``company_id`` 1 by default, ``start_date``,
        ``end_date`` defaulting to the end of that month, ``closed``).
    :param plugins: plugin objects, as for ``bear.connect(plugins=...)``.
    :param settings: settings to apply (the rule registry is rebuilt with them).
    :param path: ``":memory:"`` or a database file.
    :param autoload: also load the entry-point plugins installed in the environment (off by
        default so a test sees only the plugins it names).
    """
    book = _book(list(events), items, projects, accounts, companies, products, periods)
    with _autoload(autoload):
        ws = bear.connect(path, plugins=plugins)
    try:
        if settings:
            ws.settings.update(**settings)  # rule settings rebuild the registry
        with ws.db.transaction() as cur:
            _insert(cur, "companies", _table(book["companies"], _COMPANY))
            pairs = book["company_currencies"]
            _insert(
                cur,
                "company_currencies",
                pa.table(
                    {
                        "company_id": pa.array([c for c, _ in pairs], pa.int32()),
                        "currency": pa.array([x for _, x in pairs], pa.string()),
                    }
                ),
            )
            _insert(cur, "accounts", _table(book["accounts"], _ACCOUNT))
            _insert(cur, "products", _table(book["products"], _PRODUCT))
            _insert(cur, "projects", _table(book["projects"], _PROJECT))
            _insert(cur, "accounting_periods", _table(book["periods"], _PERIOD))
            evs = book["events"]
            # Events invoiced without a document id get a real one (numbered like a run's).
            to_invoice = [e["id"] for e in evs if e["invoiced"] and e["document_id"] is None]
            rows = [{**e, "invoiced": e["invoiced"] and e["id"] not in to_invoice} for e in evs]
            _insert(cur, "billing_events", _table(rows, _EVENT))
            _insert(cur, "billing_event_items", _table(book["items"], _ITEM))
            item_stats.refresh(cur)
            claims = book["claims"]
            _insert(
                cur,
                "event_claims",
                pa.table(
                    {
                        "billing_event_id": pa.array([c[0] for c in claims], pa.int64()),
                        "run_id": pa.array([c[1] for c in claims], pa.int64()),
                    }
                ),
            )
            if to_invoice:
                cur.register(
                    "_testing_ids", pa.table({"billing_event_id": pa.array(to_invoice, pa.int64())})
                )
                try:
                    create_documents(cur, "_testing_ids", None)
                finally:
                    cur.unregister("_testing_ids")
        ws.refresh()
    except BaseException:
        ws.close()
        raise
    return ws


def settings_view(**overrides: Any) -> SimpleNamespace:
    """The default settings with ``overrides`` (validated), as rules' ``settings`` see them."""
    values = {name: d.default for name, d in SETTINGS.items()}
    for name, value in overrides.items():
        if name not in SETTINGS:
            raise BearError(f"unknown setting {name!r}; known settings: {', '.join(SETTINGS)}")
        values[name] = SETTINGS[name].coerce(value)
    return SimpleNamespace(**values)


def builtin_rules(**settings: Any) -> dict[str, Any]:
    """Every built-in rule by id, registered with the default settings plus ``settings``."""
    from bear.rules import builtin_invoice, builtin_release

    view = settings_view(**settings)
    rules = [
        *builtin_release.bear_register_rules(settings=view),
        *builtin_invoice.bear_register_rules(settings=view),
    ]
    return {r.id: r for r in rules}


def builtin_rule(rule_id: str, **settings: Any) -> Any:
    """One built-in rule, e.g. ``builtin_rule("invoice.too_many_lines", max_lines_per_document=2)``."""
    rules = builtin_rules(**settings)
    if rule_id not in rules:
        raise BearError(f"no built-in rule {rule_id!r}; known: {', '.join(rules)}")
    return rules[rule_id]


def registry_of(rules: Iterable[Any], plugin: str = "test") -> Registry:
    """A registry of ``rules``, checked as the plugin host checks them (ids, stage, severity)."""
    registered: list[RegisteredRule] = []
    seen: set[str] = set()
    for rule in rules:
        rr = RegisteredRule.of(rule, plugin)
        if rr.id in seen:
            raise PluginError(f"rule id {rr.id!r} is given twice")
        seen.add(rr.id)
        registered.append(rr)
    return Registry(registered)


def evaluate_rule(
    rule: Any,
    events: Sequence[Mapping[str, Any]] | None = None,
    items: Sequence[Mapping[str, Any]] | None = None,
    *,
    stage: str | None = None,
    as_released: bool = False,
    run_id: int | None = None,
    ws: Workspace | None = None,
    ids: Iterable[int] | None = None,
    raise_errors: bool = True,
    plugin: str = "test",
    **book: Any,
) -> pd.DataFrame:
    """Run ``rule`` (or a list of rules) through the real engine over a tiny book.

    :param rule: a rule object (``SqlRule`` or one with ``evaluate(batch)``), or several.
    :param events: events for ``make_workspace`` (and ``items``, plus ``projects=``,
        ``accounts=``, ``companies=``, ``products=``, ``periods=``, ``settings=`` as keywords).
    :param stage: evaluate only this stage (default: the stages of the rules given).
    :param as_released: judge the invoice stage as if the events were released, as the
        preview of Release and Invoice does.
    :param run_id: judge as this run would (its own claims do not count against it).
    :param ws: evaluate over an existing workspace instead (then give no events).
    :param ids: the events to judge (default: every event of the book).
    :param raise_errors: raise ``PluginError`` when the rule crashes, hangs or returns
        garbage, instead of returning its fail-closed violations.
    :returns: DataFrame ``billing_event_id, rule_id, severity, message``, ordered.
    """
    rules = list(rule) if isinstance(rule, list | tuple) else [rule]
    registry = registry_of(rules, plugin)
    if stage is None:
        stages = tuple(s.value for s in Stage if any(r.stage == s.value for r in registry.rules))
    else:
        try:
            stages = (Stage(stage).value,)
        except ValueError:
            raise BearError(f"stage {stage!r}: expected release or invoice") from None
    own = ws is None
    if own:
        ws = make_workspace(events or (), items, **book)
    elif events or items or book:
        raise BearError("evaluate_rule: give either ws or the rows of a book, not both")
    assert ws is not None
    try:
        cur = ws.db.cursor()
        if ids is None:
            cur.execute(
                "CREATE OR REPLACE TEMP TABLE _testing_eval_ids AS "
                "SELECT id AS billing_event_id FROM billing_events"
            )
        else:
            wanted = pa.table({"billing_event_id": pa.array(list(ids), pa.int64())})
            cur.register("_testing_wanted", wanted)
            try:
                cur.execute(
                    "CREATE OR REPLACE TEMP TABLE _testing_eval_ids AS "
                    "SELECT DISTINCT billing_event_id FROM _testing_wanted"
                )
            finally:
                cur.unregister("_testing_wanted")

        timings = judge(
            ws,
            cur,
            stages,
            "_testing_eval_ids",
            target="_testing_eval_v",
            as_released=as_released,
            run_id=run_id,
            registry=registry,
        )
        failed = [t for t in timings if t.error]
        if failed and raise_errors:
            t = failed[0]
            raise PluginError(f"rule {t.rule_id} failed: {t.error}")
        out = (
            cur.sql(
                "SELECT billing_event_id, rule_id, severity, message FROM _testing_eval_v "
                "ORDER BY billing_event_id, rule_id, message"
            )
            .to_arrow_table()
            .to_pandas()
        )
        cur.execute("DROP TABLE IF EXISTS _testing_eval_ids")
        cur.execute("DROP TABLE IF EXISTS _testing_eval_v")
        return out
    finally:
        if own:
            ws.close()
