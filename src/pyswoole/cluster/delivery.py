"""Messages between nodes: the outbox of each event worker, and the postman of each node.

Outbox: what a worker sends to other nodes meanwhile is packed into one batch per node and the batches are
written to Redis in one go (one round trip, one PUBLISH per node), which is what makes tens of thousands of
messages a second possible: a round trip costs a Python client ~100 us of CPU, so a worker starts at most one
every ``MIN_FLUSH_GAP`` and sends everything that came meanwhile with it. Order is kept: the commands go in the
order the sends and broadcasts were made, and only one round trip of a worker is in flight at a time. The outbox
is bounded (``MAX_QUEUED_BYTES``): past it a send is refused with ``CLUSTER_QUEUE_FULL`` rather than queued.

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

from redis.exceptions import NoScriptError, ResponseError

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
_GONE = frozenset(
    {
        ErrorCode.SESSION_NOT_EXIST,
        ErrorCode.SESSION_CLOSED,
        ErrorCode.SESSION_CLOSED_BY_CLIENT,
        ErrorCode.SESSION_CLOSING,
    }
)
COMPRESS = 2  # push()'s flag: deflate where the session agreed to permessage-deflate
MIN_FLUSH_GAP = 0.0005  # seconds between the starts of two round trips of one worker's outbox
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
        self._timer: asyncio.TimerHandle | None = None
        self._last_flush = float("-inf")
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
        if self._flusher is not None and not self._flusher.done() or self._timer is not None:
            return  # the round trip in flight takes it next, or one is due
        wait = self._last_flush + MIN_FLUSH_GAP - self.loop.time()
        if wait > 0:
            self._timer = self.loop.call_later(wait, self._start)
        else:
            self._start()

    def _start(self) -> None:
        self._timer = None
        self._flusher = self.loop.create_task(self._flush())

    async def _flush(self) -> None:
        """Publish what is queued, one round trip at a time, at most one every MIN_FLUSH_GAP."""
        loop = self.loop
        while self._commands:
            self._last_flush = loop.time()
            commands, self._commands = self._commands, []
            self._open.clear()
            self._queued = 0
            await self._publish(commands)
            wait = self._last_flush + MIN_FLUSH_GAP - loop.time()
            if self._commands and wait > 0:
                await asyncio.sleep(wait)

    async def _publish(self, commands: list[_Publish | _Broadcast]) -> None:
        broadcast = self.link.ascript("BROADCAST")
        packed: list[tuple[Any, ...]] = []
        messages = 0
        for command in commands:
            if isinstance(command, _Publish):
                packed.append(("PUBLISH", Keys.channel(command.node), bytes(command.batch)))
                messages += command.records
            else:
                packed.append(("EVALSHA", broadcast.sha, 0, wire.PREFIX, command.group, command.head))
                messages += 1
        try:
            replies = await self._execute(packed)
            for index, reply in enumerate(replies):
                if isinstance(reply, NoScriptError):  # Redis restarted since the script was loaded
                    replies[index] = await broadcast(args=list(packed[index][3:]))
                elif isinstance(reply, Exception):
                    raise reply
        except Exception as exc:  # a Redis error, or cancelled as the loop ends
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

    async def _execute(self, packed: list[tuple[Any, ...]]) -> list[Any]:
        """Send the commands in one write on one connection of the pool and read every reply (an error reply
        comes back as its exception): redis-py's pipeline, without its bookkeeping, which costs as much again."""
        pool = self.link.aclient().connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.send_packed_command(conn.pack_commands(packed), check_health=False)
            replies: list[Any] = []
            for _ in packed:
                try:
                    replies.append(await conn.read_response())
                except ResponseError as exc:
                    replies.append(exc)
            return replies
        except BaseException:
            await conn.disconnect()  # replies may be half read: the connection cannot serve again
            raise
        finally:
            await pool.release(conn)

    async def drain(self, timeout: float) -> None:
        """Publish what is still queued (as the worker stops), for at most ``timeout`` seconds."""
        if self._timer is not None:
            self._timer.cancel()
            self._start()
        if self._flusher is not None and not self._flusher.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._flusher), timeout)
            except (TimeoutError, asyncio.CancelledError):
                pass


