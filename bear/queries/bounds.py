"""Bounds of the numbers a caller hands in, checked before any of them reaches SQL.

One function per kind of number, used by every filter and argument of that kind: ``whole``
(a whole number within bounds: ids, offsets, limits, page sizes), ``ids`` (a list of ids, as a
filter takes them) and ``amount`` (money: finite, and within what the amount column's
``DECIMAL`` holds). Each raises ``InputError`` naming the filter or argument and the allowed
range, e.g. ``filter 'min_amount': 1E+400 is out of range; allowed -9999999999999999.99 to
9999999999999999.99`` — never DuckDB's conversion error, nor Python's ``ValueError``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from bear.db.schema import TABLES
from bear.errors import InputError

__all__ = [
    "AMOUNT_MAX",
    "AMOUNT_MIN",
    "BIGINT_MAX",
    "PAGE_SIZE_MAX",
    "amount",
    "id_",
    "ids",
    "optional_id",
    "whole",
]

BIGINT_MAX = 2**63 - 1
"""The largest id (ids are BIGINT, and positive)."""

PAGE_SIZE_MAX = 10_000
"""The most rows one page holds."""


def _amount_bounds() -> tuple[Decimal, Decimal]:
    """The range of the event amount column's ``DECIMAL(p,s)`` (read from the schema)."""
    sql_type = TABLES["billing_events"].column("summary_amount").sql_type
    found = re.fullmatch(r"DECIMAL\((\d+),\s*(\d+)\)", sql_type)
    assert found, sql_type
    p, s = int(found.group(1)), int(found.group(2))
    top = Decimal(10 ** (p - s)) - Decimal(1).scaleb(-s)
    return -top, top


AMOUNT_MIN, AMOUNT_MAX = _amount_bounds()
"""What an amount filter may be: the range of the amount column (DECIMAL(18,2))."""

_WHOLE_TEXT = re.compile(r"\s*[+-]?[0-9]{1,40}\s*")


def _shown(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def whole(
    name: str, value: Any, lo: int, hi: int, *, label: str | None = None, text: bool = False
) -> int:
    """``value`` as a whole number from ``lo`` to ``hi``: an int (numpy integers too, never a
    bool, a float or text — ``"1 OR 1=1"`` is refused, not parsed); with ``text``, also the
    digits of one as text (a command-line argument).

    :param name: the filter or argument, named in the message (``label`` if given).
    :raises InputError: when it is not a whole number or is out of range."""
    what = label or name
    number: int | None = None
    if isinstance(value, str):
        number = int(value) if text and _WHOLE_TEXT.fullmatch(value) else None
    elif not isinstance(value, bool):
        try:
            number = operator.index(value)  # int, numpy integers; not float, Decimal, str
        except TypeError:
            number = None
    if number is None:
        raise InputError(
            f"{what}: {_shown(repr(value))} is not a whole number (allowed {lo} to {hi})",
            name=name,
            value=value,
        )
    if not lo <= number <= hi:
        raise InputError(
            f"{what}: {_shown(value)} is out of range; allowed {lo} to {hi}",
            name=name,
            value=value,
        )
    return number


def id_(name: str, value: Any, *, label: str | None = None, text: bool = False) -> int:
    """A positive id that fits BIGINT (a run, a document, a company …)."""
    return whole(name, value, 1, BIGINT_MAX, label=label, text=text)


def optional_id(name: str, value: Any) -> int | None:
    """``None``, or a positive id that fits BIGINT."""
    return None if value is None else id_(name, value)


def ids(
    name: str, values: Sequence[Any], *, label: str | None = None, text: bool = False
) -> tuple[int, ...]:
    """Positive ids that fit BIGINT (with ``text``, digits as text too). A list of plain ints
    is checked by its least and greatest value (at C speed: these lists can hold a million
    unticked rows)."""
    if all(type(v) is int for v in values):
        if values and (min(values) < 1 or max(values) > BIGINT_MAX):
            bad = next(v for v in values if not 1 <= v <= BIGINT_MAX)
            id_(name, bad, label=label)  # raises, naming the first one out of range
        return tuple(values)
    return tuple(id_(name, v, label=label, text=text) for v in values)


def amount(name: str, value: Any, *, label: str | None = None) -> Decimal:
    """``value`` as a ``Decimal`` amount: finite and within ``AMOUNT_MIN`` … ``AMOUNT_MAX``.

    A float is taken by its shortest repr (``0.1`` is ``Decimal("0.1")``)."""
    what = label or name
    allowed = f"allowed {AMOUNT_MIN} to {AMOUNT_MAX}"
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise InputError(
            f"{what}: {_shown(repr(value))} is not an amount ({allowed})", name=name, value=value
        )
    try:
        d = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except (InvalidOperation, ValueError):
        raise InputError(
            f"{what}: {_shown(repr(value))} is not an amount ({allowed})", name=name, value=value
        ) from None
    if not d.is_finite() or not AMOUNT_MIN <= d <= AMOUNT_MAX:
        raise InputError(
            f"{what}: {_shown(value)} is out of range; {allowed}", name=name, value=value
        )
    return d
