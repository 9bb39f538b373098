"""Shared memory made before fork: global state, the worker table, the session and connection tables.

Every structure is an anonymous shared ``mmap`` seen through ``memoryview`` casts (int64, and float64 for
times), with the field offsets named below; nothing pickled lives here. Counters that many processes bump are
kept per slot, each slot written only by its own worker or reactor thread, so the hot path needs no lock;
``stats()`` adds the slots up. Only session-id allocation, which must be unique server-wide, takes the lock.
"""

from __future__ import annotations

import mmap
import multiprocessing
import socket
import time
from contextlib import AbstractContextManager
from typing import Any, Final

from mypy_extensions import i64

SESSION_SLOTS: Final = 1 << 20  # as Swoole: slot = session_id % SESSION_SLOTS
# BASE mode's session table: per slot the session id, its owner key, and its protocol flags (WebSocket state).
SESSION_FIELDS: Final = 3


class Global:
    """Offsets of the int64 global fields."""

    MASTER_PID: Final = 0
    MANAGER_PID: Final = 1
    SESSION_ROUND: Final = 2
    START_TIME_US: Final = 3
    ONSTART_CALLED: Final = 4
    TASKS_FROM_OTHERS: Final = 5  # tasks sent by the master, the manager or user processes
    # Written by the manager only: reloads begun, and workers it replaced, by cause (see stats.RESTART_CAUSES).
    RELOADS: Final = 6
    RESTARTS_CRASH: Final = 7  # died of a signal or a non-zero exit status it was not asked for
    RESTARTS_MAX_REQUEST: Final = 8
    RESTARTS_MAX_WORKER_RSS: Final = 9
    RESTARTS_WORKER_TIMEOUT: Final = 10
    RESTARTS_RELOAD: Final = 11
    RESTARTS_EXIT: Final = 12  # left on its own for another reason: server.stop(), a user process that returned
    STARTUP_FAILED: Final = 13  # a worker could not start its hosted application: the server stops, start() raises
    SIZE: Final = 14


class Slot:
    """Offsets of the int64 fields of one slot of the worker table (event workers, then reactor threads).

    Counters only grow for the life of the server and feed the global ``stats()``; a worker's own counts
    (``worker_request_count``...) are the growth since its incarnation began, read against the ``*_BASE``
    snapshots taken then. That keeps the hot path at one increment per counter.
    """

    PID: Final = 0
    STATUS: Final = 1
    START_TIME_US: Final = 2
    INCARNATION: Final = 3
    CONNECTION_NUM: Final = 4
    ACCEPT: Final = 5
    CLOSE: Final = 6
    ABORT: Final = 7
    REQUEST: Final = 8
    RESPONSE: Final = 9
    FAILED: Final = 10  # callbacks that raised
    RECV_BYTES: Final = 11
    SEND_BYTES: Final = 12
    REQUEST_BASE: Final = 13
    RESPONSE_BASE: Final = 14
    DISPATCH_BASE: Final = 15
    DISPATCH: Final = 16  # PROCESS: packages a reactor sent to workers, or a worker received from reactors
    TASK_DISPATCHED: Final = 17  # event worker: tasks it sent
    TASK_STARTED: Final = 18  # task worker: tasks it took from its queue
    HEARTBEAT_MS: Final = 19  # event worker: time.monotonic() in ms when its loop last beat (worker_timeout)
    FAILED_BASE: Final = 20
    RSS_BYTES: Final = 21  # worker, task worker: resident memory, published by the process itself about once a second
    EXIT_CAUSE: Final = 22  # an ExitCause the process wrote before leaving on its own; the manager reads and clears it
    PIPE_DROPPED: Final = 23  # messages refused or dropped because the pipe's reader was behind
    # Event worker: HTTP responses it sent, by status class (HTTP_1XX + status // 100 - 1).
    HTTP_1XX: Final = 24
    HTTP_2XX: Final = 25
    HTTP_3XX: Final = 26
    HTTP_4XX: Final = 27
    HTTP_5XX: Final = 28
    SIZE: Final = 29


class ExitCause:
    """Values of ``Slot.EXIT_CAUSE``: why a process left on its own (0: it did not say)."""

    MAX_WORKER_RSS: Final = 1


