"""A run's progress while it works: live in a notebook, a line now and then in a terminal.

``follow(handle)`` polls a run handle (local or remote) until the run ends and returns its
final ``RunResult``. In Jupyter it shows an HTML progress display and replaces it in place
(IPython display updates), so it needs no JavaScript, no widget extension and no CDN, and it
stays live when the cell runs under *Run All*; the display ends on the run's final state.
Elsewhere it writes a short line to standard error whenever the run moves on.
"""

from __future__ import annotations

import html
import sys
import time
from typing import Any, Protocol

from bear.models import RunResult

# a terminal gets a line at most this often (a notebook display is updated at every poll)
LINE_EVERY_S = 2.0


class _Handle(Protocol):
    id: int

    def result(self) -> RunResult: ...


def in_kernel() -> bool:
    """Whether this code runs in a Jupyter kernel (IPython with a kernel attached)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def _bar(label: str, done: int, total: int) -> str:
    total = max(int(total), 0)
    shown = f"{done:,} / {total:,}" if total else "–"
    return (
        f"<div style='display:flex;align-items:center;gap:10px;margin:2px 0'>"
        f"<span style='width:130px'>{label}</span>"
        f"<progress value='{min(done, total) if total else 0}' max='{max(total, 1)}' "
        f"style='width:320px;height:14px'></progress><span>{shown}</span></div>"
    )


def progress_html(run: RunResult, seconds: float) -> str:
    """The progress display of ``run``: its status line and two bars (release batches, documents)."""
    state = run.status if run.finished else f"{run.status} ({run.stage})"
    colour = {"completed": "#2e7d32", "failed": "#c62828", "cancelled": "#8d6e63"}.get(
        run.status, "#1565c0"
    )
    line = (
        f"<b style='color:{colour}'>run {run.id}: {html.escape(state)}</b> — "
        f"{run.released:,} released, {run.documents:,} documents"
        f"{f', {run.not_passed:,} not passed' if run.not_passed else ''}, {seconds:.1f} s"
    )
    return (
        f"<div class='bear-run-progress' data-run='{run.id}' data-status='{html.escape(run.status)}'"
        f" style='font-family:sans-serif;font-size:13px;margin:4px 0'>"
        f"<div>{line}</div>"
        f"{_bar('release batches', run.batches_done, run.batches)}"
        f"{_bar('documents', run.invoice_done, run.invoice_total)}</div>"
    )


def progress_line(run: RunResult, seconds: float) -> str:
    state = run.status if run.finished else f"{run.status} ({run.stage})"
    return (
        f"run {run.id}: {state} — batches {run.batches_done:,}/{run.batches:,}, "
        f"{run.released:,} released, documents {run.invoice_done:,}/{run.invoice_total:,}, "
        f"{seconds:.1f} s"
    )


def follow(handle: _Handle, *, every: float = 0.25, timeout: float | None = None) -> RunResult:
    """Show the run's progress until it ends; its final ``RunResult``.

    :param every: seconds between two looks at the run.
    :param timeout: give up after this many seconds (``TimeoutError``; the run goes on).
    """
    started = time.monotonic()
    run = handle.result()
    shown: Any = None
    if in_kernel():
        from IPython.display import HTML, display

        shown = display(HTML(progress_html(run, 0.0)), display_id=True)
    last_line, last_at = "", 0.0
    while True:
        elapsed = time.monotonic() - started
        if shown is not None:
            shown.update(HTML(progress_html(run, elapsed)))
        else:
            line = progress_line(run, elapsed)
            moved = line.split(", ")[:-1] != last_line.split(", ")[:-1]
            if run.finished or (moved and time.monotonic() - last_at >= LINE_EVERY_S):
                print(line, file=sys.stderr, flush=True)
                last_line, last_at = line, time.monotonic()
        if run.finished:
            return run
        if timeout is not None and elapsed > timeout:
            raise TimeoutError(f"run {run.id} still {run.status} ({run.stage}) after {timeout:g} s")
        time.sleep(max(0.01, float(every)))
        run = handle.result()
