"""The batch view: what a rule sees — one row per billing event with everything joined.

Built once per evaluation on the evaluating cursor: a temporary table ``_batch_core`` and over
it the temporary view ``_batch`` that rules read (it adds the dimension tables' names). Columns
are documented in ``COLUMNS`` (and in docs/plugins.md, checked by a test) for rule authors.

Every join is a LEFT JOIN: an event whose project, account, company or products were deleted
behind BEAR's back stays in the batch with ``*_exists`` false (and NULL in that row's columns),
so a rule judges it instead of it silently dropping out of the batch.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa

from bear.db.reversals import REVERSAL_DATES

# name -> description, in the view's column order.
COLUMNS: dict[str, str] = {
    "billing_event_id": "the event's id",
    "event_name": "the event's name, e.g. BE-0000042",
    "batch_id": "the generation batch (account × currency × period)",
    "project_id": "the event's project",
    "account_id": "the event's customer account (NULL when missing)",
    "company_id": "the accounting company (NULL when missing)",
    "currency": "ISO currency code of the event",
    "event_date": "date of the event",
    "invoice_date": "requested invoice date (NULL when none)",
    "document_date": "date a document would carry: invoice_date, else event_date",
    "summary_amount": "DECIMAL(18,2) total of the event; negative for credits",
    "approved": "the event is approved",
    "released": "released (for release-and-invoice previews the invoice stage sees true)",
    "released_at": "when it was released",
    "invoiced": "a document exists for it",
    "document_id": "its document, if any",
    "project_name": "project name (NULL when the project row is missing)",
    "project_exists": "the project row exists (false when it was deleted)",
    "project_company_id": "the project's accounting company (NULL when none or no project row)",
    "project_billable": "the project is billable",
    "project_excluded": "the project is excluded from billing",
    "project_active": "the project is active",
    "project_billing_cap": "the project's billing cap (NULL when uncapped)",
    "project_released_total": "sum of the project's events already released",
    "project_pending_before": "sum of the batch's earlier (by id) unreleased events of the same project "
    "that the other built-in release checks let through; credits count only once released",
    "region": "project region",
    "practice": "project practice",
    "grp": "project group",
    "account_name": "account name",
    "account_exists": "the account row exists (false when there is no account or it was deleted)",
    "account_active": "the account is active (NULL when the account row is missing)",
    "account_email": "the account's billing e-mail (NULL when missing)",
    "company_name": "company name",
    "company_exists": "the company row exists (false when there is no company or it was deleted)",
    "company_home_currency": "the company's home currency",
    "company_has_currency": "the company may invoice in the event's currency",
    "company_has_periods": "the company keeps accounting periods (it has at least one)",
    "period_start": "start of the accounting period holding document_date (NULL when none)",
    "period_closed": "that accounting period is closed",
    "item_count": "number of items",
    "line_count": "lines a document would have (one per item)",
    "item_amount_sum": "sum of the items' amounts (NULL without items)",
    "items_without_product": "items without a services product",
    "first_item_without_product": "id of the first such item",
    "first_item_without_product_desc": "its description",
    "items_product_missing": "items whose services product row no longer exists",
    "first_item_product_missing": "id of the first such item",
    "first_missing_product_id": "the missing product id of that item",
    "items_out_of_sync": "items changed in their source record since generation",
    "first_item_out_of_sync": "id of the first such item",
    "first_item_out_of_sync_source": "its source record id",
    "items_on_hold": "items on billing hold",
    "first_item_on_hold": "id of the first such item",
    "first_item_on_hold_desc": "its description",
    "claimed_by_run": "id of another unfinished run that holds the event (NULL when free)",
    "document_number": "number of the event's document (revert stage only; NULL otherwise)",
    "document_status": "its status: in_progress, complete, discarded or reversed (revert stage only)",
    "reversal_date": "date a reversing document would carry: today, or the first open period's "
    "start when today's period is closed (NULL when none is open; revert stage only)",
    "reversal_period_closed": "today falls in a closed accounting period of the document's "
    "company (revert stage only)",
}

# Long text columns of the small dimension tables are not copied into every row: the view
# ``_batch`` joins them onto the materialised ``_batch_core``. A rule's filter on core columns is
# pushed below those joins, so the names are looked up only for the rows that fail it.
_DIMENSIONS: dict[str, str] = {
    "project_name": "p.name",
    "region": "p.region",
    "practice": "p.practice",
    "grp": "p.grp",
    "account_name": "a.name",
    "account_email": "a.billing_email",
    "company_name": "c.name",
    "company_home_currency": "c.home_currency",
    "line_count": "b.item_count",  # one line per item
}

# Columns that hold the same value in every row but in rare batches: ``_batch_core`` has them
# only in those (they are added and filled after it is built), and the view gives this value
# otherwise. Writing them into every row of a million-event batch cost ~10 % of its build.
_RARE: dict[str, dict[str, tuple[str, str]]] = {  # group -> column -> (type, usual value)
    "products": {  # items whose product row is gone
        "items_product_missing": ("INTEGER", "0"),
        "first_item_product_missing": ("BIGINT", "NULL::BIGINT"),
        "first_missing_product_id": ("INTEGER", "NULL::INTEGER"),
    },
    "documents": {  # the revert stage's
        "document_number": ("VARCHAR", "NULL::VARCHAR"),
        "document_status": ("VARCHAR", "NULL::VARCHAR"),
        "reversal_date": ("DATE", "NULL::DATE"),
        "reversal_period_closed": ("BOOLEAN", "false"),
    },
}
_USUAL = {c: value for group in _RARE.values() for c, (_, value) in group.items()}

# The views a batch is read through (for the callers that drop its working tables).
BATCH_VIEWS = ("_batch", "_batch_rows")


def _rows_view_sql(present: set[str]) -> str:
    """The view ``_batch_rows``: every column of ``COLUMNS`` over ``_batch_core``, which holds
    the rare columns of ``present``."""

    def column(c: str) -> str:
        if c in _DIMENSIONS:
            return f"{_DIMENSIONS[c]} AS {c}"
        if c in _USUAL and c not in present:
            return f"{_USUAL[c]} AS {c}"
        return f"b.{c}"

    return (
        "CREATE OR REPLACE TEMP VIEW _batch_rows AS SELECT "
        + ", ".join(column(c) for c in COLUMNS)
        + " FROM _batch_core b LEFT JOIN projects p ON p.id = b.project_id"
        " LEFT JOIN accounts a ON a.id = b.account_id LEFT JOIN companies c ON c.id = b.company_id"
    )


def batch_view(cur: duckdb.DuckDBPyConnection, *, as_released: bool = False) -> None:
    """(Re)create the view ``_batch`` over the built batch's ``_batch_rows``; ``as_released``:
    every event reads as released (the invoice stage of a release-and-invoice judgement) — the
    view says so, rather than an ``UPDATE`` of every row of the table."""
    cur.execute(
        "CREATE OR REPLACE TEMP VIEW _batch AS SELECT "
        + ("* REPLACE (true AS released)" if as_released else "*")
        + " FROM _batch_rows"
    )


_BATCH_SQL = """
CREATE OR REPLACE TEMP TABLE _batch_core AS
WITH proj AS (
    SELECT project_id, sum(summary_amount) AS released_total
    FROM billing_events WHERE released GROUP BY project_id
), ev AS (
    -- the events with their item aggregates (kept current in billing_event_item_stats)
    SELECT e.* EXCLUDE (release_run_id), coalesce(e.invoice_date, e.event_date) AS document_date,
           s.* EXCLUDE (billing_event_id, items_hash)  -- (columns no rule reads stay out)
    FROM billing_events e
    LEFT JOIN billing_event_item_stats s
           ON s.billing_event_id = e.id AND s.billing_event_id BETWEEN $lo AND $hi
    WHERE e.id BETWEEN $lo AND $hi AND {events}
), pending AS (
    -- the cap rule's running total, computed narrow and only for capped projects: a window
    -- over every wide row of a million-event batch costs seconds
    SELECT e.id, sum(CASE WHEN NOT e.released AND e.summary_amount > 0
                               AND (e.approved OR NOT $require_approval)
                               AND coalesce(e.item_count, 0) > 0 AND coalesce(e.items_out_of_sync, 0) = 0
                               AND coalesce(e.items_on_hold, 0) = 0 AND p.billable
                               AND NOT p.exclude_from_billing AND p.active AND e.account_id IS NOT NULL
                               AND cl.run_id IS NULL
                          THEN e.summary_amount ELSE 0 END) OVER (
               PARTITION BY e.project_id ORDER BY e.id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
           ) AS pending_before
    FROM (
        -- read from the tables, not from ``ev``: a CTE read twice is materialised, a wide
        -- copy of every event of the batch
        SELECT e.id, e.project_id, e.released, e.summary_amount, e.approved, e.account_id,
               s.item_count, s.items_out_of_sync, s.items_on_hold
        FROM billing_events e
        JOIN projects p ON p.id = e.project_id AND p.billing_cap IS NOT NULL
        LEFT JOIN billing_event_item_stats s
               ON s.billing_event_id = e.id AND s.billing_event_id BETWEEN $lo AND $hi
        WHERE e.id BETWEEN $lo AND $hi AND {events}
    ) e
    JOIN projects p ON p.id = e.project_id
    LEFT JOIN event_claims cl ON cl.billing_event_id = e.id AND cl.run_id IS DISTINCT FROM $run_id
), periodic AS (
    SELECT DISTINCT company_id FROM accounting_periods
), days AS (
    -- each day of the batch's date span mapped to its period: an equality join, not a range join
    -- (the span of the events in the batch's id range, given as parameters)
    SELECT company_id, start_date, closed,
           unnest(generate_series(greatest(start_date, $first_day::DATE),
                                  least(end_date, coalesce($last_day::DATE, start_date)),
                                  INTERVAL 1 DAY))::DATE AS day
    FROM accounting_periods
)
SELECT e.id AS billing_event_id, e.name AS event_name, e.batch_id, e.project_id, e.account_id,
       e.company_id, e.currency, e.event_date, e.invoice_date, e.document_date, e.summary_amount,
       e.approved, (e.released OR $as_released) AS released, e.released_at, e.invoiced, e.document_id,
       p.id IS NOT NULL AS project_exists, p.company_id AS project_company_id,
       p.billable AS project_billable, p.exclude_from_billing AS project_excluded,
       p.active AS project_active, p.billing_cap AS project_billing_cap,
       coalesce(pr.released_total, 0)::DECIMAL(18, 2) AS project_released_total,
       coalesce(pd.pending_before, 0)::DECIMAL(18, 2) AS project_pending_before,
       a.id IS NOT NULL AS account_exists, a.active AS account_active,
       c.id IS NOT NULL AS company_exists,
       cc.company_id IS NOT NULL AS company_has_currency, hp.company_id IS NOT NULL AS company_has_periods,
       ap.start_date AS period_start, coalesce(ap.closed, false) AS period_closed,
       coalesce(e.item_count, 0) AS item_count,
       e.item_amount_sum,
       coalesce(e.items_without_product, 0) AS items_without_product,
       e.first_item_without_product, e.first_item_without_product_desc,
       coalesce(e.items_out_of_sync, 0) AS items_out_of_sync,
       e.first_item_out_of_sync, e.first_item_out_of_sync_source,
       coalesce(e.items_on_hold, 0) AS items_on_hold,
       e.first_item_on_hold, e.first_item_on_hold_desc,
       cl.run_id AS claimed_by_run,
       {product_check} AS product_check
FROM ev e
LEFT JOIN projects p ON p.id = e.project_id
LEFT JOIN accounts a ON a.id = e.account_id
LEFT JOIN companies c ON c.id = e.company_id
LEFT JOIN company_currencies cc ON cc.company_id = e.company_id AND cc.currency = e.currency
LEFT JOIN periodic hp ON hp.company_id = e.company_id
{product_joins}LEFT JOIN days ap ON ap.company_id = e.company_id AND ap.day = e.document_date
LEFT JOIN proj pr ON pr.project_id = e.project_id
LEFT JOIN pending pd ON pd.id = e.id
LEFT JOIN event_claims cl ON cl.billing_event_id = e.id AND cl.run_id IS DISTINCT FROM $run_id
"""

# Which events' items must be looked up for a missing product row. When the product ids are
# one run without holes (the usual case), an event is in doubt only if its product id range
# leaves that run: two comparisons with constants. Otherwise the products are ranked by id,
# and an event whose range [min, max] holds as many products as integers has every product.
_CHECK_DENSE = (
    "e.min_product_id IS NOT NULL AND NOT coalesce(e.min_product_id >= $product_lo "
    "AND e.max_product_id <= $product_hi, false)",
    "",
)
_CHECK_RANKED = (
    "e.min_product_id IS NOT NULL AND (pmin.id IS NULL OR pmax.id IS NULL "
    "OR pmax.rk - pmin.rk <> e.max_product_id - e.min_product_id)",
    "LEFT JOIN (SELECT id, row_number() OVER (ORDER BY id) AS rk FROM products) pmin "
    "ON pmin.id = e.min_product_id\n"
    "LEFT JOIN (SELECT id, row_number() OVER (ORDER BY id) AS rk FROM products) pmax "
    "ON pmax.id = e.max_product_id\n",
)

# The items of the events flagged ``product_check`` whose product row is gone, counted exactly.
_MISSING_PRODUCTS_SQL = """
UPDATE _batch_core b
SET items_product_missing = g.n, first_item_product_missing = g.first_item,
    first_missing_product_id = g.product_id
FROM (
    SELECT i.billing_event_id, count(*)::INTEGER AS n, min(i.id) AS first_item,
           arg_min(i.product_id, i.id) AS product_id
    FROM billing_event_items i
    WHERE i.billing_event_id IN (SELECT billing_event_id FROM _batch_core WHERE product_check)
      AND i.product_id IS NOT NULL AND i.product_id NOT IN (SELECT id FROM products)
    GROUP BY 1
) g
WHERE b.billing_event_id = g.billing_event_id
"""


# The revert stage's columns: each event's document and the date its reversal would carry.
_DOCUMENTS_SQL = f"""
UPDATE _batch_core b
SET document_number = d.number, document_status = d.status,
    reversal_date = CASE WHEN coalesce(rd.period_closed, false) THEN rd.reversal_date
                         ELSE current_date END,
    reversal_period_closed = coalesce(rd.period_closed, false)
FROM documents d
LEFT JOIN ({REVERSAL_DATES}) rd ON rd.company_id = d.company_id
WHERE d.id = b.document_id
"""


def build_batch(
    cur: duckdb.DuckDBPyConnection,
    source: str,
    *,
    as_released: bool = False,
    run_id: int | None = None,
    require_approval: bool = True,
    documents: bool = False,
    where: str | None = None,
) -> int:
    """(Re)build ``_batch`` on ``cur`` for the ids in table ``source``; returns its row count.

    ``where``: a condition on ``billing_events e`` that the caller knows selects exactly those
    ids (every event of a kind). The events are then read by the condition instead of a
    semi-join on a million ids (a third of the build at a million events); should the data
    have changed since ``source`` was filled, the two sets differ and the batch is built
    again by the ids, so it always holds exactly the events of ``source``."""
    lo, hi, p_lo, p_hi, p_n = cur.execute(
        f"SELECT (SELECT min(billing_event_id) FROM {source}), (SELECT max(billing_event_id) FROM {source}),"
        " min(id), max(id), count(*) FROM products"
    ).fetchall()[0]
    if lo is None:
        lo, hi = 0, -1
    dense = p_n == 0 or p_hi - p_lo + 1 == p_n
    check, joins = _CHECK_DENSE if dense else _CHECK_RANKED
    params = {
        "lo": lo,
        "hi": hi,
        "as_released": as_released,
        "run_id": run_id,
        "require_approval": require_approval,
    }
    if dense:
        params.update(product_lo=p_lo, product_hi=p_hi)
    params["first_day"], params["last_day"] = cur.execute(
        "SELECT min(coalesce(invoice_date, event_date)), max(coalesce(invoice_date, event_date)) "
        "FROM billing_events WHERE id BETWEEN $lo AND $hi",
        {"lo": lo, "hi": hi},
    ).fetchall()[0]

    def build(events: str) -> None:
        cur.execute(
            _BATCH_SQL.format(events=events, product_check=check, product_joins=joins), params
        )

    by_ids = f"e.id IN (SELECT billing_event_id FROM {source})"
    build(by_ids if where is None else f"({where})")
    if where is not None and _fingerprint(cur, source) != _fingerprint(cur, "_batch_core"):
        build(by_ids)
    present: set[str] = set()
    # Usually no event needs it (every product id in range exists): one cheap count.
    if cur.execute("SELECT count(*) FROM _batch_core WHERE product_check").fetchall()[0][0]:
        present |= _add_rare(cur, "products")
        cur.execute(_MISSING_PRODUCTS_SQL)
    if documents:
        present |= _add_rare(cur, "documents")
        cur.execute(_DOCUMENTS_SQL)
    cur.execute(_rows_view_sql(present))
    batch_view(cur)
    return int(cur.execute("SELECT count(*) FROM _batch_core").fetchall()[0][0])


def _add_rare(cur: duckdb.DuckDBPyConnection, group: str) -> set[str]:
    """Add the rare columns of ``group`` to ``_batch_core``, each holding its usual value;
    returns their names."""
    for c, (kind, value) in _RARE[group].items():
        cur.execute(f"ALTER TABLE _batch_core ADD COLUMN {c} {kind} DEFAULT {value}")
    return set(_RARE[group])


def _fingerprint(cur: duckdb.DuckDBPyConnection, table: str) -> tuple[Any, ...]:
    """How many ids, their sum and the XOR of their hashes: equal for the same set of ids."""
    return tuple(
        cur.execute(
            f"SELECT count(*), sum(billing_event_id), bit_xor(hash(billing_event_id)) FROM {table}"
        ).fetchall()[0]
    )


class Batch:
    """What a Python rule's ``evaluate(batch)`` receives.

    A rule with a ``columns`` attribute (names of batch columns) gets just those columns and
    ``billing_event_id``; one without gets every column.

    :ivar relation: the batch as a DuckDB relation (on a cursor of the rule's own).
    :ivar stage: ``release`` or ``invoice``.
    :ivar settings: the workspace's settings.
    """

    def __init__(
        self, con: duckdb.DuckDBPyConnection, table: pa.Table, stage: str, settings: Any
    ) -> None:
        self.con = con
        self._table = table
        self.stage = stage
        self.settings = settings
        self.relation = con.from_arrow(table)

    def arrow(self) -> pa.Table:
        """The batch as an Arrow table."""
        return self._table

    def df(self) -> Any:
        """The batch as a pandas DataFrame (DECIMAL kept as ``Decimal``)."""
        return self._table.to_pandas()

    def __len__(self) -> int:
        return self._table.num_rows

    def sql(self, query: str, **params: Any) -> duckdb.DuckDBPyRelation:
        """Run SQL in which the table name ``batch`` is this batch."""
        self.con.register("batch", self._table)
        return self.con.sql(query, params=params or None)
