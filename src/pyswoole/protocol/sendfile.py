"""``sendfile()``: a byte range of a file written to a connection, zero-copy where the socket allows it.

A :class:`FileSender` moves one range. On a plain socket it calls ``os.sendfile`` (the kernel copies from the
page cache to the socket; the bytes never enter Python); on a TLS transport it has to read and write chunks.
It works the same under asyncio and uvloop (whose ``loop.sendfile`` is not implemented): it waits for the
socket's writability on a duplicate of the socket's descriptor, so the transport keeps its own registration.

Invariant: the file's bytes keep their place in the connection's output. The sender starts only once the
transport's write buffer is empty, and nothing else writes to the transport until it is done: the
:class:`~pyswoole.reactor.Connection` queues what is sent meanwhile and writes it afterwards.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

COPY_CHUNK = 256 * 1024  # per read+write on a TLS transport


def open_file(path: str) -> int:
    """A descriptor to hand :class:`FileSender` (or a connection's ``send_file``); OSError if it cannot be read.
    Opened at the ``sendfile()`` call, not when the file's turn on the socket comes: deleted or replaced
    meanwhile, it still goes out as it was at the call."""
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


class FileSender:
    """Moves ``length`` bytes of ``file_fd`` from ``offset`` to the transport's socket, then calls ``on_done``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        transport: asyncio.Transport,
        file_fd: int,
        offset: int,
        length: int,
        on_progress: Callable[[], None],
        on_done: Callable[[OSError | None], None],
    ) -> None:
        self._loop = loop
        self._transport = transport
        self._offset = offset
        self._remaining = length
        self._on_progress = on_progress
        self._on_done = on_done
        self._zero_copy = transport.get_extra_info("sslcontext") is None
        self._file_fd = file_fd  # ours from here on: closed when done, cancelled, or if this raises
        try:
            sock = transport.get_extra_info("socket")
            self._sock_fd = os.dup(sock.fileno())
        except (AttributeError, OSError):
            os.close(self._file_fd)
            raise
        loop.add_writer(self._sock_fd, self._on_writable)

    def cancel(self) -> None:
        """Stop where it is; the file and the duplicate descriptor are released (``on_done`` is not called)."""
        if self._sock_fd >= 0:
            self._loop.remove_writer(self._sock_fd)
            os.close(self._sock_fd)
            os.close(self._file_fd)
            self._sock_fd = -1

    def _on_writable(self) -> None:
        if self._transport.get_write_buffer_size():
            return  # earlier output first: the transport flushes it on this same writability
        try:
            if self._zero_copy:
                while self._remaining:
                    sent = os.sendfile(self._sock_fd, self._file_fd, self._offset, self._remaining)
                    if not sent:
                        raise OSError(0, "the file is shorter than the range to send")
                    self._advance(sent)
            else:
                chunk = os.pread(self._file_fd, min(COPY_CHUNK, self._remaining), self._offset)
                if not chunk:
                    raise OSError(0, "the file is shorter than the range to send")
                self._transport.write(chunk)
                self._advance(len(chunk))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._finish(exc)
            return
        if not self._remaining:
            self._finish(None)

    def _advance(self, sent: int) -> None:
        self._offset += sent
        self._remaining -= sent
        self._on_progress()

    def _finish(self, error: OSError | None) -> None:
        self.cancel()
        self._on_done(error)
