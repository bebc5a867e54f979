"""Talking to a BEAR server: one ``httpx.Client`` per remote workspace, tables as Arrow IPC,
and problem documents turned back into the ``BearError`` the server raised.

The server answers every error with an RFC 9457 problem document whose ``type`` is
``urn:bear:error:<class name>`` and which carries the error's attributes (``bear.api.problems``);
``error_of`` rebuilds that very exception — same class, message and attributes — so code
written against a local workspace catches the same errors from a remote one.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import httpx
import pandas as pd

from bear import errors
from bear.errors import BearError
from bear.wire import ARROW, from_arrow_bytes

log = logging.getLogger(__name__)

API = "/api/v1"
PROBLEM_KEYS = ("type", "title", "status", "detail")
URN = "urn:bear:error:"


def error_of(response: httpx.Response, url: str) -> BearError:
    """The ``BearError`` a failed response stands for (``url``: the server, for messages)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    kind = body.get("type") if isinstance(body, dict) else None
    if not isinstance(kind, str) or not kind.startswith(URN):
        text = " ".join(response.text.split())[:200]
        return BearError(
            f"the server at {url} answered {response.status_code} "
            f"{response.reason_phrase}{': ' + text if text else ''}"
        )
    assert isinstance(body, dict)
    cls = getattr(errors, kind[len(URN) :], None)
    if not (isinstance(cls, type) and issubclass(cls, BearError)):
        cls = BearError  # HTTPError, InternalError: the server's own words are the message
    detail = str(body.get("detail") or body.get("title") or f"HTTP {response.status_code}")
    # Built without calling the class's __init__, whose keyword arguments may be missing from
    # the document (a request the server's schema refused is an InputError without a name).
    exc = cls.__new__(cls)
    BaseException.__init__(exc, detail)
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if param.kind is param.KEYWORD_ONLY:
            setattr(exc, name, None)
    for key, value in body.items():
        if key not in PROBLEM_KEYS:
            setattr(exc, key, value)
    return exc


class Http:
    """The connection to one server: base URL, bearer token, timeouts."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = 300.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url
        headers = {"User-Agent": "bear-remote"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.client = httpx.Client(
            base_url=url + API,
            headers=headers,
            # a preview or a page of a big book may take a while; reaching the server may not
            timeout=httpx.Timeout(timeout, connect=10.0),
            follow_redirects=False,
            transport=transport,
        )

    def close(self) -> None:
        self.client.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        accept: str = "application/json",
    ) -> httpx.Response:
        """One request; a failed answer raises the ``BearError`` it carries, an unreachable
        server a ``BearError`` naming it."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self.client.request(
                method, path, json=json, params=query, headers={"Accept": accept}
            )
        except httpx.TimeoutException as exc:
            raise BearError(
                f"the BEAR server at {self.url} did not answer in time ({type(exc).__name__})"
            ) from None
        except httpx.TransportError as exc:
            raise BearError(f"cannot reach the BEAR server at {self.url}: {exc}") from None
        if response.status_code >= 400:
            raise error_of(response, self.url)
        return response

    def upload(self, path: str, files: dict[str, Any], params: dict[str, Any]) -> Any:
        """POST files (a path per form field) as multipart/form-data; the JSON answer."""
        from pathlib import Path

        opened = {}
        try:
            for name, value in files.items():
                p = Path(value)
                if not p.is_file():
                    raise BearError(f"{name}: {str(p)!r} is not a file")
                opened[name] = (p.name, p.open("rb"))
            try:
                response = self.client.post(path, files=opened, params=params)
            except httpx.TransportError as exc:
                raise BearError(f"cannot reach the BEAR server at {self.url}: {exc}") from None
        finally:
            for _, handle in opened.values():
                handle.close()
        if response.status_code >= 400:
            raise error_of(response, self.url)
        return response.json()

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def arrow(self, method: str, path: str, **kwargs: Any) -> bytes:
        """A route's answer as an Arrow IPC stream (the raw bytes)."""
        response = self.request(method, path, accept=ARROW, **kwargs)
        if not response.headers.get("content-type", "").startswith(ARROW):
            raise BearError(f"the server at {self.url} did not answer with a table")
        return response.content

    def table(
        self, method: str, path: str, *, nullable_ints: bool = False, **kwargs: Any
    ) -> pd.DataFrame:
        """A table route's answer as the DataFrame a local workspace returns (Arrow IPC)."""
        return from_arrow_bytes(self.arrow(method, path, **kwargs), nullable_ints=nullable_ints)


def server_url(url: str) -> str:
    """``url`` as BEAR keys a server: scheme, host, port and any path prefix, without a
    trailing slash or ``/api/v1``. Anything but an http(s) URL with a host is refused."""
    text = str(url).strip()
    try:
        parsed = httpx.URL(text)
    except (httpx.InvalidURL, TypeError):
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise BearError(f"{text!r} is not a server URL (write it like http://127.0.0.1:5006)")
    if parsed.query or parsed.fragment or parsed.userinfo:
        raise BearError(
            f"{text!r}: give the server's URL only, without a query, a fragment or a password"
        )
    path = parsed.path.rstrip("/")
    if path.endswith(API):
        path = path[: -len(API)]
    port = f":{parsed.port}" if parsed.port else ""
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    return f"{parsed.scheme}://{host}{port}{path}"
