"""User processes: ``server.add_process(Process(callback))``, started and kept alive by the manager.

A user process runs ``callback(process)`` in a child of the manager, with the worker id that follows the
task workers'; when it returns or dies, the manager starts it again. ``write``/``read`` talk over a
socketpair made when the Process is built, so the process that built it (the master) and the child can
exchange data; inside the child, ``server.send()`` and ``server.send_message()`` work as from a worker.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import Callable
from typing import Any

PIPE_STREAM, PIPE_DGRAM = 1, 2


class Process:
    def __init__(
        self,
        callback: Callable[[Process], Any],
        redirect_stdin_stdout: bool = False,
        pipe_type: int = PIPE_DGRAM,
        enable_coroutine: bool = False,
    ) -> None:
        if not callable(callback):
            raise TypeError(f"Process callback must be callable, not {type(callback).__name__}")
        if pipe_type not in (0, PIPE_STREAM, PIPE_DGRAM):
            raise ValueError(f"pipe_type must be 0 (none), 1 (stream) or 2 (datagram), not {pipe_type!r}")
        self.callback = callback
        self.redirect_stdin_stdout = redirect_stdin_stdout
        self.pipe_type = pipe_type
        self.enable_coroutine = enable_coroutine
        self.id = -1
        self.pid = 0
        self._parent_end: socket.socket | None = None
        self._child_end: socket.socket | None = None
        if pipe_type:
            kind = socket.SOCK_STREAM if pipe_type == PIPE_STREAM else socket.SOCK_DGRAM
            self._parent_end, self._child_end = socket.socketpair(socket.AF_UNIX, kind)
        self._in_child = False

    @property
    def _end(self) -> socket.socket:
        end = self._child_end if self._in_child else self._parent_end
        if end is None:
            raise ValueError("this Process was built with pipe_type=0: it has no pipe")
        return end

    def write(self, data: bytes | str) -> int:
        """Send data to the other side (the child if called in the parent, and the reverse)."""
        return self._end.send(data.encode() if isinstance(data, str) else data)

    def read(self, size: int = 65536) -> bytes:
        """Block until the other side writes; return what it wrote."""
        return self._end.recv(size)

    def exit(self, code: int = 0) -> None:
        sys.exit(code)

    def run(self, process_id: int) -> None:
        """Run the callback in this (forked) child."""
        self._in_child = True
        self.id = process_id
        self.pid = os.getpid()
        if self.redirect_stdin_stdout and self._child_end is not None:
            os.dup2(self._child_end.fileno(), 0)
            os.dup2(self._child_end.fileno(), 1)
        result = self.callback(self)
        if asyncio.iscoroutine(result):
            asyncio.run(result)
