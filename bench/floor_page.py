"""The floor of a dashboard load: a minimal page served the way ``bear serve`` serves BEAR's.

One FastListTemplate holding one Tabulator of 50 rows × 20 columns, mounted on FastAPI with
``panel.io.fastapi`` and run by uvicorn on 127.0.0.1, as ``bear serve`` does, with no data
behind it. ``bench/bench_browser.py`` starts it as a subprocess and times its load in a fresh
browser context beside BEAR's, so the dashboard's figures read against what the same
machine, browser and stack need for a page at all.

    .venv/bin/python bench/floor_page.py --port 5077
"""

from __future__ import annotations

import argparse


def page() -> object:
    import pandas as pd
    import panel as pn

    pn.extension("tabulator")
    frame = pd.DataFrame(
        {f"column_{c}": [f"row {r} value {c}" for r in range(50)] for c in range(20)}
    )
    table = pn.widgets.Tabulator(frame, pagination="remote", page_size=50, disabled=True)
    return pn.template.FastListTemplate(
        title="Floor",
        sidebar=[pn.widgets.TextInput(name="Search")],
        main=[pn.pane.HTML("<span>Page 1 of 1</span>"), table],
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    import uvicorn
    from fastapi import FastAPI
    from panel.io.fastapi import add_applications

    app = FastAPI()
    add_applications({"/": page}, app=app, title="Floor")
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
