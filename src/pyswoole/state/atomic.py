"""``Atomic`` (32-bit unsigned) and ``AtomicLong`` (64-bit signed): counters in shared memory (Swoole's Atomic).

Each is one word in its own shared mapping, changed with the CPU's atomic instructions (no lock), so every process
of the server sees every change at once. ``Atomic`` also has Swoole's ``wait()``/``wakeup()``, a futex on the
same word: the value 1 means "woken", 0 "asleep".
"""

from __future__ import annotations

from typing import Self

from . import _shm
from .lifecycle import check_creatable


class Atomic(_shm.Atomic):
    """A 32-bit unsigned counter shared by every process: ``add(n=1)``, ``sub(n=1)`` (the new value, wrapping at
    2**32), ``get()``, ``set(v)``, ``cmpset(cmp, new)``, ``wait(timeout=1.0)``, ``wakeup(n=1)``."""

    __slots__ = ()

    def __new__(cls, value: int = 0) -> Self:
        check_creatable("an Atomic")
        return super().__new__(cls, value)

    def __repr__(self) -> str:
        return f"<Atomic {self.get()}>"


class AtomicLong(_shm.AtomicLong):
    """A 64-bit signed counter shared by every process: ``add(n=1)``, ``sub(n=1)`` (the new value, wrapping at 64
    bits), ``get()``, ``set(v)``, ``cmpset(cmp, new)``."""

    __slots__ = ()

    def __new__(cls, value: int = 0) -> Self:
        check_creatable("an AtomicLong")
        return super().__new__(cls, value)

    def __repr__(self) -> str:
        return f"<AtomicLong {self.get()}>"
