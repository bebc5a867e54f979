"""One workspace API, two doors: the same tests against a local book and the same book served
by `bear serve` and opened with `bear.connect(url, token=...)` (DESIGN §4, §7).

Each run of the module works on two equal copies of the demo book: ``ws``, the workspace
under test (local, or remote through a real `bear serve` subprocess), and ``ref``, a local
workspace over the other copy. Every read is compared with ``ref`` frame for frame (values
and dtypes: ``Decimal`` money, integer ids), every write is done on both, so the two books
stay equal whatever order the tests run in. No browser is needed; the module lives here for
the ``serving`` helper.
"""

from __future__ import annotations

import decimal
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pytest
from netutil import serving

import bear
from bear.errors import (
    AuthError,
    BearError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
    QueryError,
    SettingError,
    UnknownIdsError,
)
from bear.models import Preview, RunResult
from bear.selection import Selection

PASSWORD = "correct horse battery"


@dataclass
class Book:
    kind: str
    ws: Any
    ref: Any
    url: str | None = None
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def remote(self) -> bool:
        return self.kind == "remote"


@pytest.fixture(scope="module", params=["local", "remote"])
def book(request, demo_path, tmp_path_factory) -> Iterator[Book]:
    folder = tmp_path_factory.mktemp(f"parity-{request.param}")
    path, ref_path = folder / "book.duckdb", folder / "reference.duckdb"
    shutil.copy(demo_path, path)
    shutil.copy(demo_path, ref_path)
    # the server loads no entry-point plugins (serving()); neither do the local books here
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BEAR_DISABLE_PLUGIN_AUTOLOAD", "1")
        ref = bear.connect(ref_path)
        try:
            if request.param == "local":
                with bear.connect(path) as ws:
                    yield Book("local", ws, ref)
                return
            with bear.connect(path) as setup:
                team = setup.team
                team.add("admin", "admin", actor="setup", password=PASSWORD)
                team.add("ana", "analyst", actor="setup", password=PASSWORD)
                team.add("vic", "viewer", actor="setup", password=PASSWORD)
                tokens = {
                    n: team.create_token(n, actor="setup")[1] for n in ("admin", "ana", "vic")
                }
            with serving(path) as url, bear.connect(url, token=tokens["admin"]) as ws:
                yield Book("remote", ws, ref, url, tokens)
        finally:
            ref.close()


def error_of(fn: Callable[[], Any]) -> BearError:
    with pytest.raises(BearError) as caught:
        fn()
    return caught.value


def same_error(book: Book, call: Callable[[Any], Any], cls: type[BearError]) -> BearError:
    """``call`` raises the same error (class, message) on the book under test and locally."""
    got, want = error_of(lambda: call(book.ws)), error_of(lambda: call(book.ref))
    assert type(got) is type(want) is cls
    assert str(got) == str(want)
    return got


def frames_equal(got: pd.DataFrame, want: pd.DataFrame, *, skip: tuple[str, ...] = ()) -> None:
    """Equal values and dtypes; ``skip`` names columns that may differ (times, authors)."""
    keep = [c for c in want.columns if c not in skip]
    assert list(got.columns) == list(want.columns)
    pd.testing.assert_frame_equal(got[keep], want[keep])


AUTHORS = ("requested_by", "started_by")  # the token's user remotely, `user=` locally


def times(frame: pd.DataFrame) -> tuple[str, ...]:
    """Columns of times and durations (and of who started it, see ``AUTHORS``)."""
    return tuple(
        c
        for c in frame.columns
        if c.endswith("_at") or "time" in c or "second" in c or c in AUTHORS
    )


def test_the_workspace_is_local_or_remote(book):
    assert isinstance(book.ws, bear.Workspace) != book.remote
    if book.remote:
        assert book.ws.me()["name"] == "admin"
        assert book.url in repr(book.ws)


# -- selections --------------------------------------------------------------------------------
FILTER_SETS = [
    {},
    {"currency": "EUR"},
    {"currency": ["GBP", "USD"], "min_amount": "1000.50"},
    {"date_from": "2026-01-01", "search": "Acme"},
    {"eligibility": "eligible"},
    {"eligibility": "ineligible", "category": "expense"},
]


