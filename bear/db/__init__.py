"""Database access: opening a DuckDB file safely, the schema migrations, cursors per thread."""

from __future__ import annotations

from bear.db.connection import Database, open_database

__all__ = ["Database", "open_database"]
