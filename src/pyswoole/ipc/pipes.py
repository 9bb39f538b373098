"""Worker pipes: one AF_UNIX datagram socketpair per worker slot, made before the first fork.

Every incarnation of a worker slot inherits the same pair, so a replacement worker is reachable at the same
address as the one it replaces. The worker reads its *worker end*; anyone else reaches it by writing to the
*master end*. Datagrams are atomic, so several processes may write to one pipe at once.

Writers with an event loop never block: a datagram the kernel refuses for now waits in a bounded queue that
is flushed when the pipe becomes writable. They also batch: the small messages written during one pass of
the loop travel together in one datagram, sent at the end of the pass, which saves a send and a receive
per message under load (the reader splits them with ``Reassembler.feed_batch``). Writers without a loop (the
manager) block, with a timeout.
"""

from __future__ import annotations

import asyncio
import fcntl
import socket
import struct
import termios
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final

from ..compiled import unchecked
from ..log import logger
from . import codec

PIPE_BUFFER: Final = 8 * 1024 * 1024
MAX_QUEUED_BYTES: Final = 64 * 1024 * 1024  # per destination, for non-blocking writers
BLOCKING_TIMEOUT: Final = 5.0
# Messages per batch. Smaller batches let the reader start earlier (the stages of a request overlap), bigger
# ones save syscalls and wake-ups. PROCESS-mode echo, 50 clients, against 8: 16 gave 1.26x the round trips,
# 32 about the same as 16, 3 0.87x, unbounded 0.83x (the clients then move in lock-step, as one wave).
MAX_BATCH: Final = 16
_NO_SIZE: Final = bytes(4)  # FIONREAD's int, when nothing is queued
# ioctl() is given a bytearray to write its int into: given bytes, it first tries them as a writable buffer and
# raises (and formats, and clears) an error inside CPython every time, which doubled the call's cost.
_MAX_DATAGRAM: Final = codec.MAX_DATAGRAM


def _pipe() -> tuple[socket.socket, socket.socket]:
    ends = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for end in ends:
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            try:
                end.setsockopt(socket.SOL_SOCKET, option, PIPE_BUFFER)
            except OSError:
                pass
        end.setblocking(False)
    return ends


class WorkerPipes:
    """The pipes of every worker slot: event workers first, then task workers (Swoole's worker ids).

    With task workers there are also a result pipe per event worker, for the replies to a blocking
    ``task_wait``, and one shared task queue that every task worker reads (``task_ipc_mode`` 3). In PROCESS
    mode each reactor thread has a file channel too: the open files of ``sendfile`` (``files.py``).
    """

    def __init__(self, worker_num: int, task_worker_num: int = 0, reactor_num: int = 0) -> None:
        pairs = [_pipe() for _ in range(worker_num + task_worker_num)]
        self.master_ends = [master_end for master_end, _ in pairs]
        self.worker_ends = [worker_end for _, worker_end in pairs]
        results = [_pipe() for _ in range(worker_num)] if task_worker_num else []
        self.result_writers = [writer for writer, _ in results]
        self.result_ends = [reader for _, reader in results]
        self.task_queue: socket.socket | None = None
        self.task_queue_reader: socket.socket | None = None
        if task_worker_num:
            self.task_queue, self.task_queue_reader = _pipe()
        channels = [_pipe() for _ in range(reactor_num)]
        self.file_readers = [reader for reader, _ in channels]  # by reactor_id: the reactor thread's end
        self.file_writers = [writer for _, writer in channels]  # by reactor_id: the workers' end

    def close(self) -> None:
        for end in (self.master_ends + self.worker_ends + self.result_writers + self.result_ends + self.file_readers
                    + self.file_writers):  # fmt: skip
            end.close()
        for queue_end in (self.task_queue, self.task_queue_reader):
            if queue_end is not None:
                queue_end.close()


def send_blocking(sock: socket.socket, datagrams: list[bytes]) -> bool:
    """Write datagrams from a process without an event loop; False if the reader stays stuck too long."""
    import select

    for datagram in datagrams:
        while True:
            try:
                sock.send(datagram)
                break
            except BlockingIOError:
                _, writable, _ = select.select([], [sock], [], BLOCKING_TIMEOUT)
                if not writable:
                    return False
            except OSError:
                return False
    return True