@pytest.mark.parametrize("filters", FILTER_SETS, ids=lambda f: ",".join(f) or "none")
def test_filters_and_counts_match(book, filters):
    for kind in ("awaiting_release", "awaiting_invoice", "events"):
        got, want = getattr(book.ws, kind)(**filters), getattr(book.ref, kind)(**filters)
        assert isinstance(got, Selection)
        assert len(got) == got.count() == len(want)
        assert got.ids() == want.ids()
        assert got.describe() == want.describe()
    narrower = book.ws.awaiting_release(**filters).refine(currency="EUR")
    assert narrower.ids() == book.ref.awaiting_release(**filters).refine(currency="EUR").ids()


def test_a_page_is_the_same_frame_with_exact_types(book):
    sort = [("summary_amount", "desc"), ("event_date", "asc")]
    got = book.ws.awaiting_release(currency="EUR").page(10, 25, sort)
    want = book.ref.awaiting_release(currency="EUR").page(10, 25, sort)
    frames_equal(got, want)
    assert dict(got.dtypes) == dict(want.dtypes)
    assert len(got) == 25 and got["id"].dtype.kind == "i"
    assert all(isinstance(v, decimal.Decimal) for v in got["summary_amount"])
    assert list(got["summary_amount"]) == sorted(got["summary_amount"], reverse=True)


def test_totals_match_with_decimal_amounts(book):
    got, want = book.ws.awaiting_release().totals(), book.ref.awaiting_release().totals()
    frames_equal(got, want)
    assert all(isinstance(v, decimal.Decimal) for v in got["amount"])


def test_a_bad_filter_is_an_input_error_naming_it(book):
    err = same_error(book, lambda w: w.awaiting_release(colour="red"), InputError)
    assert err.name == "colour" and "colour" in str(err)
    err = same_error(book, lambda w: w.events(min_amount="lots"), InputError)
    assert err.name == "min_amount"
    # checked by the server's core: an unknown sort column, unknown ids
    err = same_error(book, lambda w: w.events().page(0, 5, [("colour", "asc")]), QueryError)
    assert "colour" in str(err)
    err = same_error(book, lambda w: w.preview([1, 2, 987_654_321]), UnknownIdsError)
    assert err.ids == [987_654_321]


# -- preview -----------------------------------------------------------------------------------
@pytest.mark.parametrize("action", ["release_and_invoice", "release", "invoice"])
def test_preview_matches(book, action):
    kind = "awaiting_invoice" if action == "invoice" else "awaiting_release"
    got = book.ws.preview(getattr(book.ws, kind)(currency="GBP"), action=action)
    want = book.ref.preview(getattr(book.ref, kind)(currency="GBP"), action=action)
    assert isinstance(got, Preview)
    assert (got.action, got.selected, got.validated, got.reason) == (
        want.action,
        want.selected,
        want.validated,
        want.reason,
    )
    assert got.eligible_ids == want.eligible_ids
    assert got.releasable == want.releasable
    frames_equal(got.violations, want.violations)
    frames_equal(got.by_rule, want.by_rule)
    frames_equal(got.expected_documents, want.expected_documents)
    frames_equal(got.blast_radius, want.blast_radius)


def test_preview_of_an_id_list_matches(book):
    ids = book.ref.awaiting_release(currency="USD").ids()[:40]
    got, want = book.ws.preview(ids), book.ref.preview(ids)
    assert got.selected == want.selected == 40
    assert got.eligible_ids == want.eligible_ids and got.ineligible == want.ineligible
    frames_equal(got.violations, want.violations)


# -- runs and what they left -------------------------------------------------------------------
def _run_on_both(book: Book, action: str, ids: list[int], **kw: Any) -> tuple[Any, Any]:
    got = getattr(book.ws, action)(ids, user="ana@example.com", **kw)
    want = getattr(book.ref, action)(ids, user="ana@example.com", **kw)
    return got, want


