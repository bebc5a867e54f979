-- The domain: companies, customers, projects, billing events and their items, documents.
CREATE TABLE currencies (
    code VARCHAR PRIMARY KEY CHECK (regexp_full_match(code, '[A-Z]{3}')),
    name VARCHAR NOT NULL
);
INSERT INTO currencies VALUES
    ('USD', 'US dollar'), ('GBP', 'Pound sterling'), ('EUR', 'Euro'), ('CAD', 'Canadian dollar'),
    ('AUD', 'Australian dollar'), ('CHF', 'Swiss franc'), ('JPY', 'Japanese yen'),
    ('SEK', 'Swedish krona'), ('NOK', 'Norwegian krone'), ('DKK', 'Danish krone');

CREATE TABLE companies (
    id INTEGER PRIMARY KEY,
    name VARCHAR NOT NULL,
    home_currency VARCHAR NOT NULL CHECK (regexp_full_match(home_currency, '[A-Z]{3}'))
);

CREATE TABLE company_currencies (
    company_id INTEGER NOT NULL,
    currency VARCHAR NOT NULL CHECK (regexp_full_match(currency, '[A-Z]{3}')),
    PRIMARY KEY (company_id, currency)
);

CREATE TABLE accounting_periods (
    company_id INTEGER NOT NULL,
    start_date DATE NOT NULL,
    end_date DATE NOT NULL,
    closed BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (company_id, start_date),
    CHECK (end_date >= start_date)
);

CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
    name VARCHAR NOT NULL,
    billing_email VARCHAR,
    active BOOLEAN NOT NULL DEFAULT true
);

CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    name VARCHAR NOT NULL,
    revenue_gl VARCHAR NOT NULL
);

CREATE TABLE projects (
    id INTEGER PRIMARY KEY,
    name VARCHAR NOT NULL,
    account_id INTEGER,
    company_id INTEGER,
    region VARCHAR,
    practice VARCHAR,
    grp VARCHAR,
    currency VARCHAR NOT NULL CHECK (regexp_full_match(currency, '[A-Z]{3}')),
    billable BOOLEAN NOT NULL DEFAULT true,
    exclude_from_billing BOOLEAN NOT NULL DEFAULT false,
    active BOOLEAN NOT NULL DEFAULT true,
    billing_cap DECIMAL(18, 2) CHECK (billing_cap IS NULL OR billing_cap >= 0)
);

CREATE TABLE billing_event_batches (
    id INTEGER PRIMARY KEY,
    account_id INTEGER,
    currency VARCHAR NOT NULL,
    period VARCHAR NOT NULL
);

-- Status columns (approved, released, invoiced, ...) are deliberately left out of every
-- index: DuckDB rewrites an update of an indexed column as delete + insert.
CREATE TABLE billing_events (
    id BIGINT PRIMARY KEY,
    name VARCHAR NOT NULL,
    batch_id INTEGER,
    project_id INTEGER NOT NULL,
    account_id INTEGER,
    company_id INTEGER,
    currency VARCHAR NOT NULL CHECK (regexp_full_match(currency, '[A-Z]{3}')),
    event_date DATE NOT NULL,
    invoice_date DATE,
    summary_amount DECIMAL(18, 2) NOT NULL,
    approved BOOLEAN NOT NULL DEFAULT false,
    released BOOLEAN NOT NULL DEFAULT false,
    released_at TIMESTAMP,
    release_run_id BIGINT,
    invoiced BOOLEAN NOT NULL DEFAULT false,
    document_id BIGINT,
    CHECK (NOT invoiced OR released),
    CHECK (NOT invoiced OR document_id IS NOT NULL)
);

CREATE TABLE billing_event_items (
    id BIGINT PRIMARY KEY,
    billing_event_id BIGINT NOT NULL,
    category VARCHAR NOT NULL CHECK (category IN ('timecard', 'expense', 'milestone', 'misc_adjustment', 'budget')),
    description VARCHAR,
    quantity DECIMAL(18, 6) NOT NULL,
    unit_price DECIMAL(18, 6) NOT NULL,
    amount DECIMAL(18, 2) NOT NULL,
    product_id INTEGER,
    source_id VARCHAR,
    source_changed BOOLEAN NOT NULL DEFAULT false,
    billing_hold BOOLEAN NOT NULL DEFAULT false
);

-- Documents: one per billing event (UNIQUE), numbered per company and type without gaps.
CREATE TABLE documents (
    id BIGINT PRIMARY KEY,
    number VARCHAR NOT NULL,
    doc_type VARCHAR NOT NULL CHECK (doc_type IN ('SIN', 'SCN')),
    billing_event_id BIGINT NOT NULL UNIQUE,
    account_id INTEGER NOT NULL,
    company_id INTEGER NOT NULL,
    currency VARCHAR NOT NULL,
    total DECIMAL(18, 2) NOT NULL CHECK (total >= 0),
    document_date DATE NOT NULL,
    process_run_id BIGINT,
    seq INTEGER NOT NULL CHECK (seq >= 1),
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    UNIQUE (company_id, doc_type, seq)
);

