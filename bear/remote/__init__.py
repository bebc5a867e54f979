"""The remote workspace: a book served by ``bear serve``, used from Python or the CLI as if
it were open locally (DESIGN §7).

``connect(url, token)`` returns a ``RemoteWorkspace`` (``bear.connect`` calls it for an
``http://`` or ``https://`` path). The token is the argument, else ``$BEAR_TOKEN``, else the
one ``bear login`` stored for that server (``bear.remote.credentials``); a server whose book
has no users needs none.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from bear.remote.http import server_url
from bear.remote.runs import RemoteRunHandle
from bear.remote.settings import RemoteSettings
from bear.remote.workspace import RemoteWorkspace
from bear.wire import is_loopback

__all__ = [
    "RemoteRunHandle",
    "RemoteSettings",
    "RemoteWorkspace",
    "connect",
    "is_url",
    "resolve_token",
    "server_url",
]

log = logging.getLogger(__name__)


def is_url(path: object) -> bool:
    """Whether ``path`` names a server rather than a file."""
    return isinstance(path, str) and path.strip().lower().startswith(("http://", "https://"))


def resolve_token(url: str, token: str | None = None) -> str | None:
    """The token to send to ``url``: ``token``, else ``$BEAR_TOKEN``, else the stored one."""
    if token:
        return token
    env = os.environ.get("BEAR_TOKEN", "").strip()
    if env:
        return env
    from bear.remote.credentials import stored_token

    return stored_token(url)


def connect(url: str, token: str | None = None, **options: Any) -> RemoteWorkspace:
    """The book served at ``url``, signed in with ``token`` (see ``resolve_token``).

    :raises AuthError: the server refuses the token (or wants one and none was found).
    :raises BearError: the server cannot be reached (the message names the URL).
    """
    base = server_url(url)
    secret = resolve_token(base, token)
    if (
        secret
        and base.startswith("http://")
        and not is_loopback(base.split("//", 1)[1].split("/", 1)[0])
    ):
        log.warning("sending an API token over plain http to %s: put the server behind TLS", base)
    return RemoteWorkspace(base, secret, **options)
