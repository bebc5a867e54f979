"""The demo seed: deterministic, scales with size, realistic mix and ineligible cases."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import bear
from bear.db.schema import CATEGORIES
from bear.errors import BearError

ROOT = Path(__file__).resolve().parents[1]
DEMO_SOURCE = (ROOT / "bear" / "demo.py").read_text(encoding="utf-8")
DEMO_RULE_IDS = sorted(set(re.findall(r"['\"]((?:release|invoice)\.[a-z_]+)['\"]", DEMO_SOURCE)))
VOLATILE = {"created_at", "updated_at", "applied_at"}
N_BIG = 20_000


@pytest.fixture(scope="module")
def big():
    """A 20,000-event demo book (seed 7), read only; judged by the built-in rules only (rule
    plugins installed in the environment, such as the example package, are not loaded)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BEAR_DISABLE_PLUGIN_AUTOLOAD", "1")
        w = bear.connect(":memory:", resume=False)
    assert set(w.rules()["plugin"]) <= {"builtin_release", "builtin_invoice", "builtin_revert"}
    info = bear.demo.seed(w, events=N_BIG, seed=7)
    w.seed_info = info
    yield w
    w.close()


def _seeded(events: int, seed: int):
    w = bear.connect(":memory:", resume=False)
    bear.demo.seed(w, events=events, seed=seed)
    return w


def one(ws, sql, **params):
    return ws.sql(sql, **params).iloc[0, 0]


# -- determinism -----------------------------------------------------------------------------
def test_same_seed_same_data_different_seed_different_data(checksums):
    a, b, c = _seeded(1_500, 7), _seeded(1_500, 7), _seeded(1_500, 8)
    try:
        sa, sb, sc = (checksums(w, VOLATILE) for w in (a, b, c))
        assert sa == sb
        for table in ("billing_events", "billing_event_items", "projects", "demo_expectations"):
            assert sa[table][0] > 0, table
        for table in ("billing_events", "billing_event_items", "projects"):
            assert sa[table] != sc[table], table
        # Same seed, same page shown to a user.
        assert a.awaiting_release().page(0, 20).equals(b.awaiting_release().page(0, 20))
    finally:
        for w in (a, b, c):
            w.close()


def test_seed_returns_counts(big):
    info = big.seed_info
    assert info["billing_events"] == N_BIG
    for table in ("accounts", "projects", "billing_events", "billing_event_items", "documents"):
        assert info[table] == one(big, f"SELECT count(*) FROM {table}"), table
    assert info["seconds"] >= 0
    temps = big.sql("SELECT table_name FROM duckdb_tables() WHERE temporary")
    assert not any(t.startswith("_demo") for t in temps["table_name"]), "temp tables left behind"


# -- size and shape --------------------------------------------------------------------------
def test_size_scales_accounts_and_projects(big):
    small = _seeded(1_000, 7)
    try:
        n_small = (
            one(small, "SELECT count(*) FROM accounts"),
            one(small, "SELECT count(*) FROM projects"),
        )
    finally:
        small.close()
    accounts = one(big, "SELECT count(*) FROM accounts")
    projects = one(big, "SELECT count(*) FROM projects")
    assert 400 <= N_BIG / accounts <= 600, accounts  # about one customer per 500 events
    assert 80 <= N_BIG / projects <= 120, projects  # about one project per 100 events
    # small books keep enough customers and projects for variety (and every project defect)
    assert n_small[0] >= 10 and n_small[1] >= 20, n_small
    assert accounts > n_small[0] and projects > n_small[1]
    # every event belongs to a project of its account
    assert (
        one(
            big,
            "SELECT count(*) FROM billing_events e LEFT JOIN projects p ON p.id = e.project_id "
            "WHERE p.id IS NULL",
        )
        == 0
    )


def test_companies_and_currencies(big):
    companies = big.sql("SELECT id, home_currency FROM companies")
    assert len(companies) >= 3
    cc = big.sql("SELECT company_id, currency FROM company_currencies")
    per_company = cc.groupby("company_id")["currency"].apply(set).to_dict()
    assert {"USD", "GBP", "EUR"} <= set(cc["currency"])
    assert any("GBP" not in cur for cur in per_company.values()), per_company
    for cid, home in zip(companies["id"], companies["home_currency"], strict=True):
        assert home in per_company[cid]
    used = set(big.sql("SELECT DISTINCT currency FROM billing_events")["currency"])
    assert {"USD", "GBP", "EUR"} <= used
    # a company that cannot invoice in GBP still has GBP events (invoice.currency_not_enabled)
    assert (
        one(
            big,
            "SELECT count(*) FROM billing_events e WHERE e.company_id IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM company_currencies c WHERE c.company_id = e.company_id AND c.currency = e.currency)",
        )
        > 0
    )


