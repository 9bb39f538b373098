"""``Table``: fixed-size rows of typed columns in shared memory, looked up by a str key (Swoole's Table).

The table is a hash table of ``size`` buckets (the size asked for, rounded up to a power of two, at least 64) and a
conflict area of ``size * conflict_proportion`` rows (the proportion clamped to [0.2, 1.0]), as Swoole sizes it: a
key lives in its bucket's own row, or when that is taken in a row of the conflict area chained behind it. A full
conflict area makes ``set()`` and ``incr()`` of a new key return ``False``. Each bucket has a lock over its whole
chain, so reading or writing one row is atomic against every process; the operations are single C calls
(``_shm.c``), which also explains what happens when a process dies holding a bucket lock.
"""

from __future__ import annotations

from typing import Final, Self

from . import _shm
from .lifecycle import check_creatable


class Table(_shm.Table):
    """Rows of typed columns shared by every process of the server.

    ``Table(size, conflict_proportion=0.2)``, then ``column(name, type, size=0)`` for each column (``TYPE_INT``: a
    64-bit signed int, ``TYPE_FLOAT``: a double, ``TYPE_STRING``: up to ``size`` UTF-8 bytes), then ``create()``
    before ``server.start()``. Keys are str of at most 63 UTF-8 bytes. ``set(key, {column: value})``,
    ``get(key, field=None)``, ``exists(key)``/``key in table``, ``delete(key)``, ``incr``/``decr(key, column,
    by=1)``, ``count()``/``len()``, iteration over ``(key, row)``, ``stats()``, ``memory_size``. A wrong key,
    column or value raises ``ValueError`` naming it.
    """

    __slots__ = ()

    TYPE_INT: Final = 1
    TYPE_FLOAT: Final = 2
    TYPE_STRING: Final = 3

    def __new__(cls, size: int, conflict_proportion: float = 0.2) -> Self:
        check_creatable("a Table")
        return super().__new__(cls, size, conflict_proportion)

    def create(self) -> None:
        """Allocate the shared memory: after the columns, before the server starts (ServerError after)."""
        check_creatable("a Table")
        super().create()

    def __repr__(self) -> str:
        rows = f"{self.count()} rows" if self.created else "not created"
        return f"<Table size={self.size} memory_size={self.memory_size} {rows}>"
