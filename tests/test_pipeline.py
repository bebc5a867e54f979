"""Integration tests of the Release and Invoice pipeline, named after DESIGN §2.3–§2.6."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest

import bear
from bear.errors import BearError, UnknownIdsError
from bear.markers import hookimpl


def _eligible(ws, n, **filters):
    pv = ws.preview(ws.awaiting_release(**filters), action="release_and_invoice", full=True)
    return pv.eligible_ids[:n]


def _culprit(ws, rule="release.not_approved"):
    return int(
        ws.sql(
            "SELECT min(billing_event_id) AS i FROM demo_expectations WHERE rule_id = $r "
            "AND billing_event_id IN (SELECT id FROM billing_events WHERE NOT released)",
            r=rule,
        )["i"][0]
    )


def _table_counts(ws):
    return {
        t: int(ws.sql(f"SELECT count(*) AS n FROM {t}")["n"][0])
        for t in (
            "runs",
            "run_events",
            "release_batches",
            "process_runs",
            "process_logs",
            "app_logs",
            "documents",
            "document_lines",
            "notifications",
            "event_claims",
        )
    }


# -- §2.3 actions -----------------------------------------------------------------------------
def test_release_and_invoice_runs_in_background_and_reports_counts(demo_ws):
    ids = _eligible(demo_ws, 300)
    handle = demo_ws.release_and_invoice(ids, user="ana@example.com", wait=False)
    assert isinstance(handle.id, int)
    res = handle.wait(timeout=60)
    assert res.status == "completed"
    assert res.released == 300 and res.not_released == 0
    assert res.sales_invoices + res.credit_notes == 300 and res.not_passed == 0
    assert res.batches == 2 and res.batches_done == 2 and res.failed_batches == 0
    runs = demo_ws.runs()
    assert {
        "id",
        "action",
        "requested_by",
        "status",
        "released",
        "not_released",
        "sales_invoices",
        "credit_notes",
        "not_passed",
        "process_run_id",
    } <= set(runs.columns)
    assert runs.iloc[0]["id"] == res.id


def test_release_action_creates_no_documents(demo_ws):
    ids = _eligible(demo_ws, 50)
    res = demo_ws.release(ids, user="ana@example.com")
    assert res.status == "completed" and res.released == 50
    assert res.process_run_id is None and res.sales_invoices == res.credit_notes == 0
    assert len(demo_ws.documents(run_id=res.id)) == 0
    assert len(demo_ws.awaiting_invoice(ids=ids)) == 50


def test_invoice_action_over_awaiting_invoice(demo_ws):
    sel = demo_ws.awaiting_invoice()
    n = len(sel)
    assert n > 0
    pv = demo_ws.preview(sel, action="invoice")
    res = demo_ws.invoice(sel, user="ana@example.com")
    assert res.status == "completed"
    assert res.sales_invoices + res.credit_notes == pv.eligible
    assert res.not_passed == n - pv.eligible
    logs = demo_ws.process_logs(res.process_run_id)
    assert len(logs) == n and set(logs.status) <= {"OK", "ERROR"}


def test_unknown_ids_are_refused_before_anything_runs(demo_ws):
    before = _table_counts(demo_ws)
    with pytest.raises(UnknownIdsError) as e:
        demo_ws.release_and_invoice([1, 2, 99_999_999, 88_888_888], user="ana@example.com")
    assert "88888888" in str(e.value) and "99999999" in str(e.value)
    assert e.value.ids == [88_888_888, 99_999_999]
    assert _table_counts(demo_ws) == before


@pytest.mark.parametrize("user", ["", "   ", "a\r\nBcc: x@y.com", "not-an@email@x"])
def test_bad_user_is_refused(demo_ws, user):
    with pytest.raises(BearError):
        demo_ws.release([1], user=user)


def _open_copy(demo_path, tmp_path, plugins=()):
    import shutil

    path = tmp_path / "copy.duckdb"
    shutil.copy(demo_path, path)
    return bear.connect(path, plugins=plugins)


class _Slow:
    """A release rule that takes a little time, so a run can be caught between batches."""

    @hookimpl
    def bear_register_rules(self, settings):
        class R:
            id, stage, severity, description = (
                "test.slow",
                "release",
                "block",
                "slows each judgement",
            )

            def evaluate(self, batch):
                time.sleep(0.02)
                return batch.relation.filter("false").project("billing_event_id, 'x' AS message")

        return [R()]


def test_cancel_stops_at_a_batch_boundary(demo_path, tmp_path, monkeypatch):
    import bear.pipeline.release as release

    monkeypatch.setattr(release, "JUDGE_WINDOW", 1)  # judge every batch: slow enough to cancel
    monkeypatch.setattr(release, "JUDGE_WINDOW_MAX", 1)
    demo_ws = _open_copy(demo_path, tmp_path, [_Slow()])
    demo_ws.settings.update(release_batch_size=5)
    ids = _eligible(demo_ws, 2000)
    handle = demo_ws.release(ids, user="ana@example.com", wait=False)
    deadline = time.monotonic() + 30
    while demo_ws.run(handle.id).batches_done < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    demo_ws.cancel(handle.id)
    res = handle.wait(timeout=60)
    assert res.status == "cancelled"
    assert 0 < res.batches_done < res.batches
    assert res.released % 5 == 0 and res.released == 5 * res.batches_done
    assert int(demo_ws.sql("SELECT count(*) AS n FROM event_claims")["n"][0]) == 0
    with pytest.raises(BearError):
        demo_ws.cancel(handle.id)
    demo_ws.close()


def test_progress_is_recorded_for_readers(demo_ws):
    demo_ws.settings.update(release_batch_size=50)
    res = demo_ws.release_and_invoice(_eligible(demo_ws, 400), user="ana@example.com")
    row = demo_ws.runs().iloc[0]
    assert row["batches"] == 8 and row["batches_done"] == 8
    assert row["invoice_total"] == 400 and row["invoice_done"] == 400
    assert row["seconds"] is not None and row["seconds"] >= 0
    assert res.finished


def test_unfinished_run_resumes_when_the_database_is_reopened(demo_path, tmp_path):
    import shutil

    path = tmp_path / "resume.duckdb"
    shutil.copy(demo_path, path)
    with bear.connect(path, resume=False) as ws:
        ids = _eligible(ws, 120)
        ws.runner.stop()
        run_id = ws.queue("release_and_invoice", ids, "ana@example.com", start=False).id
        ws.runner.stop()
        assert ws.run(run_id).status in ("queued", "running")
    with bear.connect(path) as ws:  # an owner resumes unfinished runs
        res = ws.runner.wait(run_id, timeout=60)
        assert res.status == "completed" and res.released == 120


# -- §2.4 release stage -----------------------------------------------------------------------
def test_validated_selection_leaves_out_ineligible_events_with_an_app_log_each(demo_ws):
    sel = demo_ws.awaiting_release()
    pv = demo_ws.preview(sel, action="release")
    blocked = set(pv.violations[pv.violations.severity == "block"].billing_event_id)
    res = demo_ws.release(sel, user="ana@example.com")
    assert res.excluded == len(blocked) and res.failed_batches == 0
    logs = demo_ws.app_logs(res.id)
    assert set(logs.record_id) == blocked
    assert logs.groupby("record_id").size().max() == 1
    assert logs.rule_id.notna().all() and logs.message.str.startswith("not released").all()
    assert res.released == pv.selected - len(blocked)


def test_batches_follow_release_batch_size_in_a_deterministic_order(demo_ws):
    demo_ws.settings.update(release_batch_size=30)
    ids = _eligible(demo_ws, 100)
    res = demo_ws.release(ids, user="ana@example.com")
    batches = demo_ws.release_batches(res.id)
    assert list(batches["size"]) == [30, 30, 30, 10]
    order = demo_ws.sql(
        "SELECT billing_event_id, batch_seq FROM run_events WHERE run_id = $r ORDER BY ord",
        r=res.id,
    )
    assert list(order.billing_event_id) == sorted(ids)
    assert list(order.batch_seq) == [1] * 30 + [2] * 30 + [3] * 30 + [4] * 10


def test_one_ineligible_event_fails_its_whole_batch(demo_ws):
    demo_ws.settings.update(
        release_batch_size=10, validation_limit=0
    )  # unvalidated, as in the reference
    good = _eligible(demo_ws, 25)
    bad = _culprit(demo_ws)
    ids = sorted(good + [bad])
    res = demo_ws.release(ids, user="ana@example.com")
    assert not res.validated and res.failed_batches == 1
    bad_batch = ids.index(bad) // 10 + 1
    batches = demo_ws.release_batches(res.id).set_index("seq")
    assert batches.loc[bad_batch, "status"] == "failed"
    assert str(bad) in batches.loc[bad_batch, "cause"]
    same_batch = ids[(bad_batch - 1) * 10 : bad_batch * 10]
    released = set(
        demo_ws.sql(
            "SELECT id FROM billing_events WHERE released AND release_run_id = $r", r=res.id
        ).id
    )
    assert not released & set(same_batch)
    assert released == set(ids) - set(same_batch)
    logs = demo_ws.app_logs(res.id).set_index("record_id")
    assert (
        "not approved" in logs.loc[bad, "message"]
        and logs.loc[bad, "rule_id"] == "release.not_approved"
    )
    for other in set(same_batch) - {bad}:
        msg = logs.loc[other, "message"]
        assert f"batch {bad_batch}" in msg and str(bad) in msg
    assert res.not_released == len(same_batch)


def test_isolate_mode_leaves_only_the_culprits_unreleased(demo_ws):
    demo_ws.settings.update(
        release_batch_size=10, validation_limit=0, release_failure_mode="isolate"
    )
    good = _eligible(demo_ws, 25)
    bad = [_culprit(demo_ws), _culprit(demo_ws, "release.item_on_hold")]
    res = demo_ws.release(sorted(good + bad), user="ana@example.com")
    assert res.released == 25 and res.not_released == 2
    released = set(
        demo_ws.sql("SELECT id FROM billing_events WHERE release_run_id = $r", r=res.id).id
    )
    assert released == set(good)
    logs = demo_ws.app_logs(res.id)
    assert set(logs.record_id) == set(bad)


def test_state_changed_after_the_preview_is_caught_inside_the_batch(demo_ws):
    demo_ws.settings.update(release_batch_size=10)
    ids = _eligible(demo_ws, 20)
    pv = demo_ws.preview(ids, action="release")
    assert pv.eligible == 20
    victim = ids[3]
    with demo_ws.db.transaction() as tx:  # someone un-approves an event after the preview
        tx.execute("UPDATE billing_events SET approved = false WHERE id = ?", [victim])
    res = demo_ws.release(ids, user="ana@example.com")
    assert res.released == 19
    log = demo_ws.app_logs(res.id)
    assert list(log.record_id) == [victim] and "not approved" in log.message[0]


def test_release_finished_notification_carries_the_counts(demo_ws):
    res = demo_ws.release(_eligible(demo_ws, 40), user="ana@example.com")
    assert demo_ws.wait_notifications(res.id, timeout=30)  # delivered off the runner
    n = demo_ws.notifications(res.id)
    inapp = n[(n.channel == "in_app") & (n.kind == "release_finished")]
    assert len(inapp) == 1 and inapp.iloc[0]["status"] == "sent"
    assert (
        "40 released" in inapp.iloc[0]["subject"] and "0 not released" in inapp.iloc[0]["subject"]
    )
    assert set(n[n.kind == "release_finished"].channel) >= {"in_app", "log"}


# -- §2.5 invoicing stage ---------------------------------------------------------------------
def test_invoicing_creates_one_document_per_eligible_event_and_one_log_per_event(demo_ws):
    sel = demo_ws.awaiting_release()
    res = demo_ws.release_and_invoice(sel, user="ana@example.com")
    pr = demo_ws.process_runs(res.id)
    assert len(pr) == 1 and pr.iloc[0]["status"] == "completed"
    logs = demo_ws.process_logs(res.process_run_id)
    assert len(logs) == res.released == logs.billing_event_id.nunique()
    ok, err = logs[logs.status == "OK"], logs[logs.status == "ERROR"]
    assert len(ok) == res.sales_invoices + res.credit_notes and len(err) > 0
    # not passed to accounting: the released events that got an ERROR, and those never released
    assert res.not_passed == len(err) + res.not_released
    assert ok.document_id.notna().all() and err.document_id.isna().all()
    assert err.rule_id.notna().all() and err.message.str.len().gt(10).all()
    docs = demo_ws.documents(run_id=res.id)
    assert set(docs.billing_event_id) == set(ok.billing_event_id)
    linked = demo_ws.sql(
        "SELECT count(*) AS n FROM billing_events e JOIN documents d ON d.id = e.document_id "
        "WHERE e.invoiced AND d.billing_event_id = e.id AND d.process_run_id = $p",
        p=res.process_run_id,
    )
    assert linked["n"][0] == len(docs)


def test_sales_invoice_for_positive_credit_note_for_negative_with_negated_unit_price(demo_ws):
    res = demo_ws.release_and_invoice(demo_ws.awaiting_release(), user="ana@example.com")
    check = demo_ws.sql(
        """
        SELECT d.id, d.doc_type, e.summary_amount, d.total, count(*) AS lines,
               any_value((SELECT count(*) FROM billing_event_items x WHERE x.billing_event_id = e.id)) AS items,
               bool_and(l.unit_price = CASE WHEN d.doc_type = 'SCN' THEN -i.unit_price ELSE i.unit_price END) AS price_ok,
               sum(l.amount) AS line_sum, sum(i.amount) AS item_sum
        FROM documents d JOIN billing_events e ON e.id = d.billing_event_id
        JOIN document_lines l ON l.document_id = d.id JOIN billing_event_items i ON i.id = l.billing_event_item_id
        WHERE d.process_run_id = $p GROUP BY d.id, d.doc_type, e.summary_amount, d.total
        """,
        p=res.process_run_id,
    )
    assert set(check.doc_type) == {"SIN", "SCN"}
    assert (check[check.doc_type == "SIN"].summary_amount > 0).all()
    assert (check[check.doc_type == "SCN"].summary_amount < 0).all()
    assert check.price_ok.all() and (check["lines"] == check["items"]).all()
    assert (check.total == check.line_sum).all()
    assert all(isinstance(v, Decimal) for v in check.total)
    assert (check.total == check.item_sum.abs()).all()
    n_items = demo_ws.sql(
        "SELECT count(*) AS n FROM billing_event_items WHERE billing_event_id IN "
        "(SELECT billing_event_id FROM documents WHERE process_run_id = $p)",
        p=res.process_run_id,
    )
    assert check.lines.sum() == n_items["n"][0]


def test_document_numbers_are_gap_free_per_company_and_type_across_runs(demo_ws):
    ids = _eligible(demo_ws, 600)
    for part in (ids[:200], ids[200:350], ids[350:]):
        assert demo_ws.release_and_invoice(part, user="ana@example.com").status == "completed"
    gaps = demo_ws.sql(
        "SELECT company_id, doc_type, count(*) AS n, min(seq) AS lo, max(seq) AS hi, count(DISTINCT number) AS nums "
        "FROM documents GROUP BY ALL"
    )
    assert (gaps.lo == 1).all() and (gaps.hi == gaps.n).all() and (gaps.nums == gaps.n).all()
    assert (
        demo_ws.sql(
            "SELECT count(*) AS n FROM documents WHERE number <> doc_type || lpad(seq::VARCHAR, 6, '0')"
        )["n"][0]
        == 0
    )


def test_invoicing_failures_are_per_event_not_per_batch(demo_ws):
    res = demo_ws.release_and_invoice(
        demo_ws.awaiting_release(currency="GBP"), user="ana@example.com"
    )
    logs = demo_ws.process_logs(res.process_run_id)
    err = logs[logs.status == "ERROR"]
    assert "invoice.currency_not_enabled" in set(err.rule_id)
    assert (logs.status == "OK").sum() > 0  # the good ones of the same chunk went through
    still_released = demo_ws.sql(
        "SELECT bool_and(released AND NOT invoiced) AS ok FROM billing_events "
        "WHERE id IN (SELECT unnest($ids))",
        ids=[int(i) for i in err.billing_event_id],
    )
    assert still_released["ok"][0]


def test_invoicing_finished_email_goes_to_the_user_and_each_additional_recipient(
    demo_ws, smtp_server
):
    host, port, inbox = smtp_server
    demo_ws.settings.update(
        smtp_host=host,
        smtp_port=port,
        base_url="https://bear.example.com",
        additional_notification_recipients=["controller@example.com", "cfo@example.com"],
    )
    res = demo_ws.release_and_invoice(
        demo_ws.awaiting_release(currency="EUR"), user="ana@example.com"
    )
    msgs = inbox.wait_for(3)
    assert sorted(r[0] for r, _ in msgs) == [
        "ana@example.com",
        "cfo@example.com",
        "controller@example.com",
    ]
    for _, m in msgs:
        assert f"run {res.id}" in m["Subject"].lower()
        text = m.get_body(("plain",)).get_content()
        html = m.get_body(("html",)).get_content()
        assert f"Sales invoices created: {res.sales_invoices:,}" in text
        assert f"Credit notes created: {res.credit_notes:,}" in text
        assert f"could not be passed to accounting: {res.not_passed:,}" in text
        assert f"https://bear.example.com/?run={res.id}" in text and f"?run={res.id}" in html
    assert demo_ws.wait_notifications(res.id, timeout=60)
    emails = demo_ws.notifications(res.id, channel="email")
    assert len(emails) == 3 and set(emails.status) == {"sent"}


def test_user_without_email_gets_in_app_notifications_only(demo_ws, smtp_server):
    host, port, inbox = smtp_server
    demo_ws.settings.update(smtp_host=host, smtp_port=port)
    res = demo_ws.release_and_invoice(_eligible(demo_ws, 20), user="ana")
    n = demo_ws.notifications(res.id)
    assert "email" not in set(n.channel)
    assert set(n[n.channel == "in_app"].kind) == {"release_finished", "invoicing_finished"}
    time.sleep(0.3)
    assert inbox.messages == []


def test_smtp_down_the_run_completes_and_delivery_is_retried(demo_ws, smtp_server):
    host, port, inbox = smtp_server
    from netutil import free_port

    dead = free_port()
    demo_ws.settings.update(smtp_host="127.0.0.1", smtp_port=dead)
    res = demo_ws.release_and_invoice(_eligible(demo_ws, 30), user="ana@example.com")
    assert res.status == "completed"
    assert demo_ws.wait_notifications(res.id, timeout=60)
    email = demo_ws.notifications(res.id, channel="email")
    assert list(email.status) == ["pending"] and email.iloc[0]["attempts"] >= 1
    assert "email:" in email.iloc[0]["last_error"]
    backoff = demo_ws.sql(
        "SELECT next_attempt_at > current_timestamp AS later FROM notifications "
        "WHERE run_id = $r AND channel = 'email'",
        r=res.id,
    )
    assert backoff["later"].all()  # the next try waits (backoff) ...
    from bear.pipeline import deliver_pending

    assert deliver_pending(demo_ws.core)["failed"] == 0  # ... so an early sweep leaves it alone
    demo_ws.settings.update(smtp_port=port)  # the server comes back
    assert demo_ws.retry_notifications()["sent"] >= 1
    inbox.wait_for(1)
    assert list(demo_ws.notifications(res.id, channel="email").status) == ["sent"]


# -- §2.6 exactly once, concurrency, faults ---------------------------------------------------
def test_a_second_run_over_the_same_events_changes_nothing(demo_ws):
    ids = _eligible(demo_ws, 150)
    first = demo_ws.release_and_invoice(ids, user="ana@example.com")
    docs = len(demo_ws.documents())
    second = demo_ws.release_and_invoice(ids, user="bob@example.com")
    assert first.released == 150
    assert second.released == 0 and second.excluded == 150
    assert set(demo_ws.app_logs(second.id).rule_id) == {"release.already_released"}
    assert len(demo_ws.documents()) == docs


def test_the_database_refuses_a_second_document_for_an_event(demo_ws):
    import duckdb

    res = demo_ws.release_and_invoice(_eligible(demo_ws, 1), user="ana@example.com")
    d = demo_ws.documents(run_id=res.id).iloc[0]
    with pytest.raises(duckdb.ConstraintException), demo_ws.db.transaction() as tx:
        tx.execute(
            "INSERT INTO documents (id, number, doc_type, billing_event_id, account_id, company_id, currency,"
            " total, document_date, seq) VALUES (999999, 'X', 'SIN', ?, 1, 1, 'USD', 1, current_date, 999999)",
            [int(d.billing_event_id)],
        )


def test_concurrent_runs_over_overlapping_selections_never_process_an_event_twice(demo_ws):
    ids = _eligible(demo_ws, 800)
    selections = [ids[0:400], ids[200:600], ids[300:800], ids[::2]]
    handles = []
    errors = []

    def start(sel, user):
        try:
            handles.append(demo_ws.release_and_invoice(sel, user=user, wait=False))
        except Exception as exc:  # noqa: BLE001 — collected and asserted below
            errors.append(exc)

    threads = [
        threading.Thread(target=start, args=(s, f"user{i}@example.com"))
        for i, s in enumerate(selections)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    results = [h.wait(timeout=120) for h in handles]
    assert all(r.status == "completed" for r in results)
    assert sum(r.released for r in results) == len(set(ids))
    dup = demo_ws.sql(
        "SELECT billing_event_id, count(*) AS n FROM documents GROUP BY 1 HAVING n > 1"
    )
    assert dup.empty
    # every event a run could not take is reported, never as a raw conflict
    for r in results:
        logs = demo_ws.app_logs(r.id)
        assert r.released + len(set(logs.record_id)) == r.selected
        assert not logs.message.str.contains("Conflict|TransactionException", regex=True).any()
        assert set(logs.rule_id.dropna()) <= {"release.already_released", "release.in_other_run"}


def test_an_event_claimed_by_an_active_run_is_ineligible_for_another(demo_ws):
    ids = _eligible(demo_ws, 10)
    demo_ws.runner.stop()
    run_id = demo_ws.queue("release", ids[:5], "ana@example.com", start=False).id
    demo_ws.runner.stop()
    pv = demo_ws.preview(ids, action="release")
    claimed = pv.violations[pv.violations.rule_id == "release.in_other_run"]
    assert set(claimed.billing_event_id) == set(ids[:5])
    assert f"run {run_id}" in claimed.message.iloc[0]
    demo_ws.runner.start()
    assert demo_ws.runner.wait(run_id, timeout=60).status == "completed"


class _Raises:
    @hookimpl
    def bear_register_rules(self, settings):
        class R:
            id, stage, severity, description = "faulty.raises", "release", "block", "raises"

            def evaluate(self, batch):
                raise RuntimeError("boom")

        return [R()]


class _Hangs:
    @hookimpl
    def bear_register_rules(self, settings):
        class R:
            id, stage, severity, description = "faulty.hangs", "invoice", "block", "hangs"

            def evaluate(self, batch):
                time.sleep(5)

        return [R()]


class _Garbage:
    @hookimpl
    def bear_register_rules(self, settings):
        class R:
            id, stage, severity, description = "faulty.garbage", "invoice", "block", "garbage"

            def evaluate(self, batch):
                return "not a table"

        return [R()]


class _BadNotifier:
    @hookimpl
    def bear_invoicing_finished(self, summary):
        raise RuntimeError("notifier down")

    @hookimpl
    def bear_release_finished(self, summary):
        time.sleep(5)


@pytest.mark.parametrize(
    "plugin,rule,stage",
    [
        (_Raises(), "faulty.raises", "release"),
        (_Hangs(), "faulty.hangs", "invoice"),
        (_Garbage(), "faulty.garbage", "invoice"),
    ],
)
def test_a_faulty_rule_plugin_fails_closed_and_the_run_completes(
    demo_path, tmp_path, plugin, rule, stage
):
    import shutil

    path = tmp_path / "faulty.duckdb"
    shutil.copy(demo_path, path)
    with bear.connect(path, plugins=[plugin]) as ws:
        ws.settings.update(rule_timeout_s=0.5)
        ids = ws.awaiting_release().ids()[:60]
        res = ws.release_and_invoice(ids, user="ana@example.com", timeout=120)
        assert res.status == "completed"
        if stage == "release":
            assert res.released == 0
            logs = ws.app_logs(res.id)
            assert set(logs.record_id) == set(ids)
            assert logs.detail.str.contains(f"rule {rule} (", regex=False).all()
        else:
            logs = ws.process_logs(res.process_run_id)
            assert (logs.status == "ERROR").all() and len(logs) == res.released > 0
            assert logs.message.str.contains(f"rule {rule} (", regex=False).all()
            assert (
                ws.sql(
                    "SELECT count(*) AS n FROM billing_events WHERE invoiced AND release_run_id = $r",
                    r=res.id,
                )["n"][0]
                == 0
            )
        timing = ws.rules().set_index("id").loc[rule]
        assert timing["last_error"]


def test_a_failing_notifier_never_stops_a_run_and_its_notification_is_kept(
    demo_path, tmp_path, monkeypatch
):
    import bear.pipeline.outbox as outbox

    monkeypatch.setattr(outbox, "NOTIFY_TIMEOUT_S", 1.0)
    if True:
        with _open_copy(demo_path, tmp_path, [_BadNotifier()]) as ws:
            res = ws.release_and_invoice(_eligible(ws, 30), user="ana@example.com", timeout=120)
            assert res.status == "completed" and res.sales_invoices + res.credit_notes == 30
            assert ws.wait_notifications(res.id, timeout=60)
            n = ws.notifications(res.id)
            bad = n[n.channel == "_BadNotifier"]
            assert set(bad.status) == {"pending"} and len(bad) == 2
            assert bad.last_error.str.contains("notifier down|timed out", regex=True).all()
            assert set(n[n.channel == "in_app"].status) == {"sent"}


def test_negative_batch_size_is_refused_and_changes_nothing(demo_ws):
    from bear.errors import SettingError

    with pytest.raises(SettingError, match="release_batch_size"):
        demo_ws.settings.update(release_batch_size=-5, validation_limit=10)
    assert (
        demo_ws.settings.release_batch_size == 200
        and demo_ws.settings.validation_limit == 1_000_000
    )


def _deactivate_between_the_stages(monkeypatch, ws, event):
    """Between the stages, another thread deactivates the account of ``event`` — a commit the
    run's verdicts did not see (made as the invoicing stage starts, deterministically)."""
    import bear.pipeline.invoice as invoice

    start = invoice._start_invoicing

    def work():
        with ws.db.transaction() as tx:
            tx.execute(
                "UPDATE accounts SET active = false WHERE id = "
                "(SELECT account_id FROM billing_events WHERE id = ?)",
                [event],
            )

    def start_after_a_foreign_commit(core, run_id):
        t = threading.Thread(target=work)
        t.start()
        t.join()
        return start(core, run_id)

    monkeypatch.setattr(invoice, "_start_invoicing", start_after_a_foreign_commit)