def test_credit_events_are_about_five_percent(big):
    share = one(big, "SELECT avg((summary_amount < 0)::INTEGER) FROM billing_events")
    assert 0.03 <= share <= 0.08, share
    # credit events carry negative items
    bad = one(
        big,
        "SELECT count(*) FROM billing_events e WHERE e.summary_amount < 0 AND EXISTS "
        "(SELECT 1 FROM billing_event_items i WHERE i.billing_event_id = e.id AND i.amount > 0)",
    )
    assert bad == 0


def test_about_five_items_per_event_in_five_categories(big):
    per_event = one(
        big, "SELECT count(*) / count(DISTINCT billing_event_id) FROM billing_event_items"
    )
    assert 4.0 <= per_event <= 6.0, per_event
    cats = set(big.sql("SELECT DISTINCT category FROM billing_event_items")["category"])
    assert cats == set(CATEGORIES)
    # money stays exact: every item amount has at most two decimals and is quantity × price
    assert (
        one(
            big,
            "SELECT count(*) FROM billing_event_items WHERE amount <> round(quantity * unit_price, 2)",
        )
        == 0
    )


def test_periods_and_caps(big):
    closed = one(big, "SELECT count(*) FROM accounting_periods WHERE closed")
    opened = one(big, "SELECT count(*) FROM accounting_periods WHERE NOT closed")
    assert closed > 0 and opened > 0
    assert one(big, "SELECT count(*) FROM projects WHERE billing_cap IS NOT NULL") > 0
    # every event date falls inside a period of its company
    assert (
        one(
            big,
            "SELECT count(*) FROM billing_events e WHERE e.company_id IS NOT NULL AND NOT EXISTS ("
            "SELECT 1 FROM accounting_periods ap WHERE ap.company_id = e.company_id "
            "AND e.event_date BETWEEN ap.start_date AND ap.end_date)",
        )
        == 0
    )


def test_share_of_ineligible_awaiting_events(big):
    pv = big.preview(big.awaiting_release())
    assert pv.validated
    assert pv.selected == len(big.awaiting_release()) > 0.8 * N_BIG
    share = pv.ineligible / pv.selected
    assert 0.08 <= share <= 0.15, share


# -- expectations ----------------------------------------------------------------------------
def test_demo_rule_ids_are_registered_rules(big):
    assert len(DEMO_RULE_IDS) >= 15, DEMO_RULE_IDS
    registered = set(big.rules()["id"])
    assert set(DEMO_RULE_IDS) <= registered, set(DEMO_RULE_IDS) - registered


@pytest.mark.parametrize("rule_id", DEMO_RULE_IDS)
def test_every_demo_rule_has_victims(big, rule_id):
    n = one(big, "SELECT count(*) FROM demo_expectations WHERE rule_id = $r", r=rule_id)
    assert n > 0, f"{rule_id} has no expected victims in a {N_BIG:,}-event demo book"


