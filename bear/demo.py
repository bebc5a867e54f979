"""Deterministic synthetic data of any size, generated set-based inside DuckDB.

``seed(ws, events=N, seed=S)`` fills an empty database with companies, customers, projects,
billing events and their items. Values come from ``hash(i, seed, stream)`` rather than
``random()``, which is not repeatable when DuckDB runs on several threads. A controlled share
(about 10 %) of the events is broken on purpose so that every built-in rule has victims;
which events each rule should reject is recorded in ``demo_expectations``.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from bear.db import item_stats
from bear.db.documents import create_documents
from bear.db.schema import CATEGORIES
from bear.errors import BearError

log = logging.getLogger(__name__)

ANCHOR = "2026-10-31"  # the demo book's "today": dates are relative to it, so data is repeatable

COMPANIES = [
    (1, "Acme Consulting Inc.", "USD", ["USD", "EUR", "GBP"]),
    (2, "Bright Advisory Ltd", "GBP", ["GBP", "EUR", "USD"]),
    (3, "Nordlicht Beratung GmbH", "EUR", ["EUR", "USD"]),  # cannot invoice in GBP
]

PRODUCTS = [
    (1, "Consulting services", "4000-CONS"),
    (2, "Implementation services", "4010-IMPL"),
    (3, "Training", "4020-TRN"),
    (4, "Travel expenses", "4100-TRAV"),
    (5, "Subsistence expenses", "4110-SUBS"),
    (6, "Third-party costs", "4120-3RDP"),
    (7, "Milestone billing", "4200-MILE"),
    (8, "Fixed-fee billing", "4210-FIXD"),
    (9, "Adjustments", "4300-ADJ"),
    (10, "Discounts", "4310-DISC"),
    (11, "Retainer drawdown", "4400-RET"),
    (12, "Budget billing", "4410-BUDG"),
]

# Event-level defects: per-mille buckets of hash(i, seed, 'defect'). About 7 % of events.
EVENT_DEFECTS = [
    ("not_approved", 0, 8),
    ("no_items", 8, 14),
    ("item_out_of_sync", 14, 22),
    ("item_on_hold", 22, 30),
    ("no_account", 30, 36),
    ("no_company", 36, 42),
    ("item_without_product", 42, 50),
    ("zero_total", 50, 54),
    ("amount_mismatch", 54, 62),
    ("closed_period", 62, 70),
]
# Project-level defects: project id modulo 200.
PROJECT_DEFECTS = {3: "not_billable", 5: "excluded", 7: "inactive", 9: "capped", 11: "currency"}
CAP = "2500.00"
# Share of items per category, in percent, in the order of bear.db.schema.CATEGORIES.
CATEGORY_SHARES = {
    "timecard": 45,
    "expense": 20,
    "milestone": 15,
    "misc_adjustment": 10,
    "budget": 10,
}
MAX_EVENTS = 20_000_000  # ≈ 100M items: beyond what one DuckDB file here should be asked to hold


def _params(sql: str, p: dict[str, Any]) -> dict[str, Any]:
    """Only the parameters ``sql`` uses (DuckDB refuses extra ones)."""
    return {k: v for k, v in p.items() if re.search(rf"\${k}\b", sql)}


def _run(tx: Any, sql: str, p: dict[str, Any]) -> None:
    tx.execute(sql, _params(sql, p))


def _h(expr: str, stream: str, mod: int | str) -> str:
    """SQL of a repeatable hash of ``expr`` in ``[0, mod)``; ``mod`` a number or a ``$param``."""
    return f"((hash({expr}, $seed, '{stream}') % {mod})::BIGINT)"


def _category_case(percentile: str) -> str:
    """SQL giving each item a category from ``percentile`` (0–99) by ``CATEGORY_SHARES``."""
    if tuple(CATEGORY_SHARES) != CATEGORIES or sum(CATEGORY_SHARES.values()) != 100:
        raise AssertionError("CATEGORY_SHARES must give every category a share, adding to 100")
    whens, upto = [], 0
    for category, share in list(CATEGORY_SHARES.items())[:-1]:
        upto += share
        whens.append(f"WHEN {percentile} < {upto} THEN '{category}'")
    return f"CASE {' '.join(whens)} ELSE '{CATEGORIES[-1]}' END"


def seed(
    ws: Any, events: int = 10_000, seed: int = 7, *, max_lines: int | None = None
) -> dict[str, Any]:
    """Fill an empty workspace with ``events`` deterministic demo billing events.

    :param ws: an open ``Workspace`` whose database has no billing events yet.
    :param events: number of billing events (≥ 1).
    :param seed: the same seed always gives the same data.
    :returns: counts of what was created and the seconds it took.
    """
    if not isinstance(events, int) or isinstance(events, bool) or events < 1:
        raise BearError(f"events must be a whole number ≥ 1, not {events!r}")
    if events > MAX_EVENTS:
        raise BearError(
            f"events must be at most {MAX_EVENTS:,} (about 5 items each), not {events:,}"
        )
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise BearError(f"seed must be a whole number, not {seed!r}")
    db = ws.db
    cur = db.cursor()
    if cur.execute("SELECT count(*) FROM billing_events").fetchall()[0][0]:
        raise BearError("the database already holds billing events; seed an empty database")
    max_lines = int(max_lines or ws.settings.max_lines_per_document)
    n_accounts = max(20, events // 500)
    n_projects = max(50, events // 100)
    p = {"seed": seed, "n": events, "na": n_accounts, "np": n_projects, "anchor": ANCHOR}
    started = time.perf_counter()
    with db.transaction() as tx:
        _seed_reference(tx)
        _seed_accounts_projects(tx, p)
        _seed_events(tx, p, max_lines)
        _seed_history_and_expectations(tx, p, max_lines)
        item_stats.refresh(tx)
    seconds = time.perf_counter() - started
    counts = {
        t: cur.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
        for t in ("accounts", "projects", "billing_events", "billing_event_items", "documents")
    }
    log.info("seeded %s in %.2fs", counts, seconds)
    ws.refresh()
    return {**counts, "seconds": round(seconds, 3)}


def _seed_reference(tx: Any) -> None:
    tx.execute(
        "INSERT INTO companies BY NAME "
        "SELECT unnest($i) AS id, unnest($n) AS name, unnest($c) AS home_currency",
        {
            "i": [c[0] for c in COMPANIES],
            "n": [c[1] for c in COMPANIES],
            "c": [c[2] for c in COMPANIES],
        },
    )
    pairs = [(c[0], cur) for c in COMPANIES for cur in c[3]]
    tx.execute(
        "INSERT INTO company_currencies BY NAME SELECT unnest($i) AS company_id, unnest($c) AS currency",
        {"i": [a for a, _ in pairs], "c": [b for _, b in pairs]},
    )
    tx.execute(
        "INSERT INTO products BY NAME "
        "SELECT unnest($i) AS id, unnest($n) AS name, unnest($g) AS revenue_gl",
        {
            "i": [x[0] for x in PRODUCTS],
            "n": [x[1] for x in PRODUCTS],
            "g": [x[2] for x in PRODUCTS],
        },
    )
    # Monthly periods from 30 months before the anchor to 6 after; those ending more than
    # 13 months before the anchor are closed (every demo event date is within 12 months).
    tx.execute(
        f"""
        INSERT INTO accounting_periods BY NAME
        SELECT c.id AS company_id, m::DATE AS start_date,
               (m + INTERVAL 1 MONTH - INTERVAL 1 DAY)::DATE AS end_date,
               (m + INTERVAL 1 MONTH - INTERVAL 1 DAY)::DATE < DATE '{ANCHOR}' - INTERVAL 13 MONTH
                 AS closed
        FROM companies c,
             range(date_trunc('month', DATE '{ANCHOR}') - INTERVAL 30 MONTH,
                   date_trunc('month', DATE '{ANCHOR}') + INTERVAL 7 MONTH, INTERVAL 1 MONTH) t(m)
        """
    )


def _seed_accounts_projects(tx: Any, p: dict[str, Any]) -> None:
    _run(
        tx,
        f"""
        INSERT INTO accounts BY NAME
        SELECT a AS id,
               ['Acme', 'Globex', 'Initech', 'Umbrella', 'Stark', 'Wayne', 'Wonka', 'Tyrell',
                'Cyberdyne', 'Soylent', 'Hooli', 'Vandelay', 'Massive Dynamic', 'Oscorp',
                'Gringotts', 'Monarch', 'Pied Piper', 'Dunder Mifflin', 'Blue Sun', 'Aperture']
                 [1 + {_h("a", "an1", 20)}] || ' ' ||
               ['Holdings', 'Group', 'Industries', 'Partners', 'Labs', 'Retail', 'Energy',
                'Logistics', 'Health', 'Capital'][1 + {_h("a", "an2", 10)}] || ' #' || a AS name,
               CASE WHEN a % 50 = 7 THEN NULL
                    ELSE 'billing+' || a || '@customer' || (a % 97) || '.example.com' END
                 AS billing_email,
               a % 200 <> 3 AS active
        FROM range(1, $na + 1) t(a)
        """,
        p,
    )
    _run(
        tx,
        f"""
        INSERT INTO projects BY NAME
        WITH base AS (
            SELECT pr, pr % 200 AS code,
                   CASE pr % 200 WHEN 13 THEN least(3, $na) WHEN 15 THEN least(7, $na)
                        ELSE 1 + {_h("pr", "acct", "$na")} END AS account_id,
                   1 + {_h("pr", "co", 3)} AS co, {_h("pr", "cur", 100)} AS cr
            FROM range(1, $np + 1) t(pr)
        )
        SELECT pr AS id,
               ['ERP rollout', 'Cloud migration', 'Audit support', 'Data platform', 'Tax advisory',
                'Cyber review', 'CRM upgrade', 'Process redesign', 'M&A diligence', 'Training programme']
                 [1 + {_h("pr", "pn", 10)}] || ' ' || pr AS name,
               account_id,
               CASE WHEN code = 11 THEN 3 ELSE co END AS company_id,
               CASE WHEN code = 11 THEN 'EMEA' ELSE ['Americas', 'EMEA', 'EMEA'][co] END AS region,
               ['Advisory', 'Technology', 'Tax', 'Audit', 'Operations'][1 + {_h("pr", "pr", 5)}]
                 AS practice,
               ['Group ' || chr(65 + {_h("pr", "grp", 4)}::INTEGER)][1] AS grp,
               CASE WHEN code = 11 THEN 'GBP'
                    WHEN co = 1 THEN CASE WHEN cr < 70 THEN 'USD' WHEN cr < 85 THEN 'EUR' ELSE 'GBP' END
                    WHEN co = 2 THEN CASE WHEN cr < 70 THEN 'GBP' WHEN cr < 85 THEN 'EUR' ELSE 'USD' END
                    ELSE CASE WHEN cr < 80 THEN 'EUR' ELSE 'USD' END END AS currency,
               code <> 3 AS billable, code = 5 AS exclude_from_billing, code <> 7 AS active,
               CASE WHEN code = 9 THEN {CAP}::DECIMAL(18, 2)
                    WHEN {_h("pr", "capbig", 10)} = 0 THEN 1000000000.00 END AS billing_cap
        FROM base
        """,
        p,
    )


def _seed_events(tx: Any, p: dict[str, Any], max_lines: int) -> None:
    defect_case = " ".join(
        f"WHEN d >= {lo} AND d < {hi} THEN '{name}'" for name, lo, hi in EVENT_DEFECTS
    )
    _run(
        tx,
        f"""
        CREATE OR REPLACE TEMP TABLE _demo_ev AS
        WITH raw AS (
            SELECT i, 1 + {_h("i", "proj", "$np")} AS project_id, {_h("i", "defect", 1000)} AS d,
                   {_h("i", "credit", 100)} < 5 AS credit, {_h("i", "age", 365)} AS age,
                   {_h("i", "items", 9)} AS nk
            FROM range(1, $n + 1) t(i)
        )
        SELECT i AS id, project_id,
               CASE WHEN i % 5000 = 77 THEN 'too_many_lines' ELSE CASE {defect_case} ELSE NULL END END AS defect,
               credit, age, nk
        FROM raw
        """,
        p,
    )
    _run(
        tx,
        f"""
        INSERT INTO billing_event_items BY NAME
        WITH ev AS (
            SELECT id, defect, credit,
                   CASE WHEN defect = 'too_many_lines' THEN {max_lines + 1}
                        WHEN defect = 'no_items' THEN 0 ELSE 1 + nk END AS n_items
            FROM _demo_ev
        ), it AS (
            SELECT id AS ev, defect, credit, unnest(range(n_items)) AS k FROM ev
        ), c AS (
            SELECT *, {_h("ev, k", "cat", 100)} AS cp, {_h("ev, k", "q", 1000)} AS hq,
                   {_h("ev, k", "p", 1000)} AS hp
            FROM it
        ), v AS (
            SELECT *, {_category_case("cp")} AS category
            FROM c
        ), q AS (
            SELECT *,
                   CASE WHEN defect = 'zero_total' THEN 0
                        WHEN category = 'timecard' THEN (1 + hq % 160) * 0.25
                        WHEN category = 'expense' THEN 1 + hq % 3 ELSE 1 END::DECIMAL(18, 6) AS quantity,
                   (CASE WHEN category = 'timecard' THEN 90 + hp % 261
                         WHEN category = 'expense' THEN 15 + (hp * 7) % 886 + (hp % 100) / 100.0
                         WHEN category = 'milestone' THEN 1000 + hp * 19
                         WHEN category = 'misc_adjustment' THEN 50 + hp % 451
                         ELSE 500 + hp * 4.5 END
                    * CASE WHEN credit THEN -1 ELSE 1 END)::DECIMAL(18, 6) AS unit_price
            FROM v
        )
        SELECT ev * 1000 + k AS id,
               ev AS billing_event_id,
               category,
               CASE category
                 WHEN 'timecard' THEN ['Consulting hours', 'Implementation hours', 'Workshop facilitation',
                                       'Project management', 'Training delivery'][1 + hq % 5]
                 WHEN 'expense' THEN ['Airfare', 'Hotel', 'Meals', 'Mileage', 'Software licence'][1 + hp % 5]
                 WHEN 'milestone' THEN 'Milestone ' || (1 + hq % 6) || ' achieved'
                 WHEN 'misc_adjustment' THEN ['Goodwill adjustment', 'Rate correction', 'Write-up'][1 + hp % 3]
                 ELSE 'Budget drawdown ' || (1 + hq % 12) END AS description,
               quantity, unit_price, round(quantity * unit_price, 2)::DECIMAL(18, 2) AS amount,
               CASE WHEN defect = 'item_without_product' AND k = 0 THEN NULL
                    WHEN category = 'timecard' THEN 1 + hp % 3
                    WHEN category = 'expense' THEN 4 + hp % 3
                    WHEN category = 'milestone' THEN 7 + hp % 2
                    WHEN category = 'misc_adjustment' THEN 9 + hp % 2
                    ELSE 11 + hp % 2 END AS product_id,
               upper(left(category, 2)) || '-' || (ev * 1000 + k) AS source_id,
               coalesce(defect = 'item_out_of_sync' AND k = 0, false) AS source_changed,
               coalesce(defect = 'item_on_hold' AND k = 0, false) AS billing_hold
        FROM q
        ORDER BY ev, k
        """,
        p,
    )
    tx.execute(
        """
        INSERT INTO billing_event_batches BY NAME
        SELECT row_number() OVER (ORDER BY account_id, currency, period) AS id, account_id, currency,
               period
        FROM (SELECT DISTINCT pj.account_id, pj.currency,
                     strftime(DATE '{a}' - e.age::INTEGER, '%Y-%m') AS period
              FROM _demo_ev e JOIN projects pj ON pj.id = e.project_id)
        """.replace("{a}", ANCHOR)
    )
    _run(
        tx,
        f"""
        INSERT INTO billing_events BY NAME
        WITH sums AS (
            SELECT billing_event_id AS id, sum(amount) AS s FROM billing_event_items GROUP BY ALL
        )
        SELECT e.id, 'BE-' || lpad(e.id::VARCHAR, 7, '0') AS name, b.id AS batch_id, e.project_id,
               CASE WHEN e.defect = 'no_account' THEN NULL ELSE pj.account_id END AS account_id,
               CASE WHEN e.defect = 'no_company' THEN NULL ELSE pj.company_id END AS company_id,
               pj.currency,
               DATE '{ANCHOR}' - e.age::INTEGER AS event_date,
               CASE WHEN e.defect = 'closed_period' THEN DATE '{ANCHOR}' - e.age::INTEGER - 430
                    WHEN {_h("e.id", "invd", 5)} = 0 THEN DATE '{ANCHOR}' - e.age::INTEGER + {_h("e.id", "invo", 15)}::INTEGER
                    END AS invoice_date,
               (coalesce(s.s, 0) + CASE WHEN e.defect = 'amount_mismatch' THEN 1.00
                                         ELSE 0 END
               )::DECIMAL(18, 2) AS summary_amount,
               e.defect IS DISTINCT FROM 'not_approved' AS approved
               -- released, released_at, release_run_id, invoiced, document_id: the table's
               -- defaults (bear.db.schema), i.e. awaiting release
        FROM _demo_ev e
        JOIN projects pj ON pj.id = e.project_id
        LEFT JOIN sums s ON s.id = e.id
        LEFT JOIN billing_event_batches b
          ON b.account_id = pj.account_id AND b.currency = pj.currency
         AND b.period = strftime(DATE '{ANCHOR}' - e.age::INTEGER, '%Y-%m')
        ORDER BY e.id
        """,
        p,
    )


_RELEASE_ONLY_DEFECTS = (
    "not_approved",
    "no_items",
    "item_out_of_sync",
    "item_on_hold",
    "no_account",
)


def _seed_history_and_expectations(tx: Any, p: dict[str, Any], max_lines: int) -> None:
    """Release or invoice part of the book, then record which events each rule must reject."""
    rel_defects = ", ".join(f"'{d}'" for d in _RELEASE_ONLY_DEFECTS)
    # Capped projects: the cap is about half of what their events add up to, so the later
    # events of such a project would take it over the cap.
    tx.execute(
        """
        UPDATE projects SET billing_cap = greatest(100, round(coalesce((
            SELECT sum(summary_amount) FILTER (summary_amount > 0) FROM billing_events
            WHERE project_id = projects.id), 0) * 0.5, -2))
        WHERE id % 200 = 9
        """
    )
    # Released earlier (awaiting invoice): events no release rule rejects; some of them carry
    # invoice-stage problems so the awaiting-invoice view has reasons to show.
    tx.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _demo_state AS
        SELECT e.id,
               {_h("e.id", "state", 100)} AS s,
               (e.defect IS NULL OR e.defect NOT IN ({rel_defects}))
                 AND pj.id % 200 NOT IN (3, 5, 7, 9) AS release_clean,
               e.defect IS NULL AND pj.id % 200 NOT IN (3, 5, 7, 9, 11) AND a.active AS clean
        FROM _demo_ev e JOIN projects pj ON pj.id = e.project_id
        LEFT JOIN accounts a ON a.id = pj.account_id
        """,
        {"seed": p["seed"]},
    )
    tx.execute(
        f"""
        UPDATE billing_events SET released = true,
               released_at = TIMESTAMP '{ANCHOR} 09:00:00' - INTERVAL (s.s) HOUR
        FROM _demo_state s
        WHERE billing_events.id = s.id AND s.release_clean AND s.s < 8
        """
    )
    tx.execute(
        "CREATE OR REPLACE TEMP TABLE _demo_invoiced AS "
        "SELECT id AS billing_event_id FROM _demo_state WHERE clean AND s < 4"
    )
    create_documents(tx, "_demo_invoiced", None)
    tx.execute(
        """
        CREATE TABLE IF NOT EXISTS demo_expectations (
            rule_id VARCHAR NOT NULL, billing_event_id BIGINT NOT NULL,
            PRIMARY KEY (rule_id, billing_event_id))
        """
    )
    tx.execute("DELETE FROM demo_expectations")
    by_defect = {
        "not_approved": ["release.not_approved"],
        "no_items": ["release.no_items"],
        "item_out_of_sync": ["release.item_out_of_sync"],
        "item_on_hold": ["release.item_on_hold"],
        "no_account": ["release.no_account", "invoice.no_account"],
        "no_company": ["invoice.no_company"],
        "item_without_product": ["invoice.item_without_product"],
        "amount_mismatch": ["invoice.amount_mismatch"],
        "closed_period": ["invoice.closed_period"],
        "too_many_lines": ["invoice.too_many_lines"],
    }
    pairs = [(d, r) for d, rules in by_defect.items() for r in rules]
    tx.execute(
        "INSERT INTO demo_expectations SELECT DISTINCT m.r, e.id FROM _demo_ev e "
        "JOIN (SELECT unnest($d) AS d, unnest($r) AS r) m ON m.d = e.defect",
        {"d": [a for a, _ in pairs], "r": [b for _, b in pairs]},
    )
    # Project, account and state-derived victims.
    tx.execute(
        f"""
        INSERT OR IGNORE INTO demo_expectations
        SELECT r, id FROM (
            SELECT CASE pj.id % 200 WHEN 3 THEN 'release.project_not_billable'
                                    WHEN 5 THEN 'release.project_excluded'
                                    WHEN 7 THEN 'release.project_inactive'
                                    WHEN 11 THEN 'invoice.currency_not_enabled' END AS r, e.id
            FROM billing_events e JOIN projects pj ON pj.id = e.project_id
            WHERE pj.id % 200 IN (3, 5, 7) OR (pj.id % 200 = 11 AND e.company_id IS NOT NULL)
            UNION ALL
            SELECT 'release.billing_cap_exceeded', id FROM (
                SELECT e.id, e.summary_amount, pj.billing_cap AS cap,
                       coalesce(sum(CASE WHEN d.defect IS NULL OR d.defect NOT IN ({rel_defects})
                                         THEN greatest(e.summary_amount, 0) ELSE 0 END)
                                OVER (PARTITION BY e.project_id ORDER BY e.id
                           ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
                FROM billing_events e JOIN projects pj ON pj.id = e.project_id
                JOIN _demo_ev d ON d.id = e.id
                WHERE pj.id % 200 = 9 AND NOT e.released)
            WHERE summary_amount > 0 AND before + summary_amount > cap
            UNION ALL
            SELECT 'invoice.account_inactive', e.id FROM billing_events e
            JOIN accounts a ON a.id = e.account_id WHERE NOT a.active
            UNION ALL
            SELECT 'invoice.no_billing_email', e.id FROM billing_events e
            JOIN accounts a ON a.id = e.account_id WHERE a.billing_email IS NULL
            UNION ALL
            SELECT 'invoice.zero_total', id FROM billing_events WHERE summary_amount = 0
            UNION ALL
            SELECT 'release.already_released', id FROM billing_events WHERE released
            UNION ALL
            SELECT 'invoice.already_invoiced', id FROM billing_events WHERE invoiced
        )
        """
    )
    tx.execute("DROP TABLE _demo_ev")
    tx.execute("DROP TABLE _demo_state")
    tx.execute("DROP TABLE _demo_invoiced")
