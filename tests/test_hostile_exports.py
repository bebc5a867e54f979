"""Hostile text in and out: exports safe to open in a spreadsheet, imports that refuse NUL bytes
and nested values.

A name beginning with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a formula to a
spreadsheet (CSV injection): every CSV and Excel file BEAR writes for people — ``bear export``
(a subprocess), ``ws.export_files`` and the dashboard's downloads — carries it with a ``'``
before it, while numbers and money stay numbers; the raw option and Parquet write it as
stored. An import holding a NUL byte in text, or a Parquet list, is refused by file, row and
column, and the book is left exactly as it was.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import openpyxl
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

import bear
from bear.errors import ImportProblemError
from bear.io import KINDS
from bear.testing import make_workspace
from bear.ui.downloads import download
from bear.ui.state.documents import DocumentsState

ROOT = Path(__file__).resolve().parents[1]
GOOD = ROOT / "tests" / "data" / "import" / "good"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # OWASP's list (CSV injection)
HOSTILE = ("=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1")
PLAIN = "Plain name"
NEGATIVE = Decimal("-12.50")
TABLES = ("companies", "accounts", "projects", "billing_events", "billing_event_items")


def _bear(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "bear.cli", *args],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A book whose accounts, projects and events carry each hostile name (and one plain one);
    every second event is a credit of -12.50, and all are invoiced, so documents name the
    accounts."""
    names = (*HOSTILE, PLAIN)
    path = tmp_path_factory.mktemp("hostile") / "book.duckdb"
    ws = make_workspace(
        [
            {
                "id": i,
                "name": name,
                "project_id": i,
                "summary_amount": NEGATIVE if i % 2 else Decimal("100.00"),
                "invoiced": True,
            }
            for i, name in enumerate(names, 1)
        ],
        projects=[{"id": i, "name": name, "account_id": i} for i, name in enumerate(names, 1)],
        accounts=[{"id": i, "name": name} for i, name in enumerate(names, 1)],
        path=path,
    )
    ws.close()
    return path


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _neutral(name: str) -> str:
    return "'" + name if name.startswith(FORMULA_START) else name


def _assert_names(folder: Path, *, raw: bool) -> None:
    """The names of accounts, projects and events in an export, neutralised unless ``raw``."""
    expected = [n if raw else _neutral(n) for n in (*HOSTILE, PLAIN)]
    for kind in ("accounts", "projects", "events"):
        rows = _csv_rows(folder / f"{kind}.csv")
        assert [r["name"] for r in rows] == expected, kind
    events = _csv_rows(folder / "events.csv")
    # money and numbers are never touched: a credit stays the number -12.50
    assert [r["summary_amount"] for r in events[:2]] == ["-12.50", "100.00"]
    assert [r["id"] for r in events] == [str(i) for i in range(1, 8)]


# -- bear export and ws.export_files ---------------------------------------------------------
def test_every_hostile_name_is_formula_like() -> None:
    from bear import io as bear_io

    assert {n[0] for n in HOSTILE} == set(FORMULA_START)
    assert set(bear_io.FORMULA_START) == set(FORMULA_START)


