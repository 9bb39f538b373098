"""PROCESS mode's dispatch: which event worker gets a package (Swoole's dispatch_mode and dispatch_func).

Runs in the master's reactor threads (and, for a forwarded close, in any process: the *owner* of a session in
a hash mode is the worker every one of its events goes to). Only the hash modes (2 fd, 4 IP, 8 sticky) send
a connection's events to one worker, so only they deliver Connect/Close unless ``enable_unsafe_event``.
"""

from __future__ import annotations

import socket
import struct
import time
import zlib
from collections.abc import Callable
from typing import Any, Final

from ..constants import WorkerStatus
from ..ipc.shm import Conn, SharedState, Slot
from ..log import logger

HASH_MODES: Final = frozenset({2, 4, 8})
DISCARD: Final = -1
FALLBACK: Final = -3  # a dispatch_func's answer meaning "use dispatch_mode"
_IDLE: Final = int(WorkerStatus.IDLE)
_NATIVE_U32: Final = struct.Struct("=I")


def address_key(ip: str) -> int:
    """Swoole's IP hash: an IPv4 address's 4 bytes read as a native integer; for IPv6 its last 4 bytes;
    anything else (a UNIX path) its CRC32."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return int(_NATIVE_U32.unpack(socket.inet_pton(family, ip)[-4:])[0])
        except OSError:
            continue
    return zlib.crc32(ip.encode())


class Dispatcher:
    def __init__(self, setting: dict[str, Any], shared: SharedState, server: Any) -> None:
        self.mode: int = setting["dispatch_mode"]
        self.func: Callable[..., int] | None = setting.get("dispatch_func")
        self.worker_num: int = setting["worker_num"]
        self.notify = self.mode in HASH_MODES or setting["enable_unsafe_event"]
        self._shared = shared
        self._server = server
        self._round = 0
        self._sticky_load = [0] * self.worker_num  # mode 8: connections stuck to each worker
        self._last_idle_warning = 0.0

    def worker_for(self, base: int, socket_fd: int, kind: int, data: bytes = b"") -> int:
        """The worker for an event of the connection whose record is at ``base``; DISCARD to drop it."""
        if self.func is not None:
            worker_id = self._call_func(socket_fd, kind, data)
            if worker_id != FALLBACK:
                return worker_id
        mode = self.mode
        if mode == 2:
            return socket_fd % self.worker_num
        if mode == 1:
            return self._next_round()
        table = self._shared.table
        assert table is not None
        if mode == 4:
            return address_key(table.remote_ip(base)) % self.worker_num
        if mode == 5:
            uid = table.q[base + Conn.UID]
            return (uid if uid else socket_fd) % self.worker_num
        if mode == 8:
            worker_id = table.q[base + Conn.WORKER_ID]
            if worker_id < 0:
                load = self._sticky_load
                worker_id = load.index(min(load))
                load[worker_id] += 1
                table.q[base + Conn.WORKER_ID] = worker_id
            return worker_id
        return self._idle_worker()

    def worker_for_datagram(self, address: str) -> int:
        """Datagrams have no connection: the hash modes key them by the sender's address."""
        if self.mode == 1:
            return self._next_round()
        if self.mode in (2, 4, 5, 8):
            return address_key(address) % self.worker_num
        return self._idle_worker()

    def owner_of(self, base: int, socket_fd: int) -> int:
        """The worker that handles Connect/Close (and a forwarded close) of a connection."""
        table = self._shared.table
        if self.mode == 8 and table is not None and table.q[base + Conn.WORKER_ID] >= 0:
            return table.q[base + Conn.WORKER_ID]
        if self.mode == 4 and table is not None:
            return address_key(table.remote_ip(base)) % self.worker_num
        return socket_fd % self.worker_num

    def release(self, base: int) -> None:
        """A connection went away: free its mode-8 stickiness."""
        if self.mode == 8:
            table = self._shared.table
            worker_id = table.q[base + Conn.WORKER_ID] if table is not None else -1
            if worker_id >= 0:
                self._sticky_load[worker_id] -= 1

    def _next_round(self) -> int:
        self._round += 1
        return self._round % self.worker_num

    def _idle_worker(self) -> int:
        """Mode 3: the next idle worker after the round-robin position, else the last one looked at."""
        workers = self._shared.workers
        count = self.worker_num
        for _ in range(count):
            self._round += 1
            worker_id = self._round % count
            if workers[worker_id * Slot.SIZE + Slot.STATUS] == _IDLE:
                return worker_id
        now = time.monotonic()
        if now - self._last_idle_warning >= 1.0:
            self._last_idle_warning = now
            logger.warning("No idle worker is available")
        return worker_id

    def _call_func(self, socket_fd: int, kind: int, data: bytes) -> int:
        try:
            worker_id = self.func(self._server, socket_fd, kind, data[:8152])  # type: ignore[misc]
        except Exception:
            logger.exception("dispatch_func failed; the package is dropped")
            return DISCARD
        if worker_id == FALLBACK:
            return FALLBACK
        if not isinstance(worker_id, int) or worker_id >= self.worker_num:
            logger.warning(
                "dispatch_func returned %r, not a worker id below %d; the package is dropped",
                worker_id,
                self.worker_num,
            )
            return DISCARD
        return worker_id if worker_id >= 0 else DISCARD
