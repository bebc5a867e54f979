"""A run's progress: `handle.watch()` follows a real run to its end (lines on stderr outside
Jupyter; in JupyterLab the live display is checked by tests/browser/test_jupyterlab.py)."""

from __future__ import annotations

from bear.progress import progress_html, progress_line


def test_watch_follows_a_run_to_its_final_state(demo_ws, capsys):
    handle = demo_ws.release_and_invoice(
        demo_ws.awaiting_release(currency="GBP"), user="ana@example.com", wait=False
    )
    run = handle.watch(every=0.05)
    assert run.finished and run == demo_ws.run(handle.id)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and lines[-1].startswith(f"run {run.id}: {run.status} — ")
    assert f"{run.released:,} released" in lines[-1]


def test_the_progress_display_shows_counts_and_escapes_text(demo_ws):
    run = demo_ws.release_and_invoice(demo_ws.awaiting_release(currency="EUR"), user="ana")
    shown = progress_html(run, 1.25)
    assert f"data-status='{run.status}'" in shown
    assert f"<progress value='{run.batches_done}' max='{max(run.batches, 1)}'" in shown
    assert f"{run.released:,} released" in shown and "1.2 s" in shown
    assert progress_line(run, 2.0).endswith("2.0 s")
    odd = type(run)(**{**run.__dict__, "status": "<b>odd</b>"})
    assert "<b>odd</b>" not in progress_html(odd, 0.0)
