"""The run commands of the CLI, run as subprocesses: run, runs, run show/cancel, worker,
notifications, preview."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

import bear


def bear_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bear.cli", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def book(demo_path, tmp_path):
    path = tmp_path / "cli.duckdb"
    shutil.copy(demo_path, path)
    return str(path)


def test_run_release_and_invoice_waits_and_reports_json(book):
    out = bear_cli(
        "run",
        "release-and-invoice",
        "--db",
        book,
        "--currency",
        "GBP",
        "--user",
        "ana@example.com",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["status"] == "completed" and res["released"] > 0
    # every selected event is a document or "not passed to accounting"
    assert res["sales_invoices"] + res["credit_notes"] + res["not_passed"] == res["selected"]
    shown = json.loads(bear_cli("run", "show", str(res["id"]), "--db", book, "--json").stdout)
    assert shown == res
    runs = json.loads(bear_cli("runs", "--db", book, "--json").stdout)
    assert [r["id"] for r in runs] == [res["id"]]
    listing = bear_cli("notifications", "--db", book, "--run", str(res["id"]))
    assert "invoicing_finished" in listing.stdout and "in_app" in listing.stdout


def test_no_wait_queues_and_the_worker_runs_the_queue(book):
    ids = book + ".ids"
    with bear.connect(book, resume=False) as ws:
        pv = ws.preview(ws.awaiting_release(currency="EUR"))
        chosen = pv.eligible_ids[:120]
    with open(ids, "w") as f:
        f.write("billing_event_id\n" + "\n".join(map(str, chosen)) + "\n")
    out = bear_cli(
        "run",
        "release",
        "--db",
        book,
        "--ids-file",
        ids,
        "--user",
        "ana@example.com",
        "--no-wait",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    run_id = json.loads(out.stdout)["id"]
    assert (
        json.loads(bear_cli("run", "show", str(run_id), "--db", book, "--json").stdout)["status"]
        == "queued"
    )
    worker = bear_cli("worker", "--db", book, "--once")
    assert worker.returncode == 0, worker.stderr
    done = json.loads(bear_cli("run", "show", str(run_id), "--db", book, "--json").stdout)
    assert done["status"] == "completed" and done["released"] == 120


def test_cancel_a_queued_run(book):
    out = bear_cli(
        "run", "release", "--db", book, "--currency", "USD", "--user", "ana", "--no-wait", "--json"
    )
    run_id = json.loads(out.stdout)["id"]
    cancelled = bear_cli("run", "cancel", str(run_id), "--db", book, "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    bear_cli("worker", "--db", book, "--once")
    res = json.loads(bear_cli("run", "show", str(run_id), "--db", book, "--json").stdout)
    assert res["status"] == "cancelled" and res["released"] == 0
    again = bear_cli("run", "cancel", str(run_id), "--db", book)
    assert again.returncode == 2 and "already finished" in again.stderr


@pytest.mark.parametrize(
    "args,needle",
    [
        (["run", "show", "999", "--db", "{db}"], "unknown run id"),
        (
            ["run", "release", "--db", "{db}", "--ids-file", "{missing}", "--user", "ana"],
            "cannot be read",
        ),
        (
            [
                "run",
                "release",
                "--db",
                "{db}",
                "--currency",
                "EUR",
                "--ids-file",
                "{ids}",
                "--user",
                "ana",
            ],
            "either --ids-file or filters",
        ),
        (
            ["run", "release", "--db", "{db}", "--ids-file", "{ids}", "--user", "a\nb@x.com"],
            "one line",
        ),
        (
            ["run", "invoice", "--db", "{db}", "--ids-file", "{unknown}", "--user", "ana"],
            "unknown billing event id",
        ),
    ],
)
def test_run_errors_are_one_plain_line_and_change_nothing(book, tmp_path, args, needle):
    ids = tmp_path / "ids.txt"
    ids.write_text("1\n2\n")
    unknown = tmp_path / "unknown.txt"
    unknown.write_text("1\n987654321\n")
    fmt = {
        "db": book,
        "missing": str(tmp_path / "nope.txt"),
        "ids": str(ids),
        "unknown": str(unknown),
    }
    out = bear_cli(*[a.format(**fmt) for a in args])
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1 and needle in out.stderr
    with bear.connect(book, resume=False) as ws:
        assert len(ws.runs()) == 0


def test_notifications_retry_delivers_what_the_smtp_outage_left(book, smtp_server):
    host, port, inbox = smtp_server
    from netutil import free_port

    with bear.connect(book, resume=False) as ws:
        ws.settings.update(smtp_host="127.0.0.1", smtp_port=free_port())
        res = ws.release_and_invoice(
            ws.preview(ws.awaiting_release()).eligible_ids[:10], user="ana@example.com"
        )
        assert ws.notifications(res.id, channel="email").status.tolist() == ["pending"]
        ws.settings.update(smtp_port=port)
    out = bear_cli("notifications", "retry", "--db", book)
    assert out.returncode == 0, out.stderr
    assert "sent 1" in out.stdout
    inbox.wait_for(1)


def test_preview_json(book):
    out = bear_cli("preview", "--db", book, "--currency", "GBP", "--json", "--with-ids")
    pv = json.loads(out.stdout)
    assert pv["validated"] and pv["selected"] == pv["eligible"] + pv["ineligible"]
    assert len(pv["eligible_ids"]) == pv["eligible"]
    assert {"doc_type", "currency", "count", "total"} <= set(pv["expected_documents"][0])
    assert {"billing_event_id", "stage", "rule_id", "severity", "message"} <= set(
        pv["violations"][0]
    )


# -- honest outcomes, printed ids (issue 16, items 4 and 12) -------------------------------------
def test_a_run_that_released_nothing_says_failed_and_the_runs_list_prints_whole_ids(book, tmp_path):
    with bear.connect(book, resume=False) as ws:
        good = ws.preview(ws.awaiting_release(currency="EUR")).eligible_ids[:3]
        ws.settings.update(validation_limit=0, release_batch_size=1)
        bad = ws.awaiting_release(eligibility="release.not_approved").ids()[:3]
    ids = tmp_path / "bad.txt"
    ids.write_text("\n".join(map(str, bad)) + "\n")
    clean = tmp_path / "good.txt"
    clean.write_text("\n".join(map(str, good)) + "\n")
    user = ("--user", "ana@example.com")
    ok = bear_cli("run", "release-and-invoice", "--db", book, "--ids-file", str(clean), *user)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip().splitlines()[-1] == "outcome: completed"
    # measured: 0 released, 3/3 batches failed, and the run said "completed" (exit status 0)
    out = bear_cli("run", "release", "--db", book, "--ids-file", str(ids), *user)
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stdout.splitlines()[0].endswith(": completed [done]")  # its status, as before
    assert (
        out.stdout.strip().splitlines()[-1] == "outcome: failed (3 not released, 3 failed batches)"
    )
    run_id = str(int(ok.stdout.split()[1]) + 1)
    shown = json.loads(bear_cli("run", "show", run_id, "--db", book, "--json").stdout)
    assert (shown["status"], shown["outcome"], shown["released"]) == ("completed", "failed", 0)
    # `bear runs`: the outcome beside the status; a process run id is an integer or empty
    listing = bear_cli("runs", "--db", book)
    assert listing.returncode == 0, listing.stderr
    head, newest, first = listing.stdout.splitlines()
    assert head.split()[:6] == ["id", "action", "requested_by", "status", "outcome", "released"]
    assert "NaN" not in listing.stdout and ".0 " not in listing.stdout
    assert newest.split()[3:5] == ["completed", "failed"] and " — " in newest
    assert first.split()[3:7] == ["completed", "completed", "3", "0"] and " 1 " in first
    runs = json.loads(bear_cli("runs", "--db", book, "--json").stdout)
    assert [(r["outcome"], r["process_run_id"]) for r in runs] == [
        ("failed", None),
        ("completed", 1),
    ]
    assert isinstance(runs[1]["process_run_id"], int)