class PipeWriter:
    """Non-blocking, batching writes to one pipe end from an event loop, with a bounded overflow queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, eager: bool = False) -> None:
        self._loop = loop
        self._sock = sock
        # Eager: the first message of a pass leaves at once. A worker's writers are, because user code may block
        # after a send() (time.sleep, a blocking query, os._exit) and the client must not wait for it.
        self._eager = eager
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._batch = bytearray()
        self._in_pass = False  # something was written during this pass of the loop: _end_pass is due
        self._batched = 0

    def write(self, datagram: bytes) -> bool:
        """Send one datagram, batched with the other small ones of this loop pass; False if it had to be
        dropped (the reader is far behind).

        The messages of a loop pass leave together, at the end of the pass or every ``MAX_BATCH`` messages;
        an eager writer sends the first one at once. For the reactor threads, which never block, eagerness
        cost PROCESS-mode echo 9 % of its round trips: one more send and one more wake-up of the reader per
        pass."""
        if not self._in_pass:
            self._in_pass = True
            self._loop.call_soon(self._end_pass)
            if self._eager:
                return self._send((datagram,))
        batch = self._batch
        if self._queue and self._queued_bytes + len(batch) + len(datagram) > MAX_QUEUED_BYTES:
            return False  # the reader is far behind: refused now, rather than dropped with the batch later
        if len(batch) + len(datagram) > _MAX_DATAGRAM:
            self._flush_batch()
            return self._send((datagram,))
        batch += datagram
        self._batched += 1
        if self._batched >= MAX_BATCH:
            self._flush_batch()
        return True

    def write_all(self, datagrams: list[bytes], batch: bool = True) -> bool:
        """Send a message's datagrams (several for a chunked one). ``batch=False``: the message travels
        alone, after what is batched already."""
        if batch and len(datagrams) == 1:
            return self.write(datagrams[0])
        self._flush_batch()
        return self._send(datagrams)

    def unread_bytes(self) -> int:
        """Bytes written here that the reader has not read yet: this pass's batch, the overflow queue, and what
        the pipe holds (SIOCOUTQ; the kernel counts its own overhead per datagram too, so this errs high)."""
        size = bytearray(4)
        fcntl.ioctl(self._sock.fileno(), termios.TIOCOUTQ, size)
        return self._queued_bytes + len(self._batch) + int(struct.unpack("i", size)[0])

    def _end_pass(self) -> None:
        self._in_pass = False
        self._flush_batch()

    def flush(self) -> bool:
        """Send everything pending now, blocking if need be (before the process blocks or exits)."""
        self._flush_batch()
        if self._queue:
            unchecked(self._loop).remove_writer(self._sock.fileno())
            pending = list(self._queue)
            self._queue.clear()
            self._queued_bytes = 0
            return send_blocking(self._sock, pending)
        return True

    def _flush_batch(self) -> None:
        self._batched = 0
        if self._batch:
            batch = bytes(self._batch)
            self._batch.clear()
            if not self._send([batch]):
                logger.warning("pipe reader is far behind: %d bytes of messages dropped", len(batch))

    def _send(self, datagrams: Sequence[bytes]) -> bool:
        if not self._queue:
            sock = self._sock
            sent = 0
            try:
                for datagram in datagrams:
                    sock.send(datagram)
                    sent += 1
                return True
            except BlockingIOError:
                datagrams = datagrams[sent:]
            except OSError:
                return False
            self._loop.add_writer(sock.fileno(), self._flush)
        size = sum(map(len, datagrams))
        if self._queued_bytes + size > MAX_QUEUED_BYTES:
            return False
        self._queue.extend(datagrams)
        self._queued_bytes += size
        return True

    def _flush(self) -> None:
        queue, sock = self._queue, self._sock
        try:
            while queue:
                sock.send(queue[0])
                self._queued_bytes -= len(queue.popleft())
        except BlockingIOError:
            return
        except OSError as exc:
            logger.warning("pipe write failed: %s; %d queued messages dropped", exc, len(queue))
            queue.clear()
            self._queued_bytes = 0
        unchecked(self._loop).remove_writer(sock.fileno())


def read_datagrams(
    sock: socket.socket,
    reassembler: codec.Reassembler,
    on_message: Callable[[codec.Message], object],
    hot_type: int = -1,
    on_hot: Callable[[int, int, int, float, bytes], object] | None = None,
    limit: int = 32,
    stopped: Callable[[], bool] | None = None,
) -> int:
    """Read up to ``limit`` datagrams (Swoole's fairness bound) and hand on the messages they complete, as
    ``Reassembler.feed_batch`` does; return how many datagrams were read. ``stopped``: checked before each
    read, true once what a message did (a worker reaching max_request) means no more may be taken."""
    fd = sock.fileno()
    size = bytearray(4)
    count = 0
    while count < limit and (stopped is None or not stopped()):
        try:
            datagram = sock.recv(codec.MAX_DATAGRAM)
        except (BlockingIOError, InterruptedError):
            break
        count += 1
        try:
            reassembler.feed_batch(datagram, on_message, hot_type, on_hot)
        except codec.IpcError as exc:
            logger.warning("abnormal pipe data dropped: %s", exc)
        # Ask whether another datagram waits (the size of the next one, 0 if none): a recv that fails costs
        # four times as much, mostly for its exception.
        fcntl.ioctl(fd, termios.FIONREAD, size)
        if size == _NO_SIZE:
            break
    return count
