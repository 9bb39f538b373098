"""The node's delivery counters, in shared memory made before the first fork, so that any process reads them.

Each process writes only its own row (its worker id; the manager and the master share the last row, and
neither counts deliveries), so increments take no lock; ``totals()`` sums the rows. Counters only grow.
"""

from __future__ import annotations

import mmap

FIELDS = (
    "sent",  # messages this node handed to Redis for another node (a broadcast counts once)
    "unheard",  # messages published to a node that had no postman listening (dead, or not started)
    "lost",  # messages that could not reach Redis (it went away while they were queued)
    "delivered",  # sessions of this node that got a message from another node
    "dropped_gone",  # ... addressed to a session of this node that no longer exists
    "dropped_not_websocket",  # ... pushed to a session that is not a WebSocket
    "dropped_refused",  # ... refused by the session (its output buffer full, say)
    "malformed",  # batches this node's postman could not decode
)
INDEX = {name: i for i, name in enumerate(FIELDS)}


class Counters:
    def __init__(self, rows: int) -> None:
        self.rows = rows
        self._area = mmap.mmap(-1, rows * len(FIELDS) * 8)
        self._values = memoryview(self._area).cast("q")
        self._row = rows - 1

    def use_row(self, worker_id: int) -> None:
        """Count into ``worker_id``'s row from now on (-1, or an id beyond the rows: the shared last row)."""
        self._row = worker_id if 0 <= worker_id < self.rows - 1 else self.rows - 1

    def add(self, field: int, n: int = 1) -> None:
        self._values[self._row * len(FIELDS) + field] += n

    def totals(self) -> dict[str, int]:
        width = len(FIELDS)
        values = self._values
        return {name: sum(values[row * width + i] for row in range(self.rows)) for i, name in enumerate(FIELDS)}


SENT, UNHEARD, LOST, DELIVERED, DROPPED_GONE, DROPPED_NOT_WEBSOCKET, DROPPED_REFUSED, MALFORMED = range(len(FIELDS))
