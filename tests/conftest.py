"""Shared fixtures: fresh databases (in memory or on disk), seeded demo books, a real SMTP server."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

import bear


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ws():
    """An empty in-memory workspace."""
    w = bear.connect(":memory:")
    yield w
    w.close()


@pytest.fixture(scope="session")
def demo_path(tmp_path_factory) -> Path:
    """A seeded demo database file (5,000 events) built once; copy it before writing."""
    path = tmp_path_factory.mktemp("demo") / "demo.duckdb"
    with bear.connect(path) as w:
        bear.demo.seed(w, events=5_000, seed=7)
    return path


@pytest.fixture
def demo_ws(demo_path, tmp_path):
    """A private copy of the seeded demo database, opened."""
    import shutil

    path = tmp_path / "book.duckdb"
    shutil.copy(demo_path, path)
    w = bear.connect(path)
    yield w
    w.close()


class _Inbox:
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


@pytest.fixture
def smtp_server():
    """A real SMTP server (aiosmtpd) on 127.0.0.1; yields (host, port, inbox)."""
    from aiosmtpd.controller import Controller

    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield "127.0.0.1", port, inbox
    finally:
        controller.stop()
