"""AccessLog: lines reach the file or the logger from a background thread; the caller never waits for them."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from pyswoole.ops.access_log import AccessLog, AccessRecord


def request(number: int) -> AccessRecord:
    return AccessRecord("127.0.0.1", "GET", f"/r/{number}", "1.1", 200, 5, [], [], time.time(), 0.0005)


def test_lines_appear_in_the_file_in_order(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    access_log = AccessLog('%(h)s "%(r)s" %(s)s %(b)s', str(path))
    for number in range(100):
        access_log.log(request(number))
    assert access_log.close()
    lines = path.read_text().splitlines()
    assert lines == [f'127.0.0.1 "GET /r/{number} HTTP/1.1" 200 5' for number in range(100)]
    assert access_log.dropped == 0


def test_the_caller_never_blocks_on_a_stalled_fifo_and_counts_what_it_drops(tmp_path: Path) -> None:
    fifo = tmp_path / "access.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader that reads nothing until the end
    try:
        access_log = AccessLog("%(U)s", str(fifo), max_queue=1000)
        total = 20_000  # far more than the pipe (64 KiB) and the queue can hold
        slowest = 0.0
        for number in range(total):
            started = time.perf_counter()
            access_log.log(request(number))
            slowest = max(slowest, time.perf_counter() - started)
        assert access_log.dropped > 0
        assert slowest < 0.1, f"a log() call took {slowest:.3f}s"

        os.set_blocking(reader, True)
        received = bytearray()

        def read_to_eof() -> None:
            while chunk := os.read(reader, 65536):
                received.extend(chunk)

        drain = threading.Thread(target=read_to_eof)
        drain.start()
        assert access_log.close(timeout=10)  # closing the write end lets the reader see EOF
        drain.join(10)
        assert not drain.is_alive()
    finally:
        os.close(reader)
    numbers = [int(line.rsplit("/", 1)[1]) for line in received.decode().splitlines()]
    assert numbers == sorted(numbers)  # what got through is in order, with no torn line
    assert len(numbers) + access_log.dropped == total


def test_without_a_path_lines_go_to_the_pyswoole_access_logger() -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    access_logger = logging.getLogger("pyswoole.access")
    access_logger.addHandler(handler)
    level = access_logger.level
    access_logger.setLevel(logging.INFO)
    try:
        access_log = AccessLog("%(m)s %(U)s %(s)s")
        access_log.log(request(7))
        assert access_log.close()
    finally:
        access_logger.removeHandler(handler)
        access_logger.setLevel(level)
    assert [record.getMessage() for record in records] == ["GET /r/7 200"]
    assert records[0].threadName == "pyswoole-access-log"


def test_reopen_follows_logrotate(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    access_log = AccessLog("%(U)s", str(path))
    access_log.log(request(1))
    deadline = time.monotonic() + 5
    while not path.read_text() and time.monotonic() < deadline:
        time.sleep(0.01)
    path.rename(tmp_path / "access.log.1")
    access_log.reopen()
    access_log.log(request(2))
    assert access_log.close()
    assert (tmp_path / "access.log.1").read_text() == "/r/1\n"
    assert path.read_text() == "/r/2\n"


def test_a_bad_path_fails_at_construction(tmp_path: Path) -> None:
    try:
        AccessLog("%(h)s", str(tmp_path / "missing" / "access.log"))
    except FileNotFoundError:
        return
    raise AssertionError("no error for a path in a missing directory")
