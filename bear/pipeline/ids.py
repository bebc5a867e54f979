"""The events a preview or a run is about, and the rules' verdict over them.

A face resolves what the user asked for (an id list, a selection) into an ``IdSource`` — a
sorted id array already checked against the book, or an ``IdQuery`` that selects them — so
nothing here knows what a selection is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa

from bear.config import SettingsSnapshot
from bear.errors import BearError
from bear.models import Action, RuleTiming
from bear.rules.engine import Registry, evaluate

if TYPE_CHECKING:
    from bear.pipeline.core import Core


@dataclass(frozen=True)
class IdQuery:
    """A query selecting billing event ids (one column), with its parameters."""

    sql: str
    params: dict[str, Any] = field(default_factory=dict)
    # set when the query selects every event of this kind (a selection without filters)
    whole: str | None = None


IdSource = np.ndarray | IdQuery


def load_ids(cur: duckdb.DuckDBPyConnection, source: IdSource, table: str) -> int:
    """Fill temp table ``table`` (billing_event_id) with the ids of ``source``, in id order (so
    ``rowid`` is each id's rank); returns how many."""
    if isinstance(source, IdQuery):
        cur.execute(
            f"CREATE OR REPLACE TEMP TABLE {table} AS {source.sql} ORDER BY 1", source.params
        )
    else:
        cur.register("_ids_in", pa.table({"billing_event_id": np.asarray(source, dtype=np.int64)}))
        try:
            cur.execute(
                f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT billing_event_id FROM _ids_in ORDER BY 1"
            )
        finally:
            cur.unregister("_ids_in")
    return int(cur.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])


def action_of(action: str | Action) -> Action:
    """The ``Action`` named by ``action`` (``release-and-invoice`` spelling accepted)."""
    try:
        return Action(str(getattr(action, "value", action)).replace("-", "_"))
    except ValueError:
        raise BearError(
            f"unknown action {action!r}; expected release_and_invoice, release, invoice or revert"
        ) from None


def judge(
    core: Core,
    cur: duckdb.DuckDBPyConnection,
    stages: Sequence[str],
    source: str,
    *,
    target: str = "_violations",
    as_released: bool = False,
    run_id: int | None = None,
    registry: Registry | None = None,
    settings: SettingsSnapshot | None = None,
    where: str | None = None,
) -> list[RuleTiming]:
    """Evaluate ``stages`` over the ids in temp table ``source`` of ``cur`` with the book's
    rules (or ``registry``); violations go to temp table ``target``. ``where``: a condition
    on ``billing_events e`` selecting exactly those ids, when known (every event of a kind)."""
    host = core.plugins
    host.prepare(cur)
    snap = core.snapshot() if settings is None else settings

    def new_cursor() -> duckdb.DuckDBPyConnection:
        con = core.db.con.cursor()
        host.prepare(con, remember=False)
        return con

    return evaluate(
        cur,
        host.registry if registry is None else registry,
        tuple(stages),
        source,
        target=target,
        settings=snap,
        new_cursor=new_cursor,
        timeout=float(snap.rule_timeout_s),
        invoice_as_released=as_released,
        run_id=run_id,
        where=where,
    )
