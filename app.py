"""`panel serve app.py` entry point: the dashboard for the database in $BEAR_DB."""

from bear.ui.server import create_app

create_app().servable(title="BEAR")
