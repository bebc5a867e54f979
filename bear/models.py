"""Enums and frozen dataclasses passed between BEAR's layers (rules, pipeline, UI, CLI)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from functools import cached_property
from typing import Any, Literal


class Stage(StrEnum):
    RELEASE = "release"
    INVOICE = "invoice"
    REVERT = "revert"


class Severity(StrEnum):
    BLOCK = "block"
    WARN = "warn"


class Action(StrEnum):
    RELEASE_AND_INVOICE = "release_and_invoice"
    RELEASE = "release"
    INVOICE = "invoice"
    REVERT = "revert"

    @property
    def stages(self) -> tuple[Stage, ...]:
        if self is Action.RELEASE:
            return (Stage.RELEASE,)
        if self is Action.INVOICE:
            return (Stage.INVOICE,)
        if self is Action.REVERT:
            return (Stage.REVERT,)
        return (Stage.RELEASE, Stage.INVOICE)


RunStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
FINAL_STATUSES = ("completed", "failed", "cancelled")

RunOutcome = Literal[
    "queued", "running", "completed", "completed with failures", "failed", "cancelled"
]
# What a run's outcome is read from: fields of ``RunResult`` and ``RunSummary``, columns of
# ``ws.runs()``.
OUTCOME_INPUTS = (
    "status",
    "selected",
    "released",
    "not_released",
    "failed_batches",
    "sales_invoices",
    "credit_notes",
    "not_passed",
    "reverted",
    "not_reverted",
)


def run_outcome(**counts: Any) -> Any:
    """What a run came to, from its ``status`` and counts (the ``OUTCOME_INPUTS``, by keyword):

    - ``completed``: it finished and every selected event was processed;
    - ``completed with failures``: it finished, but some events were not released, not
      passed to accounting or not reverted (left out up front counts), or a batch failed;
    - ``failed``: it failed, or finished having done nothing it was asked (events were
      selected, and none was released, got a document or was reverted);
    - ``cancelled``, ``queued``, ``running``: its status.

    The one definition of an outcome: each value may be one run's (a ``str`` is returned) or
    a column of many runs' (an array of outcomes is returned), so ``RunResult.outcome`` and
    ``ws.runs()`` read it alike."""
    import numpy as np

    c = counts
    status = c["status"]
    done = c["released"] + c["sales_invoices"] + c["credit_notes"] + c["reverted"]
    missed = c["not_released"] + c["failed_batches"] + c["not_passed"] + c["not_reverted"]
    finished = status == "completed"
    out = np.select(
        [
            ~np.asarray(finished),
            np.asarray((c["selected"] > 0) & (done == 0)),
            np.asarray(missed > 0),
        ],
        [np.asarray(status, dtype=object), "failed", "completed with failures"],
        default="completed",
    )
    return str(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class Violation:
    billing_event_id: int
    stage: str
    rule_id: str
    severity: str
    message: str


@dataclass(frozen=True)
class RuleTiming:
    rule_id: str
    plugin: str
    stage: str
    seconds: float
    events: int
    failed: int
    error: str | None = None


@dataclass(frozen=True)
class RunSummary:
    """Plain data handed to notification hooks when a stage of a run finishes."""

    run_id: int
    action: str
    requested_by: str
    status: str
    stage: str
    released: int = 0
    not_released: int = 0
    selected: int = 0
    excluded: int = 0
    batches: int = 0
    failed_batches: int = 0
    sales_invoices: int = 0
    credit_notes: int = 0
    not_passed: int = 0
    process_run_id: int | None = None
    # a revert run: its reason, events reverted, documents discarded, events not reverted
    # (reversing documents are counted in sales_invoices and credit_notes)
    reason: str | None = None
    reverted: int = 0
    discarded: int = 0
    not_reverted: int = 0
    link: str = ""
    recipients: tuple[str, ...] = field(default_factory=tuple)
    totals: tuple[tuple[str, str, Decimal], ...] = field(default_factory=tuple)
    # The current ``bear.config.SettingsSnapshot`` at delivery (typed there; ``models`` imports
    # nothing of BEAR).
    settings: Any = field(default=None, compare=False, repr=False)

    @property
    def outcome(self) -> str:
        """What the run came to (``run_outcome``). A summary is written when a stage ends: while
        the run goes on (the release stage of a Release and Invoice run, or a release whose run
        is closed just after), it is judged on what that stage has done."""
        status = "completed" if self.status in ("queued", "running") else self.status
        return str(
            run_outcome(**{**{k: getattr(self, k) for k in OUTCOME_INPUTS}, "status": status})
        )


@dataclass(frozen=True)
class NotifierOptions:
    """How the outbox treats one notification channel (returned by ``bear_notifier_options``).

    :ivar per_recipient: owe one delivery per recipient (each retried on its own), with
        ``summary.recipients`` holding that one address; else one delivery per notification.
    :ivar description: one line for the plugins list.
    """

    per_recipient: bool = False
    description: str = ""


# The counts that keep a finished run from ``completed``, in the words ``RunResult.shortfall``
# says them.
SHORTFALLS = (
    ("not_released", "not released"),
    ("failed_batches", "failed batches"),
    ("not_passed", "not passed to accounting"),
    ("not_reverted", "not reverted"),
)


def _frame(table: Any) -> Any:
    return table.to_pandas() if hasattr(table, "to_pandas") else table


def _fmt_int(n: object) -> str:
    return f"{n:,}" if isinstance(n, int) else str(n)


@dataclass(frozen=True)
class RunResult:
    """A run as recorded in ``runs``: its status, stage and counts."""

    id: int
    action: str
    requested_by: str
    status: str
    stage: str
    validated: bool = False
    selected: int = 0
    excluded: int = 0
    batches: int = 0
    batches_done: int = 0
    failed_batches: int = 0
    released: int = 0
    not_released: int = 0
    invoice_total: int = 0
    invoice_done: int = 0
    sales_invoices: int = 0
    credit_notes: int = 0
    not_passed: int = 0
    process_run_id: int | None = None
    error: str | None = None
    created_at: Any = None
    started_at: Any = None
    updated_at: Any = None
    finished_at: Any = None
    # A revert run (action ``revert``): why, events reverted (back to Awaiting Release),
    # documents discarded, events not reverted; the reversing documents it created are
    # counted in ``sales_invoices`` and ``credit_notes``.
    reason: str | None = None
    reverted: int = 0
    discarded: int = 0
    not_reverted: int = 0

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def documents(self) -> int:
        return self.sales_invoices + self.credit_notes

    @property
    def outcome(self) -> str:
        """What the run came to: ``completed``, ``completed with failures``, ``failed``,
        ``cancelled``, or while it goes on ``queued`` / ``running`` (``run_outcome``)."""
        return str(run_outcome(**{k: getattr(self, k) for k in OUTCOME_INPUTS}))

    @property
    def shortfall(self) -> str:
        """What the run could not do, in words (``3 not released, 3 failed batches``); empty
        when nothing."""
        return ", ".join(
            f"{getattr(self, k):,} {words}" for k, words in SHORTFALLS if getattr(self, k)
        )

    def __repr__(self) -> str:
        done = (
            f"{self.reverted:,} reverted, {self.not_reverted:,} not reverted"
            if self.action == "revert"
            else f"{self.released:,} released, {self.not_released:,} not released"
        )
        return (
            f"<RunResult {self.id} {self.action}: {self.outcome} (status {self.status}, stage "
            f"{self.stage}) — {self.selected:,} selected, {done}, {self.documents:,} documents, "
            f"{self.failed_batches:,} failed batches"
            + (f"; error: {self.error}" if self.error else "")
            + ">"
        )

    def _repr_html_(self) -> str:
        import html as _html

        rows = [
            ("outcome", self.outcome + ("" if self.finished else f" ({self.stage})")),
            ("status", self.status),
            ("requested by", self.requested_by),
            ("selected / left out up front", f"{self.selected:,} / {self.excluded:,}"),
            (
                "batches (failed)",
                f"{self.batches_done:,}/{self.batches:,} ({self.failed_batches:,})",
            ),
            ("released / not released", f"{self.released:,} / {self.not_released:,}"),
            ("sales invoices / credit notes", f"{self.sales_invoices:,} / {self.credit_notes:,}"),
            ("not passed to accounting", _fmt_int(self.not_passed)),
            ("process run", _fmt_int(self.process_run_id)),
        ]
        if self.action == "revert":
            rows[5:8] = [
                ("reason", self.reason or ""),
                ("reverted / not reverted", f"{self.reverted:,} / {self.not_reverted:,}"),
                ("documents discarded", f"{self.discarded:,}"),
                (
                    "reversing sales invoices / credit notes",
                    f"{self.sales_invoices:,} / {self.credit_notes:,}",
                ),
            ]
        if self.error:
            rows.append(("error", self.error))
        body = "".join(
            f"<tr><th style='text-align:left'>{_html.escape(k)}</th><td>{_html.escape(str(v))}</td></tr>"
            for k, v in rows
        )
        return f"<div><b>Run {self.id} — {_html.escape(self.action)}</b><table>{body}</table></div>"


@dataclass(frozen=True)
class Preview:
    """What an action over a selection would do; nothing is written to make it."""

    action: str
    selected: int
    validated: bool
    reason: str
    eligible_ids: list[int]
    violations_table: Any  # Arrow: billing_event_id, stage, rule_id, severity, message
    expected_documents: Any  # DataFrame: doc_type, currency, count, total
    blast_radius_table: Any  # Arrow: billing_event_id, batch_seq, culprits, first_culprit
    by_rule: Any  # DataFrame: stage, rule_id, severity, events
    timings: tuple[RuleTiming, ...] = ()
    seconds: float = 0.0

    @cached_property
    def violations(self) -> Any:
        """Every violation (DataFrame: billing_event_id, stage, rule_id, severity, message),
        ordered by event, stage (release first) and rule, converted from Arrow on first use: a
        million-event preview need not pay for it."""
        return _frame(
            self.violations_table.sort_by(
                [
                    ("billing_event_id", "ascending"),
                    ("stage", "descending"),
                    ("rule_id", "ascending"),
                ]
            )
        )

    @cached_property
    def blast_radius(self) -> Any:
        """Releasable events that share a batch with an unreleasable one (DataFrame, by id)."""
        return _frame(self.blast_radius_table.sort_by("billing_event_id"))

    @property
    def eligible(self) -> int:
        return len(self.eligible_ids)

    @cached_property
    def releasable(self) -> int:
        """Selected events no blocking rule of the action's first stage stops: what a run of
        the whole selection would release (Release, Release and Invoice) or invoice (Invoice).
        For Release and Invoice it counts, beyond ``eligible``, the events that can be
        released but not invoiced (they end with an ERROR process log)."""
        if not self.validated:
            return self.selected
        first = self.action if self.action in ("invoice", "revert") else "release"
        t = self.violations_table
        if t.num_rows == 0:
            return self.selected
        import pyarrow.compute as pc

        blocked = t.filter(
            pc.and_(pc.equal(t.column("stage"), first), pc.equal(t.column("severity"), "block"))
        ).column("billing_event_id")
        return self.selected - len(pc.unique(blocked))

    @property
    def ineligible(self) -> int:
        return self.selected - len(self.eligible_ids) if self.validated else 0

    def counts(self) -> dict[str, Any]:
        """The preview's figures as plain values (what ``--json`` and the HTTP API carry)."""
        return {
            "action": self.action,
            "selected": self.selected,
            "validated": self.validated,
            "reason": self.reason,
            "eligible": self.eligible,
            "ineligible": self.ineligible,
            "releasable": self.releasable,
            "seconds": round(self.seconds, 3),
        }

    def __repr__(self) -> str:
        tail = f"{self.ineligible:,} ineligible" if self.validated else "not validated"
        return f"<Preview {self.action}: {self.selected:,} selected, {self.eligible:,} eligible, {tail}>"

    def reasons(self, billing_event_id: int) -> list[str]:
        v = self.violations
        return list(v.loc[v.billing_event_id == billing_event_id, "message"])

    def _repr_html_(self) -> str:
        import html as _html

        head = (
            f"<b>Preview of {_html.escape(self.action)}</b>: {self.selected:,} selected, "
            f"{self.eligible:,} eligible"
        )
        if not self.validated:
            head += f" — <i>{_html.escape(self.reason)}</i>"
        else:
            head += f", {self.ineligible:,} ineligible ({self.seconds:.2f} s)"
        # a revert's documents say what happens to them: ``create`` (reversing) or ``discard``
        effect = "effect" in self.expected_documents.columns
        docs = "".join(
            "<tr>"
            + (f"<td>{_html.escape(str(r.effect))}</td>" if effect else "")
            + f"<td>{_html.escape(str(r.doc_type))}</td><td>{_html.escape(str(r.currency))}</td>"
            f"<td style='text-align:right'>{r.count:,}</td><td style='text-align:right'>{r.total:,.2f}</td></tr>"
            for r in self.expected_documents.itertuples()
        )
        reasons = "".join(
            f"<tr><td>{_html.escape(str(r.stage))}</td><td>{_html.escape(str(r.rule_id))}</td>"
            f"<td>{_html.escape(str(r.severity))}</td><td style='text-align:right'>{r.events:,}</td></tr>"
            for r in self.by_rule.head(12).itertuples()
        )
        blast = ""
        if self.validated and self.blast_radius_table.num_rows:
            blast = (
                f"<p>Blast radius: {self.blast_radius_table.num_rows:,} releasable events share a batch with an "
                f"unreleasable one and would fail with it if run unvalidated.</p>"
            )
        return (
            f"<div><p>{head}</p><table><thead><tr>{'<th>effect</th>' if effect else ''}"
            "<th>document</th><th>currency</th><th>count</th>"
            f"<th>total</th></tr></thead><tbody>{docs}</tbody></table>"
            + (
                f"<table><thead><tr><th>stage</th><th>rule</th><th>severity</th><th>events</th></tr></thead>"
                f"<tbody>{reasons}</tbody></table>"
                if reasons
                else ""
            )
            + blast
            + "</div>"
        )


class Role(StrEnum):
    """What a person may do: ``viewer`` reads, ``analyst`` also previews and runs,
    ``admin`` also owns settings, rules, imports, users and tokens."""

    VIEWER = "viewer"
    ANALYST = "analyst"
    ADMIN = "admin"


SCOPE_KINDS = ("companies", "regions", "practices", "groups")


@dataclass(frozen=True)
class Scopes:
    """The events a person may see and act on: each non-empty list limits them (an event must
    match every limited kind); all empty means every event."""

    companies: tuple[int, ...] = ()
    regions: tuple[str, ...] = ()
    practices: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    @property
    def unlimited(self) -> bool:
        return not (self.companies or self.regions or self.practices or self.groups)

    def as_dict(self) -> dict[str, list[Any]]:
        return {k: list(getattr(self, k)) for k in SCOPE_KINDS if getattr(self, k)}


@dataclass(frozen=True)
class User:
    """A person of the team, as BEAR knows them (never with a password or token)."""

    id: int
    name: str
    role: Role
    email: str | None = None
    scopes: Scopes = Scopes()
    disabled: bool = False