def test_invoice_rules_judge_afresh_when_another_commit_came_between(
    demo_path, tmp_path, monkeypatch
):
    ws = _open_copy(demo_path, tmp_path, [])
    ids = _eligible(ws, 300)
    _deactivate_between_the_stages(monkeypatch, ws, ids[150])
    account = int(
        ws.sql(f"SELECT account_id AS a FROM billing_events WHERE id = {ids[150]}")["a"][0]
    )
    same_account = set(
        ws.sql(f"SELECT id FROM billing_events WHERE account_id = {account}")["id"]
    ) & set(ids)
    res = ws.release_and_invoice(ids, user="ana@example.com")
    assert res.released == 300  # judged before the account changed
    logs = ws.process_logs(res.id)
    errors = logs[logs.status == "ERROR"]
    assert set(errors.billing_event_id) == same_account
    assert set(errors.rule_id) == {"invoice.account_inactive"}
    assert res.not_passed == len(same_account)
    ws.close()


class _CountingInvoiceRule:
    """An invoice rule that passes everything and counts the events it was asked to judge."""

    __name__ = "counting"

    def __init__(self) -> None:
        self.judged: list[int] = []

    @hookimpl
    def bear_register_rules(self, settings):
        outer = self

        class Rule:
            id = "counting.invoice"
            stage = "invoice"
            severity = "block"
            description = "counts"
            columns = ("billing_event_id",)

            def evaluate(self, batch):
                outer.judged.append(len(batch))
                return batch.relation.filter("false").project("billing_event_id, 'x' AS message")

        return [Rule()]


