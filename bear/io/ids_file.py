"""Reading a file of billing event ids, as ``bear preview|run|events --ids-file`` take them.

One id per line, or a CSV whose first column is the id; an ``id`` / ``billing_event_id``
header, blank lines and ``#`` comments are skipped. The file is checked before a byte of it is
trusted: it must be a regular file (not a folder, a device or a pipe), at most
``MAX_IDS_FILE_BYTES``, UTF-8 text, and every token a whole number. Whether each id is in
range and in the book is the workspace's check, as for any id list.
"""

from __future__ import annotations

import re
from pathlib import Path

from bear.errors import BearError

__all__ = ["MAX_IDS_FILE_BYTES", "read_ids_file"]

MAX_IDS_FILE_BYTES = 256 * 2**20
"""The largest ids file read (some 20 million ids); a larger one is refused unread."""
_ID_TOKEN = re.compile(r"[+-]?[0-9]{1,20}")


def read_ids_file(path: str) -> list[int]:
    """The billing event ids of a file: one per line, or a CSV whose first column is the id
    (an ``id`` / ``billing_event_id`` header and ``#`` comments are skipped). A missing,
    unreadable, special or oversized file, one that is not UTF-8 text, and a token that is not
    a whole number raise ``BearError`` naming the file (and line)."""
    p = Path(path)
    where = f"ids file {path}"
    try:
        if not p.exists():
            raise BearError(f"{where}: cannot be read (no such file)")
        info = p.stat()
        if p.is_dir():
            raise BearError(f"{where}: cannot be read (a folder, not a file)")
        if not p.is_file():
            raise BearError(f"{where}: cannot be read (not a regular file)")
        if info.st_size > MAX_IDS_FILE_BYTES:
            raise BearError(f"{where}: larger than {MAX_IDS_FILE_BYTES // 2**20} MB")
        data = p.read_bytes()
    except OSError as exc:
        raise BearError(f"{where}: cannot be read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise BearError(
            f"{where}, line {line}: not UTF-8 text (one id per line expected)"
        ) from None
    ids: list[int] = []
    for n, line in enumerate(text.splitlines(), 1):
        token = line.split(",")[0].strip()
        if not token or token.startswith("#"):
            continue
        if n == 1 and token.lower() in ("id", "billing_event_id"):
            continue
        if not _ID_TOKEN.fullmatch(token):
            raise BearError(f"{where}, line {n}: {token[:40]!r} is not a billing event id")
        ids.append(int(token))
    if not ids:
        raise BearError(f"{where}: no ids in it")
    return ids
