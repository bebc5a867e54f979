"""Downloads of the dashboard: a frame as CSV or Excel bytes, ready for a download button.

Money is written exactly (``Decimal`` to CSV text); Excel gets at most ``EXCEL_MAX_ROWS``
rows, which is what one sheet holds.
"""

from __future__ import annotations

import io

import pandas as pd

EXCEL_MAX_ROWS = 1_000_000  # Excel holds 1,048,576 rows per sheet


def frame_csv(frame: pd.DataFrame) -> io.BytesIO:
    """CSV bytes of a frame (Decimal written exactly)."""
    buf = io.BytesIO()
    frame.to_csv(buf, index=False, encoding="utf-8")
    buf.seek(0)
    return buf


def frame_xlsx(frame: pd.DataFrame, sheet: str = "data") -> io.BytesIO:
    """An Excel workbook (openpyxl) of a frame; at most ``EXCEL_MAX_ROWS`` rows."""
    out = frame.head(EXCEL_MAX_ROWS).copy()
    for col in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[col]) and getattr(out[col].dt, "tz", None):
            out[col] = out[col].dt.tz_localize(None)
    buf = io.BytesIO()
    with pd.ExcelWriter(buf, engine="openpyxl") as xl:
        out.to_excel(xl, index=False, sheet_name=sheet[:31])
    buf.seek(0)
    return buf


def download(frame: pd.DataFrame, fmt: str, sheet: str = "data") -> io.BytesIO:
    """``frame`` as ``csv`` or ``xlsx`` bytes."""
    return frame_xlsx(frame, sheet) if fmt == "xlsx" else frame_csv(frame)
