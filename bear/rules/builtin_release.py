"""Built-in release rules: can this event be released? Registered like any third-party plugin.

Each predicate is true exactly when the event must not be released, and a NULL that means
"unknown" counts as failing (``IS NOT TRUE``): an unknown is never a pass. A row that is gone
altogether (the project) has its own rule naming it, and the rules about that row's flags
leave it to that one, so an analyst reads one reason, not four.
"""

from __future__ import annotations

from typing import Any

from bear.markers import hookimpl
from bear.rules.model import SqlRule


@hookimpl
def bear_register_rules(settings: Any) -> list[SqlRule]:
    approval = "true" if settings.require_approval else "false"
    return [
        SqlRule(
            id="release.already_released",
            stage="release",
            description="The event has been released already.",
            fail_when="released",
            message="{event_name} was already released on {released_at}; it is awaiting invoice",
        ),
        SqlRule(
            id="release.not_approved",
            stage="release",
            description="Only approved events can be released (setting require_approval).",
            fail_when=f"{approval} AND approved IS NOT TRUE",
            message="{event_name} is not approved; approve it on project {project_name} before releasing",
        ),
        SqlRule(
            id="release.no_items",
            stage="release",
            description="An event without items has nothing to bill.",
            fail_when="item_count = 0",
            message="{event_name} has no billing event items; regenerate it or delete it",
        ),
        SqlRule(
            id="release.item_out_of_sync",
            stage="release",
            description="An item changed in its source record after the event was generated.",
            fail_when="items_out_of_sync > 0",
            message="item {first_item_out_of_sync} no longer matches its source record "
            "{first_item_out_of_sync_source} ({items_out_of_sync} item(s) out of sync); "
            "regenerate the billing event",
        ),
        SqlRule(
            id="release.item_on_hold",
            stage="release",
            description="An item is on billing hold.",
            fail_when="items_on_hold > 0",
            message="item {first_item_on_hold} ({first_item_on_hold_desc}) is on billing hold; "
            "release the hold or remove the item",
        ),
        SqlRule(
            id="release.project_not_billable",
            stage="release",
            description="The project is not billable.",
            fail_when="project_exists AND project_billable IS NOT TRUE",
            message="project {project_name} is not billable; mark it billable to release its events",
        ),
        SqlRule(
            id="release.project_excluded",
            stage="release",
            description="The project is excluded from billing.",
            fail_when="project_exists AND project_excluded IS NOT FALSE",
            message="project {project_name} is excluded from billing; clear 'exclude from billing' on it",
        ),
        SqlRule(
            id="release.project_inactive",
            stage="release",
            description="The project is inactive.",
            fail_when="project_exists AND project_active IS NOT TRUE",
            message="project {project_name} is inactive; reactivate it to release its events",
        ),
        SqlRule(
            id="release.billing_cap_exceeded",
            stage="release",
            description="Releasing the event (after the selection's earlier events of the same "
            "project) would take the project above its billing cap.",
            # A released event is already part of project_released_total: never add it twice.
            fail_when="project_billing_cap IS NOT NULL AND summary_amount > 0 AND NOT released AND "
            "project_released_total + project_pending_before + summary_amount > project_billing_cap",
            message_sql="'releasing ' || summary_amount || ' ' || currency || ' would take project ' "
            "|| project_name || ' to ' || (project_released_total + project_pending_before + summary_amount) "
            "|| ', above its billing cap of ' || project_billing_cap "
            "|| '; raise the cap or split the event'",
        ),
        SqlRule(
            id="release.project_missing",
            stage="release",
            description="The event's project row no longer exists (deleted outside BEAR): whether "
            "it may be billed is unknown.",
            fail_when="NOT project_exists",
            message="project {project_id} of {event_name} no longer exists; restore the project "
            "or move the event to an existing one",
        ),
        SqlRule(
            id="release.no_account",
            stage="release",
            description="The event has no customer account.",
            fail_when="account_id IS NULL",
            message="{event_name} has no account; set the account on project {project_name}",
        ),
        SqlRule(
            id="release.in_other_run",
            stage="release",
            description="Another unfinished run holds the event.",
            fail_when="claimed_by_run IS NOT NULL",
            message="{event_name} is being processed by run {claimed_by_run}; wait for it to finish",
        ),
    ]
