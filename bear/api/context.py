"""Who is asking, and what the API works on: one ``Context`` per server process."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from bear.auth import Throttle, require
from bear.auth.sessions import COOKIE, Sessions
from bear.errors import AuthError
from bear.models import User


@dataclass
class Context:
    """The served workspace, the sign-in sessions and throttle, and the single-user owner's
    name (used while the book has no users)."""

    ws: Any
    owner: str
    sessions: Sessions = field(default_factory=Sessions)
    # failed sign-ins: 5 a minute per user name, 20 a minute per client address
    throttle_user: Throttle = field(default_factory=lambda: Throttle(5, 60.0))
    throttle_address: Throttle = field(default_factory=lambda: Throttle(20, 60.0))
    _team_until: float = 0.0
    _team: bool = False

    def team_mode(self) -> bool:
        """Whether the book has users (then everyone signs in); checked at most once a second."""
        now = time.monotonic()
        if now >= self._team_until:
            self._team = self.ws.team.count() > 0
            self._team_until = now + 1.0
        return self._team

    def forget_team_mode(self) -> None:
        self._team_until = 0.0


@dataclass(frozen=True)
class Principal:
    """The person a request acts for: a ``User``, or ``None`` for the single-user owner."""

    user: User | None
    name: str

    def require(self, permission: str) -> None:
        require(self.user, permission)


def context(request: Request) -> Context:
    return request.app.state.bear


def principal_of(ctx: Context, authorization: str | None, cookie: str | None) -> Principal:
    """The principal of a bearer token or a session cookie; the owner in single-user mode."""
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("send the API token as 'Authorization: Bearer <token>'")
        user = ctx.ws.team.token_user(token.strip())
        return Principal(user, user.name)
    uid = ctx.sessions.user_id(cookie)
    if uid is not None:
        user = ctx.ws.team.by_id(uid)
        if user is not None and not user.disabled:
            return Principal(user, user.name)
    if ctx.team_mode():
        raise AuthError("sign in, or send an API token ('Authorization: Bearer <token>')")
    return Principal(None, ctx.owner)


def principal(request: Request) -> Principal:
    ctx = context(request)
    return principal_of(ctx, request.headers.get("authorization"), request.cookies.get(COOKIE))
