"""``Lock``: a lock between the processes of the server (Swoole's Lock: MUTEX, RWLOCK, SPINLOCK, SEM).

Every type records the pid of its holders in shared memory, so a holder that dies (even by SIGKILL) is noticed by
the processes waiting for it, which take the lock over within about ``_shm.CHECK_INTERVAL_MS`` (and log it); see
``_shm.c`` for the design. Ownership is per process: any thread of the holding process may unlock. The data the
lock protected is left as the dead process left it.
"""

from __future__ import annotations

from typing import Final, Self

from . import _shm
from .lifecycle import check_creatable


class Lock(_shm.Lock):
    """A lock between processes: ``lock()``, ``trylock()``, ``unlock()``, ``lockwait(timeout=1.0)``,
    ``lock_read()``/``trylock_read()`` (shared holds of a RWLOCK; the other types take the lock as ``lock()``), and
    ``with lock:``. MUTEX sleeps while it waits, SPINLOCK spins (for very short holds), SEM may be released by any
    process (a binary semaphore), RWLOCK admits many readers (up to 64 holds at once) or one writer, and lets a
    waiting writer in before new readers."""

    __slots__ = ()

    RWLOCK: Final = 1
    MUTEX: Final = 3
    SEM: Final = 4
    SPINLOCK: Final = 5

    def __new__(cls, type: int = MUTEX) -> Self:
        check_creatable("a Lock")
        return super().__new__(cls, type)

    def __repr__(self) -> str:
        names = {Lock.RWLOCK: "RWLOCK", Lock.MUTEX: "MUTEX", Lock.SEM: "SEM", Lock.SPINLOCK: "SPINLOCK"}
        return f"<Lock {names[self.type]}>"
