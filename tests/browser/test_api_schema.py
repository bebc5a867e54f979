"""The HTTP API against its own OpenAPI document, fuzzed with schemathesis: no request an
admin can make gets a 5xx, and every response matches the document (issue 14)."""

from __future__ import annotations

import shutil

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from netutil import serving

import bear

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

# No 5xx, and every response as documented. (A request the schema allows may still be refused
# with a 4xx problem document — a date range backwards, an unknown rule id — so schemathesis'
# "positive data accepted" check does not apply.)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def api(demo_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("schema")
    path = folder / "book.duckdb"
    shutil.copy(demo_path, path)
    with bear.connect(path) as ws:
        ws.team.add("admin", "admin", actor="setup")
        _, token = ws.team.create_token("admin", actor="setup")
    with serving(path) as url:
        yield url, token


def test_api_matches_its_document(api):
    url, token = api
    schema = schemathesis.openapi.from_url(f"{url}/api/v1/openapi.json")
    failures = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=10,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],
        )
        def check(case):
            case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)

        try:
            check()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert operations >= 20
    assert not failures, "\n\n".join(failures)
