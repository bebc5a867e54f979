"""Posting documents to accounting: a sales invoice or credit note goes from ``in_progress``
to ``complete`` (DESIGN §8). Only a document in progress can be posted; a posted document is
no longer discarded by a revert but reversed by an opposite document.

All or nothing: every document named must be in progress, else nothing is posted and the
error names each one that cannot be, and why.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import duckdb
import pandas as pd

from bear.errors import BearError, NotFoundError
from bear.pipeline.runs import check_user, read_run
from bear.pipeline.tx import retrying
from bear.queries import bounds

if TYPE_CHECKING:
    from bear.pipeline.core import Core

SHOWN = 10  # documents an error names before "… and N more"

_POSTED = (
    "SELECT id, number, doc_type, billing_event_id, status, posted_at, posted_by "
    "FROM documents WHERE id IN (SELECT id FROM _post_ids) ORDER BY id"
)


def post_documents(
    core: Core,
    document_ids: Iterable[int] | None = None,
    *,
    run_id: int | None = None,
    user: str,
) -> pd.DataFrame:
    """Post the documents ``document_ids`` — or every document in progress that run
    ``run_id`` created — as ``user``; returns them (id, number, doc_type, billing_event_id,
    status, posted_at, posted_by)."""
    user = check_user(user)
    if (document_ids is None) == (run_id is None):
        raise BearError("post: give document ids or a run id (one of the two)")
    if run_id is not None:
        run_id = bounds.id_("run_id", run_id)
        read_run(core.db.cursor(), run_id)  # an unknown run is named
        ids: list[int] | None = None
    else:
        if isinstance(document_ids, str | bytes):
            raise BearError("post: give a list of document ids, not text")
        ids = bounds.ids("document_ids", list(document_ids or []))
        if not ids:
            raise BearError("post: no document ids given")

    def work() -> pd.DataFrame:
        with core.db.transaction() as tx:
            n = _load(tx, ids, run_id)
            _check(tx, ids, run_id, n)
            tx.execute(
                "UPDATE documents SET status = 'complete', posted_at = current_timestamp, "
                "posted_by = $u, status_changed_at = current_timestamp "
                "WHERE id IN (SELECT id FROM _post_ids) AND status = 'in_progress'",
                {"u": user},
            )
            changed = int(
                tx.execute(
                    "SELECT count(*) FROM documents WHERE id IN (SELECT id FROM _post_ids) "
                    "AND status = 'complete' AND posted_by = $u",
                    {"u": user},
                ).fetchall()[0][0]
            )
            if changed != n:
                raise BearError(
                    f"post: {n - changed} document(s) changed state while being posted; "
                    "nothing was posted, try again"
                )
            return tx.sql(_POSTED).df()

    out = retrying(work)
    core.refresh()
    return out


def _load(tx: duckdb.DuckDBPyConnection, ids: list[int] | None, run_id: int | None) -> int:
    """Fill temp table ``_post_ids`` (id) with the documents to post; returns how many."""
    if ids is not None:
        tx.execute(
            "CREATE OR REPLACE TEMP TABLE _post_ids AS SELECT DISTINCT unnest($ids::BIGINT[]) AS id",
            {"ids": ids},
        )
    else:
        tx.execute(
            "CREATE OR REPLACE TEMP TABLE _post_ids AS SELECT d.id FROM documents d "
            "JOIN process_runs pr ON pr.id = d.process_run_id "
            "WHERE pr.run_id = $r AND d.status = 'in_progress'",
            {"r": run_id},
        )
    return int(tx.execute("SELECT count(*) FROM _post_ids").fetchall()[0][0])


def _check(
    tx: duckdb.DuckDBPyConnection, ids: list[int] | None, run_id: int | None, n: int
) -> None:
    """Refuse (naming them) unknown documents and documents not in progress."""
    if ids is None:
        if n == 0:
            raise BearError(f"post: run {run_id} has no document in progress to post")
        return
    unknown = [
        r[0]
        for r in tx.execute(
            "SELECT id FROM _post_ids WHERE id NOT IN (SELECT id FROM documents) ORDER BY id"
        ).fetchall()
    ]
    if unknown:
        more = f" … and {len(unknown) - SHOWN} more" if len(unknown) > SHOWN else ""
        raise NotFoundError(
            f"post: unknown document id(s) {', '.join(map(str, unknown[:SHOWN]))}{more}; "
            "nothing was posted"
        )
    wrong = tx.execute(
        "SELECT number, status FROM documents WHERE id IN (SELECT id FROM _post_ids) "
        "AND status <> 'in_progress' ORDER BY id"
    ).fetchall()
    if wrong:
        named = "; ".join(f"{num} is {st.replace('_', ' ')}" for num, st in wrong[:SHOWN])
        more = f" … and {len(wrong) - SHOWN} more" if len(wrong) > SHOWN else ""
        raise BearError(
            f"post: only documents in progress can be posted: {named}{more}; nothing was posted"
        )


def auto_post(tx: duckdb.DuckDBPyConnection, process_run_id: int | None, user: str) -> int:
    """Post every document in progress of ``process_run_id`` (the ``auto_post`` setting), in
    the caller's transaction; returns how many."""
    if process_run_id is None:
        return 0
    return int(
        tx.execute(
            "UPDATE documents SET status = 'complete', posted_at = current_timestamp, "
            "posted_by = $u, status_changed_at = current_timestamp "
            "WHERE process_run_id = $p AND status = 'in_progress'",
            {"p": process_run_id, "u": user},
        ).fetchall()[0][0]
    )
