"""Files in and out through the API: ``POST /api/v1/imports`` (an admin uploads files to
import, all or nothing) and ``GET /api/v1/exports`` (the book's tables in the import shapes, as
one ZIP).

The files travel as ``multipart/form-data``, one part per kind (``events``, ``items``, …) whose
file name ends in ``.csv`` or ``.parquet``; they are written to a private temporary folder and
handed to the same ``Workspace.import_files`` the CLI calls, with the signed-in person as the
author. Problems name the uploaded file, not the temporary copy.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from bear.api.context import Context, Principal, context, principal
from bear.api.problems import RESPONSES
from bear.errors import ImportProblemError, InputError
from bear.io import FORMATS, KINDS
from bear.selection import Kind

router = APIRouter(prefix="/api/v1", responses=RESPONSES)

MAX_UPLOAD = 2 * 1024**3  # bytes per request
SUFFIXES = (".csv", ".parquet")


class ImportOut(BaseModel):
    rows: dict[str, int]
    dry_run: bool


@router.post(
    "/imports",
    response_model=ImportOut,
    tags=["imports"],
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {k: {"type": "string", "format": "binary"} for k in KINDS},
                    }
                }
            },
            "required": True,
        }
    },
)
async def import_files(
    request: Request,
    dry_run: bool = False,
    who: Principal = Depends(principal),
    ctx: Context = Depends(context),
) -> dict[str, Any]:
    """Import CSV or Parquet files, one form part per kind, all or nothing (admin)."""
    who.require("import")
    if int(request.headers.get("content-length") or 0) > MAX_UPLOAD:
        raise InputError("the upload is larger than 2 GiB", name="files")
    folder = Path(tempfile.mkdtemp(prefix="bear-import-"))
    names: dict[str, str] = {}
    try:
        form = await request.form()
        paths: dict[str, str] = {}
        for kind, part in form.multi_items():
            if kind not in KINDS:
                raise InputError(
                    f"unknown import kind {kind!r}; kinds are {', '.join(KINDS)}", name=kind
                )
            if isinstance(part, str) or not getattr(part, "filename", None):
                raise InputError(f"{kind}: send a file, not a text field", name=kind)
            suffix = Path(part.filename).suffix.lower()
            if suffix not in SUFFIXES:
                raise InputError(
                    f"{kind}: {part.filename!r} is not a .csv or .parquet file", name=kind
                )
            target = folder / f"{kind}{suffix}"
            with target.open("wb") as out:
                shutil.copyfileobj(part.file, out)
            paths[kind] = str(target)
            names[str(target)] = part.filename
        if not paths:
            raise InputError("nothing to import: send one file per kind", name="files")
        try:
            return await run_in_threadpool(
                lambda: ctx.ws.import_files(dry_run=dry_run, actor=who.name, **paths)
            )
        except ImportProblemError as exc:
            problems = [
                {**p, "file": names.get(str(p.get("file")), p.get("file"))} for p in exc.problems
            ]
            message = str(exc)
            for temp, shown in names.items():
                message = message.replace(temp, shown)
            raise ImportProblemError(message, problems=problems) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@router.get(
    "/exports",
    tags=["imports"],
    responses={
        200: {"description": "a ZIP of one file per kind", "content": {"application/zip": {}}}
    },
)
def export_files(
    fmt: str = "csv",
    raw: bool = False,
    who: Principal = Depends(principal),
    ctx: Context = Depends(context),
) -> Response:
    """Every kind's table in the import shapes, one file each, as a ZIP (viewer). CSV text
    cells that a spreadsheet would run as a formula are neutralised unless ``raw``."""
    import io
    import zipfile

    who.require("read")
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}; expected csv or parquet", name="fmt")
    folder = Path(tempfile.mkdtemp(prefix="bear-export-"))
    try:
        written = ctx.ws.export_files(folder / "out", fmt=fmt, raw=raw)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for path in written.values():
                z.write(path, arcname=Path(path).name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return Response(
        buf.getvalue(),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="bear-export-{fmt}.zip"'},
    )


@router.get(
    "/events/export",
    tags=["events"],
    responses={
        200: {
            "description": "the selection's events as CSV or an Excel workbook, streamed",
            "content": {
                "text/csv": {},
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {},
            },
        }
    },
)
def export_events(
    kind: Kind = "awaiting_release",
    filters: str = "{}",
    sort: str = "id:asc",
    columns: str = "",
    fmt: str = "csv",
    raw: bool = False,
    who: Principal = Depends(principal),
    ctx: Context = Depends(context),
) -> StreamingResponse:
    """Every event of a selection — ``kind`` and ``filters`` (a JSON object, as in the other
    event routes), limited to the caller's scopes — sorted by ``sort`` (``column:asc|desc``),
    with ``columns`` (comma-separated; default every column), as ``csv`` or ``xlsx``. Streamed
    in chunks from SQL: any size, one batch of rows in memory. Formula-like text is
    neutralised unless ``raw``."""
    import json

    from bear.api.routes import SelectionIn, _events

    who.require("read")
    try:
        chosen = json.loads(filters)
    except ValueError:
        raise InputError("filters: expected a JSON object", name="filters") from None
    if not isinstance(chosen, dict):
        raise InputError("filters: expected a JSON object", name="filters")
    column, _, direction = sort.partition(":")
    cols = [c.strip() for c in columns.split(",") if c.strip()] or None
    sel = _events(ctx, SelectionIn(kind=kind, filters=chosen), who)
    chunks = ctx.ws.export_stream(
        sel, fmt, sort=[(column, direction or "asc")], columns=cols, raw=raw
    )
    media = "text/csv" if fmt == "csv" else XLSX
    name = f"bear-{kind.replace('_', '-')}.{fmt}"
    return StreamingResponse(
        chunks, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
