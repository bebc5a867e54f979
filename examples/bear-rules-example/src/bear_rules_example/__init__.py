"""An example BEAR rules plugin: a SQL rule and a vectorized Python rule, found by entry point,
and one setting of its own.

Installed with ``pip install -e examples/bear-rules-example``, it is discovered through the
``bear`` entry-point group and shows up in ``bear plugins`` as plugin ``example``; its setting
is ``example.large_credit_limit`` (``bear settings set example.large_credit_limit=5000``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

import bear

__version__ = "0.1.0"

# The plugin's name: its entry point's name in pyproject.toml, and the first part of the names
# of its settings.
PLUGIN = "example"
LIMIT_SETTING = f"{PLUGIN}.large_credit_limit"
LARGE_CREDIT_LIMIT = Decimal("10000")  # the setting's default

SETTINGS = [
    bear.PluginSetting(
        name="large_credit_limit",
        kind="decimal",
        default=LARGE_CREDIT_LIMIT,
        help="Credits larger than this amount need a second approval before release.",
        minimum=0,
    )
]


def large_credit(limit: Decimal = LARGE_CREDIT_LIMIT) -> bear.SqlRule:
    """The rule holding back credits above ``limit`` (the setting's value)."""
    shown = f"{limit:,}"
    return bear.SqlRule(
        id="example.large_credit",
        stage="release",
        severity="block",
        description=f"Credits above {shown} need a second approval before release.",
        # a validated Decimal, written out in full (never 1E+4): a plain SQL literal
        fail_when=f"summary_amount < -{limit:f}",
        message="credit of {summary_amount} {currency} on project {project_name} is above "
        f"{shown}; get a second approval, then split or release it by hand",
    )


LARGE_CREDIT = large_credit()  # with the default limit


@dataclass(frozen=True)
class WeekendEvent:
    """Warn when a document would be dated on a Saturday or Sunday (vectorized, Arrow compute)."""

    id: str = "example.weekend_event"
    stage: str = "invoice"
    severity: str = "warn"
    description: str = "The document would be dated on a weekend."
    # The batch columns it reads: only these are exported to it (milliseconds at 1M events).
    columns: tuple[str, ...] = ("billing_event_id", "document_date")

    def evaluate(self, batch: Any) -> pa.Table:
        """Return the failing rows (billing_event_id, message) of the whole batch at once."""
        t = batch.arrow().select(["billing_event_id", "document_date"])
        dow = pc.day_of_week(t["document_date"])  # Monday = 0 … Sunday = 6
        hit = t.filter(pc.greater_equal(dow, 5))
        day = pc.if_else(pc.equal(pc.day_of_week(hit["document_date"]), 5), "Saturday", "Sunday")
        message = pc.binary_join_element_wise(
            "document date ",
            pc.cast(hit["document_date"], pa.string()),
            " is a ",
            day,
            "; set a weekday invoice date if the customer expects one",
            "",
        )
        return pa.table({"billing_event_id": hit["billing_event_id"], "message": message})


@bear.hookimpl
def bear_register_settings() -> list[bear.PluginSetting]:
    """The example's one setting, stored as ``example.large_credit_limit``."""
    return SETTINGS


@bear.hookimpl
def bear_register_rules(settings: Any) -> list[Any]:
    """The example's two rules; the credit limit is the setting's current value."""
    return [large_credit(settings[LIMIT_SETTING]), WeekendEvent()]
