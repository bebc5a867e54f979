"""Built-in invoice rules: can this released event become a sales invoice or credit note?"""

from __future__ import annotations

from typing import Any

from bear.markers import hookimpl
from bear.rules.model import SqlRule


@hookimpl
def bear_register_rules(settings: Any) -> list[SqlRule]:
    max_lines = int(settings.max_lines_per_document)
    return [
        SqlRule(
            id="invoice.not_released",
            stage="invoice",
            description="Only released events can be invoiced.",
            fail_when="NOT released",
            message="{event_name} is not released; release it first",
        ),
        SqlRule(
            id="invoice.already_invoiced",
            stage="invoice",
            description="The event already has a sales invoice or credit note.",
            fail_when="invoiced OR document_id IS NOT NULL",
            message="{event_name} already has document {document_id}",
        ),
        SqlRule(
            id="invoice.no_account",
            stage="invoice",
            description="A document needs a customer account.",
            fail_when="account_id IS NULL",
            message="{event_name} has no account to invoice; set the account on project {project_name}",
        ),
        SqlRule(
            id="invoice.account_inactive",
            stage="invoice",
            description="The customer account is inactive.",
            fail_when="account_id IS NOT NULL AND NOT account_active",
            message="account {account_name} is inactive; reactivate it to invoice {event_name}",
        ),
        SqlRule(
            id="invoice.no_company",
            stage="invoice",
            description="A document needs an accounting company.",
            fail_when="company_id IS NULL",
            message="{event_name} has no accounting company; set the company on project {project_name}",
        ),
        SqlRule(
            id="invoice.currency_not_enabled",
            stage="invoice",
            description="The company has no accounting currency for the event's currency.",
            fail_when="company_id IS NOT NULL AND NOT company_has_currency",
            message="company {company_name} has no accounting currency {currency}; add {currency} "
            "to the company's accounting currencies or change the project currency",
        ),
        SqlRule(
            id="invoice.item_without_product",
            stage="invoice",
            description="Every document line needs a services product.",
            fail_when="items_without_product > 0",
            message="item {first_item_without_product} ({first_item_without_product_desc}) has no "
            "services product; set one on the item ({items_without_product} item(s) affected)",
        ),
        SqlRule(
            id="invoice.zero_total",
            stage="invoice",
            description="A document for a zero amount is not created.",
            fail_when="summary_amount = 0",
            message="{event_name} totals 0.00 {currency}; there is nothing to invoice or credit",
        ),
        SqlRule(
            id="invoice.too_many_lines",
            stage="invoice",
            description=f"A document may hold at most max_lines_per_document ({max_lines}) lines.",
            fail_when=f"line_count > {max_lines}",
            message=f"{{event_name}} would need {{line_count}} lines; a document holds at most {max_lines}. "
            "Split the event",
        ),
        SqlRule(
            id="invoice.closed_period",
            stage="invoice",
            description="The document date falls in a closed accounting period.",
            fail_when="period_closed",
            message="document date {document_date} is in the closed accounting period starting "
            "{period_start} of {company_name}; set a later invoice date or reopen the period",
        ),
        SqlRule(
            id="invoice.amount_mismatch",
            stage="invoice",
            description="The summary amount must equal the sum of the items.",
            fail_when="summary_amount <> coalesce(item_amount_sum, 0)",
            message_sql="event_name || ' totals ' || summary_amount || ' ' || currency "
            "|| ' but its items sum to ' || coalesce(item_amount_sum, 0) "
            "|| '; recalculate the event'",
        ),
        SqlRule(
            id="invoice.in_other_run",
            stage="invoice",
            description="Another unfinished run holds the event.",
            fail_when="claimed_by_run IS NOT NULL",
            message="{event_name} is being processed by run {claimed_by_run}; wait for it to finish",
        ),
        SqlRule(
            id="invoice.no_billing_email",
            severity="warn",
            stage="invoice",
            description="The account has no billing e-mail (the document must be sent by hand).",
            fail_when="account_id IS NOT NULL AND account_email IS NULL",
            message="account {account_name} has no billing e-mail; the document will have to be sent by hand",
        ),
    ]
