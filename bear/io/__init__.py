"""Import and export of a BEAR book as CSV or Parquet files, one file per kind of row.

``import_files(db, events=…, items=…)`` is all or nothing and reports every problem by file,
row and column; ``export_files(db, out_dir)`` writes every kind in the same shapes, so a raw
CSV or a Parquet export imports back (a default CSV export neutralises formula-like text for
spreadsheets: ``FORMULA_START``). The shapes derive from the schema declaration (``bear.db.schema``).
Faces call these through the workspace (``ws.import_files``, ``ws.export_files``); this
package imports nothing above ``bear.db``.
"""

from __future__ import annotations

from bear.io.export import FORMATS, FORMULA_START, export_files
from bear.io.ids_file import MAX_IDS_FILE_BYTES, read_ids_file
from bear.io.importer import ImportReport, import_files
from bear.io.shapes import CATEGORIES, KINDS, SHAPES, Check, Column, Shape
from bear.io.validate import MAX_PROBLEMS

__all__ = [
    "CATEGORIES",
    "FORMATS",
    "FORMULA_START",
    "KINDS",
    "MAX_IDS_FILE_BYTES",
    "MAX_PROBLEMS",
    "SHAPES",
    "Check",
    "Column",
    "ImportReport",
    "Shape",
    "export_files",
    "import_files",
    "read_ids_file",
]
