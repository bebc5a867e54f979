"""The note ``bear serve`` leaves beside the book it serves: ``<book>.serve.json``.

It holds the server's URL and process id, so that another process refused the file
(``DatabaseLockedError``) can say where the book is served and how to use it there. The note
is written when the server starts and removed when it stops; one left by a server that was
killed is ignored, because its process id no longer matches the holder of the file.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

SUFFIX = ".serve.json"


def note_path(book: str | os.PathLike[str]) -> Path:
    return Path(str(book) + SUFFIX)


def write_note(book: str | os.PathLike[str], url: str) -> Path:
    """Announce that this process serves ``book`` at ``url``; returns the note's path."""
    path = note_path(book)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"url": url, "pid": os.getpid()}) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def remove_note(book: str | os.PathLike[str]) -> None:
    """Remove the note, if it is this process's own."""
    path = note_path(book)
    if _pid_of(path) == os.getpid():
        path.unlink(missing_ok=True)


def _pid_of(path: Path) -> int | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    pid = data.get("pid") if isinstance(data, dict) else None
    return pid if isinstance(pid, int) and not isinstance(pid, bool) else None


def served_by(book: str | os.PathLike[str], pid: int | None = None) -> str | None:
    """The URL ``book`` is served at, if its note says so (and names process ``pid``, when
    given: the process that holds the file)."""
    path = note_path(book)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    url, noted = data.get("url"), data.get("pid")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return None
    if pid is not None and noted != pid:
        return None
    return url
