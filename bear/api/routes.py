"""The HTTP API, version 1: the third face of the one core.

Every route checks the caller's permission (``bear.auth.permissions``) and calls the same
``Workspace`` method the dashboard and a notebook call; none holds business logic. Tables come
back as Arrow IPC when the client accepts ``application/vnd.apache.arrow.stream`` (the remote
workspace does), else as JSON ``{"columns", "rows"}`` with money as exact decimal text.
"""

from __future__ import annotations

import datetime
from typing import Annotated, Any, Literal

import pandas as pd
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from bear.api.context import Context, Principal, context, principal
from bear.api.problems import RESPONSES
from bear.db.schema import CATEGORIES
from bear.errors import BearError, PermissionDeniedError
from bear.models import RunOutcome
from bear.selection import Filters
from bear.wire import ARROW, arrow_bytes, preview_arrow, preview_json, run_json, table_json

router = APIRouter(prefix="/api/v1", responses=RESPONSES)

Kind = Literal["awaiting_release", "awaiting_invoice", "released", "invoiced", "all"]
ActionName = Literal["release_and_invoice", "release", "invoice", "revert"]


class TableOut(BaseModel):
    """A table: column names and rows (money as decimal text)."""

    columns: list[str]
    rows: list[list[Any]]


Id = Annotated[int, Field(ge=1, le=2**63 - 1)]
Currency = Annotated[str, Field(pattern="^[A-Za-z]{3}$")]
Category = Literal[CATEGORIES]  # type: ignore[valid-type]
Money = Annotated[str, Field(pattern=r"^-?\d{1,16}(\.\d{1,2})?$", examples=["1000.00"])]


class FiltersIn(BaseModel):
    """The filters of a selection (DESIGN §2.1); each left out means "any". A list filter
    takes one value or a list."""

    model_config = ConfigDict(extra="forbid")
    company: list[Id] | Id | None = None
    account: list[Id] | Id | None = None
    project: list[Id] | Id | None = None
    region: list[str] | str | None = None
    practice: list[str] | str | None = None
    grp: list[str] | str | None = None
    currency: list[Currency] | Currency | None = None
    date_from: datetime.date | None = None
    date_to: datetime.date | None = None
    min_amount: Money | None = None
    max_amount: Money | None = None
    category: list[Literal[CATEGORIES]] | None = None  # type: ignore[valid-type]
    search: str | None = Field(default=None, max_length=200)
    eligibility: str | None = Field(
        default=None, max_length=200, description="eligible, ineligible or a rule id"
    )
    ids: list[Id] | None = None
    exclude_ids: list[Id] | None = None


class SelectionIn(BaseModel):
    """Which events: a kind and filters, or explicit ``ids``."""

    model_config = ConfigDict(extra="forbid")
    kind: Kind = "awaiting_release"
    # Documented as ``FiltersIn``; checked by the core (``Filters.build``), so a bad filter
    # is refused with the very message a local workspace gives.
    filters: dict[str, Any] = Field(
        default_factory=dict,
        json_schema_extra={
            "properties": FiltersIn.model_json_schema()["properties"],
            "additionalProperties": False,
        },
    )
    ids: list[int] | None = Field(default=None, max_length=10_000_000)


class PageIn(SelectionIn):
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=50, ge=1, le=10_000)
    # checked by the core (whitelisted columns, asc/desc), which names a bad one
    sort: list[tuple[str, str]] | None = None


class PreviewIn(SelectionIn):
    action: ActionName = "release_and_invoice"
    full: bool = False


class RunIn(SelectionIn):
    action: ActionName = "release_and_invoice"
    full: bool = False
    reason: str | None = Field(
        default=None, max_length=2000, description="why: required for a revert, else none"
    )


class PostIn(BaseModel):
    """The documents to post: their ids, or a run whose documents in progress to post."""

    model_config = ConfigDict(extra="forbid")
    document_ids: list[Id] | None = Field(default=None, max_length=1_000_000)
    run_id: Id | None = None


class CountOut(BaseModel):
    count: int


class RunOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int
    action: str
    requested_by: str
    status: str = Field(description="queued, running, completed, failed or cancelled")
    outcome: RunOutcome = Field(
        description="what the run came to: completed (every selected event processed), "
        "completed with failures (some not released, not passed to accounting or not "
        "reverted, or a batch failed), failed (it failed, or did nothing it was asked), "
        "cancelled; queued or running while it goes on"
    )
    stage: str


class QueuedOut(BaseModel):
    id: int
    status: str
    outcome: RunOutcome = "queued"


class SqlIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(max_length=100_000)
    params: dict[str, Any] = Field(default_factory=dict)


class MeOut(BaseModel):
    name: str
    role: str
    email: str | None = None
    scopes: dict[str, list[Any]] = Field(default_factory=dict)
    single_user: bool


TABLE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A table: JSON, or Arrow IPC when asked for with Accept",
        "content": {ARROW: {}},
    }
}


PREVIEW_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A preview: JSON, or one Arrow IPC stream when asked for with Accept",
        "content": {ARROW: {}},
    }
}


class PreviewOut(BaseModel):
    """A preview: its counts and timings, and each table as columns and rows."""

    model_config = ConfigDict(extra="allow")
    action: str
    selected: int
    validated: bool
    eligible: int
    ineligible: int
    releasable: int
    reason: str
    seconds: float
    timings: list[dict[str, Any]]
    eligible_ids: TableOut
    violations: TableOut
    expected_documents: TableOut
    blast_radius: TableOut
    by_rule: TableOut


def table(request: Request, frame: pd.DataFrame | Any) -> Response:
    """``frame`` as Arrow IPC or JSON, as the client asked (``Accept``)."""
    if ARROW in request.headers.get("accept", ""):
        return Response(arrow_bytes(frame), media_type=ARROW)
    return JSONResponse(table_json(frame))


def selection(ctx: Context, body: SelectionIn, who: Principal) -> Any:
    """The selection a request names (filters validated by the core), limited to what the
    caller may see (their scopes). Explicit ids outside those scopes are refused."""
    ws = ctx.ws
    built = Filters.build(**body.filters)  # the core names a bad filter (InputError)
    scopes = who.user.scopes if who.user is not None else None
    if body.ids is None:
        return ws.selection(body.kind, built.scoped(scopes))
    if scopes is None or scopes.unlimited:
        return body.ids
    wanted = set(body.ids)
    inside = ws.count(ws.selection("all", Filters.build(ids=sorted(wanted)).scoped(scopes)))
    if inside != len(wanted):
        raise PermissionDeniedError(
            f"{len(wanted) - inside:,} of the {len(wanted):,} events given are outside "
            f"what {who.name} may act on"
        )
    return body.ids


def _events(ctx: Context, body: SelectionIn, who: Principal) -> Any:
    picked = selection(ctx, body, who)
    if isinstance(picked, list):  # explicit ids: the events of that kind among them
        return ctx.ws.selection(body.kind, Filters.build(ids=picked))
    return picked


# -- who am I ---------------------------------------------------------------------------------
@router.get("/me", response_model=MeOut, tags=["session"])
def me(who: Principal = Depends(principal), ctx: Context = Depends(context)) -> MeOut:
    """The person the request acts for."""
    user = who.user
    return MeOut(
        name=who.name,
        role=user.role.value if user else "admin",
        email=user.email if user else None,
        scopes=user.scopes.as_dict() if user else {},
        single_user=user is None,
    )


# -- events -----------------------------------------------------------------------------------
@router.get("/filter-options", response_model=dict[str, Any], tags=["events"])
def filter_options(
    who: Principal = Depends(principal), ctx: Context = Depends(context)
) -> dict[str, Any]:
    """The values the book's filters know, as the dashboard's filter lists show them:
    ``company``, ``account``, ``project`` and ``eligibility`` as label → value, ``region``,
    ``practice``, ``grp``, ``currency`` and ``category`` as lists."""
    who.require("read")
    return ctx.ws.filter_options()


