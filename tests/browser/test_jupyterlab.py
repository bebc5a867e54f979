"""The notebooks in real JupyterLab, in headless Chromium, with every request off the machine
blocked: all cells run without an error output, every chart is drawn (a canvas), the run's
progress display moves while the run works and ends on the run's final counts, the inline run
view has rows, the revert at the end leaves its history, a click in a view after the workspace
closed gives one line (no traceback), and ``ws.dashboard`` works as the first Panel call of a
fresh kernel and again after a page reload.

JupyterLab is started from this interpreter's environment on a free loopback port, with the
notebooks copied into a temporary folder (each then seeds its own demo book there).
Screenshots of each notebook's outputs go to ``test-artifacts/``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from netutil import free_port, stop
from playwright.sync_api import expect

import bear

pytestmark = [pytest.mark.notebook, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
KERNEL = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))

# JavaScript helpers evaluated in the page: the current notebook, and a query that also looks
# inside shadow roots (Bokeh renders its plots and widgets there).
JS = """
window.__bear = {
  nb() { return window.jupyterapp.shell.currentWidget; },
  deep(root, sel) {
    const out = [];
    const walk = (n) => {
      if (!n.querySelectorAll) return;
      out.push(...n.querySelectorAll(sel));
      n.querySelectorAll('*').forEach(e => { if (e.shadowRoot) walk(e.shadowRoot); });
    };
    walk(root);
    return out;
  },
  ready() {
    const w = this.nb();
    const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
    return !!k && k.status === 'idle';
  },
  done() {
    const w = this.nb();
    const cells = w.content.widgets.filter(c => c.model.type === 'code');
    return this.ready() && cells.every(c => c.model.executionCount !== null);
  },
  cells() {
    return this.nb().content.widgets.filter(c => c.model.type === 'code').map((c, i) => ({
      index: i,
      count: c.model.executionCount,
      source: c.model.sharedModel.getSource(),
      outputs: c.model.outputs.toJSON().map(o => ({
        type: o.output_type, name: o.name || '', mimes: Object.keys(o.data || {}),
        text: String(o.text || (o.ename ? o.ename + ': ' + o.evalue : '')).slice(0, 500),
      })),
      canvases: this.deep(c.node, 'canvas').length,
      rows: this.deep(c.node, '.tabulator-row').length,
      text: c.node.innerText,
    }));
  },
  watchProgress() {
    window.__progress = [];
    const look = () => {
      for (const e of document.querySelectorAll('.bear-run-progress')) {
        const bars = [...e.querySelectorAll('progress')].map(p => p.value + '/' + p.max);
        const v = e.dataset.status + ' ' + bars.join(' ');
        if (window.__progress[window.__progress.length - 1] !== v) window.__progress.push(v);
      }
    };
    new MutationObserver(look).observe(document.body,
      {subtree: true, childList: true, attributes: true, characterData: true});
  },
};
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory, demo_path):
    """JupyterLab serving a folder with copies of the notebooks (and a book with one finished
    run, for the scratch notebook); yields (url, token, folder)."""
    folder = tmp_path_factory.mktemp("lab")
    for name in NOTEBOOKS:
        shutil.copy(ROOT / "notebooks" / name, folder / name)
    book = folder / "runbook.duckdb"
    shutil.copy(demo_path, book)
    with bear.connect(book) as ws:
        run = ws.release_and_invoice(ws.awaiting_release(currency="GBP"), user="ana", timeout=300)
    scratch = nbformat.v4.new_notebook(metadata={"kernelspec": KERNEL})
    scratch.cells = [
        nbformat.v4.new_code_cell(f"import bear\nws = bear.connect({str(book)!r})"),
        nbformat.v4.new_code_cell(f"view = ws.dashboard('run', run_id={run.id})\nview"),
    ]
    nbformat.write(scratch, folder / "scratch.ipynb")
    settings = folder / ".lab-settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    # every cell in the DOM (no windowing), so every output can be checked; no news prompt
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    apputils = folder / ".lab-settings" / "@jupyterlab" / "apputils-extension"
    apputils.mkdir(parents=True)
    (apputils / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    port, token = free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BEAR_", "JUPYTER"))}
    env.update(
        JUPYTER_CONFIG_DIR=str(folder / ".jupyter"),
        JUPYTER_DATA_DIR=str(folder / ".jupyter-data"),
        JUPYTER_RUNTIME_DIR=str(folder / ".jupyter-runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(folder / ".lab-settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(folder / ".lab-workspaces"),
    )
    log = (folder / "lab.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={folder}",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.news_url=",
            "--LabApp.extension_manager=readonly",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ],
        cwd=folder,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        import httpx

        while True:
            try:
                if httpx.get(f"{url}/api/status?token={token}", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("JupyterLab did not start:\n" + (folder / "lab.log").read_text())
            time.sleep(0.3)
        yield url, token, folder
    finally:
        stop(proc)


def _open(page, lab, name: str) -> list[str]:
    """Open notebook ``name`` with every request off the server refused; the refused URLs."""
    url, token, _ = lab
    refused: list[str] = []

    def route(r):
        if r.request.url.startswith((url, url.replace("http", "ws"), "data:", "blob:")):
            r.continue_()
        else:
            refused.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.set_viewport_size({"width": 1400, "height": 1000})
    # a workspace of its own, reset: no tab of an earlier test comes back
    page.goto(
        f"{url}/lab/workspaces/w{name.split('-')[0].split('.')[0]}/tree/{name}?reset&token={token}"
    )
    _ready(page, name)
    return refused


def _ready(page, name: str) -> None:
    """Wait until notebook ``name`` is the current tab and its kernel is idle."""
    try:
        page.wait_for_function("() => !!window.jupyterapp", timeout=120_000)
        page.evaluate(JS)
        page.wait_for_function(
            "(name) => { const w = window.__bear.nb();"
            " return !!w && !!w.context && w.context.path === name && window.__bear.ready(); }",
            arg=name,
            timeout=120_000,
        )
    except Exception as exc:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "jupyterlab-not-ready.png"))
        raise AssertionError(f"{name} did not open with an idle kernel") from exc


def _run_all(page) -> list[dict]:
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    try:
        page.wait_for_function("() => window.__bear.done()", timeout=300_000, polling=250)
    except Exception as exc:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "jupyterlab-stuck.png"))
        state = page.evaluate(
            "() => [window.__bear.ready(), window.__bear.cells().map(c => c.count)]"
        )
        raise AssertionError(f"the notebook did not finish running: {state}") from exc
    time.sleep(1.5)  # the last outputs render
    return page.evaluate("() => window.__bear.cells()")


