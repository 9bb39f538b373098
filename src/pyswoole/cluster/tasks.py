"""Tasks across nodes (``task_backend="cluster"``): one Redis stream, one consumer group for every node's task
workers, and per-worker result lists.

Caller side (:class:`TaskQueue`, in the process that calls ``task()``): each task is one stream entry (the pickled
payload, its flags, its id, and where its result goes); ``task_wait`` blocks on its own result list, results of
``task()`` and ``task_co`` arrive on another list that an asyncio task of the worker reads. A list belongs to one
worker incarnation (its pid is in the name), so a new incarnation never takes an old one's result for its own.

Task worker side (:class:`TaskConsumer`): reads one entry at a time (``XREADGROUP``), acknowledges and deletes it
once Task is over, and pushes the result first (a node that dies between the two makes the task run again, never
lose its result: delivery is at least once; the caller keeps one result per task). An entry stays pending while
its task runs; one whose consumer's node is dead and that has been pending ``cluster_task_timeout`` seconds is
claimed by a live node's task worker and run there. A task worker that restarts on a live node first runs again
what its previous incarnation had taken.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis

from ..constants import ErrorCode
from ..log import logger
from . import wire
from .link import BLOCK_SLICE, RETRY_AFTER, Error
from .registry import live_and_dead
from .wire import Keys

if TYPE_CHECKING:
    from .link import Link

QUEUE_CAPACITY = 1_000_000  # entries waiting or running in the shared stream; beyond it task() is refused
RESULT_LIFETIME = 3600  # seconds a result list outlives its last result (its worker may be gone)
CLAIM_BATCH = 8  # entries of dead nodes one task worker takes over at a time: the rest is left to the others
UNACKED_MAX = 10_000

# (handle, task id, source worker id, flags, payload): a task as the task worker runs it
RemoteTask = tuple[int, int, int, int, bytes]


def _entries(reply: Any) -> list[tuple[bytes, dict[bytes, bytes] | None]]:
    """The entries of an XREADGROUP reply for our one stream (RESP2 list or RESP3 map)."""
    if not reply:
        return []
    streams = reply.items() if isinstance(reply, dict) else reply
    out: list[tuple[bytes, dict[bytes, bytes] | None]] = []
    for _, entries in streams:
        for entry_id, fields in entries:
            out.append((entry_id, fields or None))
    return out


class TaskQueue:
    """One event worker's (or other process's) side of the shared task queue."""

    def __init__(
        self,
        link: Link,
        node: str,
        worker_id: int,
        pid: int,
        finish_timeout: float,
        on_result: Callable[[int, int, bytes], None],
    ) -> None:
        self.link = link
        self.node = node
        self.worker_id = worker_id
        self.wait_key = Keys.results(node, worker_id, pid, waiting=True)
        self.async_key = Keys.results(node, worker_id, pid, waiting=False)
        self.on_result = on_result
        self._lifetime = finish_timeout if finish_timeout > 0 else RESULT_LIFETIME
        self._expected: dict[int, float] = {}  # task id -> when its result is no longer awaited (task(), task_co)
        self._listener: asyncio.Task[None] | None = None
        self._next_prune = 0.0

    def _fields(self, task_id: int, payload: bytes, flags: int, reply_key: str) -> list[bytes | str | int]:
        return ["d", payload, "f", flags, "t", task_id, "w", self.worker_id, "r", reply_key, "n", self.node]

    def _reply_key(self, waiting: bool | None) -> str:
        return "" if waiting is None else self.wait_key if waiting else self.async_key

    def queue(self, tasks: list[tuple[int, bytes, int]], waiting: bool | None) -> tuple[list[bool], int]:
        """Add tasks (id, payload, flags) to the shared queue; which were added, and the error code if not all.
        ``waiting``: True for task_wait's results, False for task()'s, None when nobody waits."""
        if not self.link.available:
            return [False] * len(tasks), ErrorCode.CLUSTER_UNAVAILABLE
        reply_key = self._reply_key(waiting)
        enqueue = self.link.script("ENQUEUE")
        pipe = self.link.client().pipeline(transaction=False)
        for task_id, payload, flags in tasks:
            enqueue(
                keys=[Keys.tasks],
                args=[wire.PREFIX, QUEUE_CAPACITY, *self._fields(task_id, payload, flags, reply_key)],
                client=pipe,
            )
        try:
            replies = pipe.execute()
        except Error as exc:
            self.link.failed(exc)
            return [False] * len(tasks), ErrorCode.CLUSTER_UNAVAILABLE
        self.link.succeeded()
        return self._queued(tasks, replies, waiting)

    async def aqueue(self, tasks: list[tuple[int, bytes, int]]) -> tuple[list[bool], int]:
        """``queue`` for task_co, without blocking the loop; results come to the worker's result list."""
        if not self.link.available:
            return [False] * len(tasks), ErrorCode.CLUSTER_UNAVAILABLE
        enqueue = self.link.ascript("ENQUEUE")
        pipe = self.link.aclient().pipeline(transaction=False)
        for task_id, payload, flags in tasks:
            await enqueue(
                keys=[Keys.tasks],
                args=[wire.PREFIX, QUEUE_CAPACITY, *self._fields(task_id, payload, flags, self.async_key)],
                client=pipe,
            )
        try:
            replies = await pipe.execute()
        except Error as exc:
            self.link.failed(exc)
            return [False] * len(tasks), ErrorCode.CLUSTER_UNAVAILABLE
        self.link.succeeded()
        return self._queued(tasks, replies, False)

    def _queued(
        self, tasks: list[tuple[int, bytes, int]], replies: list[Any], waiting: bool | None
    ) -> tuple[list[bool], int]:
        added = [bool(reply) for reply in replies]
        if waiting is False:
            deadline = time.monotonic() + self._lifetime
            for (task_id, _, _), ok in zip(tasks, added, strict=True):
                if ok:
                    self._expected[task_id] = deadline
            self._listen()
        if all(added):
            return added, 0
        logger.warning("cluster: the task queue is full (%d entries): task refused", QUEUE_CAPACITY)
        return added, ErrorCode.CLUSTER_QUEUE_FULL

    def wait(self, task_ids: set[int], deadline: float) -> list[tuple[int, int, bytes]]:
        """Block until the results of ``task_ids`` came or ``deadline`` (monotonic) passed: (id, flags, payload)
        of those in time. Results of earlier tasks that timed out are dropped as they come."""
        client = self.link.client()
        results = []
        pending = set(task_ids)
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                item = client.blpop([self.wait_key], timeout=min(left, BLOCK_SLICE))
            except Error as exc:
                self.link.failed(exc)
                time.sleep(min(RETRY_AFTER, max(0.0, deadline - time.monotonic())))
                continue
            if item is None:
                continue
            try:
                task_id, flags, payload = wire.decode_result(item[1])  # type: ignore[arg-type]
            except wire.WireError as exc:
                logger.error("cluster: a task result dropped: %s", exc)
                continue
            if task_id in pending:
                pending.discard(task_id)
                results.append((task_id, flags, payload))
        return results

    # Results of task() and task_co --------------------------------------------------------------------

    def _listen(self) -> None:
        """Read the results of task() and task_co while some are awaited (an event worker only: it has a loop)."""
        if self._listener is None or self._listener.done():
            self._listener = asyncio.get_running_loop().create_task(self._read_results())

    async def _read_results(self) -> None:
        delay = 0.05
        while self._expected:
            try:
                item = await self.link.aclient().blpop([self.async_key], timeout=BLOCK_SLICE)
            except asyncio.CancelledError:
                raise
            except Error as exc:
                self.link.failed(exc)
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)
                continue
            delay = 0.05
            self._prune()
            if item is None:
                continue
            try:
                task_id, flags, payload = wire.decode_result(item[1])  # type: ignore[arg-type]
            except wire.WireError as exc:
                logger.error("cluster: a task result dropped: %s", exc)
                continue
            if self._expected.pop(task_id, None) is None:
                logger.info("cluster: a second result of task %d dropped (it ran twice: at least once)", task_id)
                continue
            self.on_result(task_id, flags, payload)

    def _prune(self) -> None:
        now = time.monotonic()
        if now < self._next_prune:
            return
        self._next_prune = now + 1.0
        for task_id in [task_id for task_id, deadline in self._expected.items() if deadline <= now]:
            del self._expected[task_id]

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()


