"""Every built-in rule: one passing case and one failing case per failure mode, on a few rows
built with ``bear.testing``; then each rule against the victims the demo book records for it."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

import bear
from bear.rules.engine import evaluate
from bear.testing import builtin_rule, builtin_rules, evaluate_rule

RELEASE_RULES = {
    "release.already_released",
    "release.not_approved",
    "release.no_items",
    "release.item_out_of_sync",
    "release.item_on_hold",
    "release.project_not_billable",
    "release.project_excluded",
    "release.project_inactive",
    "release.billing_cap_exceeded",
    "release.no_account",
    "release.in_other_run",
    "release.project_missing",
}
REVERT_RULES = {
    "revert.not_released",
    "revert.document_settled",
    "revert.in_other_run",
    "revert.period_closed",
    "revert.no_open_period",
}
INVOICE_RULES = {
    "invoice.not_released",
    "invoice.already_invoiced",
    "invoice.no_account",
    "invoice.account_inactive",
    "invoice.no_company",
    "invoice.currency_not_enabled",
    "invoice.item_without_product",
    "invoice.zero_total",
    "invoice.too_many_lines",
    "invoice.closed_period",
    "invoice.amount_mismatch",
    "invoice.in_other_run",
    "invoice.no_billing_email",
    "invoice.project_missing",
    "invoice.account_missing",
    "invoice.company_missing",
    "invoice.product_missing",
    "invoice.project_company_mismatch",
    "invoice.period_missing",
}
# Rules whose victims depend on state the demo book never leaves behind (an unfinished run,
# an invoice-stage judgement of an unreleased event).
# Nor rows deleted or changed behind BEAR's back (tests/test_changed_behind.py makes those).
NO_DEMO_VICTIMS = {
    "release.in_other_run",
    "invoice.in_other_run",
    "invoice.not_released",
    "release.project_missing",
    "invoice.project_missing",
    "invoice.account_missing",
    "invoice.company_missing",
    "invoice.product_missing",
    "invoice.project_company_mismatch",
    "invoice.period_missing",
}


def run(
    rule_id: str, events: list[dict[str, Any]], settings: dict[str, Any] | None = None, **kw: Any
) -> pd.DataFrame:
    """The violations of built-in rule ``rule_id`` (built with ``settings``) over a tiny book."""
    return evaluate_rule(builtin_rule(rule_id, **(settings or {})), events, **kw)


def flagged(df: pd.DataFrame) -> list[int]:
    return sorted(df.billing_event_id.tolist())


def only_message(df: pd.DataFrame, rule_id: str, event_id: int) -> str:
    rows = df[df.billing_event_id == event_id]
    assert len(rows) == 1, df
    assert rows.rule_id.iloc[0] == rule_id
    return str(rows.message.iloc[0])


def test_the_built_in_rules_are_the_documented_ones():
    with bear.connect(":memory:") as ws:
        rules = ws.rules()
    builtin = rules[rules.plugin.isin(["builtin_release", "builtin_invoice", "builtin_revert"])]
    assert set(builtin[builtin.stage == "release"].id) == RELEASE_RULES
    assert set(builtin[builtin.stage == "invoice"].id) == INVOICE_RULES
    assert set(builtin[builtin.stage == "revert"].id) == REVERT_RULES
    assert set(builtin_rules()) == RELEASE_RULES | INVOICE_RULES | REVERT_RULES
    warns = {"invoice.no_billing_email", "revert.period_closed"}
    assert set(builtin[builtin.id.isin(warns)].severity) == {"warn"}
    assert set(builtin[~builtin.id.isin(warns)].severity) == {"block"}
    assert builtin.description.str.len().min() > 10


# -- release rules --------------------------------------------------------------------------
def test_already_released():
    df = run("release.already_released", [{"id": 1}, {"id": 2, "released": True}])
    assert flagged(df) == [2]
    msg = only_message(df, "release.already_released", 2)
    assert "BE-0000002" in msg and "2026-01-16" in msg and "awaiting invoice" in msg


def test_not_approved():
    df = run(
        "release.not_approved",
        [{"id": 1}, {"id": 2, "approved": False}],
        projects=[{"id": 1, "name": "ERP rollout 1"}],
    )
    assert flagged(df) == [2]
    msg = only_message(df, "release.not_approved", 2)
    assert "BE-0000002" in msg and "ERP rollout 1" in msg and "approve" in msg


def test_not_approved_passes_when_approval_is_not_required():
    df = run("release.not_approved", [{"approved": False}], {"require_approval": False})
    assert df.empty


def test_no_items():
    df = run("release.no_items", [{"id": 1}, {"id": 2, "items": []}])
    assert flagged(df) == [2]
    assert "BE-0000002 has no billing event items" in only_message(df, "release.no_items", 2)


def test_item_out_of_sync():
    events = [
        {"id": 1},
        {
            "id": 2,
            "items": [
                {"id": 21},
                {"id": 22, "source_changed": True, "source_id": "TC-77"},
                {"id": 23, "source_changed": True},
            ],
        },
    ]
    df = run("release.item_out_of_sync", events)
    assert flagged(df) == [2]
    msg = only_message(df, "release.item_out_of_sync", 2)
    assert "item 22" in msg and "TC-77" in msg and "2 item(s)" in msg


def test_item_on_hold():
    events = [
        {"id": 1},
        {
            "id": 2,
            "items": [{"id": 21}, {"id": 22, "billing_hold": True, "description": "Hotel Zurich"}],
        },
    ]
    df = run("release.item_on_hold", events)
    assert flagged(df) == [2]
    msg = only_message(df, "release.item_on_hold", 2)
    assert "item 22" in msg and "Hotel Zurich" in msg and "billing hold" in msg


@pytest.mark.parametrize(
    ("rule_id", "column", "bad", "words"),
    [
        ("release.project_not_billable", "billable", False, "not billable"),
        ("release.project_excluded", "exclude_from_billing", True, "excluded from billing"),
        ("release.project_inactive", "active", False, "inactive"),
    ],
)
def test_project_flags(rule_id, column, bad, words):
    df = run(
        rule_id,
        [{"id": 1, "project_id": 1}, {"id": 2, "project_id": 2}],
        projects=[
            {"id": 1, "name": "Good project"},
            {"id": 2, "name": "Cloud migration 2", column: bad},
        ],
    )
    assert flagged(df) == [2]
    msg = only_message(df, rule_id, 2)
    assert "Cloud migration 2" in msg and words in msg


def test_billing_cap_exceeded_counts_what_was_released_before():
    events = [
        {"id": 1, "released": True, "summary_amount": "2000.00"},  # already on the project
        {"id": 2, "summary_amount": "600.00"},  # 2600 > 2500
        {"id": 3, "summary_amount": "400.00"},  # 2400 <= 2500
        {"id": 4, "summary_amount": "-900.00"},  # credits never exceed a cap
    ]
    projects = [{"id": 1, "name": "Capped 9", "billing_cap": "2500.00"}]
    df = run("release.billing_cap_exceeded", events, projects=projects, ids=[2, 4])
    assert flagged(df) == [2]
    msg = only_message(df, "release.billing_cap_exceeded", 2)
    assert "Capped 9" in msg and "2500.00" in msg and "2600.00" in msg and "USD" in msg
    assert run("release.billing_cap_exceeded", events, projects=projects, ids=[3, 4]).empty


def test_billing_cap_of_one_event_alone():
    df = run(
        "release.billing_cap_exceeded",
        [
            {"id": 1, "summary_amount": "2500.00"},
            {"id": 2, "project_id": 2, "summary_amount": "2500.01"},
        ],
        projects=[
            {"id": 1, "billing_cap": "2500.00"},
            {"id": 2, "name": "Tight", "billing_cap": "2500.00"},
        ],
    )
    assert flagged(df) == [2]
    assert "Tight" in only_message(df, "release.billing_cap_exceeded", 2)


def test_billing_cap_is_not_counted_twice_for_a_released_event():
    """An event already released is part of the released total: it must not be added again."""
    df = run(
        "release.billing_cap_exceeded",
        [{"released": True, "summary_amount": "2000.00"}],
        projects=[{"id": 1, "billing_cap": "2500.00"}],
    )
    assert df.empty


def test_billing_cap_counts_the_selections_earlier_events_of_the_project():
    events = [
        {"id": 1, "summary_amount": "300.00"},
        {"id": 2, "summary_amount": "300.00"},  # 300 + 300 > 500
        {"id": 3, "project_id": 2, "summary_amount": "300.00"},  # another project's cap
    ]
    projects = [
        {"id": 1, "name": "Cap A", "billing_cap": "500.00"},
        {"id": 2, "name": "Cap B", "billing_cap": "500.00"},
    ]
    df = run("release.billing_cap_exceeded", events, projects=projects)
    assert flagged(df) == [2]
    msg = only_message(df, "release.billing_cap_exceeded", 2)
    assert "Cap A" in msg and "to 600.00" in msg and "500.00" in msg
    assert run("release.billing_cap_exceeded", events, projects=projects, ids=[2, 3]).empty


def test_uncapped_project_has_no_cap():
    df = run("release.billing_cap_exceeded", [{"summary_amount": "99999999.00"}])
    assert df.empty


def test_release_no_account():
    df = run(
        "release.no_account",
        [{"id": 1}, {"id": 2, "account_id": None}],
        projects=[{"id": 1, "name": "Data platform 4"}],
    )
    assert flagged(df) == [2]
    msg = only_message(df, "release.no_account", 2)
    assert "BE-0000002 has no account" in msg and "Data platform 4" in msg


def test_release_in_other_run():
    events = [{"id": 1}, {"id": 2, "claimed_by_run": 41}]
    df = run("release.in_other_run", events)
    assert flagged(df) == [2]
    assert "run 41" in only_message(df, "release.in_other_run", 2)
    # The run that holds the event is not blocked by its own claim.
    assert run("release.in_other_run", events, run_id=41).empty


# -- invoice rules --------------------------------------------------------------------------
def test_invoice_not_released():
    events = [{"id": 1, "released": True}, {"id": 2}]
    df = run("invoice.not_released", events)
    assert flagged(df) == [2]
    assert "BE-0000002 is not released" in only_message(df, "invoice.not_released", 2)
    # Judged as if released (the preview of Release and Invoice): nobody fails.
    assert run("invoice.not_released", events, as_released=True).empty


def test_already_invoiced():
    events = [
        {"id": 1, "released": True},
        {"id": 2, "invoiced": True},  # a real document is created for it
        {"id": 3, "released": True, "document_id": 777},  # linked but flag not set
    ]
    df = run("invoice.already_invoiced", events)
    assert flagged(df) == [2, 3]
    assert "BE-0000002 already has document 1" in only_message(df, "invoice.already_invoiced", 2)
    assert "document 777" in only_message(df, "invoice.already_invoiced", 3)


def test_invoice_no_account():
    df = run(
        "invoice.no_account",
        [{"id": 1}, {"id": 2, "account_id": None}],
        projects=[{"id": 1, "name": "Tax advisory 5"}],
        as_released=True,
    )
    assert flagged(df) == [2]
    msg = only_message(df, "invoice.no_account", 2)
    assert "BE-0000002 has no account" in msg and "Tax advisory 5" in msg


def test_account_inactive():
    df = run(
        "invoice.account_inactive",
        [{"id": 1, "account_id": 1}, {"id": 2, "account_id": 2}, {"id": 3, "account_id": None}],
        accounts=[{"id": 2, "name": "Globex Labs #2", "active": False}],
        as_released=True,
    )
    assert flagged(df) == [2]  # no account at all is another rule's business
    msg = only_message(df, "invoice.account_inactive", 2)
    assert "Globex Labs #2" in msg and "inactive" in msg and "BE-0000002" in msg


def test_invoice_no_company():
    df = run(
        "invoice.no_company",
        [{"id": 1}, {"id": 2, "company_id": None}],
        projects=[{"id": 1, "name": "Audit support 6"}],
        as_released=True,
    )
    assert flagged(df) == [2]
    msg = only_message(df, "invoice.no_company", 2)
    assert "no accounting company" in msg and "Audit support 6" in msg


def test_currency_not_enabled():
    events = [
        {"id": 1, "currency": "EUR"},
        {"id": 2, "currency": "GBP"},
        {"id": 3, "currency": "GBP", "company_id": None},  # no company: another rule's business
    ]
    df = run(
        "invoice.currency_not_enabled",
        events,
        as_released=True,
        companies=[
            {
                "id": 1,
                "name": "Nordlicht Beratung GmbH",
                "home_currency": "EUR",
                "currencies": ["EUR", "USD"],
            }
        ],
    )
    assert flagged(df) == [2]
    msg = only_message(df, "invoice.currency_not_enabled", 2)
    assert "Nordlicht Beratung GmbH" in msg and "GBP" in msg


def test_item_without_product():
    events = [
        {"id": 1},
        {
            "id": 2,
            "items": [
                {"id": 21},
                {"id": 22, "product_id": None, "description": "Airfare"},
                {"id": 23, "product_id": None},
            ],
        },
    ]
    df = run("invoice.item_without_product", events, as_released=True)
    assert flagged(df) == [2]
    msg = only_message(df, "invoice.item_without_product", 2)
    assert "item 22" in msg and "Airfare" in msg and "2 item(s)" in msg


def test_zero_total():
    events = [
        {"id": 1},
        {"id": 2, "items": [{"amount": "50"}, {"amount": "-50"}]},
        {"id": 3, "summary_amount": "-0.01"},
    ]
    df = run("invoice.zero_total", events, as_released=True)
    assert flagged(df) == [2]
    msg = only_message(df, "invoice.zero_total", 2)
    assert "BE-0000002 totals 0.00 USD" in msg


def test_too_many_lines():
    three = [{"amount": "1"}, {"amount": "2"}, {"amount": "3"}]
    df = run(
        "invoice.too_many_lines",
        [{"id": 1, "items": three[:2]}, {"id": 2, "items": three}],
        {"max_lines_per_document": 2},
        as_released=True,
    )
    assert flagged(df) == [2]
    msg = only_message(df, "invoice.too_many_lines", 2)
    assert "3 lines" in msg and "at most 2" in msg and "BE-0000002" in msg
    # The limit is a setting: at the default (500) three lines are fine.
    assert run("invoice.too_many_lines", [{"items": three}], as_released=True).empty


def test_closed_period():
    periods = [
        {"company_id": 1, "start_date": "2025-12-01", "closed": True},
        {"company_id": 1, "start_date": "2026-01-01", "closed": False},
        {"company_id": 2, "start_date": "2026-01-01", "closed": True},
    ]
    events = [
        {"id": 1},  # 2026-01-15, open period
        {"id": 2, "invoice_date": "2025-12-20"},  # the invoice date decides: closed
        {"id": 3, "event_date": "2025-12-05"},  # no invoice date: the event date, closed
        {"id": 4, "event_date": "2025-12-05", "invoice_date": "2026-01-02"},  # moved out: fine
        {"id": 5, "event_date": "2024-06-01"},  # no period recorded: not closed
        {"id": 6, "project_id": 2},  # another company whose January is closed
    ]
    df = run(
        "invoice.closed_period",
        events,
        as_released=True,
        periods=periods,
        projects=[{"id": 2, "company_id": 2}],
        companies=[{"id": 1, "name": "Acme Inc."}],
    )
    assert flagged(df) == [2, 3, 6]
    msg = only_message(df, "invoice.closed_period", 2)
    assert "2025-12-20" in msg and "2025-12-01" in msg and "Acme Inc." in msg
    assert "2025-12-05" in only_message(df, "invoice.closed_period", 3)
    assert "Company 2" in only_message(df, "invoice.closed_period", 6)


def test_amount_mismatch():
    events = [
        {"id": 1, "items": [{"amount": "60.00"}, {"amount": "40.00"}]},
        {"id": 2, "summary_amount": "101.00", "items": [{"amount": "60.00"}, {"amount": "40.00"}]},
        {"id": 3, "summary_amount": "25.00", "items": []},  # no items sum to 0
    ]
    df = run("invoice.amount_mismatch", events, as_released=True)
    assert flagged(df) == [2, 3]
    msg = only_message(df, "invoice.amount_mismatch", 2)
    assert "101.00" in msg and "100.00" in msg and "USD" in msg and "BE-0000002" in msg
    assert "items sum to 0" in only_message(df, "invoice.amount_mismatch", 3)


def test_invoice_in_other_run():
    events = [{"id": 1, "released": True}, {"id": 2, "released": True, "claimed_by_run": 8}]
    df = run("invoice.in_other_run", events)
    assert flagged(df) == [2]
    assert "run 8" in only_message(df, "invoice.in_other_run", 2)
    assert run("invoice.in_other_run", events, run_id=8).empty


def test_no_billing_email_is_a_warning():
    df = run(
        "invoice.no_billing_email",
        [{"id": 1, "account_id": 1}, {"id": 2, "account_id": 2}, {"id": 3, "account_id": None}],
        accounts=[{"id": 2, "name": "Hooli Health #2", "billing_email": None}],
        as_released=True,
    )
    assert flagged(df) == [2]
    assert set(df.severity) == {"warn"}
    msg = only_message(df, "invoice.no_billing_email", 2)
    assert "Hooli Health #2" in msg and "billing e-mail" in msg


def test_a_clean_default_event_passes_every_built_in_rule():
    """``bear.testing``'s defaults are eligible: a failing case isolates one failure mode."""
    rules = list(builtin_rules().values())
    assert evaluate_rule([r for r in rules if r.stage == "release"], [{}]).empty
    assert evaluate_rule([r for r in rules if r.stage == "invoice"], [{}], as_released=True).empty


