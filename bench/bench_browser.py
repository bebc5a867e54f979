"""Benchmark: the dashboard at a million events as an analyst feels it — click → grid updated
in headless Chromium against ``bear serve`` — beside the server-side part of the same work.

Serves a copy of the book, then repeats each interaction and prints its p50 / p95 round trip
(click until the page shows the result: next page, a header sort, a search, Reset, Select
all), the first load after a server start (navigation the moment it listens, over
``--starts`` starts), and a new session's load in a fresh browser context (navigation until
the first page of events is shown; aim ≤ 2 s). Beside the loads, their floor: the same load
of a minimal page on the same stack (``floor_page.py``: one table in the same template, on
FastAPI and uvicorn), and when each page's HTML had arrived (the server building the
session's page; the rest is the browser's); beside each interaction, the server-side part:
the same operation on the dashboard's state classes in this process, on a second copy of the
book (DuckDB lets one process own a file). Aim: p50 ≤ 300 ms, p95 ≤ 600 ms on the 2-core machine. Figures are
printed, not asserted.

A click's result is awaited in the page, at each frame, on the text of the pane that shows it
(the pager, the cards, the selection line), found before the click; a wait from Python on a
text locator would search the whole page every few ms and slow the redraw it times.

    .venv/bin/python bench/bench_browser.py --db /tmp/bench1m.duckdb [--repeat 9] [--starts 3]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bokeh.document import Document  # noqa: E402

import bear  # noqa: E402
from bear.ui.dashboard import Dashboard  # noqa: E402
from bear.ui.state import ActionFlow, FilterState, GridState  # noqa: E402

SEARCHES = ("Stark", "Wonka")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# The pane (the topmost element of an HTML pane's shadow root) holding the first element that
# matches a CSS selector and contains a text, searched through every shadow root.
FIND_PANE = (
    "(css, has) => { const walk = (root) => { for (const e of root.querySelectorAll(css)) "
    "if (e.textContent.includes(has)) return e; for (const h of root.querySelectorAll('*')) "
    "if (h.shadowRoot) { const f = walk(h.shadowRoot); if (f) return f; } return null; }; "
    "let e = walk(document); while (e && e.parentNode && !(e.parentNode instanceof ShadowRoot)) "
    "e = e.parentNode; return e; }"
)
# The text of the card counting the events that match the filters, in the cards' pane (the
# other cards change on their own: the ineligible count follows later).
EVENTS_CARD = (
    "([...pane.querySelectorAll('.bear-card')]"
    ".find((c) => c.textContent.includes('matching the filters')) || {}).textContent"
)


def watch(page: Any, css: str, has: str) -> tuple[str, str]:
    """Find the pane whose text will show a click's result, before the click that is timed."""
    page.evaluate(
        f"([css, has]) => {{ window.__benchPane = ({FIND_PANE})(css, has); }}", [css, has]
    )
    return css, has


def watch_events_card(page: Any) -> tuple[tuple[str, str], str]:
    """``watch`` the cards' pane; with the events card's text as it stands before the click."""
    where = watch(page, ".bear-card", "matching the filters")
    return where, page.evaluate(
        f"() => {{ const pane = window.__benchPane; return {EVENTS_CARD}; }}"
    )


def until_pane(
    page: Any, where: tuple[str, str], test: str, arg: Any = None, timeout: float = 60.0
) -> float:
    """Seconds until the JS expression ``test`` (over ``pane``, ``text`` — its text — and
    ``arg``) holds, checked by the page at each frame on the pane ``watch`` found (found again
    should the dashboard have drawn it anew). Not ``until`` over a text locator: each of its
    polls searches the whole page for the text from Python, main-thread work of 10–20 ms that
    competes with the very redraw being timed (a next page measured ~100 ms slower that way)."""
    t0 = time.perf_counter()
    page.wait_for_function(
        "([css, has, arg]) => { let pane = window.__benchPane; "
        f"if (!pane || !pane.isConnected) pane = window.__benchPane = ({FIND_PANE})(css, has); "
        f"if (!pane) return false; const text = pane.textContent; return {test}; }}",
        arg=[*where, arg],
        polling="raf",
        timeout=timeout * 1000,
    )
    return time.perf_counter() - t0


