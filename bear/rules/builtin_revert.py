"""Built-in revert rules: can this event's release or invoice be reverted? Registered like any
third-party plugin; a plugin adds its own with ``stage="revert"``.

A closed accounting period does not block a revert: the reversing document takes the first
day of the first open period after today, and ``revert.period_closed`` says so as a warning
(the app log of the event repeats it). Only when no open period follows is the revert blocked
(``revert.no_open_period``). A document in progress is discarded, not reversed, so neither
rule applies to it.
"""

from __future__ import annotations

from typing import Any

from bear.markers import hookimpl
from bear.rules.model import SqlRule


@hookimpl
def bear_register_rules(settings: Any) -> list[SqlRule]:
    return [
        SqlRule(
            id="revert.not_released",
            stage="revert",
            description="Only a released (or invoiced) event can be reverted.",
            fail_when="released IS NOT TRUE",
            message="{event_name} is awaiting release already (not released, or reverted "
            "before); there is nothing to revert",
        ),
        SqlRule(
            id="revert.document_settled",
            stage="revert",
            description="The event's document is already discarded or reversed, or is gone.",
            fail_when="document_id IS NOT NULL AND document_status IS DISTINCT FROM 'in_progress' "
            "AND document_status IS DISTINCT FROM 'complete'",
            message_sql="'document ' || coalesce(document_number, document_id::VARCHAR) || ' of ' "
            "|| event_name || CASE WHEN document_status IS NULL THEN ' no longer exists' "
            "ELSE ' is ' || document_status || ' already' END || '; it cannot be reverted again'",
        ),
        SqlRule(
            id="revert.in_other_run",
            stage="revert",
            description="Another unfinished run holds the event.",
            fail_when="claimed_by_run IS NOT NULL",
            message="{event_name} is being processed by run {claimed_by_run}; wait for it to finish",
        ),
        SqlRule(
            id="revert.period_closed",
            stage="revert",
            severity="warn",
            description="Today falls in a closed accounting period: the reversing document "
            "takes the first open period's date instead.",
            fail_when="document_status = 'complete' AND reversal_period_closed "
            "AND reversal_date IS NOT NULL",
            message="today falls in a closed accounting period of company {company_name}; the "
            "document reversing {document_number} will be dated {reversal_date}, the start of "
            "the first open period",
        ),
        SqlRule(
            id="revert.no_open_period",
            stage="revert",
            description="Today falls in a closed accounting period and no open period follows: "
            "the reversing document would have no date to take.",
            fail_when="document_status = 'complete' AND reversal_period_closed "
            "AND reversal_date IS NULL",
            message="today falls in a closed accounting period of company {company_name} and no "
            "open period follows; open one to reverse {document_number}",
        ),
    ]
