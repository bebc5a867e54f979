"""Small process and network helpers for tests (a module of its own: conftest modules share
one name): a free port, the inbox of the test SMTP servers, `bear serve` as a subprocess, the
CLI as a subprocess, and stopping a process group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    """What a test SMTP server (aiosmtpd) received: (recipients, message) pairs."""

    def __init__(self) -> None:
        self.messages: list = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 — aiosmtpd's name
        from email import message_from_bytes
        from email.policy import default

        msg = message_from_bytes(envelope.content, policy=default)
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), msg))
        return "250 OK"

    def wait_for(self, n: int, timeout: float = 20.0) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= n:
                    return list(self.messages)
            time.sleep(0.05)
        raise AssertionError(f"expected {n} e-mails, got {len(self.messages)}")


def listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def serving(
    path: Path, *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> Iterator[str]:
    """`bear serve --db path *args` on a free 127.0.0.1 port; yields its URL, stops it after
    (SIGTERM, then SIGKILL). Its output goes to ``serve.log`` beside the book. ``env`` adds
    to (or overrides) the environment, e.g. ``{"PYTHONWARNINGS": "default"}``."""
    port = free_port()
    env = {
        **os.environ,
        "BEAR_DISABLE_PLUGIN_AUTOLOAD": "1",
        "PYTHONWARNINGS": "ignore",
        **(env or {}),
    }
    log_path = path.parent / "serve.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bear.cli", "serve", "--db", str(path), "--port", str(port), *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"bear serve exited: {log_path.read_text()}")
            if listening(port):
                break
            if time.monotonic() > deadline:
                raise AssertionError("bear serve did not start listening in time")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)
        log.close()


def stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    """Stop a process started with ``start_new_session=True`` and its children: SIGTERM to the
    group, then SIGKILL if it has not gone within ``timeout`` seconds."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


ROOT = Path(__file__).resolve().parents[1]


def bear_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``bear *args`` as a subprocess from the project root (without ``$BEAR_DB``; ``env`` on
    top of this process's environment): its exit status, stdout and stderr as text."""
    full = {k: v for k, v in os.environ.items() if k != "BEAR_DB"}
    return subprocess.run(
        [sys.executable, "-m", "bear.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**full, **env},
    )