class Conn:
    """Offsets of one record of the PROCESS-mode connection table.

    A record is found by session id (``session_id % size``), not by socket fd: the record of a closed
    connection must outlive its socket until the worker's Close callback is over, while the kernel may already
    hand the fd number to a new client. Written by the master (accept) and the reactor thread that owns the
    socket; the worker handling the session sets ``CLOSED``, ``UID`` and reads the rest. Time fields are
    float64, read through the table's ``d`` view.
    """

    SESSION_ID: Final = 0  # 0: free
    REACTOR_ID: Final = 1
    SERVER_FD: Final = 2
    SOCKET_FD: Final = 3
    REMOTE_PORT: Final = 4
    CLOSED: Final = 5  # a worker closed it (Close ran with reactor_id -1)
    PEER_CLOSED: Final = 6
    OVERFLOW: Final = 7
    UID: Final = 8
    WORKER_ID: Final = 9  # dispatch_mode 8: the worker the connection sticks to, -1 before its first package
    CONNECT_TIME: Final = 10
    LAST_RECV_TIME: Final = 11
    LAST_SEND_TIME: Final = 12
    LAST_DISPATCH_TIME: Final = 13
    CLOSE_ERRNO: Final = 14
    RECV_QUEUED_BYTES: Final = 15  # bytes the reactor has sent to workers, ever
    SEND_QUEUED_BYTES: Final = 16
    REMOTE_FAMILY: Final = 17
    REMOTE_ADDRESS: Final = 18  # 16 bytes: two int64 fields
    RECV_DONE_BYTES: Final = 20  # bytes workers have taken; RECV_QUEUED_BYTES - this = still queued
    READY: Final = 21  # established (on a TLS port: handshake over); before that the record only holds its session id
    PROTOCOL_FLAGS: Final = 22  # a protocol room's state of the session (WebSocket: upgraded, deflate)
    HTTP_WORKER_PID: Final = 23  # HTTP: the worker process that took the current request (0: still in a pipe)
    SIZE: Final = 24


