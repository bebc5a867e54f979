"""Creating sales invoices and credit notes for a set of released events, set-based.

Shared by the invoicing stage and the demo's invoiced history. Everything happens inside the
caller's transaction, so document numbers are taken from ``document_counters`` and advanced
in the very transaction that creates the documents: numbering stays gap-free per company
and document type whatever crashes or rollbacks happen.

Two guards keep one event's data from failing everybody's documents (DESIGN §2.5.4):
:func:`check_documents` reads the real rows the insert will read and names each event whose
document the database would refuse or that would not add up, so the caller leaves it out;
and the numbering continues from the highest number a company and type already has in
``documents`` when its ``document_counters`` row is missing or behind, so a counter lost or
rolled back outside BEAR never makes a duplicate number.
"""

from __future__ import annotations

import logging

import duckdb

log = logging.getLogger(__name__)

# The events create_documents would take: released, not invoiced, not linked to a document.
_PENDING = """
    SELECT e.id, e.name, e.account_id, e.company_id, e.summary_amount
    FROM billing_events e
    JOIN {source} s ON s.billing_event_id = e.id
    WHERE e.released AND NOT e.invoiced AND e.document_id IS NULL
"""

# A document that still bills its event: an original (not a reversal), neither discarded nor
# reversed. An event has at most one; reverting it ends that document's billing.
LIVE = "d.reverses_document_id IS NULL AND d.status IN ('in_progress', 'complete')"

_CHECK_SQL = f"""
CREATE OR REPLACE TEMP TABLE {{target}} AS
WITH ev AS ({_PENDING}
), it AS (
    SELECT i.billing_event_id, i.id, i.product_id, i.amount, i.description
    FROM billing_event_items i
    WHERE i.billing_event_id BETWEEN (SELECT min(id) FROM ev) AND (SELECT max(id) FROM ev)
      AND i.billing_event_id IN (SELECT id FROM ev)
), billed AS (
    -- items already on a line of a document that still bills them: an original document
    -- neither discarded nor reversed (a reverted event's items are billable again)
    SELECT l.billing_event_item_id AS id, l.document_id
    -- (a line whose document row is gone still counts: an unknown is never a pass)
    FROM document_lines l LEFT JOIN documents d ON d.id = l.document_id
    WHERE l.billing_event_item_id IN (SELECT id FROM it) AND (d.id IS NULL OR {{live}})
), lines AS (
    SELECT it.billing_event_id,
           sum(it.amount) AS total,
           count(*) FILTER (it.product_id IS NULL) AS no_product,
           min(it.id) FILTER (it.product_id IS NULL) AS first_no_product,
           count(*) FILTER (it.product_id IS NOT NULL AND p.id IS NULL) AS gone,
           min(it.id) FILTER (it.product_id IS NOT NULL AND p.id IS NULL) AS first_gone,
           arg_min(it.product_id, it.id) FILTER (it.product_id IS NOT NULL AND p.id IS NULL) AS gone_product,
           count(b.id) AS billed,
           min(b.id) AS first_billed,
           arg_min(b.document_id, b.id) AS billed_document
    FROM it
    LEFT JOIN products p ON p.id = it.product_id
    LEFT JOIN billed b ON b.id = it.id
    GROUP BY 1
), docs AS (
    -- a document still billing the event though the event is not linked to it
    SELECT d.billing_event_id, min(d.number) AS number
    FROM documents d WHERE d.billing_event_id IN (SELECT id FROM ev) AND {{live}} GROUP BY 1
), facts AS (
    SELECT ev.*, coalesce(l.total, 0) AS items_total, l.no_product, l.first_no_product, l.gone,
           l.first_gone, l.gone_product, l.billed, l.first_billed, l.billed_document,
           a.id IS NOT NULL AS account_exists, c.id IS NOT NULL AS company_exists,
           d.number AS existing_number
    FROM ev
    LEFT JOIN lines l ON l.billing_event_id = ev.id
    LEFT JOIN accounts a ON a.id = ev.account_id
    LEFT JOIN companies c ON c.id = ev.company_id
    LEFT JOIN docs d ON d.billing_event_id = ev.id
), problems AS (
    SELECT id, 'invoice.no_account' AS rule_id,
           name || ' has no account; a document needs a customer' AS message
    FROM facts WHERE account_id IS NULL
    UNION ALL
    SELECT id, 'invoice.account_missing',
           'account ' || account_id || ' of ' || name || ' no longer exists'
    FROM facts WHERE account_id IS NOT NULL AND NOT account_exists
    UNION ALL
    SELECT id, 'invoice.no_company', name || ' has no accounting company to issue the document'
    FROM facts WHERE company_id IS NULL
    UNION ALL
    SELECT id, 'invoice.company_missing',
           'company ' || company_id || ' of ' || name || ' no longer exists'
    FROM facts WHERE company_id IS NOT NULL AND NOT company_exists
    UNION ALL
    SELECT id, 'invoice.item_without_product',
           'item ' || first_no_product || ' has no services product (' || no_product
           || ' item(s)); every document line needs one'
    FROM facts WHERE no_product > 0
    UNION ALL
    SELECT id, 'invoice.product_missing',
           'item ' || first_gone || ' refers to product ' || gone_product
           || ', which no longer exists (' || gone || ' item(s))'
    FROM facts WHERE gone > 0
    UNION ALL
    SELECT id, 'invoice.amount_mismatch',
           name || ' totals ' || summary_amount || ' but its items sum to ' || items_total
           || CASE WHEN sign(items_total) <> sign(summary_amount) AND items_total <> 0
                   THEN ' (the opposite sign: a ' || CASE WHEN summary_amount < 0
                        THEN 'credit note' ELSE 'sales invoice' END || ' cannot total below zero)'
                   ELSE '' END
           || '; recalculate the event'
    FROM facts WHERE items_total <> summary_amount
    UNION ALL
    SELECT id, 'invoice.already_invoiced',
           'document ' || existing_number || ' already exists for ' || name
           || ' though the event is not linked to it'
    FROM facts WHERE existing_number IS NOT NULL
    UNION ALL
    SELECT id, 'invoice.item_already_billed',
           'item ' || first_billed || ' is already a line of document ' || billed_document
           || ' (' || billed || ' item(s)); an item is billed once'
    FROM facts WHERE billed > 0
    UNION ALL
    SELECT id, 'invoice.total_too_large',
           name || ' totals ' || items_total || ', beyond what a document total holds'
    FROM facts WHERE abs(items_total) >= 10000000000000000
)
SELECT id AS billing_event_id, min(rule_id) AS rule_id,
       string_agg(message, '; ' ORDER BY rule_id) AS message
FROM problems GROUP BY 1 ORDER BY 1
"""


