"""Routes of the administrator: settings, users and API tokens (role ``admin``); reading
settings is open to every signed-in person."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from bear.api.context import Context, Principal, context, principal
from bear.api.problems import RESPONSES
from bear.api.routes import TABLE_RESPONSES, TableOut, table
from bear.auth.sessions import Sessions
from bear.models import Role
from bear.wire import jsonable

router = APIRouter(prefix="/api/v1", responses=RESPONSES)


class SettingOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    value: Any = None
    default: Any = None
    kind: str
    allowed: str
    help: str


class SettingsIn(BaseModel):
    """Settings to change, all or nothing: ``{"values": {"release_batch_size": 500}}``."""

    model_config = ConfigDict(extra="forbid")
    values: dict[str, Any] = Field(min_length=1)


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=64)
    role: Role
    email: str | None = Field(default=None, max_length=254)
    password: str | None = Field(default=None, max_length=1024)
    scopes: dict[str, list[Any]] | None = None


class UserChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role | None = None
    email: str | None = Field(default=None, max_length=254)
    scopes: dict[str, list[Any]] | None = None
    disabled: bool | None = None
    password: str | None = Field(default=None, max_length=1024)


class UserOut(BaseModel):
    id: int
    name: str
    role: str
    email: str | None = None
    scopes: dict[str, list[Any]] = Field(default_factory=dict)
    disabled: bool = False


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = Field(default="", max_length=100)


class TokenOut(BaseModel):
    id: int
    token: str = Field(description="shown only in this response")


def _user_out(user: Any) -> UserOut:
    return UserOut(
        id=user.id,
        name=user.name,
        role=user.role.value,
        email=user.email,
        scopes=user.scopes.as_dict(),
        disabled=user.disabled,
    )


@router.get("/settings", response_model=list[SettingOut], tags=["settings"])
def settings(
    who: Principal = Depends(principal), ctx: Context = Depends(context)
) -> list[dict[str, Any]]:
    """Every setting with its value, default, what it allows and its help."""
    who.require("read")
    return [jsonable(item) for item in ctx.ws.settings.describe()]


@router.patch("/settings", response_model=list[SettingOut], tags=["settings"])
def change_settings(
    body: SettingsIn, who: Principal = Depends(principal), ctx: Context = Depends(context)
) -> list[dict[str, Any]]:
    """Change settings, all or nothing (admin). Start-up settings are refused."""
    who.require("settings")
    ctx.ws.settings.update_by(who.name, **body.values)
    return [jsonable(item) for item in ctx.ws.settings.describe()]


@router.get(
    "/settings/history", responses=TABLE_RESPONSES, response_model=TableOut, tags=["settings"]
)
def settings_history(
    request: Request,
    name: str | None = None,
    limit: int | None = None,
    who: Principal = Depends(principal),
    ctx: Context = Depends(context),
) -> Response:
    """Who changed which setting, when, from what to what (newest first; ``limit``: the
    newest that many)."""
    who.require("read")
    return table(request, ctx.ws.settings.history(name, limit=limit))


@router.get("/users", response_model=list[UserOut], tags=["users"])
def users(who: Principal = Depends(principal), ctx: Context = Depends(context)) -> list[UserOut]:
    """Every user (admin)."""
    who.require("users")
    frame = ctx.ws.team.users()
    return [_user_out(ctx.ws.team.get(name)) for name in frame["name"]]


@router.post("/users", response_model=UserOut, status_code=201, tags=["users"])
def add_user(
    body: UserIn, who: Principal = Depends(principal), ctx: Context = Depends(context)
) -> UserOut:
    """Add a user (admin)."""
    who.require("users")
    user = ctx.ws.team.add(
        body.name,
        body.role,
        actor=who.name,
        email=body.email,
        password=body.password,
        scopes=body.scopes,
    )
    ctx.forget_team_mode()
    return _user_out(user)


@router.patch("/users/{name}", response_model=UserOut, tags=["users"])
def change_user(
    name: str,
    body: UserChange,
    who: Principal = Depends(principal),
    ctx: Context = Depends(context),
) -> UserOut:
    """Change a user's role, e-mail, scopes, password, or disable them (admin)."""
    who.require("users")
    team = ctx.ws.team
    user = team.get(name)
    if body.role is not None:
        user = team.set_role(name, body.role, actor=who.name)
    if body.email is not None:
        user = team.set_email(name, body.email, actor=who.name)
    if body.scopes is not None:
        user = team.set_scopes(name, body.scopes, actor=who.name)
    if body.password is not None:
        user = team.set_password(name, body.password, actor=who.name)
    if body.disabled is not None:
        user = team.disable(name, actor=who.name, disabled=body.disabled)
        sessions: Sessions = ctx.sessions
        sessions.drop_user(user.id)
    ctx.forget_team_mode()
    return _user_out(user)


@router.post("/users/{name}/tokens", response_model=TokenOut, status_code=201, tags=["tokens"])
def create_token(
    name: str,
    body: TokenIn,
    who: Principal = Depends(principal),
    ctx: Context = Depends(context),
) -> TokenOut:
    """A new API token for a user (admin); the token is in this response only."""
    who.require("tokens")
    tid, token = ctx.ws.team.create_token(name, actor=who.name, label=body.label)
    return TokenOut(id=tid, token=token)


@router.get("/tokens", responses=TABLE_RESPONSES, response_model=TableOut, tags=["tokens"])
def tokens(
    request: Request, who: Principal = Depends(principal), ctx: Context = Depends(context)
) -> Response:
    """Every API token (never its secret) (admin)."""
    who.require("tokens")
    return table(request, ctx.ws.team.tokens())


@router.delete("/tokens/{token_id}", status_code=204, tags=["tokens"])
def revoke_token(
    token_id: int, who: Principal = Depends(principal), ctx: Context = Depends(context)
) -> Response:
    """Revoke a token (admin)."""
    who.require("tokens")
    ctx.ws.team.revoke_token(token_id, actor=who.name)
    return Response(status_code=204)


class RetryOut(BaseModel):
    sent: int
    failed: int
    left: int


@router.post("/notifications/retry", response_model=RetryOut, tags=["records"])
def retry_notifications(
    who: Principal = Depends(principal), ctx: Context = Depends(context)
) -> dict[str, int]:
    """Deliver every pending notification now (analyst): ``{"sent", "failed", "left"}``."""
    who.require("run")
    return ctx.ws.retry_notifications()
