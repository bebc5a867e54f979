"""A listing written out as CSV or Excel in chunks straight from SQL, for downloads of any size.

The query's rows are fetched as Arrow record batches (``batch_rows`` at a time) and written as
they come, so a million-row download never holds more than one batch in Python. CSV is
produced as a stream of bytes; an Excel workbook is a zip written at the end, so its rows are
appended to a write-only workbook on a temporary file (one batch in memory) that is then
streamed, at most ``EXCEL_MAX_ROWS`` rows (what a sheet holds). Text a spreadsheet would take
for a formula is neutralised in SQL (``neutral_sql``) unless ``raw``; money stays exact
(DECIMAL is written as its decimal text in CSV, as a number in Excel).
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv

from bear.errors import BearError
from bear.io.export import neutral_sql
from bear.io.sql import ident

EXCEL_MAX_ROWS = 1_000_000  # a sheet holds 1,048,576 rows
BATCH_ROWS = 50_000
CHUNK_BYTES = 1 << 20


def _neutral_select(cur: duckdb.DuckDBPyConnection, sql: str, params: Mapping[str, Any]) -> str:
    """``sql`` with its text columns neutralised (their names and order kept)."""
    schema = (
        cur.sql(f"SELECT * FROM ({sql}) q LIMIT 0", params=dict(params)).to_arrow_table().schema
    )
    cols = [
        f"{neutral_sql(f'q.{ident(f.name)}')} AS {ident(f.name)}"
        if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
        else f"q.{ident(f.name)}"
        for f in schema
    ]
    return f"SELECT {', '.join(cols)} FROM ({sql}) q"


def batches(
    cur: duckdb.DuckDBPyConnection,
    sql: str,
    params: Mapping[str, Any],
    *,
    raw: bool = False,
    batch_rows: int = BATCH_ROWS,
) -> pa.RecordBatchReader:
    """The rows of ``sql`` as Arrow record batches of at most ``batch_rows`` rows. The query
    runs now (so a bad one fails before anything is sent); its rows are read as they go."""
    query = sql if raw else _neutral_select(cur, sql, params)
    return cur.sql(query, params=dict(params)).to_arrow_reader(batch_rows)


def csv_chunks(batches_: pa.RecordBatchReader) -> Iterator[bytes]:
    """CSV bytes (a header, then every row) of record batches, as they come."""
    buf = io.BytesIO()
    writer: pa_csv.CSVWriter | None = None
    for batch in batches_:
        if writer is None:
            writer = pa_csv.CSVWriter(buf, batch.schema)
        writer.write_batch(batch)
        if buf.tell() >= CHUNK_BYTES:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    if writer is not None:
        writer.close()
    yield buf.getvalue()


def xlsx_chunks(batches_: pa.RecordBatchReader, sheet: str = "data") -> Iterator[bytes]:
    """An Excel workbook of record batches (at most ``EXCEL_MAX_ROWS`` rows), written on a
    temporary file one batch at a time, then read back in chunks."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    ws = book.create_sheet(sheet[:31])
    rows = 0
    header = False
    for batch in batches_:
        if not header:
            ws.append(batch.schema.names)
            header = True
        take = min(batch.num_rows, EXCEL_MAX_ROWS - rows)
        columns = [_naive(batch.column(i)).to_pylist()[:take] for i in range(batch.num_columns)]
        for row in zip(*columns, strict=True):  # serialising cells: openpyxl takes rows
            ws.append(row)
        rows += take
        if rows >= EXCEL_MAX_ROWS:
            break
    fd, path = tempfile.mkstemp(suffix=".xlsx")
    os.close(fd)
    try:
        book.save(path)
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                yield chunk
    finally:
        os.unlink(path)


def _naive(column: pa.Array) -> pa.Array:
    """Time stamps without their time zone (Excel has none); other columns as they are."""
    if pa.types.is_timestamp(column.type) and column.type.tz is not None:
        return column.cast(pa.timestamp(column.type.unit))
    return column


def chunks(
    cur: duckdb.DuckDBPyConnection,
    sql: str,
    params: Mapping[str, Any],
    fmt: str,
    *,
    raw: bool = False,
    sheet: str = "data",
) -> Iterator[bytes]:
    """``sql``'s rows as ``csv`` or ``xlsx`` bytes, chunk by chunk."""
    if fmt not in ("csv", "xlsx"):
        raise BearError(f"unknown download format {fmt!r}; expected csv or xlsx")
    rows = batches(cur, sql, params, raw=raw)
    return csv_chunks(rows) if fmt == "csv" else xlsx_chunks(rows, sheet)
