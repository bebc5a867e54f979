"""The HTTP API (``/api/v1``): the third face of the one core, served by ``bear serve``.

``create_api(ws, owner)`` returns the FastAPI application with every route, the problem
documents for errors and the OpenAPI document at ``/api/v1/openapi.json``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from bear import __version__
from bear.api import admin, imports, problems, routes
from bear.api.context import Context, Principal, principal, principal_of

__all__ = ["Context", "Principal", "create_api", "principal", "principal_of"]


def create_api(ws: Any, owner: str, ctx: Context | None = None) -> FastAPI:
    """The API over ``ws``; ``owner`` acts while the book has no users (single-user mode)."""
    app = FastAPI(
        title="BEAR",
        version=__version__,
        description="Release billing events and turn them into sales invoices and credit notes.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    app.state.bear = ctx or Context(ws=ws, owner=owner)
    problems.install(app)
    app.include_router(routes.router)
    app.include_router(admin.router)
    app.include_router(imports.router)
    return app