def until(check: Callable[[], bool], timeout: float = 60.0) -> float:
    """Seconds until ``check()`` holds (polled every few ms through the browser driver)."""
    t0 = time.perf_counter()
    while not check():
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError("the page did not update in time")
        time.sleep(0.005)
    return time.perf_counter() - t0


def served_page(ws: Any) -> None:
    """Build a session's page as ``bear serve`` does for a request (a document with a
    session, so what a served page leaves for later is left out here too); its background
    work is dropped."""
    import types
    import weakref

    from panel.io.state import set_curdoc

    class Session:  # what the page reads of its session (Bokeh holds it by weak reference)
        id = "bench"
        request = types.SimpleNamespace(arguments={}, headers={}, cookies={})

    doc, session = Document(), Session()
    doc._session_context = weakref.ref(session)  # type: ignore[assignment]
    with set_curdoc(doc):
        dash = Dashboard(ws, "bench@example.com", background=lambda *a, **k: None, poll=False)
        dash.template().server_doc(doc)


def server_side(path: Path, repeat: int) -> dict[str, list[float]]:
    """The same interactions on the state classes (ms), on a private copy of the book."""
    out: dict[str, list[float]] = {
        k: [] for k in ("load", "page", "sort", "search", "reset", "select all", "preview")
    }
    with bear.connect(path, resume=False) as ws:
        ws.eligibility("awaiting_release")
        filters = FilterState()
        grid = GridState(ws, filters)
        grid.refresh()
        flow = ActionFlow(ws, grid, user="bench@example.com")
        ws.warm()
        for _ in range(LOADS):  # a new session's page: its state, widgets and models
            t0 = time.perf_counter()
            served_page(ws)
            out["load"].append((time.perf_counter() - t0) * 1000)
        for i in range(repeat):
            for name, act in (
                ("page", grid.next_page),
                ("sort", lambda i=i: grid.sort("summary_amount", descending=i % 2 == 0)),
                ("search", lambda i=i: setattr(filters, "search", SEARCHES[i % 2])),
                ("reset", filters.reset),
                ("select all", grid.select_all_matching),
            ):
                t0 = time.perf_counter()
                act()
                out[name].append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()  # every awaiting event selected: open the preview dialog
            flow.open("release_and_invoice")
            out["preview"].append((time.perf_counter() - t0) * 1000)
            flow.close()
            grid.clear_selection()
    return out


LOADS = 5  # new sessions timed, each in a fresh browser context
WARM_S = 5.0  # after a start, before new sessions are timed: the server's warm-up done


