"""What runs leave behind, as listings and frames: runs, release batches, process runs, process
logs, app logs, documents and their lines, notifications, and a preview's violations.

Each paged record type has a small frozen query value (``ProcessLogQuery``, ``AppLogQuery``,
``DocumentQuery``, ``ViolationQuery``) — plain data a screen or an API call can hold — and a
function turning it into a ``Listing`` for the pager. Whole listings (API frames, downloads)
come from the same listings, so a screen, its download and ``ws.process_logs()`` agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from bear.errors import BearError
from bear.models import OUTCOME_INPUTS, Scopes, run_outcome
from bear.queries import bounds
from bear.queries.events import joins_for
from bear.queries.filters import Filters
from bear.queries.pager import Listing, frame


# -- runs --------------------------------------------------------------------------------------
def runs(cur: duckdb.DuckDBPyConnection, limit: int = 1000) -> pd.DataFrame:
    """Recent runs, newest first, each with its ``outcome`` beside its ``status`` (read from
    the counts by ``bear.models.run_outcome``, the one definition of an outcome)."""
    listed = frame(
        cur,
        "SELECT id, action, requested_by, status, stage, selected, excluded, released, not_released, "
        "batches_total AS batches, batches_done, failed_batches, invoice_total, invoice_done, sales_invoices, "
        "credit_notes, not_passed, process_run_id, error, created_at, started_at, updated_at, finished_at, "
        "date_diff('millisecond', started_at, coalesce(finished_at, updated_at)) / 1000.0 AS seconds, "
        "reason, reverted, discarded, not_reverted "
        "FROM runs ORDER BY id DESC LIMIT $n",
        {"n": int(limit)},
    )
    outcome = run_outcome(**{k: listed[k] for k in OUTCOME_INPUTS})
    column = pd.Series(outcome, index=listed.index, dtype=listed["status"].dtype)  # text, alike
    listed.insert(listed.columns.get_loc("status") + 1, "outcome", column)
    return listed


def release_batches(cur: duckdb.DuckDBPyConnection, run_id: int) -> pd.DataFrame:
    return frame(
        cur,
        "SELECT run_id, seq, size, status, released, cause, finished_at FROM release_batches "
        "WHERE run_id = $r ORDER BY seq",
        {"r": int(run_id)},
    )


def process_runs(cur: duckdb.DuckDBPyConnection, run_id: int | None = None) -> pd.DataFrame:
    cond = "" if run_id is None else "WHERE run_id = $r"
    return frame(
        cur,
        f"SELECT * FROM process_runs {cond} ORDER BY id DESC",
        {} if run_id is None else {"r": int(run_id)},
    )


# -- scopes ------------------------------------------------------------------------------------
def scope_condition(id_expr: str, scope: Scopes | None) -> tuple[str, dict[str, Any]]:
    """``id_expr`` (an event id) among the events ``scope`` lets a person see; ``true`` for no
    or unlimited scopes. The conditions are the ones every selection of that person carries."""
    if scope is None or scope.unlimited:
        return "true", {}
    conds, params = Filters().scoped(scope).where()
    inner = " AND ".join(conds)
    return (
        f"{id_expr} IN (SELECT e.id FROM billing_events e "
        f"LEFT JOIN projects p ON p.id = e.project_id WHERE {inner})",
        params,
    )


# -- process logs ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProcessLogQuery:
    """The process logs of one process run (``None``: none), optionally of one status."""

    process_run_id: int | None
    status: str | None = None
    scope: Scopes | None = None  # the person's scopes: only their events' logs

    def __post_init__(self) -> None:
        bounds.optional_id("process_run_id", self.process_run_id)
        if self.status is not None and self.status not in ("OK", "ERROR"):
            raise BearError(f"status must be 'OK' or 'ERROR', not {self.status!r}")


_PROCESS_JOINS = {
    "d": "LEFT JOIN documents d ON d.id = l.document_id",
    "e": "LEFT JOIN billing_events e ON e.id = l.billing_event_id",
}


def process_log_listing(q: ProcessLogQuery) -> Listing:
    """One row per event the invoicing stage processed, in event order (unique per process run)."""
    params: dict[str, Any] = {"p": -1 if q.process_run_id is None else int(q.process_run_id)}
    where = "l.process_run_id = $p"
    if q.status is not None:
        where += " AND l.status = $s"
        params["s"] = q.status
    scoped, scope_params = scope_condition("l.billing_event_id", q.scope)
    where += f" AND {scoped}"
    params.update(scope_params)
    cols = {
        "billing_event_id": "l.billing_event_id",
        "event": "e.name",
        "status": "l.status",
        "message": "l.message",
        "rule_id": "l.rule_id",
        "document_id": "l.document_id",
        "document_number": "d.number",
        "process_run_id": "l.process_run_id",
        "created_at": "l.created_at",
    }
    return Listing(
        columns=tuple(cols),
        select=", ".join(f"{x} AS {n}" for n, x in cols.items()),
        base="process_logs l",
        joins=" ".join(_PROCESS_JOINS.values()),
        lean_joins="",
        where=where,
        params=params,
        # the id is the event: a process run logs each event once (primary key)
        id_expr="l.billing_event_id",
    )


# -- app logs ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class AppLogQuery:
    """App log records, oldest first: of one run, or all of them (``run_id=None``)."""

    run_id: int | None = None
    scope: Scopes | None = None  # the person's scopes: run-level records and their events'

    def __post_init__(self) -> None:
        bounds.optional_id("run_id", self.run_id)


# app_logs.level, 1 (most severe) to 6, by name
LEVEL_NAME = (
    "CASE l.level WHEN 1 THEN 'fatal' WHEN 2 THEN 'error' WHEN 3 THEN 'warning' "
    "WHEN 4 THEN 'info' WHEN 5 THEN 'debug' ELSE 'trace' END"
)


def app_log_listing(q: AppLogQuery) -> Listing:
    cols = (
        "id",
        "created_at",
        "run_id",
        "batch_seq",
        "level",
        "level_name",
        "origin",
        "record_id",
        "rule_id",
        "message",
        "detail",
    )
    if q.run_id is None:
        where, params = "true", {}
    else:
        where, params = "l.run_id = $r", {"r": int(q.run_id)}
    if q.scope is not None and not q.scope.unlimited:
        scoped, scope_params = scope_condition("l.record_id", q.scope)
        where += f" AND (l.record_id IS NULL OR {scoped})"
        params = {**params, **scope_params}
    return Listing(
        columns=cols,
        select=", ".join(
            f"{LEVEL_NAME} AS {c}" if c == "level_name" else f"l.{c} AS {c}" for c in cols
        ),
        base="app_logs l",
        joins="",
        lean_joins="",
        where=where,
        params=params,
        id_expr="l.id",
    )


# -- documents ---------------------------------------------------------------------------------
DOC_COLUMNS: dict[str, str] = {
    "id": "d.id",
    "number": "d.number",
    "doc_type": "d.doc_type",
    "billing_event_id": "d.billing_event_id",
    "account_id": "d.account_id",
    "account": "a.name",
    "company_id": "d.company_id",
    "company": "c.name",
    "currency": "d.currency",
    "total": "d.total",
    "document_date": "d.document_date",
    "process_run_id": "d.process_run_id",
    "run_id": "pr.run_id",
    "status": "d.status",
    "reverses_document_id": "d.reverses_document_id",
    "reversed_by_document_id": "rv.id",
    "posted_at": "d.posted_at",
}
DOC_STATUSES = ("in_progress", "complete", "discarded", "reversed")
_DOC_JOINS = {
    "pr": "LEFT JOIN process_runs pr ON pr.id = d.process_run_id",
    "rv": "LEFT JOIN documents rv ON rv.reverses_document_id = d.id",
    "a": "LEFT JOIN accounts a ON a.id = d.account_id",
    "c": "LEFT JOIN companies c ON c.id = d.company_id",
}


@dataclass(frozen=True)
class DocumentQuery:
    """Documents of a type (``all``, ``SIN``, ``SCN``), of a run, matching a number or account."""

    doc_type: str = "all"
    run_id: int | None = None
    search: str = ""
    scope: Scopes | None = None  # the person's scopes: documents of their events only
    status: str = "all"  # or one of DOC_STATUSES

    def __post_init__(self) -> None:
        bounds.optional_id("run_id", self.run_id)
        if self.status != "all" and self.status not in DOC_STATUSES:
            raise BearError(
                f"document status {self.status!r}: expected all or one of {', '.join(DOC_STATUSES)}"
            )


def document_listing(
    q: DocumentQuery,
    sort_by: str = "id",
    descending: bool = False,
    columns: Sequence[str] | None = None,
) -> Listing:
    if sort_by not in DOC_COLUMNS:
        raise BearError(f"cannot sort by {sort_by!r}; sortable: {', '.join(DOC_COLUMNS)}")
    cond, params = ["true"], {}
    if q.doc_type != "all":
        cond.append("d.doc_type = $dt")
        params["dt"] = q.doc_type
    if q.status != "all":
        cond.append("d.status = $st")
        params["st"] = q.status
    if q.run_id is not None:
        cond.append("pr.run_id = $run")
        params["run"] = int(q.run_id)
    if q.search.strip():
        cond.append(
            "(strpos(lower(d.number), lower($q)) > 0 OR strpos(lower(coalesce(a.name, '')), lower($q)) > 0)"
        )
        params["q"] = q.search.strip()
    scoped, scope_params = scope_condition("d.billing_event_id", q.scope)
    if scope_params:
        cond.append(scoped)
        params.update(scope_params)
    where = " AND ".join(cond)
    sort_expr = DOC_COLUMNS[sort_by]
    cols = tuple(DOC_COLUMNS) if columns is None else tuple(columns)
    return Listing(
        columns=cols,
        select=", ".join(f"{DOC_COLUMNS[c]} AS {c}" for c in cols),
        base="documents d",
        joins=" ".join(_DOC_JOINS.values()),
        # the joins are one-to-one: only those the filter and the sort use are made
        lean_joins=joins_for(f"{where} {sort_expr}", _DOC_JOINS),
        where=where,
        params=params,
        id_expr="d.id",
        sort=((sort_expr, bool(descending)),),
    )


def document_visible(
    cur: duckdb.DuckDBPyConnection, document_id: int, scope: Scopes | None
) -> bool:
    """Whether a person with ``scope`` may see document ``document_id`` (no or unlimited
    scopes: every document, existing or not — the lines query answers for it)."""
    if scope is None or scope.unlimited:
        return True
    cond, params = scope_condition("d.billing_event_id", scope)
    sql = f"SELECT count(*) FROM documents d WHERE d.id = $doc AND {cond}"
    return bool(cur.execute(sql, {**params, "doc": int(document_id)}).fetchall()[0][0])


def document_lines(cur: duckdb.DuckDBPyConnection, document_id: int) -> pd.DataFrame:
    return frame(
        cur,
        "SELECT l.*, p.name AS product FROM document_lines l LEFT JOIN products p ON p.id = l.product_id "
        "WHERE l.document_id = $d ORDER BY l.id",
        {"d": int(document_id)},
    )


# -- history -----------------------------------------------------------------------------------
def event_visible(
    cur: duckdb.DuckDBPyConnection, billing_event_id: int, scope: Scopes | None
) -> bool:
    """Whether event ``billing_event_id`` exists and a person with ``scope`` may see it."""
    cond, params = scope_condition("x.id", scope)
    sql = f"SELECT count(*) FROM billing_events x WHERE x.id = $ev AND {cond}"
    return bool(cur.execute(sql, {**params, "ev": int(billing_event_id)}).fetchall()[0][0])


def history(cur: duckdb.DuckDBPyConnection, billing_event_id: int) -> pd.DataFrame:
    """Every release, invoice and revert of one event, in the order they happened, with the
    documents they touched (number and type, and their status today)."""
    return frame(
        cur,
        """
        SELECT h.id, h.billing_event_id, h.action, h.happened_at, h.run_id, h.actor, h.reason,
               h.outcome, h.document_before, db.number AS document_before_number,
               h.document_after, da.number AS document_after_number,
               coalesce(da.status, db.status) AS document_status,
               h.reversing_document_id, rd.number AS reversing_document_number
        FROM billing_event_history h
        LEFT JOIN documents db ON db.id = h.document_before
        LEFT JOIN documents da ON da.id = h.document_after
        LEFT JOIN documents rd ON rd.id = h.reversing_document_id
        WHERE h.billing_event_id = $e ORDER BY h.id
        """,
        {"e": int(billing_event_id)},
        nullable_ints=True,
    )


# -- notifications -----------------------------------------------------------------------------
def notifications(
    cur: duckdb.DuckDBPyConnection, run_id: int | None = None, channel: str | None = None
) -> pd.DataFrame:
    cond, params = [], {}
    if run_id is not None:
        cond.append("run_id = $r")
        params["r"] = int(run_id)
    if channel is not None:
        cond.append("channel = $c")
        params["c"] = channel
    where = ("WHERE " + " AND ".join(cond)) if cond else ""
    return frame(
        cur,
        "SELECT id, run_id, kind, channel, recipient, subject, body, status, attempts, last_error, created_at, "
        f"sent_at FROM notifications {where} ORDER BY id",
        params,
    )


_INBOX = "FROM notifications WHERE channel = 'in_app' AND recipient = $u"


def inbox(
    cur: duckdb.DuckDBPyConnection, user: str, after_id: int | None = None, limit: int = 50
) -> pd.DataFrame:
    """A user's in-app notifications: the newest ``limit``, or (``after_id``) every newer one,
    oldest first; ``outcome`` is the run's (or its stage's) as the notification reported it
    (empty for notifications written before outcomes were recorded)."""
    cols = (
        "id, run_id, kind, subject, body, status, created_at, "
        "json_extract_string(payload, '$.summary.outcome') AS outcome"
    )
    if after_id is None:
        sql = f"SELECT {cols} {_INBOX} ORDER BY id DESC LIMIT {int(limit)}"
        return frame(cur, sql, {"u": str(user)})
    return frame(
        cur,
        f"SELECT {cols} {_INBOX} AND id > $last ORDER BY id",
        {"u": str(user), "last": after_id},
    )


def inbox_state(cur: duckdb.DuckDBPyConnection, user: str) -> tuple[int, int]:
    """(newest in-app notification id or 0, unread count) of a user."""
    row = cur.execute(
        f"SELECT coalesce(max(id), 0), count(*) FILTER (status = 'sent') {_INBOX}", {"u": str(user)}
    ).fetchall()[0]
    return int(row[0]), int(row[1])


def mark_read(tx: duckdb.DuckDBPyConnection, user: str, ids: Iterable[int] | None = None) -> int:
    """Mark a user's delivered in-app notifications read (all, or these ids), in ``tx``."""
    params: dict[str, Any] = {"u": str(user)}
    cond = ""
    if ids is not None:
        cond = " AND id IN (SELECT unnest($ids))"
        params["ids"] = [int(i) for i in ids]
    return int(
        tx.execute(
            f"UPDATE notifications SET status = 'read' WHERE channel = 'in_app' AND recipient = $u "
            f"AND status = 'sent'{cond}",
            params,
        ).fetchall()[0][0]
    )


