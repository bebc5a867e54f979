"""The page comes first: the server's start-up warm-up waits for dashboard pages being drawn,
and a served session's own background work waits for its page to be shown."""

from __future__ import annotations

import threading
import time

from bear.server.warm import Pages, warm_when_quiet
from bear.ui.components import AfterShown


def test_the_warm_up_waits_for_the_pages_being_drawn_then_judges_every_awaiting_event(demo_ws):
    pages = Pages()
    drawn = pages.begin()  # a first visitor's page, being built
    listening = threading.Event()
    warm = threading.Thread(
        target=warm_when_quiet, args=(demo_ws, pages, listening.is_set), kwargs={"settle": 0}
    )
    warm.start()
    time.sleep(0.3)
    assert not demo_ws.eligibility_ready("awaiting_release")  # not listening yet
    listening.set()
    time.sleep(0.3)
    assert warm.is_alive() and not demo_ws.eligibility_ready("awaiting_release")  # page first
    assert pages.loading == 1
    drawn()
    drawn()  # a page reported twice (drawn, then closed) counts once
    warm.join(timeout=30)
    assert pages.loading == 0
    assert demo_ws.eligibility_ready("awaiting_release")


def test_a_page_that_never_reports_back_only_delays_the_warm_up(demo_ws, monkeypatch):
    import bear.server.warm as warm_module

    monkeypatch.setattr(warm_module, "LIMIT_S", 0.5)
    pages = Pages()
    pages.begin()  # never drawn, never closed
    t0 = time.monotonic()
    warm_when_quiet(demo_ws, pages, lambda: True, settle=0)
    assert time.monotonic() - t0 < 20
    assert demo_ws.eligibility_ready("awaiting_release")


def test_a_warm_up_that_fails_is_logged_and_a_session_computes_it_itself(demo_ws):
    demo_ws.close()  # the book closing under it
    warm_when_quiet(demo_ws, Pages(), lambda: True, settle=0)  # no exception escapes


def test_a_sessions_background_work_waits_for_its_page_to_be_shown():
    ran: list[str] = []
    after = AfterShown(lambda fn: fn(), timeout=30)
    after(lambda: ran.append("ineligible count"))
    after(lambda: ran.append("choices"))
    assert ran == []
    after.shown()
    assert ran == ["ineligible count", "choices"]
    after(lambda: ran.append("later"))  # once shown, at once
    after.shown()  # idempotent
    assert ran == ["ineligible count", "choices", "later"]


def test_a_page_the_browser_never_reports_shown_gets_its_work_done_after_a_timeout():
    ran = threading.Event()
    after = AfterShown(lambda fn: fn(), timeout=0.2)
    after(ran.set)
    assert ran.wait(5)


def test_the_server_rehearses_a_page_before_it_listens_and_lets_it_go(demo_ws, monkeypatch):
    # A process's first page cost more than the next (modules Panel and pandas import on first
    # use, page templates compiled): the first visitor after a start paid it. ``bear serve``
    # builds one page before it listens; the page must leave nothing behind.
    from panel.io.state import state

    from bear.ui.dashboard import Page
    from bear.ui.server import rehearse

    built = []
    real = Page._init_doc

    def recording(self, doc=None, *args, **kwargs):
        built.append(doc)
        return real(self, doc, *args, **kwargs)

    monkeypatch.setattr(Page, "_init_doc", recording)

    def held():  # (Panel keeps each ended page's root id in a list of strings, a real one too)
        return (
            len(state._views),
            len(state._templates),
            len(state._locations),
            len(state._indicators),
        )

    before, version = held(), demo_ws.data_version
    rehearse(demo_ws, "ana@example.com")
    assert len(built) == 1 and built[0].roots  # a whole page was built
    assert held() == before  # and let go, as a finished session's page is
    assert not built[0].session_destroyed_callbacks
    # its background work (judging every awaiting event) is the warm-up's, after it listens
    assert not demo_ws.eligibility_ready("awaiting_release")
    assert demo_ws.data_version == version


def test_a_rehearsal_that_fails_is_silent(tmp_path):
    import bear
    from bear.ui.server import rehearse

    ws = bear.connect(tmp_path / "closed.duckdb")
    ws.close()
    rehearse(ws, "ana@example.com")  # the first real page reports whatever is wrong
