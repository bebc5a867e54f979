"""Small building blocks shared by the dashboard's views: escaping, cards, pagers, tables.

Everything that shows text coming from the data goes through ``esc`` (HTML panes) or a
Tabulator ``plaintext`` formatter, so an account called ``<script>…`` is shown, never run.
"""

from __future__ import annotations

import html
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pandas as pd
import panel as pn
import param
from panel.reactive import ReactiveHTML
from panel.viewable import Viewer

from bear.errors import BearError

log = logging.getLogger(__name__)

_EXECUTOR = ThreadPoolExecutor(max_workers=4, thread_name_prefix="bear-ui")

TEXT = {"type": "plaintext"}
MONEY = {"type": "money", "decimal": ".", "thousand": ",", "precision": 2}
INTEGER = {"type": "money", "decimal": ".", "thousand": ",", "precision": 0}
IDS = {"id", "seq", "batch_seq", "record_id", "document_id", "billing_event_id", "run_id"}

CSS = """
:host { --bear-muted: #667085; }
.bear-cards { display: flex; gap: 12px; flex-wrap: wrap; width: 100%; }
.bear-card { flex: 1 1 125px; border: 1px solid rgba(128,128,128,.28); border-radius: 8px;
             padding: 8px 12px; min-width: 125px; background: rgba(128,128,128,.04); }
.bear-card .t { font-size: 12px; text-transform: uppercase; letter-spacing: .04em;
                color: var(--bear-muted); }
.bear-card .v { font-size: 22px; font-weight: 600; margin-top: 2px; }
.bear-card .s { font-size: 13px; margin-top: 2px; font-variant-numeric: tabular-nums; }
.bear-card.warn .v { color: #b54708; }
.bear-line { font-size: 14px; line-height: 1.5; }
.bear-muted { color: var(--bear-muted); font-size: 13px; }
.bear-ok { color: #067647; font-size: 13px; }
.bear-err { color: #b42318; font-size: 13px; white-space: pre-wrap; }
.bear-alert { border-left: 4px solid #f79009; background: rgba(247,144,9,.08); padding: 8px 12px;
              border-radius: 4px; font-size: 14px; }
.bear-alert.err { border-color: #d92d20; background: rgba(217,45,32,.08); }
.bear-alert.ok { border-color: #12b76a; background: rgba(18,183,106,.08); }
.bear-note { padding: 6px 10px; border-radius: 6px; border: 1px solid rgba(128,128,128,.25);
             margin: 4px 0; }
.bear-note.unread { border-left: 4px solid #2e90fa; }
.bear-note .when { color: var(--bear-muted); font-size: 12px; }
table.bear-kv { border-collapse: collapse; font-size: 14px; }
table.bear-kv td, table.bear-kv th { padding: 3px 12px 3px 0; text-align: left; }
table.bear-kv td.n { text-align: right; font-variant-numeric: tabular-nums; }
"""


# Dialogs: centred in the viewport below the page header and never taller than the space
# left (the body scrolls, the title and the close button stay on screen), in the theme's own
# colours (dark mode included).
DIALOG_CSS = """
.dialog-container { align-items: center; justify-content: center; box-sizing: border-box;
  padding: 72px 16px 16px 16px; }
.dialog-content { max-height: calc(100vh - 96px); max-width: calc(100vw - 48px);
  overflow: auto; box-sizing: border-box; border-radius: 8px; padding: 16px 20px 20px 20px;
  background-color: var(--panel-surface-color, var(--panel-background-color, #fff));
  color: var(--panel-on-surface-color, var(--panel-on-background-color, inherit)); }
.pnx-dialog-close { color: inherit; top: 6px; right: 6px; }
.pnx-dialog-close:focus-visible { outline: 2px solid #2e90fa; outline-offset: 2px; }
"""

# The page frame's card contains its content for paint, which makes it the box a fixed
# dialog is placed in: dialogs would centre on the scrolled card, not on the screen.
TEMPLATE_CSS = """
fast-card.pn-wrapper { contain: none !important; }
"""

