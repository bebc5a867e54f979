"""Reverting billing (DESIGN §8), through the public API on real DuckDB files: documents get a
status and are posted, a revert is a run that puts events back in Awaiting Release and
discards or reverses their documents, the history keeps the chain, and the database itself
refuses a second reversal."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import duckdb
import pytest

import bear
from bear.errors import BearError, NotFoundError, UnknownIdsError
from bear.rules import SqlRule
from bear.testing import make_workspace

USER = "ana@example.com"


def _book(tmp_path, n=100, **kw):
    events = [{"id": i, "items": [{"amount": Decimal("100.00") + i}]} for i in range(1, n + 1)]
    return make_workspace(events, path=tmp_path / "book.duckdb", **kw)


def _doc(ws, event_id, **where):
    docs = ws.documents()
    rows = docs[docs.billing_event_id == event_id]
    for k, v in where.items():
        rows = rows[rows[k] == v]
    return rows


def test_done_when_post_revert_rerun_and_the_history_of_one_event(tmp_path):
    """Release and invoice 100 events, post them, revert 10 with a reason: 10 credit notes
    numbered next in sequence, each pointing at its invoice; the 10 events back in Awaiting
    Release; re-running them gives 10 new invoices; the history of one event shows its three
    documents in order; an unposted document is discarded, not credited."""
    with _book(tmp_path) as ws:
        run = ws.release_and_invoice(list(range(1, 101)), user=USER, timeout=120)
        assert (run.status, run.sales_invoices) == ("completed", 100)
        assert set(ws.documents()["status"]) == {"in_progress"}
        posted = ws.post([int(i) for i in ws.documents()["id"] if i != 100], user=USER)
        assert len(posted) == 99 and set(posted["status"]) == {"complete"}
        assert set(posted["posted_by"]) == {USER}

        pv = ws.preview(list(range(11, 21)), action="revert")
        assert pv.eligible_ids == list(range(11, 21)) and pv.violations.empty
        exp = pv.expected_documents
        assert list(exp[["effect", "doc_type", "count"]].itertuples(index=False, name=None)) == [
            ("create", "SCN", 10)
        ]
        assert exp["total"][0] == sum(Decimal("100.00") + i for i in range(11, 21))

        rv = ws.revert(list(range(11, 21)), reason="wrong hours", user=USER, timeout=120)
        assert rv.status == "completed" and rv.action == "revert"
        assert (rv.reverted, rv.credit_notes, rv.sales_invoices, rv.discarded) == (10, 10, 0, 0)
        assert (rv.not_reverted, rv.not_passed) == (0, 0)
        assert rv.requested_by == USER and rv.reason == "wrong hours"
        assert ws.runs().set_index("id").loc[rv.id, "requested_by"] == USER

        docs = ws.documents().set_index("id")
        notes = docs[docs.doc_type == "SCN"].sort_values("number")
        assert list(notes.number) == [f"SCN{n:06d}" for n in range(1, 11)]
        assert list(notes.billing_event_id) == list(range(11, 21))
        for note_id, note in notes.iterrows():
            original = docs.loc[int(note.reverses_document_id)]
            assert original.billing_event_id == note.billing_event_id
            assert original.doc_type == "SIN" and original.status == "reversed"
            assert original.reversed_by_document_id == note_id
            assert note.total == original.total and note.status == "in_progress"
            lines, orig_lines = (
                ws.document_lines(note_id),
                ws.document_lines(int(note.reverses_document_id)),
            )
            assert list(lines.billing_event_item_id) == list(orig_lines.billing_event_item_id)
            assert list(lines.quantity) == list(orig_lines.quantity)
            assert list(lines.amount) == [-a for a in orig_lines.amount]
            assert list(lines.unit_price) == [-p for p in orig_lines.unit_price]
        assert set(ws.awaiting_release().ids()) == set(range(11, 21))
        logs = ws.app_logs(run_id=rv.id)
        assert sorted(logs.record_id) == list(range(11, 21))
        assert all("reverses sales invoice" in m for m in logs.message)

        again = ws.release_and_invoice(list(range(11, 21)), user=USER, timeout=120)
        assert (again.status, again.sales_invoices) == ("completed", 10)
        new = ws.documents(run_id=again.id)
        assert sorted(new.number) == [f"SIN{n:06d}" for n in range(101, 111)]

        h = ws.history(11)
        assert list(h.action) == ["release", "invoice", "revert", "release", "invoice"]
        chain = [
            h.document_after_number[1],
            h.reversing_document_number[2],
            h.document_after_number[4],
        ]
        assert chain == ["SIN000011", "SCN000001", "SIN000101"]
        assert h.reason[2] == "wrong hours" and h.outcome[2] == "reversed"
        assert set(h.actor) == {USER} and list(h.run_id) == [
            run.id,
            run.id,
            rv.id,
            again.id,
            again.id,
        ]

        # the unposted document is discarded, not credited; its number is never given again
        d = ws.revert([100], reason="duplicate", user=USER, timeout=60)
        assert (d.reverted, d.discarded, d.credit_notes, d.sales_invoices) == (1, 1, 0, 0)
        assert _doc(ws, 100).status.tolist() == ["discarded"]
        assert ws.documents(run_id=d.id).empty
        third = ws.release_and_invoice([100], user=USER, timeout=60)
        assert ws.documents(run_id=third.id).number.tolist() == ["SIN000111"]
        assert _doc(ws, 100).number.tolist() == ["SIN000100", "SIN000111"]


def test_a_released_event_goes_back_and_a_credit_note_is_reversed_by_an_invoice(tmp_path):
    events = [{"id": 1}, {"id": 2, "items": [{"amount": "-40.00"}]}, {"id": 3}]
    with make_workspace(events, path=tmp_path / "b.duckdb", settings={"auto_post": True}) as ws:
        ws.release([1], user=USER)
        run = ws.release_and_invoice([2, 3], user=USER)
        docs = ws.documents(run_id=run.id)
        assert set(docs.status) == {"complete"}  # auto_post
        rv = ws.revert([1, 2, 3], reason="re-bill", user=USER)
        assert (rv.reverted, rv.sales_invoices, rv.credit_notes) == (3, 1, 1)
        made = ws.documents(run_id=rv.id).set_index("billing_event_id")
        assert made.loc[2, "doc_type"] == "SIN" and made.loc[2, "total"] == Decimal("40.00")
        assert set(made.status) == {"complete"}  # auto_post posts the reversing documents too
        assert ws.history(1).action.tolist() == ["release", "revert"]
        assert ws.history(1).outcome.tolist()[-1] == "unreleased"
        assert sorted(ws.awaiting_release().ids()) == [1, 2, 3]


def test_revert_rules_leave_events_out_with_a_reason_each(tmp_path):
    class Guard:
        @bear.hookimpl
        def bear_register_rules(self, settings):
            return [
                SqlRule(
                    id="acme.keep_two",
                    stage="revert",
                    fail_when="billing_event_id = 2",
                    message="event 2 is audited; ask finance",
                )
            ]

    with make_workspace([{"id": i} for i in (1, 2, 3, 4)], plugins=[Guard()]) as ws:
        ws.release_and_invoice([1, 2, 3], user=USER)
        first = ws.revert([1], reason="x", user=USER)
        assert first.reverted == 1
        rv = ws.revert([1, 2, 3, 4], reason="again", user=USER)
        assert (rv.reverted, rv.not_reverted, rv.not_passed) == (1, 3, 3)
        logs = ws.app_logs(run_id=rv.id).set_index("record_id")
        assert logs.loc[1, "rule_id"] == "revert.not_released"
        assert logs.loc[2, "rule_id"] == "acme.keep_two"
        assert "audited" in logs.loc[2, "message"]
        assert logs.loc[4, "rule_id"] == "revert.not_released"
        assert logs.loc[3, "message"].startswith("reverted: sales invoice")
        pv = ws.preview([2, 3], action="revert")
        assert pv.eligible_ids == [] and pv.releasable == 0  # 3 is back: not released
        assert set(pv.violations.rule_id) == {"acme.keep_two", "revert.not_released"}


def test_a_revert_preview_shows_which_documents_it_creates_and_which_it_discards(tmp_path):
    """In a notebook a revert preview's documents table has an ``effect`` column: a posted
    invoice gets a credit note (``create``), an unposted one is ``discard``ed — not a table
    that reads as two new documents. A release preview's table is unchanged."""
    with _book(tmp_path, n=4) as ws:
        ws.release_and_invoice([1, 2, 3], user=USER, timeout=120)
        ws.post([int(i) for i in _doc(ws, 1)["id"]], user=USER)
        html = ws.preview([1, 2], action="revert")._repr_html_()
        assert "<tr><th>effect</th><th>document</th>" in html
        assert "<tr><td>create</td><td>SCN</td>" in html
        assert "<tr><td>discard</td><td>SIN</td>" in html
        release = ws.preview([4], action="release_and_invoice")._repr_html_()
        assert "effect" not in release and "<tr><th>document</th>" in release


