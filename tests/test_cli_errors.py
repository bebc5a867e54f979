"""Errors of the ``bear`` command, run as a real subprocess: with ``--json`` every error is one
JSON object on stdout (``error``, ``type`` and its details) and a non-zero exit; without it,
one ``error: …`` line on stderr. A book held by another process names the holder in words a
person recognises — a Jupyter kernel (a real one, started with jupyter_client), another bear
command, bear serve's URL, or the program and its pid."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from netutil import bear_cli

import bear
from bear.db import holder, served
from bear.testing import make_workspace

ROOT = Path(__file__).resolve().parents[1]


def json_error(r: subprocess.CompletedProcess[str], kind: str, *words: str) -> dict:
    """The JSON error object of ``r``: exit 2, nothing on stderr, ``type`` is ``kind``."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stderr == "", r.stderr
    obj = json.loads(r.stdout)
    assert obj["type"] == kind, obj
    for w in words:
        assert w in obj["error"], (w, obj)
    return obj


@pytest.fixture
def book(tmp_path) -> Path:
    path = tmp_path / "book.duckdb"
    make_workspace([{"id": 1}, {"id": 2, "approved": False}], path=path).close()
    return path


# -- --json errors ---------------------------------------------------------------------------
def test_every_kind_of_error_honours_json(book, tmp_path):
    obj = json_error(
        bear_cli("settings", "set", "release_batch_size=0", "--json", "--db", str(book)),
        "SettingError",
        "release_batch_size",
        "≥ 1",
    )
    assert (obj["name"], obj["value"]) == ("release_batch_size", "0")
    json_error(
        bear_cli("settings", "get", "nosuch", "--json", "--db", str(book)),
        "SettingError",
        "unknown setting 'nosuch'",
    )
    obj = json_error(
        bear_cli("events", "--json", "--min-amount", "abc", "--db", str(book)), "InputError"
    )
    assert (obj["name"], obj["value"]) == ("min_amount", "abc")
    json_error(
        bear_cli("preview", "--json", "--ids-file", str(tmp_path / "none.txt"), "--db", str(book)),
        "BearError",
        "none.txt",
    )
    json_error(bear_cli("run", "show", "99", "--json", "--db", str(book)), "NotFoundError", "99")
    obj = json_error(
        bear_cli("events", "--json", "--limit", "x", "--db", str(book)),
        "UsageError",
        "--limit",
        "'x'",
    )
    assert set(obj) == {"error", "type"}
    (tmp_path / "events.csv").write_text("id,name\nnot-a-number,x\n")
    obj = json_error(
        bear_cli("import", "--events", str(tmp_path / "events.csv"), "--json", "--db", str(book)),
        "ImportProblemError",
    )
    assert obj["ok"] is False and obj["problems"]
    missing = tmp_path / "no" / "such.duckdb"
    json_error(bear_cli("events", "--json", "--db", str(missing)), "BearError", "does not exist")


def test_without_json_an_error_is_one_line_on_stderr(book):
    r = bear_cli("settings", "set", "release_batch_size=0", "--db", str(book))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("error: setting 'release_batch_size'")
    assert len(r.stderr.splitlines()) == 1
    r = bear_cli("events", "--limit", "x", "--db", str(book))
    assert r.returncode == 2 and "invalid int value: 'x'" in r.stderr and r.stdout == ""


def test_the_help_says_how_errors_come(book):
    r = bear_cli("--help")
    assert r.returncode == 0
    assert '{"error": "<message>", "type": "<class, e.g. DatabaseLockedError>"' in r.stdout


# -- bear preview --reasons --------------------------------------------------------------------
def test_preview_reasons_lists_each_violation_capped(tmp_path):
    path = tmp_path / "many.duckdb"
    make_workspace([{"id": i, "approved": i > 7} for i in range(1, 11)], path=path).close()
    r = bear_cli("preview", "--reasons", "3", "--action", "release", "--db", str(path))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("Violations (7):\n", 1)[1].splitlines()
    assert lines[0].startswith("  event 1  release.not_approved (block): BE-0000001 ")
    assert [line.split()[1] for line in lines[:3]] == ["1", "2", "3"]
    assert lines[3] == "  … and 4 more (--reasons N shows more, --json lists them)"
    r = bear_cli("preview", "--reasons", "--action", "release", "--db", str(path))
    assert "… and" not in r.stdout and r.stdout.count("release.not_approved (block)") == 7
    data = json.loads(
        bear_cli(
            "preview", "--reasons", "2", "--json", "--action", "release", "--db", str(path)
        ).stdout
    )
    assert [(v["billing_event_id"], v["rule_id"]) for v in data["reasons"]] == [
        (1, "release.not_approved"),
        (2, "release.not_approved"),
    ]
    assert set(data["reasons"][0]) == {"billing_event_id", "rule_id", "severity", "message"}
    assert data["reasons_left_out"] == 5
    plain = json.loads(bear_cli("preview", "--json", "--db", str(path)).stdout)
    assert "reasons" not in plain
    r = bear_cli("preview", "--reasons", "0", "--db", str(path))
    assert r.returncode == 2 and "reasons" in r.stderr


