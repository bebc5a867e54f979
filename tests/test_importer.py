"""Import and export: good files, dry run, exact round trips, and a corpus of malformed files.

Every malformed file in ``tests/data/import/`` proves one problem the importer must name
(file, row, column, problem); each goes through the CLI (a subprocess) and the Python API,
and afterwards the database must hold exactly what it held before.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

import bear
from bear import io as bear_io
from bear.errors import BearError, ImportProblemError

DATA = Path(__file__).parent / "data" / "import"
GOOD = {kind: DATA / "good" / f"{kind}.csv" for kind in bear_io.KINDS}
TABLES = [shape.table for shape in bear_io.SHAPES.values()]
NOT_CHECKED = "not checked further"


@dataclass(frozen=True)
class Case:
    """A malformed file (in ``DATA``, or generated when it is Parquet) and what it must produce.

    The file replaces its kind in the good set; with ``preload`` the good set is imported first
    and the file is imported alone. ``expected`` lists (row, column, text in the problem)."""

    file: str
    kind: str
    expected: tuple[tuple[int | None, str | None, str], ...]
    preload: bool = False

    @property
    def id(self) -> str:
        return self.file


CASES = [
    Case("does_not_exist.csv", "events", ((None, None, "file not found"),)),
    Case(
        "events_wrong_extension.txt",
        "events",
        ((None, None, "unsupported file type '.txt': use .csv or .parquet"),),
    ),
    Case("events_empty.csv", "events", ((None, None, "empty file"),)),
    Case(
        "events_missing_column.csv",
        "events",
        ((None, "summary_amount", "required column is missing"),),
    ),
    Case("events_unknown_column.csv", "events", ((None, "colour", "unknown column"),)),
    Case("events_text_in_id.csv", "events", ((4, "id", "'BE-1003' is not a whole number"),)),
    Case(
        "events_bad_date.csv",
        "events",
        ((4, "event_date", "'2026-02-30' is not a valid date"),),
    ),
    Case(
        "events_amount_three_decimals.csv",
        "events",
        ((4, "summary_amount", "'10.005' has more than 2 decimal places"),),
    ),
    Case(
        "events_amount_not_numeric.csv",
        "events",
        ((4, "summary_amount", "'1,250.00' is not a number"),),
    ),
    Case(
        "events_amount_too_large.csv",
        "events",
        ((4, "summary_amount", "is too large for DECIMAL(18,2)"),),
    ),
    Case("events_unknown_currency.csv", "events", ((4, "currency", "unknown currency 'XYZ'"),)),
    Case(
        "events_duplicate_id.csv",
        "events",
        ((4, "id", "duplicate id 1001 (first in row 2)"),),
    ),
    Case(
        "events_existing_id.csv",
        "events",
        ((1, "id", "id 1000 already exists in the database"),),
        preload=True,
    ),
    Case(
        "events_unknown_project.csv",
        "events",
        (
            (
                4,
                "project_id",
                "project_id 999: no such project in the projects file or the database",
            ),
        ),
    ),
    Case(
        "events_null_required.csv", "events", ((4, "name", "missing value in a required column"),)
    ),
    Case("events_invoiced.csv", "events", ((3, "invoiced", "invoiced events cannot be imported"),)),
    Case(
        "events_ragged.csv",
        "events",
        (
            (None, None, NOT_CHECKED),
            (4, "approved", "malformed CSV (line 5): too few values (expected 7, found 6)"),
        ),
    ),
    Case(
        "events_unterminated_quote.csv",
        "events",
        (
            (None, None, NOT_CHECKED),
            (2, "name", "malformed CSV (line 3): unterminated or misplaced quote"),
        ),
    ),
    Case(
        "events_not_utf8.csv",
        "events",
        ((None, None, NOT_CHECKED), (4, "name", "line 5 is not UTF-8 text")),
    ),
    Case("events_text_in_id.parquet", "events", ((4, "id", "'x1003' is not a whole number"),)),
    Case(
        "items_without_event.csv",
        "items",
        (
            (
                4,
                "billing_event_id",
                "billing_event_id 9999: no such billing event in the events file or the database",
            ),
        ),
    ),
    Case("items_bad_category.csv", "items", ((4, "category", "unknown category 'travel'"),)),
    Case(
        "items_quantity_seven_decimals.csv",
        "items",
        ((4, "quantity", "'1.1234567' has more than 6 decimal places"),),
    ),
    Case(
        "items_unknown_product.csv",
        "items",
        ((4, "product_id", "product_id 42: no such product"),),
    ),
    Case(
        "projects_unknown_account.csv",
        "projects",
        ((3, "account_id", "account_id 99: no such account"),),
    ),
    Case(
        "projects_unknown_company.csv",
        "projects",
        ((3, "company_id", "company_id 9: no such company"),),
    ),
    Case(
        "projects_negative_cap.csv",
        "projects",
        ((3, "billing_cap", "billing_cap must be zero or more, not -1.00"),),
    ),
    Case(
        "accounting_periods_end_before_start.csv",
        "accounting_periods",
        ((3, "end_date", "end_date 2026-01-01 is before start_date 2026-12-31"),),
    ),
    Case(
        "company_currencies_duplicate.csv",
        "company_currencies",
        ((4, "company_id", "duplicate (company_id 1, currency USD) (first in row 1)"),),
    ),
    Case("accounts_bad_boolean.csv", "accounts", ((2, "active", "'maybe' is not true or false"),)),
]


def _write_bad_parquet(path: Path) -> None:
    """The good events with a fourth whose id is text: typed Parquet columns, text ids."""
    con = duckdb.connect()
    try:
        con.execute(
            "COPY (SELECT id::VARCHAR AS id, name, project_id::INTEGER AS project_id, currency, "
            "event_date::DATE AS event_date, summary_amount::DECIMAL(18, 2) AS summary_amount, "
            "approved::BOOLEAN AS approved FROM (VALUES "
            "('1000', 'BE-1000', 100, 'USD', '2026-09-30', 1250.00, true), "
            "('1001', 'BE-1001', 101, 'EUR', '2026-10-15', -80.50, true), "
            "('1002', 'BE-1002', 100, 'USD', '2026-10-20', 300.00, false), "
            "('x1003', 'BE-1003', 100, 'USD', '2026-10-21', 10.00, true)) "
            "v(id, name, project_id, currency, event_date, summary_amount, approved)) "
            f"TO '{path}' (FORMAT parquet)"
        )
    finally:
        con.close()


def _case_files(case: Case, tmp_path: Path) -> tuple[dict[str, Path], Path]:
    """The files to import for a case, and the malformed file itself."""
    path = DATA / case.file
    if case.file.endswith(".parquet"):
        path = tmp_path / case.file
        _write_bad_parquet(path)
    files = {case.kind: path} if case.preload else {**GOOD, case.kind: path}
    return files, path


def _counts_con(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return {t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in TABLES}


def _counts(ws: Any) -> dict[str, int]:
    return _counts_con(ws.db.cursor())


def _check_problems(problems: list[dict[str, Any]], case: Case, path: Path) -> None:
    assert len(problems) == len(case.expected), problems
    for problem, (row, column, text) in zip(problems, case.expected, strict=True):
        assert problem["file"] == str(path), problem
        assert (problem["row"], problem["column"]) == (row, column), problem
        assert text in problem["problem"], problem


def _bear(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bear.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _import_args(db: Path, files: dict[str, Path], *extra: str) -> list[str]:
    args = ["import", "--db", str(db), *extra]
    for kind, path in files.items():
        args += [f"--{kind.replace('_', '-')}", str(path)]
    return args


# -- the corpus ------------------------------------------------------------------------------
def test_corpus_has_a_file_per_case() -> None:
    on_disk = {p.name for p in DATA.iterdir() if p.is_file()}
    used = {c.file for c in CASES}
    assert len(on_disk) >= 15
    assert on_disk <= used, f"corpus files no case uses: {sorted(on_disk - used)}"
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_corpus_through_api(case: Case, ws: Any, tmp_path: Path) -> None:
    files, path = _case_files(case, tmp_path)
    if case.preload:
        ws.import_files(**{k: str(v) for k, v in GOOD.items()})
    before = _counts(ws)
    with pytest.raises(ImportProblemError) as err:
        ws.import_files(**{k: str(v) for k, v in files.items()})
    _check_problems(err.value.problems, case, path)
    assert "nothing was imported" in str(err.value)
    assert _counts(ws) == before


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, ...]]:
    """Every case through ``bear import --json``, each in its own subprocess and database
    (two at a time): case file -> (completed process, malformed file, counts before, after)."""
    root = tmp_path_factory.mktemp("cli")

    def run(n_case: tuple[int, Case]) -> tuple[Any, ...]:
        n, case = n_case
        folder = root / f"case{n}"
        folder.mkdir()
        files, path = _case_files(case, folder)
        db = folder / "book.duckdb"
        before = dict.fromkeys(TABLES, 0)  # the CLI creates the database
        if case.preload:
            with bear.connect(db) as w:
                w.import_files(**{k: str(v) for k, v in GOOD.items()})
                before = _counts(w)
        proc = _bear(*_import_args(db, files, "--json"))
        con = duckdb.connect(str(db), read_only=True)
        try:
            after = _counts_con(con)
        finally:
            con.close()
        return proc, path, before, after

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(run, enumerate(CASES)))
    return {case.file: result for case, result in zip(CASES, results, strict=True)}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_corpus_through_cli(case: Case, cli_runs: dict[str, tuple[Any, ...]]) -> None:
    proc, path, before, after = cli_runs[case.file]
    assert proc.returncode == 2, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is False
    _check_problems(report["problems"], case, path)
    assert after == before


def test_cli_lists_problems_on_stderr(tmp_path: Path) -> None:
    db = tmp_path / "book.duckdb"
    bad = DATA / "events_bad_date.csv"
    proc = _bear(*_import_args(db, {**GOOD, "events": bad}))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "1 problem in 1 of 8 import files; nothing was imported" in proc.stderr
    assert f"{bad}, row 4, column event_date: '2026-02-30' is not a valid date" in proc.stderr


# -- good files, dry run ---------------------------------------------------------------------
def test_good_files_import(ws: Any) -> None:
    report = ws.import_files(**{k: str(v) for k, v in GOOD.items()})
    assert report == {
        "rows": {
            "companies": 2,
            "company_currencies": 3,
            "accounting_periods": 3,
            "accounts": 2,
            "products": 2,
            "projects": 2,
            "events": 3,
            "items": 3,
        },
        "dry_run": False,
    }
    cur = ws.db.cursor()
    events = cur.execute(
        "SELECT id, account_id, company_id, summary_amount, approved, released, invoiced, event_date "
        "FROM billing_events ORDER BY id"
    ).fetchall()
    # account_id and company_id were left out of the file: they come from the project.
    assert events == [
        (1000, 10, 1, Decimal("1250.00"), True, False, False, date(2026, 9, 30)),
        (1001, 11, 2, Decimal("-80.50"), True, False, False, date(2026, 10, 15)),
        (1002, 10, 1, Decimal("300.00"), False, False, False, date(2026, 10, 20)),
    ]
    items = cur.execute(
        "SELECT id, description, quantity, unit_price, amount, source_changed, billing_hold "
        "FROM billing_event_items ORDER BY id"
    ).fetchall()
    assert items[1] == (
        5001,
        "Rate correction, October",
        Decimal("1.000000"),
        Decimal("-80.500000"),
        Decimal("-80.50"),
        False,
        False,
    )
    assert cur.execute("SELECT billing_email FROM accounts WHERE id = 11").fetchall() == [(None,)]
    assert cur.execute("SELECT billing_cap FROM projects ORDER BY id").fetchall() == [
        (None,),
        (Decimal("50000.00"),),
    ]
    # The imported events are ordinary events: the rules judge them.
    pv = ws.preview([1000, 1001, 1002], action="release")
    assert 1002 not in pv.eligible_ids  # not approved


def test_dry_run_validates_and_writes_nothing(ws: Any, tmp_path: Path) -> None:
    report = ws.import_files(dry_run=True, **{k: str(v) for k, v in GOOD.items()})
    assert report["dry_run"] is True
    assert report["rows"]["events"] == 3
    assert set(_counts(ws).values()) == {0}
    with pytest.raises(ImportProblemError, match="dry run, nothing would be written"):
        ws.import_files(dry_run=True, **{**GOOD, "events": str(DATA / "events_bad_date.csv")})

    db = tmp_path / "book.duckdb"
    proc = _bear(*_import_args(db, GOOD, "--dry-run"))
    assert proc.returncode == 0, proc.stderr
    assert "validated (dry run, nothing written): companies 2" in proc.stdout
    with bear.connect(db) as w:
        assert set(_counts(w).values()) == {0}


def test_files_may_refer_to_rows_already_in_the_database(ws: Any) -> None:
    reference = {k: str(v) for k, v in GOOD.items() if k not in ("events", "items")}
    ws.import_files(**reference)
    ws.import_files(events=str(GOOD["events"]), items=str(GOOD["items"]))
    assert _counts(ws)["billing_event_items"] == 3


def test_every_problem_is_collected_across_files(ws: Any, tmp_path: Path) -> None:
    files = {
        **GOOD,
        "events": DATA / "events_bad_date.csv",
        "items": DATA / "items_bad_category.csv",
        "products": tmp_path / "missing.parquet",
    }
    with pytest.raises(ImportProblemError) as err:
        ws.import_files(**{k: str(v) for k, v in files.items()})
    got = [(Path(p["file"]).name, p["row"], p["column"]) for p in err.value.problems]
    # The missing products file leaves product ids unknown: no item is blamed for them.
    assert got == [
        ("missing.parquet", None, None),
        ("events_bad_date.csv", 4, "event_date"),
        ("items_bad_category.csv", 4, "category"),
    ]
    assert str(err.value).startswith("3 problems in 3 of 8 import files")


def test_problems_are_capped(ws: Any, tmp_path: Path) -> None:
    bad = tmp_path / "accounts.csv"
    con = duckdb.connect()
    try:
        con.execute(
            f"COPY (SELECT 'A' || i AS id, 'Account ' || i AS name FROM range(1500) t(i)) "
            f"TO '{bad}' (FORMAT csv, HEADER)"
        )
    finally:
        con.close()
    with pytest.raises(ImportProblemError) as err:
        ws.import_files(accounts=str(bad))
    assert len(err.value.problems) == bear_io.MAX_PROBLEMS
    assert [p["row"] for p in err.value.problems[:3]] == [1, 2, 3]
    assert "1500 problems" in str(err.value) and "first 1000" in str(err.value)


def test_items_of_a_released_event_are_refused(ws: Any, tmp_path: Path) -> None:
    ws.import_files(**{k: str(v) for k, v in GOOD.items()})
    ws.db.cursor().execute("UPDATE billing_events SET released = true WHERE id = 1000")
    items = tmp_path / "items.csv"
    items.write_text(
        "id,billing_event_id,category,quantity,unit_price,amount\n"
        "6000,1000,expense,1,5.00,5.00\n"
        "6001,1002,expense,1,5.00,5.00\n",
        encoding="utf-8",
    )
    with pytest.raises(ImportProblemError) as err:
        ws.import_files(items=str(items))
    assert [(p["row"], p["column"]) for p in err.value.problems] == [(1, "billing_event_id")]
    assert "billing event 1000 is already released" in err.value.problems[0]["problem"]


def test_event_status_columns(ws: Any, tmp_path: Path) -> None:
    reference = {k: str(v) for k, v in GOOD.items() if k not in ("events", "items")}
    ws.import_files(**reference)
    events = tmp_path / "events.parquet"
    con = duckdb.connect()
    try:
        con.execute(
            "COPY (SELECT * FROM (VALUES "
            "(1, 'a', 100, 'USD', DATE '2026-10-01', 1.00, true, TIMESTAMP '2026-10-02 09:30:00', NULL, NULL), "
            "(2, 'b', 100, 'USD', DATE '2026-10-01', 1.00, false, TIMESTAMP '2026-10-02 09:30:00', NULL, NULL), "
            "(3, 'c', 100, 'USD', DATE '2026-10-01', 1.00, false, NULL, 77, 5)) "
            "v(id, name, project_id, currency, event_date, summary_amount, released, released_at, "
            f"release_run_id, document_id)) TO '{events}' (FORMAT parquet)"
        )
    finally:
        con.close()
    with pytest.raises(ImportProblemError) as err:
        ws.import_files(events=str(events))
    assert [(p["row"], p["column"], p["problem"]) for p in err.value.problems] == [
        (2, "released_at", "released_at is given but released is false"),
        (3, "release_run_id", "release_run_id 77: no such id in the runs table of the database"),
        (3, "document_id", "document_id must be empty: documents are not imported"),
    ]


def test_header_names_are_forgiving_but_strict(ws: Any, tmp_path: Path) -> None:
    accounts = tmp_path / "accounts.csv"
    accounts.write_text(" ID ,Name,,name\n1,A,x,y\n", encoding="utf-8")
    with pytest.raises(ImportProblemError) as err:
        ws.import_files(accounts=str(accounts))
    assert [(p["row"], p["column"], p["problem"]) for p in err.value.problems] == [
        (None, None, "column 3 of the header has no name"),
        (None, "name", "column appears more than once in the header"),
    ]
    accounts.write_text(" ID ,Name\n1,A\n", encoding="utf-8")
    assert ws.import_files(accounts=str(accounts))["rows"] == {"accounts": 1}


def test_file_structure_edge_cases(ws: Any, tmp_path: Path) -> None:
    header_only = tmp_path / "accounts.csv"
    header_only.write_text("id,name\n", encoding="utf-8")
    assert ws.import_files(accounts=str(header_only))["rows"] == {"accounts": 0}

    too_many = tmp_path / "products.csv"
    too_many.write_text("id,name,revenue_gl\n1,A,4000\n2,B,4000,extra\n3,C\n", encoding="utf-8")
    pattern = tmp_path / "event*.csv"
    pattern.write_text("id\n", encoding="utf-8")
    folder = tmp_path / "items.csv"
    folder.mkdir()
    with pytest.raises(ImportProblemError) as err:
        ws.import_files(products=str(too_many), events=str(pattern), items=str(folder))
    got = [(Path(p["file"]).name, p["row"], p["column"], p["problem"]) for p in err.value.problems]
    assert got == [
        (
            "products.csv",
            None,
            None,
            "the file's values were not checked further: fix its structure first",
        ),
        ("products.csv", 2, None, "malformed CSV (line 3): too many values (expected 3, found 4)"),
        (
            "products.csv",
            3,
            "revenue_gl",
            "malformed CSV (line 4): too few values (expected 3, found 2)",
        ),
        ("event*.csv", None, None, "file names with * or ? cannot be imported: rename the file"),
        ("items.csv", None, None, "is a folder, not a file"),
    ]
    assert _counts(ws)["accounts"] == 0


def test_bad_arguments(ws: Any, tmp_path: Path) -> None:
    with pytest.raises(BearError, match="unknown import kind"):
        ws.import_files(invoices="x.csv")
    with pytest.raises(BearError, match="nothing to import"):
        ws.import_files()
    with pytest.raises(BearError, match="unknown export format"):
        ws.export_files(tmp_path, fmt="xlsx")
    proc = _bear("import", "--db", str(tmp_path / "b.duckdb"))
    assert proc.returncode == 2 and "nothing to import" in proc.stderr


def test_paths_with_a_single_quote(ws: Any, tmp_path: Path) -> None:
    folder = tmp_path / "o'brien's files"
    shutil.copytree(DATA / "good", folder)
    files = {kind: str(folder / f"{kind}.csv") for kind in bear_io.KINDS}
    assert ws.import_files(**files)["rows"]["items"] == 3
    out = tmp_path / "it's exported"
    written = ws.export_files(out, fmt="parquet")
    assert written["events"] == out / "events.parquet" and written["events"].is_file()


# -- export and round trips ------------------------------------------------------------------
def _uninvoice(ws: Any) -> None:
    """Take the demo book back to before its invoicing (documents are not an import kind)."""
    cur = ws.db.cursor()
    cur.execute("DELETE FROM document_lines")
    cur.execute("DELETE FROM documents")
    cur.execute("DELETE FROM document_counters")
    cur.execute("UPDATE billing_events SET invoiced = false, document_id = NULL WHERE invoiced")


def _table_rows(ws: Any, table: str) -> list[tuple[Any, ...]]:
    return ws.db.cursor().execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()


@pytest.fixture(scope="module")
def demo_book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded demo database (2,000 events) whose invoicing was undone."""
    path = tmp_path_factory.mktemp("importer") / "demo.duckdb"
    with bear.connect(path) as w:
        bear.demo.seed(w, events=2000, seed=7)
        _uninvoice(w)
    return path


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_round_trip_is_exact(demo_book: Path, tmp_path: Path, fmt: str) -> None:
    with bear.connect(demo_book) as src:
        written = src.export_files(tmp_path / "out", fmt=fmt, raw=True)
        expected = {t: _table_rows(src, t) for t in TABLES}
    assert list(written) == list(bear_io.KINDS)
    assert written["events"].name == f"events.{fmt}"
    with bear.connect(":memory:") as dst:
        report = dst.import_files(**{k: str(v) for k, v in written.items()})
        assert report["rows"]["events"] == 2000
        for table in TABLES:
            got = _table_rows(dst, table)
            assert got == expected[table], table
        money = _table_rows(dst, "billing_events")[0][9]
        assert isinstance(money, Decimal)
        released = dst.db.cursor().execute("SELECT count(*) FROM billing_events WHERE released")
        assert released.fetchall()[0][0] > 0  # released events (with released_at) came along