def test_release_and_invoice_and_its_records_match(book):
    ids = book.ref.awaiting_release(currency="GBP", eligibility="eligible").ids()[:15]
    got, want = _run_on_both(book, "release_and_invoice", ids, wait=True, timeout=120)
    assert isinstance(got, RunResult)
    assert got.status == want.status == "completed"
    counts = ("id", "action", "released", "not_released", "sales_invoices", "credit_notes")
    assert [getattr(got, k) for k in counts] == [getattr(want, k) for k in counts]
    assert got.released == 15 and got.process_run_id == want.process_run_id
    assert book.ws.run(got.id) == got
    want_runs = book.ref.runs()
    skip = times(want_runs)
    frames_equal(book.ws.runs(), want_runs, skip=skip)
    frames_equal(book.ws.runs(limit=1), book.ref.runs(limit=1), skip=skip)
    for read in (
        lambda w: w.release_batches(got.id),
        lambda w: w.process_runs(got.id),
        lambda w: w.process_runs(),
        lambda w: w.process_logs(got.process_run_id),
        lambda w: w.process_logs(got.process_run_id, status="OK"),
        lambda w: w.documents(run_id=got.id),
        lambda w: w.documents(limit=3),
        lambda w: w.app_logs(run_id=got.id),
        lambda w: w.app_logs(limit=5),
    ):
        want_frame = read(book.ref)
        frames_equal(read(book.ws), want_frame, skip=times(want_frame))
    docs = book.ws.documents(run_id=got.id)
    assert len(docs) == got.sales_invoices + got.credit_notes
    assert all(isinstance(v, decimal.Decimal) for v in docs["total"])
    first = int(docs["id"].min())
    frames_equal(book.ws.document_lines(first), book.ref.document_lines(first))
    # who is notified depends on who started the run (an e-mail address, or a user), and
    # the delivery on the process; what a notification records does not
    got_notes = book.ws.notifications(run_id=got.id)
    assert list(got_notes.columns) == list(book.ref.notifications(got.id).columns)
    assert len(got_notes) >= 1 and set(got_notes["run_id"]) == {got.id}


def test_a_run_without_waiting_returns_a_handle(book):
    ids = book.ref.awaiting_release(currency="USD", eligibility="eligible").ids()[:6]
    got, want = _run_on_both(book, "release", ids, wait=False)
    assert got.id == want.id
    done, want_done = got.wait(120), want.wait(120)
    assert done.status == want_done.status == "completed"
    assert (done.released, done.sales_invoices) == (want_done.released, want_done.sales_invoices)
    assert got.result().status == "completed"
    # then invoice the same events, queued through queue()
    handle = book.ws.queue("invoice", ids, "ana@example.com")
    want_handle = book.ref.queue("invoice", ids, "ana@example.com")
    assert handle.wait(120).sales_invoices == want_handle.wait(120).sales_invoices


def test_a_runs_outcome_is_the_same_through_both_doors(book):
    """A run that leaves events behind says so alike: ``run.outcome``, ``ws.runs()``'s
    outcome column, and (remotely) the run JSON's ``outcome`` beside its ``status``."""
    # picked with SQL: an eligibility filter would judge (and time) the rules on one book only
    pick = (
        "SELECT id FROM billing_events WHERE NOT released AND currency = 'EUR' AND id {} "
        "(SELECT billing_event_id FROM demo_expectations WHERE rule_id = $r) ORDER BY id LIMIT $n"
    )
    blocked = book.ref.sql(pick.format("IN"), r="release.not_approved", n=1)["id"].tolist()
    eligible = book.ref.sql(pick.replace("= $r", "IS NOT NULL").format("NOT IN"), n=2)[
        "id"
    ].tolist()
    got, want = _run_on_both(book, "release", sorted(eligible + blocked), wait=True, timeout=120)
    assert got.status == want.status == "completed"
    assert got.outcome == want.outcome == "completed with failures"
    assert got.shortfall == want.shortfall == "1 not released"
    assert book.ws.run(got.id).outcome == "completed with failures"
    want_runs = book.ref.runs()
    frames_equal(book.ws.runs(), want_runs, skip=times(want_runs))
    assert book.ws.runs(limit=1)["outcome"].tolist() == ["completed with failures"]
    if book.remote:
        raw = book.ws._http.json("GET", f"/runs/{got.id}")
        assert (raw["status"], raw["outcome"]) == ("completed", "completed with failures")


