"""``bear users`` and ``bear tokens``: the team of a book, managed from the machine that holds it.

Each command parses its arguments, calls one method of ``ws.team`` (``bear.auth.Team``, where
every rule lives: valid names and roles, the last admin, password length) and prints the
result. A change is recorded as made by ``local:<OS user>`` (``local_actor``); with
``--server`` the commands go through the server's admin routes (``bear.remote.team``) and
the token's user is recorded instead, which is how a served book's team is managed. A password
never travels on the command line: it is asked twice at a hidden prompt, or read as one line
from stdin with ``--password-stdin``; a token is printed once, when it is created.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

import pandas as pd

from bear.cli.common import (
    add_db,
    is_remote,
    local_actor,
    open_book,
    print_frame,
    print_json,
    printable,
    records,
)
from bear.errors import BearError
from bear.models import User

ROLES = "viewer, analyst or admin"


# -- input -----------------------------------------------------------------------------------
def scopes_of_args(values: list[str] | None) -> dict[str, list[str]]:
    """``--scope regions=EMEA,APAC --scope companies=1,2`` as ``{"regions": [...], ...}``
    (a kind given twice adds up; ``bear.auth`` checks the kinds and values)."""
    out: dict[str, list[str]] = {}
    for item in values or []:
        kind, sep, rest = item.partition("=")
        if not sep or not kind.strip():
            raise BearError(
                f"--scope {printable(item)!r}: write KIND=VALUE[,VALUE…], e.g. regions=EMEA,APAC"
            )
        out.setdefault(kind.strip(), []).extend(v.strip() for v in rest.split(",") if v.strip())
    return out


def read_password(a: argparse.Namespace) -> str | None:
    """The new password: one line of stdin with ``--password-stdin``, else asked twice at a
    hidden prompt (stdin must be a terminal); ``None`` with ``--no-password``."""
    if getattr(a, "no_password", False):
        return None
    if a.password_stdin:
        line = sys.stdin.readline()
        if not line.strip("\r\n"):
            raise BearError("--password-stdin: stdin holds no password (give it as one line)")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        also = (
            ", or --no-password for a user of API tokens only" if a.users_command == "add" else ""
        )
        raise BearError(
            f"stdin is not a terminal: give the password as one line with --password-stdin{also}"
        )
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != first:
        raise BearError("the two passwords differ; nothing was changed")
    return first


# -- output ----------------------------------------------------------------------------------
def user_record(user: User) -> dict[str, Any]:
    """A user as ``--json`` prints it (never a password or token)."""
    return {
        "name": user.name,
        "role": user.role.value,
        "email": user.email,
        "scopes": user.scopes.as_dict(),
        "disabled": user.disabled,
    }


def _show_user(user: User, verb: str, as_json: bool, **extra: Any) -> None:
    if as_json:
        print_json({**user_record(user), **extra})
        return
    scopes = user.scopes.as_dict()
    limits = "; ".join(f"{k} {', '.join(map(str, v))}" for k, v in scopes.items()) or "all events"
    print(
        printable(
            f"{verb} {user.name}: {user.role.value}, e-mail {user.email or '(none)'}, "
            f"scopes {limits}, {'disabled' if user.disabled else 'enabled'}"
        )
    )
    if "password" in extra:
        print("password: " + ("set" if extra["password"] else "none (API tokens only)"))


def _plain(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """``frame`` with the free-text ``columns`` made safe to print on a terminal."""
    out = frame.copy()
    for col in (c for c in columns if c in out.columns):
        out[col] = out[col].map(lambda v: "" if v is None or v != v else printable(str(v)))
    return out


def team_of(ws: Any) -> Any:
    """The team of the book: ``ws.team``, or the server's admin routes for a served one."""
    if is_remote(ws):
        from bear.remote.team import RemoteTeam

        return RemoteTeam(ws)
    return ws.team


# -- users -----------------------------------------------------------------------------------
def cmd_users(a: argparse.Namespace) -> int:
    actor = local_actor()
    if a.users_command == "list":
        with open_book(a) as ws:
            frame = team_of(ws).users()
        if a.json:
            rows = records(frame)
            for row in rows:
                row["scopes"] = json.loads(row["scopes"] or "{}")
            print_json(rows)
        else:
            print_frame(_plain(frame, "email", "scopes", "created_by"), False)
        return 0
    if a.users_command == "add":
        scopes = scopes_of_args(a.scope)
        password = read_password(a)
        with open_book(a) as ws:
            user = team_of(ws).add(
                a.name, a.role, actor=actor, email=a.email, password=password, scopes=scopes
            )
        _show_user(user, "added", a.json, password=password is not None)
        return 0
    if a.users_command == "set-password":
        password = read_password(a)
        assert password is not None
        with open_book(a) as ws:
            user = team_of(ws).set_password(a.name, password, actor=actor)
        print(f"password of {user.name} changed")
        return 0
    with open_book(a) as ws:
        team = team_of(ws)
        if a.users_command == "set-role":
            user = team.set_role(a.name, a.role, actor=actor)
        elif a.users_command == "set-scopes":
            user = team.set_scopes(a.name, scopes_of_args(a.scope), actor=actor)
        elif a.users_command == "set-email":
            user = team.set_email(a.name, a.email, actor=actor)
        else:  # disable, enable
            user = team.disable(a.name, actor=actor, disabled=a.users_command == "disable")
    _show_user(user, "changed", a.json)
    return 0