# -- rows missing or changed behind BEAR's back -----------------------------------------------
def _with_rows_deleted(events: list[dict[str, Any]], sql: str, **book: Any) -> bear.Workspace:
    """A tiny book whose rows ``sql`` then deletes or changes, as another program would."""
    from bear.testing import make_workspace

    ws = make_workspace(events, **book)
    with ws.db.transaction() as tx:
        tx.execute(sql)
    return ws


def _judge_all(ws: bear.Workspace, stage: str) -> pd.DataFrame:
    rules = [r for r in builtin_rules().values() if r.stage == stage]
    return evaluate_rule(rules, ws=ws, as_released=stage == "invoice")


@pytest.mark.parametrize("rule_id", ["release.project_missing", "invoice.project_missing"])
def test_project_missing(rule_id):
    events = [{"id": 1}, {"id": 2, "project_id": 42}]
    with _with_rows_deleted(events, "DELETE FROM projects WHERE id = 42") as ws:
        df = evaluate_rule(builtin_rule(rule_id), ws=ws, as_released=True)
        assert flagged(df) == [2]  # still in the batch, and judged
        msg = only_message(df, rule_id, 2)
        assert "project 42 of BE-0000002 no longer exists" in msg
        # the preview leaves it out for the same reason
        pv = ws.preview([1, 2], action="release_and_invoice")
        assert pv.eligible_ids == [1]
        assert set(pv.violations[pv.violations.billing_event_id == 2].rule_id) == {
            "release.project_missing",
            "invoice.project_missing",
        }


