"""``server.cluster``: this server as one node of a cluster that shares a Redis, and the hooks that run it.

The object exists in every process of the server (made before the first fork, prepared at ``start()`` when the
``cluster`` setting is there); what a process needs of Redis is made in that process on first use (``Link``).
Who does what:

* the manager (or the only process) keeps the node registered and sweeps dead nodes (``registry.Keeper``);
* every event worker has an outbox for what it sends to other nodes (``delivery.Outbox``); event worker 0 has
  the node's postman (``delivery.Postman``);
* the process where a session ends (BASE: its worker; PROCESS: the master, whose reactor threads own the sockets)
  removes the session from its groups, a batch per loop pass;
* task workers read the shared task queue with ``task_backend="cluster"`` (``tasks.TaskConsumer``), and callers
  queue tasks and read results (``tasks.TaskQueue``).

Every call answers True or False (with ``server.get_last_error()``), or a list, never raises for a Redis outage;
the redis package is imported only once the cluster is configured, so a server without one does not need it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from ..constants import ErrorCode
from ..errors import ServerError
from ..log import logger
from . import counters, wire

if TYPE_CHECKING:
    from .counters import Counters
    from .delivery import Outbox, Postman
    from .link import Link
    from .registry import Keeper
    from .tasks import TaskConsumer, TaskQueue

CLOSE_BATCH = 500  # sessions whose memberships one script call removes
SUBSCRIBE_WAIT = 1.0  # how long worker 0 waits, before WorkerStart, for its postman to listen
TEXT, BINARY, FIN = 1, 2, 1

_CLUSTERS: weakref.WeakKeyDictionary[Any, Cluster] = weakref.WeakKeyDictionary()


def _to_bytes(data: Any) -> bytes:
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"data must be bytes or str, not {type(data).__name__}")


def _pairs(exclude: tuple[str, int] | Iterable[tuple[str, int]] | None) -> list[tuple[str, int]]:
    """``exclude`` as a list of (node, fd): one pair, or an iterable of them."""
    if exclude is None:
        return []
    if isinstance(exclude, tuple) and len(exclude) == 2 and isinstance(exclude[0], str):
        return [(exclude[0], int(exclude[1]))]
    return [(str(node), int(fd)) for node, fd in exclude]


class Cluster:
    """This server as a node of a cluster: ``server.cluster``. Calls work from any process of a started server
    whose ``cluster`` setting names a Redis (``redis://host:port/db``); see docs/cluster.md."""

    @classmethod
    def of(cls, rt: Any) -> Cluster:
        """The cluster object of a server's runtime (made on first use)."""
        # Kept by the user's server object: the runtime is a compiled class, which weak references cannot name.
        cluster = _CLUSTERS.get(rt.server)
        if cluster is None:
            cluster = _CLUSTERS[rt.server] = cls(rt)
        return cluster

    def __init__(self, rt: Any) -> None:
        self._rt = rt
        self.node = ""
        """This node's name (the ``cluster_node`` setting, or ``host:port:pid``); "" until start()."""
        self._link: Link | None = None
        self._counts: Counters | None = None
        self._ttl = 10.0
        self._task_timeout = 30.0
        self._info: dict[str, object] = {}  # what the node's registration says of it
        # Per process, made after fork as the process takes its role:
        self._outbox: Outbox | None = None
        self._postman: Postman | None = None
        self._postman_task: asyncio.Task[None] | None = None
        self._keeper: Keeper | None = None
        self._queue: TaskQueue | None = None
        self._closed: deque[int] = deque()
        self._closed_lock = threading.Lock()
        self._cleanup_due = False
        self._cleanup: asyncio.Task[None] | None = None

    # Start ----------------------------------------------------------------------------------------------

    def prepare(self, setting: dict[str, Any]) -> None:
        """At ``start()``, before any fork: name the node, make the shared counters, hook into the runtime."""
        try:
            from .link import Link
        except ImportError as exc:
            raise ServerError(
                f"the cluster setting needs the redis package ({exc}): pip install 'pyswoole[cluster]'",
                ErrorCode.CLUSTER_NOT_CONFIGURED,
            ) from None
        rt = self._rt
        primary = rt.ports[0]
        host = socket.gethostname() if primary.host in ("0.0.0.0", "::", "") else primary.host
        self.node = setting.get("cluster_node") or f"{host}:{primary.port}:{os.getpid()}"
        self._ttl = setting["cluster_node_ttl"]
        self._task_timeout = setting["cluster_task_timeout"]
        self._link = Link(setting["cluster"])
        rows = setting["worker_num"] + setting["task_worker_num"] + len(rt.processes) + 1
        self._counts = counters.Counters(rows)
        self._info = {
            "host": host,
            "port": primary.port,
            "pid": os.getpid(),
            "started": time.time(),
            "worker_num": setting["worker_num"],
            "task_worker_num": setting["task_worker_num"],
        }
        rt.cluster = self
        rt.worker_hooks.append(self)

    def _ready(self) -> int:
        """0 if cluster calls can be made from here, else why not."""
        if not self._rt.started:
            return ErrorCode.SERVER_NOT_RUNNING
        if self._link is None:
            return ErrorCode.CLUSTER_NOT_CONFIGURED
        return 0

    def _fail(self, code: int) -> Literal[False]:
        self._rt.last_error = int(code)
        return False

    # Nodes ----------------------------------------------------------------------------------------------

    def nodes(self) -> list[str] | Literal[False]:
        """The names of the live nodes (sorted); False if Redis cannot be asked."""
        rt = self._rt
        if rt.foreign_thread():
            return rt.in_loop_thread(self.nodes)  # type: ignore[no-any-return]
        code = self._ready()
        if code:
            return self._fail(code)
        from .registry import live_and_dead

        link = self._link
        assert link is not None
        live: list[str] | Literal[False] = self._call(lambda: live_and_dead(link)[0])
        return live

    def _call(self, call: Any) -> Any:
        """Run a blocking Redis call: its value, or False (CLUSTER_UNAVAILABLE) when Redis is away."""
        from .link import Error

        link = self._link
        assert link is not None
        if not link.available:
            return self._fail(ErrorCode.CLUSTER_UNAVAILABLE)
        try:
            value = call()
        except Error as exc:
            link.failed(exc)
            return self._fail(ErrorCode.CLUSTER_UNAVAILABLE)
        link.succeeded()
        return value

    def stats(self) -> dict[str, int]:
        """This node's delivery counters (see docs/cluster.md), summed over its processes; {} without a cluster."""
        return self._counts.totals() if self._counts is not None else {}

    # Sessions across nodes ------------------------------------------------------------------------------

    def send(self, node: str, fd: int, data: bytes | str) -> bool:
        """Send ``data`` to session ``fd`` of ``node`` (as ``server.send`` there). True once it is on its way:
        a session that is gone by then is a counted, logged drop on that node."""
        rt = self._rt
        if rt.foreign_thread():
            return bool(rt.in_loop_thread(self.send, node, fd, data))
        payload = _to_bytes(data)
        if not payload:
            return self._fail(ErrorCode.NO_PAYLOAD)
        code = self._ready()
        if code:
            return self._fail(code)
        if node == self.node:
            return bool(rt.server.send(fd, payload))
        return self._route(node, wire.encode_send(fd, payload))

    def push(self, node: str, fd: int, data: bytes | str, opcode: int | None = None, flags: int = FIN) -> bool:
        """Push one WebSocket message to session ``fd`` of ``node`` (as ``WebSocketServer.push`` there:
        ``opcode`` None is TEXT for str and BINARY for bytes)."""
        rt = self._rt
        if rt.foreign_thread():
            return bool(rt.in_loop_thread(self.push, node, fd, data, opcode, flags))
        code = self._ready()
        if code:
            return self._fail(code)
        if opcode is None:
            opcode = TEXT if isinstance(data, str) else BINARY
        payload = _to_bytes(data)
        if node == self.node:
            push = getattr(rt.server, "push", None)
            return (
                bool(push(fd, payload, opcode, flags))
                if push is not None
                else self._fail(ErrorCode.WEBSOCKET_UNCONNECTED)
            )
        return self._route(node, wire.encode_push(fd, payload, opcode, flags))

    def _route(self, node: str, record: bytes) -> bool:
        """Hand one record to the outbox (an event worker) or publish it now (any other process)."""
        outbox = self._outbox
        if outbox is not None:
            code = outbox.add(node, record)
            return self._fail(code) if code else True
        counts = self._counts
        assert counts is not None
        counts.use_row(self._rt.worker_id)
        heard = self._call(lambda: self._link.client().publish(wire.Keys.channel(node), bytes([wire.VERSION]) + record))  # type: ignore[union-attr]
        if heard is False:
            counts.add(counters.LOST)
            return False
        counts.add(counters.SENT)
        if not heard:
            counts.add(counters.UNHEARD)
            logger.warning("cluster: node %r has no postman (dead or not started): a message dropped", node)
        return True

    # Groups ---------------------------------------------------------------------------------------------

    def join(self, fd: int, group: str) -> bool:
        """Add session ``fd`` of this node to ``group`` (made on first join). It leaves when it closes."""
        rt = self._rt
        if rt.foreign_thread():
            return bool(rt.in_loop_thread(self.join, fd, group))
        code = self._ready() or self._check_group(group)
        if code:
            return self._fail(code)
        if rt.factory.protocol_flags(fd) < 0:
            return self._fail(ErrorCode.SESSION_NOT_EXIST)
        link = self._link
        assert link is not None
        return self._call(lambda: link.script("JOIN")(args=[wire.PREFIX, self.node, fd, group])) is not False

    def leave(self, fd: int, group: str) -> bool:
        """Remove session ``fd`` of this node from ``group``; False (SESSION_NOT_EXIST) if it was not in it."""
        rt = self._rt
        if rt.foreign_thread():
            return bool(rt.in_loop_thread(self.leave, fd, group))
        code = self._ready() or self._check_group(group)
        if code:
            return self._fail(code)
        link = self._link
        assert link is not None
        removed = self._call(lambda: link.script("LEAVE")(args=[wire.PREFIX, self.node, fd, group]))
        if removed is False:
            return False
        return True if removed else self._fail(ErrorCode.SESSION_NOT_EXIST)

    def members(self, group: str) -> list[tuple[str, int]] | Literal[False]:
        """The (node, fd) of every member of ``group`` on a live node, sorted; False if Redis cannot be asked."""
        rt = self._rt
        if rt.foreign_thread():
            return rt.in_loop_thread(self.members, group)  # type: ignore[no-any-return]
        code = self._ready() or self._check_group(group)
        if code:
            return self._fail(code)
        link = self._link
        assert link is not None
        reply = self._call(lambda: link.script("MEMBERS")(args=[wire.PREFIX, group]))
        return False if reply is False else sorted(wire.members_from_reply(reply))

    def broadcast(
        self,
        group: str,
        data: bytes | str,
        exclude: tuple[str, int] | Iterable[tuple[str, int]] | None = None,
        opcode: int | None = None,
        flags: int = FIN,
    ) -> bool:
        """Deliver ``data`` to every member of ``group`` on every node but those in ``exclude`` (one (node, fd)
        or an iterable of them): WebSocket sessions get it pushed (``opcode``/``flags`` as for ``push``), plain
        sessions sent. True once it is on its way to every node with members."""
        rt = self._rt
        if rt.foreign_thread():
            return bool(rt.in_loop_thread(self.broadcast, group, data, exclude, opcode, flags))
        code = self._ready() or self._check_group(group)
        if code:
            return self._fail(code)
        if opcode is None:
            opcode = TEXT if isinstance(data, str) else BINARY
        head = wire.encode_broadcast_head(_to_bytes(data), opcode, flags, _pairs(exclude))
        outbox = self._outbox
        if outbox is not None:
            code = outbox.add_broadcast(group, head)
            return self._fail(code) if code else True
        link = self._link
        assert link is not None and self._counts is not None
        self._counts.use_row(rt.worker_id)
        if self._call(lambda: link.script("BROADCAST")(args=[wire.PREFIX, group, head])) is False:
            self._counts.add(counters.LOST)
            return False
        self._counts.add(counters.SENT)
        return True

    @staticmethod
    def _check_group(group: Any) -> int:
        if not isinstance(group, str) or not group:
            logger.warning("cluster: a group is a non-empty str, not %r", group)
            return ErrorCode.INVALID_PARAMS
        return 0

    # Runtime hooks: event workers -----------------------------------------------------------------------

    async def worker_started(self, worker: Any) -> None:
        """An event worker starts: its outbox; in worker 0 the postman; in the only process the keeper too."""
        from .delivery import Outbox, Postman

        rt = self._rt
        link, counts = self._link, self._counts
        assert link is not None and counts is not None
        self._forget_parent()
        counts.use_row(worker.worker_id)
        self._outbox = Outbox(link, counts, worker.loop)
        if not rt.manager_pid:
            self._keeper = self._new_keeper()
            self._keep()
        if worker.worker_id == 0:
            factory = rt.factory
            self._postman = Postman(
                link,
                self.node,
                counts,
                rt.server,
                lambda fd: factory.protocol_flags(fd) >= 0,
                lambda fd: factory.protocol_flags(fd) > 0,
            )
            self._postman_task = worker.loop.create_task(self._postman.run())
            try:
                await asyncio.wait_for(self._postman.subscribed.wait(), SUBSCRIBE_WAIT)
            except TimeoutError:
                logger.warning("cluster: the postman of %r is not listening yet (Redis away?)", self.node)

    def _forget_parent(self) -> None:
        """A forked child starts with its parent's per-process parts (the manager's keeper, above all: a worker
        that stops must not unregister its node): it makes its own."""
        self._outbox = self._postman = self._postman_task = self._keeper = self._queue = self._cleanup = None
        self._closed.clear()
        self._cleanup_due = False

    def _keep(self) -> None:
        """The only process keeps the registration itself, from its loop."""
        keeper = self._keeper
        worker = self._rt.worker
        if keeper is not None and worker is not None and not worker.stopping:
            worker.loop.call_later(keeper.tick(), self._keep)

    async def worker_stopping(self, worker: Any) -> None:
        """An event worker stops (its connections closed): what it queued leaves, its tasks end."""
        wait = min(1.0, self._rt.setting["max_wait_time"])
        if self._outbox is not None:
            await self._outbox.drain(wait)
        await self._flush_closed()
        for task in (self._postman_task, self._cleanup):
            if task is not None:
                task.cancel()
        if self._queue is not None:
            self._queue.stop()
        if self._keeper is not None:
            self._keeper.leave()
        assert self._link is not None
        try:
            await self._link.aclose()
        except Exception:
            pass

    # Runtime hooks: the manager -------------------------------------------------------------------------

    def manager_tick(self) -> float:
        """Each pass of the manager's loop: refresh the registration when due; seconds until due again."""
        if self._keeper is None:
            if self._counts is None:
                return 60.0
            self._counts.use_row(-1)
            self._keeper = self._new_keeper()
        return self._keeper.tick()

    def manager_stopped(self) -> None:
        """The node stops (every worker is gone): it leaves the cluster at once."""
        if self._keeper is not None:
            self._keeper.leave()

    def _new_keeper(self) -> Keeper:
        from .registry import Keeper

        assert self._link is not None
        factory = self._rt.factory
        return Keeper(self._link, self.node, self._info, self._ttl, lambda fd: factory.protocol_flags(fd) >= 0)

    # Runtime hooks: sessions that end -------------------------------------------------------------------

    def session_closed(self, session_id: int) -> None:
        """A session of this node ended (BASE: in its worker; PROCESS: in a reactor thread of the master): its
        group memberships are removed with the others of this loop pass."""
        rt = self._rt
        role = rt.worker or rt.master
        loop = role.loop if role is not None else None
        if loop is None or self._link is None:
            return  # the manager's sweep removes them later
        with self._closed_lock:
            self._closed.append(session_id)
            if self._cleanup_due:
                return
            self._cleanup_due = True
        try:
            loop.call_soon_threadsafe(self._start_cleanup)
        except RuntimeError:  # the loop has closed: the manager's sweep will do
            pass

    def _start_cleanup(self) -> None:
        if self._cleanup is None or self._cleanup.done():
            self._cleanup = asyncio.get_running_loop().create_task(self._flush_closed())

    async def _flush_closed(self) -> None:
        from .link import Error

        link = self._link
        assert link is not None
        while True:
            with self._closed_lock:
                closed = list(self._closed)
                self._closed.clear()
                self._cleanup_due = False
            if not closed:
                return
            if not link.available:
                continue  # dropped: the manager's sweep removes them once Redis is back
            try:
                for start in range(0, len(closed), CLOSE_BATCH):
                    await link.ascript("CLOSE")(args=[wire.PREFIX, self.node, *closed[start : start + CLOSE_BATCH]])
            except Error as exc:
                link.failed(exc)

    # Runtime hooks: tasks across nodes ------------------------------------------------------------------

    def _task_queue(self) -> TaskQueue:
        if self._queue is None:
            from .tasks import TaskQueue

            rt = self._rt
            assert self._link is not None
            self._queue = TaskQueue(
                self._link,
                self.node,
                rt.worker_id,
                os.getpid(),
                rt.setting["task_finish_timeout"],
                lambda task_id, flags, payload: rt.tasks.on_remote_result(task_id, flags, payload),
            )
        return self._queue

    def queue_tasks(self, tasks: list[tuple[int, bytes, int]], waiting: bool | None) -> tuple[list[bool], int]:
        """Queue (task id, payload, flags) for every node's task workers; which were queued, and an error code."""
        return self._task_queue().queue(tasks, waiting)

    async def aqueue_tasks(self, tasks: list[tuple[int, bytes, int]]) -> tuple[list[bool], int]:
        return await self._task_queue().aqueue(tasks)

    def wait_results(self, task_ids: set[int], deadline: float) -> list[tuple[int, int, bytes]]:
        return self._task_queue().wait(task_ids, deadline)

    def task_source(self, worker_id: int) -> TaskConsumer:
        """What a task worker reads the shared queue with."""
        from .tasks import TaskConsumer

        assert self._link is not None and self._counts is not None
        self._forget_parent()
        self._counts.use_row(worker_id)
        return TaskConsumer(self._link, self.node, worker_id, self._task_timeout)
