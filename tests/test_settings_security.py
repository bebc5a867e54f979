"""Settings cannot run code or leak secrets, and are validated before they are stored
(issue 12, findings 2 and 3)."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import time

import duckdb
import pytest
from netutil import Inbox, free_port

import bear
from bear.errors import BearError, PluginError, SettingError

PWNED = "import pathlib\npathlib.Path({path!r}).write_text('pwned')\n"
RAISING = """
import bear

@bear.hookimpl
def bear_register_rules(settings):
    raise RuntimeError("no rules today")
"""


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bear.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "BEAR_DISABLE_PLUGIN_AUTOLOAD": "1", **(env or {})},
    )


def _store_behind_bears_back(path, name: str, value) -> None:
    con = duckdb.connect(str(path))
    con.execute(
        "INSERT OR REPLACE INTO settings (key, value, updated_at) VALUES (?, ?::JSON, now())",
        [name, json.dumps(value)],
    )
    con.close()


def test_a_served_book_refuses_start_up_settings_before_loading_anything(ws, tmp_path):
    marker = tmp_path / "pwned.txt"
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "evil.py").write_text(PWNED.format(path=str(marker)))
    ws.settings.lock_startup()  # what `bear serve` does once it has started
    for name, value in (("plugins_dir", str(folder)), ("rules_file", "/etc/passwd")):
        with pytest.raises(SettingError, match=f"{name}.*set when BEAR starts") as info:
            ws.settings.update(**{name: value})
        assert info.value.name == name
        assert getattr(ws.settings, name) == ""
    assert not marker.exists()
    described = {d["name"]: d for d in ws.settings.describe()}
    assert described["plugins_dir"]["editable"] is False
    assert described["smtp_host"]["editable"] is True


def test_a_plugins_folder_whose_rules_fail_is_refused_and_not_stored(tmp_path):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "broken.py").write_text(RAISING)
    path = tmp_path / "book.duckdb"
    with bear.connect(path) as ws:
        with pytest.raises(PluginError, match="no rules today"):
            ws.settings.update(plugins_dir=str(folder))
        assert ws.settings.plugins_dir == ""
        ws.settings.reload()  # what the database holds
        assert ws.settings.plugins_dir == ""
    with bear.connect(path) as ws:  # and the book still opens
        assert ws.settings.plugins_dir == ""


def test_a_plugins_folder_that_fails_to_import_is_refused(tmp_path, ws):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "bad.py").write_text("raise ImportError('missing dependency')\n")
    with pytest.raises(PluginError, match="missing dependency"):
        ws.settings.update(plugins_dir=str(folder))
    assert ws.settings.plugins_dir == ""


@pytest.mark.parametrize("name", ["plugins_dir", "rules_file"])
def test_a_book_whose_stored_setting_fails_opens_in_safe_mode(tmp_path, name):
    path = tmp_path / "book.duckdb"
    bear.connect(path).close()
    if name == "plugins_dir":
        folder = tmp_path / "plugins"
        folder.mkdir()
        (folder / "broken.py").write_text(RAISING)
        bad = str(folder)
    else:
        bad = str(tmp_path / "rules.toml")
        (tmp_path / "rules.toml").write_text("[[rule]]\nid = 'x.y'\nwhen = 'nonsense ((('\n")
    _store_behind_bears_back(path, name, bad)

    with pytest.raises(PluginError) as info:
        bear.connect(path)
    assert info.value.setting == name
    assert f"bear --safe-mode settings reset {name}" in str(info.value)

    # the CLI says the same, without a traceback, and exits 2
    out = _cli("events", "--db", str(path))
    assert out.returncode == 2
    assert name in out.stderr and "--safe-mode" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout

    # safe mode opens it; the stored value is still there to be fixed
    with bear.connect(path, safe_mode=True) as ws:
        assert getattr(ws.settings, name) == bad
        assert ws.awaiting_release().count() == 0
    out = _cli("--safe-mode", "settings", "reset", name, "--db", str(path))
    assert out.returncode == 0, out.stderr
    with bear.connect(path) as ws:
        assert getattr(ws.settings, name) == ""


def test_serve_applies_its_start_up_settings_before_serving(tmp_path):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "broken.py").write_text(RAISING)
    path = tmp_path / "book.duckdb"
    bear.connect(path).close()
    out = _cli("serve", "--db", str(path), "--port", str(free_port()), "--plugins-dir", str(folder))
    assert out.returncode == 2
    assert "no rules today" in out.stderr
    assert "Traceback" not in out.stderr
    with bear.connect(path) as ws:
        assert ws.settings.plugins_dir == ""


# -- SMTP credentials ------------------------------------------------------------------------
class _Auth:
    def __init__(self) -> None:
        self.seen: list[tuple[str, bool]] = []

    def __call__(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult

        self.seen.append((auth_data.login.decode(), session.ssl is not None))
        return AuthResult(success=auth_data.password == b"hunter2")


@pytest.fixture
def tls_smtp(tmp_path):
    """A real SMTP server requiring STARTTLS before AUTH, with a certificate from a test CA."""
    trustme = pytest.importorskip("trustme")
    from aiosmtpd.controller import Controller

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    inbox, auth, port = Inbox(), _Auth(), free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=server_ctx,
        require_starttls=False,
        authenticator=auth,
        auth_require_tls=False,  # the server would take a password in clear: BEAR must not
    )
    controller.start()
    try:
        yield port, inbox, auth, ca_file
    finally:
        controller.stop()


def test_a_user_name_needs_starttls(ws):
    with pytest.raises(SettingError, match="only sent over TLS"):
        ws.settings.update(smtp_host="127.0.0.1", smtp_username="bear")
    assert ws.settings.smtp_username == ""
    ws.settings.update(smtp_starttls=True, smtp_username="bear")
    with pytest.raises(SettingError, match="only sent over TLS"):
        ws.settings.update(smtp_starttls=False)
    assert ws.settings.smtp_starttls is True


def test_credentials_are_never_sent_in_clear(tmp_path, tls_smtp, monkeypatch):
    port, inbox, auth, _ = tls_smtp
    monkeypatch.setenv("BEAR_SMTP_PASSWORD", "hunter2")
    path = tmp_path / "book.duckdb"
    bear.connect(path).close()
    for name, value in (("smtp_host", "127.0.0.1"), ("smtp_port", port), ("smtp_username", "bear")):
        _store_behind_bears_back(path, name, value)  # a book set up before this rule existed
    with bear.connect(path) as ws, pytest.raises(BearError, match="only sent over TLS"):
        ws.send_test_notification("ana@example.com")
    time.sleep(0.2)
    assert auth.seen == [] and inbox.messages == []


def test_starttls_verifies_the_certificate(ws, tls_smtp, monkeypatch):
    port, inbox, auth, ca_file = tls_smtp
    monkeypatch.setenv("BEAR_SMTP_PASSWORD", "hunter2")
    monkeypatch.delenv("BEAR_SMTP_CA_FILE", raising=False)
    ws.settings.update(smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=True)
    ws.settings.update(smtp_username="bear")
    # a certificate no trusted CA signed: refused before any credential is sent
    with pytest.raises(BearError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        ws.send_test_notification("ana@example.com")
    assert auth.seen == []
    # trusted through $BEAR_SMTP_CA_FILE: signed in over TLS, delivered
    monkeypatch.setenv("BEAR_SMTP_CA_FILE", str(ca_file))
    assert "sent" in ws.send_test_notification("ana@example.com")
    assert auth.seen == [("bear", True)]
    assert len(inbox.wait_for(1)) == 1


def test_copying_a_book_keeps_it_openable(demo_path, tmp_path):
    # safe mode does not resume runs: a book copied mid-run resumes when opened normally
    path = tmp_path / "copy.duckdb"
    shutil.copy(demo_path, path)
    with bear.connect(path, safe_mode=True) as ws:
        assert ws.safe_mode is True
        assert ws.plugins.sources  # the built-ins are there


def test_a_signed_in_persons_test_email_goes_to_their_own_address(ws, smtp_server):
    from bear.ui.state import SettingsState

    host, port, inbox = smtp_server
    ws.settings.update(smtp_host=host, smtp_port=port)
    ws.team.add("boss", "admin", actor="setup", email="boss@example.com")
    ws.team.add("nomail", "analyst", actor="boss")
    state = SettingsState(ws, user="boss", account=ws.team.get("boss"))
    ok, message = state.send_test_email("victim@elsewhere.example")
    assert ok, message
    (recipients, _), *_ = inbox.wait_for(1)
    assert recipients == ["boss@example.com"]
    ok, message = SettingsState(ws, account=ws.team.get("nomail")).send_test_email("x@y.example")
    assert not ok and "has no e-mail address" in message
    viewer = ws.team.add("vee", "viewer", actor="boss", email="vee@example.com")
    ok, message = SettingsState(ws, account=viewer).send_test_email("vee@example.com")
    assert not ok and "may not test notification" in message
    assert len(inbox.messages) == 1
