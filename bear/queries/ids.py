"""Id lists a caller hands in: whole numbers, sorted and distinct, every one a billing event
of the book (unknown ids are an error naming them, before anything runs)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from bear.errors import BearError, UnknownIdsError


def resolve_id_array(
    cur: duckdb.DuckDBPyConnection, ids: Sequence[int] | Iterable[int]
) -> np.ndarray:
    """Sorted, distinct ids of an id list as an int64 array; unknown ids raise, naming them.
    Whole-number lists and arrays are checked vectorised; anything else id by id."""
    if isinstance(ids, str | bytes) or not isinstance(ids, Iterable):
        raise BearError(f"expected a list of billing event ids or a selection, not {ids!r}")
    arr = int_array(ids)
    if arr.size == 0:
        return arr
    cur.register("_resolve_in", pa.table({"i": arr}))
    try:
        missing = [
            r[0]
            for r in cur.execute(
                "SELECT i FROM _resolve_in WHERE i NOT IN (SELECT id FROM billing_events) ORDER BY i"
            ).fetchall()
        ]
    finally:
        cur.unregister("_resolve_in")
    if missing:
        shown = ", ".join(str(i) for i in missing[:20]) + (" …" if len(missing) > 20 else "")
        raise UnknownIdsError(
            f"{len(missing)} unknown billing event id(s): {shown}; nothing was run", ids=missing
        )
    return arr


def int_array(values: Any) -> np.ndarray:
    """Sorted distinct int64 ids of ``values``; a value that is not a whole number raises."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "iu" and values.ndim == 1:
        return np.unique(values.astype(np.int64))
    seq = values if isinstance(values, Sequence) else list(values)
    if all(type(v) is int for v in seq):  # the common case: plain ints, converted at C speed
        try:
            return np.unique(np.fromiter(seq, dtype=np.int64, count=len(seq)))
        except OverflowError:
            pass  # named below
    ids: list[int] = []
    for v in seq:
        if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
            raise BearError(f"{v!r} is not a billing event id")
        try:
            ids.append(int(v))
        except (TypeError, ValueError):
            raise BearError(f"{v!r} is not a billing event id") from None
        if not -(2**63) <= ids[-1] < 2**63:
            raise BearError(f"{v!r} is not a billing event id")
    return np.unique(np.array(ids, dtype=np.int64))