def test_a_closed_period_dates_the_reversal_in_the_first_open_one_with_a_warning(tmp_path):
    today = dt.date.today()
    start = today.replace(day=1)
    nxt = (start + dt.timedelta(days=32)).replace(day=1)
    periods = [
        {"start_date": dt.date(2026, 1, 1), "closed": False},
        {"start_date": start, "closed": True},
        {"start_date": nxt, "closed": False},
    ]
    with make_workspace([{"id": 1}, {"id": 2}], periods=periods) as ws:
        run = ws.release_and_invoice([1, 2], user=USER)
        ws.post(run.id, user=USER)
        pv = ws.preview([1], action="revert")
        assert pv.eligible_ids == [1]
        assert pv.violations.rule_id.tolist() == ["revert.period_closed"]
        rv = ws.revert([1], reason="late", user=USER)
        note = ws.documents(run_id=rv.id)
        assert note.document_date.tolist() == [nxt]
        warn = ws.app_logs(run_id=rv.id)
        assert "revert.period_closed" in set(warn.rule_id.dropna())
        with ws.db.transaction() as tx:  # no open period after today: blocked
            tx.execute("UPDATE accounting_periods SET closed = true WHERE start_date = ?", [nxt])
        ws.refresh()
        blocked = ws.revert([2], reason="late", user=USER)
        assert (blocked.reverted, blocked.not_reverted) == (0, 1)
        assert ws.app_logs(run_id=blocked.id).rule_id.tolist() == ["revert.no_open_period"]