# -- who holds the book ------------------------------------------------------------------------
def test_a_python_process_is_named_by_program_and_pid(book, hold_database):
    proc = hold_database(book)
    r = bear_cli("events", "--db", str(book))
    assert r.returncode == 2
    line = r.stderr.strip()
    assert line == (
        f"error: the database {str(book)!r} is in use by {Path(sys.executable).name} -c … "
        f"(pid {proc.pid}). A BEAR database can be open in one process at a time: stop that "
        "process and try again, or work on a copy of the file."
    )
    obj = json_error(bear_cli("events", "--json", "--db", str(book)), "DatabaseLockedError")
    assert obj["pid"] == proc.pid and obj["url"] is None and obj["path"] == str(book)
    assert obj["holder"] == f"{Path(sys.executable).name} -c … (pid {proc.pid})"
    assert obj["command"].startswith(sys.executable)


def test_a_served_book_names_its_url(book, hold_database):
    proc = hold_database(book)
    served.note_path(book).write_text(json.dumps({"url": "http://127.0.0.1:5999", "pid": proc.pid}))
    obj = json_error(bear_cli("plugins", "--json", "--db", str(book)), "DatabaseLockedError")
    assert obj["url"] == "http://127.0.0.1:5999"
    assert "it is served at http://127.0.0.1:5999" in obj["error"]
    assert "bear --server http://127.0.0.1:5999" in obj["error"]


def test_another_bear_command_is_named(book):
    worker = subprocess.Popen(
        [sys.executable, "-m", "bear.cli", "worker", "--db", str(book)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 60
        started = False
        while time.monotonic() < deadline and worker.poll() is None and not started:
            ready, _, _ = select.select([worker.stdout], [], [], 0.2)
            started = bool(ready) and worker.stdout.readline().startswith("worker on")
        assert started, worker.stderr.read() if worker.poll() is not None else "no start"
        r = bear_cli("events", "--db", str(book))
        assert r.returncode == 2
        # the command as far as it goes in 80 characters
        said = f"is in use by another bear command (pid {worker.pid}: bear worker --db "
        assert said in r.stderr
        assert "wait for that command to finish, or stop it" in r.stderr
    finally:
        worker.kill()
        worker.wait(10)


def test_a_jupyter_kernel_is_named(book):
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(ROOT), env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=120)
            reply = kc.execute_interactive(
                f"import bear; ws = bear.connect({str(book)!r})", timeout=120
            )
            assert reply["content"]["status"] == "ok", reply["content"]
            pid = km.provisioner.pid
            r = bear_cli("events", "--db", str(book))
            assert r.returncode == 2
            assert f"is in use by a Jupyter kernel (pid {pid})" in r.stderr
            assert "close the workspace in that notebook (ws.close())" in r.stderr
            obj = json_error(bear_cli("events", "--json", "--db", str(book)), "DatabaseLockedError")
            assert obj["holder"] == f"a Jupyter kernel (pid {pid})" and obj["pid"] == pid
            reply = kc.execute_interactive("ws.close()", timeout=60)
            assert reply["content"]["status"] == "ok"
            assert bear_cli("events", "--db", str(book)).returncode == 0  # closed: free again
        finally:
            kc.stop_channels()
    finally:
        km.shutdown_kernel(now=True)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (
            ["/v/bin/python", "-m", "ipykernel_launcher", "-f", "/k.json"],
            "a Jupyter kernel (pid 7)",
        ),
        (["/v/bin/python", "/v/bin/bear", "serve", "--db", "b"], "bear serve (pid 7)"),
        (["/v/bin/bear", "--safe-mode", "serve"], "bear serve (pid 7)"),
        (
            ["/v/bin/python", "-m", "bear.cli", "events", "--db", "b"],
            "another bear command (pid 7: bear events --db b)",
        ),
        (["/usr/bin/python3.12", "tool.py", "--x"], "python3.12 tool.py (pid 7)"),
        (["/usr/bin/python3", "-m", "mytool"], "python3 -m mytool (pid 7)"),
        (["/opt/duckdb", "book.duckdb"], "duckdb (pid 7)"),
    ],
)
def test_the_holder_is_described_from_its_command_line(argv, words):
    assert holder.describe(7, argv).words == words


def test_a_holder_that_cannot_be_read_is_a_process_number():
    assert holder.describe(999_999_999).words == "process 999999999"  # gone, or not ours
    assert holder.describe(None).words == "another process"


def test_the_api_raises_the_same_error(book, hold_database):
    proc = hold_database(book)
    with pytest.raises(bear.BearError) as e:
        bear.connect(book)
    assert e.value.holder == f"{Path(sys.executable).name} -c … (pid {proc.pid})"  # type: ignore[attr-defined]