def test_round_trip_through_the_cli(demo_book: Path, tmp_path: Path) -> None:
    src = tmp_path / "src.duckdb"
    shutil.copy(demo_book, src)
    out = tmp_path / "out"
    proc = _bear("export", "--db", str(src), "--out", str(out), "--raw")
    assert proc.returncode == 0, proc.stderr
    assert f"events: {out / 'events.csv'}" in proc.stdout
    header = (out / "events.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header.split(",") == list(bear_io.SHAPES["events"].names)
    dst = tmp_path / "dst.duckdb"
    files = {kind: out / f"{kind}.csv" for kind in bear_io.KINDS}
    proc = _bear(*_import_args(dst, files))
    assert proc.returncode == 0, proc.stderr
    assert "imported: companies 3" in proc.stdout and "events 2,000" in proc.stdout
    with bear.connect(src) as a, bear.connect(dst) as b:
        for table in TABLES:
            assert _table_rows(a, table) == _table_rows(b, table), table


def test_invoiced_events_do_not_import(demo_path: Path, tmp_path: Path) -> None:
    """A book with invoiced events exports whole, but its invoiced events are refused."""
    with bear.connect(demo_path) as src:
        written = src.export_files(tmp_path / "out")
        ids = [
            r[0]
            for r in src.db.cursor().execute("SELECT id FROM billing_events ORDER BY id").fetchall()
        ]
        invoiced = {
            r[0]
            for r in src.db.cursor()
            .execute("SELECT id FROM billing_events WHERE invoiced")
            .fetchall()
        }
    assert invoiced
    with bear.connect(":memory:") as dst, pytest.raises(ImportProblemError) as err:
        dst.import_files(**{k: str(v) for k, v in written.items()})
    problems = err.value.problems
    assert {p["column"] for p in problems} == {"invoiced", "document_id"}
    assert {ids[p["row"] - 1] for p in problems} == invoiced
    assert len(problems) == 2 * len(invoiced)


def test_shapes_match_the_schema(ws: Any) -> None:
    cur = ws.db.cursor()
    for shape in bear_io.SHAPES.values():
        columns = [
            r[0]
            for r in cur.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = $t "
                "ORDER BY ordinal_position",
                {"t": shape.table},
            ).fetchall()
        ]
        assert list(shape.names) == columns[: len(shape.names)], shape.kind


