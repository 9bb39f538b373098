"""Several processes on one Table, Atomic or Lock at once: exact totals, exclusion, no torn rows, wakeups.

Every process is a fork of the test process, made after the shared objects, as a server's workers are.
"""

from __future__ import annotations

import os
import random
import time

import pytest

from pyswoole import Atomic, AtomicLong, Lock, Table

PROCESSES = 4


def start_line(processes: int):
    """A barrier: each process calls the result, which returns once all of them have, so that they really race."""
    arrived = Atomic()

    def wait_for_all() -> None:
        arrived.add()
        while arrived.get() < processes:
            pass

    return wait_for_all


def test_four_processes_incrementing_one_row_and_one_atomic_end_with_exact_totals(children):
    table = Table(64)
    table.column("n", Table.TYPE_INT)
    table.column("f", Table.TYPE_FLOAT)
    table.create()
    hits, balance = Atomic(), AtomicLong()
    go = start_line(PROCESSES)

    def work(ready):
        go()
        for _ in range(100_000):
            table.incr("hot", "n")
            hits.add()
        for _ in range(10_000):
            table.decr("hot", "f", 0.5)
            balance.sub(3)

    workers = [children.start(work) for _ in range(PROCESSES)]
    assert [w.join() for w in workers] == [0] * PROCESSES
    assert table.get("hot") == {"n": 400_000, "f": -20_000.0}
    assert hits.get() == 400_000
    assert balance.get() == -120_000


ROUNDS = 3_000


@pytest.mark.parametrize("lock_type", [Lock.MUTEX, Lock.RWLOCK, Lock.SPINLOCK, Lock.SEM])
def test_a_lock_makes_a_read_modify_write_of_several_processes_exact(children, lock_type):
    table = Table(64)
    table.column("n", Table.TYPE_INT)
    table.create()
    table.set("c", {"n": 0})
    lock = Lock(lock_type)
    go = start_line(PROCESSES)

    def work(ready):
        go()
        for _ in range(ROUNDS):
            with lock:
                n = table.get("c", "n")
                os.sched_yield()  # lets another process in between, even on one CPU, if the lock does not hold
                table.set("c", {"n": n + 1})

    workers = [children.start(work) for _ in range(PROCESSES)]
    assert [w.join() for w in workers] == [0] * PROCESSES
    assert table.get("c", "n") == PROCESSES * ROUNDS


def test_rwlock_readers_never_see_a_writers_unfinished_change(children):
    table = Table(64)
    table.column("n", Table.TYPE_INT)
    table.create()
    table.set("c", {"n": 0})
    lock = Lock(Lock.RWLOCK)
    odd_seen, readers_done, writes = Atomic(), Atomic(), Atomic()
    go = start_line(4)

    def write(ready):
        go()
        while readers_done.get() < 2:  # writing all the time the readers read
            with lock:  # two steps, odd in between; the yield lets a reader run right then, even on one CPU
                table.incr("c", "n")
                os.sched_yield()
                table.incr("c", "n")
            writes.add()

    def read(ready):
        go()
        first_write, reads = writes.get(), 0
        while reads < ROUNDS or writes.get() - first_write < ROUNDS:  # reading all the time writers write
            lock.lock_read()
            if table.get("c", "n") % 2:
                odd_seen.add()
            lock.unlock()
            reads += 1
        readers_done.add()

    workers = [children.start(write) for _ in range(2)] + [children.start(read) for _ in range(2)]
    assert [w.join() for w in workers] == [0] * 4
    assert table.get("c", "n") == 2 * writes.get() > 0
    assert odd_seen.get() == 0


def expected_row(n: int) -> dict[str, int | float | str]:
    """A row whose three columns all derive from n, so a mix of two writes shows."""
    return {"a": n, "b": n / 4, "s": str(n % 10) * (100 + n % 900)}


def test_a_row_set_by_other_processes_is_never_read_half_written(children):
    table = Table(64)
    table.column("a", Table.TYPE_INT)
    table.column("b", Table.TYPE_FLOAT)
    table.column("s", Table.TYPE_STRING, 1000)
    table.create()
    table.set("row", expected_row(0))
    writers_done = Atomic()

    def write(ready, seed):
        rng = random.Random(seed)
        for _ in range(30_000):
            table.set("row", expected_row(rng.randrange(1, 10**9)))
        writers_done.add()

    writers = [children.start(lambda ready, seed=seed: write(ready, seed)) for seed in range(2)]
    reads = torn = 0
    while writers_done.get() < len(writers):
        row = table.get("row")
        assert row is not None
        reads += 1
        if row != expected_row(int(row["a"])):
            torn += 1
    assert [w.join() for w in writers] == [0, 0]
    assert reads > 1_000
    assert torn == 0, f"{torn} of {reads} reads saw a half-written row"


def test_wakeup_wakes_a_process_asleep_in_wait(children):
    event = Atomic(0)
    woken_after_ns = AtomicLong(-1)

    def sleeper(ready):
        ready()
        started = time.monotonic_ns()
        if event.wait(timeout=10):
            woken_after_ns.set(time.monotonic_ns() - started)

    child = children.start(sleeper)
    child.wait_ready()
    while child.status is None and event.get() == 0 and not _sleeping(child.pid):
        time.sleep(0.001)  # until the child is asleep in the futex, so that the wakeup must wake it
    assert event.wakeup() is True
    assert child.join() == 0
    assert 0 <= woken_after_ns.get() < 5 * 10**9
    assert event.get() == 0  # the wakeup was consumed


def _sleeping(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()[0] == "S"


def test_a_lock_held_by_a_live_process_is_refused_and_a_sem_may_be_released_by_another(children):
    mutex, sem = Lock(Lock.MUTEX), Lock(Lock.SEM)
    released = Atomic()

    def hold(ready):
        mutex.lock()
        sem.lock()
        ready()
        while not released.get():
            time.sleep(0.001)  # holds until the test says so

    child = children.start(hold)
    child.wait_ready()
    assert mutex.trylock() is False
    assert mutex.lockwait(0.05) is False  # alive: not taken over
    assert mutex.unlock() is False  # not ours
    assert sem.unlock() is True  # a semaphore: anyone may release it
    assert sem.trylock() is True
    released.set(1)
    assert child.join() == 0
    assert os.getpid() != child.pid