def test_account_missing():
    events = [{"id": 1}, {"id": 2, "project_id": 2}, {"id": 3, "account_id": None}]
    projects = [{"id": 2, "account_id": 7}]
    with _with_rows_deleted(events, "DELETE FROM accounts WHERE id = 7", projects=projects) as ws:
        df = evaluate_rule(builtin_rule("invoice.account_missing"), ws=ws, as_released=True)
        assert flagged(df) == [2]  # no account at all is invoice.no_account's business
        assert "account 7 of BE-0000002 no longer exists" in only_message(
            df, "invoice.account_missing", 2
        )


def test_company_missing():
    events = [{"id": 1}, {"id": 2, "project_id": 2}, {"id": 3, "company_id": None}]
    projects = [{"id": 2, "company_id": 5}]
    with _with_rows_deleted(events, "DELETE FROM companies WHERE id = 5", projects=projects) as ws:
        df = evaluate_rule(builtin_rule("invoice.company_missing"), ws=ws, as_released=True)
        assert flagged(df) == [2]
        assert "company 5 of BE-0000002 no longer exists" in only_message(
            df, "invoice.company_missing", 2
        )


def test_product_missing_looks_at_the_items_only_where_a_product_id_is_in_doubt():
    events = [
        {"id": 1, "items": [{"id": 11, "product_id": 1}]},
        {"id": 2, "items": [{"id": 21, "product_id": 1}, {"id": 22, "product_id": 3}]},
        # products 1 and 5 exist; the deleted 3 lies between them but is not used
        {"id": 3, "items": [{"id": 31, "product_id": 1}, {"id": 32, "product_id": 5}]},
        # the highest product id is gone
        {"id": 4, "items": [{"id": 41, "product_id": 9}, {"id": 42, "product_id": 9}]},
        {"id": 5, "items": [{"id": 51, "product_id": None}]},  # no product: another rule
    ]
    products = [{"id": i} for i in (1, 3, 5, 9)]
    sql = "DELETE FROM products WHERE id IN (3, 9)"
    with _with_rows_deleted(events, sql, products=products) as ws:
        df = evaluate_rule(builtin_rule("invoice.product_missing"), ws=ws, as_released=True)
        assert flagged(df) == [2, 4]
        msg = only_message(df, "invoice.product_missing", 2)
        assert "item 22 refers to product 3, which no longer exists" in msg
        assert "(1 item(s)" in msg
        assert "item 41 refers to product 9" in only_message(df, "invoice.product_missing", 4)
        assert "(2 item(s)" in only_message(df, "invoice.product_missing", 4)
    # every product present: nobody fails
    assert run("invoice.product_missing", events, products=products, as_released=True).empty


