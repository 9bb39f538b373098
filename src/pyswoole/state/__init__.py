"""Shared memory for applications: ``Table``, ``Atomic``, ``AtomicLong`` and ``Lock``, as Swoole has them.

Workers are processes, so state they all must see lives in memory mapped before the server forks them. Each object
here owns such a mapping and works the same in every process of the server (master, manager, workers, task
workers, user processes). They must be made before ``Server.start()``, which calls :func:`seal`.
"""

from __future__ import annotations

from .atomic import Atomic, AtomicLong
from .lifecycle import seal
from .lock import Lock
from .table import Table

__all__ = ["Atomic", "AtomicLong", "Lock", "Table", "seal"]
