-- Reverting billing (DESIGN §8): documents get a status and may reverse one another, an event
-- may be billed again after a revert, runs may revert, and every release, invoice and revert
-- leaves a row of history.
--
-- DuckDB cannot drop or change a constraint in place, so the tables whose constraints change
-- (documents, document_lines, runs) are rebuilt with their rows.

-- documents: billing_event_id is no longer UNIQUE (a reverted event is billed again by a new
-- document). What stays true in the database itself:
--   * an event has at most one original document per billing cycle: UNIQUE (billing_event_id,
--     bill_cycle), bill_cycle = 1 + the event's earlier original documents (NULL for a
--     reversing document);
--   * a document is reversed at most once: UNIQUE reverses_document_id;
--   * numbers stay unique and gap-free per company and type: UNIQUE (company_id, doc_type, seq).
-- Existing documents were never posted: they become in_progress.
CREATE TABLE documents_new (
    id BIGINT PRIMARY KEY,
    number VARCHAR NOT NULL,
    doc_type VARCHAR NOT NULL CHECK (doc_type IN ('SIN', 'SCN')),
    billing_event_id BIGINT NOT NULL,
    account_id INTEGER NOT NULL,
    company_id INTEGER NOT NULL,
    currency VARCHAR NOT NULL,
    total DECIMAL(18, 2) NOT NULL CHECK (total >= 0),
    document_date DATE NOT NULL,
    process_run_id BIGINT,
    seq INTEGER NOT NULL CHECK (seq >= 1),
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    status VARCHAR NOT NULL DEFAULT 'in_progress'
        CHECK (status IN ('in_progress', 'complete', 'discarded', 'reversed')),
    reverses_document_id BIGINT UNIQUE,
    bill_cycle INTEGER DEFAULT 1 CHECK (bill_cycle >= 1),
    posted_at TIMESTAMP,
    posted_by VARCHAR,
    status_changed_at TIMESTAMP,
    UNIQUE (company_id, doc_type, seq),
    UNIQUE (billing_event_id, bill_cycle),
    CHECK ((reverses_document_id IS NULL) = (bill_cycle IS NOT NULL)),
    CHECK (reverses_document_id IS NULL OR reverses_document_id <> id),
    -- a reversing document is never discarded nor reversed itself
    CHECK (reverses_document_id IS NULL OR status IN ('in_progress', 'complete'))
);
INSERT INTO documents_new (id, number, doc_type, billing_event_id, account_id, company_id,
    currency, total, document_date, process_run_id, seq, created_at, status, bill_cycle)
SELECT id, number, doc_type, billing_event_id, account_id, company_id, currency, total,
       document_date, process_run_id, seq, created_at, 'in_progress', 1
FROM documents ORDER BY id;
DROP TABLE documents;
ALTER TABLE documents_new RENAME TO documents;

-- document_lines: an item is a line of its original document, of that document's reversal,
-- and of the documents of later billing cycles; once per document.
CREATE TABLE document_lines_new (
    id BIGINT PRIMARY KEY,
    document_id BIGINT NOT NULL,
    billing_event_item_id BIGINT NOT NULL,
    product_id INTEGER NOT NULL,
    description VARCHAR,
    quantity DECIMAL(18, 6) NOT NULL,
    unit_price DECIMAL(18, 6) NOT NULL,
    amount DECIMAL(18, 2) NOT NULL,
    UNIQUE (document_id, billing_event_item_id)
);
INSERT INTO document_lines_new SELECT * FROM document_lines ORDER BY id;
DROP TABLE document_lines;
ALTER TABLE document_lines_new RENAME TO document_lines;

