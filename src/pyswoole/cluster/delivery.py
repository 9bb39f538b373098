"""Messages between nodes: the outbox of each event worker, and the postman of each node.

Outbox: what a worker sends to other nodes during one pass of its loop is packed into one batch per node and
published in one pipeline (one round trip for the whole pass, one PUBLISH per node), which is what makes tens of
thousands of messages a second possible. Order is kept: the pipeline replays sends and broadcasts in the order
they were made, and only one pipeline of a worker is in flight at a time. The outbox is bounded
(``MAX_QUEUED_BYTES``): past it a send is refused with ``CLUSTER_QUEUE_FULL`` rather than queued.

Postman: one per node, in event worker 0 (the only process of a single-process server). It subscribes to the
node's channel and hands each record to ``server.send``/``server.push``, which reach any session of the node from
that process (PROCESS mode: straight to the reactor thread; BASE mode: forwarded to the owning worker). One
subscriber per node decodes each batch once; a record for a session that is gone is dropped, counted and logged
(at most once a second), never raised. While worker 0 restarts, messages to its node are lost: pub/sub keeps
nothing for an absent subscriber (at most once, documented).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import log
from ..constants import ErrorCode
from ..log import logger
from . import counters, wire
from .wire import Keys

if TYPE_CHECKING:
    from .counters import Counters
    from .link import Link

MAX_QUEUED_BYTES = 64 * 2**20  # per worker: what may wait for Redis before sends are refused
MAX_BATCH_BYTES = 256 * 2**10  # a batch past this size is closed and the next record starts another
RESUBSCRIBE_MAX = 2.0  # seconds between two attempts of a postman whose Redis is away, at most


@dataclass(slots=True)
class _Publish:
    node: str
    batch: bytearray = field(default_factory=lambda: bytearray([wire.VERSION]))
    records: int = 0


@dataclass(slots=True)
class _Broadcast:
    group: str
    head: bytes


class Outbox:
    """One event worker's messages to other nodes, waiting for the end of the loop pass."""

    def __init__(self, link: Link, counts: Counters, loop: asyncio.AbstractEventLoop) -> None:
        self.link = link
        self.counts = counts
        self.loop = loop
        self._commands: list[_Publish | _Broadcast] = []
        self._open: dict[str, _Publish] = {}  # node -> its batch that still takes records
        self._queued = 0
        self._flusher: asyncio.Task[None] | None = None
        self._unheard = log.Throttle()

    def add(self, node: str, record: bytes) -> int:
        """Queue one record for ``node``; 0, or the error code that refuses it."""
        code = self._room(len(record))
        if code:
            return code
        publish = self._open.get(node)
        if publish is None or len(publish.batch) + len(record) > MAX_BATCH_BYTES and publish.records:
            publish = self._open[node] = _Publish(node)
            self._commands.append(publish)
        publish.batch += record
        publish.records += 1
        self._queued += len(record)
        self._schedule()
        return 0

    def add_broadcast(self, group: str, head: bytes) -> int:
        code = self._room(len(head))
        if code:
            return code
        self._open.clear()  # records queued after the broadcast go after it
        self._commands.append(_Broadcast(group, head))
        self._queued += len(head)
        self._schedule()
        return 0

    def _room(self, size: int) -> int:
        if not self.link.available:
            return ErrorCode.CLUSTER_UNAVAILABLE
        if self._queued + size > MAX_QUEUED_BYTES and self._queued:
            return ErrorCode.CLUSTER_QUEUE_FULL
        return 0

    def _schedule(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = self.loop.create_task(self._flush())

    async def _flush(self) -> None:
        """Publish what is queued, pass after pass, one pipeline at a time."""
        while self._commands:
            commands, self._commands = self._commands, []
            self._open.clear()
            queued, self._queued = self._queued, 0
            await self._publish(commands)
            del queued

    async def _publish(self, commands: list[_Publish | _Broadcast]) -> None:
        client = self.link.aclient()
        pipe = client.pipeline(transaction=False)
        broadcast = self.link.ascript("BROADCAST")
        messages = 0
        for command in commands:
            if isinstance(command, _Publish):
                pipe.publish(Keys.channel(command.node), bytes(command.batch))
                messages += command.records
            else:
                await broadcast(args=[wire.PREFIX, command.group, command.head], client=pipe)
                messages += 1
        try:
            replies = await pipe.execute()
        except Exception as exc:  # a Redis error, or the pipeline's own (cancelled as the loop ends)
            self.link.failed(exc)
            self.counts.add(counters.LOST, messages)
            return
        self.link.succeeded()
        self.counts.add(counters.SENT, messages)
        for command, reply in zip(commands, replies, strict=True):
            if isinstance(command, _Publish) and not reply:
                self.counts.add(counters.UNHEARD, command.records)
                if self._unheard.ready():
                    logger.warning(
                        "cluster: node %r has no postman (dead or not started): %d message(s) dropped",
                        command.node,
                        command.records,
                    )

    async def drain(self, timeout: float) -> None:
        """Publish what is still queued (as the worker stops), for at most ``timeout`` seconds."""
        if self._flusher is not None and not self._flusher.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._flusher), timeout)
            except (TimeoutError, asyncio.CancelledError):
                pass