# Escape closes the open dialog (the dialog library ignores keys from inside shadow roots),
# and focus moves to the dialog's primary button once it is drawn.
DIALOG_JS = """
window._bearDialogs = window._bearDialogs || new Set();
window._bearDialogs.add(source);
if (source.open) {
  // focus the primary button once the dialog's body is drawn (it may still be computing)
  const find = (root, selector) => {
    const hit = root.querySelector(selector);
    if (hit) { return hit; }
    for (const el of root.querySelectorAll('*')) {
      if (el.shadowRoot) { const f = find(el.shadowRoot, selector); if (f) { return f; } }
    }
    return null;
  };
  let tries = 0;
  const focus = () => {
    const box = find(document, '.dialog-container:not([style*="display: none"])');
    const primary = box && find(box, 'button.bk-btn-primary:not([disabled])');
    if (primary) { primary.focus(); } else if (tries++ < 40) { setTimeout(focus, 250); }
  };
  setTimeout(focus, 100);
}
if (!window._bearEscape) {
  window._bearEscape = true;
  document.addEventListener('keydown', (e) => {
    if (e.key !== 'Escape') { return; }
    for (const m of window._bearDialogs) { if (m.open) { m.open = false; } }
  });
}
"""


# A visible focus ring on every control (keyboard users see where they are).
FOCUS_CSS = """
:focus-visible { outline: 2px solid #2e90fa !important; outline-offset: 2px; }
"""


def dialog(*objects: Any, width: int = 900, **kw: Any) -> pn.Modal:
    """A modal dialog that fits the viewport, follows the theme and closes with Escape."""
    modal = pn.Modal(*objects, width=width, stylesheets=[DIALOG_CSS], **kw)
    modal.jscallback(open=DIALOG_JS)
    return modal


# Scrolls a table to its first row, now and after the table's own deferred scrolls: Tabulator
# restores the previous scroll position when its rows are replaced, and Panel scrolls to each
# row the server ticks (Select all ticks 50: the view ended at the last one) — that scrolling
# is switched off on the table's view the first time this runs.
SCROLL_TOP_JS = """
const view = window.Bokeh && Bokeh.index.find_one ? Bokeh.index.find_one(table) : null;
if (view && view.tabulator && view.setSelection && !view._bearQuietSelection) {
  // rows ticked by the server are ticked where they are, without scrolling to each one
  // (fifty scrolls and redraws per Select all)
  view._bearQuietSelection = true;
  const tick = view.setSelection.bind(view);
  view.setSelection = function () {
    const t = this.tabulator;
    if (!t || !t.scrollToRow) { return tick(); }
    const scroll = t.scrollToRow;
    t.scrollToRow = () => Promise.resolve();
    try { return tick(); } finally { t.scrollToRow = scroll; }
  };
}
if (view && view.tabulator) {
  const top = () => {
    view._lastVerticalScrollbarTopPosition = 0;
    view.tabulator.rowManager.element.scrollTop = 0;
  };
  top();
  requestAnimationFrame(() => requestAnimationFrame(top));
  setTimeout(top, 200);
  setTimeout(top, 500);
}
"""


class ScrollToTop:
    """Brings ``table`` back to its first row from the server: place ``widget`` (hidden) in the
    layout, and call the instance after replacing the table's rows or ticking rows in code."""

    def __init__(self, table: pn.widgets.Tabulator) -> None:
        self.widget = pn.widgets.IntInput(value=0, visible=False)
        self.widget.jscallback(value=SCROLL_TOP_JS, args={"table": table})

    def __call__(self) -> None:
        self.widget.value += 1


class WhenIdle(ReactiveHTML):
    """Tells the server when the browser has drawn the page and has nothing left to do
    (``requestIdleCallback``): work that can wait for it — choices of a filter no one has
    opened yet — then does not compete with the first page for the browser. Place it in the
    layout (it draws nothing) and watch ``idle``."""

    idle = param.Integer(default=0)

    _template = '<span id="idle" style="display:none"></span>'
    _scripts = {  # noqa: RUF012 — ReactiveHTML's declarative class attribute
        "render": "const go = () => { data.idle = 1 }; "
        "if (window.requestIdleCallback) { requestIdleCallback(go, {timeout: 4000}) } "
        "else { setTimeout(go, 1000) }"
    }


def esc(value: Any) -> str:
    """HTML-escaped text of any value (quotes included)."""
    return html.escape("" if value is None else str(value), quote=True)


def fmt_num(value: Any, places: int = 0) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "—"
    if isinstance(value, Decimal | float) or places:
        return f"{value:,.{places}f}"
    return f"{int(value):,}"


