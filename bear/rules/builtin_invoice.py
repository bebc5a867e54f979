"""Built-in invoice rules: can this released event become a sales invoice or credit note?

Each predicate is true exactly when no document may be created, and a NULL that means
"unknown" counts as failing (``IS NOT TRUE`` / ``IS DISTINCT FROM``): an unknown is never a
pass. A referenced row that is gone (project, account, company, product) has its own rule
naming it; the rules about that row's attributes leave it to that one, so the process log
gives one reason, not several.
"""

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
            fail_when="account_exists AND account_active IS NOT TRUE",
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
            id="invoice.project_missing",
            stage="invoice",
            description="The event's project row no longer exists (deleted outside BEAR): its "
            "company and customer can no longer be confirmed.",
            fail_when="NOT project_exists",
            message="project {project_id} of {event_name} no longer exists; restore the project "
            "or move the event to an existing one",
        ),
        SqlRule(
            id="invoice.account_missing",
            stage="invoice",
            description="The event's customer account row no longer exists.",
            fail_when="account_id IS NOT NULL AND NOT account_exists",
            message="account {account_id} of {event_name} no longer exists; restore the account "
            "or set an existing one on the event's project",
        ),
        SqlRule(
            id="invoice.company_missing",
            stage="invoice",
            description="The event's accounting company row no longer exists.",
            fail_when="company_id IS NOT NULL AND NOT company_exists",
            message="company {company_id} of {event_name} no longer exists; restore the company "
            "or set an existing one on the event's project",
        ),
        SqlRule(
            id="invoice.project_company_mismatch",
            stage="invoice",
            description="The document is issued by the event's own company, which must still be "
            "its project's company: when the project's company was cleared or changed after the "
            "event was generated, which company invoices is uncertain, so no document is created.",
            fail_when="project_exists AND company_id IS NOT NULL "
            "AND project_company_id IS DISTINCT FROM company_id",
            message_sql="CASE WHEN project_company_id IS NULL THEN 'project ' || project_name "
            "|| ' no longer has an accounting company but ' || event_name || ' carries company ' "
            "|| coalesce(company_name, company_id::VARCHAR) || '; set the company on the project again "
            "or regenerate the event' ELSE 'project ' || project_name || ' belongs to company ' "
            "|| project_company_id || ' but ' || event_name || ' carries company ' "
            "|| coalesce(company_name, company_id::VARCHAR) || '; regenerate the event or correct the "
            "project''s company' END",
        ),
        SqlRule(
            id="invoice.currency_not_enabled",
            stage="invoice",
            description="The company has no accounting currency for the event's currency.",
            fail_when="company_exists AND company_has_currency IS NOT TRUE",
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
            id="invoice.product_missing",
            stage="invoice",
            description="Every document line needs a services product that exists.",
            fail_when="items_product_missing > 0",
            message="item {first_item_product_missing} refers to product {first_missing_product_id}, "
            "which no longer exists ({items_product_missing} item(s) affected); restore the product "
            "or set an existing one on the item",
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
            id="invoice.period_missing",
            stage="invoice",
            description="The company keeps accounting periods but none holds the document date, so "
            "whether that period is open is unknown.",
            fail_when="company_has_periods AND period_start IS NULL",
            message="company {company_name} has no accounting period holding document date "
            "{document_date}; add the period or set an invoice date inside an existing one",
        ),
        SqlRule(
            id="invoice.amount_mismatch",
            stage="invoice",
            description="The summary amount must equal the sum of the items.",
            fail_when="summary_amount IS DISTINCT FROM coalesce(item_amount_sum, 0)",
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
            fail_when="account_exists AND account_email IS NULL",
            message="account {account_name} has no billing e-mail; the document will have to be sent by hand",
        ),
    ]
