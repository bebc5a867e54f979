"""Creating sales invoices and credit notes for a set of released events, set-based.

Shared by the invoicing stage and the demo's invoiced history. Everything happens inside the
caller's transaction, so document numbers are taken from ``document_counters`` and advanced
in the very transaction that creates the documents: numbering stays gap-free per company
and document type whatever crashes or rollbacks happen.
"""

from __future__ import annotations

import duckdb

_DOCS_SQL = """
CREATE OR REPLACE TEMP TABLE _new_docs AS
WITH ev AS (
    SELECT e.id AS billing_event_id, e.account_id, e.company_id, e.currency,
           CASE WHEN e.summary_amount < 0 THEN 'SCN' ELSE 'SIN' END AS doc_type,
           coalesce(e.invoice_date, e.event_date) AS document_date
    FROM billing_events e
    JOIN {source} s ON s.billing_event_id = e.id
    WHERE e.released AND NOT e.invoiced AND e.document_id IS NULL
), sums AS (
    SELECT i.billing_event_id, sum(i.amount) AS items_total
    FROM billing_event_items i JOIN ev USING (billing_event_id)
    GROUP BY ALL
), numbered AS (
    SELECT ev.*, coalesce(s.items_total, 0) AS items_total,
           coalesce(c.last_seq, 0)
             + row_number() OVER (PARTITION BY ev.company_id, ev.doc_type ORDER BY ev.billing_event_id) AS seq
    FROM ev
    LEFT JOIN sums s USING (billing_event_id)
    LEFT JOIN document_counters c ON c.company_id = ev.company_id AND c.doc_type = ev.doc_type
)
SELECT (SELECT coalesce(max(id), 0) FROM documents)
         + row_number() OVER (ORDER BY billing_event_id) AS id,
       doc_type || lpad(seq::VARCHAR, 6, '0') AS number,
       doc_type, billing_event_id, account_id, company_id, currency,
       CASE WHEN doc_type = 'SCN' THEN -items_total ELSE items_total END::DECIMAL(18, 2) AS total,
       document_date, $process_run_id::BIGINT AS process_run_id, seq::INTEGER AS seq
FROM numbered
"""

_STATEMENTS = (
    "INSERT INTO documents (id, number, doc_type, billing_event_id, account_id, company_id, currency,"
    " total, document_date, process_run_id, seq)"
    " SELECT id, number, doc_type, billing_event_id, account_id, company_id, currency, total,"
    " document_date, process_run_id, seq FROM _new_docs",
    # Credit-note lines carry the negated unit price (and amount): the document reads positive.
    "INSERT INTO document_lines"
    " SELECT (SELECT coalesce(max(id), 0) FROM document_lines) + row_number() OVER (ORDER BY i.id),"
    "  d.id, i.id, i.product_id, i.description, i.quantity,"
    "  CASE WHEN d.doc_type = 'SCN' THEN -i.unit_price ELSE i.unit_price END,"
    "  CASE WHEN d.doc_type = 'SCN' THEN -i.amount ELSE i.amount END"
    " FROM billing_event_items i JOIN _new_docs d ON d.billing_event_id = i.billing_event_id",
    "INSERT OR REPLACE INTO document_counters"
    " SELECT company_id, doc_type, max(seq) FROM _new_docs GROUP BY ALL",
    "UPDATE billing_events SET invoiced = true, document_id = d.id FROM _new_docs d"
    " WHERE billing_events.id = d.billing_event_id AND NOT billing_events.invoiced",
)


def create_documents(
    cur: duckdb.DuckDBPyConnection, source: str, process_run_id: int | None
) -> tuple[int, int]:
    """Create one document per released, uninvoiced event listed in table ``source``.

    ``source`` names a table or view with a ``billing_event_id`` column; it must already hold
    only events that passed the invoice rules. Runs in the caller's transaction. The new
    documents stay in the temp table ``_new_docs`` for the caller. Returns (sales invoices,
    credit notes) created.
    """
    cur.execute(_DOCS_SQL.format(source=source), {"process_run_id": process_run_id})
    for sql in _STATEMENTS:
        cur.execute(sql)
    row = cur.execute(
        "SELECT count(*) FILTER (doc_type = 'SIN'), count(*) FILTER (doc_type = 'SCN') FROM _new_docs"
    ).fetchall()[0]
    return int(row[0]), int(row[1])