def test_the_database_refuses_a_second_reversal_and_a_second_live_document(tmp_path):
    with _book(tmp_path, n=2) as ws:
        run = ws.release_and_invoice([1, 2], user=USER)
        ws.post(run.id, user=USER)
        rv = ws.revert([1], reason="x", user=USER)
        note = ws.documents(run_id=rv.id)
        original = int(note.reverses_document_id[0])
        con = ws.db.cursor()
        insert = (
            "INSERT INTO documents (id, number, doc_type, billing_event_id, account_id, "
            "company_id, currency, total, document_date, seq, reverses_document_id, bill_cycle) "
            "VALUES (999, 'SCN000999', 'SCN', 1, 1, 1, 'USD', 1, DATE '2026-01-15', 999, ?, NULL)"
        )
        with pytest.raises(duckdb.ConstraintException):
            con.execute(insert, [original])
        second = (
            "INSERT INTO documents (id, number, doc_type, billing_event_id, account_id, "
            "company_id, currency, total, document_date, seq) "
            "VALUES (998, 'SIN000998', 'SIN', 2, 1, 1, 'USD', 1, DATE '2026-01-15', 998)"
        )
        with pytest.raises(duckdb.ConstraintException):
            con.execute(second)  # event 2's first billing cycle already has its document
        with pytest.raises(duckdb.ConstraintException):
            con.execute("UPDATE documents SET status = 'discarded' WHERE id = ?", [int(note.id[0])])
        with pytest.raises(duckdb.ConstraintException):
            con.execute(
                "INSERT INTO runs (action, requested_by, reason) VALUES ('revert', 'x', '  ')"
            )


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("", "give a reason"),
        ("   \n ", "give a reason"),
        ("x" * 501, "at most 500"),
        ("bad\x00byte", "text, line breaks and tabs only"),
        ("bell\x07", "text, line breaks and tabs only"),
        (None, "give a reason"),
        (42, "give a reason"),
    ],
)
def test_a_bad_reason_is_refused_and_changes_nothing(tmp_path, reason, words):
    with _book(tmp_path, n=3) as ws:
        ws.release_and_invoice([1, 2, 3], user=USER)
        runs, docs, awaiting = ws.runs(), ws.documents(), ws.awaiting_release().ids()
        with pytest.raises(BearError, match=words):
            ws.revert([1, 2], reason=reason, user=USER)
        with pytest.raises(BearError, match=words):
            ws.queue("revert", [1, 2], USER, reason=reason)
        assert ws.runs().equals(runs) and ws.documents().equals(docs)
        assert ws.awaiting_release().ids() == awaiting


