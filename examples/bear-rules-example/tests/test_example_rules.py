"""Tests of the example rules, written with ``bear.testing``: a few rows each, no app needed;
and of its setting, ``example.large_credit_limit``, set the way a test sets it."""

from __future__ import annotations

from decimal import Decimal

import bear_rules_example
import pytest
from bear_rules_example import LARGE_CREDIT, WeekendEvent, large_credit

import bear
from bear.errors import SettingError
from bear.testing import evaluate_rule, make_workspace

# The plugin passed to a test's workspace under its entry-point name, as an installed copy
# is loaded: its settings are then named example.<setting>.
PLUGIN = {"example": bear_rules_example}


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


def test_the_limit_is_a_parameter_of_the_rule():
    df = evaluate_rule(
        large_credit(Decimal("2500.50")),
        [{"id": 1, "summary_amount": "-2500.50"}, {"id": 2, "summary_amount": "-2500.51"}],
    )
    assert df.billing_event_id.tolist() == [2]
    assert "is above 2,500.50;" in df.message.iloc[0]


def test_the_limit_is_a_setting_of_the_plugin():
    events = [{"id": 1, "summary_amount": "-6000.00"}, {"id": 2, "summary_amount": "-20000.00"}]
    with make_workspace(events, plugins=PLUGIN) as ws:  # the default limit: 10,000
        assert ws.settings["example.large_credit_limit"] == Decimal("10000")
        v = ws.preview([1, 2], action="release").violations
        assert v[v.rule_id == "example.large_credit"].billing_event_id.tolist() == [2]
    with make_workspace(
        events, plugins=PLUGIN, settings={"example.large_credit_limit": "5000"}
    ) as ws:
        v = ws.preview([1, 2], action="release").violations
        assert v[v.rule_id == "example.large_credit"].billing_event_id.tolist() == [1, 2]
        ws.settings.update_by("ana", **{"example.large_credit_limit": 50_000})
        assert ws.preview([1, 2], action="release").eligible_ids == [1, 2]
        with pytest.raises(SettingError, match="example.large_credit_limit"):
            ws.settings.update(**{"example.large_credit_limit": "-1"})


def test_the_plugin_registers_both_rules(monkeypatch):
    # Installed, the plugin is also found by its entry point; here it is passed by hand.
    monkeypatch.setenv("BEAR_DISABLE_PLUGIN_AUTOLOAD", "1")
    with bear.connect(":memory:", plugins=PLUGIN) as ws:
        rules = ws.rules().set_index("id")
        assert rules.loc["example.large_credit", "plugin"] == "example"
        assert rules.loc["example.large_credit", "kind"] == "sql"
        assert rules.loc["example.weekend_event", "kind"] == "python"
        assert rules.loc["example.weekend_event", "stage"] == "invoice"
