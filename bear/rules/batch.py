"""The batch view: what a rule sees — one row per billing event with everything joined.

Built once per evaluation as a temporary table ``_batch`` on the evaluating cursor. Columns
are documented in ``COLUMNS`` (and in docs/plugins.md, checked by a test) for rule authors.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa

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
    "project_name": "project name",
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
    "account_active": "the account is active",
    "account_email": "the account's billing e-mail (NULL when missing)",
    "company_name": "company name",
    "company_home_currency": "the company's home currency",
    "company_has_currency": "the company may invoice in the event's currency",
    "period_start": "start of the accounting period holding document_date (NULL when none)",
    "period_closed": "that accounting period is closed",
    "item_count": "number of items",
    "line_count": "lines a document would have (one per item)",
    "item_amount_sum": "sum of the items' amounts (NULL without items)",
    "items_without_product": "items without a services product",
    "first_item_without_product": "id of the first such item",
    "first_item_without_product_desc": "its description",
    "items_out_of_sync": "items changed in their source record since generation",
    "first_item_out_of_sync": "id of the first such item",
    "first_item_out_of_sync_source": "its source record id",
    "items_on_hold": "items on billing hold",
    "first_item_on_hold": "id of the first such item",
    "first_item_on_hold_desc": "its description",
    "claimed_by_run": "id of another unfinished run that holds the event (NULL when free)",
}

_BATCH_SQL = """
CREATE OR REPLACE TEMP TABLE _batch AS
WITH ids AS (
    SELECT billing_event_id FROM {source}
), items AS (
    SELECT i.billing_event_id,
           count(*) AS item_count,
           sum(i.amount) AS item_amount_sum,
           count(*) FILTER (i.product_id IS NULL) AS items_without_product,
           min(i.id) FILTER (i.product_id IS NULL) AS first_item_without_product,
           count(*) FILTER (i.source_changed) AS items_out_of_sync,
           min(i.id) FILTER (i.source_changed) AS first_item_out_of_sync,
           count(*) FILTER (i.billing_hold) AS items_on_hold,
           min(i.id) FILTER (i.billing_hold) AS first_item_on_hold
    FROM billing_event_items i
    WHERE i.billing_event_id BETWEEN $lo AND $hi
      AND i.billing_event_id IN (SELECT billing_event_id FROM ids)
    GROUP BY i.billing_event_id
), proj AS (
    SELECT project_id, sum(summary_amount) AS released_total
    FROM billing_events WHERE released GROUP BY project_id
), ev AS (
    SELECT e.*, coalesce(e.invoice_date, e.event_date) AS document_date
    FROM billing_events e
    WHERE e.id BETWEEN $lo AND $hi AND e.id IN (SELECT billing_event_id FROM ids)
), pending AS (
    -- the cap rule's running total, computed narrow and only for capped projects: a window
    -- over every wide row of a million-event batch costs seconds
    SELECT e.id, sum(CASE WHEN NOT e.released AND e.summary_amount > 0
                               AND (e.approved OR NOT $require_approval)
                               AND coalesce(it.item_count, 0) > 0 AND coalesce(it.items_out_of_sync, 0) = 0
                               AND coalesce(it.items_on_hold, 0) = 0 AND p.billable
                               AND NOT p.exclude_from_billing AND p.active AND e.account_id IS NOT NULL
                               AND cl.run_id IS NULL
                          THEN e.summary_amount ELSE 0 END) OVER (
               PARTITION BY e.project_id ORDER BY e.id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
           ) AS pending_before
    FROM ev e
    JOIN projects p ON p.id = e.project_id AND p.billing_cap IS NOT NULL
    LEFT JOIN items it ON it.billing_event_id = e.id
    LEFT JOIN event_claims cl ON cl.billing_event_id = e.id AND cl.run_id IS DISTINCT FROM $run_id
)
SELECT e.id AS billing_event_id, e.name AS event_name, e.batch_id, e.project_id, e.account_id,
       e.company_id, e.currency, e.event_date, e.invoice_date, e.document_date, e.summary_amount,
       e.approved, (e.released OR $as_released) AS released, e.released_at, e.invoiced, e.document_id,
       p.name AS project_name, p.billable AS project_billable, p.exclude_from_billing AS project_excluded,
       p.active AS project_active, p.billing_cap AS project_billing_cap,
       coalesce(pr.released_total, 0)::DECIMAL(18, 2) AS project_released_total,
       coalesce(pd.pending_before, 0)::DECIMAL(18, 2) AS project_pending_before,
       p.region, p.practice, p.grp,
       a.name AS account_name, a.active AS account_active, a.billing_email AS account_email,
       c.name AS company_name, c.home_currency AS company_home_currency,
       cc.company_id IS NOT NULL AS company_has_currency,
       ap.start_date AS period_start, coalesce(ap.closed, false) AS period_closed,
       coalesce(it.item_count, 0) AS item_count, coalesce(it.item_count, 0) AS line_count,
       it.item_amount_sum,
       coalesce(it.items_without_product, 0) AS items_without_product,
       it.first_item_without_product, NULL::VARCHAR AS first_item_without_product_desc,
       coalesce(it.items_out_of_sync, 0) AS items_out_of_sync,
       it.first_item_out_of_sync, NULL::VARCHAR AS first_item_out_of_sync_source,
       coalesce(it.items_on_hold, 0) AS items_on_hold,
       it.first_item_on_hold, NULL::VARCHAR AS first_item_on_hold_desc,
       cl.run_id AS claimed_by_run