def test_unknown_ids_and_hostile_text_change_nothing(tmp_path):
    with _book(tmp_path, n=3) as ws:
        ws.release_and_invoice([1, 2, 3], user=USER)
        runs = len(ws.runs())
        with pytest.raises(UnknownIdsError) as caught:
            ws.revert([1, 987_654_321], reason="x", user=USER)
        assert caught.value.ids == [987_654_321]
        with pytest.raises(BearError, match="a reason is given to a revert only"):
            ws.queue("release", [1], USER, reason="why")
        with pytest.raises(NotFoundError):
            ws.history(987_654_321)
        with pytest.raises(NotFoundError, match="unknown document id"):
            ws.post([1, 987_654_321])
        with pytest.raises(BearError, match="not text"):
            ws.post("1,2")
        assert len(ws.runs()) == runs
        assert set(ws.documents().status) == {"in_progress"}
        with pytest.raises(BearError, match="text, line breaks and tabs only"):
            ws.revert([1], reason="flip \u202e text", user=USER)  # a bidi override
        hostile = "'); DROP TABLE documents; -- <script>alert(1)</script> ünïcode"
        rv = ws.revert([1], reason=hostile, user=USER)
        assert rv.reason == hostile.strip() and rv.reverted == 1
        assert ws.history(1).reason.iloc[-1] == hostile.strip()
        assert len(ws.documents()) == 3


def test_post_is_all_or_nothing_and_names_what_cannot_be_posted(tmp_path):
    with _book(tmp_path, n=3) as ws:
        run = ws.release_and_invoice([1, 2, 3], user=USER)
        ids = [int(i) for i in ws.documents().sort_values("id").id]
        ws.post(ids[:1], user=USER)
        with pytest.raises(BearError, match="SIN000001 is complete; nothing was posted"):
            ws.post(ids, user=USER)
        assert ws.documents().status.tolist().count("complete") == 1
        assert len(ws.post(run.id, user=USER)) == 2
        with pytest.raises(BearError, match="no document in progress"):
            ws.post(run.id, user=USER)


def test_a_revert_racing_an_invoice_of_the_same_events_never_both_win(tmp_path):
    """Two runs over the same released events, executed at the same time on two threads: the
    one that claimed the events first wins; the other leaves them alone, each with a log."""
    for first in ("revert", "invoice"):
        (tmp_path / first).mkdir()
        with _book(tmp_path / first, n=40) as ws:
            ws.release(list(range(1, 41)), user=USER)
            a = ws.queue(
                first,
                list(range(1, 41)),
                USER,
                start=False,
                reason=("race" if first == "revert" else None),
            )
            other = "invoice" if first == "revert" else "revert"
            b = ws.queue(
                other,
                list(range(1, 41)),
                USER,
                start=False,
                reason=("race" if other == "revert" else None),
            )
            threads = [
                threading.Thread(target=bear.pipeline.execute_run, args=(ws.core, h.id))
                for h in (a, b)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            ra, rb = ws.run(a.id), ws.run(b.id)
            assert ra.status == rb.status == "completed"
            documents = ws.documents()
            if first == "revert":
                assert ra.reverted == 40 and rb.sales_invoices == 0 and documents.empty
                assert sorted(ws.awaiting_release().ids()) == list(range(1, 41))
            else:
                assert ra.sales_invoices == 40 and rb.reverted == 0
                assert set(documents.status) == {"in_progress"} and len(documents) == 40
                logs = ws.app_logs(run_id=b.id)
                assert set(logs.rule_id) == {"revert.in_other_run"}


def test_a_revert_run_notifies_the_initiator_and_the_additional_recipients(tmp_path):
    with _book(tmp_path, n=4, settings={"additional_notification_recipients": ["cfo@x.org"]}) as ws:
        run = ws.release_and_invoice([1, 2, 3, 4], user=USER)
        ws.post([int(ws.documents().id[0])], user=USER)
        rv = ws.revert([1, 2, 3], reason="wrong rate", user=USER)
        assert (rv.reverted, rv.discarded, rv.credit_notes) == (3, 2, 1)
        notes = ws.notifications(run_id=rv.id)
        emails = notes[notes.channel == "email"]
        assert sorted(emails.recipient) == sorted([USER, "cfo@x.org"])
        subject = emails.subject.iloc[0]
        assert f"run {rv.id} (Revert billing)" in subject
        assert "3 events reverted, 2 documents discarded, 1 reversing documents" in subject
        assert "0 not reverted" in subject
        assert "Reason: wrong rate" in emails.body.iloc[0]
        assert run.id != rv.id


def test_a_cancelled_revert_reverts_nothing_and_counts_every_event_as_not_reverted(tmp_path):
    with _book(tmp_path, n=5) as ws:
        ws.release_and_invoice([1, 2, 3, 4, 5], user=USER)
        handle = ws.queue("revert", [1, 2, 3, 4, 5], USER, start=False, reason="oops")
        ws.cancel(handle.id)
        res = handle.wait(60)
        assert res.status == "cancelled"
        assert (res.reverted, res.not_reverted, res.not_passed) == (0, 5, 5)
        assert ws.awaiting_release().ids() == []
        assert set(ws.documents().status) == {"in_progress"}
        assert ws.sql("SELECT count(*) AS n FROM event_claims").n[0] == 0
