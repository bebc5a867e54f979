"""Notification channels through their hooks only: per-recipient delivery declared by
``bear_notifier_options``, and the test message sent by ``bear_send_test_notification``."""

from __future__ import annotations

import pytest
from netutil import free_port

import bear
from bear.errors import BearError
from bear.models import NotifierOptions


class _PerRecipient:
    __name__ = "pager"

    def __init__(self) -> None:
        self.got: list[tuple[str, ...]] = []

    @bear.hookimpl
    def bear_notifier_options(self):
        return NotifierOptions(per_recipient=True, description="one page per person")

    @bear.hookimpl
    def bear_invoicing_finished(self, summary):
        self.got.append(summary.recipients)


class _Garbage:
    __name__ = "garbage"

    def __init__(self) -> None:
        self.calls = 0

    @bear.hookimpl
    def bear_notifier_options(self):
        return {"per_recipient": True}  # not a NotifierOptions: ignored, one delivery

    @bear.hookimpl
    def bear_invoicing_finished(self, summary):
        self.calls += 1


class _Chat:
    __name__ = "chat"

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, int]] = []
        self.fail = fail

    @bear.hookimpl
    def bear_send_test_notification(self, settings, recipient):
        if self.fail:
            raise ConnectionError("chat service unreachable")
        self.sent.append((recipient, settings.release_batch_size))
        return f"test message posted for {recipient}"


def _eligible(ws, n):
    pv = ws.preview(ws.awaiting_release(), action="release_and_invoice")
    return pv.eligible_ids[:n]


def test_a_per_recipient_channel_is_owed_one_delivery_per_recipient(demo_path, tmp_path):
    import shutil

    path = tmp_path / "n.duckdb"
    shutil.copy(demo_path, path)
    pager, garbage = _PerRecipient(), _Garbage()
    with bear.connect(path, plugins=[pager, garbage]) as ws:
        ws.settings.update(additional_notification_recipients=["b@example.com", "c@example.com"])
        res = ws.release_and_invoice(_eligible(ws, 5), user="ana@example.com", timeout=120)
        assert ws.wait_notifications(res.id, timeout=60)
        n = ws.notifications(res.id)
        rows = n[(n.channel == "pager") & (n.kind == "invoicing_finished")]
        assert sorted(rows.recipient) == ["ana@example.com", "b@example.com", "c@example.com"]
        assert sorted(pager.got) == [("ana@example.com",), ("b@example.com",), ("c@example.com",)]
        # a plugin whose options are not NotifierOptions is owed one delivery, not one each
        assert len(n[(n.channel == "garbage") & (n.kind == "invoicing_finished")]) == 1
        assert garbage.calls == 1


def test_the_email_notifier_declares_per_recipient_through_the_hook(ws):
    assert ws.plugins.notifier_options("email").per_recipient
    assert not ws.plugins.notifier_options("in_app").per_recipient
    assert not ws.plugins.notifier_options("no_such_plugin").per_recipient


def test_a_test_email_goes_through_the_email_hook(ws, smtp_server):
    host, port, inbox = smtp_server
    with pytest.raises(BearError, match="smtp_host is not set"):
        ws.send_test_notification("ana@example.com")
    ws.settings.update(smtp_host=host, smtp_port=port)
    assert ws.send_test_notification("ana@example.com") == "test e-mail sent to ana@example.com"
    (rcpts, msg), *_ = inbox.wait_for(1)
    assert rcpts == ["ana@example.com"] and msg["Subject"] == "BEAR test e-mail"
    with pytest.raises(BearError, match="not a valid e-mail address"):
        ws.send_test_notification("ana@example.com\r\nBcc: x@evil.example")
    with pytest.raises(BearError, match="address"):
        ws.send_test_notification("  ")


def test_an_unreachable_smtp_server_is_a_plain_error(ws):
    ws.settings.update(smtp_host="127.0.0.1", smtp_port=free_port())
    with pytest.raises(BearError, match=r"could not send through 127\.0\.0\.1:\d+"):
        ws.send_test_notification("ana@example.com")


def test_any_channel_can_send_a_test_message_and_its_failure_is_reported():
    chat = _Chat()
    with bear.connect(":memory:", plugins=[chat, _Chat(fail=True)]) as ws:
        ws.settings.update(release_batch_size=42)
        assert ws.send_test_notification("#billing", channel="chat") == (
            "test message posted for #billing"
        )
        assert chat.sent == [("#billing", 42)]  # the current settings reach the plugin
        with pytest.raises(BearError, match="ConnectionError: chat service unreachable"):
            ws.send_test_notification("#billing", channel="chat-2")
        with pytest.raises(BearError, match="cannot send a test message.*email"):
            ws.send_test_notification("#billing", channel="in_app")


# -- a subject says the outcome (issue 16, item 4) -------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "counts", "words"),
    [
        (
            "release_finished",
            {"released": 3},
            "BEAR run 7 (Release): release finished — 3 released",
        ),
        (
            "release_finished",
            {"released": 2, "not_released": 1, "failed_batches": 1},
            "BEAR run 7 (Release): release finished with failures — 2 released, 1 not released",
        ),
        (
            "release_finished",
            {"not_released": 3, "failed_batches": 3},
            "BEAR run 7 (Release): release failed — 0 released, 3 not released",
        ),
        (
            "invoicing_finished",
            {"released": 3, "sales_invoices": 2, "not_passed": 1},
            "BEAR run 7 (Release) finished with failures: 2 sales invoices, 0 credit notes, "
            "1 not passed to accounting",
        ),
        (
            "invoicing_finished",
            {"released": 3, "sales_invoices": 3},
            "BEAR run 7 (Release) finished: 3 sales invoices",
        ),
    ],
)
def test_a_subject_never_reads_as_a_plain_success_when_events_were_left(kind, counts, words):
    from bear.models import RunSummary
    from bear.plugins.messages import compose

    # a stage's notification is written before its run is closed: judged on what it did
    summary = RunSummary(7, "release", "ana", "running", "done", selected=3, **counts)
    subject, text, page = compose(kind, summary)
    assert subject.startswith(words)
    assert summary.outcome in text.splitlines()[0] and summary.outcome in page


def test_a_revert_that_reverted_nothing_is_a_failure_in_its_subject():
    from bear.models import RunSummary
    from bear.plugins.messages import compose

    summary = RunSummary(
        9, "revert", "ana", "completed", "done", selected=2, not_reverted=2, reason="late"
    )
    assert compose("invoicing_finished", summary)[0].startswith(
        "BEAR run 9 (Revert billing) failed: 0 events reverted"
    )
