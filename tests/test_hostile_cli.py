"""Hostile input: every number is range-checked before SQL, every file flag fails clearly, and
no traceback ever reaches a user of ``bear``.

The CLI cases are real subprocesses against one small seeded book (200 events) per module;
each must exit with status 2, say on stderr which input is wrong, print no traceback, and —
for commands that write — leave every table as it was. The Python cases check that the
workspace raises ``InputError`` (a ``BearError``) naming the argument and its allowed range,
where it used to raise ``ValueError`` or DuckDB's ``ConversionException``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

import bear
from bear.errors import BearError, InputError
from bear.queries import AppLogQuery, bounds
from bear.testing import make_workspace

ROOT = Path(__file__).resolve().parents[1]
AMOUNT_RANGE = "allowed -9999999999999999.99 to 9999999999999999.99"
ID_RANGE = "allowed 1 to 9223372036854775807"
USER = "ana@example.com"


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded book of 200 events, shared by the module (no case may change it)."""
    path = tmp_path_factory.mktemp("hostile-cli") / "book.duckdb"
    with bear.connect(path) as ws:
        bear.demo.seed(ws, events=200, seed=7)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Hostile files the cases name: a folder, an injection, binary garbage, a huge id, an
    existing file given as an export folder, and a path that does not exist."""
    d = tmp_path_factory.mktemp("hostile-files")
    (d / "folder").mkdir()
    (d / "injection.txt").write_text("1 OR 1=1\n")
    (d / "garbage.bin").write_bytes(b"\xff\xfe\x00\x81\x1b[31mgarbage\n\x00\x00")
    (d / "huge.txt").write_text("1\n99999999999999999999\n")
    (d / "existing").write_text("keep me\n")
    return {
        "folder": d / "folder",
        "injection": d / "injection.txt",
        "garbage": d / "garbage.bin",
        "huge": d / "huge.txt",
        "existing": d / "existing",
        "missing": d / "missing.txt",
        "missing_csv": d / "missing.csv",
    }


def _bear(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bear.cli", *args],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
        check=False,
    )


def _tables(path: Path) -> dict[str, tuple[int, int]]:
    """(rows, content hash) of every table of the book, read without opening a workspace."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        names = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE NOT temporary ORDER BY 1"
            ).fetchall()
        ]
        return {
            t: tuple(
                con.execute(f'SELECT count(*), coalesce(sum(hash(t)), 0) FROM "{t}" t').fetchall()[
                    0
                ]
            )
            for t in names
        }
    finally:
        con.close()