def test_invoice_rules_reuse_the_prepared_verdict_when_nothing_else_committed(demo_path, tmp_path):
    rule = _CountingInvoiceRule()
    ws = _open_copy(demo_path, tmp_path, [rule])
    ids = _eligible(ws, 300)
    rule.judged.clear()
    res = ws.release_and_invoice(ids, user="ana@example.com")
    assert res.released == 300 and res.not_passed == 0
    assert rule.judged == [300]  # once, when the run was prepared, as if released
    ws.close()


def test_a_cancel_asked_before_the_run_starts_stops_it_before_any_release(demo_ws):
    ids = _eligible(demo_ws, 50)
    run_id = demo_ws.queue("release_and_invoice", ids, "ana@example.com", start=False).id
    demo_ws.cancel(run_id)
    demo_ws.runner.wake()
    res = demo_ws.runner.wait(run_id, timeout=60)
    assert res.status == "cancelled" and res.released == 0
    assert (
        int(
            demo_ws.sql(
                "SELECT count(*) AS n FROM billing_events WHERE release_run_id IS NOT NULL AND "
                f"release_run_id = {run_id}"
            )["n"][0]
        )
        == 0
    )


def test_the_write_lock_serves_writers_in_turn():
    """A thread writing in a tight loop (the runner's batches) hands the lock to a waiting
    writer (a cancel request) at its next release, not after Python's switch interval."""
    import statistics

    from bear.db.connection import FairRLock

    lock = FairRLock()
    stop = threading.Event()

    def busy():
        while not stop.is_set():
            with lock, lock:  # taken twice: reentrant
                sum(range(2000))

    t = threading.Thread(target=busy)
    t.start()
    waits = []
    try:
        time.sleep(0.05)
        for _ in range(10):
            t0 = time.monotonic()
            with lock:
                waits.append(time.monotonic() - t0)
            time.sleep(0.005)
    finally:
        stop.set()
        t.join()
    assert statistics.median(waits) < 0.003, waits  # a plain RLock: 5-30 ms here
    with pytest.raises(RuntimeError):
        lock.release()
    # A writer that gives up waiting leaves the queue: the next one is served.
    got: dict[str, bool] = {}
    with lock:
        t = threading.Thread(target=lambda: got.update(first=lock.acquire(timeout=0.05)))
        t.start()
        t.join()
    t = threading.Thread(target=lambda: got.update(second=lock.acquire(timeout=1)))
    t.start()
    t.join()
    assert got == {"first": False, "second": True}


def test_a_change_committed_during_the_release_is_caught_by_the_next_batch(demo_ws):
    """The up-front verdict serves the batches only until another transaction commits: an
    event un-approved mid-run fails its batch (checked again inside it), the rest go."""
    demo_ws.settings.update(release_batch_size=1)  # a thousand small batches: time to act
    ids = _eligible(demo_ws, 1000)
    victim = ids[-1]
    handle = demo_ws.release(ids, user="ana@example.com", wait=False)
    deadline = time.monotonic() + 30
    while demo_ws.run(handle.id).batches_done < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert demo_ws.run(handle.id).status == "running"
    with demo_ws.db.transaction() as tx:  # another analyst un-approves the last event
        tx.execute("UPDATE billing_events SET approved = false WHERE id = ?", [victim])
    res = handle.wait(timeout=120)
    assert res.status == "completed" and res.excluded == 0
    assert res.released == 999 and res.failed_batches == 1
    log = demo_ws.app_logs(res.id)
    assert list(log.record_id) == [victim] and "not approved" in log.message[0]
    released = demo_ws.sql(f"SELECT id FROM billing_events WHERE release_run_id = {res.id}")
    assert set(released.id) == set(ids) - {victim}
