"""Item aggregates per billing event (table ``billing_event_item_stats``), kept current.

The rules' batch view needs, for every event, its item count, amount sum, the range of its
product ids and the items that block it (no product, out of sync, on hold). Aggregating five
million items on every preview costs most of a second, so the aggregates live in a table that
each write path of items refreshes in its own transaction: the demo seed, the importer and
``bear.testing``.

A database written by something else (the ``duckdb`` module while BEAR was closed) is caught
on open: each stats row keeps ``items_hash``, the sum of a hash of every item column the
aggregates read (``CHECKSUM_COLUMNS``), and :func:`stale` compares the sum of those with the
same sum computed over ``billing_event_items``. Any difference — an item added, deleted,
moved to another event, its amount, product, hold or sync flag or description changed, a
stats row lost — rebuilds the whole table. The check reads six narrow columns of every item
(≈ 0.2 s at five million items, see the README's performance section); a rebuild costs about
as much again plus the write. Only ``source_id`` is left out of the hash: it feeds nothing
but the out-of-sync message's text, and hashing five million distinct strings would triple
the check's cost.
"""

from __future__ import annotations

import logging

import duckdb

log = logging.getLogger(__name__)

# The item columns every aggregate (and so every rule verdict and amount) derives from. A
# change to any of them changes the event's items_hash.
CHECKSUM_COLUMNS = (
    "id",
    "billing_event_id",
    "amount",
    "product_id",
    "source_changed",
    "billing_hold",
    "description",
)
_HASH = f"hash({', '.join(CHECKSUM_COLUMNS)})"

_AGGREGATE = f"""
INSERT INTO billing_event_item_stats (
    billing_event_id, item_count, item_amount_sum,
    items_without_product, first_item_without_product, first_item_without_product_desc,
    items_out_of_sync, first_item_out_of_sync, first_item_out_of_sync_source,
    items_on_hold, first_item_on_hold, first_item_on_hold_desc,
    items_hash, min_product_id, max_product_id)
SELECT billing_event_id,
       count(*)::INTEGER,
       sum(amount),
       (count(*) FILTER (product_id IS NULL))::INTEGER,
       min(id) FILTER (product_id IS NULL),
       arg_min(description, id) FILTER (product_id IS NULL),
       (count(*) FILTER (source_changed))::INTEGER,
       min(id) FILTER (source_changed),
       arg_min(source_id, id) FILTER (source_changed),
       (count(*) FILTER (billing_hold))::INTEGER,
       min(id) FILTER (billing_hold),
       arg_min(description, id) FILTER (billing_hold),
       sum({_HASH})::HUGEINT,
       min(product_id),
       max(product_id)
FROM billing_event_items
{{where}}
GROUP BY billing_event_id
ORDER BY billing_event_id
"""

# Both sums in one statement; a stats row without a hash (written before migration 003, or
# by hand) makes the table stale on its own.
_CHECK = f"""
SELECT (SELECT coalesce(sum({_HASH}), 0) FROM billing_event_items),
       (SELECT coalesce(sum(items_hash), 0) FROM billing_event_item_stats),
       (SELECT count(*) FROM billing_event_item_stats WHERE items_hash IS NULL)
"""


def refresh(tx: duckdb.DuckDBPyConnection, events: str | None = None) -> None:
    """Recompute the aggregates of the events listed by the SQL query ``events`` (one column
    of event ids), or of every event when ``events`` is None. Call it inside the transaction
    that wrote the items, so the aggregates are never seen stale."""
    if events is None:
        tx.execute("DELETE FROM billing_event_item_stats")
        tx.execute(_AGGREGATE.format(where=""))
        return
    tx.execute(
        f"CREATE OR REPLACE TEMP TABLE _stat_ids AS SELECT DISTINCT * FROM ({events}) ORDER BY 1"
    )
    tx.execute(
        "DELETE FROM billing_event_item_stats WHERE billing_event_id IN (SELECT * FROM _stat_ids)"
    )
    tx.execute(_AGGREGATE.format(where="WHERE billing_event_id IN (SELECT * FROM _stat_ids)"))
    tx.execute("DROP TABLE _stat_ids")


def stale(cur: duckdb.DuckDBPyConnection) -> bool:
    """True when the aggregates no longer derive from the items as they are: the checksum of
    the items' ``CHECKSUM_COLUMNS`` differs from the sum the stats rows recorded."""
    items, recorded, unhashed = cur.execute(_CHECK).fetchall()[0]
    return int(items) != int(recorded) or int(unhashed) > 0