@router.post("/events/count", response_model=CountOut, tags=["events"])
def count(
    body: SelectionIn, who: Principal = Depends(principal), ctx: Context = Depends(context)
) -> CountOut:
    """How many events a selection holds."""
    who.require("read")
    return CountOut(count=ctx.ws.count(_events(ctx, body, who)))


@router.post("/events/page", responses=TABLE_RESPONSES, response_model=TableOut, tags=["events"])
def page(
    body: PageIn,
    request: Request,
    who: Principal = Depends(principal),
    ctx: Context = Depends(context),
) -> Response:
    """One page of a selection's events, sorted."""
    who.require("read")
    rows = ctx.ws.page_table(_events(ctx, body, who), body.offset, body.limit, body.sort)
    return table(request, rows)


@router.post("/events/totals", responses=TABLE_RESPONSES, response_model=TableOut, tags=["events"])
def totals(
    body: SelectionIn,
    request: Request,
    who: Principal = Depends(principal),
    ctx: Context = Depends(context),
) -> Response:
    """Per currency: events, amount, expected sales invoices and credit notes, projects."""
    who.require("read")
    return table(request, ctx.ws.totals(_events(ctx, body, who)))


@router.post("/events/ids", responses=TABLE_RESPONSES, response_model=TableOut, tags=["events"])
def ids(
    body: SelectionIn,
    request: Request,
    who: Principal = Depends(principal),
    ctx: Context = Depends(context),
) -> Response:
    """The ids of a selection's events, in id order."""
    who.require("read")
    return table(request, pd.DataFrame({"id": ctx.ws.resolve_ids(_events(ctx, body, who))}))


@router.post("/preview", responses=PREVIEW_RESPONSES, response_model=PreviewOut, tags=["runs"])
def preview(
    body: PreviewIn,
    request: Request,
    who: Principal = Depends(principal),
    ctx: Context = Depends(context),
) -> Response:
    """What an action would do to a selection; writes nothing. With Accept
    ``application/vnd.apache.arrow.stream``: one Arrow IPC stream (zstd) whose single row holds
    each table as a list of structs, and the counts as JSON in the schema metadata
    ``bear.preview``."""
    who.require("preview")
    pv = ctx.ws.preview(selection(ctx, body, who), body.action, body.full)
    if ARROW in request.headers.get("accept", ""):
        return Response(preview_arrow(pv), media_type=ARROW)
    return JSONResponse(preview_json(pv))


# -- runs -------------------------------------------------------------------------------------
@router.post("/runs", response_model=QueuedOut, status_code=202, tags=["runs"])
def start_run(
    body: RunIn, who: Principal = Depends(principal), ctx: Context = Depends(context)
) -> QueuedOut:
    """Queue a run; it executes in the background (poll ``GET /runs/{id}``)."""
    who.require("revert" if body.action == "revert" else "run")
    handle = ctx.ws.queue(
        body.action, selection(ctx, body, who), who.name, full=body.full, reason=body.reason
    )
    return QueuedOut(id=handle.id, status="queued", outcome="queued")


@router.post(
    "/documents/post", responses=TABLE_RESPONSES, response_model=TableOut, tags=["records"]
)
def post_documents(
    body: PostIn,
    request: Request,
    who: Principal = Depends(principal),
    ctx: Context = Depends(context),
) -> Response:
    """Post documents to accounting (in progress → complete): ``document_ids``, or every
    document in progress of run ``run_id``. All or nothing."""
    who.require("post")
    if (body.document_ids is None) == (body.run_id is None):
        raise BearError("post: give document_ids or run_id (one of the two)")
    what: list[int] | int = body.run_id if body.document_ids is None else body.document_ids  # type: ignore[assignment]
    return table(request, ctx.ws.post(what, user=who.name))


@router.get("/runs", responses=TABLE_RESPONSES, response_model=TableOut, tags=["runs"])
def runs(
    request: Request,
    limit: int = 1000,
    who: Principal = Depends(principal),
    ctx: Context = Depends(context),
) -> Response:
    """The latest runs, newest first."""
    who.require("read")
    return table(request, ctx.ws.runs(limit))