class Html(pn.pane.HTML):
    """Panel's HTML pane, whose updates keep the page's stylesheets on this server.

    A pane on a hidden tab has left the document (the tabs render only the one shown), and
    Panel recomputes an updated pane's stylesheets from its model's document, so with none it
    pointed them — shared by the whole page — at Panel's CDN, which the page's
    Content-Security-Policy refuses (the ineligible count arriving while Settings & Rules was
    shown did it). Such an update runs in its session, whose document says where the server's
    files are."""

    def _get_properties(self, doc: Any) -> dict[str, Any]:
        return super()._get_properties(doc if doc is not None else pn.state.curdoc)


def html_pane(text: str = "", **kw: Any) -> pn.pane.HTML:
    """An HTML pane carrying the dashboard's stylesheet (give it escaped text only)."""
    kw.setdefault("sizing_mode", "stretch_width")
    return Html(text, stylesheets=[CSS], **kw)


def cards_html(cards: Iterable[tuple[str, str, str, bool]]) -> str:
    """Summary cards: (title, value, sub-line, warn) → HTML, every part escaped."""
    parts = []
    for title, value, sub, warn in cards:
        sub_html = f"<div class='s'>{sub}</div>" if sub else ""
        parts.append(
            f"<div class='bear-card{' warn' if warn else ''}'><div class='t'>{esc(title)}</div>"
            f"<div class='v'>{esc(value)}</div>{sub_html}</div>"
        )
    return f"<div class='bear-cards'>{''.join(parts)}</div>"


def kv_table(rows: Sequence[tuple[str, Any]], per_row: int = 1) -> str:
    """Label / value pairs, ``per_row`` pairs on each table row, every part escaped."""
    cells = [f"<th>{esc(k)}</th><td>{esc(v)}</td>" for k, v in rows]
    lines = ["".join(cells[i : i + per_row]) for i in range(0, len(cells), per_row)]
    return "<table class='bear-kv'>" + "".join(f"<tr>{line}</tr>" for line in lines) + "</table>"


def alert(text: str, kind: str = "") -> str:
    """An alert box with escaped text (``kind``: '', 'err' or 'ok')."""
    return f"<div class='bear-alert {kind}'>{esc(text)}</div>"


def table(
    frame: pd.DataFrame | None = None,
    titles: dict[str, str] | None = None,
    money: Sequence[str] = (),
    integers: Sequence[str] = (),
    **kw: Any,
) -> pn.widgets.Tabulator:
    """A read-only Tabulator whose text cells are plain text (never HTML)."""
    frame = pd.DataFrame() if frame is None else frame
    kw.setdefault("sizing_mode", "stretch_width")
    kw.setdefault("show_index", False)
    kw.setdefault("disabled", True)
    kw.setdefault("pagination", None)
    kw.setdefault("layout", "fit_data_table")
    kw.setdefault("sortable", False)  # paged tables sort in SQL, not in the browser
    # an empty table says so, rather than showing a blank box
    kw.setdefault("configuration", {"placeholder": "Nothing to show here."})
    widget = pn.widgets.Tabulator(frame, titles=titles or {}, **kw)
    widget.formatters = formatters_for(frame, money, integers)
    return widget


