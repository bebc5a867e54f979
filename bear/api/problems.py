"""Errors as RFC 9457 problem documents: ``type``, ``title``, ``status``, ``detail``.

The ``type`` names the ``BearError`` subclass (``urn:bear:error:QueryError``) and the
document carries the error's own attributes (``name``, ``ids``, ``problems``, ``retry_after``
…), so the remote workspace raises the very exception a local workspace would. No body ever
holds a stack trace or SQL; an unexpected failure is logged with an id the body quotes.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from bear import errors
from bear.wire import jsonable

log = logging.getLogger(__name__)

MEDIA = "application/problem+json"
STATUS: dict[type[errors.BearError], int] = {
    errors.AuthError: 401,
    errors.PermissionDeniedError: 403,
    errors.NotFoundError: 404,
    errors.ThrottledError: 429,
    errors.DatabaseLockedError: 503,
    errors.SettingError: 422,
    errors.InputError: 422,
    errors.QueryError: 422,
    errors.UnknownIdsError: 422,
    errors.ImportProblemError: 422,
    errors.PluginError: 422,
}
TITLES = {
    400: "Bad request",
    401: "Not signed in",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    422: "Invalid input",
    429: "Too many attempts",
    500: "Internal error",
    503: "Unavailable",
}
_EXTRA = ("name", "value", "ids", "problems", "retry_after", "path", "rule_id", "setting")


class Problem(BaseModel):
    """An RFC 9457 problem document (and the error's own attributes, when it has any)."""

    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    detail: str


RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "model": Problem,
        "description": TITLES[status],
        "content": {MEDIA: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    for status in (400, 401, 403, 404, 422, 429, 500)
}


def status_of(exc: errors.BearError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def problem(
    status: int,
    detail: str,
    kind: str = "BearError",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": f"urn:bear:error:{kind}",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        **{k: jsonable(v) for k, v in extra.items()},
    }
    return JSONResponse(body, status_code=status, media_type=MEDIA, headers=headers)


def bear_problem(exc: errors.BearError) -> JSONResponse:
    status = status_of(exc)
    extra = {k: getattr(exc, k) for k in _EXTRA if getattr(exc, k, None) is not None}
    headers = {}
    if isinstance(exc, errors.ThrottledError):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, errors.AuthError):
        headers["WWW-Authenticate"] = 'Bearer realm="bear"'
    return problem(status, str(exc), type(exc).__name__, headers, **extra)


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` with a problem document."""

    @app.exception_handler(errors.BearError)
    async def _bear(request: Request, exc: errors.BearError) -> JSONResponse:
        return bear_problem(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors()[:5]:
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
        return problem(422, "; ".join(parts) or "invalid request", "InputError")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), "HTTPError")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        ref = uuid.uuid4().hex[:12]
        log.error(
            "unexpected error %s on %s %s", ref, request.method, request.url.path, exc_info=exc
        )
        return problem(
            500, f"the server failed; the server log has the details (ref {ref})", "InternalError"
        )
