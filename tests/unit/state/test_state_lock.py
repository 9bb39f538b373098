"""Lock in one process: each type's lock/trylock/unlock, lockwait's timeout, RWLOCK's shared holds.

A held lock refuses this process too (the locks are not recursive); other processes, and holders that die, are
in tests/integration/state.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from pyswoole import Lock

TYPES = [Lock.MUTEX, Lock.RWLOCK, Lock.SPINLOCK, Lock.SEM]


@pytest.mark.parametrize("lock_type", TYPES)
def test_lock_then_trylock_fails_until_unlock(lock_type):
    lock = Lock(lock_type)
    assert lock.lock() is True
    assert lock.trylock() is False
    assert lock.unlock() is True
    assert lock.trylock() is True
    assert lock.unlock() is True


@pytest.mark.parametrize("lock_type", TYPES)
def test_unlock_of_a_free_lock_is_false(lock_type):
    assert Lock(lock_type).unlock() is False


@pytest.mark.parametrize("lock_type", TYPES)
def test_lockwait_on_a_held_lock_gives_up_after_its_timeout(lock_type):
    lock = Lock(lock_type)
    lock.lock()
    started = time.monotonic()
    assert lock.lockwait(0.1) is False
    assert 0.09 <= time.monotonic() - started < 2.0
    lock.unlock()
    assert lock.lockwait(timeout=0.1) is True


@pytest.mark.parametrize("lock_type", TYPES)
def test_with_holds_the_lock_for_the_block_and_releases_it_on_an_exception(lock_type):
    lock = Lock(lock_type)
    with pytest.raises(RuntimeError), lock as held:
        assert held is lock
        assert lock.trylock() is False
        raise RuntimeError
    assert lock.trylock() is True


def test_rwlock_admits_many_readers_but_no_writer_while_they_read():
    lock = Lock(Lock.RWLOCK)
    assert lock.lock_read() and lock.trylock_read()
    assert lock.trylock() is False
    assert lock.unlock() and lock.trylock() is False  # one reader left
    assert lock.unlock() and lock.trylock() is True
    assert lock.trylock_read() is False  # a writer keeps readers out
    assert lock.unlock()


def test_rwlock_read_holds_are_limited_by_its_slots():
    lock = Lock(Lock.RWLOCK)
    assert all(lock.trylock_read() for _ in range(64))
    assert lock.trylock_read() is False
    assert all(lock.unlock() for _ in range(64))
    assert lock.unlock() is False


def test_lock_read_of_the_other_types_is_an_exclusive_lock():
    lock = Lock(Lock.MUTEX)
    assert lock.lock_read()
    assert lock.trylock_read() is False
    assert lock.unlock()


@pytest.mark.parametrize("bad", [2, 0, 99])
def test_an_unknown_type_is_a_value_error(bad):
    with pytest.raises(ValueError, match="type"):
        Lock(bad)


def test_repr_names_the_type():
    assert repr(Lock(Lock.SPINLOCK)) == "<Lock SPINLOCK>"
    assert Lock().type == Lock.MUTEX


@pytest.fixture
def interrupted_soon() -> Iterator[None]:
    """SIGUSR1 in 50 ms, whose handler raises InterruptedError in the main thread (as Ctrl-C raises there)."""

    def handler(signum: int, frame: object) -> None:
        raise InterruptedError

    previous = signal.signal(signal.SIGUSR1, handler)
    timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGUSR1))
    timer.start()
    yield
    timer.join()
    signal.signal(signal.SIGUSR1, previous)


@pytest.mark.parametrize("lock_type", TYPES)
def test_a_signal_handler_that_raises_interrupts_a_wait_and_the_lock_is_not_taken(lock_type, interrupted_soon):
    lock = Lock(lock_type)
    lock.lock()
    started = time.monotonic()
    with pytest.raises(InterruptedError):
        lock.lock()
    assert time.monotonic() - started < 5
    assert lock.unlock() is True
    assert lock.unlock() is False  # the interrupted wait left nothing held