def check_documents(
    cur: duckdb.DuckDBPyConnection, source: str, target: str = "_doc_culprits"
) -> int:
    """Find, set-based, the events of ``source`` whose document cannot be created as their
    rows stand, whatever the rules said (a rule disabled, or data changed since it judged).

    ``source`` names a table or view with a ``billing_event_id`` column. Only the events
    :func:`create_documents` would take are checked (released, not invoiced, not linked).
    Reads the rows the document insert reads — the event's account and company (and that
    their rows exist), its items' products (set, and existing), amounts and ids — and flags:
    no account / company or a missing account, company or product row; an item without a
    product; items that do not add up to the summary amount (which covers a sum of the wrong
    sign, since the summary's sign picks the document type and the total must be ≥ 0); a
    document that already holds the event; an item already on another document's line; a
    total too large for the document.

    Writes temp table ``target`` (billing_event_id, rule_id, message), one row per culprit:
    ``rule_id`` is the built-in rule for the same condition where there is one
    (``invoice.item_without_product``, ``invoice.amount_mismatch``…), else
    ``invoice.item_already_billed`` or ``invoice.total_too_large``; ``message`` joins every
    problem found, for an analyst to act on. Returns the number of culprits. Runs in the
    caller's transaction and writes nothing else: the caller gives each culprit its ERROR
    process log and passes the others to :func:`create_documents` (see
    :func:`exclude_culprits`).
    """
    cur.execute(_CHECK_SQL.format(source=source, target=target, live=LIVE))
    return int(cur.execute(f"SELECT count(*) FROM {target}").fetchall()[0][0])


