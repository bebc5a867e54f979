"""Runs as the reference has them (DESIGN §2.3–§2.5): honest counts for every action and
every recipient, and claims of runs that no longer exist cleared."""

from __future__ import annotations

import shutil

import duckdb

import bear


def _eligible(ws, n, action="release_and_invoice"):
    return ws.preview(ws.awaiting_release(), action=action, full=True).eligible_ids[:n]


def _culprits(ws, n, rule="release.not_approved"):
    return [
        int(i)
        for i in ws.sql(
            "SELECT billing_event_id AS i FROM demo_expectations WHERE rule_id = $r "
            "AND billing_event_id IN (SELECT id FROM billing_events WHERE NOT released) "
            "ORDER BY 1 LIMIT $n",
            r=rule,
            n=n,
        )["i"]
    ]


def test_not_passed_counts_every_selected_event_without_a_document(demo_ws, smtp_server):
    host, port, inbox = smtp_server
    demo_ws.settings.update(
        smtp_host=host, smtp_port=port, release_batch_size=5, validation_limit=0
    )
    good, bad = _eligible(demo_ws, 12), _culprits(demo_ws, 3)
    ids = sorted(good + bad)
    res = demo_ws.release_and_invoice(ids, user="ana@example.com", timeout=120)
    assert res.status == "completed" and res.selected == 15
    assert res.failed_batches >= 1 and res.not_released > 0
    # every selected event is either a document or "not passed to accounting"
    assert res.sales_invoices + res.credit_notes + res.not_passed == 15
    assert res.not_passed >= res.not_released > 0
    (_, msg), *_ = inbox.wait_for(1)
    text = msg.get_body(("plain",)).get_content()
    assert f"could not be passed to accounting: {res.not_passed:,}" in text
    assert f"Released: {res.released:,}; not released: {res.not_released:,}" in text
    assert "Selected: 15; left out up front: 0" in text
    inapp = demo_ws.notifications(res.id, channel="in_app")
    assert (
        f"{res.not_passed:,} not passed to accounting"
        in inapp[inapp.kind == "invoicing_finished"].subject.iloc[0]
    )


def test_a_run_of_only_unreleasable_events_passes_none_and_says_so(demo_ws):
    bad = _culprits(demo_ws, 3)
    res = demo_ws.release_and_invoice(bad, user="ana@example.com", timeout=120)
    assert res.released == 0 and res.excluded == 3
    assert res.sales_invoices + res.credit_notes == 0 and res.not_passed == 3


def test_release_and_invoice_and_invoice_count_not_passed_alike(demo_ws):
    demo_ws.settings.update(release_batch_size=50)
    good, bad = _eligible(demo_ws, 20), _culprits(demo_ws, 4)
    ri = demo_ws.release_and_invoice(sorted(good[:10] + bad[:2]), user="ana@example.com")
    assert ri.not_passed == 12 - ri.documents
    demo_ws.release(sorted(good[10:] + bad[2:]), user="ana@example.com")
    inv = demo_ws.invoice(sorted(good[10:] + bad[2:]), user="ana@example.com")
    assert inv.not_passed == 12 - inv.documents and inv.not_passed >= 2
    rel = demo_ws.run(demo_ws.runs().id.iloc[1])
    assert rel.action == "release" and rel.not_passed == 0  # nothing is owed to accounting


def test_a_claim_left_by_a_run_that_no_longer_exists_is_cleared_with_a_log(demo_path, tmp_path):
    path = tmp_path / "claims.duckdb"
    shutil.copy(demo_path, path)
    with bear.connect(path) as ws:
        ids = _eligible(ws, 3)
    con = duckdb.connect(str(path))  # behind BEAR's back, while it is closed
    con.execute("INSERT INTO event_claims SELECT unnest($ids::BIGINT[]), 424242", {"ids": ids})
    con.close()
    with bear.connect(path) as ws:
        assert int(ws.sql("SELECT count(*) AS n FROM event_claims")["n"][0]) == 0
        logs = ws.app_logs()
        cleared = logs[logs.origin == "claims"]
        assert sorted(cleared.record_id) == sorted(ids)
        assert cleared.message.str.contains("claim of run 424242 cleared").all()
        res = ws.release_and_invoice(ids, user="ana@example.com")
        assert res.released == 3 and res.documents == 3


def test_a_claim_of_a_finished_run_is_cleared_before_the_next_run(demo_ws):
    ids = _eligible(demo_ws, 4)
    done = demo_ws.release(ids[:2], user="ana@example.com")
    # a claim that outlived its run (written as a crash between the two writes would leave it)
    with demo_ws.db.transaction() as tx:
        tx.execute(
            "INSERT INTO event_claims VALUES ($a, $r), ($b, $r)",
            {"a": ids[2], "b": ids[3], "r": done.id},
        )
    res = demo_ws.release(ids[2:], user="ana@example.com")
    assert res.released == 2 and res.excluded == 0
    logs = demo_ws.app_logs()
    assert f"claim of run {done.id} cleared: that run has ended (completed)" in set(
        logs[logs.origin == "claims"].message
    )


