"""The served dashboard's thread pool: one session's callbacks in order, sessions side by side."""

from __future__ import annotations

import threading
import time
from functools import partial

import pytest
from bokeh.document import Document

from bear.server.pool import SessionPool, install, session_of


@pytest.fixture
def pool():
    pool = SessionPool(4)
    yield pool
    pool.shutdown(wait=True)


def test_a_click_right_after_a_slow_change_of_the_same_session_sees_the_change(pool):
    # what a plain pool got wrong: the typed name was applied on one thread while the click
    # that followed it read the empty box on another
    session = Document()
    box = {"name": ""}

    def change(doc: Document) -> None:
        time.sleep(0.2)
        box["name"] = "Stark by amount"

    def click(doc: Document) -> str:
        return box["name"]

    pool.submit(change, session)
    assert pool.submit(partial(click, session)).result(timeout=5) == "Stark by amount"


def test_each_session_runs_in_submission_order(pool):
    sessions = [Document() for _ in range(3)]
    seen: dict[int, list[int]] = {i: [] for i in range(3)}

    def task(doc: Document, s: int, n: int) -> None:
        time.sleep(0.001 * ((n * 7) % 5))  # uneven durations: a plain pool would reorder them
        seen[s].append(n)

    futures = [pool.submit(task, sessions[s], s, n) for n in range(40) for s in range(3)]
    for f in futures:
        f.result(timeout=10)
    assert all(seen[s] == list(range(40)) for s in range(3))


def test_different_sessions_run_at_once(pool):
    both = threading.Barrier(2, timeout=5)
    done = [pool.submit(lambda doc: both.wait(), Document()) for _ in range(2)]
    for f in done:
        f.result(timeout=5)  # a pool serialising everything would leave the barrier broken


def test_a_failing_callback_is_reported_on_its_future_and_the_session_goes_on(pool):
    session = Document()

    def fail(doc: Document) -> None:
        raise ValueError("boom")

    failed = pool.submit(fail, session)
    after = pool.submit(lambda doc: "after", session)
    with pytest.raises(ValueError, match="boom"):
        failed.result(timeout=5)
    assert after.result(timeout=5) == "after"


def test_work_of_no_session_goes_straight_to_the_pool(pool):
    assert session_of(lambda: None, ()) is None
    assert pool.submit(lambda x: x + 1, 1).result(timeout=5) == 2


def test_the_session_is_found_in_a_partial_as_panel_submits_it():
    doc = Document()
    assert session_of(partial(partial(print, 1), doc), ()) is doc
    assert session_of(print, (1, doc)) is doc


def test_panel_runs_served_callbacks_on_the_session_pool():
    import panel as pn

    before = pn.config.nthreads, pn.state._thread_pool
    try:
        pool = install(2)
        assert pn.state._thread_pool is pool and isinstance(pool, SessionPool)
    finally:
        pn.state._thread_pool.shutdown(wait=False)
        pn.config.nthreads = before[0]
        pn.state._thread_pool = before[1]
