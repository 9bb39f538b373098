"""examples/rate_limiter.py runs: two workers enforce one per-client limit from a shared Table and Atomic."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "rate_limiter.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def rate_limiter() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLE)], env={**os.environ, "PORT": str(port)}, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
                assert time.monotonic() < deadline, "the example did not listen within 10 s"
                time.sleep(0.02)
        yield process, port
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def exchange(port: int, source: str, lines: int) -> list[str]:
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as sock:
        stream = sock.makefile("rwb")
        replies = []
        for i in range(lines):
            stream.write(f"line {i}\n".encode())
            stream.flush()
            replies.append(stream.readline().decode())
        return replies


def test_the_rate_limiter_example_counts_a_clients_lines_across_connections_and_workers(rate_limiter):
    process, port = rate_limiter
    for source in ("127.0.0.2", "127.0.0.3"):  # the second only if a 10 s window ended in the middle
        window = int(time.time()) // 10
        replies = exchange(port, source, 3) + exchange(port, source, 4)
        if int(time.time()) // 10 == window:
            break
    assert [r.split()[:2] for r in replies[:5]] == [["ok", f"{n}/5"] for n in range(1, 6)]
    assert all(r.startswith("slow down") for r in replies[5:])
    served = [int(r.split(", ")[1].split()[0]) for r in replies[:5]]
    assert served == sorted(served) and len(set(served)) == 5  # the global Atomic, one add per line served

    process.send_signal(signal.SIGINT)  # Ctrl-C
    assert process.wait(10) == 0