-- runs: a new action, its reason, and its counters.
CREATE TABLE runs_new (
    id BIGINT PRIMARY KEY DEFAULT nextval('runs_id_seq'),
    action VARCHAR NOT NULL CHECK (action IN ('release_and_invoice', 'release', 'invoice', 'revert')),
    requested_by VARCHAR NOT NULL,
    status VARCHAR NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    stage VARCHAR NOT NULL DEFAULT 'queued',
    validated BOOLEAN NOT NULL DEFAULT false,
    cancel_requested BOOLEAN NOT NULL DEFAULT false,
    selected INTEGER NOT NULL DEFAULT 0,
    excluded INTEGER NOT NULL DEFAULT 0,
    batches_total INTEGER NOT NULL DEFAULT 0,
    batches_done INTEGER NOT NULL DEFAULT 0,
    failed_batches INTEGER NOT NULL DEFAULT 0,
    released INTEGER NOT NULL DEFAULT 0,
    not_released INTEGER NOT NULL DEFAULT 0,
    invoice_total INTEGER NOT NULL DEFAULT 0,
    invoice_done INTEGER NOT NULL DEFAULT 0,
    sales_invoices INTEGER NOT NULL DEFAULT 0,
    credit_notes INTEGER NOT NULL DEFAULT 0,
    not_passed INTEGER NOT NULL DEFAULT 0,
    process_run_id BIGINT,
    settings_snapshot JSON,
    error VARCHAR,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    started_at TIMESTAMP,
    updated_at TIMESTAMP,
    release_finished_at TIMESTAMP,
    finished_at TIMESTAMP,
    reason VARCHAR,
    reverted INTEGER NOT NULL DEFAULT 0,
    discarded INTEGER NOT NULL DEFAULT 0,
    not_reverted INTEGER NOT NULL DEFAULT 0,
    CHECK (action <> 'revert' OR length(trim(coalesce(reason, ''))) > 0)
);
INSERT INTO runs_new (id, action, requested_by, status, stage, validated, cancel_requested,
    selected, excluded, batches_total, batches_done, failed_batches, released, not_released,
    invoice_total, invoice_done, sales_invoices, credit_notes, not_passed, process_run_id,
    settings_snapshot, error, created_at, started_at, updated_at, release_finished_at, finished_at)
SELECT id, action, requested_by, status, stage, validated, cancel_requested, selected, excluded,
       batches_total, batches_done, failed_batches, released, not_released, invoice_total,
       invoice_done, sales_invoices, credit_notes, not_passed, process_run_id, settings_snapshot,
       error, created_at, started_at, updated_at, release_finished_at, finished_at
FROM runs ORDER BY id;
DROP TABLE runs;
ALTER TABLE runs_new RENAME TO runs;

-- The history of every billing event: each release, invoice and revert, with its run, who,
-- when, why (a revert's reason) and the event's document before and after.
CREATE SEQUENCE billing_event_history_id_seq START 1;
CREATE TABLE billing_event_history (
    id BIGINT PRIMARY KEY DEFAULT nextval('billing_event_history_id_seq'),
    billing_event_id BIGINT NOT NULL,
    action VARCHAR NOT NULL CHECK (action IN ('release', 'invoice', 'revert')),
    run_id BIGINT,
    actor VARCHAR NOT NULL,
    happened_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    reason VARCHAR,
    document_before BIGINT,
    document_after BIGINT,
    -- for a revert: unreleased, discarded or reversed; for an invoice: the document's type
    outcome VARCHAR,
    reversing_document_id BIGINT
);
-- The releases and invoices made before this migration, as far as the book still shows them.
INSERT INTO billing_event_history (billing_event_id, action, run_id, actor, happened_at)
SELECT e.id, 'release', e.release_run_id, coalesce(r.requested_by, 'unknown'),
       coalesce(e.released_at, current_timestamp)
FROM billing_events e LEFT JOIN runs r ON r.id = e.release_run_id
WHERE e.released ORDER BY e.id;
INSERT INTO billing_event_history (billing_event_id, action, run_id, actor, happened_at, document_after, outcome)
SELECT d.billing_event_id, 'invoice', pr.run_id, coalesce(pr.started_by, 'unknown'), d.created_at,
       d.id, d.doc_type
FROM documents d LEFT JOIN process_runs pr ON pr.id = d.process_run_id ORDER BY d.id;
