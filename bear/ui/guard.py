"""What ``bear serve`` puts in front of every request: a Host check and security headers.

* **Host check.** A page from another site can point its own name at this machine (DNS
  rebinding) and then talk to the server as if it were same-origin; Tornado even accepts a
  websocket whose ``Host`` equals its ``Origin`` whatever both say. So every request — page,
  static file, websocket — is routed only when its ``Host`` names the served address (or a
  host allowed with ``--allow-host``); anything else gets ``400`` before any handler runs.
* **Headers** on every response: no framing (``X-Frame-Options: DENY`` and CSP
  ``frame-ancestors 'none'``), ``nosniff``, a Content-Security-Policy that allows the
  dashboard's own scripts, styles and websocket and nothing from elsewhere, and no CORS
  headers at all (Bokeh's ``autoload.js`` would otherwise echo any ``Origin`` with
  credentials).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from typing import Any

from tornado.routing import AnyMatches, HostMatches, Rule
from tornado.web import Application, OutputTransform, RequestHandler

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
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": CSP,
    "Cross-Origin-Opener-Policy": "same-origin",
}
_CORS = (
    "Access-Control-Allow-Origin",
    "Access-Control-Allow-Credentials",
    "Access-Control-Allow-Headers",
    "Access-Control-Allow-Methods",
)
_WILDCARD_ADDRESSES = {"", "0.0.0.0", "::"}


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
        try:
            if ipaddress.ip_address(host_name(address)).is_loopback:
                names |= {"localhost", "127.0.0.1", "::1"}
        except ValueError:  # a name, not an address
            if host_name(address) == "localhost":
                names |= {"127.0.0.1", "::1"}
    return sorted(n for n in names if n)


def websocket_origins(hosts: Iterable[str], port: int) -> list[str]:
    """Bokeh's websocket origin allow-list for ``hosts`` (the served port; 80 and 443 for a
    proxy in front)."""
    out = set()
    for h in hosts:
        if ":" not in h:  # Bokeh's allow-list cannot say an IPv6 address
            out |= {f"{h}:{port}", h, f"{h}:443"}
    return sorted(out)


class SecurityHeaders(OutputTransform):
    """Adds the security headers to every response and removes CORS headers."""

    def transform_first_chunk(
        self, status_code: int, headers: Any, chunk: bytes, finishing: bool
    ) -> tuple[int, Any, bytes]:
        for name in _CORS:
            if name in headers:
                del headers[name]
        for name, value in HEADERS.items():
            headers[name] = value
        return status_code, headers, chunk


class UnknownHost(RequestHandler):
    """The answer to a request for a Host this server does not serve."""

    def prepare(self) -> None:
        self.set_status(400)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(
            f"400: this server does not answer to the host {self.request.host_name!r}; "
            "start it with --allow-host for another name\n"
        )


def protect(app: Application, hosts: Iterable[str]) -> None:
    """Route ``app``'s requests only for ``hosts`` and add the security headers."""
    names = set(hosts) | {f"[{h}]" for h in hosts if ":" in h}  # Tornado keeps IPv6 brackets
    pattern = "^(" + "|".join(re.escape(h) for h in sorted(names)) + ")$"
    router = app.default_router
    router.rules.clear()
    router.add_rules(
        [
            Rule(HostMatches(pattern), app.wildcard_router),
            Rule(AnyMatches(), [(r".*", UnknownHost)]),
        ]
    )
    if SecurityHeaders not in app.transforms:
        app.transforms.append(SecurityHeaders)
