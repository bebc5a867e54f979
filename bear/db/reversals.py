"""Reversing posted documents, set-based: for each complete document of a reverted event, an
opposite document (a credit note for a sales invoice, a sales invoice for a credit note) with
the same lines, their unit prices and amounts negated, the same total, its own number from the
company's gap-free numbering, and ``reverses_document_id`` pointing at the original.

Everything happens inside the caller's transaction, like :mod:`bear.db.documents`: the numbers
are taken from ``document_counters`` in the very transaction that creates the documents.

The reversing document is dated today, unless today falls in a closed accounting period of
the document's company: it then takes the first day of the company's first open period after
today (the built-in rule ``revert.period_closed`` says so as a warning; with no open period
after today, ``revert.no_open_period`` blocks the revert).
"""

from __future__ import annotations

import duckdb

# Per company: whether today falls in a closed period, and the date a reversal takes (NULL
# when today's period is closed and no open period follows).
REVERSAL_DATES = """
SELECT c.id AS company_id, coalesce(cp.closed, false) AS period_closed,
       CASE WHEN coalesce(cp.closed, false) THEN op.first_open ELSE current_date END AS reversal_date
FROM companies c
LEFT JOIN accounting_periods cp
       ON cp.company_id = c.id AND current_date BETWEEN cp.start_date AND cp.end_date
LEFT JOIN (
    SELECT company_id, min(start_date) AS first_open FROM accounting_periods
    WHERE NOT closed AND start_date > current_date GROUP BY 1
) op ON op.company_id = c.id
"""

_REVERSALS_SQL = f"""
CREATE OR REPLACE TEMP TABLE _rev_docs AS
WITH src AS (
    SELECT d.*, CASE d.doc_type WHEN 'SIN' THEN 'SCN' ELSE 'SIN' END AS new_type
    FROM documents d
    WHERE d.id IN (SELECT document_id FROM {{source}}) AND d.status = 'complete'
      AND d.reverses_document_id IS NULL
), dated AS (
    SELECT src.*, coalesce(rd.reversal_date, current_date) AS new_date
    FROM src LEFT JOIN ({REVERSAL_DATES}) rd ON rd.company_id = src.company_id
), used AS (
    SELECT company_id, doc_type, max(seq) AS max_seq
    FROM documents WHERE company_id IN (SELECT company_id FROM src) GROUP BY ALL
), numbered AS (
    SELECT dated.*,
           greatest(coalesce(c.last_seq, 0), coalesce(u.max_seq, 0))
             + row_number() OVER (PARTITION BY dated.company_id, dated.new_type
                                  ORDER BY dated.billing_event_id, dated.id) AS new_seq
    FROM dated
    LEFT JOIN document_counters c ON c.company_id = dated.company_id AND c.doc_type = dated.new_type
    LEFT JOIN used u ON u.company_id = dated.company_id AND u.doc_type = dated.new_type
)
SELECT (SELECT coalesce(max(id), 0) FROM documents)
         + row_number() OVER (ORDER BY billing_event_id, id) AS id,
       new_type || lpad(new_seq::VARCHAR, 6, '0') AS number, new_type AS doc_type,
       billing_event_id, account_id, company_id, currency, total, new_date AS document_date,
       $process_run_id::BIGINT AS process_run_id, new_seq::INTEGER AS seq,
       id AS reverses_document_id, number AS reverses_number, doc_type AS reverses_type
FROM numbered
"""

_STATEMENTS = (
    "INSERT INTO documents (id, number, doc_type, billing_event_id, account_id, company_id,"
    " currency, total, document_date, process_run_id, seq, reverses_document_id, bill_cycle)"
    " SELECT id, number, doc_type, billing_event_id, account_id, company_id, currency, total,"
    " document_date, process_run_id, seq, reverses_document_id, NULL FROM _rev_docs",
    # Equal lines, negated: a credit note's lines read negative where the invoice's read
    # positive, and the other way round; the totals of both read positive.
    "INSERT INTO document_lines"
    " SELECT (SELECT coalesce(max(id), 0) FROM document_lines) + row_number() OVER (ORDER BY l.id),"
    "  r.id, l.billing_event_item_id, l.product_id, l.description, l.quantity,"
    "  -l.unit_price, -l.amount"
    " FROM document_lines l JOIN _rev_docs r ON r.reverses_document_id = l.document_id",
    "INSERT OR REPLACE INTO document_counters"
    " SELECT company_id, doc_type, max(seq) FROM _rev_docs GROUP BY ALL",
)


def create_reversals(
    cur: duckdb.DuckDBPyConnection, source: str, process_run_id: int | None
) -> tuple[int, int]:
    """Create the reversing document of every complete original document listed in table
    ``source`` (column ``document_id``), in the caller's transaction; the new documents stay
    in temp table ``_rev_docs``. The originals are left for the caller to mark ``reversed``.
    Returns (sales invoices, credit notes) created."""
    cur.execute(_REVERSALS_SQL.format(source=source), {"process_run_id": process_run_id})
    for sql in _STATEMENTS:
        cur.execute(sql)
    row = cur.execute(
        "SELECT count(*) FILTER (doc_type = 'SIN'), count(*) FILTER (doc_type = 'SCN') FROM _rev_docs"
    ).fetchall()[0]
    return int(row[0]), int(row[1])
