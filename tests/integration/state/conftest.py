"""The ``children`` fixture: forked processes that share what the test made before forking them.

Each child runs ``target(ready)`` and exits with 0, or 1 after printing its exception; ``ready()`` tells the test
(``wait_ready()``) that the child reached the point the test waits for. At teardown every child still running is
killed and every child is reaped, whatever the test did.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator

import pytest


class Child:
    def __init__(self, target: Callable[[Callable[[], None]], object]) -> None:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's coverage is not collected
            os.close(read_end)
            code = 0
            try:
                target(lambda: os.write(write_end, b"!") and None)
            except BaseException:
                traceback.print_exc()
                sys.stderr.flush()
                code = 1
            os._exit(code)
        os.close(write_end)
        self.pid = pid
        self._ready = read_end
        self.status: int | None = None

    def wait_ready(self, timeout: float = 10.0) -> None:
        readable, _, _ = select.select([self._ready], [], [], timeout)
        assert readable, f"child {self.pid} not ready after {timeout} s"
        assert os.read(self._ready, 1) == b"!", f"child {self.pid} exited before it was ready"

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)

    def join(self, timeout: float = 30.0) -> int:
        """The child's exit code (negative: the signal that killed it); waits for it."""
        deadline = time.monotonic() + timeout
        while self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
            elif time.monotonic() > deadline:
                raise AssertionError(f"child {self.pid} still running after {timeout} s")
            else:
                time.sleep(0.005)  # polling waitpid: a child has no fd to wait on
        return self.status

    def close(self) -> None:
        if self.status is None:
            try:
                self.kill()
            except ProcessLookupError:
                pass
            self.join()
        os.close(self._ready)


class Children:
    def __init__(self) -> None:
        self.started: list[Child] = []

    def start(self, target: Callable[[Callable[[], None]], object]) -> Child:
        child = Child(target)
        self.started.append(child)
        return child


@pytest.fixture
def children() -> Iterator[Children]:
    kids = Children()
    yield kids
    for child in kids.started:
        child.close()
