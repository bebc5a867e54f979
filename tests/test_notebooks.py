"""The notebooks in notebooks/ run top to bottom in a real Jupyter kernel, and are committed clean.

Each notebook is executed headless (nbclient + ipykernel) in this interpreter's environment, with
``BEAR_DB`` pointing at a fresh database in a temporary folder, so it seeds its own demo book the
way it does on a fresh clone. A notebook that tries to open a database another process holds
(``bear serve``, another kernel) gets BEAR's plain message, not DuckDB's lock error.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

pytestmark = pytest.mark.notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 180  # seconds per cell; a whole notebook takes well under a minute
KERNEL = "python3"  # the kernelspec's "python" is replaced by this interpreter (jupyter_client)

# Text each notebook must print when it worked (beyond "no cell raised").
EXPECTED_OUTPUT = {
    "01-explore-awaiting-release.ipynb": [
        "events awaiting release",
        "Preview of release_and_invoice",
    ],
    "02-write-an-eligibility-rule.ipynb": [
        "passed: test_min_invoice_amount",
        "passed: test_credit_hold",
        "passed: test_the_plugin_in_a_workspace",
    ],
    "03-release-and-invoice.ipynb": [": completed — ", "Run 1 — release_and_invoice"],
}


def _kernel_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "BEAR_DB"}
    env.update(extra)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _execute(nb, *, env: dict[str, str], cwd: Path, allow_errors: bool = False):
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name=KERNEL,
        allow_errors=allow_errors,
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute(env=env)
    return nb


def _texts(nb, cells=None) -> str:
    """Every text a notebook's cells (or ``cells`` of it) produced (streams, plain and HTML
    results, errors)."""
    out: list[str] = []
    for cell in nb.cells if cells is None else cells:
        for o in cell.get("outputs", []):
            if o.output_type == "stream":
                out.append(o.text)
            elif o.output_type in ("execute_result", "display_data"):
                for mime in ("text/plain", "text/html"):
                    if mime in o.data:
                        out.append(str(o.data[mime]))
            elif o.output_type == "error":
                out.append(f"{o.ename}: {o.evalue}\n" + "\n".join(o.traceback))
    return "\n".join(out)


def _cell_texts(nb, snippet: str) -> str:
    """What the one code cell whose source holds ``snippet`` printed and showed."""
    cells = [c for c in nb.cells if c.cell_type == "code" and snippet in c.source]
    assert len(cells) == 1, f"expected one cell with {snippet!r}, found {len(cells)}"
    return _texts(nb, cells)


REVERT_REASON = "hours booked to the wrong project"


def _check_the_revert_section(nb) -> None:
    """Notebook 03's last section: documents posted but two, a revert previewed (a rule blocks
    the never-released event; documents to create and to discard) and run (5 reverted, 1 not,
    2 discarded, 3 reversing credit notes), the reversing documents pointing at the invoices
    they reverse, one event's history ending in the revert, the five awaiting release again."""
    posted = _cell_texts(nb, "ws.post(")
    assert "documents posted; not posted: " in posted
    assert "complete" in posted and "in_progress" in posted
    preview = _cell_texts(nb, 'action="revert"')
    assert "<b>Preview of revert</b>: 6 selected, 5 eligible, 1 ineligible" in preview
    assert "revert.not_released" in preview
    assert "<th>effect</th>" in preview
    assert "<td>create</td>" in preview and "<td>discard</td>" in preview
    run = _cell_texts(nb, "ws.revert(")
    assert "reverted / not reverted</th><td>5 / 1</td>" in run, run
    assert "documents discarded</th><td>2</td>" in run
    assert REVERT_REASON in run and "not reverted: " in run
    pairs = re.findall(r"credit note (SCN\d{6}) reverses sales invoice (SIN\d{6})", run)
    assert len(pairs) == 3, run
    reversing = _cell_texts(nb, "ws.documents(run_id=revert_run.id)")
    assert "reverses_document_id" in reversing
    for note, invoice in pairs:  # each reversing document's row names the invoice it reverses
        row = rf"<td>{note}</td>(?:(?!</tr>).)*<td>{invoice}</td>"
        assert re.search(row, reversing, re.DOTALL), (note, invoice)
    history = _cell_texts(nb, "ws.history(")
    assert REVERT_REASON in history and "revert" in history and "reversed" in history
    assert any(note in history for note, _ in pairs), history
    back = _cell_texts(nb, "ws.awaiting_release(ids=picks)")
    assert "5 of the 5 reverted events are awaiting release again" in back


CHECKS = {"03-release-and-invoice.ipynb": _check_the_revert_section}


def test_there_are_notebooks():
    names = [p.name for p in NOTEBOOKS]
    assert names == sorted(EXPECTED_OUTPUT), names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.outputs != [] or c.execution_count is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; clear them before committing"
    assert nb.metadata.get("kernelspec", {}).get("name") == KERNEL
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert "BEAR_DB" in code[0] and "bear.demo.seed" in code[0], "first cell: connect and seed"
    assert code[-1].strip().startswith("ws.close()"), "last cell closes the workspace"