def test_one_event_the_database_refuses_never_fails_the_invoicing_stage(demo_ws, monkeypatch):
    """Whatever the rules missed, a document the database refuses costs that event only: the
    chunk is bisected down to the culprit, which gets an ERROR log with the database's words."""
    import bear.pipeline.invoice as invoice

    ids = _eligible(demo_ws, 40)
    victims = {ids[7], ids[31]}
    real = invoice.create_documents

    def refuse_the_victims(tx, table, process_run_id, *args, **kwargs):
        hit = tx.execute(
            f"SELECT count(*) FROM {table} WHERE billing_event_id IN (SELECT unnest($v::BIGINT[]))",
            {"v": sorted(victims)},
        ).fetchall()[0][0]
        if hit:
            raise duckdb.ConstraintException(
                "Constraint Error: NOT NULL constraint failed: document_lines.product_id"
            )
        return real(tx, table, process_run_id, *args, **kwargs)

    monkeypatch.setattr(invoice, "create_documents", refuse_the_victims)
    res = demo_ws.release_and_invoice(ids, user="ana@example.com", timeout=120)
    assert res.status == "completed" and res.released == 40
    assert res.documents == 38 and res.not_passed == 2
    logs = demo_ws.process_logs(res.process_run_id)
    assert len(logs) == 40 and logs.billing_event_id.is_unique
    err = logs[logs.status == "ERROR"]
    assert set(err.billing_event_id) == victims
    assert err.message.str.contains(
        "no document could be created for this event: NOT NULL constraint failed: "
        "document_lines.product_id"
    ).all()
    docs = demo_ws.documents(res.id)
    assert len(docs) == 38 and not victims & set(docs.billing_event_id)


class _HangingRule:
    """A release rule whose Python code never returns by itself (no DuckDB work to interrupt)."""

    __name__ = "hang"

    def __init__(self) -> None:
        import threading

        self.release = threading.Event()
        self.calls = 0

    @bear.hookimpl
    def bear_register_rules(self, settings):
        plugin = self

        class Hang:
            id = "acme.hang"
            stage = "release"
            severity = "block"
            description = "never answers"

            def evaluate(self, batch):
                plugin.calls += 1
                plugin.release.wait(120)  # plain Python: nothing can interrupt it
                return batch.relation.filter("false").project("billing_event_id, 'x' AS message")

        return [Hang()]


def test_a_rule_that_hangs_costs_one_time_out_and_one_thread_per_run(
    demo_path, tmp_path, monkeypatch
):
    import threading
    import time

    import bear.pipeline.release as release

    monkeypatch.setattr(release, "JUDGE_WINDOW", 1)  # judge every batch afresh
    monkeypatch.setattr(release, "JUDGE_WINDOW_MAX", 1)
    path = tmp_path / "hang.duckdb"
    shutil.copy(demo_path, path)
    rule = _HangingRule()
    with bear.connect(path, plugins=[rule]) as ws:
        # 2 s: ample for the built-in SQL rules on a busy machine, short for a hanging one
        ws.settings.update(rule_timeout_s=2.0, release_batch_size=5, validation_limit=0)
        ids = [
            int(i)
            for i in ws.sql(
                "SELECT id FROM billing_events WHERE NOT released AND id NOT IN "
                "(SELECT billing_event_id FROM demo_expectations) ORDER BY id LIMIT 40"
            )["id"]
        ]
        t0 = time.monotonic()
        res = ws.release(ids, user="ana@example.com", timeout=120)
        took = time.monotonic() - t0
        try:
            assert res.status == "completed" and res.batches == 8
            assert res.released == 0 and res.failed_batches == 8  # failed closed, every batch
            assert rule.calls == 1  # never started again while the first call still ran
            assert took < 8 * 2.0  # no time-out per batch
            stray = [t for t in threading.enumerate() if t.name == "rule-acme.hang"]
            assert len(stray) == 1
            logs = ws.app_logs(res.id)
            assert logs.message.str.contains("acme.hang").all()
            assert logs.message.str.contains("still running").any()
        finally:
            rule.release.set()
        stray[0].join(10)
        # once it has returned, the rule is judged normally again
        pv = ws.preview(ids[:5], action="release", full=True)
        assert rule.calls == 2 and pv.eligible == 5


