-- Item aggregates per billing event, kept current by every write path of items (demo seed,
-- import, bear.testing) through bear.db.item_stats.refresh. Rules read them instead of
-- aggregating millions of items on every preview. Stored in event order, no index: a
-- refresh deletes and re-inserts the rows of the events it touches. Filled on open when its
-- item count differs from billing_event_items'.
CREATE TABLE billing_event_item_stats (
    billing_event_id BIGINT NOT NULL,
    item_count INTEGER NOT NULL,
    item_amount_sum DECIMAL(18, 2),
    items_without_product INTEGER NOT NULL,
    first_item_without_product BIGINT,
    first_item_without_product_desc VARCHAR,
    items_out_of_sync INTEGER NOT NULL,
    first_item_out_of_sync BIGINT,
    first_item_out_of_sync_source VARCHAR,
    items_on_hold INTEGER NOT NULL,
    first_item_on_hold BIGINT,
    first_item_on_hold_desc VARCHAR
);