# -- tokens ----------------------------------------------------------------------------------
def cmd_tokens(a: argparse.Namespace) -> int:
    actor = local_actor()
    with open_book(a) as ws:
        team = team_of(ws)
        if a.tokens_command == "list":
            frame = team.tokens(a.name)
            print_frame(
                frame if a.json else _plain(frame, "label", "created_by", "revoked_by"), a.json
            )
        elif a.tokens_command == "create":
            token_id, token = team.create_token(a.name, actor=actor, label=a.label)
            note = (
                "This token is shown only now: BEAR keeps only its hash. Store it safely; if it "
                f"is lost, create another and revoke this one (bear tokens revoke {token_id})."
            )
            if a.json:
                print_json(
                    {"id": token_id, "user": a.name, "label": a.label, "token": token, "note": note}
                )
            else:
                label = f" ({a.label})" if a.label else ""
                print(printable(f"token {token_id} for {a.name}{label}:"))
                print(token)
                print(note)
        else:  # revoke
            team.revoke_token(a.token_id, actor=actor)
            print(f"token {int(a.token_id)} revoked")
    return 0


# -- the parsers -----------------------------------------------------------------------------
def add_team_parsers(sub: Any) -> None:
    """Register ``users`` and ``tokens`` (with their sub-commands) on ``bear``'s sub-parsers."""
    users = sub.add_parser(
        "users",
        help="add, list and change the people who use the book",
        description="The people who use the book: their role, e-mail, scopes and password. "
        "Changes are recorded as made by local:<your OS user>.",
    )
    usub = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")

    def action(name: str, help: str, *, json_flag: bool = True) -> argparse.ArgumentParser:
        p = usub.add_parser(name, help=help, description=help)
        add_db(p)
        if json_flag:
            p.add_argument("--json", action="store_true")
        p.set_defaults(fn=cmd_users)
        return p

    def scope_option(p: argparse.ArgumentParser, help: str) -> None:
        p.add_argument("--scope", action="append", metavar="KIND=V1,V2", help=help)

    p = action("add", "add a user (asks for the password twice unless --password-stdin)")
    p.add_argument("name")
    p.add_argument("--role", required=True, help=ROLES)
    p.add_argument("--email")
    scope_option(
        p,
        "limit the events they see: companies, regions, practices or groups "
        "(repeatable, e.g. --scope regions=EMEA,APAC --scope companies=1,2); none: all",
    )
    how = p.add_mutually_exclusive_group()
    how.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    how.add_argument(
        "--no-password", action="store_true", help="no password: the user signs in with tokens"
    )
    action("list", "list the users (never a password)")
    p = action("set-role", "change a user's role")
    p.add_argument("name")
    p.add_argument("role", help=ROLES)
    p = action("set-scopes", "replace a user's scopes (no --scope: every event)")
    p.add_argument("name")
    scope_option(p, "companies, regions, practices or groups (repeatable)")
    p = action("set-email", "change a user's e-mail address ('' clears it)")
    p.add_argument("name")
    p.add_argument("email")
    for name in ("disable", "enable"):
        p = action(name, f"{name} a user (a disabled user can neither sign in nor use a token)")
        p.add_argument("name")
    p = action("set-password", "set a user's password", json_flag=False)
    p.add_argument("name")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")

    tokens = sub.add_parser(
        "tokens",
        help="create, list and revoke API tokens",
        description="API tokens: each belongs to a user and acts with their role and scopes.",
    )
    tsub = tokens.add_subparsers(dest="tokens_command", required=True, metavar="ACTION")
    p = tsub.add_parser("create", help="create a token for a user; it is printed only once")
    p.add_argument("name", help="the user the token belongs to")
    p.add_argument("--label", default="", help="what the token is for (e.g. 'nightly export')")
    p.add_argument("--json", action="store_true")
    p2 = tsub.add_parser("list", help="list tokens (never their secret)")
    p2.add_argument("name", nargs="?", help="only this user's tokens")
    p2.add_argument("--json", action="store_true")
    p3 = tsub.add_parser("revoke", help="revoke a token by its id")
    p3.add_argument("token_id", metavar="ID")
    for tp in (p, p2, p3):
        add_db(tp)
        tp.set_defaults(fn=cmd_tokens)