# (args, words the error line names, whether the command would write)
CASES: dict[str, tuple[list[str], list[str], bool]] = {
    "min-amount-1e400": (["events", "--min-amount", "1e400"], ["min_amount", "1e400"], False),
    "max-amount-40-digits": (
        ["events", "--max-amount", "1" * 40],
        ["max_amount", "1" * 40, AMOUNT_RANGE],
        False,
    ),
    "min-amount-nan": (["events", "--min-amount", "nan"], ["min_amount", "nan"], False),
    "min-amount-inf": (["events", "--min-amount", "inf"], ["min_amount", "inf"], False),
    "min-amount-text": (["events", "--min-amount", "abc"], ["min_amount", "'abc'"], False),
    "company-negative": (["events", "--company", "-1"], ["company", "-1", ID_RANGE], False),
    "company-too-big": (
        ["events", "--company", "99999999999999999999999"],
        ["company", "99999999999999999999999", "out of range"],
        False,
    ),
    "ids-file-missing": (
        ["events", "--ids-file", "{missing}"],
        ["ids file", "missing.txt", "no such file"],
        False,
    ),
    "ids-file-folder": (
        ["events", "--ids-file", "{folder}"],
        ["ids file", "folder", "not a file"],
        False,
    ),
    "ids-file-injection": (
        ["events", "--ids-file", "{injection}"],
        ["injection.txt", "line 1", "'1 OR 1=1'", "not a billing event id"],
        False,
    ),
    "ids-file-binary": (
        ["events", "--ids-file", "{garbage}"],
        ["garbage.bin", "not UTF-8 text"],
        False,
    ),
    "ids-file-device": (
        ["events", "--ids-file", "/dev/zero"],
        ["/dev/zero", "not a regular file"],
        False,
    ),
    "date-impossible": (["events", "--from", "2024-13-45"], ["date_from", "2024-13-45"], False),
    "offset-negative": (["events", "--offset", "-5"], ["offset", "-5", "allowed 0"], False),
    "limit-huge": (
        ["events", "--limit", "10000000000"],
        ["limit", "10000000000", "allowed 1 to 10000"],
        False,
    ),
    "preview-bad-filter": (
        ["preview", "--min-amount", "1e400"],
        ["min_amount", AMOUNT_RANGE],
        True,
    ),
    "preview-huge-id": (
        ["preview", "--ids-file", "{huge}"],
        ["99999999999999999999", "not a billing event id"],
        True,
    ),
    "run-release-bad-filter": (
        ["run", "release", "--user", USER, "--max-amount=-1e400"],
        ["max_amount", AMOUNT_RANGE],
        True,
    ),
    "run-show-huge-id": (
        ["run", "show", "99999999999999999999"],
        ["run_id", "99999999999999999999", ID_RANGE],
        False,
    ),
    "run-cancel-zero": (["run", "cancel", "0"], ["run_id", "0", ID_RANGE], True),
    "runs-limit-negative": (["runs", "--limit", "-1"], ["limit", "-1", "allowed 0"], False),
    "import-missing-file": (
        ["import", "--events", "{missing_csv}"],
        ["missing.csv", "file not found"],
        True,
    ),
    "export-out-is-a-file": (
        ["export", "--out", "{existing}"],
        ["existing", "is a file, not a folder"],
        True,
    ),
    "setting-out-of-range": (
        ["settings", "set", "release_batch_size=1e400"],
        ["release_batch_size", "1e400"],
        True,
    ),
    "setting-unknown": (["settings", "set", "nosuch=1"], ["nosuch"], True),
    "serve-port-out-of-range": (["serve", "--port", "99999"], ["port", "99999", "65535"], False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_cli_input_is_refused_plainly(book: Path, files: dict[str, Path], case: str):
    args, words, writes = CASES[case]
    before = _tables(book) if writes else None
    args = [a.format(**{k: str(v) for k, v in files.items()}) for a in args]
    proc = _bear(*args, "--db", str(book))
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = proc.stderr.strip().splitlines()
    # one line (argparse adds its usage lines above its own error line)
    errors = [ln for ln in lines if ln.startswith("error: ") or ": error: " in ln]
    assert len(errors) == 1 and len(lines) <= 8, proc.stderr
    for w in words:
        assert w in errors[0] or (case.startswith("import") and w in proc.stderr), (w, proc.stderr)
    # no control character of a hostile file reaches the terminal
    assert "\x1b" not in proc.stderr and "\x00" not in proc.stderr
    if writes:
        assert _tables(book) == before
    assert files["existing"].read_text() == "keep me\n"


# -- the same bounds through the Python API ------------------------------------------------------
@pytest.fixture(scope="module")
def ws():
    w = make_workspace([{"id": 1, "summary_amount": Decimal("-12.50")}, {"id": 2}])
    yield w
    w.close()


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda ws: ws.document_lines("1 OR 1=1"), ["document_id", "'1 OR 1=1'", ID_RANGE]),
        (lambda ws: ws.document_lines(10**30), ["document_id", "out of range", ID_RANGE]),
        (lambda ws: ws.run(10**20), ["run_id", ID_RANGE]),
        (lambda ws: ws.run("7; DROP TABLE runs"), ["run_id", "not a whole number"]),
        (lambda ws: ws.cancel(-1), ["run_id", ID_RANGE]),
        (lambda ws: ws.release_batches(0), ["run_id", ID_RANGE]),
        (lambda ws: ws.process_logs(2**63), ["process_run_id", ID_RANGE]),
        (lambda ws: ws.app_logs(run_id=1.5), ["run_id", "not a whole number"]),
        (lambda ws: ws.documents(run_id=-3), ["run_id", ID_RANGE]),
        (lambda ws: ws.notifications(run_id=0), ["run_id", ID_RANGE]),
        (lambda ws: ws.inbox("ana", after_id=-1), ["after_id", "allowed 0"]),
        (lambda ws: ws.inbox("ana", limit=10**9), ["limit", "allowed 0 to 10000"]),
        (lambda ws: ws.runs(limit=-1), ["limit", "allowed 0"]),
        (lambda ws: ws.page(ws.events(), offset=2**64), ["offset", "out of range"]),
        (lambda ws: ws.export(ws.events(), limit=-1), ["limit", "allowed 0"]),
        (lambda ws: ws.mark_notifications_read("ana", [0]), ["ids", ID_RANGE]),
        (lambda ws: AppLogQuery(run_id="1 OR 1=1"), ["run_id", "not a whole number"]),
        (lambda ws: ws.events(company=2**63), ["company", ID_RANGE]),
        (lambda ws: ws.events(ids=[1, -2]), ["ids", "-2", ID_RANGE]),
        (lambda ws: ws.events(exclude_ids=["1 OR 1=1"]), ["exclude_ids", "not a whole number"]),
    ],
)
def test_numbers_are_bounded_before_sql(ws: Any, call: Any, words: list[str]) -> None:
    with pytest.raises(InputError) as err:
        call(ws)
    assert isinstance(err.value, BearError) and not isinstance(err.value, ValueError)
    for w in words:
        assert w in str(err.value), (w, str(err.value))


@pytest.mark.parametrize(
    "value",
    [Decimal("1e400"), "1" * 40, float("nan"), float("inf"), -float("inf"), Decimal("-1e16")],
)
@pytest.mark.parametrize("name", ["min_amount", "max_amount"])
def test_amount_filters_name_their_range(ws: Any, name: str, value: Any) -> None:
    with pytest.raises(InputError, match=AMOUNT_RANGE) as err:
        ws.awaiting_release(**{name: value})
    assert err.value.name == name and name in str(err.value)


def test_the_bounds_themselves_reach_sql_safely(ws: Any) -> None:
    """The extreme allowed values are accepted and compared in SQL without an error."""
    assert bounds.AMOUNT_MAX == Decimal("9999999999999999.99") == -bounds.AMOUNT_MIN
    assert len(ws.awaiting_release(min_amount=bounds.AMOUNT_MIN)) == 2
    assert len(ws.awaiting_release(max_amount=bounds.AMOUNT_MAX)) == 2
    assert len(ws.awaiting_release(max_amount=Decimal("-12.50"))) == 1  # a credit still matches
    assert len(ws.awaiting_release(company=bounds.BIGINT_MAX)) == 0
    assert len(ws.awaiting_release(ids=[1, bounds.BIGINT_MAX])) == 1
    assert ws.page(ws.events(), offset=bounds.BIGINT_MAX, limit=10_000).empty
    assert ws.document_lines(bounds.BIGINT_MAX).empty
