"""``bear login`` and ``bear logout``: remember the API token of a server, or forget it.

``bear login --server URL`` asks for the token at a hidden prompt (or reads one line of
stdin with ``--token-stdin``), checks it with the server (``GET /api/v1/me``) and stores it
for that URL in the user's config folder (``bear.remote.credentials``: the file is ``0600``,
its folder ``0700``). Every later ``bear --server URL …``, and ``bear.connect(URL)``, uses
it when neither ``--token`` nor ``$BEAR_TOKEN`` gives one.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from bear.cli.common import add_server, printable, server_of
from bear.errors import BearError


def _server(a: argparse.Namespace, command: str) -> str:
    server = server_of(a)
    if not server:
        raise BearError(f"bear {command}: name the server with --server URL (or $BEAR_SERVER)")
    from bear.remote import server_url

    return server_url(server)


def _read_token(a: argparse.Namespace, url: str) -> str:
    if a.token_stdin:
        token = sys.stdin.readline().strip()
        if not token:
            raise BearError("--token-stdin: stdin holds no token (give it as one line)")
        return token
    if getattr(a, "token", None):
        return str(a.token)
    if not sys.stdin.isatty():
        raise BearError("stdin is not a terminal: give the token as one line with --token-stdin")
    token = getpass.getpass(f"API token for {url}: ").strip()
    if not token:
        raise BearError("no token given; nothing was stored")
    return token


def cmd_login(a: argparse.Namespace) -> int:
    from bear.remote import RemoteWorkspace
    from bear.remote.credentials import store_token

    url = _server(a, "login")
    token = _read_token(a, url)
    with RemoteWorkspace(url, token) as ws:  # checks the token: GET /api/v1/me
        me = ws.me()
    path = store_token(url, token, me["name"])
    print(printable(f"signed in to {url} as {me['name']} ({me['role']}); token stored in {path}"))
    return 0


def cmd_logout(a: argparse.Namespace) -> int:
    from bear.remote.credentials import credentials_path, forget_token

    url = _server(a, "logout")
    if forget_token(url):
        print(f"token for {url} removed from {credentials_path()}")
    else:
        print(f"no token stored for {url}")
    return 0


def add_login_parsers(sub: Any) -> None:
    """Register ``login`` and ``logout`` on ``bear``'s sub-parsers."""
    p = sub.add_parser(
        "login",
        help="check an API token with a server and store it for later commands",
        description="Check an API token with the server (GET /api/v1/me) and store it in "
        "$XDG_CONFIG_HOME/bear/credentials.json (~/.config/bear/…), readable by you only. "
        "Later `bear --server URL …` commands and bear.connect(URL) use it.",
    )
    add_server(p)
    p.add_argument("--token-stdin", action="store_true", help="read the token from stdin")
    p.set_defaults(fn=cmd_login)
    p = sub.add_parser(
        "logout",
        help="forget the token stored for a server",
        description="Remove the token bear login stored for the server.",
    )
    add_server(p)
    p.set_defaults(fn=cmd_logout)