def browser_side(
    path: Path, repeat: int, starts: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    from netutil import serving
    from playwright.sync_api import sync_playwright

    out: dict[str, list[float]] = {
        k: [] for k in ("load", "page", "sort", "search", "reset", "select all", "preview")
    }
    chromium = shutil.which("chromium")
    # The grid sorts its page in the browser at once, then shows the first page of the SQL
    # sort: a sort is done when the first row is the book's largest (or smallest) amount.
    import duckdb

    with duckdb.connect(str(path), read_only=True) as con:
        tops = {
            str(
                con.execute(
                    "SELECT id FROM billing_events WHERE NOT released "
                    f"ORDER BY summary_amount {d}, id LIMIT 1"
                ).fetchall()[0][0]
            )
            for d in ("DESC", "ASC")
        }
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        blank = browser.new_page()  # the browser's own start-up is not the page's
        blank.goto("about:blank")
        blank.close()
        floor = [1000 * t for t in floor_loads(browser)]
        first_loads = []
        for _ in range(starts):  # navigation the moment the server listens: start-up included
            with serving(path, "--user", "bench@example.com", timeout=180) as url:
                context = browser.new_context(viewport={"width": 1500, "height": 900})
                first_loads.append(
                    1000 * shown_after(context.new_page(), url, answered=ANSWERED["first load"])
                )
                context.close()
        with serving(path, "--user", "bench@example.com", timeout=180) as url:
            # A new session, as every analyst but the first after a start gets it: a fresh
            # browser context each time (nothing cached), the server's start-up work done.
            context = browser.new_context(viewport={"width": 1500, "height": 900})
            shown_after(context.new_page(), url)
            context.close()
            time.sleep(WARM_S)
            for _ in range(LOADS):
                context = browser.new_context(viewport={"width": 1500, "height": 900})
                out["load"].append(
                    1000 * shown_after(context.new_page(), url, answered=ANSWERED["load"])
                )
                context.close()
            page = browser.new_page(viewport={"width": 1500, "height": 900})
            page.set_default_timeout(120_000)
            page.goto(url)
            label = page.get_by_text(re.compile(r"Page \d+ of")).filter(visible=True).first
            label.wait_for()
            interactions(page, label, tops, repeat, out)
        browser.close()
    return {"first load": first_loads, "floor": floor}, out


ANSWERED: dict[str, list[float]] = {"floor": [], "first load": [], "load": []}
NAVIGATION_END = "performance.getEntriesByType('navigation')[0].responseEnd"


def shown_after(
    page: Any, url: str, pattern: str = r"Page \d+ of", answered: list[float] | None = None
) -> float:
    """Seconds from navigating ``page`` to ``url`` until its first page of rows is shown.
    ``answered`` gets the ms until the page's HTML had arrived: the server building the
    session's page (the rest is the browser's: scripts, the document, drawing)."""
    page.set_default_timeout(120_000)
    t0 = time.perf_counter()
    page.goto(url)
    page.get_by_text(re.compile(pattern)).filter(visible=True).first.wait_for()
    took = time.perf_counter() - t0
    if answered is not None:
        answered.append(float(page.evaluate(NAVIGATION_END)))
    return took


def floor_loads(browser: Any) -> list[float]:
    """Fresh-context loads of ``floor_page.py``: a minimal page on the same stack (seconds)."""
    from netutil import free_port, listening, stop

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("floor_page.py")), "--port", str(port)],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        until(lambda: listening(port), timeout=60)
        url = f"http://127.0.0.1:{port}"
        out = []
        for i in range(LOADS + 1):  # the first warms the server's code paths, as above
            context = browser.new_context(viewport={"width": 1500, "height": 900})
            answered: list[float] = []
            took = shown_after(context.new_page(), url, r"Page 1 of 1", answered)
            context.close()
            if i:
                out.append(took)
                ANSWERED["floor"] += answered
        return out
    finally:
        stop(proc)