# -- the front door and the former module ------------------------------------------------------
def test_import_refreshes_the_workspace_unless_a_dry_run(ws: Any) -> None:
    """Cached eligibility must not outlive an import: the workspace's data version moves."""
    files = {k: str(v) for k, v in GOOD.items()}
    before = ws.data_version
    ws.import_files(dry_run=True, **files)
    assert ws.data_version == before
    ws.import_files(**files)
    assert ws.data_version == before + 1
    with pytest.raises(ImportProblemError):
        ws.import_files(**files)  # every id is already in the database
    assert ws.data_version == before + 1


def test_io_calls_after_write_once_after_the_commit(ws: Any) -> None:
    files = {k: str(v) for k, v in GOOD.items()}
    seen: list[int] = []

    def after() -> None:
        seen.append(_counts(ws)["billing_events"])

    bear_io.import_files(ws.db, dry_run=True, after_write=after, **files)
    assert seen == []
    report = bear_io.import_files(ws.db, after_write=after, **files)
    assert seen == [3]  # called once, with the rows already committed
    assert report["rows"]["events"] == 3


def test_bear_importer_still_works(ws: Any, tmp_path: Path) -> None:
    """``bear.importer`` (in docs/api.md and notebooks) forwards to the workspace."""
    from bear import importer

    files = {k: str(v) for k, v in GOOD.items()}
    assert importer.import_files(ws, dry_run=True, **files)["dry_run"] is True
    assert importer.import_files(ws, **files)["rows"]["items"] == 3
    written = importer.export_files(ws, tmp_path / "out", fmt="parquet")
    assert list(written) == list(importer.KINDS) == list(bear_io.KINDS)
    assert importer.SHAPES is bear_io.SHAPES


def test_io_imports_nothing_above_the_database() -> None:
    """``bear.io`` is a service under the workspace; ``bear.db`` imports nothing of BEAR above it."""
    import ast

    root = Path(bear.__file__).parent
    allowed = {
        "io": ("bear.io", "bear.db", "bear.models", "bear.errors", "bear.config"),
        "db": ("bear.db", "bear.models", "bear.errors"),
    }
    for package, ok in allowed.items():
        for path in sorted((root / package).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else []
                )
                for name in names:
                    if name == "bear" or name.startswith("bear."):
                        assert name.startswith(ok), f"{path.name} imports {name}"
                    assert not name.startswith("panel"), f"{path.name} imports {name}"