def test_filter_options_match(book):
    got, want = book.ws.filter_options(), book.ref.filter_options()
    assert got == want and got["currency"] == ["EUR", "GBP", "USD"]


def test_cancelling_a_finished_run_is_refused_alike(book):
    run_id = int(book.ref.runs()["id"].max()) if len(book.ref.runs()) else None
    if run_id is None:
        ids = book.ref.awaiting_release(currency="EUR", eligibility="eligible").ids()[:3]
        got, _ = _run_on_both(book, "release", ids, wait=True, timeout=120)
        run_id = got.id
    err = same_error(book, lambda w: w.cancel(run_id), BearError)
    assert "already finished" in str(err)


def test_an_unknown_run_is_not_found(book):
    err = same_error(book, lambda w: w.run(987_654), NotFoundError)
    assert "987654" in str(err)
    same_error(book, lambda w: w.cancel(987_654), NotFoundError)
    same_error(book, lambda w: w.run(0), InputError)


# -- settings, rules, SQL ----------------------------------------------------------------------
def test_settings_read_and_update(book):
    s, r = book.ws.settings, book.ref.settings
    assert s.release_batch_size == r.release_batch_size
    assert s.as_dict() == r.as_dict()
    assert [(d["name"], d["value"], d["default"]) for d in s.describe()] == [
        (d["name"], d["value"], d["default"]) for d in r.describe()
    ]
    new = r.release_batch_size + 7
    assert s.update(release_batch_size=new) == r.update(release_batch_size=new)
    assert s.release_batch_size == new
    history = s.history("release_batch_size", limit=1)
    frames_equal(history, r.history("release_batch_size", limit=1), skip=("changed_at", "actor"))
    assert history["actor"][0] == ("admin" if book.remote else "local")
    err = same_error(book, lambda w: w.settings.update(release_batch_size=0), SettingError)
    assert err.name == "release_batch_size"
    assert s.release_batch_size == new


def test_rules_match(book):
    want = book.ref.rules()
    frames_equal(book.ws.rules(), want, skip=times(want))


def test_sql_reads_and_refuses_writes_alike(book):
    query = "SELECT id, currency, summary_amount FROM billing_events WHERE id <= $n ORDER BY id"
    frames_equal(book.ws.sql(query, n=20), book.ref.sql(query, n=20))
    err = same_error(book, lambda w: w.sql("DELETE FROM billing_events"), QueryError)
    assert "read-only" in str(err)
    same_error(book, lambda w: w.sql("SELECT nope FROM billing_events"), QueryError)


# -- remote only: who may do what, and who did it ---------------------------------------------
remote_only = pytest.mark.parametrize("book", ["remote"], indirect=True)


@remote_only
def test_a_viewer_may_read_but_not_release(book):
    with bear.connect(book.url, token=book.tokens["vic"]) as vic:
        assert vic.me()["role"] == "viewer"
        assert len(vic.awaiting_release()) == len(book.ref.awaiting_release())
        ids = vic.awaiting_release(eligibility="eligible").ids()[:2]
        err = error_of(lambda: vic.release(ids, user="vic"))
        assert isinstance(err, PermissionDeniedError)
        assert "vic (viewer) may not run" in str(err)
        assert isinstance(error_of(lambda: vic.preview(ids)), PermissionDeniedError)
        assert isinstance(
            error_of(lambda: vic.settings.update(release_batch_size=10)), PermissionDeniedError
        )