def test_kernel_is_this_environment(tmp_path: Path):
    """The notebooks run in the interpreter that has bear installed (the project's venv)."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import sys, bear\nprint(sys.prefix)\nprint(bear.__file__)")
    ]
    _execute(nb, env=_kernel_env(), cwd=tmp_path)
    prefix, bear_file = nb.cells[0].outputs[0].text.split()
    import bear

    assert Path(prefix).resolve() == Path(sys.prefix).resolve()
    assert Path(bear_file).resolve() == Path(bear.__file__).resolve()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path: Path, tmp_path: Path):
    db = tmp_path / "book.duckdb"
    nb = nbformat.read(path, as_version=4)
    t0 = time.monotonic()
    try:
        _execute(nb, env=_kernel_env(BEAR_DB=str(db)), cwd=path.parent)
    except nbclient.exceptions.CellExecutionError as exc:
        pytest.fail(f"{path.name} failed:\n{exc}", pytrace=False)
    seconds = time.monotonic() - t0
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    assert db.exists(), "the notebook did not use $BEAR_DB"
    text = _texts(nb)
    for expected in EXPECTED_OUTPUT.get(path.name, []):
        assert expected in text, f"{path.name}: expected {expected!r} in its output"
    if path.name in CHECKS:
        CHECKS[path.name](nb)
    # The kernel is gone and the notebook closed its workspace: the file opens again at once.
    import bear

    with bear.connect(db, resume=False) as ws:
        assert len(ws.events()) == 20_000
    print(f"{path.name}: {seconds:.1f} s")


@pytest.fixture(scope="module")
def served_book(tmp_path_factory):
    """A 20,000-event demo book served by `bear serve`, with an admin's API token."""
    from netutil import serving

    import bear

    db = tmp_path_factory.mktemp("served-notebooks") / "book.duckdb"
    with bear.connect(db) as ws:
        bear.demo.seed(ws, events=20_000, seed=7)
        ws.team.add("nb", "admin", actor="setup")
        _, token = ws.team.create_token("nb", actor="setup")
    with serving(db) as url:
        yield url, token


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_against_a_served_book(path: Path, tmp_path: Path, served_book):
    """$BEAR_SERVER and $BEAR_TOKEN set: the notebook works through the server's API."""
    url, token = served_book
    nb = nbformat.read(path, as_version=4)
    env = _kernel_env(BEAR_SERVER=url, BEAR_TOKEN=token)
    try:
        _execute(nb, env=env, cwd=path.parent)
    except nbclient.exceptions.CellExecutionError as exc:
        pytest.fail(f"{path.name} failed against {url}:\n{exc}", pytrace=False)
    text = _texts(nb)
    expected = [e for e in EXPECTED_OUTPUT.get(path.name, []) if not e.startswith("Run 1")]
    for line in expected:
        assert line in text, f"{path.name}: expected {line!r} in its output"
    if path.name in CHECKS:
        CHECKS[path.name](nb)
    assert not (path.parent / "book.duckdb").exists()


# -- a database another process holds -------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_holder(kind: str, db: Path, tmp_path: Path) -> subprocess.Popen:
    env = _kernel_env()
    if kind == "script":
        cmd = [
            sys.executable,
            "-c",
            "import bear, sys, time; ws = bear.connect(sys.argv[1]); print('ready', flush=True); "
            "time.sleep(120)",
            str(db),
        ]
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            proc.kill()
            pytest.fail(f"the holder did not start: {line}{proc.stdout.read()}")
        return proc
    port = _free_port()
    cmd = [sys.executable, "-m", "bear.cli", "serve", "--db", str(db), "--port", str(port)]
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 — closed with the process
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"bear serve exited: {(tmp_path / 'serve.log').read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                if r.status == 200:
                    return proc
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    proc.kill()
    pytest.fail(f"bear serve did not answer: {(tmp_path / 'serve.log').read_text()}")


@pytest.mark.parametrize("holder", ["script", "serve"])
def test_connect_to_a_held_database_says_plainly_who_holds_it(holder: str, tmp_path: Path):
    db = tmp_path / "held.duckdb"
    proc = _start_holder(holder, db, tmp_path)
    try:
        nb = nbformat.v4.new_notebook()
        nb.cells = [
            nbformat.v4.new_code_cell("import bear"),
            nbformat.v4.new_code_cell(f"ws = bear.connect({json.dumps(str(db))})"),
        ]
        _execute(nb, env=_kernel_env(), cwd=tmp_path, allow_errors=True)
        outputs = nb.cells[1].outputs
        errors = [o for o in outputs if o.output_type == "error"]
        assert errors, f"connect succeeded although process {proc.pid} holds the database"
        err = errors[0]
        assert err.ename == "DatabaseLockedError"
        assert f"(pid {proc.pid})" in err.evalue  # "python -c … (pid n)", "bear serve (pid n)"
        if holder == "serve":  # names the server to work through instead
            assert "serve" in err.evalue and "it is served at http://127.0.0.1:" in err.evalue
            assert "bear.connect('http://127.0.0.1:" in err.evalue
        else:
            assert "stop that process" in err.evalue and "try again" in err.evalue
            assert "copy" in err.evalue
        traceback = "\n".join(err.traceback)
        assert "Conflicting lock" not in traceback and "IOException" not in traceback
    finally:
        proc.kill()
        proc.wait(timeout=30)
