"""Item aggregates per billing event (table ``billing_event_item_stats``), kept current.

The rules' batch view needs, for every event, its item count, amount sum and the items that
block it (no product, out of sync, on hold). Aggregating five million items on every preview
costs most of a second, so the aggregates live in a table that each write path of items
refreshes in its own transaction: the demo seed, the importer and ``bear.testing``.

A database written by something else is caught on open: when the table's item count differs
from ``billing_event_items``', the table is rebuilt (about half a second per million events).
Whoever changes items outside BEAR (flags included) calls :func:`refresh` or
``Workspace.refresh_item_stats()`` afterwards.
"""

from __future__ import annotations

import logging

import duckdb

log = logging.getLogger(__name__)

_AGGREGATE = """
INSERT INTO billing_event_item_stats
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
       arg_min(description, id) FILTER (billing_hold)
FROM billing_event_items
{where}
GROUP BY billing_event_id
ORDER BY billing_event_id
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
    """True when the aggregates do not account for every item (items written by others)."""
    items, counted = cur.execute(
        "SELECT (SELECT count(*) FROM billing_event_items), "
        "(SELECT coalesce(sum(item_count), 0) FROM billing_event_item_stats)"
    ).fetchall()[0]
    return int(items) != int(counted)
