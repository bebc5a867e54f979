"""The stages of BEAR's work — preview, release (batched, all-or-nothing per batch), invoice,
notify, revert, post — and the runner that executes queued runs in the background.

Each module is one step: ``core`` (the collaborators every stage receives), ``ids`` (which
events, and the rules' verdict on them), ``preview``, ``runs`` (records, queueing,
cancelling), ``release``, ``invoice``, ``outbox`` (notifications), ``runner``, ``tx``
(conflict retries). The stages receive a ``Core``, never the ``Workspace``.
"""

from __future__ import annotations

from bear.pipeline.core import Core
from bear.pipeline.ids import IdQuery, IdSource, action_of, judge, load_ids
from bear.pipeline.outbox import Outbox, deliver_pending, owe, summary_of
from bear.pipeline.post import post_documents
from bear.pipeline.preview import (
    blocked_reasons,
    eligibility_condition,
    eligibility_table,
    preview,
)
from bear.pipeline.runner import Runner, execute_run
from bear.pipeline.runs import (
    RunHandle,
    cancel,
    check_reason,
    check_user,
    clear_stale_claims,
    read_run,
    submit,
)
from bear.pipeline.tx import retrying, write

__all__ = [
    "Core",
    "IdQuery",
    "IdSource",
    "Outbox",
    "RunHandle",
    "Runner",
    "action_of",
    "cancel",
    "check_reason",
    "check_user",
    "clear_stale_claims",
    "deliver_pending",
    "blocked_reasons",
    "eligibility_condition",
    "eligibility_table",
    "execute_run",
    "judge",
    "load_ids",
    "owe",
    "post_documents",
    "preview",
    "read_run",
    "retrying",
    "submit",
    "summary_of",
    "write",
]