def _problems(cells: list[dict]) -> list[str]:
    """Error outputs and anything written to stderr, cell by cell."""
    return [
        f"cell {c['index']}: {o['type']} {o['name']}: {o['text']}"
        for c in cells
        for o in c["outputs"]
        if o["type"] == "error" or (o["type"] == "stream" and o["name"] == "stderr")
    ]


def _shoot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    cells = page.locator(".jp-CodeCell")
    for i in range(cells.count()):
        cell = cells.nth(i)
        if cell.locator(".jp-OutputArea-output").count():
            cell.scroll_into_view_if_needed()
            cell.screenshot(path=str(ARTIFACTS / f"jupyterlab-{name}-cell{i:02d}.png"))


def _plots(cells: list[dict]) -> list[dict]:
    """The cells whose outputs are Bokeh/Panel objects (HoloViews' or Panel's exec output)."""
    return [
        c
        for c in cells
        if any("application/vnd.holoviews_exec.v0+json" in o["mimes"] for o in c["outputs"])
    ]


def test_explore_draws_every_chart_offline(page, lab):
    refused = _open(page, lab, "01-explore-awaiting-release.ipynb")
    cells = _run_all(page)
    _shoot(page, "01")
    assert not _problems(cells)
    charts = [c for c in _plots(cells) if ".hvplot" in c["source"]]
    assert len(charts) == 3
    for c in charts:
        assert c["canvases"] > 0, f"cell {c['index']} drew nothing"
    assert refused == []


def test_write_a_rule_runs_clean_offline(page, lab):
    refused = _open(page, lab, "02-write-an-eligibility-rule.ipynb")
    cells = _run_all(page)
    assert not _problems(cells)
    assert "passed: test_the_plugin_in_a_workspace" in "\n".join(c["text"] for c in cells)
    assert refused == []


def test_release_and_invoice_shows_live_progress_and_a_full_run_view(page, lab):
    refused = _open(page, lab, "03-release-and-invoice.ipynb")
    page.evaluate("() => window.__bear.watchProgress()")
    cells = _run_all(page)
    _shoot(page, "03")
    assert not _problems(cells)
    assert refused == []

    # the progress display moved while the run worked, and ends on the run's final counts
    seen = page.evaluate("() => window.__progress")
    watch = next(c for c in cells if "handle.watch()" in c["source"])
    printed = next(o["text"] for o in watch["outputs"] if o["type"] == "stream")
    assert printed.startswith("run ") and ": completed — " in printed, printed
    released = printed.split("— ")[1].split(" released")[0]
    assert seen[-1].startswith("completed"), seen
    assert any(s.startswith("running") for s in seen), seen
    final = page.locator(".bear-run-progress").last
    assert final.get_attribute("data-status") == "completed"
    assert f"{released} released" in final.inner_text()
    bars = seen[-1].split()[1:]
    assert all(b.split("/")[0] == b.split("/")[1] for b in bars), seen[-1]

    # the inline run view shows its tables when first displayed
    view = next(c for c in cells if 'ws.dashboard("run"' in c["source"])
    assert view["rows"] > 0

    # the revert at the end: one event's history shows the revert and its reason, and the
    # reverted events are awaiting release again
    history = next(c for c in cells if "ws.history(" in c["source"])
    assert "hours booked to the wrong project" in history["text"], history["text"]
    back = next(c for c in cells if "awaiting_release(ids=picks)" in c["source"])
    assert "5 of the 5 reverted events are awaiting release again" in back["text"], back["text"]

    # the last cell closed the workspace: a click in the view gives one line, no traceback
    before = [c["outputs"] for c in cells]
    cell = page.locator(".jp-CodeCell").nth(view["index"])
    cell.get_by_role("button", name="›").first.click()
    expect(cell.get_by_text("The workspace is closed")).to_be_visible(timeout=30_000)
    after = page.evaluate("() => window.__bear.cells()")
    assert [c["outputs"] for c in after] == before
    assert "Traceback" not in page.locator(".jp-Notebook").inner_text()


def test_the_dashboard_is_the_first_panel_call_and_survives_a_page_reload(page, lab):
    refused = _open(page, lab, "scratch.ipynb")
    cells = _run_all(page)
    assert not _problems(cells)
    assert cells[1]["rows"] > 0
    # a reloaded page has lost BokehJS; running the view's cell again shows it again
    page.reload()
    _ready(page, "scratch.ipynb")
    page.evaluate(
        "() => { const w = window.__bear.nb(); w.content.activeCellIndex = 1;"
        " return window.jupyterapp.commands.execute('notebook:run-cell'); }"
    )
    page.wait_for_function(
        "() => window.__bear.ready() && window.__bear.cells()[1].rows > 0", timeout=60_000
    )
    assert not _problems(page.evaluate("() => window.__bear.cells()"))
    assert refused == []
