"""Who holds a database file: the process DuckDB's lock error names, in words a person
recognises — a Jupyter kernel, ``bear serve``, another ``bear`` command, or a program by name.

DuckDB says only ``Conflicting lock is held in <executable> (PID n)``; the process's command
line (``/proc/<pid>/cmdline`` on Linux, ``ps`` elsewhere) says what it is. Nothing here is
trusted for more than words: a process that is gone or cannot be read is "process n".
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SHOWN = 80  # characters of a command line worth showing


@dataclass(frozen=True)
class Holder:
    """The process holding a file. ``kind``: ``jupyter``, ``serve``, ``bear``, ``program``
    or ``unknown``; ``words``: how a message names it; ``advice``: what to do about it."""

    pid: int | None
    kind: str
    words: str
    command: str | None = None

    @property
    def advice(self) -> str:
        if self.kind == "jupyter":
            return (
                "close the workspace in that notebook (ws.close()) or shut its kernel down, "
                "and try again"
            )
        if self.kind in ("bear", "serve"):
            return "wait for that command to finish, or stop it, and try again"
        return "stop that process and try again"


def command_line(pid: int) -> list[str] | None:
    """The arguments process ``pid`` was started with, or None when they cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        raw = b""
    if raw:
        return [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    if sys.platform.startswith("linux") or os.name == "nt" or not shutil.which("ps"):
        return None
    try:  # macOS and the BSDs: no /proc
        out = subprocess.run(
            ["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, timeout=2
        )
    except (OSError, subprocess.SubprocessError):
        return None
    text = out.stdout.strip()
    return text.split() if out.returncode == 0 and text else None


def _short(words: list[str]) -> str:
    text = " ".join(" ".join(words).split())
    return text if len(text) <= SHOWN else text[: SHOWN - 1] + "…"


def _bear_args(argv: list[str]) -> list[str] | None:
    """The arguments of a ``bear`` command (``bear …``, ``python …/bin/bear …``,
    ``python -m bear.cli …``), or None when ``argv`` is not one."""
    for i, arg in enumerate(argv[:3]):
        if os.path.basename(arg) == "bear":
            return argv[i + 1 :]
        if arg == "-m" and i + 1 < len(argv) and argv[i + 1] in ("bear", "bear.cli"):
            return argv[i + 2 :]
    return None


def describe(pid: int | None, argv: list[str] | None = None) -> Holder:
    """Who process ``pid`` is (``argv``: its command line, read when not given)."""
    if pid is None:
        return Holder(None, "unknown", "another process")
    if argv is None:
        argv = command_line(pid)
    if not argv:
        return Holder(pid, "unknown", f"process {pid}")
    command = _short(argv)
    if any(
        a in ("ipykernel_launcher", "ipykernel") or a.endswith(("ipykernel_launcher.py",))
        for a in argv
    ):
        return Holder(pid, "jupyter", f"a Jupyter kernel (pid {pid})", command)
    args = _bear_args(argv)
    if args is not None:
        words = [a for a in args if not a.startswith("-")]
        if words[:1] == ["serve"]:
            return Holder(pid, "serve", f"bear serve (pid {pid})", command)
        return Holder(
            pid, "bear", f"another bear command (pid {pid}: {_short(['bear', *args])})", command
        )
    program = os.path.basename(argv[0]) or argv[0]
    if program.startswith("python") and len(argv) > 1:
        # python -c …, python -m module, python script.py: what a person would recognise
        first = argv[1]
        if first == "-c":
            program += " -c …"
        elif first == "-m" and len(argv) > 2:
            program += f" -m {argv[2]}"
        elif not first.startswith("-"):
            program += f" {os.path.basename(first)}"
    return Holder(pid, "program", f"{_short([program])} (pid {pid})", command)