FROM ev e
JOIN projects p ON p.id = e.project_id
LEFT JOIN accounts a ON a.id = e.account_id
LEFT JOIN companies c ON c.id = e.company_id
LEFT JOIN company_currencies cc ON cc.company_id = e.company_id AND cc.currency = e.currency
LEFT JOIN accounting_periods ap
       ON ap.company_id = e.company_id AND e.document_date BETWEEN ap.start_date AND ap.end_date
LEFT JOIN items it ON it.billing_event_id = e.id
LEFT JOIN proj pr ON pr.project_id = e.project_id
LEFT JOIN pending pd ON pd.id = e.id
LEFT JOIN event_claims cl ON cl.billing_event_id = e.id AND cl.run_id IS DISTINCT FROM $run_id
"""


def build_batch(
    cur: duckdb.DuckDBPyConnection,
    source: str,
    *,
    as_released: bool = False,
    run_id: int | None = None,
    require_approval: bool = True,
) -> int:
    """(Re)build ``_batch`` on ``cur`` for the ids in table ``source``; returns its row count."""
    lo, hi = cur.execute(
        f"SELECT min(billing_event_id), max(billing_event_id) FROM {source}"
    ).fetchall()[0]
    if lo is None:
        lo, hi = 0, -1
    # Descriptions of the few items a message may name are filled in afterwards: looking them
    # up for every row (arg_min, or joins on all items) costs seconds at a million events.
    _fill = (
        "UPDATE _batch SET {col} = i.{src} FROM (SELECT id, {src} FROM billing_event_items WHERE id IN "
        "(SELECT {key} FROM _batch WHERE {key} IS NOT NULL)) i WHERE i.id = _batch.{key}"
    )
    cur.execute(
        _BATCH_SQL.format(source=source),
        {
            "lo": lo,
            "hi": hi,
            "as_released": as_released,
            "run_id": run_id,
            "require_approval": require_approval,
        },
    )
    for col, src, key in (
        ("first_item_without_product_desc", "description", "first_item_without_product"),
        ("first_item_out_of_sync_source", "source_id", "first_item_out_of_sync"),
        ("first_item_on_hold_desc", "description", "first_item_on_hold"),
    ):
        cur.execute(_fill.format(col=col, src=src, key=key))
    return int(cur.execute("SELECT count(*) FROM _batch").fetchall()[0][0])


class Batch:
    """What a Python rule's ``evaluate(batch)`` receives.

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
