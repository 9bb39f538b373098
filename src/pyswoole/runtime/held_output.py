"""Output held for the end of the event loop's pass, so that the responses completed in one pass leave together.

Why: a client that waits on many connections at once (a reverse proxy or a load balancer with keep-alive
connections to the server, a load generator) is woken by each response that reaches it while it sleeps.
Written as each task completes it, the responses of a pass arrive one task apart, and each of them wakes the
client anew; on a virtual machine whose idle CPUs halt, every such wake-up is an interrupt sent through the
hypervisor, and the writer pays for it. Held to the end of the pass, they arrive back to back and wake it once
(NOTES.md has the figures: about a tenth of an ASGI hello's CPU went to those wake-ups).

Holding costs latency only while the loop is slow, and that is bounded. A batch older than HOLD_MAX leaves at the
next response. Once something has kept held output waiting longer than STALL (seen at the next response or at
the end of the pass; an application that blocks the loop: a synchronous database call in an ``async def``),
output is written at once for WRITE_NOW_TIME, as with no holding at all. Nothing can preempt a callback that
blocks, so the responses held before that first stall do wait for it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

from .connection import Connection

_monotonic: Final = time.monotonic
# Seconds: the oldest held output leaves at the next response after this. A pass of 50 hello requests takes
# about 1.5 ms here; a longer pass (many connections) leaves in batches of about this age.
HOLD_MAX: Final = 0.002
# Seconds between two held responses that mean the loop was blocked; above what a busy machine's scheduler
# takes the CPU away for (a shorter threshold took the contended benchmark for blocking, and its throughput).
STALL: Final = 0.010
WRITE_NOW_TIME: Final = 5.0  # seconds of writing at once after a stall while output waited


class HeldOutput:
    """The output of one event loop (a BASE worker's) held for the end of its pass."""

    __slots__ = ("holding", "_since", "_last", "_write_now_until")

    def __init__(self) -> None:
        self.holding: list[Connection] = []  # connections with output held, in the order they got it
        self._since = 0.0  # when the oldest held output was held (time.monotonic)
        self._last = 0.0  # when the newest was
        self._write_now_until = 0.0

    def write_soon(self, conn: Connection, data: bytes) -> None:
        """Write ``data`` to ``conn`` at the end of this loop pass (see the module's docstring). Output written
        to the connection later still leaves after it."""
        now = _monotonic()
        holding = self.holding
        if holding:
            if now - self._last > STALL:
                self._write_now_until = now + WRITE_NOW_TIME  # the loop was blocked while output waited
            if now - self._since > HOLD_MAX:
                self.flush()
        if now < self._write_now_until:
            conn.write(data)
            return
        self._last = now
        if conn.hold_output(data):
            holding.append(conn)
            if len(holding) == 1:
                self._since = now
                asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Write all held output now (the end of the pass, or a batch that is too old)."""
        holding = self.holding
        if holding and _monotonic() - self._last > STALL:
            # A callback blocked after the last held response, then awaited before answering: seen only here.
            self._write_now_until = _monotonic() + WRITE_NOW_TIME
        try:
            for conn in holding:
                conn.flush()
        finally:
            holding.clear()
