-- The item aggregates carry what proves them current and what the product check needs:
-- items_hash is the sum of hash(<the item columns the aggregates read>) over the event's
-- items, so the sum over the table must equal the same sum over billing_event_items (checked
-- when a workspace opens; any difference rebuilds the table). min/max_product_id bound the
-- event's product ids: the batch view looks at the items themselves only for events whose
-- range holds an id the products table lacks. NULL until the first rebuild, which the check
-- on open makes at once.
ALTER TABLE billing_event_item_stats ADD COLUMN items_hash HUGEINT;
ALTER TABLE billing_event_item_stats ADD COLUMN min_product_id INTEGER;
ALTER TABLE billing_event_item_stats ADD COLUMN max_product_id INTEGER;
