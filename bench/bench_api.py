"""The HTTP API against the local workspace, in the same run.

Seeds a demo book (default 1,000,000 events), then times the same calls two ways: on a
local ``Workspace`` (the floor) and through ``bear serve``'s API over loopback (a served
subprocess with an admin token; tables as Arrow IPC, as the remote workspace reads them):

* a preview of every awaiting event (aim: remote ≤ 1.2× local),
* a page of 50 rows (aim: ≤ 50 ms),

then read requests per second with 20 concurrent clients (a bounded httpx loop, loopback only).

    .venv/bin/python bench/bench_api.py [--events 1000000] [--repeat 5] [--db PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

import bear
from bear.wire import ARROW, from_arrow_bytes, preview_from_arrow


def median_ms(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bear.cli", "serve", "--db", str(path), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("bear serve did not start") from None
            time.sleep(0.2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--db", help="an existing book to copy instead of seeding one")
    args = ap.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bear-bench-api-"))
    path = folder / "book.duckdb"
    try:
        if args.db:
            shutil.copy(args.db, path)
        else:
            print(f"seeding {args.events:,} events …", flush=True)
            with bear.connect(path) as ws:
                bear.demo.seed(ws, events=args.events, seed=7)
        with bear.connect(path) as ws:
            if ws.team.count(role="admin") == 0:
                ws.team.add("bench", "admin", actor="bench")
            _, token = ws.team.create_token("bench", actor="bench")
            sel = ws.awaiting_release()
            n = len(sel)
            local_preview = median_ms(lambda: ws.preview(sel, full=True), args.repeat)
            local_page = median_ms(lambda: ws.page(sel, 500_000 % max(n, 1), 50), args.repeat)

        proc, url = serve(path)
        try:
            headers = {"Authorization": f"Bearer {token}", "Accept": ARROW}
            with httpx.Client(base_url=url, headers=headers, timeout=600) as client:
                body = {"kind": "awaiting_release", "full": True}

                def remote_preview() -> None:
                    r = client.post("/api/v1/preview", json=body)
                    r.raise_for_status()
                    preview_from_arrow(r.content)

                def remote_page() -> None:
                    r = client.post(
                        "/api/v1/events/page",
                        json={
                            "kind": "awaiting_release",
                            "offset": 500_000 % max(n, 1),
                            "limit": 50,
                        },
                    )
                    r.raise_for_status()
                    from_arrow_bytes(r.content)

                remote_preview()  # warm the server's eligibility cache as the local run did
                api_preview = median_ms(remote_preview, args.repeat)
                api_page = median_ms(remote_page, args.repeat)

            done = [0] * args.clients
            stop = time.monotonic() + args.seconds

            def reader(i: int) -> None:
                with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
                    while time.monotonic() < stop:
                        c.post(
                            "/api/v1/events/page",
                            json={"kind": "awaiting_release", "offset": (i * 997) % 10_000},
                        ).raise_for_status()
                        done[i] += 1

            threads = [threading.Thread(target=reader, args=(i,)) for i in range(args.clients)]
            t0 = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            rps = sum(done) / (time.monotonic() - t0)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)

        print(f"\nawaiting events: {n:,}")
        print(f"{'measure':<34}{'API':>12}{'local (floor)':>16}{'ratio':>8}   aim")
        print(
            f"{'preview, all awaiting (ms)':<34}{api_preview:>12.0f}{local_preview:>16.0f}"
            f"{api_preview / local_preview:>8.2f}   ≤ 1.2×"
        )
        print(
            f"{'page of 50 rows (ms)':<34}{api_page:>12.1f}{local_page:>16.1f}"
            f"{api_page / max(local_page, 0.001):>8.2f}   ≤ 50 ms"
        )
        print(f"{'read requests/s, ' + str(args.clients) + ' clients':<34}{rps:>12.0f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
