"""Dashboard sign-in sessions: a random id in an HttpOnly cookie, kept in this process.

The id is 256 random bits; the server keeps only its SHA-256 with the user id and the time it
expires (idle ``IDLE_S``, absolute ``MAX_S``). Restarting the server signs everyone out.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time

COOKIE = "bear_session"
IDLE_S = 8 * 3600.0
MAX_S = 24 * 3600.0


def _key(sid: str) -> str:
    return hashlib.sha256(sid.encode("utf-8", "replace")).hexdigest()


class Sessions:
    """Session id -> user id, with idle and absolute expiry."""

    def __init__(self) -> None:
        self._by_key: dict[str, tuple[int, float, float]] = {}  # user id, created, last seen
        self._lock = threading.Lock()

    def create(self, user_id: int) -> str:
        sid = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            self._by_key[_key(sid)] = (int(user_id), now, now)
        return sid

    def user_id(self, sid: str | None) -> int | None:
        """The user of a live session, touching it; ``None`` for an unknown or expired one."""
        if not sid or len(sid) > 200:
            return None
        key, now = _key(sid), time.monotonic()
        with self._lock:
            hit = self._by_key.get(key)
            if hit is None:
                return None
            uid, created, seen = hit
            if now - seen > IDLE_S or now - created > MAX_S:
                del self._by_key[key]
                return None
            self._by_key[key] = (uid, created, now)
            return uid

    def drop(self, sid: str | None) -> None:
        if sid:
            with self._lock:
                self._by_key.pop(_key(sid), None)

    def drop_user(self, user_id: int) -> None:
        with self._lock:
            for key, (uid, _, _) in list(self._by_key.items()):
                if uid == user_id:
                    del self._by_key[key]
