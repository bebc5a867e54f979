-- Saved views: a person's named filters and sort for one of the event grids, kept in the book
-- so they follow the person from browser to browser. ``filters`` is the JSON of the chosen
-- filters (never the person's scopes, which are applied afresh); names are unique per owner.
CREATE SEQUENCE saved_views_id_seq START 1;
CREATE TABLE saved_views (
    id BIGINT PRIMARY KEY DEFAULT nextval('saved_views_id_seq'),
    owner VARCHAR NOT NULL,
    name VARCHAR NOT NULL CHECK (length(trim(name)) BETWEEN 1 AND 80),
    kind VARCHAR NOT NULL CHECK (kind IN ('awaiting_release', 'awaiting_invoice', 'invoiced')),
    filters JSON NOT NULL DEFAULT '{}',
    sort_by VARCHAR NOT NULL DEFAULT 'id',
    descending BOOLEAN NOT NULL DEFAULT false,
    saved_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    UNIQUE (owner, name)
);
