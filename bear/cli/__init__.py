"""The ``bear`` command: admins' and automation's face of the same Workspace API.

Every command takes ``--db`` (default ``$BEAR_DB`` or ``data/bear.duckdb``). Errors are one
plain line on stderr and exit status 2 (1 for an unexpected failure); ``--json`` gives
machine-readable output, errors included: one object ``{"error", "type", …}`` on stdout.

``common`` holds what every command shares (opening the book, filters, printing),
``commands`` the commands, ``main`` the parser and the entry point.
"""

from bear.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
