"""One connection's HTTP/1.1 conversation: requests in, answered in order, one at a time.

Sans-IO, shared by both run modes' connections (the BASE worker's, the PROCESS reactor thread's): bytes go in
with :meth:`Conversation.receive`; :meth:`Conversation.next` hands out what to answer next (a whole request, a
protocol error, or the upgrade that follows a request) once the previous answer is complete
(:meth:`Conversation.answered`). Pipelined requests wait here in order.

Invariants: at most one item is being answered at a time, so answers leave in the order requests came; what
waits is bounded by ``max_queued`` bytes of bodies plus the parser's own bounds (``over_limit`` tells the owner to
stop reading until the queue drains); a ``100 Continue`` is only ever sent while nothing else is being answered or
waits to be (so it can never land inside or before another response), and never once the client has started to
send the body it was for.
"""

from __future__ import annotations

import time
from collections import deque

from .headers import CONTINUE_RESPONSE as CONTINUE
from .parser import (
    BodyData,
    ParseError,
    RequestCollector,
    RequestEnd,
    RequestHead,
    RequestParser,
    Upgraded,
    WholeRequest,
)

Item = WholeRequest | ParseError | Upgraded


class Conversation:
    __slots__ = (
        "parser", "busy", "_collector", "_queue", "_queued_bytes", "_max_queued", "_owed_continue", "_upgraded",
    )  # fmt: skip

    def __init__(self, parser: RequestParser, max_queued: int) -> None:
        self.parser = parser
        self.busy = False  # an item was handed out and is not answered yet
        self._collector = RequestCollector()
        self._queue: deque[Item] = deque()
        self._queued_bytes = 0
        self._max_queued = max_queued
        self._owed_continue = False  # a request waits for "100 Continue" until the current answer is done
        # What the client sent after an upgrade request, kept until the upgrade is decided (None: no upgrade).
        self._upgraded: bytearray | None = None

    def receive(self, data: bytes) -> bytes:
        """Take bytes from the client; return what to send at once (a ``100 Continue``, or nothing)."""
        if self._upgraded is not None:
            self._upgraded += data  # the new protocol's, read once the upgrade is answered
            self._queued_bytes += len(data)
            return b""
        events = self.parser.feed(data)
        interim = b""
        waiting = self.busy or bool(self._queue)  # an answer is due before any other bytes
        for event in events:
            kind = type(event)
            if kind is RequestHead:
                if event.expect_continue:  # type: ignore[union-attr]
                    if waiting:
                        self._owed_continue = True
                    else:
                        interim = CONTINUE
            elif kind is BodyData or kind is RequestEnd:
                # A body that comes without waiting for the 100 needs none (a late one would land in the answer).
                self._owed_continue = False
                if kind is RequestEnd:
                    waiting = True  # a request that ended in this feed is answered before the next gets its 100
        for item in self._collector.collect(events):
            if type(item) is Upgraded:
                self._upgraded = bytearray(item.rest)
            self._queue.append(item)
            if type(item) is tuple:
                self._queued_bytes += len(item[1])
        return interim

    def upgraded_bytes(self) -> bytes:
        """Everything the client sent after its upgrade request (once ``next`` handed out the ``Upgraded``)."""
        rest = bytes(self._upgraded or b"")
        self._upgraded = bytearray()
        self._queued_bytes = 0
        return rest

    def next(self) -> Item | None:
        """The next item to answer, if nothing is being answered and one is ready; it is then being answered."""
        if self.busy or not self._queue:
            return None
        item = self._queue.popleft()
        if type(item) is tuple:
            self._queued_bytes -= len(item[1])
        self.busy = True
        return item

    def answered(self) -> bytes:
        """The item handed out is answered; return what to send now (a ``100 Continue`` that was owed)."""
        self.busy = False
        if self._owed_continue and not self._queue:
            self._owed_continue = False
            return CONTINUE
        return b""

    @property
    def awaiting_head(self) -> bool:
        """Nothing is being answered or waits, and no body is arriving: the client owes a complete header
        section (what ``http_header_timeout`` bounds)."""
        return not self.busy and not self._queue and not self.parser.in_body

    @property
    def over_limit(self) -> bool:
        """Enough waits unanswered that the owner should stop reading until ``next`` takes some."""
        return self._queued_bytes > self._max_queued or len(self._queue) > 64


def owed_since(since: float, owes_head: bool) -> float:
    """For ``http_header_timeout``: when the client began to owe a complete header section (a new connection, an
    answered request), given the time noted so far; 0.0 while it owes none (a request being answered, its body
    arriving). The sweep closes the connection once that is too long ago, however the header trickles in."""
    if not owes_head:
        return 0.0
    return since or time.monotonic()
