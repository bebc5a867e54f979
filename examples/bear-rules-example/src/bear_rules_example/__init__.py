"""An example BEAR rules plugin: a SQL rule and a vectorized Python rule, found by entry point.

Installed with ``pip install -e examples/bear-rules-example``, it is discovered through the
``bear`` entry-point group and shows up in ``bear plugins`` as plugin ``example``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

import bear

__version__ = "0.1.0"

LARGE_CREDIT_LIMIT = 10_000

LARGE_CREDIT = bear.SqlRule(
    id="example.large_credit",
    stage="release",
    severity="block",
    description=f"Credits above {LARGE_CREDIT_LIMIT:,} need a second approval before release.",
    fail_when=f"summary_amount < -{LARGE_CREDIT_LIMIT}",
    message="credit of {summary_amount} {currency} on project {project_name} is above "
    f"{LARGE_CREDIT_LIMIT:,}; get a second approval, then split or release it by hand",
)


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
def bear_register_rules(settings: Any) -> list[Any]:
    """The example's two rules."""
    return [LARGE_CREDIT, WeekendEvent()]
