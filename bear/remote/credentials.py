"""API tokens stored by ``bear login``, one per server, in the user's config folder.

The file is ``$XDG_CONFIG_HOME/bear/credentials.json`` (``~/.config/bear/credentials.json``
when the variable is unset), readable by its owner only: the folder is created ``0700`` and
the file written ``0600`` (through a new file renamed over the old one, so a reader never
sees half of it). It maps a server URL (``server_url``) to its token and the user it
belongs to. ``bear logout`` removes an entry.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

from bear.errors import BearError
from bear.remote.http import server_url

log = logging.getLogger(__name__)

FILE_NAME = "credentials.json"


def config_dir() -> Path:
    """BEAR's folder in the user's config directory (XDG base directory rules)."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "bear"


def credentials_path() -> Path:
    return config_dir() / FILE_NAME


def _load(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {"servers": {}}
    except OSError as exc:
        raise BearError(f"cannot read the stored tokens in {str(path)!r}: {exc}") from None
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s is readable by others: chmod 600 it", path)
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("servers"), dict):
        raise BearError(
            f"the stored tokens in {str(path)!r} are unreadable: delete the file and sign in "
            "again with bear login"
        )
    return data


def _save(path: Path, data: dict[str, Any]) -> None:
    folder = path.parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    tmp = folder / f".{FILE_NAME}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def stored_token(url: str) -> str | None:
    """The token ``bear login`` stored for server ``url``, if any."""
    entry = _load(credentials_path())["servers"].get(server_url(url))
    token = entry.get("token") if isinstance(entry, dict) else None
    return token if isinstance(token, str) and token else None


def store_token(url: str, token: str, user: str) -> Path:
    """Remember ``token`` (of ``user``) for server ``url``; returns the file written."""
    path = credentials_path()
    data = _load(path)
    data["servers"][server_url(url)] = {
        "token": token,
        "user": user,
        "saved_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    _save(path, data)
    return path


def forget_token(url: str) -> bool:
    """Remove the token stored for server ``url``; ``False`` when there was none."""
    path = credentials_path()
    data = _load(path)
    if data["servers"].pop(server_url(url), None) is None:
        return False
    _save(path, data)
    return True
