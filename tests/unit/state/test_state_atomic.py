"""Atomic and AtomicLong in one process: arithmetic, wrapping, ranges, cmpset, and wait() without a waker.

Several processes adding at once, and wakeup() across processes, are in tests/integration/state.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from pyswoole import Atomic, AtomicLong


def test_atomic_starts_at_its_value_and_add_sub_return_the_new_value():
    atomic = Atomic(5)
    assert atomic.get() == 5
    assert atomic.add() == 6
    assert atomic.add(10) == 16
    assert atomic.sub(n=6) == 10
    assert Atomic().get() == 0


def test_atomic_is_32_bit_unsigned_and_wraps():
    atomic = Atomic(2**32 - 1)
    assert atomic.add() == 0
    assert atomic.sub(2) == 2**32 - 2


@pytest.mark.parametrize("bad", [-1, 2**32, 1.5, "1"])
def test_atomic_values_outside_32_bit_unsigned_are_value_errors(bad):
    atomic = Atomic()
    for call in (Atomic, atomic.set, atomic.add, atomic.sub, lambda v: atomic.cmpset(v, 0)):
        with pytest.raises(ValueError):
            call(bad)


def test_atomic_long_is_64_bit_signed_and_wraps():
    atomic = AtomicLong(-5)
    assert atomic.add(3) == -2
    assert atomic.sub(2**62) == -2 - 2**62
    atomic.set(2**63 - 1)
    assert atomic.add() == -(2**63)
    with pytest.raises(ValueError):
        AtomicLong(2**63)


@pytest.mark.parametrize("cls", [Atomic, AtomicLong])
def test_cmpset_stores_only_when_the_value_is_the_expected_one(cls):
    atomic = cls(7)
    assert atomic.cmpset(8, 1) is False
    assert atomic.get() == 7
    assert atomic.cmpset(7, 1) is True
    assert atomic.get() == 1


def test_wait_consumes_a_pending_wakeup_at_once():
    atomic = Atomic(0)
    assert atomic.wakeup() is True
    assert atomic.get() == 1
    assert atomic.wait(0) is True
    assert atomic.get() == 0


def test_wait_at_zero_sleeps_until_its_timeout_and_says_false():
    atomic = Atomic(0)
    started = time.monotonic()
    assert atomic.wait(timeout=0.1) is False
    assert 0.09 <= time.monotonic() - started < 2.0


def test_wait_on_a_value_other_than_0_or_1_fails_at_once():
    atomic = Atomic(5)
    started = time.monotonic()
    assert atomic.wait(10) is False
    assert time.monotonic() - started < 1.0
    assert atomic.get() == 5


def test_a_signal_handler_that_raises_interrupts_wait():
    def handler(signum: int, frame: object) -> None:
        raise InterruptedError

    previous = signal.signal(signal.SIGUSR1, handler)
    timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGUSR1))
    timer.start()
    try:
        started = time.monotonic()
        with pytest.raises(InterruptedError):
            Atomic(0).wait(timeout=None)
        assert time.monotonic() - started < 5
    finally:
        timer.join()
        signal.signal(signal.SIGUSR1, previous)
