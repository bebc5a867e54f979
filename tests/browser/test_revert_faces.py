"""Reverting billing through the CLI (a subprocess on a book file) and the HTTP API (a real
`bear serve` subprocess driven with httpx): the same core, the same records, the same errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest
from netutil import serving

import bear
from bear.testing import make_workspace

PASSWORD = "correct horse battery"


def bear_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bear.cli", *args], capture_output=True, text=True, timeout=180
    )


@pytest.fixture
def book(tmp_path):
    path = tmp_path / "book.duckdb"
    make_workspace([{"id": i} for i in range(1, 7)], path=path).close()
    return path


def test_cli_post_revert_and_history(book):
    db = ("--db", str(book))
    out = bear_cli("run", "release-and-invoice", *db, "--project", "1", "--user", "ana@x.org")
    assert out.returncode == 0, out.stderr
    out = bear_cli("post", *db, "1", "2", "--user", "ana@x.org", "--json")
    assert out.returncode == 0, out.stderr
    assert [d["status"] for d in json.loads(out.stdout)] == ["complete", "complete"]
    out = bear_cli("post", *db, "1")
    assert out.returncode != 0 and "SIN000001 is complete" in out.stderr
    out = bear_cli("run", "revert", *db, "--project", "1", "--user", "ana@x.org")
    assert out.returncode == 2 and "--reason" in out.stderr  # required
    out = bear_cli("run", "revert", *db, "--project", "1", "--user", "ana@x.org", "--reason", " ")
    assert out.returncode != 0 and "give a reason" in out.stderr
    out = bear_cli(
        "run", "revert", *db, "--project", "1", "--user", "ana@x.org", "--reason", "wrong hours",
        "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    run = json.loads(out.stdout)
    assert (run["action"], run["reason"], run["reverted"]) == ("revert", "wrong hours", 6)
    assert (run["credit_notes"], run["discarded"], run["requested_by"]) == (2, 4, "ana@x.org")
    out = bear_cli("history", *db, "1", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["action"] for r in rows] == ["release", "invoice", "revert"]
    assert rows[-1]["reversing_document_number"] == "SCN000001"
    with bear.connect(book) as ws:
        assert sorted(ws.awaiting_release().ids()) == [1, 2, 3, 4, 5, 6]
        assert ws.documents().status.tolist().count("discarded") == 4


def _wait(client: httpx.Client, run_id: int, timeout: float = 120) -> dict:
    """Poll the run until it has finished (a condition with a deadline, not a sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/api/v1/runs/{run_id}").json()
        if run["status"] in ("completed", "failed", "cancelled"):
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not finish in {timeout} s")


def test_api_revert_post_and_history_with_roles(book):
    with bear.connect(book) as ws:
        ws.team.add("admin", "admin", actor="setup", password=PASSWORD)
        ws.team.add("ana", "analyst", actor="setup", password=PASSWORD)
        ws.team.add("vic", "viewer", actor="setup", password=PASSWORD)
        ana = ws.team.create_token("ana", actor="setup")[1]
        vic = ws.team.create_token("vic", actor="setup")[1]
    with serving(book) as url:
        a = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ana}"}, timeout=60)
        v = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {vic}"}, timeout=60)
        r = a.post("/api/v1/runs", json={"action": "release_and_invoice", "ids": [1, 2, 3]})
        assert r.status_code == 202
        _wait(a, r.json()["id"])
        r = v.post("/api/v1/documents/post", json={"run_id": 1})
        assert r.status_code == 403 and "analyst" in r.json()["detail"]
        r = a.post("/api/v1/documents/post", json={"document_ids": [1]})
        assert r.status_code == 200 and r.json()["rows"][0][4] == "complete"
        r = a.post("/api/v1/documents/post", json={"document_ids": [1], "run_id": 1})
        assert r.status_code == 400 and "one of the two" in r.json()["detail"]
        r = a.post("/api/v1/runs", json={"action": "revert", "ids": [1, 2]})
        assert r.status_code == 400 and "give a reason" in r.json()["detail"]
        assert "Traceback" not in r.text
        r = v.post("/api/v1/runs", json={"action": "revert", "ids": [1], "reason": "x"})
        assert r.status_code == 403
        r = a.post("/api/v1/runs", json={"action": "revert", "ids": [1, 2], "reason": "typo"})
        assert r.status_code == 202
        done = _wait(a, r.json()["id"])
        assert (done["reverted"], done["credit_notes"], done["discarded"]) == (2, 1, 1)
        assert done["requested_by"] == "ana" and done["reason"] == "typo"
        r = v.get("/api/v1/events/1/history")
        assert r.status_code == 200
        assert [row[2] for row in r.json()["rows"]] == ["release", "invoice", "revert"]
        assert v.get("/api/v1/events/987654321/history").status_code == 404
