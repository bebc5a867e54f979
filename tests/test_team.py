"""Users, roles, scopes, API tokens and sign-in throttling (issue 14, deliverable 2)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import bear
from bear.auth import Throttle, allowed, require
from bear.errors import AuthError, BearError, PermissionDeniedError, ThrottledError
from bear.models import Role, Scopes

PASSWORD = "correct horse battery"


@pytest.fixture
def team(tmp_path):
    ws = bear.connect(tmp_path / "book.duckdb")
    yield ws.team, ws
    ws.close()


def test_users_have_roles_and_the_roles_permissions(team):
    t, _ = team
    admin = t.add("admin", "admin", actor="setup", password=PASSWORD)
    ana = t.add("ana", Role.ANALYST, actor="admin", email="ana@example.com")
    vic = t.add("vic", "viewer", actor="admin")
    assert (admin.role, ana.role, vic.role) == (Role.ADMIN, Role.ANALYST, Role.VIEWER)
    assert allowed(vic, "read") and not allowed(vic, "run") and not allowed(vic, "preview")
    assert allowed(ana, "run") and allowed(ana, "cancel") and not allowed(ana, "settings")
    assert all(allowed(admin, p) for p in ("settings", "users", "tokens", "import", "run"))
    assert allowed(None, "users")  # the single-user owner of a local book
    with pytest.raises(PermissionDeniedError, match="vic \\(viewer\\) may not run.*analyst"):
        require(vic, "run")
    t.disable("ana", actor="admin")
    assert not allowed(t.get("ana"), "read")
    assert list(t.users().name) == ["admin", "ana", "vic"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "", "role": "viewer"}, "user name"),
        ({"name": "a b", "role": "viewer"}, "user name"),
        ({"name": "x" * 65, "role": "viewer"}, "user name"),
        ({"name": "<script>", "role": "viewer"}, "user name"),
        ({"name": "bob", "role": "root"}, "unknown role 'root'"),
        ({"name": "bob", "role": "viewer", "email": "not-an-address"}, "not an e-mail"),
        ({"name": "bob", "role": "viewer", "password": "short"}, "at least 10"),
        ({"name": "bob", "role": "viewer", "scopes": {"planets": ["x"]}}, "unknown scope"),
        ({"name": "bob", "role": "viewer", "scopes": {"companies": ["a"]}}, "company ids"),
    ],
)
def test_bad_users_are_refused_and_nothing_is_written(team, kwargs, message):
    t, _ = team
    with pytest.raises(BearError, match=message):
        t.add(actor="admin", **kwargs)
    assert t.users().empty and t.changes().empty


def test_passwords_and_tokens_are_stored_only_as_argon2_hashes(team, tmp_path):
    t, ws = team
    t.add("admin", "admin", actor="setup")
    t.add("ana", "analyst", actor="admin", password=PASSWORD)
    tid, token = t.create_token("ana", actor="admin", label="laptop")
    assert token.startswith(f"bear_{tid}_") and len(token) > 40
    hashes = (
        ws.db.cursor()
        .execute(
            "SELECT password_hash FROM users WHERE password_hash IS NOT NULL "
            "UNION ALL SELECT token_hash FROM api_tokens"
        )
        .fetchall()
    )
    assert all(h[0].startswith("$argon2id$") for h in hashes)
    path = ws.path
    ws.db.cursor().execute("CHECKPOINT")
    raw = Path(path).read_bytes()
    assert PASSWORD.encode() not in raw
    assert token.split("_", 2)[2].encode() not in raw
    assert "token_hash" not in t.tokens().columns


def test_sign_in_and_tokens(team):
    t, _ = team
    t.add("admin", "admin", actor="setup", password=PASSWORD)
    t.add("ana", "analyst", actor="admin", password=PASSWORD)
    assert t.authenticate("ana", PASSWORD).name == "ana"
    for name, password in (("ana", "wrong password"), ("nobody", PASSWORD), ("ana", "")):
        with pytest.raises(AuthError, match="wrong user name or password"):
            t.authenticate(name, password)
    tid, token = t.create_token("ana", actor="admin")
    assert t.token_user(token).name == "ana"
    assert t.token_user(token).name == "ana"  # from the verified cache
    for bad in ("", "bear_1_", token + "x", token.replace(f"bear_{tid}_", "bear_999_"), "x" * 5000):
        with pytest.raises(AuthError):
            t.token_user(bad)
    t.revoke_token(tid, actor="admin")
    with pytest.raises(AuthError, match="revoked"):
        t.token_user(token)
    _, second = t.create_token("ana", actor="admin")
    assert t.token_user(second).role.value == "analyst"  # now cached with its user
    t.set_role("ana", "viewer", actor="admin")
    assert t.token_user(second).role.value == "viewer"  # a change forgets the cached user
    t.disable("ana", actor="admin")
    with pytest.raises(AuthError):
        t.token_user(second)
    with pytest.raises(AuthError):
        t.authenticate("ana", PASSWORD)


def test_the_first_user_is_an_admin(team):
    t, _ = team
    with pytest.raises(BearError, match="first user must be an admin"):
        t.add("ana", "analyst", actor="setup")
    assert t.users().empty
    t.add("boss", "admin", actor="setup")
    assert t.add("ana", "analyst", actor="boss").role == Role.ANALYST


def test_the_last_admin_cannot_be_removed(team):
    t, _ = team
    t.add("admin", "admin", actor="setup")
    t.add("ana", "analyst", actor="admin")
    with pytest.raises(BearError, match="no enabled admin"):
        t.set_role("admin", "viewer", actor="admin")
    with pytest.raises(BearError, match="no enabled admin"):
        t.disable("admin", actor="admin")
    assert t.get("admin").role == Role.ADMIN and not t.get("admin").disabled


def test_every_change_is_logged_with_its_author(team):
    t, _ = team
    t.add("admin", "admin", actor="setup")
    t.add("ana", "viewer", actor="admin")
    t.set_role("ana", "analyst", actor="admin")
    t.set_scopes("ana", {"regions": ["EMEA"], "companies": [2, 1]}, actor="admin")
    tid, _ = t.create_token("ana", actor="admin")
    t.revoke_token(tid, actor="admin")
    log = t.changes()
    assert list(log.actor) == ["admin"] * 5 + ["setup"]
    assert list(log.kind) == ["token", "token", "user", "user", "user", "user"]
    assert t.get("ana").scopes == Scopes(companies=(1, 2), regions=("EMEA",))


def test_throttle_per_key_with_retry_after():
    th = Throttle(limit=5, window=0.5)
    for _ in range(5):
        th.check("user:ana", "addr:10.0.0.1")
        th.failed("user:ana", "addr:10.0.0.1")
    with pytest.raises(ThrottledError) as info:
        th.check("user:ana")
    assert info.value.retry_after >= 1
    with pytest.raises(ThrottledError):
        th.check("user:bob", "addr:10.0.0.1")  # the address is throttled for every name
    th.check("user:bob", "addr:10.0.0.2")
    time.sleep(0.55)
    th.check("user:ana", "addr:10.0.0.1")


def test_an_import_is_recorded_with_who_imported(demo_ws, tmp_path):
    written = demo_ws.export_files(tmp_path / "out", "parquet")
    companies = str(written["companies"])
    with bear.connect(tmp_path / "fresh.duckdb") as ws:
        ws.import_files(dry_run=True, actor="ana", companies=companies)
        assert ws.team.changes("import").empty  # a dry run writes nothing
        report = ws.import_files(actor="ana", companies=companies)
        log = ws.team.changes("import")
        assert list(log.actor) == ["ana"] and list(log.target) == ["companies"]
        assert f'"companies": {report["rows"]["companies"]}' in log.new_value[0]


def test_scoped_readers_keep_the_rows_of_the_persons_events(demo_ws):
    from bear.errors import NotFoundError

    region = demo_ws.sql("SELECT min(region) AS r FROM projects")["r"][0]
    scope = Scopes(regions=(region,))
    events_in = set(demo_ws.events(region=region).ids())
    docs = demo_ws.documents(scope=scope)
    assert 0 < len(docs) < len(demo_ws.documents())
    assert set(docs.billing_event_id) <= events_in
    other = demo_ws.documents().query("billing_event_id not in @events_in").id.iloc[0]
    with pytest.raises(NotFoundError):
        demo_ws.document_lines(int(other), scope=scope)
    assert len(demo_ws.document_lines(int(other))) > 0
    run = demo_ws.release_and_invoice(demo_ws.awaiting_release(), "tester", wait=True)
    logs = demo_ws.process_logs(run.process_run_id, scope=scope)
    assert 0 < len(logs) < len(demo_ws.process_logs(run.process_run_id))
    assert set(logs.billing_event_id) <= events_in
    app = demo_ws.app_logs(run.id, scope=scope)
    assert set(app.record_id.dropna()) <= events_in