# -- a preview's violations --------------------------------------------------------------------
VIOLATION_COLUMNS = ("billing_event_id", "name", "stage", "rule_id", "severity", "message")


@dataclass(frozen=True, eq=False)
class ViolationQuery:
    """The blocking violations of a preview (one row per event and rule), with event names.
    Paged like any listing: the rows, not the events, are what is counted."""

    violations: pd.DataFrame | pa.Table = field(repr=False)  # a preview's, either form

    @cached_property
    def table(self) -> pa.Table:
        cols = [c for c in VIOLATION_COLUMNS if c != "name"]
        schema = pa.schema(
            [("billing_event_id", pa.int64())] + [(c, pa.string()) for c in cols[1:]]
        )
        v = self.violations
        if isinstance(v, pa.Table):  # Arrow all the way: no pandas round trip per preview
            if v.num_rows:
                v = v.filter(pc.equal(v.column("severity"), "block")).sort_by(
                    [
                        ("billing_event_id", "ascending"),
                        ("stage", "descending"),
                        ("rule_id", "ascending"),
                    ]
                )
            t = v.select(cols).cast(schema)
        else:
            if len(v):
                v = v[v["severity"] == "block"]
            t = pa.Table.from_pandas(
                v.reindex(columns=cols).reset_index(drop=True), schema=schema, preserve_index=False
            )
        return t.append_column("_row", pa.array(np.arange(len(t), dtype=np.int64)))


def violation_listing(q: ViolationQuery) -> Listing:
    name = f"_bear_violations_{id(q):x}"
    cols = {c: ("e.name" if c == "name" else f"v.{c}") for c in VIOLATION_COLUMNS}
    return Listing(
        columns=VIOLATION_COLUMNS,
        select=", ".join(f"{x} AS {n}" for n, x in cols.items()),
        base=f"{name} v",
        joins="LEFT JOIN billing_events e ON e.id = v.billing_event_id",
        lean_joins="",
        where="true",
        params={},
        id_expr="v._row",  # the preview's order
        tables={name: q.table},
    )