def test_cli_export_neutralises_csv(book: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _bear("export", "--db", str(book), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    _assert_names(out, raw=False)


def test_cli_export_raw_writes_text_as_stored(book: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _bear("export", "--db", str(book), "--out", str(out), "--raw")
    assert proc.returncode == 0, proc.stderr
    _assert_names(out, raw=True)


def test_cli_export_help_explains_raw() -> None:
    proc = _bear("export", "--help")
    assert proc.returncode == 0
    assert "--raw" in proc.stdout and "round trip" in proc.stdout


def test_workspace_export_neutralises_unless_raw(book: Path, tmp_path: Path) -> None:
    with bear.connect(book, resume=False) as ws:
        ws.export_files(tmp_path / "people")
        ws.export_files(tmp_path / "machines", raw=True)
    _assert_names(tmp_path / "people", raw=False)
    _assert_names(tmp_path / "machines", raw=True)


def test_parquet_export_is_never_neutralised(book: Path, tmp_path: Path) -> None:
    with bear.connect(book, resume=False) as ws:
        written = ws.export_files(tmp_path / "pq", fmt="parquet")
    events = pq.read_table(written["events"]).to_pydict()
    assert events["name"] == [*HOSTILE, PLAIN]
    assert events["summary_amount"][0] == NEGATIVE


def test_raw_csv_export_imports_back_exactly(book: Path, tmp_path: Path) -> None:
    """The documented round trip: ``raw=True`` (documents are not imported, so the book's
    invoicing is undone in a copy first)."""
    src = tmp_path / "src.duckdb"
    shutil.copy(book, src)
    with bear.connect(src, resume=False) as ws:
        cur = ws.db.cursor()
        for sql in (
            "DELETE FROM document_lines",
            "DELETE FROM documents",
            "DELETE FROM document_counters",
            "UPDATE billing_events SET invoiced = false, document_id = NULL",
        ):
            cur.execute(sql)
        written = ws.export_files(tmp_path / "out", raw=True)
    with bear.connect(":memory:") as dst:
        dst.import_files(**{k: str(v) for k, v in written.items()})
        names = dst.sql("SELECT name FROM billing_events ORDER BY id")["name"].tolist()
    assert names == [*HOSTILE, PLAIN]


# -- the dashboard's downloads ----------------------------------------------------------------
def _sheet_cells(data: io.BytesIO, column: str) -> list[Any]:
    sheet = openpyxl.load_workbook(data).active
    header = [c.value for c in sheet[1]]
    j = header.index(column)
    return [row[j] for row in sheet.iter_rows(min_row=2)]


def test_download_csv_neutralises_text_not_numbers(book: Path) -> None:
    with bear.connect(book, resume=False) as ws:
        frame = ws.export(ws.events())
    text = download(frame, "csv").getvalue().decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [r["name"] for r in rows] == [_neutral(n) for n in (*HOSTILE, PLAIN)]
    assert rows[0]["summary_amount"] == "-12.50"
    raw = list(csv.DictReader(io.StringIO(download(frame, "csv", raw=True).getvalue().decode())))
    assert [r["name"] for r in raw] == [*HOSTILE, PLAIN]


def test_download_xlsx_cells_are_text_not_formulas(book: Path) -> None:
    with bear.connect(book, resume=False) as ws:
        frame = ws.export(ws.events())
    cells = _sheet_cells(download(frame, "xlsx"), "name")
    # XML reads a carriage return back as a line feed: compare after the same normalisation
    expected = [_neutral(n).replace("\r", "\n") for n in (*HOSTILE, PLAIN)]
    assert [c.value for c in cells] == expected
    assert all(c.data_type == "s" for c in cells), [(c.value, c.data_type) for c in cells]
    amounts = _sheet_cells(download(frame, "xlsx"), "summary_amount")
    assert amounts[0].value == -12.5 and amounts[0].data_type == "n"
    # raw: as stored, which openpyxl would write as a live formula
    raw = _sheet_cells(download(frame, "xlsx", raw=True), "name")
    assert raw[0].value == HOSTILE[0] and raw[0].data_type == "f"


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_documents_download_of_the_dashboard(book: Path, fmt: str) -> None:
    with bear.connect(book, resume=False) as ws:
        data = DocumentsState(ws).download(fmt)
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(data.getvalue().decode("utf-8"), newline="")))
        accounts, totals = [r["account"] for r in rows], [r["total"] for r in rows]
        assert all(Decimal(t) > 0 for t in totals)
    else:
        cells = _sheet_cells(data, "account")
        assert all(c.data_type == "s" for c in cells)
        accounts = [c.value for c in cells]
        assert all(c.data_type == "n" for c in _sheet_cells(data, "total"))
    expected = [_neutral(n) for n in (*HOSTILE, PLAIN)]
    if fmt == "xlsx":  # XML reads a carriage return back as a line feed
        expected = [n.replace("\r", "\n") for n in expected]
    assert sorted(accounts) == sorted(expected)


# -- imports refuse NUL bytes and nested values ------------------------------------------------
def _nul_accounts(folder: Path) -> Path:
    path = folder / "accounts.csv"
    data = (GOOD / "accounts.csv").read_bytes().replace(b"Initech", b"Init\x00ech")
    assert b"\x00" in data
    path.write_bytes(data)
    return path


def _list_projects(folder: Path) -> Path:
    table = pa_csv.read_csv(GOOD / "projects.csv")
    i = table.schema.get_field_index("name")
    names = pa.array([[n, "x"] for n in table.column("name").to_pylist()])
    path = folder / "projects.parquet"
    pq.write_table(table.set_column(i, "name", names), path)
    return path


HOSTILE_FILES = {
    "nul-csv": ("accounts", _nul_accounts, 2, "name", "NUL byte"),
    "list-parquet": ("projects", _list_projects, 1, "name", "list"),
}


def _counts(path: Path) -> dict[str, int]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in TABLES}
    finally:
        con.close()


@pytest.mark.parametrize("case", list(HOSTILE_FILES))
def test_import_refuses_through_the_api(tmp_path: Path, case: str) -> None:
    kind, make, row, column, words = HOSTILE_FILES[case]
    bad = make(tmp_path)
    files = {k: str(GOOD / f"{k}.csv") for k in KINDS} | {kind: str(bad)}
    with bear.connect(tmp_path / "b.duckdb") as ws, pytest.raises(ImportProblemError) as err:
        ws.import_files(**files)
    located = [p for p in err.value.problems if p["row"] is not None]
    assert located, err.value.problems
    assert {p["file"] for p in err.value.problems} == {str(bad)}
    assert (located[0]["row"], located[0]["column"]) == (row, column)
    assert words in located[0]["problem"]
    # all or nothing: the good files of the other kinds were not written either
    assert set(_counts(tmp_path / "b.duckdb").values()) == {0}


@pytest.mark.parametrize("case", list(HOSTILE_FILES))
def test_import_refuses_through_the_cli(book: Path, tmp_path: Path, case: str) -> None:
    kind, make, row, column, words = HOSTILE_FILES[case]
    bad = make(tmp_path)
    db = tmp_path / "book.duckdb"
    shutil.copy(book, db)
    before = _counts(db)
    args = ["import", "--db", str(db)]
    for k in KINDS:
        args += [f"--{k.replace('_', '-')}", str(bad if k == kind else GOOD / f"{k}.csv")]
    proc = _bear(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert f"{bad}, row {row}, column {column}: " in proc.stderr, proc.stderr
    assert words in proc.stderr
    assert _counts(db) == before