def test_project_company_mismatch():
    events = [
        {"id": 1},
        {"id": 2, "project_id": 2, "company_id": 1},  # the project's company was cleared
        {"id": 3, "project_id": 3, "company_id": 1},  # the project moved to company 2
        {"id": 4, "company_id": None},  # no company at all: invoice.no_company's business
    ]
    projects = [{"id": 2, "name": "Orphan", "company_id": None}, {"id": 3, "company_id": 2}]
    companies = [{"id": 1, "name": "Acme Inc."}]
    df = run(
        "invoice.project_company_mismatch",
        events,
        projects=projects,
        companies=companies,
        as_released=True,
    )
    assert flagged(df) == [2, 3]
    msg = only_message(df, "invoice.project_company_mismatch", 2)
    assert "project Orphan no longer has an accounting company" in msg
    assert "BE-0000002 carries company Acme Inc." in msg
    msg = only_message(df, "invoice.project_company_mismatch", 3)
    assert "belongs to company 2" in msg and "carries company Acme Inc." in msg


def test_period_missing():
    periods = [{"company_id": 1, "start_date": "2026-01-01"}]
    events = [
        {"id": 1},  # 2026-01-15: inside the one period
        {"id": 2, "invoice_date": "2026-02-03"},  # company 1 keeps periods, none holds it
        {"id": 3, "project_id": 2, "event_date": "2020-05-05"},  # company 2 keeps none
    ]
    df = run(
        "invoice.period_missing",
        events,
        periods=periods,
        projects=[{"id": 2, "company_id": 2}],
        companies=[{"id": 1, "name": "Acme Inc."}],
        as_released=True,
    )
    assert flagged(df) == [2]
    msg = only_message(df, "invoice.period_missing", 2)
    assert "Acme Inc." in msg and "2026-02-03" in msg