class TaskConsumer:
    """One task worker's reading of the shared queue."""

    def __init__(self, link: Link, node: str, worker_id: int, task_timeout: float) -> None:
        self.link = link
        self.consumer = f"{node}/{worker_id}"
        self.timeout_ms = int(task_timeout * 1000)
        self.claim_interval = min(5.0, max(0.1, task_timeout / 4))
        self._next_claim = 0.0
        self._own_pending = True  # first run again what a previous incarnation of this consumer had taken
        self._group_ready = False
        self._handles: dict[int, tuple[bytes, str, int]] = {}  # handle -> (entry id, reply key, task id)
        self._next_handle = 1
        self._unacked: list[bytes] = []  # entries whose acknowledgement failed (Redis away): retried

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            self.link.client().xgroup_create(Keys.tasks, wire.STREAM_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def fetch(self, block: float) -> list[RemoteTask]:
        """The next task(s) for this task worker, waiting at most ``block`` seconds (blocking mode)."""
        if not self.link.available:
            time.sleep(min(block, RETRY_AFTER))
            return []
        try:
            tasks = self._before_read()
            if not tasks:
                reply = self.link.client().xreadgroup(
                    wire.STREAM_GROUP, self.consumer, {Keys.tasks: ">"}, count=1, block=max(1, int(block * 1000))
                )
                tasks = self._tasks(_entries(reply))
        except Error as exc:
            self._failed(exc)
            return []
        self.link.succeeded()
        return tasks

    async def afetch(self, block: float) -> list[RemoteTask]:
        """``fetch`` for a task worker with an event loop: the wait for new entries does not block it."""
        if not self.link.available:
            await asyncio.sleep(min(block, RETRY_AFTER))
            return []
        try:
            tasks = self._before_read()
            if not tasks:
                reply = await self.link.aclient().xreadgroup(
                    wire.STREAM_GROUP, self.consumer, {Keys.tasks: ">"}, count=1, block=max(1, int(block * 1000))
                )
                tasks = self._tasks(_entries(reply))
        except Error as exc:
            self._failed(exc)
            return []
        self.link.succeeded()
        return tasks

    def _failed(self, exc: Exception) -> None:
        if isinstance(exc, redis.ResponseError) and "NOGROUP" in str(exc):
            self._group_ready = False  # Redis lost the stream (restarted without persistence): made again
            return
        self.link.failed(exc)

    def _before_read(self) -> list[RemoteTask]:
        """What comes before new entries: acknowledgements owed, this consumer's own pending entries, and the
        pending entries of dead nodes once due."""
        self._ensure_group()
        client = self.link.client()
        if self._unacked:
            pipe = client.pipeline(transaction=False)
            pipe.xack(Keys.tasks, wire.STREAM_GROUP, *self._unacked)
            pipe.xdel(Keys.tasks, *self._unacked)
            pipe.execute()
            self._unacked.clear()
        if self._own_pending:
            entries = _entries(client.xreadgroup(wire.STREAM_GROUP, self.consumer, {Keys.tasks: "0"}, count=1))
            if entries:
                return self._tasks(entries)
            self._own_pending = False
        now = time.monotonic()
        if now >= self._next_claim:
            self._next_claim = now + self.claim_interval
            return self._claim_from_dead_nodes()
        return []

    def _claim_from_dead_nodes(self) -> list[RemoteTask]:
        client = self.link.client()
        pending: Any = client.xpending_range(
            Keys.tasks, wire.STREAM_GROUP, min="-", max="+", count=100, idle=self.timeout_ms
        )
        if not pending:
            return []
        live = set(live_and_dead(self.link)[0])
        orphans = [
            entry["message_id"] for entry in pending if entry["consumer"].decode().rpartition("/")[0] not in live
        ][:CLAIM_BATCH]
        if not orphans:
            return []
        claimed: Any = client.xclaim(Keys.tasks, wire.STREAM_GROUP, self.consumer, self.timeout_ms, orphans)
        tasks = self._tasks([(entry_id, fields or None) for entry_id, fields in claimed])
        if tasks:
            logger.warning("cluster: %d task(s) of dead node(s) taken over by %s", len(tasks), self.consumer)
        return tasks

    def _tasks(self, entries: list[tuple[bytes, dict[bytes, bytes] | None]]) -> list[RemoteTask]:
        tasks = []
        for entry_id, fields in entries:
            if fields is None:  # deleted while pending: nothing to run
                self._unacked.append(entry_id)
                continue
            try:
                task_id, source, flags = int(fields[b"t"]), int(fields[b"w"]), int(fields[b"f"])
                payload, reply_key = fields[b"d"], fields[b"r"].decode()
            except (KeyError, ValueError) as exc:
                logger.error("cluster: malformed task entry %s dropped: %r", entry_id, exc)
                self._unacked.append(entry_id)
                continue
            handle = self._next_handle
            self._next_handle += 1
            self._handles[handle] = (entry_id, reply_key, task_id)
            tasks.append((handle, task_id, source, flags, payload))
        return tasks

    def reply(self, handle: int, flags: int, payload: bytes) -> bool:
        """Send a task's result to the list its caller reads; False if nobody waits or Redis is away."""
        entry = self._handles.get(handle)
        if entry is None or not entry[1]:
            return False
        _, reply_key, task_id = entry
        try:
            pipe = self.link.client().pipeline(transaction=False)
            pipe.rpush(reply_key, wire.encode_result(task_id, flags, payload))
            pipe.expire(reply_key, RESULT_LIFETIME)
            pipe.execute()
        except Error as exc:
            self.link.failed(exc)
            logger.warning("cluster: the result of task %d could not be sent: %s", task_id, exc)
            return False
        return True

    def done(self, handle: int) -> None:
        """The task is over: its entry leaves the queue (acknowledged, deleted)."""
        entry = self._handles.pop(handle, None)
        if entry is None:
            return
        entry_id = entry[0]
        try:
            pipe = self.link.client().pipeline(transaction=False)
            pipe.xack(Keys.tasks, wire.STREAM_GROUP, entry_id)
            pipe.xdel(Keys.tasks, entry_id)
            pipe.execute()
        except Error as exc:
            self.link.failed(exc)
            if len(self._unacked) < UNACKED_MAX:
                self._unacked.append(entry_id)
