"""What awaits, at a glance: a selection's events by age, by customer, by currency and by
blocking reason — each one GROUP BY over the selection's condition, for the dashboard's
overview charts (and ``ws.overview``). Money stays DECIMAL, per currency: amounts of
different currencies are never added together.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pandas as pd

from bear.queries.events import Condition
from bear.queries.pager import frame

# Days since the event date: (label, first day, last day or None).
AGE_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("0–30 days", 0, 30),
    ("31–60 days", 31, 60),
    ("61–90 days", 61, 90),
    ("90+ days", 91, None),
)
OTHERS = "All other customers"
TOP_CUSTOMERS = 10


def _age_case() -> str:
    parts = [
        f"WHEN current_date - e.event_date <= {hi} THEN '{label}'"
        for label, _, hi in AGE_BUCKETS
        if hi is not None
    ]
    return f"CASE {' '.join(parts)} ELSE '{AGE_BUCKETS[-1][0]}' END"


def by_age(cur: duckdb.DuckDBPyConnection, cond: Condition) -> pd.DataFrame:
    """bucket, currency, events, amount — every bucket listed, in order, even when empty."""
    cond.register(cur)
    labels = ", ".join(f"('{label}', {i})" for i, (label, _, _) in enumerate(AGE_BUCKETS))
    sql = f"""
        WITH s AS (SELECT {_age_case()} AS bucket, e.currency, e.summary_amount
                   {cond.source("e.event_date")}),
             b(bucket, pos) AS (VALUES {labels})
        SELECT b.bucket, s.currency, count(s.bucket) AS events, sum(s.summary_amount) AS amount
        FROM b LEFT JOIN s USING (bucket) GROUP BY b.bucket, b.pos, s.currency
        ORDER BY b.pos, s.currency
    """
    return frame(cur, sql, cond.params)


def by_customer(cur: duckdb.DuckDBPyConnection, cond: Condition) -> pd.DataFrame:
    """account_id, account, currency, events, amount: the ``TOP_CUSTOMERS`` accounts with the
    most events, then every other account together (account_id NULL, ``OTHERS``)."""
    cond.register(cur)
    sql = f"""
        WITH s AS (SELECT e.account_id, e.currency, e.summary_amount {cond.source()}),
             top AS (SELECT account_id FROM s GROUP BY account_id
                     ORDER BY count(*) DESC, account_id LIMIT {TOP_CUSTOMERS}),
             g AS (SELECT CASE WHEN s.account_id IN (SELECT account_id FROM top)
                               THEN s.account_id END AS account_id,
                          s.currency, count(*) AS events, sum(s.summary_amount) AS amount
                   FROM s GROUP BY ALL)
        SELECT g.account_id, coalesce(a.name, CASE WHEN g.account_id IS NULL THEN '{OTHERS}'
               ELSE '(account ' || g.account_id || ')' END) AS account,
               g.currency, g.events, g.amount
        FROM g LEFT JOIN accounts a ON a.id = g.account_id
        ORDER BY g.account_id IS NULL, sum(g.events) OVER (PARTITION BY g.account_id) DESC,
                 g.account_id, g.currency
    """
    return frame(cur, sql, cond.params, nullable_ints=True)


def by_currency(cur: duckdb.DuckDBPyConnection, cond: Condition) -> pd.DataFrame:
    """currency, events, amount."""
    cond.register(cur)
    sql = f"""
        SELECT e.currency, count(*) AS events, sum(e.summary_amount) AS amount
        {cond.source()} GROUP BY e.currency ORDER BY e.currency
    """
    return frame(cur, sql, cond.params)


def by_reason(
    cur: duckdb.DuckDBPyConnection, cond: Condition, rules: Any, name: str = "_bear_ov_rules"
) -> pd.DataFrame:
    """rule_id, events: how many of the selection's events each blocking rule holds back
    (``rules``: the kind's Arrow table of billing_event_id, rule_id). An event held by two
    rules counts for each."""
    cond.register(cur)
    cur.register(name, rules)
    sql = f"""
        SELECT r.rule_id, count(*) AS events FROM {name} r
        WHERE r.billing_event_id IN (SELECT e.id {cond.source()})
        GROUP BY r.rule_id ORDER BY events DESC, r.rule_id
    """
    return frame(cur, sql, cond.params)