class Postman:
    """The node's subscriber: delivers what other nodes publish to this node's sessions."""

    def __init__(
        self,
        link: Link,
        node: str,
        counts: Counters,
        server: Any,
        exists: Callable[[int], bool],
        established: Callable[[int], bool],
    ) -> None:
        self.link = link
        self.exists = exists  # is this session of the node open
        self.established = established  # ... and an upgraded WebSocket session
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
        """Hand every record of one batch to its sessions: what one session gets from one batch leaves in one
        write (a socket write costs more than framing the message), in the order it was sent."""
        try:
            records = wire.decode_batch(batch)
        except wire.WireError as exc:
            self.counts.add(counters.MALFORMED)
            logger.warning("cluster: a malformed batch on %s dropped: %s", self.channel, exc)
            return
        # WebSocketServer.pack frames without a session's deflate state: COMPRESS needs push(), one by one.
        pack: Callable[..., bytes] | None = getattr(self.server, "pack", None)
        queued: dict[int, list[bytes]] = {}
        websocket: dict[int, bool] = {}
        for record in records:
            if record.kind == wire.BROADCAST:
                self._send_queued(queued)
                self._broadcast(record, pack)
                return
            fd = record.fds[0]
            if record.kind == wire.SEND:
                queued.setdefault(fd, []).append(record.data)
                continue
            is_websocket = websocket.get(fd)
            if is_websocket is None:
                is_websocket = websocket[fd] = self.established(fd)
            if not is_websocket:
                self._dropped(counters.DROPPED_NOT_WEBSOCKET if self.exists(fd) else counters.DROPPED_GONE)
            elif pack is None or record.flags & COMPRESS:
                self._send_queued({fd: queued.pop(fd, [])})
                self._count(self.server.push(fd, record.data, record.opcode, record.flags))
            else:
                queued.setdefault(fd, []).append(pack(record.data, record.opcode, record.flags))
        self._send_queued(queued)

    def _send_queued(self, queued: dict[int, list[bytes]]) -> None:
        send = self.server.send
        for fd, parts in queued.items():
            if parts:
                self._count(send(fd, parts[0] if len(parts) == 1 else b"".join(parts)), len(parts))

    def _broadcast(self, record: wire.Delivery, pack: Callable[..., bytes] | None) -> None:
        """WebSocket members get the frame (made once), the others the bytes as they are."""
        excluded = {fd for node, fd in record.exclude if node == self.node}
        server = self.server
        frame = pack(record.data, record.opcode, record.flags) if pack is not None else b""
        for fd in record.fds:
            if fd in excluded:
                continue
            if not frame or not self.established(fd):
                self._count(server.send(fd, record.data))
            elif record.flags & COMPRESS:
                self._count(server.push(fd, record.data, record.opcode, record.flags))
            else:
                self._count(server.send(fd, frame))

    def _count(self, sent: bool, messages: int = 1) -> None:
        """Count what one send delivered, or why it dropped ``messages``."""
        if sent:
            self.counts.add(counters.DELIVERED, messages)
            return
        code = self.server.get_last_error()
        if code in _GONE:
            self._dropped(counters.DROPPED_GONE, messages)
        elif code == ErrorCode.WEBSOCKET_UNCONNECTED:
            self._dropped(counters.DROPPED_NOT_WEBSOCKET, messages)
        else:
            self._dropped(counters.DROPPED_REFUSED, messages)

    def _dropped(self, counter: int, messages: int = 1) -> None:
        self.counts.add(counter, messages)
        self._drops[counter] = self._drops.get(counter, 0) + messages
        if self._drop_log.ready():
            reasons = ", ".join(f"{count} {counters.FIELDS[which]}" for which, count in sorted(self._drops.items()))
            logger.warning("cluster: messages from other nodes dropped on %s: %s", self.node, reasons)
            self._drops.clear()
