"""``bear users`` and ``bear tokens``, run as real subprocesses: passwords from stdin and from a
hidden prompt on a terminal, refusals as one error line, the last admin, tokens shown once and
usable, revocation, ``--json``, and no secret in the output or in the database file."""

from __future__ import annotations

import getpass
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import bear
from bear.errors import AuthError

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery staple"
ACTOR = f"local:{getpass.getuser()}"


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "BEAR_DB"}


def bear_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bear.cli", *args],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        env=_env(),
        timeout=120,
    )


def ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    return r.stdout


def assert_error(r: subprocess.CompletedProcess, *words: str) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def on_terminal(args: list[str], answers: list[tuple[str, str]], timeout: float = 120):
    """Run ``bear *args`` with a pseudo-terminal as its controlling terminal, typing each
    answer when its prompt appears; returns (exit status, everything the terminal showed)."""
    env = _env()
    argv = [sys.executable, "-m", "bear.cli", *args]
    pid, fd = pty.fork()
    if pid == 0:  # the child: become bear (nothing else runs between fork and exec)
        os.chdir(ROOT)
        os.execve(sys.executable, argv, env)
    shown, pos, pending = b"", 0, list(answers)
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(left, 0))
            if not ready:
                raise TimeoutError(f"bear {' '.join(args)} waited for input: {shown!r}")
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
            while pending and (at := shown.find(pending[0][0].encode(), pos)) >= 0:
                pos = at + len(pending[0][0])
                os.write(fd, pending.pop(0)[1].encode() + b"\n")
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        raise
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), shown.decode("utf-8", "replace")