def interactions(
    page: Any, label: Any, tops: set[str], repeat: int, out: dict[str, list[float]]
) -> None:
    """Each interaction ``repeat`` times, click → result shown (ms) into ``out``."""
    first_id = page.locator(".tabulator-row [tabulator-field=id]").first
    search = page.get_by_placeholder("event, project or account name, or event id")
    for i in range(repeat):
        before = label.inner_text()
        m = re.search(r"Page ([\d,]+) of", before)
        page_no = int(m.group(1).replace(",", "")) if m else 1
        pager = watch(page, ".bear-line", "Page ")
        page.get_by_role("button", name="›").first.click()
        out["page"].append(
            1000 * until_pane(page, pager, "text.includes(arg)", f"Page {page_no + 1:,} of")
        )
        shown = first_id.inner_text()
        page.locator(".tabulator-col[tabulator-field=summary_amount] .tabulator-col-title").click()
        try:
            out["sort"].append(
                1000
                * until(
                    lambda s=shown: (t := first_id.inner_text().replace(",", "")) != s and t in tops
                )
            )
        except TimeoutError:
            raise TimeoutError(
                f"the sort never showed a top row ({sorted(tops)}): first row "
                f"{first_id.inner_text()!r}, was {shown!r}"
            ) from None
        cards, everything = watch_events_card(page)
        search.fill(SEARCHES[i % 2])
        search.press("Enter")
        out["search"].append(1000 * until_pane(page, cards, f"{EVENTS_CARD} !== arg", everything))
        cards, narrowed = watch_events_card(page)
        page.get_by_role("button", name="Reset filters").click()
        out["reset"].append(1000 * until_pane(page, cards, f"{EVENTS_CARD} !== arg", narrowed))
        none = watch(page, ".bear-line", "selected")
        page.get_by_role("button", name=re.compile(r"Select all [\d,]+ matching")).click()
        out["select all"].append(1000 * until_pane(page, none, "/[\\d,]+ selected/.test(text)"))
        # the preview of every awaiting event: click until the warning dialog shows
        page.get_by_role("button", name="Release and Invoice", exact=True).click()
        warning = page.get_by_text("cannot be fully processed", exact=False).first
        out["preview"].append(1000 * until(warning.is_visible))
        checked = page.get_by_text(re.compile(r"checked in [\d.]+ s")).first
        if checked.is_visible():
            out.setdefault("checked in", []).append(
                1000 * float(re.search(r"checked in ([\d.]+) s", checked.inner_text()).group(1))
            )
        page.keyboard.press("Escape")
        page.get_by_text("cannot be fully processed", exact=False).first.wait_for(state="hidden")
        page.get_by_role("button", name="Clear selection").click()
        page.get_by_text("No events selected", exact=False).first.wait_for()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", required=True, help="the book to serve (a copy is used)")
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--starts", type=int, default=3, help="server starts for the first load")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bear-bench-browser-") as tmp:
        served, local = Path(tmp) / "served" / "book.duckdb", Path(tmp) / "local.duckdb"
        served.parent.mkdir()
        shutil.copy(args.db, served)
        shutil.copy(args.db, local)
        loads, browser = browser_side(served, args.repeat, args.starts)
        server = server_side(local, args.repeat)
    floor = statistics.median(loads["floor"])
    first = statistics.median(loads["first load"])
    new = statistics.median(browser["load"])
    print(
        f"floor: a minimal page (one table, same template and stack), fresh browser context, "
        f"p50 {floor:,.0f} ms"
    )
    print(
        f"first load after a server start (navigation the moment it listens → first page of "
        f"events shown), median of {len(loads['first load'])}: {first:,.0f} ms "
        f"({', '.join(f'{x:,.0f}' for x in loads['first load'])}; {first / floor:.1f}× floor)"
    )
    print(f"a new session's load: p50 {new:,.0f} ms ({new / floor:.1f}× floor)")
    print(
        "  of which the page's HTML answered (the server building the session's page), p50: "
        + "; ".join(
            f"{name} {statistics.median(ms):,.0f} ms" for name, ms in ANSWERED.items() if ms
        )
    )
    print(
        f"first preview of every awaiting event (click → dialog): {browser['preview'][0]:,.0f} ms"
    )
    print(f"{'interaction':<12} {'browser p50':>12} {'p95':>8}   {'server p50':>11} {'p95':>8}")
    for name, times in browser.items():
        s = server.get(name) or [float("nan")]
        print(
            f"{name:<12} {statistics.median(times):>9,.0f} ms {pct(times, 0.95):>5,.0f} ms   "
            f"{statistics.median(s):>8,.0f} ms {pct(s, 0.95):>5,.0f} ms"
        )
    print("aim: browser p50 ≤ 300 ms and p95 ≤ 600 ms per interaction; loads ≤ 2 s")


if __name__ == "__main__":
    main()
