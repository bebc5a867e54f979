"""What stands in front of every request ``bear serve`` answers (pure ASGI middleware).

* **Host check.** A foreign page can point its own name at this machine (DNS rebinding) and
  then talk to the server as if it were same-origin; so every request — page, static file,
  API, websocket — is answered only when its ``Host`` names the served address (or a host
  allowed with ``--allow-host``); anything else gets ``400`` before any handler runs. A
  websocket must also come from a page of those hosts (its ``Origin``).
* **Sign-in.** Once the book has users, the dashboard and its websocket need a signed-in
  session; a request without one is sent to ``/login`` (the API answers ``401`` itself).
* **Headers** on every response: no framing, ``nosniff``, a Content-Security-Policy allowing
  the dashboard's own scripts, styles and websocket and nothing from elsewhere, and no CORS.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import quote, urlsplit

from bear.auth.sessions import COOKIE
from bear.wire import is_loopback

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

CSP = (
    "default-src 'self'; "
    # Bokeh and Panel render from inline scripts, build some views with Function() and load
    # ES modules through blob: URLs they make themselves (es-module-shims)
    "script-src 'self' 'unsafe-inline' 'unsafe-eval' blob:; "
    "style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; "
    "font-src 'self' data:; "
    "connect-src 'self'; "
    "object-src 'none'; "
    "base-uri 'self'; "
    "form-action 'self'; "
    "frame-ancestors 'none'"
)
HEADERS = {
    b"x-frame-options": b"DENY",
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"same-origin",
    b"content-security-policy": CSP.encode(),
    b"cross-origin-opener-policy": b"same-origin",
}
_DROPPED = {name.lower() for name in HEADERS} | {
    b"access-control-allow-origin",
    b"access-control-allow-credentials",
    b"access-control-allow-headers",
    b"access-control-allow-methods",
}
_WILDCARD_ADDRESSES = {"", "0.0.0.0", "::"}
# reachable without a session: the sign-in page, the API (it answers 401 itself), static files
PUBLIC_PREFIXES = ("/login", "/logout", "/api/", "/static/", "/favicon.ico")


def host_name(host: str) -> str:
    """``host`` without its port and brackets, lower case (``[::1]:80`` → ``::1``)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def allowed_hosts(address: str, extra: Iterable[str] = ()) -> list[str]:
    """The host names the server answers to: the served address (both loopback names when it
    is a loopback address; this machine's names when it listens on every address) and
    ``extra``."""
    names = {host_name(h) for h in extra if h.strip()}
    if address in _WILDCARD_ADDRESSES:
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        names |= {"localhost", "127.0.0.1", "::1"}
    else:
        names.add(host_name(address))
        if is_loopback(address):
            names |= {"localhost", "127.0.0.1", "::1"}
    return sorted(n for n in names if n)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return ""


def _cookie(scope: Scope, name: str) -> str | None:
    for part in _header(scope, b"cookie").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


class Guard:
    """Host check, sign-in gate and security headers around an ASGI application.

    ``signed_in(session_id)`` says whether a session is live; ``team_mode()`` whether the book
    has users (only then is signing in required)."""

    def __init__(
        self,
        app: Callable[..., Awaitable[None]],
        *,
        hosts: Iterable[str],
        signed_in: Callable[[str | None], bool],
        team_mode: Callable[[], bool],
    ) -> None:
        self.app = app
        self.hosts = set(hosts)
        self.signed_in = signed_in
        self.team_mode = team_mode

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = host_name(_header(scope, b"host"))
        if host not in self.hosts:
            await self._refuse(
                scope, send, 400, f"this server does not answer to the host {host!r}"
            )
            return
        path = scope.get("path", "/")
        if kind == "websocket":
            origin = _header(scope, b"origin")
            if not origin or host_name(urlsplit(origin).netloc) not in self.hosts:
                await self._refuse(scope, send, 403, "websocket from another site")
                return
        public = path.startswith(PUBLIC_PREFIXES)
        if not public and self.team_mode() and not self.signed_in(_cookie(scope, COOKIE)):
            if kind == "websocket":
                await self._refuse(scope, send, 403, "sign in first")
            else:
                await self._redirect(send, "/login?next=" + quote(self._target(scope), safe="/"))
            return
        if kind == "websocket":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _DROPPED]
                message["headers"] = kept + list(HEADERS.items())
            await send(message)

        await self.app(scope, receive, send_with_headers)

    @staticmethod
    def _target(scope: Scope) -> str:
        query = scope.get("query_string", b"").decode("latin-1")
        return scope.get("path", "/") + (f"?{query}" if query else "")

    async def _redirect(self, send: Send, location: str) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [(b"location", location.encode()), *HEADERS.items()],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    async def _refuse(self, scope: Scope, send: Send, status: int, text: str) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": text[:120]})
            return
        body = f"{status}: {text}\n".encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    *HEADERS.items(),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
