"""A process SIGKILLed while it holds a Lock or a Table's bucket lock does not wedge the others.

The killed holder is left unreaped while the test waits (a zombie, as a worker is until its manager reaps it):
the waiters must see it as dead all the same. "Bounded" here is well under a second; the design takes a lock over
one liveness interval (_shm.CHECK_INTERVAL_MS) after its holder is gone.
"""

from __future__ import annotations

import logging
import os
import signal
import time

import pytest

from pyswoole import Atomic, AtomicLong, Lock, Table
from pyswoole.state import _shm

BOUND_S = 1.0


@pytest.fixture(autouse=True)
def _warnings(caplog):
    caplog.set_level(logging.WARNING, logger="pyswoole")


def hold_forever(take):
    def target(ready):
        take()
        ready()
        signal.pause()  # SIGKILL ends it

    return target


def kill_later(victim_pid: int, killed_at_ns: AtomicLong):
    """A killer process: lets the test go to sleep on the lock first, then kills the holder."""

    def target(ready):
        time.sleep(0.2)  # the test is meanwhile asleep waiting for the lock: that wait is what is measured
        killed_at_ns.set(time.monotonic_ns())
        os.kill(victim_pid, signal.SIGKILL)

    return target


@pytest.mark.parametrize("lock_type", [Lock.MUTEX, Lock.RWLOCK, Lock.SPINLOCK, Lock.SEM])
def test_a_lock_whose_holder_is_killed_is_taken_over_by_a_waiter_within_a_bound(children, caplog, lock_type):
    lock = Lock(lock_type)
    holder = children.start(hold_forever(lock.lock))
    holder.wait_ready()
    assert lock.trylock() is False
    killed_at = AtomicLong(0)
    children.start(kill_later(holder.pid, killed_at))

    assert lock.lockwait(timeout=10) is True
    latency = (time.monotonic_ns() - killed_at.get()) / 1e9
    assert killed_at.get() > 0, "took the lock before its holder was killed"
    assert latency < BOUND_S
    assert f"held by process {holder.pid}, which is gone" in caplog.text
    assert lock.unlock() is True
    assert holder.join() == -signal.SIGKILL


@pytest.mark.parametrize("dead_holds", ["read", "write"])
def test_an_rwlock_held_by_a_killed_reader_or_writer_is_freed_for_the_other_kind(children, dead_holds):
    lock = Lock(Lock.RWLOCK)
    holder = children.start(hold_forever(lock.lock_read if dead_holds == "read" else lock.lock))
    holder.wait_ready()
    holder.kill()
    started = time.monotonic()
    taken = lock.lockwait(10) if dead_holds == "read" else lock.lock_read()
    assert taken is True
    assert time.monotonic() - started < BOUND_S
    assert lock.unlock() is True


def test_a_trylock_takes_a_lock_whose_holder_is_gone(children):
    lock = Lock(Lock.MUTEX)
    holder = children.start(hold_forever(lock.lock))
    holder.wait_ready()
    holder.kill()
    assert holder.join() == -signal.SIGKILL  # reaped this time: no such process at all
    assert lock.trylock() is True


def test_a_table_bucket_held_by_a_killed_writer_is_taken_over_and_the_table_goes_on(children, caplog):
    table = Table(64)
    table.column("n", Table.TYPE_INT)
    table.column("blob", Table.TYPE_STRING, 4 << 20)
    table.create()
    big = "x" * (4 << 20)  # each set() copies 4 MiB under the bucket lock: a kill almost always lands inside

    sets = Atomic()

    def writer(ready):
        table.set("big", {"blob": big})
        ready()
        while True:
            table.set("big", {"n": 1, "blob": big})
            sets.add()

    takeovers = 0
    for _attempt in range(10):
        caplog.clear()
        child = children.start(writer)
        child.wait_ready()
        # Kill from a timer, not right after a wakeup by the child (which would catch it outside set() every time).
        first = sets.get()
        while sets.get() < first + 2:
            time.sleep(0.001)
        child.kill()
        started = time.monotonic()
        row = table.get("big")  # waits for the bucket if the child died holding it
        assert time.monotonic() - started < BOUND_S
        assert row is not None and len(row["blob"]) == len(big)
        if f"held by process {child.pid}, which is gone" in caplog.text:
            takeovers += 1
            break
    assert takeovers == 1, "no kill landed while the writer held the bucket lock"
    # The bucket and the rest of the table work on.
    assert table.incr("big", "n") == 2
    assert table.set("other", {"n": 5}) and table.get("other", "n") == 5
    assert _shm.CHECK_INTERVAL_MS < BOUND_S * 1000