class Postman:
    """The node's subscriber: delivers what other nodes publish to this node's sessions."""

    def __init__(self, link: Link, node: str, counts: Counters, server: Any, exists: Callable[[int], bool]) -> None:
        self.link = link
        self.exists = exists  # is this session of the node open
        self.channel = Keys.channel(node)
        self.node = node
        self.counts = counts
        self.server = server
        self.subscribed = asyncio.Event()
        self._drops: dict[int, int] = {}  # counter -> drops not logged yet
        self._drop_log = log.Throttle()

    async def run(self) -> None:
        """Subscribe and deliver until cancelled, subscribing again whenever Redis comes back."""
        delay = 0.05
        while True:
            pubsub = self.link.aclient().pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.subscribed.set()
                self.link.succeeded()
                delay = 0.05
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                    if message is not None and message["type"] == "message":
                        self.deliver(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.subscribed.clear()
                self.link.failed(exc)
            finally:
                try:
                    await asyncio.shield(pubsub.aclose())  # type: ignore[no-untyped-call]
                except Exception:
                    pass
            await asyncio.sleep(delay)
            delay = min(RESUBSCRIBE_MAX, delay * 2)

    def deliver(self, batch: bytes) -> None:
        """Hand every record of one batch to its sessions."""
        try:
            records = wire.decode_batch(batch)
        except wire.WireError as exc:
            self.counts.add(counters.MALFORMED)
            logger.warning("cluster: a malformed batch on %s dropped: %s", self.channel, exc)
            return
        server = self.server
        push: Callable[..., bool] | None = getattr(server, "push", None)
        delivered = 0
        for record in records:
            if record.kind == wire.SEND:
                delivered += self._outcome(server.send(record.fds[0], record.data))
            elif record.kind == wire.PUSH:
                if push is None:  # a plain server: no session of it is a WebSocket
                    gone = not self.exists(record.fds[0])
                    self._dropped(counters.DROPPED_GONE if gone else counters.DROPPED_NOT_WEBSOCKET)
                    continue
                delivered += self._outcome(push(record.fds[0], record.data, record.opcode, record.flags))
            else:
                excluded = {fd for node, fd in record.exclude if node == self.node}
                for fd in record.fds:
                    if fd in excluded:
                        continue
                    # WebSocket sessions get a frame, the others the bytes as they are.
                    sent = push is not None and push(fd, record.data, record.opcode, record.flags)
                    if not sent and (push is None or server.get_last_error() == ErrorCode.WEBSOCKET_UNCONNECTED):
                        sent = server.send(fd, record.data)
                    delivered += self._outcome(sent)
        if delivered:
            self.counts.add(counters.DELIVERED, delivered)

    def _outcome(self, sent: bool) -> int:
        if sent:
            return 1
        code = self.server.get_last_error()
        if code in (
            ErrorCode.SESSION_NOT_EXIST,
            ErrorCode.SESSION_CLOSED,
            ErrorCode.SESSION_CLOSED_BY_CLIENT,
            ErrorCode.SESSION_CLOSING,
        ):
            self._dropped(counters.DROPPED_GONE)
        elif code == ErrorCode.WEBSOCKET_UNCONNECTED:
            self._dropped(counters.DROPPED_NOT_WEBSOCKET)
        else:
            self._dropped(counters.DROPPED_REFUSED)
        return 0

    def _dropped(self, counter: int) -> None:
        self.counts.add(counter)
        self._drops[counter] = self._drops.get(counter, 0) + 1
        if self._drop_log.ready():
            reasons = ", ".join(f"{count} {counters.FIELDS[which]}" for which, count in sorted(self._drops.items()))
            logger.warning("cluster: messages from other nodes dropped on %s: %s", self.node, reasons)
            self._drops.clear()
