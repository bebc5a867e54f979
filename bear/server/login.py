"""The sign-in page, sign-in and sign-out (a session in an HttpOnly, SameSite cookie).

Failed sign-ins are throttled per user name (5 a minute) and per client address (20 a
minute), then ``429`` with ``Retry-After``; the page never says whether the name or the
password was wrong.
"""

from __future__ import annotations

import html
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from bear.api.context import Context
from bear.auth.sessions import COOKIE, MAX_S
from bear.errors import AuthError, ThrottledError

router = APIRouter(include_in_schema=False)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in — BEAR</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body {{ font-family: system-ui, sans-serif; background: #f3f5f8; margin: 0; }}
 header {{ background: #1f5fa8; color: white; padding: 14px 24px; font-size: 22px; }}
 main {{ max-width: 360px; margin: 60px auto; background: white; padding: 28px;
        border-radius: 6px; box-shadow: 0 1px 4px rgba(0,0,0,.15); }}
 label {{ display: block; margin: 14px 0 4px; font-weight: 600; }}
 input {{ width: 100%; box-sizing: border-box; padding: 8px; font-size: 15px; }}
 button {{ margin-top: 20px; width: 100%; padding: 10px; font-size: 15px; color: white;
          background: #1f5fa8; border: 0; border-radius: 4px; cursor: pointer; }}
 .error {{ color: #a4262c; background: #fde7e9; padding: 8px; border-radius: 4px; }}
</style></head>
<body><header>BEAR — Billing Events Awaiting Release</header>
<main><h1 style="font-size:20px;margin-top:0">Sign in</h1>{message}
<form method="post" action="/login">
 <input type="hidden" name="next" value="{next}">
 <label for="name">User name</label>
 <input id="name" name="name" autocomplete="username" required autofocus value="{name}">
 <label for="password">Password</label>
 <input id="password" name="password" type="password" autocomplete="current-password" required>
 <button type="submit">Sign in</button>
</form></main></body></html>"""


def _safe_next(target: str) -> str:
    """Only a path of this server (never ``//other.example`` or a scheme)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target[:2000]


def page(next_: str = "/", name: str = "", message: str = "", status: int = 200) -> HTMLResponse:
    shown = f"<p class='error' role='alert'>{html.escape(message)}</p>" if message else ""
    body = PAGE.format(
        message=shown, next=html.escape(_safe_next(next_)), name=html.escape(name[:64])
    )
    return HTMLResponse(body, status_code=status)


def context(request: Request) -> Context:
    return request.app.state.bear


@router.get("/login")
def login_page(request: Request, next: str = "/") -> Response:  # noqa: A002 - the query name
    ctx = context(request)
    if not ctx.team_mode():
        return RedirectResponse("/", status_code=303)
    return page(next)


@router.post("/login")
async def login(request: Request) -> Response:
    ctx = context(request)
    raw = (await request.body())[:10_000].decode("utf-8", "replace")
    form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
    name = form.get("name", "").strip()[:200]
    password = form.get("password", "")
    target = _safe_next(form.get("next", "/"))
    client = request.client.host if request.client else "unknown"
    user_key = name.lower()
    try:
        ctx.throttle_user.check(user_key)
        ctx.throttle_address.check(client)
    except ThrottledError as exc:
        response = page(target, name, str(exc), status=429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    try:
        user = ctx.ws.team.authenticate(name, password)
    except AuthError as exc:
        ctx.throttle_user.failed(user_key)
        ctx.throttle_address.failed(client)
        return page(target, name, str(exc), status=401)
    ctx.throttle_user.succeeded(user_key)
    sid = ctx.sessions.create(user.id)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        sid,
        max_age=int(MAX_S),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    ctx = context(request)
    ctx.sessions.drop(request.cookies.get(COOKIE))
    response = RedirectResponse("/login" if ctx.team_mode() else "/", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response
