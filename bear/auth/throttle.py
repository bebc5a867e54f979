"""Failed sign-ins counted per key (a user name, a client address) in a sliding window."""

from __future__ import annotations

import collections
import math
import threading
import time

from bear.errors import ThrottledError


class Throttle:
    """At most ``limit`` failures per key within ``window`` seconds; then every attempt for that
    key is refused until the oldest failure leaves the window."""

    def __init__(self, limit: int = 5, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, collections.deque[float]] = collections.defaultdict(
            collections.deque
        )
        self._lock = threading.Lock()

    def _left(self, key: str, now: float) -> collections.deque[float]:
        stamps = self._failures[key]
        while stamps and stamps[0] <= now - self.window:
            stamps.popleft()
        return stamps

    def check(self, *keys: str) -> None:
        """Raise ``ThrottledError`` (with ``retry_after``) if any key is over its limit."""
        now = time.monotonic()
        with self._lock:
            waits = []
            for key in keys:
                stamps = self._left(key, now)
                if len(stamps) >= self.limit:
                    waits.append(stamps[0] + self.window - now)
        if waits:
            retry = max(1, math.ceil(max(waits)))
            raise ThrottledError(
                f"too many failed sign-ins; try again in {retry} s", retry_after=retry
            )

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._left(key, now).append(now)

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)