@pytest.mark.parametrize(
    ("sql", "stage", "rule_id", "words"),
    [
        ("DELETE FROM projects WHERE id = 2", "release", "release.project_missing", "project 2"),
        ("DELETE FROM projects WHERE id = 2", "invoice", "invoice.project_missing", "project 2"),
        ("DELETE FROM accounts WHERE id = 2", "invoice", "invoice.account_missing", "account 2"),
        ("DELETE FROM companies WHERE id = 2", "invoice", "invoice.company_missing", "company 2"),
        ("DELETE FROM products WHERE id = 2", "invoice", "invoice.product_missing", "product 2"),
    ],
    ids=["project-release", "project-invoice", "account", "company", "product"],
)
def test_a_missing_row_fails_closed_with_one_reason_naming_it(sql, stage, rule_id, words):
    """Every built-in rule of the stage together: the event whose row is gone is judged, and
    the rules about that row's flags (inactive, no e-mail, currency…) do not pile on."""
    events = [{"id": 1}, {"id": 2, "project_id": 2, "items": [{"product_id": 2}]}]
    projects = [{"id": 2, "account_id": 2, "company_id": 2}]
    with _with_rows_deleted(events, sql, projects=projects) as ws:
        df = _judge_all(ws, stage)
    assert flagged(df) == [2]
    assert words in only_message(df, rule_id, 2) and "no longer exists" in df.message.iloc[0]