@remote_only
def test_a_bad_token_is_an_auth_error(book, monkeypatch):
    err = error_of(lambda: bear.connect(book.url, token="bear_9_" + "x" * 43))
    assert isinstance(err, AuthError)
    monkeypatch.delenv("BEAR_TOKEN", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(book.ref.path) + ".nowhere")
    assert isinstance(error_of(lambda: bear.connect(book.url)), AuthError)
    monkeypatch.setenv("BEAR_TOKEN", book.tokens["vic"])
    with bear.connect(book.url) as vic:  # the token from $BEAR_TOKEN
        assert vic.me()["name"] == "vic"


@remote_only
def test_a_run_is_recorded_as_the_tokens_user(book):
    ids = book.ref.awaiting_release(currency="EUR", eligibility="eligible").ids()[:4]
    with bear.connect(book.url, token=book.tokens["ana"]) as ana:
        run = ana.release_and_invoice(ids, user="someone.else@example.com", timeout=120)
    book.ref.release_and_invoice(ids, user="ana", timeout=120)  # the books stay equal
    assert run.status == "completed" and run.requested_by == "ana"
    assert book.ws.runs(limit=1)["requested_by"][0] == "ana"


def test_an_unreachable_server_is_named():
    from netutil import free_port

    url = f"http://127.0.0.1:{free_port()}"
    err = error_of(lambda: bear.connect(url, token="bear_1_" + "x" * 43))
    assert type(err) is BearError and url in str(err)


# -- revert billing (DESIGN §8) ------------------------------------------------------------------
def test_post_revert_and_history_match(book):
    ids = book.ref.awaiting_release(currency="GBP", eligibility="eligible").ids()[-6:]
    got, want = _run_on_both(book, "release_and_invoice", ids, wait=True, timeout=120)
    assert got.status == want.status == "completed" and got.sales_invoices + got.credit_notes
    docs = book.ref.documents(run_id=want.id)
    first_two = [int(i) for i in docs["id"][:2]]
    posted = book.ws.post(first_two, user="ana@example.com")
    want_posted = book.ref.post(first_two, user="ana@example.com")
    frames_equal(posted, want_posted, skip=("posted_at", "posted_by"))
    assert set(posted["status"]) == {"complete"}
    # posting twice is refused alike, naming the document
    err = same_error(book, lambda w: w.post(first_two[:1]), BearError)
    assert "is complete" in str(err)
    same_error(book, lambda w: w.post([987_654_321]), NotFoundError)
    pv_got, pv_want = book.ws.preview(ids, action="revert"), book.ref.preview(ids, action="revert")
    assert pv_got.eligible_ids == pv_want.eligible_ids
    frames_equal(pv_got.expected_documents, pv_want.expected_documents)
    frames_equal(pv_got.violations, pv_want.violations)
    got = book.ws.revert(ids, reason="wrong hours", user="ana@example.com", timeout=120)
    want = book.ref.revert(ids, reason="wrong hours", user="ana@example.com", timeout=120)
    counts = ("id", "action", "reason", "reverted", "discarded", "credit_notes", "sales_invoices")
    assert [getattr(got, k) for k in counts] == [getattr(want, k) for k in counts]
    assert got.reverted == 6 and got.discarded == len(docs) - 2
    assert got.credit_notes + got.sales_invoices == 2
    for read in (
        lambda w: w.documents(run_id=got.id),
        lambda w: w.documents(run_id=want.id - 1),
        lambda w: w.app_logs(run_id=got.id),
        lambda w: w.history(ids[0]),
        lambda w: w.released(currency="GBP").page(0, 5),
    ):
        want_frame = read(book.ref)
        frames_equal(read(book.ws), want_frame, skip=times(want_frame) + ("actor", "posted_by"))
    # the remote user is the token's user; a viewer may not revert, the reason is required
    same_error(book, lambda w: w.revert(ids, reason="  ", user="ana"), BearError)
    if book.remote:
        assert book.ws.run(got.id).requested_by == "admin"
        with bear.connect(book.url, token=book.tokens["vic"]) as vic:
            with pytest.raises(PermissionDeniedError):
                vic.revert(ids, reason="no", user="vic")
            with pytest.raises(PermissionDeniedError):
                vic.post([1])
