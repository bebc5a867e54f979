"""CSV/Parquet import (all-or-nothing, row-level error report) and export of the same shapes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

KINDS = ("companies", "company_currencies", "accounting_periods", "accounts", "products", "projects",
         "events", "items")


def import_files(ws: Any, *, dry_run: bool = False, **files: str) -> dict[str, Any]:
    raise NotImplementedError("import is being written")


def export_files(ws: Any, out_dir: str | Path, fmt: str = "csv") -> dict[str, Path]:
    raise NotImplementedError("export is being written")