# What makes an event a victim of each rule, checked on the raw data (independent of the rules).
VICTIM_PREDICATES = {
    "release.not_approved": "NOT e.approved",
    "release.no_items": "NOT EXISTS (SELECT 1 FROM billing_event_items i WHERE i.billing_event_id = e.id)",
    "release.item_out_of_sync": "EXISTS (SELECT 1 FROM billing_event_items i WHERE i.billing_event_id = e.id AND i.source_changed)",
    "release.item_on_hold": "EXISTS (SELECT 1 FROM billing_event_items i WHERE i.billing_event_id = e.id AND i.billing_hold)",
    "release.no_account": "e.account_id IS NULL",
    "invoice.no_account": "e.account_id IS NULL",
    "invoice.no_company": "e.company_id IS NULL",
    "invoice.item_without_product": "EXISTS (SELECT 1 FROM billing_event_items i WHERE i.billing_event_id = e.id AND i.product_id IS NULL)",
    "invoice.amount_mismatch": "e.summary_amount <> (SELECT coalesce(sum(i.amount), 0) FROM billing_event_items i WHERE i.billing_event_id = e.id)",
    "invoice.too_many_lines": "(SELECT count(*) FROM billing_event_items i WHERE i.billing_event_id = e.id) > 500",
    "release.project_not_billable": "NOT p.billable",
    "release.project_excluded": "p.exclude_from_billing",
    "release.project_inactive": "NOT p.active",
    "release.billing_cap_exceeded": "p.billing_cap IS NOT NULL AND e.summary_amount > 0",
    "invoice.currency_not_enabled": "e.company_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM company_currencies c WHERE c.company_id = e.company_id AND c.currency = e.currency)",
    "invoice.account_inactive": "NOT a.active",
    "invoice.no_billing_email": "a.billing_email IS NULL",
    "invoice.zero_total": "e.summary_amount = 0",
    "release.already_released": "e.released",
    "invoice.already_invoiced": "e.invoiced AND e.document_id IS NOT NULL",
    "invoice.closed_period": "EXISTS (SELECT 1 FROM accounting_periods ap WHERE ap.company_id = e.company_id "
    "AND coalesce(e.invoice_date, e.event_date) BETWEEN ap.start_date AND ap.end_date AND ap.closed)",
}


@pytest.mark.parametrize(
    "rule_id",
    sorted(VICTIM_PREDICATES),
)
def test_expected_victims_really_have_the_defect(big, rule_id):
    wrong = big.sql(
        f"""
        SELECT x.billing_event_id FROM demo_expectations x
        JOIN billing_events e ON e.id = x.billing_event_id
        JOIN projects p ON p.id = e.project_id
        LEFT JOIN accounts a ON a.id = e.account_id
        WHERE x.rule_id = $r AND NOT coalesce(({VICTIM_PREDICATES[rule_id]}), false)
        ORDER BY 1
        """,
        r=rule_id,
    )
    assert wrong.empty, (
        f"{rule_id}: {len(wrong)} expected victims without the defect, e.g. {list(wrong.billing_event_id[:5])}"
    )


# -- refusals and the CLI --------------------------------------------------------------------
def test_seeding_a_non_empty_database_is_refused(checksums):
    w = _seeded(300, 1)
    try:
        before = checksums(w)
        with pytest.raises(BearError, match="already holds billing events"):
            bear.demo.seed(w, events=300, seed=2)
        assert checksums(w) == before
    finally:
        w.close()


@pytest.mark.parametrize("events", [0, -5, "100", 2.5, True, None, [10]])
def test_bad_events_argument_is_refused(ws, checksums, events):
    before = checksums(ws)
    with pytest.raises(BearError) as info:
        bear.demo.seed(ws, events=events, seed=7)
    assert "events" in str(info.value) and repr(events) in str(info.value)
    assert checksums(ws) == before


@pytest.mark.parametrize("seed", ["7", 1.5, None, False])
def test_bad_seed_argument_is_refused(ws, checksums, seed):
    before = checksums(ws)
    with pytest.raises(BearError, match="seed"):
        bear.demo.seed(ws, events=10, seed=seed)
    assert checksums(ws) == before


def test_tiny_books_work(ws):
    bear.demo.seed(ws, events=1, seed=7)
    assert one(ws, "SELECT count(*) FROM billing_events") == 1


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "bear.cli", *args],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        timeout=120,
    )


def test_cli_seed(tmp_path):
    db = str(tmp_path / "seed.duckdb")
    r = _cli("seed", "--db", db, "--events", "500", "--seed", "3", "--json")
    assert r.returncode == 0, r.stderr
    counts = json.loads(r.stdout)
    assert counts["billing_events"] == 500
    assert counts["billing_event_items"] > 1_000
    again = _cli("seed", "--db", db, "--events", "500")
    assert again.returncode == 2
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "already" in lines[0]
    bad = _cli("seed", "--db", str(tmp_path / "other.duckdb"), "--events", "0")
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "events" in bad.stderr
    with bear.connect(db, resume=False) as w:
        assert one(w, "SELECT count(*) FROM billing_events") == 500
        ref = _seeded(500, 3)
        try:
            assert w.awaiting_release().page(0, 30).equals(ref.awaiting_release().page(0, 30))
        finally:
            ref.close()


def test_category_shares_cover_the_declared_categories():
    assert tuple(bear.demo.CATEGORY_SHARES) == CATEGORIES
    assert sum(bear.demo.CATEGORY_SHARES.values()) == 100
