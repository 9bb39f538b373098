"""Shared memory made before fork: global state, the worker table and the session table.

Every structure is an anonymous shared ``mmap`` seen through a ``memoryview`` cast to int64, with the field
offsets named below; nothing pickled lives here. Counters that many processes bump are kept per worker slot
(each slot is written only by its own worker), so the hot path needs no lock; ``stats()`` adds the slots up.
Only session-id allocation, which must be unique across workers, takes the lock.
"""

from __future__ import annotations

import mmap
import multiprocessing
import time
from contextlib import AbstractContextManager

SESSION_SLOTS = 1 << 20  # as Swoole: slot = session_id % SESSION_SLOTS


class Global:
    """Offsets of the int64 global fields."""

    MASTER_PID = 0
    MANAGER_PID = 1
    SESSION_ROUND = 2
    START_TIME_US = 3
    ONSTART_CALLED = 4
    PIPE_MSG_ID = 5
    SHUTDOWN = 6
    SIZE = 8


class Slot:
    """Offsets of the int64 fields of one worker's slot in the worker table.

    Counters only grow for the life of the server and feed the global ``stats()``; a worker's own counts
    (``worker_request_count``...) are the growth since its incarnation began, read against the ``*_BASE``
    snapshots taken then. That keeps the hot path at one increment per counter.
    """

    PID = 0
    STATUS = 1
    START_TIME_US = 2
    INCARNATION = 3
    CONNECTION_NUM = 4
    ACCEPT = 5
    CLOSE = 6
    ABORT = 7
    REQUEST = 8
    RESPONSE = 9
    FAILED = 10  # callbacks that raised; dispatched = REQUEST + FAILED
    RECV_BYTES = 11
    SEND_BYTES = 12
    REQUEST_BASE = 13
    RESPONSE_BASE = 14
    FAILED_BASE = 15
    SIZE = 16


def _int64_array(count: int) -> memoryview:
    area = mmap.mmap(-1, count * 8, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    return memoryview(area).cast("q")


class SharedState:
    """Everything the processes of one server share; build it before the first fork."""

    def __init__(self, worker_slots: int) -> None:
        self.worker_slots = worker_slots
        self.globals = _int64_array(Global.SIZE)
        self.workers = _int64_array(max(worker_slots, 1) * Slot.SIZE)
        # Per slot: session id, owner worker id. Pages are touched only as sessions use them.
        self.sessions = _int64_array(SESSION_SLOTS * 2)
        self._lock = multiprocessing.get_context("fork").Lock()
        self.globals[Global.START_TIME_US] = int(time.time() * 1_000_000)

    def slot(self, worker_id: int) -> memoryview:
        """The int64 fields of one worker's slot (see :class:`Slot`)."""
        base = worker_id * Slot.SIZE
        return self.workers[base:base + Slot.SIZE]

    def begin_incarnation(self, worker_id: int, pid: int, status: int) -> None:
        slot = self.slot(worker_id)
        slot[Slot.REQUEST_BASE] = slot[Slot.REQUEST]
        slot[Slot.RESPONSE_BASE] = slot[Slot.RESPONSE]
        slot[Slot.FAILED_BASE] = slot[Slot.FAILED]
        slot[Slot.CONNECTION_NUM] = 0
        slot[Slot.PID] = pid
        slot[Slot.STATUS] = status
        slot[Slot.START_TIME_US] = int(time.time() * 1_000_000)
        slot[Slot.INCARNATION] += 1

    def sum_field(self, field: int, count: int | None = None) -> int:
        slots = self.worker_slots if count is None else count
        return sum(self.workers[i * Slot.SIZE + field] for i in range(slots))

    def locked(self) -> AbstractContextManager[bool]:
        return self._lock

    # Sessions -------------------------------------------------------------------------------------------

    def allocate_session(self, owner: int) -> int:
        """A new session id, unique for the life of the server, recorded as owned by worker ``owner``."""
        sessions, globals_ = self.sessions, self.globals
        # The owner's incarnation is stored with it, so that the sessions of a dead worker read as gone
        # without anyone scanning the table.
        owner_key = self.workers[owner * Slot.SIZE + Slot.INCARNATION] << 16 | owner
        with self._lock:
            session_id = globals_[Global.SESSION_ROUND] + 1
            while sessions[(session_id % SESSION_SLOTS) * 2] and self._alive(sessions[(session_id % SESSION_SLOTS) * 2 + 1]):
                session_id += 1
            globals_[Global.SESSION_ROUND] = session_id
            index = (session_id % SESSION_SLOTS) * 2
            sessions[index] = session_id
            sessions[index + 1] = owner_key
        return session_id

    def session_owner(self, session_id: int) -> int:
        """The worker id owning a live session, or -1."""
        if session_id <= 0:
            return -1
        index = (session_id % SESSION_SLOTS) * 2
        if self.sessions[index] != session_id:
            return -1
        owner_key = self.sessions[index + 1]
        return owner_key & 0xFFFF if self._alive(owner_key) else -1

    def _alive(self, owner_key: int) -> bool:
        return self.workers[(owner_key & 0xFFFF) * Slot.SIZE + Slot.INCARNATION] == owner_key >> 16

    def free_session(self, session_id: int) -> None:
        index = (session_id % SESSION_SLOTS) * 2
        if self.sessions[index] == session_id:
            self.sessions[index] = 0

    def next_msg_id(self) -> int:
        with self._lock:
            self.globals[Global.PIPE_MSG_ID] += 1
            return self.globals[Global.PIPE_MSG_ID]