# -- honest outcomes (issue 16, item 4) ----------------------------------------------------------
def test_a_run_that_released_nothing_has_failed_though_its_status_is_completed(demo_ws):
    """Measured: 0 released, 3/3 batches failed, and the run said "completed" everywhere."""
    demo_ws.settings.update(validation_limit=0, release_batch_size=1)
    res = demo_ws.release(_culprits(demo_ws, 3), user="ana@example.com", timeout=120)
    assert (res.status, res.released, res.failed_batches, res.batches) == ("completed", 0, 3, 3)
    assert res.outcome == "failed"
    assert "failed" in repr(res) and "<td>failed</td>" in res._repr_html_()
    runs = demo_ws.runs()
    assert list(runs.columns[:6]) == ["id", "action", "requested_by", "status", "outcome", "stage"]
    assert (runs.status.iloc[0], runs.outcome.iloc[0]) == ("completed", "failed")
    subjects = set(demo_ws.notifications(res.id, channel="in_app").subject)
    assert subjects == {f"BEAR run {res.id} (Release): release failed — 0 released, 3 not released"}
    inbox = demo_ws.inbox("ana@example.com")
    assert list(inbox[inbox.run_id == res.id].outcome) == ["failed"]


def test_a_run_with_some_events_left_behind_completed_with_failures(demo_ws, smtp_server):
    host, port, inbox = smtp_server
    demo_ws.settings.update(
        smtp_host=host, smtp_port=port, release_batch_size=5, validation_limit=0
    )
    ids = sorted(_eligible(demo_ws, 12) + _culprits(demo_ws, 3))
    res = demo_ws.release_and_invoice(ids, user="ana@example.com", timeout=120)
    assert res.status == "completed" and 0 < res.released < 15 and res.failed_batches >= 1
    assert res.outcome == "completed with failures"
    assert f"{res.not_released:,} not released" in res.shortfall
    (_, msg), *_ = inbox.wait_for(1)
    assert msg["Subject"].startswith(
        f"BEAR run {res.id} (Release and Invoice) finished with failures:"
    )
    assert "completed with failures" in msg.get_body(("plain",)).get_content()
    notes = demo_ws.notifications(res.id, channel="in_app")
    by_kind = dict(zip(notes.kind, notes.subject, strict=True))
    assert "release finished with failures —" in by_kind["release_finished"]
    assert " finished with failures: " in by_kind["invoicing_finished"]
    assert set(demo_ws.inbox("ana@example.com").outcome) == {"completed with failures"}


def test_a_run_that_processed_every_event_completed(demo_ws):
    res = demo_ws.release_and_invoice(_eligible(demo_ws, 4), user="ana@example.com", timeout=120)
    assert (res.outcome, res.shortfall) == ("completed", "")
    assert demo_ws.runs().outcome.iloc[0] == "completed"
    subject = demo_ws.notifications(res.id, channel="in_app").subject.iloc[-1]
    assert subject.startswith(f"BEAR run {res.id} (Release and Invoice) finished: 4 sales invoices")


OUTCOME_CASES = [  # (status, counts that differ from nothing done of 4 selected, outcome)
    ("queued", {}, "queued"),
    ("running", {"released": 2}, "running"),
    ("cancelled", {"released": 2, "not_released": 2}, "cancelled"),
    ("failed", {"released": 4, "sales_invoices": 4}, "failed"),
    ("completed", {"released": 4, "sales_invoices": 4}, "completed"),
    ("completed", {"released": 4}, "completed"),  # a Release run passes nothing on
    ("completed", {"released": 3, "not_released": 1}, "completed with failures"),
    ("completed", {"released": 4, "failed_batches": 1}, "completed with failures"),
    ("completed", {"released": 4, "sales_invoices": 3, "not_passed": 1}, "completed with failures"),
    ("completed", {"released": 4, "not_passed": 4}, "completed with failures"),
    ("completed", {"not_released": 4, "failed_batches": 4}, "failed"),
    ("completed", {"not_passed": 4}, "failed"),  # an Invoice run that made no document
    ("completed", {"reverted": 4}, "completed"),
    ("completed", {"reverted": 1, "not_reverted": 3}, "completed with failures"),
    ("completed", {"not_reverted": 4}, "failed"),
]


def test_one_definition_of_an_outcome_reads_one_run_and_a_column_of_runs_alike():
    import pandas as pd

    from bear.models import OUTCOME_INPUTS, RunResult, RunSummary, run_outcome

    runs = [
        RunResult(i, "release_and_invoice", "ana", status, "done", selected=4, **counts)
        for i, (status, counts, _) in enumerate(OUTCOME_CASES, 1)
    ]
    assert [r.outcome for r in runs] == [want for *_, want in OUTCOME_CASES]
    frame = pd.DataFrame([{k: getattr(r, k) for k in OUTCOME_INPUTS} for r in runs])
    assert list(run_outcome(**{k: frame[k] for k in OUTCOME_INPUTS})) == [r.outcome for r in runs]
    # a notification's summary: a stage that has ended, of a run still going on, is judged
    # on what that stage did
    summary = RunSummary(1, "release_and_invoice", "ana", "running", "invoice", selected=4)
    assert summary.outcome == "failed"
    assert RunSummary(1, "release", "ana", "running", "done", selected=4, released=4).outcome == (
        "completed"
    )
