"""Tests of the example rules, written with ``bear.testing``: a few rows each, no app needed."""

from __future__ import annotations

import bear_rules_example
from bear_rules_example import LARGE_CREDIT, WeekendEvent

import bear
from bear.testing import evaluate_rule


def test_large_credit_flags_only_credits_beyond_the_limit():
    df = evaluate_rule(
        LARGE_CREDIT,
        [
            {"id": 1, "summary_amount": "-10000.00"},  # at the limit: fine
            {"id": 2, "summary_amount": "-10000.01"},
            {"id": 3, "summary_amount": "50000.00"},  # an invoice, not a credit
        ],
        projects=[{"id": 1, "name": "Cloud migration 7"}],
    )
    assert df.billing_event_id.tolist() == [2]
    assert df.rule_id.tolist() == ["example.large_credit"]
    assert df.severity.tolist() == ["block"]
    assert df.message.iloc[0] == (
        "credit of -10000.01 USD on project Cloud migration 7 is above 10,000; "
        "get a second approval, then split or release it by hand"
    )


def test_weekend_event_flags_saturdays_and_sundays_of_the_document_date():
    events = [
        {"id": 1, "event_date": "2026-01-15"},  # Thursday
        {"id": 2, "event_date": "2026-01-17"},  # Saturday
        {"id": 3, "event_date": "2026-01-18"},  # Sunday
        {"id": 4, "event_date": "2026-01-17", "invoice_date": "2026-01-19"},  # moved to Monday
        {"id": 5, "event_date": "2026-01-16", "invoice_date": "2026-01-24"},  # moved to Saturday
    ]
    df = evaluate_rule(WeekendEvent(), events, as_released=True)
    assert df.billing_event_id.tolist() == [2, 3, 5]
    assert set(df.severity) == {"warn"}
    messages = dict(zip(df.billing_event_id, df.message, strict=True))
    assert messages[2].startswith("document date 2026-01-17 is a Saturday")
    assert messages[3].startswith("document date 2026-01-18 is a Sunday")
    assert messages[5].startswith("document date 2026-01-24 is a Saturday")


def test_weekend_event_is_vectorized_over_a_large_batch():
    events = [{"id": i, "event_date": f"2026-02-{1 + i % 28:02d}"} for i in range(1, 2001)]
    df = evaluate_rule(WeekendEvent(), events, as_released=True)
    # February 2026: the 1st is a Sunday, so days 1, 7, 8, 14, 15, 21, 22, 28 are weekends.
    weekend_days = {1, 7, 8, 14, 15, 21, 22, 28}
    expected = [i for i in range(1, 2001) if 1 + i % 28 in weekend_days]
    assert df.billing_event_id.tolist() == expected


def test_the_plugin_registers_both_rules(monkeypatch):
    # Installed, the plugin is also found by its entry point; here it is passed by hand.
    monkeypatch.setenv("BEAR_DISABLE_PLUGIN_AUTOLOAD", "1")
    with bear.connect(":memory:", plugins=[bear_rules_example]) as ws:
        rules = ws.rules().set_index("id")
        assert rules.loc["example.large_credit", "plugin"] == "bear_rules_example"
        assert rules.loc["example.large_credit", "kind"] == "sql"
        assert rules.loc["example.weekend_event", "kind"] == "python"
        assert rules.loc["example.weekend_event", "stage"] == "invoice"