def count_http_status(counters: SlotCounters, status: int) -> None:
    """One more HTTP response of ``status`` in a slot's counters (a worker's, or a reactor thread's)."""
    if 100 <= status < 600:
        counters.http[status // 100 - 1] += 1
        if not counters.pending:
            counters.moved()


class SlotCounters:
    """The per-package counters of one slot (a worker's, or a reactor thread's), kept in this object's fields and
    copied into the shared slot at the end of every loop pass in which they moved.

    Adding to an item of a memoryview over shared memory costs several times what adding to a native int64
    field does, and a package bumps several counters: this keeps the hot path cheap while other processes still
    see figures at most one loop pass old. Only the owner of the slot writes these fields.

    ``now`` is the loop pass's clock: the wall-clock time read when the counters first moved in this pass, the
    time the hot path records as a session's last receive or send (as libuv's cached loop time, it can be one
    pass old: a blocking callback delays what follows it in its pass, not the figure's meaning for idle checks).
    """

    __slots__ = ("recv_bytes", "dispatch", "request", "failed", "response", "send_bytes", "http", "pending", "now",
                 "_slot", "_loop")  # fmt: skip

    def __init__(self, slot: memoryview, loop: Any) -> None:
        self._slot = slot
        self._loop = loop
        # A slot's counters only grow: a new incarnation of its process goes on from its predecessor's figures.
        self.recv_bytes: i64 = slot[Slot.RECV_BYTES]
        self.dispatch: i64 = slot[Slot.DISPATCH]
        self.request: i64 = slot[Slot.REQUEST]
        self.failed: i64 = slot[Slot.FAILED]
        self.response: i64 = slot[Slot.RESPONSE]
        self.send_bytes: i64 = slot[Slot.SEND_BYTES]
        self.http: list[int] = slot[Slot.HTTP_1XX : Slot.HTTP_5XX + 1].tolist()  # 1xx..5xx
        self.pending = False
        self.now = time.time()

    def moved(self) -> None:
        """Call when a value changed (or is about to) and ``pending`` is False: publishes at the end of this loop
        pass, and reads the pass's clock."""
        self.pending = True
        self.now = time.time()
        self._loop.call_soon(self.publish)

    def publish(self) -> None:
        self.pending = False
        slot = self._slot
        slot[Slot.RECV_BYTES] = self.recv_bytes
        slot[Slot.DISPATCH] = self.dispatch
        slot[Slot.REQUEST] = self.request
        slot[Slot.FAILED] = self.failed
        slot[Slot.RESPONSE] = self.response
        slot[Slot.SEND_BYTES] = self.send_bytes
        for offset, count in enumerate(self.http):
            slot[Slot.HTTP_1XX + offset] = count


def _shared_area(size: int) -> mmap.mmap:
    return mmap.mmap(-1, max(size, 8), flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)


class ConnectionTable:
    """PROCESS mode's connection table: every process can see every connection."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._area = _shared_area(size * Conn.SIZE * 8)
        self.q = memoryview(self._area).cast("q")
        self.d = memoryview(self._area).cast("d")
        self._raw = memoryview(self._area)

    def base_of(self, session_id: int) -> int:
        return (session_id % self.size) * Conn.SIZE

    def open(self, session_id: int, socket_fd: int, reactor_id: int, server_fd: int, remote: object) -> int:
        """Fill the record of a session the allocator reserved."""
        base = self.base_of(session_id)
        q = self.q
        q[base : base + Conn.SIZE] = memoryview(bytes(Conn.SIZE * 8)).cast("q")
        q[base + Conn.REACTOR_ID] = reactor_id
        q[base + Conn.SERVER_FD] = server_fd
        q[base + Conn.SOCKET_FD] = socket_fd
        q[base + Conn.WORKER_ID] = -1
        # As in Swoole, a client that never sends is idle since it connected (heartbeat).
        self.d[base + Conn.CONNECT_TIME] = self.d[base + Conn.LAST_RECV_TIME] = time.time()
        if isinstance(remote, tuple):
            family = socket.AF_INET6 if ":" in remote[0] else socket.AF_INET
            packed = socket.inet_pton(family, remote[0])
            q[base + Conn.REMOTE_FAMILY] = family
            q[base + Conn.REMOTE_PORT] = remote[1]
            start = (base + Conn.REMOTE_ADDRESS) * 8
            self._raw[start : start + len(packed)] = packed
        q[base + Conn.SESSION_ID] = session_id  # last: the record is valid from here on
        return base

    def remote_ip(self, base: int) -> str:
        family = self.q[base + Conn.REMOTE_FAMILY]
        if not family:
            return ""
        start = (base + Conn.REMOTE_ADDRESS) * 8
        size = 4 if family == socket.AF_INET else 16
        return socket.inet_ntop(family, bytes(self._raw[start : start + size]))

    def find(self, session_id: int) -> int:
        """The record of a live session, or -1."""
        if session_id <= 0:
            return -1
        base = (session_id % self.size) * Conn.SIZE
        return base if self.q[base + Conn.SESSION_ID] == session_id else -1

    def release(self, session_id: int) -> None:
        base = self.base_of(session_id)
        if self.q[base + Conn.SESSION_ID] == session_id:
            self.q[base + Conn.READY] = 0  # first: the next session in this record is not ready until opened
            self.q[base + Conn.SESSION_ID] = 0


def _int64_array(count: int) -> memoryview:
    return memoryview(_shared_area(count * 8)).cast("q")


class SharedState:
    """Everything the processes of one server share; build it before the first fork.

    ``worker_slots`` rows for the event workers come first in the worker table, then ``reactor_slots`` rows
    for PROCESS mode's reactor threads. BASE mode keeps the session table: a session's owner is a worker,
    stored with the worker's incarnation so that the sessions of a dead worker read as gone without anyone
    scanning the table. PROCESS mode keeps its sessions in the shared connection table instead.
    """

    def __init__(self, worker_slots: int, reactor_slots: int = 0, max_connection: int = 0) -> None:
        self.worker_slots = worker_slots
        self.reactor_slots = reactor_slots
        self.globals = _int64_array(Global.SIZE)
        self.workers = _int64_array((worker_slots + reactor_slots) * Slot.SIZE)
        self.connections = ConnectionTable(max_connection) if max_connection else None
        # Pages are touched only as sessions use them.
        self.sessions = _int64_array(SESSION_SLOTS * SESSION_FIELDS if self.connections is None else 1)
        self._lock = multiprocessing.get_context("fork").Lock()
        self.globals[Global.START_TIME_US] = int(time.time() * 1_000_000)

    @property
    def table(self) -> ConnectionTable:
        """PROCESS mode's connection table (a BASE-mode server keeps its sessions in ``sessions`` instead)."""
        if self.connections is None:
            raise RuntimeError("a BASE-mode server has no connection table")
        return self.connections

    def slot(self, worker_id: int) -> memoryview:
        """The int64 fields of one worker's slot (see :class:`Slot`)."""
        base = worker_id * Slot.SIZE
        return self.workers[base : base + Slot.SIZE]

    def reactor_slot(self, reactor_id: int) -> memoryview:
        return self.slot(self.worker_slots + reactor_id)

    def begin_incarnation(self, worker_id: int, pid: int, status: int) -> None:
        slot = self.slot(worker_id)
        slot[Slot.REQUEST_BASE] = slot[Slot.REQUEST]
        slot[Slot.RESPONSE_BASE] = slot[Slot.RESPONSE]
        slot[Slot.DISPATCH_BASE] = slot[Slot.DISPATCH]
        slot[Slot.FAILED_BASE] = slot[Slot.FAILED]
        slot[Slot.HEARTBEAT_MS] = 0
        slot[Slot.CONNECTION_NUM] = 0
        slot[Slot.PID] = pid
        slot[Slot.STATUS] = status
        slot[Slot.START_TIME_US] = int(time.time() * 1_000_000)
        slot[Slot.INCARNATION] += 1

    def sum_field(self, field: int, first: int, count: int) -> int:
        workers = self.workers
        return sum(workers[i * Slot.SIZE + field] for i in range(first, first + count))

    def locked(self) -> AbstractContextManager[bool]:
        return self._lock

    # Sessions -------------------------------------------------------------------------------------------

    def worker_owner_key(self, worker_id: int) -> int:
        return self.workers[worker_id * Slot.SIZE + Slot.INCARNATION] << 16 | worker_id

    def allocate_session(self, owner: int = 0) -> int:
        """A new session id, unique for the life of the server; -1 when every connection slot is taken.

        BASE mode records ``owner`` (a worker's owner key) in the session table; PROCESS mode reserves the
        session's record in the connection table.
        """
        globals_ = self.globals
        table = self.connections
        with self._lock:
            session_id = globals_[Global.SESSION_ROUND] + 1
            if table is None:
                sessions = self.sessions
                while True:
                    index = (session_id % SESSION_SLOTS) * SESSION_FIELDS
                    if not sessions[index] or not self._alive(sessions[index + 1]):
                        break
                    session_id += 1
                sessions[index + 1] = owner
                sessions[index + 2] = 0
                sessions[index] = session_id
            else:
                for _ in range(table.size):
                    base = table.base_of(session_id)
                    if not table.q[base + Conn.SESSION_ID]:
                        break
                    session_id += 1
                else:
                    return -1
                table.q[base + Conn.SESSION_ID] = session_id
            globals_[Global.SESSION_ROUND] = session_id
        return session_id

    def session_owner(self, session_id: int) -> int:
        """BASE mode: the worker id owning a live session, or -1."""
        index = (session_id % SESSION_SLOTS) * SESSION_FIELDS
        if session_id <= 0 or self.sessions[index] != session_id:
            return -1
        owner_key = self.sessions[index + 1]
        return owner_key & 0xFFFF if self._alive(owner_key) else -1

    def _alive(self, owner_key: int) -> bool:
        return self.workers[(owner_key & 0xFFFF) * Slot.SIZE + Slot.INCARNATION] == owner_key >> 16

    def free_session(self, session_id: int) -> None:
        index = (session_id % SESSION_SLOTS) * SESSION_FIELDS
        if self.sessions[index] == session_id:
            self.sessions[index] = 0

    def session_flags(self, session_id: int) -> int:
        """BASE mode: a live session's protocol flags (0: none), or -1 for no such session."""
        index = (session_id % SESSION_SLOTS) * SESSION_FIELDS
        if session_id <= 0 or self.sessions[index] != session_id or not self._alive(self.sessions[index + 1]):
            return -1
        return self.sessions[index + 2]

    def set_session_flags(self, session_id: int, flags: int) -> None:
        index = (session_id % SESSION_SLOTS) * SESSION_FIELDS
        if self.sessions[index] == session_id:
            self.sessions[index + 2] = flags
