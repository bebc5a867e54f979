"""`bear --server URL …`: the CLI through a served book's API (DESIGN §7), `bear login` and
`bear logout`, and the error a local open of a served book gives (it names the server).

`bear` runs as a subprocess against a real `bear serve` subprocess; every call's output is
checked for tracebacks. Each call gets its own empty config folder ($XDG_CONFIG_HOME) unless
a test gives one, so no stored token of the machine is ever read.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from netutil import serving

import bear
from bear.errors import DatabaseLockedError

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def served(demo_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli-server")
    path = folder / "book.duckdb"
    shutil.copy(demo_path, path)
    ref_path = folder / "reference.duckdb"
    shutil.copy(demo_path, ref_path)
    with bear.connect(path) as ws:
        for name, role in (("admin", "admin"), ("ana", "analyst"), ("vic", "viewer")):
            ws.team.add(name, role, actor="setup", password=PASSWORD)
        tokens = {n: ws.team.create_token(n, actor="setup")[1] for n in ("admin", "ana", "vic")}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BEAR_DISABLE_PLUGIN_AUTOLOAD", "1")
        ref = bear.connect(ref_path)
    try:
        with serving(path) as url:
            yield url, tokens, ref, folder
    finally:
        ref.close()


def bear_cli(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None, config: Path
) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("BEAR_SERVER", "BEAR_TOKEN", "BEAR_DB", "XDG_CONFIG_HOME")
    }
    r = subprocess.run(
        [sys.executable, "-m", "bear.cli", *args],
        capture_output=True,
        text=True,
        input=stdin if stdin is not None else "",
        timeout=180,
        env={
            **clean,
            "BEAR_DISABLE_PLUGIN_AUTOLOAD": "1",
            "PYTHONWARNINGS": "ignore",
            "XDG_CONFIG_HOME": str(config),
            **(env or {}),
        },
    )
    assert "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    return r


def test_events_go_through_the_server(served, tmp_path):
    url, tokens, ref, _ = served
    r = bear_cli(
        "--server", url, "--token", tokens["vic"], "events", "--awaiting", "any",
        "--currency", "EUR", "--limit", "5", "--sort", "id:desc", "--json",
        config=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["count"] == len(ref.events(currency="EUR"))
    want = ref.events(currency="EUR").page(0, 5, [("id", "desc")])
    assert [e["id"] for e in out["events"]] == list(want["id"])
    assert [e["summary_amount"] for e in out["events"]] == [str(v) for v in want["summary_amount"]]
    # the options also work after the command
    r = bear_cli(
        "events", "--server", url, "--token", tokens["vic"], "--currency", "EUR",
        config=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0 and "matching; showing" in r.stdout


def test_preview_goes_through_the_server(served, tmp_path):
    url, tokens, ref, _ = served
    r = bear_cli(
        "--server", url, "--token", tokens["ana"], "preview", "--currency", "GBP", "--json",
        config=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    want = ref.preview(ref.awaiting_release(currency="GBP"))
    assert (out["selected"], out["eligible"]) == (want.selected, want.eligible)
    assert len(out["violations"]) == min(len(want.violations), 1000)


def test_a_run_through_the_server_is_the_tokens_users(served, tmp_path):
    url, tokens, ref, folder = served
    ids = ref.awaiting_release(currency="USD", eligibility="eligible").ids()[:5]
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(map(str, ids)) + "\n")
    base = ("--server", url, "--token", tokens["ana"])
    r = bear_cli(
        *base, "run", "release", "--ids-file", str(ids_file), "--user", "someone@example.com",
        "--json", config=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "note: the run is recorded as ana, the token's user" in r.stderr
    run = json.loads(r.stdout)
    assert run["status"] == "completed" and run["released"] == 5
    assert run["requested_by"] == "ana"
    r = bear_cli(*base, "runs", "--json", config=tmp_path)
    assert r.returncode == 0
    assert {"id": run["id"], "requested_by": "ana"}.items() <= json.loads(r.stdout)[0].items()
    r = bear_cli(*base, "runs", config=tmp_path)
    assert r.returncode == 0 and " ana " in r.stdout
    r = bear_cli(*base, "run", "show", str(run["id"]), config=tmp_path)
    assert r.returncode == 0 and f"run {run['id']} (release) by ana: completed" in r.stdout
    r = bear_cli(*base, "run", "cancel", str(run["id"]), config=tmp_path)
    assert r.returncode == 2 and "already finished" in r.stderr


def test_a_viewer_is_refused_with_the_reason(served, tmp_path):
    url, tokens, ref, _ = served
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text(f"{ref.awaiting_release().ids()[0]}\n")
    r = bear_cli(
        "--server", url, "--token", tokens["vic"], "run", "release", "--ids-file", str(ids_file),
        config=tmp_path,
    )  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.strip() == "error: vic (viewer) may not run: that needs the analyst role"
    r = bear_cli("--server", url, "--token", tokens["vic"], "users", "list", config=tmp_path)
    assert r.returncode == 2 and "vic (viewer) may not" in r.stderr


def test_settings_through_the_server(served, tmp_path):
    url, tokens, _, _ = served
    admin = ("--server", url, "--token", tokens["admin"])
    r = bear_cli(*admin, "settings", "list", "--json", config=tmp_path)
    assert r.returncode == 0
    assert "release_batch_size" in {s["name"] for s in json.loads(r.stdout)}
    r = bear_cli(*admin, "settings", "set", "release_batch_size=150", config=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "release_batch_size = 150"
    r = bear_cli(*admin, "settings", "get", "release_batch_size", config=tmp_path)
    assert r.stdout.strip() == "150"
    r = bear_cli(*admin, "settings", "history", "release_batch_size", "--json", config=tmp_path)
    assert json.loads(r.stdout)[0]["actor"] == "admin"
    r = bear_cli(*admin, "settings", "set", "release_batch_size=0", config=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("error: setting 'release_batch_size'")


def test_users_and_tokens_through_the_server(served, tmp_path):
    url, tokens, _, _ = served
    admin = ("--server", url, "--token", tokens["admin"])
    r = bear_cli(
        *admin, "users", "add", "nia", "--role", "viewer", "--no-password", config=tmp_path
    )
    assert r.returncode == 0, r.stderr
    r = bear_cli(*admin, "tokens", "create", "nia", "--label", "laptop", "--json", config=tmp_path)
    made = json.loads(r.stdout)
    r = bear_cli("--server", url, "--token", made["token"], "runs", config=tmp_path)
    assert r.returncode == 0
    r = bear_cli(*admin, "users", "list", "--json", config=tmp_path)
    assert "nia" in {u["name"] for u in json.loads(r.stdout)}
    assert bear_cli(*admin, "tokens", "revoke", str(made["id"]), config=tmp_path).returncode == 0
    r = bear_cli("--server", url, "--token", made["token"], "runs", config=tmp_path)
    assert r.returncode == 2 and "bear login --server" in r.stderr


def test_commands_that_need_the_file_refuse_a_server(served, tmp_path):
    url, tokens, _, _ = served
    for command in (["init"], ["seed"], ["worker", "--once"]):
        r = bear_cli("--server", url, "--token", tokens["admin"], *command, config=tmp_path)
        assert r.returncode == 2
        assert f"bear {command[0]} works on the database file itself" in r.stderr


def test_export_and_retry_go_through_the_server(served, tmp_path):
    url, tokens, _, _ = served
    out = tmp_path / "out"
    r = bear_cli(
        "--server", url, "--token", tokens["ana"], "export", "--out", str(out), config=tmp_path
    )
    assert r.returncode == 0, r.stderr
    assert (out / "events.csv").is_file() and (out / "companies.csv").is_file()
    assert "events:" in r.stdout and "Traceback" not in r.stderr
    r = bear_cli(
        "--server", url, "--token", tokens["ana"], "notifications", "retry", config=tmp_path
    )
    assert r.returncode in (0, 1) and "sent" in r.stdout, r.stderr


def test_login_stores_the_token_for_the_server_only_for_you(served, tmp_path):
    url, tokens, _, _ = served
    config = tmp_path / "config"
    r = bear_cli(
        "login", "--server", url + "/", "--token-stdin", stdin=tokens["ana"] + "\n", config=config
    )
    assert r.returncode == 0, r.stderr
    assert f"signed in to {url} as ana (analyst)" in r.stdout
    stored = config / "bear" / "credentials.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o700
    assert json.loads(stored.read_text())["servers"][url]["token"] == tokens["ana"]
    # later commands (and $BEAR_SERVER) use it
    r = bear_cli("runs", env={"BEAR_SERVER": url}, config=config)
    assert r.returncode == 0, r.stderr
    r = bear_cli(
        "login", "--server", url, "--token-stdin", stdin="bear_1_nonsense\n", config=config
    )
    assert r.returncode == 2 and "error:" in r.stderr
    assert json.loads(stored.read_text())["servers"][url]["token"] == tokens["ana"]
    r = bear_cli("logout", "--server", url, config=config)
    assert r.returncode == 0 and url in r.stdout
    assert json.loads(stored.read_text())["servers"] == {}
    r = bear_cli("--server", url, "runs", config=config)
    assert r.returncode == 2 and f"bear login --server {url}" in r.stderr


def test_a_served_book_names_its_server_when_opened_locally(demo_path, tmp_path):
    path = tmp_path / "book.duckdb"
    shutil.copy(demo_path, path)
    note = Path(str(path) + ".serve.json")
    with serving(path) as url:
        assert json.loads(note.read_text())["url"] == url
        with pytest.raises(DatabaseLockedError) as caught:
            bear.connect(path)
        assert caught.value.url == url
        assert f"bear --server {url}" in str(caught.value)
        assert f"bear.connect('{url}', token=…)" in str(caught.value)
        r = bear_cli("events", "--db", str(path), config=tmp_path)
        assert r.returncode == 2 and f"it is served at {url}" in r.stderr
        # and the CLI does what the message says (a book without users needs no token)
        r = bear_cli("--server", url, "runs", config=tmp_path)
        assert r.returncode == 0, r.stderr
    assert not note.exists()
    with bear.connect(path) as ws:
        assert len(ws.events()) > 0