# -- against the demo book ------------------------------------------------------------------
def _prepared(ws: bear.Workspace) -> Any:
    """A new cursor set up by the plugins' ``bear_prepare_connection``, as the engine wants."""
    con = ws.db.con.cursor()
    ws.plugins.prepare(con)
    return con


def _demo_violations(events: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(violations of every built-in rule over ALL events, demo_expectations) of a demo book.

    Release rules judge the events as they are; invoice rules judge them as if released.
    """
    with bear.connect(":memory:") as ws:
        bear.demo.seed(ws, events=events, seed=7)
        cur = ws.db.cursor()
        cur.execute(
            "CREATE TEMP TABLE _all_ids AS SELECT id AS billing_event_id FROM billing_events"
        )
        kw: dict[str, Any] = {
            "settings": ws.settings,
            "new_cursor": lambda: _prepared(ws),
            "timeout": 60.0,
        }
        registry = ws.plugins.registry
        evaluate(cur, registry, ("release",), "_all_ids", target="_v_release", **kw)
        evaluate(
            cur,
            registry,
            ("invoice",),
            "_all_ids",
            target="_v_invoice",
            invoice_as_released=True,
            **kw,
        )
        got = ws._frame(
            "SELECT rule_id, billing_event_id FROM _v_release UNION ALL "
            "SELECT rule_id, billing_event_id FROM _v_invoice"
        )
        expected = ws.sql("SELECT rule_id, billing_event_id FROM demo_expectations")
    return got, expected


@pytest.fixture(scope="module")
def demo_2000() -> tuple[pd.DataFrame, pd.DataFrame]:
    return _demo_violations(2000)


@pytest.mark.parametrize("rule_id", sorted(RELEASE_RULES | INVOICE_RULES))
def test_rule_flags_exactly_the_demo_victims(demo_2000, rule_id):
    got, expected = demo_2000
    flagged_ids = set(got[got.rule_id == rule_id].billing_event_id)
    victims = set(expected[expected.rule_id == rule_id].billing_event_id)
    assert flagged_ids - victims == set(), f"{rule_id} flags events the demo does not expect"
    assert victims - flagged_ids == set(), f"{rule_id} misses events the demo breaks for it"


@pytest.mark.parametrize("events", [1000, 2000])
def test_every_rule_has_demo_victims(events, demo_2000):
    got, expected = demo_2000 if events == 2000 else _demo_violations(events)
    for rule_id in sorted((RELEASE_RULES | INVOICE_RULES) - NO_DEMO_VICTIMS):
        assert (got.rule_id == rule_id).sum() >= 1, f"{rule_id} has no victim at {events} events"
        assert (expected.rule_id == rule_id).sum() >= 1
    for rule_id in NO_DEMO_VICTIMS:
        assert (got.rule_id == rule_id).sum() == 0


def test_billing_cap_ignores_earlier_events_that_cannot_be_released():
    from bear.testing import make_workspace

    events = [
        {"id": 1, "summary_amount": "2000.00", "approved": False},
        {"id": 2, "summary_amount": "1000.00"},
    ]
    with make_workspace(events, projects=[{"id": 1, "billing_cap": "2500.00"}]) as ws:
        pv = ws.preview([1, 2], action="release")
        assert pv.eligible_ids == [2]  # event 1 is never released, so 2 stays under the cap


def test_a_validated_run_never_fails_a_batch_on_the_billing_cap():
    from bear.testing import make_workspace

    events = [
        {"id": 1, "summary_amount": "2000.00"},
        {"id": 2, "summary_amount": "-1000.00", "approved": False},  # left out up front
        {"id": 3, "summary_amount": "1000.00"},  # 2000 + 1000 > 2500 once the credit is gone
    ]
    with make_workspace(events, projects=[{"id": 1, "billing_cap": "2500.00"}]) as ws:
        pv = ws.preview([1, 2, 3], action="release")
        run = ws.release([1, 2, 3], user="ana@example.com", timeout=60)
        assert run.failed_batches == 0
        assert run.released == len(pv.eligible_ids)


# -- bear.testing itself ----------------------------------------------------------------------
def test_make_workspace_names_a_misspelt_column():
    from bear.errors import BearError
    from bear.testing import make_workspace

    with pytest.raises(BearError, match=r"events: unknown column\(s\) \['aproved'\]"):
        make_workspace([{"aproved": False}])
    with pytest.raises(BearError, match=r"billing_event_id \[9\] is not among the events"):
        make_workspace([{"id": 1}], items=[{"billing_event_id": 9}])
    with pytest.raises(BearError, match="items: amount: 'lots' is not a number"):
        make_workspace([{"items": [{"amount": "lots"}]}])


def test_make_workspace_fills_a_consistent_book():
    from bear.testing import DEFAULT_DATE, make_workspace

    events = [
        {"id": 1},
        {"id": 2, "currency": "EUR", "invoiced": True},
        {"id": 3, "items": [{"quantity": "2.5", "unit_price": "10.01"}]},
    ]
    with make_workspace(events, items=[{"billing_event_id": 1, "amount": "7.00"}]) as ws:
        ev = ws.sql("SELECT * FROM billing_events ORDER BY id")
        assert [str(a) for a in ev.summary_amount] == ["7.00", "100.00", "25.03"]
        assert ev.event_date.iloc[0] == DEFAULT_DATE
        assert ev.released.tolist() == [False, True, False] and ev.invoiced.tolist() == [
            False,
            True,
            False,
        ]
        docs = ws.documents()
        assert docs.billing_event_id.tolist() == [2] and docs.number.tolist() == ["SIN000001"]
        cur = ws.sql("SELECT currency FROM company_currencies ORDER BY 1").currency.tolist()
        assert cur == ["EUR", "USD"]
        assert ws.sql("SELECT count(*) AS n FROM billing_event_items").n.iloc[0] == 3
