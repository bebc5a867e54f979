"""A served book with users: sign-in, roles, tokens, throttling and who acted (issue 14),
against the real `bear serve` subprocess with httpx and Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time

import httpx
import pytest
from netutil import serving
from playwright.sync_api import expect

import bear

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def team_server(demo_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("team")
    path = folder / "book.duckdb"
    shutil.copy(demo_path, path)
    with bear.connect(path) as ws:
        t = ws.team
        t.add("admin", "admin", actor="setup", password=PASSWORD)
        t.add("ana", "analyst", actor="admin", password=PASSWORD, email="ana@example.com")
        t.add("vic", "viewer", actor="admin", password=PASSWORD)
        region = ws.sql("SELECT min(region) AS r FROM projects")["r"][0]
        t.add("reg", "analyst", actor="admin", password=PASSWORD, scopes={"regions": [region]})
        inside = ws.awaiting_release(region=region).ids()
        outside = ws.awaiting_release().refine(exclude_ids=inside).ids()
        names = ("admin", "ana", "vic", "reg")
        tokens = {name: t.create_token(name, actor="admin")[1] for name in names}
    with serving(path) as url:
        yield url, tokens, path, (region, inside, outside)


def _api(url: str, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, headers=headers, timeout=60, follow_redirects=False)


def test_the_api_needs_a_valid_token(team_server):
    url, tokens, *_ = team_server
    for token in (None, "bear_1_" + "x" * 43, "nonsense"):
        r = _api(url, token).get("/api/v1/me")
        assert r.status_code == 401
        body = r.json()
        assert r.headers["content-type"].startswith("application/problem+json")
        assert body["status"] == 401 and body["type"] == "urn:bear:error:AuthError"
        assert "Traceback" not in r.text
    me = _api(url, tokens["ana"]).get("/api/v1/me").json()
    assert me == {
        "name": "ana",
        "role": "analyst",
        "email": "ana@example.com",
        "scopes": {},
        "single_user": False,
    }


def test_roles_decide_what_the_api_allows(team_server):
    url, tokens, *_ = team_server
    vic, ana, admin = (_api(url, tokens[n]) for n in ("vic", "ana", "admin"))
    sel = {"kind": "awaiting_release", "filters": {"currency": "GBP", "eligibility": "eligible"}}
    assert vic.post("/api/v1/events/count", json=sel).json()["count"] > 0
    refused = vic.post("/api/v1/runs", json={**sel, "action": "release"})
    assert refused.status_code == 403
    assert "vic (viewer) may not run" in refused.json()["detail"]
    assert vic.post("/api/v1/preview", json=sel).status_code == 403
    assert (
        ana.patch("/api/v1/settings", json={"values": {"release_batch_size": 50}}).status_code
        == 403
    )
    assert ana.get("/api/v1/users").status_code == 403
    ok = admin.patch("/api/v1/settings", json={"values": {"release_batch_size": 50}})
    assert ok.status_code == 200
    queued = ana.post("/api/v1/runs", json={**sel, "action": "release"})
    assert queued.status_code == 202
    run_id = queued.json()["id"]
    deadline = time.monotonic() + 60
    while (run := ana.get(f"/api/v1/runs/{run_id}").json())["status"] not in (
        "completed",
        "failed",
    ):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert run["requested_by"] == "ana" and run["status"] == "completed"
    # the page of runs says so too, with money exact across the wire
    page = vic.post("/api/v1/events/page", json={"kind": "all", "limit": 3}).json()
    amount = page["rows"][0][page["columns"].index("summary_amount")]
    assert isinstance(amount, str) and re.fullmatch(r"-?\d+\.\d{2}", amount)


def test_a_preview_reads_as_json_or_as_one_arrow_stream(team_server):
    from bear.wire import ARROW, preview_from_arrow

    url, tokens, *_ = team_server
    ana = _api(url, tokens["ana"])
    sel = {"kind": "awaiting_release", "full": True}
    doc = ana.post("/api/v1/preview", json=sel).json()
    assert doc["ineligible"] > 0 and doc["eligible"] == len(doc["eligible_ids"]["rows"])
    assert doc["violations"]["columns"][:3] == ["billing_event_id", "stage", "rule_id"]
    expected = doc["expected_documents"]
    total = expected["rows"][0][expected["columns"].index("total")]
    assert isinstance(total, str) and re.fullmatch(r"-?\d+\.\d{2}", total)
    binary = ana.post("/api/v1/preview", json=sel, headers={"Accept": ARROW})
    assert binary.headers["content-type"] == ARROW
    pv = preview_from_arrow(binary.content)
    assert pv.counts() | {"seconds": 0} == {k: doc[k] for k in pv.counts()} | {"seconds": 0}
    assert pv.eligible_ids == [row[0] for row in doc["eligible_ids"]["rows"]]


def test_admins_manage_users_and_tokens_through_the_api(team_server):
    url, tokens, *_ = team_server
    admin = _api(url, tokens["admin"])
    made = admin.post("/api/v1/users", json={"name": "nia", "role": "viewer"})
    assert made.status_code == 201
    token = admin.post("/api/v1/users/nia/tokens", json={"label": "laptop"}).json()
    nia = _api(url, token["token"])
    assert nia.get("/api/v1/me").json()["name"] == "nia"
    assert admin.delete(f"/api/v1/tokens/{token['id']}").status_code == 204
    assert nia.get("/api/v1/me").status_code == 401
    listed = admin.get("/api/v1/tokens").json()
    assert "token_hash" not in listed["columns"]
    assert admin.post("/api/v1/users", json={"name": "nia", "role": "viewer"}).status_code == 400


def test_the_dashboard_needs_sign_in_and_throttles_wrong_passwords(team_server):
    url, *_ = team_server
    client = _api(url)
    first = client.get("/")
    assert first.status_code == 303 and first.headers["location"].startswith("/login")
    for _ in range(5):
        r = client.post("/login", data={"name": "ana", "password": "wrong password!"})
        assert r.status_code == 401 and "wrong user name or password" in r.text
    sixth = client.post("/login", data={"name": "ana", "password": PASSWORD})
    assert sixth.status_code == 429
    assert int(sixth.headers["retry-after"]) >= 1
    # the cookie of a successful sign-in is HttpOnly and SameSite
    other = client.post("/login", data={"name": "vic", "password": PASSWORD, "next": "/"})
    cookie = other.headers.get("set-cookie", "")
    assert other.status_code in (303, 429)
    if other.status_code == 303:
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")


def _sign_in(page, url: str, name: str) -> None:
    page.goto(url)
    expect(page).to_have_url(re.compile("/login"))
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text(f"Signed in as {name}")).to_be_visible()


def test_a_viewer_sees_no_action_and_an_analyst_does(team_server, page):
    url, *_ = team_server
    _sign_in(page, url, "admin")  # admin's throttle key is untouched by the test above
    expect(page.get_by_role("button", name="Release and Invoice")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile("/login"))
    _sign_in(page, url, "vic")
    expect(page.get_by_text("Signed in as vic (viewer)")).to_be_visible()
    expect(page.locator(".tabulator-row").first).to_be_visible()
    expect(page.get_by_role("button", name="Release and Invoice")).to_have_count(0)
    expect(page.get_by_role("button", name="Preview")).to_have_count(0)


def test_serving_beyond_loopback_needs_an_admin(tmp_path):
    path = tmp_path / "book.duckdb"
    bear.connect(path).close()
    out = subprocess.run(
        [sys.executable, "-m", "bear.cli", "serve", "--db", str(path), "--address", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "Add an admin first" in out.stderr and "Traceback" not in out.stderr


def test_a_scoped_user_sees_and_acts_on_their_region_only(team_server):
    url, tokens, _, (region, inside, outside) = team_server
    reg = _api(url, tokens["reg"])
    everything = {"kind": "awaiting_release", "filters": {}}
    mine = {"kind": "awaiting_release", "filters": {"region": [region]}}
    expected = _api(url, tokens["vic"]).post("/api/v1/events/count", json=mine).json()["count"]
    assert 0 < expected < len(inside) + len(outside)
    assert reg.post("/api/v1/events/count", json=everything).json()["count"] == expected
    other = {"kind": "awaiting_release", "filters": {"ids": outside[:5]}}
    assert reg.post("/api/v1/events/count", json=other).json()["count"] == 0
    page = reg.post("/api/v1/events/page", json={**everything, "limit": 200}).json()
    assert {row[page["columns"].index("region")] for row in page["rows"]} == {region}
    refused = reg.post("/api/v1/preview", json={"ids": outside[:3] + inside[:2]})
    assert refused.status_code == 403 and "outside what reg may act on" in refused.json()["detail"]
    assert reg.post("/api/v1/preview", json={"ids": inside[-2:]}).status_code == 200


def test_two_analysts_releasing_overlapping_selections_never_double_release(team_server):
    import threading

    url, tokens, *_ = team_server
    admin = _api(url, tokens["admin"])
    admin.post("/api/v1/users", json={"name": "bea", "role": "analyst"})
    bea_token = admin.post("/api/v1/users/bea/tokens", json={}).json()["token"]
    clients = {"ana": _api(url, tokens["ana"]), "bea": _api(url, bea_token)}
    base = {"kind": "awaiting_release", "filters": {"currency": ["EUR"]}}
    before = admin.post("/api/v1/events/count", json=base).json()["count"]
    assert before > 100
    bodies = {
        "ana": {**base, "action": "release"},
        "bea": {
            "kind": "awaiting_release",
            "filters": {"currency": ["EUR", "USD"]},
            "action": "release",
        },
    }
    ids: dict[str, int] = {}
    start = threading.Barrier(2)

    def submit(name: str) -> None:
        start.wait()
        ids[name] = clients[name].post("/api/v1/runs", json=bodies[name]).json()["id"]

    threads = [threading.Thread(target=submit, args=(n,)) for n in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    runs = {}
    deadline = time.monotonic() + 120
    for name, run_id in ids.items():
        while (r := clients[name].get(f"/api/v1/runs/{run_id}").json())["status"] not in (
            "completed",
            "failed",
            "cancelled",
        ):
            assert time.monotonic() < deadline
            time.sleep(0.3)
        runs[name] = r
    assert {r["requested_by"] for r in runs.values()} == {"ana", "bea"}
    released_eur = before - admin.post("/api/v1/events/count", json=base).json()["count"]
    counted = admin.post(
        "/api/v1/sql",
        json={
            "query": "SELECT count(*) FILTER (WHERE currency = 'EUR') AS eur, count(*) AS n "
            "FROM billing_events WHERE release_run_id IN (SELECT unnest($ids))",
            "params": {"ids": list(ids.values())},
        },
    ).json()["rows"][0]
    # each event released once: the runs' counts add up to the events they released, and
    # every EUR event both asked for was released by exactly one of them
    assert sum(r["released"] for r in runs.values()) == counted[1]
    assert counted[0] == released_eur


def test_the_grid_of_a_scoped_user_holds_their_region_only(team_server, page):
    url, tokens, _, (region, _, _) = team_server
    mine = {"kind": "awaiting_release", "filters": {"region": [region]}}
    expected = _api(url, tokens["vic"]).post("/api/v1/events/count", json=mine).json()["count"]
    _sign_in(page, url, "reg")
    expect(page.get_by_role("button", name=f"Select all {expected:,} matching")).to_be_visible()
    regions = page.locator("[tabulator-field=region]")
    expect(regions.nth(1)).to_be_visible()
    texts = set(regions.all_inner_texts()) - {"Region", ""}
    assert texts == {region}


def test_a_scoped_user_reads_the_documents_and_logs_of_their_region_only(team_server):
    url, tokens, _, (region, _, _) = team_server
    reg, vic = _api(url, tokens["reg"]), _api(url, tokens["vic"])
    mine = reg.get("/api/v1/documents").json()
    everyone = vic.get("/api/v1/documents").json()
    assert 0 < len(mine["rows"]) < len(everyone["rows"])
    events = [row[mine["columns"].index("billing_event_id")] for row in mine["rows"]]
    elsewhere = vic.post(
        "/api/v1/sql",
        json={
            "query": "SELECT count(*) FROM billing_events e JOIN projects p ON p.id = e.project_id "
            "WHERE e.id IN (SELECT unnest($ids)) AND p.region <> $region",
            "params": {"ids": events, "region": region},
        },
    ).json()["rows"][0][0]
    assert elsewhere == 0
    other = vic.post(
        "/api/v1/sql",
        json={
            "query": "SELECT min(d.id) FROM documents d JOIN billing_events e "
            "ON e.id = d.billing_event_id JOIN projects p ON p.id = e.project_id "
            "WHERE p.region <> $region",
            "params": {"region": region},
        },
    ).json()["rows"][0][0]
    assert reg.get(f"/api/v1/documents/{other}/lines").status_code == 404
    assert vic.get(f"/api/v1/documents/{other}/lines").status_code == 200


def test_an_admin_imports_through_the_api(team_server, tmp_path):
    url, tokens, path, _ = team_server
    admin, ana = _api(url, tokens["admin"]), _api(url, tokens["ana"])
    good = tmp_path / "companies.csv"
    good.write_text("id,name,home_currency\n9001,Upload Ltd,EUR\n")
    with good.open("rb") as f:
        refused = ana.post("/api/v1/imports", files={"companies": ("companies.csv", f)})
    assert refused.status_code == 403
    bad = tmp_path / "my companies.csv"
    bad.write_text("id,name,home_currency\nnot-a-number,Broken,EUR\n")
    with bad.open("rb") as f:
        problem = admin.post("/api/v1/imports", files={"companies": ("my companies.csv", f)})
    assert problem.status_code == 422
    body = problem.json()
    assert body["type"] == "urn:bear:error:ImportProblemError"
    assert body["problems"] and all(p["file"] == "my companies.csv" for p in body["problems"])
    assert "bear-import-" not in problem.text  # no server path in the answer
    with good.open("rb") as f:
        done = admin.post("/api/v1/imports", files={"companies": ("companies.csv", f)})
    assert done.status_code == 200, done.text
    assert done.json() == {"rows": {"companies": 1}, "dry_run": False}
    names = admin.post(
        "/api/v1/sql", json={"query": "SELECT name FROM companies WHERE id = 9001"}
    ).json()
    assert names["rows"] == [["Upload Ltd"]]
    # and through the remote workspace, as the CLI does with --server
    with bear.connect(url, token=tokens["admin"]) as remote:
        again = tmp_path / "more.csv"
        again.write_text("id,name,home_currency\n9002,Second Upload Ltd,GBP\n")
        assert remote.import_files(companies=str(again))["rows"] == {"companies": 1}


def test_wrong_passwords_in_the_sign_in_page_are_throttled(team_server, page):
    url, *_ = team_server
    page.goto(url)
    for attempt in range(6):
        page.get_by_label("User name").fill("mallory")
        page.get_by_label("Password").fill(f"guess number {attempt}")
        page.get_by_role("button", name="Sign in").click()
        if attempt < 5:
            expect(page.get_by_role("alert")).to_have_text("wrong user name or password")
    expect(page.get_by_role("alert")).to_contain_text("too many failed sign-ins; try again in")
