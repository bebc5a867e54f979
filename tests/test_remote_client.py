"""The remote workspace's client side without a server: server URLs, problem documents back to
the same `BearError`, stored tokens (`bear login`'s file) and the wire's lossless tables.
(`tests/browser/test_workspace_parity.py` drives it against a real `bear serve`.)"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import stat

import httpx
import pandas as pd
import pytest

import bear
from bear.errors import AuthError, BearError, InputError, UnknownIdsError
from bear.remote import RemoteWorkspace, credentials, is_url, resolve_token, server_url
from bear.remote.http import error_of
from bear.wire import arrow_bytes, from_arrow_bytes, run_json, run_of

URL = "http://127.0.0.1:5006"


@pytest.mark.parametrize(
    ("given", "key"),
    [
        ("http://127.0.0.1:5006", URL),
        ("http://127.0.0.1:5006/", URL),
        ("http://127.0.0.1:5006/api/v1/", URL),
        ("HTTPS://Bear.Example.com/billing/", "https://bear.example.com/billing"),
        ("http://[::1]:5006", "http://[::1]:5006"),
    ],
)
def test_a_server_is_keyed_by_its_url(given, key):
    assert is_url(given) and server_url(given) == key


@pytest.mark.parametrize("bad", ["ftp://host", "host:5006", "http://", "http://u:pw@host"])
def test_what_is_not_a_server_url_is_refused(bad):
    with pytest.raises(BearError, match="server URL|without a query"):
        server_url(bad)


def _problem(code: int, **body) -> httpx.Response:
    body = {"status": code, **body}
    return httpx.Response(code, json=body, headers={"content-type": "application/problem+json"})


def test_a_problem_document_is_the_same_error_again():
    exc = error_of(
        _problem(422, type="urn:bear:error:InputError", detail="bad 'x'", name="x"),
        URL,
    )
    assert type(exc) is InputError and str(exc) == "bad 'x'" and exc.name == "x"
    assert exc.value is None  # an attribute the document did not carry
    exc = error_of(
        _problem(422, type="urn:bear:error:UnknownIdsError", detail="unknown ids 9", ids=[9]), URL
    )
    assert type(exc) is UnknownIdsError and exc.ids == [9]
    # a type that is not a BearError of this version, and an answer that is no problem document
    exc = error_of(_problem(500, type="urn:bear:error:InternalError", detail="ref 12ab"), URL)
    assert type(exc) is BearError and str(exc) == "ref 12ab"
    exc = error_of(httpx.Response(502, text="<html>Bad Gateway</html>"), URL)
    assert type(exc) is BearError and URL in str(exc) and "502" in str(exc)


def test_the_workspace_raises_what_the_server_answers():
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer secret"
        if request.url.path == "/api/v1/me":
            return httpx.Response(200, json={"name": "ana", "role": "analyst"})
        return _problem(401, type="urn:bear:error:AuthError", detail="token revoked")

    with RemoteWorkspace(URL, "secret", transport=httpx.MockTransport(answer)) as ws:
        assert repr(ws) == f"<bear.RemoteWorkspace {URL!r} as 'ana'>"
        with pytest.raises(AuthError, match="token revoked"):
            ws.runs()
        # arguments are checked here first, as a local workspace checks them
        with pytest.raises(InputError, match="run_id"):
            ws.run("1 OR 1=1")
        with pytest.raises(InputError) as caught:
            ws.events(colour="red")
        assert caught.value.name == "colour"


def test_post_sends_a_run_id_given_as_a_numpy_integer_as_a_run_id():
    """``ws.post(run_id)`` with the id read from a DataFrame (``numpy.int64``) posts that run's
    documents, as the local workspace does; a list of ids stays a list."""
    sent: list[dict] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/me":
            return httpx.Response(200, json={"name": "ana", "role": "analyst"})
        sent.append(json.loads(request.content))
        return _problem(404, type="urn:bear:error:NotFoundError", detail="stop here")

    run_ids = pd.DataFrame({"run_id": [7]})["run_id"]
    with RemoteWorkspace(URL, "secret", transport=httpx.MockTransport(answer)) as ws:
        for given in (run_ids.iloc[0], 7, run_ids.tolist(), run_ids.to_numpy()):
            with pytest.raises(BearError, match="stop here"):
                ws.post(given)
    assert sent == [{"run_id": 7}, {"run_id": 7}, {"document_ids": [7]}, {"document_ids": [7]}]


def test_a_token_belongs_to_a_server_url_not_a_file():
    with pytest.raises(BearError, match="token is for a server"):
        bear.connect(":memory:", token="x")


def test_tokens_are_stored_for_their_owner_only(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.delenv("BEAR_TOKEN", raising=False)
    assert credentials.stored_token(URL) is None
    path = credentials.store_token(URL + "/", "bear_1_abc", "ana")
    assert path == tmp_path / "cfg" / "bear" / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert credentials.stored_token(URL) == "bear_1_abc"
    assert resolve_token(URL) == "bear_1_abc"
    monkeypatch.setenv("BEAR_TOKEN", "from-env")
    assert resolve_token(URL) == "from-env" and resolve_token(URL, "given") == "given"
    assert credentials.forget_token(URL) and not credentials.forget_token(URL)
    assert json.loads(path.read_text()) == {"servers": {}}
    path.write_text("not json")
    with pytest.raises(BearError, match="unreadable"):
        credentials.stored_token(URL)


def test_a_column_of_mixed_values_crosses_the_wire_whole():
    frame = pd.DataFrame(
        {"name": ["a", "b", "c"], "old": [200, [], "text"], "new": [1.5, ["x"], None]}
    )
    back = from_arrow_bytes(arrow_bytes(frame))
    assert back["old"].tolist() == [200, [], "text"]
    assert back["new"].tolist() == [1.5, ["x"], None]
    assert back["name"].tolist() == ["a", "b", "c"]


def test_a_run_crosses_the_wire_with_its_times():
    from bear.models import RunResult

    run = RunResult(
        3,
        "release",
        "ana",
        "completed",
        "done",
        created_at=dt.datetime(2026, 5, 1, 9, 30, 0, 123456),
    )
    assert run_of(json.loads(json.dumps(run_json(run)))) == run


def test_a_preview_crosses_the_wire_as_one_compressed_arrow_stream(demo_ws):
    from bear.wire import preview_arrow, preview_from_arrow

    pv = demo_ws.preview(demo_ws.awaiting_release(), full=True)
    assert pv.ineligible and pv.blast_radius_table.num_rows  # the tables are not empty
    raw = preview_arrow(pv)
    back = preview_from_arrow(raw)
    assert back.counts() == pv.counts()
    assert back.eligible_ids == pv.eligible_ids
    assert back.violations_table.equals(pv.violations_table)
    assert back.blast_radius_table.equals(pv.blast_radius_table)
    pd.testing.assert_frame_equal(back.expected_documents, pv.expected_documents)
    pd.testing.assert_frame_equal(back.by_rule, pv.by_rule)
    assert back.timings == pv.timings
    # money stays exact, and the stream is smaller than its tables
    assert all(isinstance(v, decimal.Decimal) for v in back.expected_documents["total"])
    assert len(raw) < pv.violations_table.nbytes + pv.blast_radius_table.nbytes


def test_an_empty_preview_crosses_the_wire(demo_ws):
    from bear.wire import preview_arrow, preview_from_arrow

    pv = demo_ws.preview([], full=True)
    back = preview_from_arrow(preview_arrow(pv))
    assert back.counts() == pv.counts() and back.eligible_ids == []
    assert back.violations_table.schema == pv.violations_table.schema
