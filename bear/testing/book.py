"""``make_workspace``: an open workspace holding a tiny book built from a few dicts.

The rows come complete from ``bear.testing.rows``; they are written set-based, one Arrow
table and one ``INSERT … SELECT`` per table, in one transaction, with the item aggregates
refreshed and real documents created for events given as invoiced.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import duckdb
import pyarrow as pa

import bear
from bear.db import item_stats
from bear.db.documents import create_documents
from bear.testing.rows import arrow_table, book_rows
from bear.workspace import Workspace


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
    book = book_rows(list(events), items, projects, accounts, companies, products, periods)
    with _autoload(autoload):
        ws = bear.connect(path, plugins=plugins)
    try:
        if settings:
            ws.settings.update(**settings)  # rule settings rebuild the registry
        with ws.db.transaction() as cur:
            _insert(cur, "companies", arrow_table(book["companies"], "companies"))
            pairs = [{"company_id": c, "currency": x} for c, x in book["company_currencies"]]
            _insert(cur, "company_currencies", arrow_table(pairs, "company_currencies"))
            _insert(cur, "accounts", arrow_table(book["accounts"], "accounts"))
            _insert(cur, "products", arrow_table(book["products"], "products"))
            _insert(cur, "projects", arrow_table(book["projects"], "projects"))
            _insert(cur, "accounting_periods", arrow_table(book["periods"], "accounting_periods"))
            evs = book["events"]
            # Events invoiced without a document id get a real one (numbered like a run's).
            to_invoice = [e["id"] for e in evs if e["invoiced"] and e["document_id"] is None]
            rows = [{**e, "invoiced": e["invoiced"] and e["id"] not in to_invoice} for e in evs]
            _insert(cur, "billing_events", arrow_table(rows, "billing_events"))
            _insert(cur, "billing_event_items", arrow_table(book["items"], "billing_event_items"))
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
