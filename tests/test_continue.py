"""Continue runs the whole selection (DESIGN §2.3): the same selection through the dashboard's
warning dialog, the Python API and the CLI leaves identical records — events left out up
front with an app log each, released events that cannot be invoiced with an ERROR log."""

from __future__ import annotations

import shutil
import subprocess
import sys

import bear
from bear.ui.state import ActionFlow, FilterState, GridState

USER = "ana@example.com"


def _mixed_ids(ws) -> list[int]:
    """Eligible events, events that cannot be released, and events that can be released but
    not invoiced (the reference's 'errors in the process run')."""
    exp = ws.sql(
        "SELECT billing_event_id AS id, bool_or(rule_id LIKE 'release.%') AS release_rule "
        "FROM demo_expectations WHERE billing_event_id IN "
        "(SELECT id FROM billing_events WHERE NOT released) GROUP BY 1 ORDER BY 1"
    )
    release_bad = list(exp[exp.release_rule].id[:4])
    invoice_bad = list(exp[~exp.release_rule].id[:4])
    expected = set(exp.id)
    good = [
        i for i in ws.preview(ws.awaiting_release(), full=True).eligible_ids if i not in expected
    ]
    good = good[:12]
    assert len(release_bad) == 4 and len(invoice_bad) == 4
    return sorted(int(i) for i in [*good, *release_bad, *invoice_bad])


def _records(path) -> dict:
    with bear.connect(path) as ws:
        run = ws.runs().iloc[0]
        rid = int(run["id"])
        counts = {
            k: int(run[k])
            for k in (
                "selected",
                "excluded",
                "released",
                "not_released",
                "sales_invoices",
                "credit_notes",
                "not_passed",
            )
        }
        app = ws.app_logs(rid)
        logs = ws.process_logs(int(run["process_run_id"]))
        docs = ws.documents(rid)
        return {
            "counts": counts,
            "app_logs": sorted(
                zip(app.record_id, app.rule_id.fillna(""), app.message, strict=True)
            ),
            "process_logs": sorted(
                zip(logs.billing_event_id, logs.status, logs.rule_id.fillna(""), strict=True)
            ),
            "documents": sorted(
                zip(docs.billing_event_id, docs.doc_type, docs.total.astype(str), strict=True)
            ),
        }


def test_continue_the_api_and_the_cli_leave_the_same_records(demo_path, tmp_path):
    paths = {face: tmp_path / f"{face}.duckdb" for face in ("dashboard", "api", "cli")}
    for p in paths.values():
        shutil.copy(demo_path, p)

    with bear.connect(paths["dashboard"]) as ws:
        ids = _mixed_ids(ws)
        grid = GridState(ws, FilterState())
        grid.refresh()
        grid.select_ids(ids)
        flow = ActionFlow(ws, grid, USER)
        flow.open("release_and_invoice")
        pv = flow.preview
        assert flow.phase == "warning" and pv.validated and pv.ineligible > 0
        run_id = flow.proceed()
        res = ws.runner.wait(run_id, timeout=120)
        # both kinds of ineligible event are in the selection
        assert pv.selected - pv.releasable >= 1 and pv.releasable - pv.eligible >= 1
        # the whole selection ran: the run itself left out those it could not release
        assert res.selected == len(ids) and res.excluded == pv.selected - pv.releasable
        assert res.released == pv.releasable and res.documents == pv.eligible

    with bear.connect(paths["api"]) as ws:
        ws.release_and_invoice(ids, user=USER, timeout=120)

    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(map(str, ids)) + "\n")
    out = subprocess.run(
        [sys.executable, "-m", "bear.cli", "run", "release-and-invoice", "--db",
         str(paths["cli"]), "--ids-file", str(ids_file), "--user", USER, "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode in (0, 1), out.stderr

    dashboard, api, cli = (_records(paths[f]) for f in ("dashboard", "api", "cli"))
    # left out + not invoiceable = every selected event without a document
    assert dashboard["counts"]["not_passed"] == pv.selected - pv.eligible
    assert len(dashboard["app_logs"]) == pv.selected - pv.releasable
    errors = sum(s == "ERROR" for _, s, _ in dashboard["process_logs"])
    assert errors == pv.releasable - pv.eligible
    assert dashboard == api == cli