def exclude_culprits(cur: duckdb.DuckDBPyConnection, ok: str, bad: str) -> int:
    """Run :func:`check_documents` over temp table ``ok`` (billing_event_id), move every
    culprit out of it and into ``bad`` (billing_event_id, rule_id, message — the invoicing
    stage's table of ERROR logs). Returns the number moved."""
    n = check_documents(cur, ok, "_doc_culprits")
    if n:
        cur.execute(
            f"DELETE FROM {ok} WHERE billing_event_id IN (SELECT billing_event_id FROM _doc_culprits)"
        )
        cur.execute(
            f"INSERT INTO {bad} (billing_event_id, rule_id, message) "
            "SELECT billing_event_id, rule_id, message FROM _doc_culprits"
        )
        log.warning("%d event(s) left out of document creation by the final check", n)
    return n


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
), cycles AS (
    -- the event's billing cycle: one more than its earlier original documents (each of them
    -- discarded or reversed by a revert); UNIQUE (billing_event_id, bill_cycle)
    SELECT d.billing_event_id, count(*) AS earlier
    FROM documents d WHERE d.billing_event_id IN (SELECT billing_event_id FROM ev)
      AND d.reverses_document_id IS NULL GROUP BY 1
), used AS (
    -- the highest number each company and type already has: a counter row that is missing
    -- or behind (changed outside BEAR) continues from here, never reusing a number
    SELECT company_id, doc_type, max(seq) AS max_seq
    FROM documents WHERE company_id IN (SELECT company_id FROM ev) GROUP BY ALL
), numbered AS (
    SELECT ev.*, coalesce(s.items_total, 0) AS items_total,
           greatest(coalesce(c.last_seq, 0), coalesce(u.max_seq, 0))
             + row_number() OVER (PARTITION BY ev.company_id, ev.doc_type ORDER BY ev.billing_event_id) AS seq,
           coalesce(cy.earlier, 0) + 1 AS bill_cycle
    FROM ev
    LEFT JOIN sums s USING (billing_event_id)
    LEFT JOIN document_counters c ON c.company_id = ev.company_id AND c.doc_type = ev.doc_type
    LEFT JOIN used u ON u.company_id = ev.company_id AND u.doc_type = ev.doc_type
    LEFT JOIN cycles cy USING (billing_event_id)
)
SELECT (SELECT coalesce(max(id), 0) FROM documents)
         + row_number() OVER (ORDER BY billing_event_id) AS id,
       doc_type || lpad(seq::VARCHAR, 6, '0') AS number,
       doc_type, billing_event_id, account_id, company_id, currency,
       CASE WHEN doc_type = 'SCN' THEN -items_total ELSE items_total END::DECIMAL(18, 2) AS total,
       document_date, $process_run_id::BIGINT AS process_run_id, seq::INTEGER AS seq,
       bill_cycle::INTEGER AS bill_cycle
FROM numbered
"""

_STATEMENTS = (
    "INSERT INTO documents (id, number, doc_type, billing_event_id, account_id, company_id, currency,"
    " total, document_date, process_run_id, seq, bill_cycle)"
    " SELECT id, number, doc_type, billing_event_id, account_id, company_id, currency, total,"
    " document_date, process_run_id, seq, bill_cycle FROM _new_docs",
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


def rebuild_counters(cur: duckdb.DuckDBPyConnection) -> int:
    """Bring every ``document_counters`` row up to the highest number ``documents`` holds for
    its company and type (adding the rows that are missing); a counter ahead of the documents
    is left alone, so a number once given is never given again. Writes only when a counter is
    missing or behind (call it in a transaction). Returns the counters repaired."""
    behind = """
        SELECT d.company_id, d.doc_type, max(d.seq) AS last_seq
        FROM documents d
        LEFT JOIN document_counters c ON c.company_id = d.company_id AND c.doc_type = d.doc_type
        GROUP BY d.company_id, d.doc_type, c.last_seq
        HAVING c.last_seq IS NULL OR c.last_seq < max(d.seq)
    """
    n = int(cur.execute(f"SELECT count(*) FROM ({behind})").fetchall()[0][0])
    if n:
        cur.execute(f"INSERT OR REPLACE INTO document_counters {behind}")
        log.warning("rebuilt %d document counter(s) from the documents", n)
    return n


def create_documents(
    cur: duckdb.DuckDBPyConnection, source: str, process_run_id: int | None
) -> tuple[int, int]:
    """Create one document per released, uninvoiced event listed in table ``source``.

    ``source`` names a table or view with a ``billing_event_id`` column; it must already hold
    only events that passed the invoice rules and :func:`check_documents`. Runs in the
    caller's transaction. Numbers continue from the higher of the counter and the highest
    number already in ``documents`` for the company and type (a counter missing or behind is
    repaired by the same statement that advances it). The new documents stay in the temp
    table ``_new_docs`` for the caller. Returns (sales invoices, credit notes) created.
    """
    cur.execute(_DOCS_SQL.format(source=source), {"process_run_id": process_run_id})
    for sql in _STATEMENTS:
        cur.execute(sql)
    row = cur.execute(
        "SELECT count(*) FILTER (doc_type = 'SIN'), count(*) FILTER (doc_type = 'SCN') FROM _new_docs"
    ).fetchall()[0]
    return int(row[0]), int(row[1])