CREATE TABLE document_lines (
    id BIGINT PRIMARY KEY,
    document_id BIGINT NOT NULL,
    billing_event_item_id BIGINT NOT NULL UNIQUE,
    product_id INTEGER NOT NULL,
    description VARCHAR,
    quantity DECIMAL(18, 6) NOT NULL,
    unit_price DECIMAL(18, 6) NOT NULL,
    amount DECIMAL(18, 2) NOT NULL
);

-- The last number given per company and document type; advanced in the same transaction
-- that creates the documents, so numbering stays gap-free whatever crashes.
CREATE TABLE document_counters (
    company_id INTEGER NOT NULL,
    doc_type VARCHAR NOT NULL CHECK (doc_type IN ('SIN', 'SCN')),
    last_seq INTEGER NOT NULL CHECK (last_seq >= 0),
    PRIMARY KEY (company_id, doc_type)
);

-- Runs: one background action requested by a user.
CREATE SEQUENCE runs_id_seq START 1;
CREATE TABLE runs (
    id BIGINT PRIMARY KEY DEFAULT nextval('runs_id_seq'),
    action VARCHAR NOT NULL CHECK (action IN ('release_and_invoice', 'release', 'invoice')),
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
    finished_at TIMESTAMP
);

-- The events a run was asked to process, in the run's deterministic order.
CREATE TABLE run_events (
    run_id BIGINT NOT NULL,
    billing_event_id BIGINT NOT NULL,
    ord INTEGER NOT NULL,
    excluded BOOLEAN NOT NULL DEFAULT false,
    batch_seq INTEGER,
    PRIMARY KEY (run_id, billing_event_id)
);

-- An event is claimed by at most one unfinished run (PRIMARY KEY); claims go when the run ends.
CREATE TABLE event_claims (
    billing_event_id BIGINT PRIMARY KEY,
    run_id BIGINT NOT NULL
);

CREATE TABLE release_batches (
    run_id BIGINT NOT NULL,
    seq INTEGER NOT NULL,
    size INTEGER NOT NULL CHECK (size >= 0),
    status VARCHAR NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'released', 'failed')),
    released INTEGER NOT NULL DEFAULT 0,
    cause VARCHAR,
    finished_at TIMESTAMP,
    PRIMARY KEY (run_id, seq)
);

CREATE SEQUENCE process_runs_id_seq START 1;
CREATE TABLE process_runs (
    id BIGINT PRIMARY KEY DEFAULT nextval('process_runs_id_seq'),
    run_id BIGINT UNIQUE,
    started_by VARCHAR NOT NULL,
    started_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    finished_at TIMESTAMP,
    status VARCHAR NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'completed', 'failed', 'cancelled')),
    processed INTEGER NOT NULL DEFAULT 0,
    succeeded INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE process_logs (
    process_run_id BIGINT NOT NULL,
    billing_event_id BIGINT NOT NULL,
    status VARCHAR NOT NULL CHECK (status IN ('OK', 'ERROR')),
    message VARCHAR NOT NULL,
    rule_id VARCHAR,
    document_id BIGINT,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (process_run_id, billing_event_id),
    CHECK ((status = 'OK') = (document_id IS NOT NULL))
);

CREATE SEQUENCE app_logs_id_seq START 1;
CREATE TABLE app_logs (
    id BIGINT PRIMARY KEY DEFAULT nextval('app_logs_id_seq'),
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    run_id BIGINT,
    batch_seq INTEGER,
    level INTEGER NOT NULL CHECK (level BETWEEN 1 AND 6),
    origin VARCHAR NOT NULL,
    record_id BIGINT,
    rule_id VARCHAR,
    message VARCHAR NOT NULL,
    detail VARCHAR
);

CREATE SEQUENCE notifications_id_seq START 1;
CREATE TABLE notifications (
    id BIGINT PRIMARY KEY DEFAULT nextval('notifications_id_seq'),
    run_id BIGINT,
    kind VARCHAR NOT NULL,
    channel VARCHAR NOT NULL,
    recipient VARCHAR,
    subject VARCHAR NOT NULL,
    body VARCHAR NOT NULL,
    body_html VARCHAR,
    payload JSON,
    status VARCHAR NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed', 'read')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error VARCHAR,
    next_attempt_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    sent_at TIMESTAMP,
    UNIQUE (run_id, kind, channel, recipient)
);

CREATE TABLE settings (
    key VARCHAR PRIMARY KEY,
    value JSON NOT NULL,
    updated_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