def file_bytes(path: Path) -> bytes:
    """The database file and its write-ahead log, if one is left."""
    wal = Path(f"{path}.wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


@pytest.fixture
def book(tmp_path) -> Path:
    """A book with one admin, ``root`` (password ``PASSWORD``), not opened."""
    path = tmp_path / "book.duckdb"
    with bear.connect(path) as ws:
        ws.team.add("root", "admin", actor="setup", password=PASSWORD)
    return path


# -- users -----------------------------------------------------------------------------------
def test_add_reads_the_password_from_stdin_and_never_shows_or_stores_it(tmp_path):
    db = tmp_path / "book.duckdb"
    r = bear_cli("users", "add", "ann", "--role", "admin", "--password-stdin", "--db", str(db),
                 stdin=PASSWORD + "\n")  # fmt: skip
    out = ok(r)
    assert "added ann: admin" in out and "password: set" in out
    assert PASSWORD not in r.stdout + r.stderr
    with bear.connect(db) as ws:
        assert ws.team.authenticate("ann", PASSWORD).name == "ann"
        with pytest.raises(AuthError):
            ws.team.authenticate("ann", PASSWORD + "x")
        log = ws.team.changes("user", "ann")
        assert list(log.actor) == [ACTOR] and ws.team.users().created_by[0] == ACTOR
    data = file_bytes(db)
    assert b"$argon2" in data and b"ann" in data  # the check below can see stored text
    assert PASSWORD.encode() not in data


def test_add_with_email_scopes_and_no_password_then_list(book):
    r = bear_cli("users", "add", "ana", "--role", "analyst", "--email", "ana@example.com",
                 "--scope", "regions=EMEA,APAC", "--scope", "companies=1,2", "--scope",
                 "regions=LATAM", "--no-password", "--json", "--db", str(book))  # fmt: skip
    added = json.loads(ok(r))
    assert added == {
        "name": "ana",
        "role": "analyst",
        "email": "ana@example.com",
        "scopes": {"companies": [1, 2], "regions": ["APAC", "EMEA", "LATAM"]},
        "disabled": False,
        "password": False,
    }
    listed = json.loads(ok(bear_cli("users", "list", "--json", "--db", str(book))))
    assert [u["name"] for u in listed] == ["ana", "root"]
    assert listed[0]["scopes"] == added["scopes"] and listed[0]["created_by"] == ACTOR
    assert all("password" not in key for u in listed for key in u)
    text = ok(bear_cli("users", "list", "--db", str(book)))
    assert "ana@example.com" in text and "analyst" in text and "root" in text
    with bear.connect(book) as ws, pytest.raises(AuthError):
        ws.team.authenticate("ana", "")  # no password: tokens only


@pytest.mark.parametrize(
    ("args", "stdin", "words"),
    [
        (["root", "--role", "viewer", "--no-password"], None, ["'root' exists already"]),
        (["bob", "--role", "root", "--no-password"], None, ["unknown role 'root'", "admin"]),
        (["bob", "--role", "viewer", "--password-stdin"], "short\n", ["at least 10"]),
        (["bob", "--role", "viewer", "--password-stdin"], "", ["stdin holds no password"]),
        (["bob", "--role", "viewer"], None, ["not a terminal", "--password-stdin"]),
        (["bob", "--role", "viewer", "--no-password", "--email", "nope"], None, ["e-mail"]),
        (["bob", "--role", "viewer", "--no-password", "--scope", "planets=x"], None, ["planets"]),
        (["bob", "--role", "viewer", "--no-password", "--scope", "EMEA"], None, ["KIND=VALUE"]),
        (["b b", "--role", "viewer", "--no-password"], None, ["user name"]),
    ],
)
def test_bad_users_are_one_error_line_and_write_nothing(book, args, stdin, words):
    r = bear_cli("users", "add", *args, "--db", str(book), stdin=stdin)
    line = assert_error(r, *words)
    assert "short" not in line  # a refused password is not echoed either
    with bear.connect(book) as ws:
        assert list(ws.team.users().name) == ["root"]
        assert len(ws.team.changes()) == 1


def test_the_last_admin_cannot_be_demoted_or_disabled(book):
    assert_error(
        bear_cli("users", "set-role", "root", "viewer", "--db", str(book)), "no enabled admin"
    )
    assert_error(bear_cli("users", "disable", "root", "--db", str(book)), "no enabled admin")
    ok(bear_cli("users", "add", "eve", "--role", "admin", "--no-password", "--db", str(book)))
    out = ok(bear_cli("users", "set-role", "root", "viewer", "--db", str(book)))
    assert "changed root: viewer" in out
    with bear.connect(book) as ws:
        assert ws.team.get("root").role == "viewer" and ws.team.get("eve").role == "admin"


def test_change_role_scopes_email_and_disable_enable(book):
    db = str(book)
    ok(bear_cli("users", "add", "vic", "--role", "viewer", "--no-password", "--db", db))
    assert (
        json.loads(ok(bear_cli("users", "set-role", "vic", "analyst", "--json", "--db", db)))[
            "role"
        ]
        == "analyst"
    )
    assert_error(bear_cli("users", "set-role", "vic", "boss", "--db", db), "unknown role 'boss'")
    user = json.loads(
        ok(
            bear_cli(
                "users", "set-scopes", "vic", "--scope", "practices=Data", "--json", "--db", db
            )
        )
    )
    assert user["scopes"] == {"practices": ["Data"]}
    user = json.loads(ok(bear_cli("users", "set-scopes", "vic", "--json", "--db", db)))
    assert user["scopes"] == {}  # no --scope: every event
    user = json.loads(
        ok(bear_cli("users", "set-email", "vic", "vic@example.com", "--json", "--db", db))
    )
    assert user["email"] == "vic@example.com"
    assert "disabled" in ok(bear_cli("users", "disable", "vic", "--db", db))
    with bear.connect(book) as ws:
        assert ws.team.get("vic").disabled
    assert "enabled" in ok(bear_cli("users", "enable", "vic", "--db", db))
    assert_error(bear_cli("users", "disable", "nobody", "--db", db), "no user named 'nobody'")
    with bear.connect(book) as ws:
        assert not ws.team.get("vic").disabled
        log = ws.team.changes("user", "vic")
        assert set(log.actor) == {ACTOR} and len(log) == 7  # add + 6 changes
        assert json.loads(log.new_value[0]) == {"disabled": False}


def test_set_password_from_stdin(book):
    new = "another long passphrase"
    r = bear_cli("users", "set-password", "root", "--password-stdin", "--db", str(book),
                 stdin=new + "\r\n")  # fmt: skip
    assert "password of root changed" in ok(r)
    assert new not in r.stdout + r.stderr
    with bear.connect(book) as ws:
        assert ws.team.authenticate("root", new).name == "root"
        with pytest.raises(AuthError):
            ws.team.authenticate("root", PASSWORD)
    assert new.encode() not in file_bytes(book) and PASSWORD.encode() not in file_bytes(book)


def test_the_password_prompt_on_a_terminal_asks_twice_and_hides_it(book):
    status, shown = on_terminal(
        ["users", "add", "tess", "--role", "viewer", "--db", str(book)],
        [("Password: ", PASSWORD), ("Password again: ", PASSWORD)],
    )
    assert status == 0, shown
    assert "added tess: viewer" in shown and PASSWORD not in shown  # echo was off
    status, shown = on_terminal(
        ["users", "set-password", "tess", "--db", str(book)],
        [("Password: ", "first long password"), ("Password again: ", "second long password")],
    )
    assert status == 2 and "error: the two passwords differ" in shown
    assert "Traceback" not in shown and "long password" not in shown
    with bear.connect(book) as ws:
        assert ws.team.authenticate("tess", PASSWORD).name == "tess"


# -- tokens ----------------------------------------------------------------------------------
def test_a_token_is_printed_once_works_and_is_revoked(book):
    db = str(book)
    ok(bear_cli("users", "add", "ci", "--role", "analyst", "--no-password", "--db", db))
    out = ok(bear_cli("tokens", "create", "ci", "--label", "nightly export", "--db", db))
    token = next(w for w in out.split() if w.startswith("bear_"))
    assert out.count(token) == 1 and "shown only now" in out
    assert "token 1 for ci (nightly export)" in out
    with bear.connect(book) as ws:
        assert ws.team.token_user(token).name == "ci"
    created = json.loads(ok(bear_cli("tokens", "create", "ci", "--json", "--db", db)))
    assert created["id"] == 2 and created["user"] == "ci" and "shown only now" in created["note"]
    assert created["token"].startswith("bear_2_")

    text = ok(bear_cli("tokens", "list", "--db", db))
    listed = json.loads(ok(bear_cli("tokens", "list", "ci", "--json", "--db", db)))
    assert token not in text and created["token"] not in json.dumps(listed)
    assert [t["id"] for t in listed] == [1, 2] and listed[0]["label"] == "nightly export"
    assert listed[0]["created_by"] == ACTOR and listed[0]["revoked_at"] is None
    assert json.loads(ok(bear_cli("tokens", "list", "root", "--json", "--db", db))) == []
    data = file_bytes(book)
    assert b"nightly export" in data and token.encode() not in data

    assert "token 1 revoked" in ok(bear_cli("tokens", "revoke", "1", "--db", db))
    with bear.connect(book) as ws:
        with pytest.raises(AuthError):
            ws.team.token_user(token)
        assert ws.team.token_user(created["token"]).name == "ci"
        assert list(ws.team.changes("token", "1").actor) == [ACTOR, ACTOR]
    listed = json.loads(ok(bear_cli("tokens", "list", "--json", "--db", db)))
    assert listed[0]["revoked_at"] is not None and listed[0]["revoked_by"] == ACTOR
    assert_error(bear_cli("tokens", "revoke", "99", "--db", db), "no token 99")
    assert_error(bear_cli("tokens", "revoke", "x", "--db", db), "not a token id")
    assert_error(bear_cli("tokens", "create", "nobody", "--db", db), "no user named 'nobody'")
    assert_error(bear_cli("tokens", "list", "nobody", "--db", db), "no user named 'nobody'")


def test_help_names_users_and_tokens():
    out = ok(bear_cli("--help"))
    assert "users" in out and "tokens" in out
    out = ok(bear_cli("users", "add", "--help"))
    assert "--password-stdin" in out and "--no-password" in out and "--scope" in out