def formatters_for(
    frame: pd.DataFrame, money: Sequence[str] = (), integers: Sequence[str] = ()
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for col in frame.columns:
        if pd.api.types.is_bool_dtype(frame[col]):
            out[col] = {"type": "tickCross"}
        elif col in IDS or str(col).endswith("_id"):
            out[col] = dict(TEXT)  # ids read better without thousands separators
        elif col in money:
            out[col] = dict(MONEY)
        elif col in integers:
            out[col] = dict(INTEGER)
        elif frame[col].dtype == object or pd.api.types.is_string_dtype(frame[col]):
            out[col] = dict(TEXT)
    return out


def set_frame(
    widget: pn.widgets.Tabulator,
    frame: pd.DataFrame | None,
    money: Sequence[str] = (),
    integers: Sequence[str] = (),
) -> bool:
    """Replace a table's rows, keeping every text column plain text; returns whether they
    changed. Rows equal to those shown are not sent again: a refresh after a change elsewhere
    (a run, another analyst) would redraw the table, scroll it and drop a tick the server has
    not heard of yet."""
    frame = pd.DataFrame() if frame is None else frame
    shown = widget.value
    if isinstance(shown, pd.DataFrame) and shown.equals(frame):  # columns, order, values
        return False
    formatters = formatters_for(frame, money, integers)
    if not set(_hashable(formatters).items()) <= set(_hashable(widget.formatters).items()):
        # only when new columns appear: re-declaring formatters rebuilds the whole table
        widget.formatters = {**widget.formatters, **formatters}
    widget.value = frame
    return True


def _hashable(formatters: dict[str, Any]) -> dict[str, Any]:
    return {
        k: tuple(sorted(v.items())) if isinstance(v, dict) else v for k, v in formatters.items()
    }


def run_in_background(fn: Callable[[], None]) -> None:
    """Run slow work off the session's event loop; its param updates reach the browser."""

    def work() -> None:
        try:
            fn()
        except BearError as exc:  # a known condition (e.g. the server closing the book)
            log.info("dashboard background task stopped: %s", exc)
        except Exception:  # a failure must not vanish silently in a worker thread
            log.exception("dashboard background task failed")

    _EXECUTOR.submit(work)


class AfterShown:
    """A session's background work held back until its page is shown: the ineligible count
    of a million events (a second of both cores when the data has just changed) must not
    compete with the first page it belongs to. ``shown()`` (the browser idle, see
    ``WhenIdle``) releases what was held and lets the rest through at once; so does a timer,
    should the browser never say so."""

    def __init__(self, background: Callable[[Callable[[], None]], None], timeout: float) -> None:
        self._background = background
        self._held: list[Callable[[], None]] = []
        self._shown = False
        self._lock = threading.Lock()
        self._timer = threading.Timer(timeout, self.shown)
        self._timer.daemon = True
        self._timer.start()

    def __call__(self, fn: Callable[[], None]) -> None:
        with self._lock:
            if not self._shown:
                self._held.append(fn)
                return
        self._background(fn)

    def shown(self) -> None:
        with self._lock:
            if self._shown:
                return
            self._shown = True
            held, self._held = self._held, []
        self._timer.cancel()
        for fn in held:
            self._background(fn)


def toast(kind: str, text: str, duration: int = 5000) -> None:
    """A toast in the current session (no-op outside a served session); text is escaped."""
    notifications = getattr(pn.state, "notifications", None)
    if notifications is None:
        return
    getattr(notifications, kind)(esc(text), duration=duration)


class PagerBar(Viewer):
    """« ‹ page x of y › » over any state with page/pages/total and goto()."""

    def __init__(self, state: Any, noun: str = "rows", total_param: str = "total", **params: Any):
        super().__init__(**params)
        self._state = state
        self._noun = noun
        self._total_param = total_param
        self.first = pn.widgets.Button(label="«", width=42, margin=(5, 2), description="First page")
        self.prev = pn.widgets.Button(
            label="‹", width=42, margin=(5, 2), description="Previous page"
        )
        self.next = pn.widgets.Button(label="›", width=42, margin=(5, 2), description="Next page")
        self.last = pn.widgets.Button(label="»", width=42, margin=(5, 2), description="Last page")
        self.label = html_pane(width=260, sizing_mode="fixed", margin=(10, 8))
        self.jump = pn.widgets.IntInput(value=1, start=1, width=80, margin=(5, 4), label="")
        self.first.on_click(lambda e: state.goto(0))
        self.prev.on_click(lambda e: state.goto(state.page - 1))
        self.next.on_click(lambda e: state.goto(state.page + 1))
        self.last.on_click(lambda e: state.goto(state.pages - 1))
        self.jump.param.watch(self._jump, "value")
        state.param.watch(self._update, ["page", "pages", total_param])
        self._update()

    def _jump(self, event: Any) -> None:
        if event.new is not None and event.new - 1 != self._state.page:
            self._state.goto(int(event.new) - 1)

    def _update(self, *_: Any) -> None:
        s = self._state
        total = getattr(s, self._total_param)
        self.label.object = (
            f"<span class='bear-line'>Page <b>{s.page + 1:,}</b> of {s.pages:,} "
            f"<span class='bear-muted'>({total:,} {esc(self._noun)})</span></span>"
        )
        self.first.disabled = self.prev.disabled = s.page <= 0
        self.next.disabled = self.last.disabled = s.page >= s.pages - 1
        self.jump.end = max(1, s.pages)
        if self.jump.value != s.page + 1:
            self.jump.value = s.page + 1

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Row(
            self.first, self.prev, self.label, self.next, self.last, self.jump, align="center"
        )