@router.get("/runs/{run_id}", response_model=RunOut, tags=["runs"])
def run(
    run_id: int, who: Principal = Depends(principal), ctx: Context = Depends(context)
) -> dict[str, Any]:
    """One run: status, stage and counts."""
    who.require("read")
    return run_json(ctx.ws.run(run_id))


@router.post("/runs/{run_id}/cancel", response_model=RunOut, tags=["runs"])
def cancel(
    run_id: int, who: Principal = Depends(principal), ctx: Context = Depends(context)
) -> dict[str, Any]:
    """Ask a run to stop at its next batch boundary."""
    who.require("cancel")
    ctx.ws.cancel(run_id)
    return run_json(ctx.ws.run(run_id))


def _record_route(
    path: str,
    method: str,
    doc: str,
    *params: str,
    tags: tuple[str, ...] = ("records",),
    scoped: bool = False,
) -> None:
    """A GET route returning one of the workspace's record tables. ``params`` name the
    method's arguments: ``name`` (a required id), ``name?`` (an optional id) or ``name?str``
    (optional text); the method itself checks them."""

    def handler(
        request: Request,
        who: Principal = Depends(principal),
        ctx: Context = Depends(context),
        **kwargs: Any,
    ) -> Response:
        who.require("read")
        if scoped and who.user is not None:  # rows of the events the person may see only
            kwargs["scope"] = who.user.scopes
        return table(request, getattr(ctx.ws, method)(**kwargs))

    import inspect

    signature = inspect.signature(handler)
    extra = []
    for spec in params:
        name, optional, kind = spec.partition("?")
        annotation: Any = (str | None if kind == "str" else int | None) if optional else int
        extra.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None if optional else inspect.Parameter.empty,
                annotation=annotation,
            )
        )
    handler.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[p for p in signature.parameters.values() if p.kind != p.VAR_KEYWORD] + extra
    )
    handler.__name__ = method
    handler.__doc__ = doc
    router.add_api_route(
        path,
        handler,
        methods=["GET"],
        responses=TABLE_RESPONSES,
        response_model=TableOut,
        tags=list(tags),
    )


_record_route("/runs/{run_id}/batches", "release_batches", "A run's release batches.", "run_id")
_record_route("/process-runs", "process_runs", "Invoicing process runs.", "run_id?")
_record_route(
    "/process-runs/{process_run_id}/logs",
    "process_logs",
    "Per-event logs (optionally of one status, OK or ERROR).",
    "process_run_id",
    "status?str",
    scoped=True,
)
_record_route(
    "/app-logs", "app_logs", "Application logs of runs.", "run_id?", "limit?", scoped=True
)
_record_route(
    "/documents",
    "documents",
    "Sales invoices and credit notes.",
    "run_id?",
    "limit?",
    scoped=True,
)
_record_route(
    "/events/{billing_event_id}/history",
    "history",
    "One event's releases, invoices and reverts in order, with their documents.",
    "billing_event_id",
    scoped=True,
)
_record_route(
    "/documents/{document_id}/lines",
    "document_lines",
    "A document's lines.",
    "document_id",
    scoped=True,
)
_record_route(
    "/notifications",
    "notifications",
    "Notifications and their delivery (of one run, one channel, or all).",
    "run_id?",
    "channel?str",
)


# -- rules, plugins and SQL -------------------------------------------------------------------
_record_route(
    "/rules",
    "rules",
    "Every rule with its stage, severity, plugin, state and last timing.",
    tags=("rules",),
)
_record_route(
    "/plugins",
    "plugin_list",
    "Every loaded plugin: name, version, source, hooks.",
    tags=("rules",),
)


@router.post("/sql", responses=TABLE_RESPONSES, response_model=TableOut, tags=["sql"])
def sql(
    body: SqlIn,
    request: Request,
    who: Principal = Depends(principal),
    ctx: Context = Depends(context),
) -> Response:
    """One read-only, sandboxed SQL statement over the book's tables."""
    who.require("read")
    return table(request, ctx.ws.sql(body.query, **body.params))
