"""Downloads of the dashboard: a frame as CSV or Excel bytes, ready for a download button.

Money is written exactly (``Decimal`` to CSV text); Excel gets at most ``EXCEL_MAX_ROWS``
rows, which is what one sheet holds. A download is opened by people in a spreadsheet, so a
text cell beginning with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
(``bear.io.FORMULA_START``, the same set ``bear export`` neutralises) gets a ``'`` before it,
column by column and vectorised; numbers, ``Decimal`` amounts and dates are never touched.
``raw=True`` writes the text as stored.
"""

from __future__ import annotations

import io
import re

import pandas as pd

from bear.io import FORMULA_START

EXCEL_MAX_ROWS = 1_000_000  # Excel holds 1,048,576 rows per sheet
_FORMULA_RE = "[" + "".join(re.escape(c) for c in FORMULA_START) + "]"


def neutralise(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose formula-like text cells start with ``'``.

    Only text is changed: object columns also hold ``Decimal`` amounts, dates and numbers,
    which ``Series.str.match`` leaves unmatched."""
    out = frame.copy()
    for col in out.columns:
        s = out[col]
        if not (s.dtype == object or isinstance(s.dtype, pd.StringDtype)):
            continue
        try:
            hit = s.str.match(_FORMULA_RE, na=False).astype(bool)
        except AttributeError:  # no text in it (pandas refuses .str on e.g. all-Decimal)
            continue
        if hit.any():
            out[col] = s.astype(object).mask(hit, "'" + s[hit].astype(str))
    return out


def frame_csv(frame: pd.DataFrame, *, raw: bool = False) -> io.BytesIO:
    """CSV bytes of a frame (Decimal written exactly; formula-like text neutralised unless
    ``raw``)."""
    buf = io.BytesIO()
    # CRLF line ends (RFC 4180): a field holding a bare carriage return is then quoted too.
    (frame if raw else neutralise(frame)).to_csv(
        buf, index=False, encoding="utf-8", lineterminator="\r\n"
    )
    buf.seek(0)
    return buf


def frame_xlsx(frame: pd.DataFrame, sheet: str = "data", *, raw: bool = False) -> io.BytesIO:
    """An Excel workbook (openpyxl) of a frame; at most ``EXCEL_MAX_ROWS`` rows; formula-like
    text neutralised unless ``raw`` (openpyxl would otherwise store ``=…`` as a formula)."""
    out = frame.head(EXCEL_MAX_ROWS).copy()
    for col in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[col]) and getattr(out[col].dt, "tz", None):
            out[col] = out[col].dt.tz_localize(None)
    if not raw:
        out = neutralise(out)
    buf = io.BytesIO()
    with pd.ExcelWriter(buf, engine="openpyxl") as xl:
        out.to_excel(xl, index=False, sheet_name=sheet[:31])
    buf.seek(0)
    return buf


def download(
    frame: pd.DataFrame, fmt: str, sheet: str = "data", *, raw: bool = False
) -> io.BytesIO:
    """``frame`` as ``csv`` or ``xlsx`` bytes (formula-like text neutralised unless ``raw``)."""
    return frame_xlsx(frame, sheet, raw=raw) if fmt == "xlsx" else frame_csv(frame, raw=raw)
