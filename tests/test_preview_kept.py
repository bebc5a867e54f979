"""A preview of every event of a kind (the dashboard's "select all") is the judgement the
eligibility column keeps: it is reused while the data and settings stay the same, and a
preview that makes it keeps it for the column. Anything narrower is judged afresh."""

from __future__ import annotations

import sys
from typing import Any

import pandas as pd
import pytest

import bear.pipeline  # noqa: F401  (the package exports a function of the module's name)

preview_module = sys.modules["bear.pipeline.preview"]


@pytest.fixture
def judged(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """The stages of every judgement the preview module asks for (the real one runs)."""
    calls: list[tuple[str, ...]] = []
    real = preview_module.judge

    def counting(core: Any, cur: Any, stages: Any, source: str, **kw: Any) -> Any:
        calls.append(tuple(stages))
        return real(core, cur, stages, source, **kw)

    monkeypatch.setattr(preview_module, "judge", counting)
    return calls


def same_preview(a: Any, b: Any) -> None:
    assert a.validated and b.validated
    assert (a.selected, a.eligible_ids) == (b.selected, b.eligible_ids)
    pd.testing.assert_frame_equal(a.violations, b.violations)
    pd.testing.assert_frame_equal(a.expected_documents, b.expected_documents)
    pd.testing.assert_frame_equal(a.blast_radius, b.blast_radius)
    pd.testing.assert_frame_equal(a.by_rule, b.by_rule)


def test_a_preview_of_every_awaiting_event_is_kept_and_reused_until_the_data_changes(
    demo_ws, judged
):
    ws = demo_ws
    everything = ws.awaiting_release()
    fresh = ws.preview(everything)
    assert judged == [("release", "invoice")]
    assert fresh.ineligible > 0 and fresh.eligible > 0
    # the eligibility column needs no judgement of its own now
    assert ws.eligibility_ready("awaiting_release")
    column = ws.eligibility("awaiting_release")
    blocked_ids = set(fresh.violations.query("severity == 'block'").billing_event_id)
    assert set(column["billing_event_id"]) == blocked_ids
    again = ws.preview(everything)
    assert judged == [("release", "invoice")]  # reused
    same_preview(fresh, again)
    # the same events as an id list are recognised as every awaiting event
    listed = ws.preview(everything.ids())
    assert judged == [("release", "invoice")]
    same_preview(fresh, listed)
    # a change to the data: judged afresh, and the change is seen
    blocked = int(fresh.violations.query("rule_id == 'release.not_approved'").iloc[0, 0])
    ws.db.cursor().execute("UPDATE billing_events SET approved = true WHERE id = ?", [blocked])
    ws.core.refresh()
    changed = ws.preview(everything)
    assert judged == [("release", "invoice")] * 2
    assert not (
        (changed.violations.billing_event_id == blocked)
        & (changed.violations.rule_id == "release.not_approved")
    ).any()


def test_the_kept_judgement_is_the_one_a_fresh_preview_makes(demo_path, tmp_path):
    import shutil

    import bear

    path = tmp_path / "book.duckdb"
    shutil.copy(demo_path, path)
    with bear.connect(path, resume=False) as ws:
        ws.eligibility("awaiting_release")  # the dashboard's column, computed first
        kept = ws.preview(ws.awaiting_release(), full=True)
        ws.core.eligibility_cache.clear()
        fresh = ws.preview(ws.awaiting_release(), full=True)
        assert ws.eligibility_ready("awaiting_release")  # and kept again
    same_preview(kept, fresh)


def test_narrower_selections_and_other_actions_are_judged_afresh(demo_ws, judged):
    ws = demo_ws
    ws.eligibility("awaiting_release")
    assert judged == [("release", "invoice")]
    ws.preview(ws.awaiting_release(currency="EUR"))
    ids = ws.awaiting_release().ids()
    ws.preview(ids[:-1])
    ws.preview(ws.awaiting_release(), action="release")  # the release stage alone
    assert judged == [("release", "invoice")] * 3 + [("release",)]


def test_a_kept_judgement_validates_a_selection_above_the_validation_limit(demo_ws, judged):
    ws = demo_ws
    ws.settings.update(validation_limit=10)
    unvalidated = ws.preview(ws.awaiting_release())
    assert not unvalidated.validated and judged == []
    ws.eligibility("awaiting_release")
    kept = ws.preview(ws.awaiting_release())
    assert kept.validated and kept.reason == "" and kept.ineligible > 0
    assert judged == [("release", "invoice")]


def test_every_awaiting_invoice_event_reuses_the_invoice_judgement(demo_ws, judged):
    ws = demo_ws
    pv = ws.preview(ws.awaiting_invoice(), action="invoice")
    assert judged == [("invoice",)]
    assert ws.eligibility_ready("awaiting_invoice")
    same_preview(pv, ws.preview(ws.awaiting_invoice(), action="invoice"))
    assert judged == [("invoice",)]


def test_a_pages_blocked_reasons_are_looked_up_in_one_dict_kept_with_the_judgement(demo_ws, judged):
    """Every grid session reads a page's reasons from the one lookup kept with the kind's
    judgement (not a dict of its own), equal to the eligibility table; bad ids are refused."""
    from bear.errors import InputError

    table = demo_ws.eligibility("awaiting_release")
    ids = [int(i) for i in table["billing_event_id"][:5]]
    free = demo_ws.sql(
        "SELECT min(id) AS i FROM billing_events WHERE NOT released AND id NOT IN "
        "(SELECT unnest($b))",
        b=[int(i) for i in table["billing_event_id"]],
    )["i"][0]
    got = demo_ws.blocked_reasons([*ids, int(free), 10**12])
    expected = {
        int(r.billing_event_id): (str(r.first_message), int(r.reasons))
        for r in table.itertuples()
        if int(r.billing_event_id) in ids
    }
    assert got == expected and len(got) == 5
    verdict = demo_ws.core.eligibility_cache[("awaiting_release", demo_ws.data_version)]
    kept = verdict.conditions["by_id"]
    demo_ws.blocked_reasons(ids[:1])
    assert verdict.conditions["by_id"] is kept and len(judged) == 1  # judged once, built once
    with pytest.raises(InputError, match="ids"):
        demo_ws.blocked_reasons(["one"])
    demo_ws.refresh()  # the data changed: a new judgement, a new lookup
    assert demo_ws.blocked_reasons(ids) == expected and len(judged) == 2


@pytest.mark.parametrize("first", ["column", "preview"])
def test_a_judgement_asked_for_while_it_is_being_made_waits_for_it_rather_than_making_another(
    demo_ws, monkeypatch, first
):
    # The server warms the eligibility as it starts while the first session asks for the same
    # (and that session's Select all → Preview may follow at once): at a million events each
    # extra judgement cost the first page a second of the machine's two cores.
    import threading
    import time

    calls: list[str] = []
    real = preview_module.judge

    def slow(core: Any, cur: Any, stages: Any, source: str, **kw: Any) -> Any:
        calls.append(source)
        time.sleep(0.5)  # long enough for every other caller to arrive meanwhile
        return real(core, cur, stages, source, **kw)

    monkeypatch.setattr(preview_module, "judge", slow)
    ws = demo_ws
    start = threading.Barrier(3, timeout=10)
    out: dict[str, Any] = {}

    def column(name: str) -> None:
        start.wait()
        if first == "preview":
            time.sleep(0.1)  # after the preview's judgement has begun
        out[name] = ws.eligibility("awaiting_release")

    def select_all_preview() -> None:
        start.wait()
        if first == "column":
            time.sleep(0.1)  # after the column's judgement has begun
        out["preview"] = ws.preview(ws.awaiting_release())

    threads = [
        threading.Thread(target=column, args=("warm",)),
        threading.Thread(target=column, args=("session",)),
        threading.Thread(target=select_all_preview),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert calls == ["_el_ids" if first == "column" else "_pv_ids"]  # one, shared by all three
    pd.testing.assert_frame_equal(out["warm"], out["session"])
    blocked = set(out["preview"].violations.query("severity == 'block'").billing_event_id)
    assert blocked == set(out["warm"]["billing_event_id"])


def test_the_filter_choices_are_read_once_per_data_version_and_each_caller_gets_a_copy(
    demo_ws, monkeypatch
):
    """Every new dashboard session asks for the filters' choices (10,000 projects at a
    million events); they are read once until the data changes."""
    import bear.reading

    reads: list[int] = []
    real = bear.reading.q_events.filter_options

    def counting(cur: Any, block: Any) -> Any:
        reads.append(1)
        return real(cur, block)

    monkeypatch.setattr(bear.reading.q_events, "filter_options", counting)
    ws = demo_ws
    first = ws.filter_options()
    projects = dict(first["project"])
    first["project"].clear()  # a caller changing its copy changes nobody else's
    first["region"].append("nowhere")
    second = ws.filter_options()
    assert len(reads) == 1
    assert second["project"] == projects and "nowhere" not in second["region"]
    # a project added and the book told (as every writer of BEAR does): read again
    with ws.db.transaction() as tx:
        tx.execute(
            "INSERT INTO projects SELECT * REPLACE (id + 1000000 AS id, 'Zebra works' AS name) "
            "FROM projects LIMIT 1"
        )
    ws.refresh()
    third = ws.filter_options()
    assert len(reads) == 2
    assert "Zebra works" in third["project"]
