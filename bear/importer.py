"""The former home of import and export, kept so ``from bear.importer import …`` still works.

Import and export live in ``bear.io`` and are called through the workspace
(``ws.import_files``, ``ws.export_files``); these two functions take the workspace first, as
they always did, and forward to it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from bear.io import (
    CATEGORIES,
    FORMATS,
    KINDS,
    MAX_PROBLEMS,
    SHAPES,
    Check,
    Column,
    ImportReport,
    Shape,
)


class _Workspace(Protocol):
    """What these functions need of a workspace (named structurally: the workspace imports
    ``bear.io``, and nothing under it imports the workspace)."""

    def import_files(
        self, *, dry_run: bool = False, **files: str | os.PathLike[str]
    ) -> ImportReport: ...

    def export_files(
        self, out_dir: str | os.PathLike[str], fmt: str = "csv", *, raw: bool = False
    ) -> dict[str, Path]: ...


__all__ = [
    "CATEGORIES",
    "FORMATS",
    "KINDS",
    "MAX_PROBLEMS",
    "SHAPES",
    "Check",
    "Column",
    "Shape",
    "export_files",
    "import_files",
]


def import_files(
    ws: _Workspace, *, dry_run: bool = False, **files: str | os.PathLike[str]
) -> ImportReport:
    """``ws.import_files(dry_run=dry_run, **files)``."""
    return ws.import_files(dry_run=dry_run, **files)


def export_files(
    ws: _Workspace, out_dir: str | os.PathLike[str], fmt: str = "csv", *, raw: bool = False
) -> dict[str, Path]:
    """``ws.export_files(out_dir, fmt=fmt, raw=raw)``."""
    return ws.export_files(out_dir, fmt=fmt, raw=raw)
