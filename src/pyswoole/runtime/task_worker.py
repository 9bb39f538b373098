"""A task worker: runs the Task callback for the tasks event workers send it, and sends the results back.

By default a plain blocking loop, one task at a time (Swoole's default): the worker waits on its pipe (and on
the shared queue in ``task_ipc_mode`` 3) with ``select``, so a SIGTERM lets it finish the task at hand and
stop. With ``task_enable_coroutine`` it runs an event loop instead: Task may be ``async def``, gets a
:class:`Task` object, and several tasks may be in flight at once.

A task worker exits after ``task_max_request`` tasks (plus grace); the tasks still queued on its pipe wait
there for its replacement, which inherits the pipe, so none is lost.

With ``task_backend="cluster"`` it also takes tasks from the cluster's shared queue (``rt.cluster.task_source``),
one at a time as it is free (blocking mode: between two looks at its pipes, waiting at most ``REMOTE_BLOCK``;
coroutine mode: while fewer than ``REMOTE_IN_FLIGHT`` run); their results go back through the cluster, and a task
leaves the queue once Task is over.
"""

from __future__ import annotations

import asyncio
import os
import random
import select
import signal
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import log
from ..constants import EventType, WorkerStatus
from ..ipc import codec, pipes
from ..ipc.shm import Slot
from ..log import logger
from .callbacks import CallbackRunner
from .loop import run_until_complete
from .stats import resident_memory
from .tasks import (
    CALLBACK,
    COROUTINE,
    NOREPLY,
    REMOTE,
    WAITALL,
    PayloadError,
    deliver_pipe_message,
    discard_payload,
    pack_payload,
    unpack_payload,
)
from .timers import Timers

if TYPE_CHECKING:
    from .context import Runtime

_BUSY, _IDLE = int(WorkerStatus.BUSY), int(WorkerStatus.IDLE)
READ_BATCH = 32  # datagrams taken from one source before looking at the others (Swoole's fairness bound)
REMOTE_BLOCK = 0.1  # blocking mode: the longest a task worker waits on the cluster's queue before its pipes again
REMOTE_IN_FLIGHT = 16  # coroutine mode: tasks of the cluster's queue that one task worker runs at once
RSS_PERIOD = 1.0  # seconds between two publications of this process's resident memory


@dataclass
class Task:
    """What Task receives with ``task_enable_coroutine``."""

    data: Any
    id: int
    worker_id: int  # the event worker that sent it
    flags: int
    dispatch_time: float
    _worker: TaskWorker = field(repr=False)
    _finished: bool = field(default=False, repr=False)
    _handle: int = field(default=0, repr=False)  # a task of the cluster's queue: its handle there

    def finish(self, data: Any) -> bool:
        """Send the result to the worker that sent the task (once)."""
        if self._finished:
            return False
        self._finished = True
        return self._worker.reply(self.id, self.worker_id, self.flags, data, self._handle)


def request_limit(limit: int, grace: int) -> int:
    """Swoole's recycling point: ``limit`` plus a random grace in 1..grace (0: never)."""
    if limit <= 0:
        return 0
    return limit + (random.randint(1, grace) if grace > 0 else 0)


class TaskWorker:
    def __init__(self, rt: Runtime, worker_id: int) -> None:
        self.rt = rt
        self.server = rt.server  # the user's handle: the first argument of every callback
        self.worker_id = worker_id
        self.shared = rt.shared
        self.slot = self.shared.slot(worker_id)
        setting = rt.setting
        self.coroutine: bool = setting["task_enable_coroutine"]
        self.limit = request_limit(setting["task_max_request"], setting["task_max_request_grace"])
        worker_pipes = rt.pipes
        assert worker_pipes is not None  # a server with task workers has a manager, hence pipes
        self.pipes = worker_pipes
        self.sources = [worker_pipes.worker_ends[worker_id]]
        if setting["task_ipc_mode"] == 3 and worker_pipes.task_queue_reader is not None:
            self.sources.append(worker_pipes.task_queue_reader)
        self.done = 0
        self.stopping = False
        self.current: codec.Message | None = None  # the task Task is running now (blocking mode)
        self._finished = False
        self._reassembler = codec.Reassembler()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.timers: Timers | None = None
        self._stopped: asyncio.Future[None] | None = None
        self.runner = CallbackRunner(None)  # gets the loop in coroutine mode
        self.remote = rt.cluster.task_source(worker_id) if setting["task_backend"] == "cluster" else None  # type: ignore[union-attr]
        self._next_rss = 0.0

    def run(self) -> None:
        rt = self.rt
        log.set_role("task_worker", self.worker_id)
        rt.set_title(f"task worker {self.worker_id}")
        rt.pin_cpu(self.worker_id)
        self.shared.begin_incarnation(self.worker_id, os.getpid(), _IDLE)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the manager turns Ctrl-C into SIGTERM for us
        rt.enter_task_worker(self, os.getpid())
        try:
            if self.coroutine:
                self._run_loop()
            else:
                self._run_blocking()
        finally:
            if self.slot[Slot.PID] == os.getpid():  # not yet handed to a replacement
                self.slot[Slot.STATUS] = int(WorkerStatus.EXIT)

    # Blocking mode --------------------------------------------------------------------------------------

    def _run_blocking(self) -> None:
        rt = self.rt
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_write, False)
        signal.set_wakeup_fd(wake_write)
        signal.signal(signal.SIGTERM, lambda signum, frame: self.stop())
        rt.call_event("worker_start", self.server, self.worker_id)
        manager_pid = os.getppid()
        sources = {sock.fileno(): sock for sock in self.sources}
        remote = self.remote
        while not self.stopping:
            self._publish_rss()
            readable, _, _ = select.select([*sources, wake_read], [], [], 1.0 if remote is None else 0.0)
            if os.getppid() != manager_pid:
                logger.warning("manager process is gone, task worker %d stops", self.worker_id)
                break
            for fd in readable:
                if fd == wake_read:
                    os.read(wake_read, 512)
                    continue
                self._take(sources[fd])
            if remote is not None and not self.stopping:
                for task in remote.fetch(REMOTE_BLOCK):
                    self.handle(self._remote_message(task))
        rt.call_event("worker_stop", self.server, self.worker_id)
        os.close(wake_read)
        os.close(wake_write)

    def _publish_rss(self) -> None:
        """This process's resident memory into its slot (the snapshot's rss_bytes), at most every RSS_PERIOD."""
        now = time.monotonic()
        if now < self._next_rss or self.slot[Slot.PID] != os.getpid():
            return
        self._next_rss = now + RSS_PERIOD
        self.slot[Slot.RSS_BYTES] = resident_memory()

    def _rss_timer(self) -> None:
        self._publish_rss()
        self.loop.call_later(RSS_PERIOD, self._rss_timer)  # type: ignore[union-attr]

    def stop(self) -> None:
        self.stopping = True
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    @staticmethod
    def _remote_message(task: tuple[int, int, int, int, bytes]) -> codec.Message:
        """A task of the cluster's queue as a task message: its handle rides in ``server_fd``."""
        handle, task_id, source, flags, payload = task
        return codec.Message(
            EventType.TASK, task_id, source, server_fd=handle, time=time.time(), ext_flags=flags | REMOTE, data=payload
        )

    def handle(self, message: codec.Message) -> None:
        kind = message.type
        if kind == EventType.TASK:
            self._run_task(message)
            if self.limit and self.done >= self.limit:
                self.stop()  # the rest of the queue waits for the replacement
        elif kind == EventType.PIPE_MESSAGE:
            deliver_pipe_message(self.rt, message, self.runner.call)
        elif kind == EventType.SHUTDOWN:
            self.stop()
        else:
            logger.warning("unexpected message type %d on task worker pipe", kind)

    def _run_task(self, message: codec.Message) -> None:
        server = self.server
        slot = self.slot
        slot[Slot.TASK_STARTED] += 1
        slot[Slot.STATUS] = _BUSY
        try:
            data = unpack_payload(message.data, message.ext_flags)
        except PayloadError as exc:
            logger.error("task %d from worker %d dropped: %s", message.fd, message.reactor_id, exc)
            self.reply(message.fd, message.reactor_id, message.ext_flags, False, message.server_fd)
            self._remote_done(message.ext_flags, message.server_fd)
            slot[Slot.STATUS] = _IDLE
            return
        callback = self.rt.callbacks["task"]  # start() refuses task workers without one
        if self.coroutine:
            task = Task(data, message.fd, message.reactor_id, message.ext_flags, message.time, self)
            task._handle = message.server_fd
            self.runner.call(callback, (server, task), lambda result: self._task_done(task, result))
        else:
            self.current, self._finished = message, False
            try:
                result = callback(server, message.fd, message.reactor_id, data)
            except Exception:
                logger.exception("Task callback failed (task %d from worker %d)", message.fd, message.reactor_id)
                result = False if message.ext_flags & WAITALL else None  # a waiter gets False
            reply = result is not None and not self._finished
            # Idle before the result leaves: the worker that waits for it may dispatch its next task at once, and
            # must not find this task worker still busy (it would pick a busy one, round robin among "equals").
            self._count_done()
            if reply:
                self.finish(result)
            self._remote_done(message.ext_flags, message.server_fd)
            self.current = None

    def _task_done(self, task: Task, result: Any) -> None:
        self._count_done()  # as above: idle before the result leaves
        if result is not None and not task._finished:
            task.finish(result)
        self._remote_done(task.flags, task._handle)

    def _remote_done(self, flags: int, handle: int) -> None:
        """A task of the cluster's queue is over (its result, if any, sent): it leaves the queue."""
        if flags & REMOTE:
            self.remote.done(handle)  # type: ignore[union-attr]

    def _count_done(self) -> None:
        self.done += 1
        self.slot[Slot.REQUEST] += 1
        self.slot[Slot.STATUS] = _IDLE

    def finish(self, data: Any) -> bool:
        """``server.finish()`` inside Task (blocking mode)."""
        message = self.current
        if message is None or self._finished:
            return False
        if self.coroutine:
            logger.warning("finish: with task_enable_coroutine use Task.finish()")
            return False
        self._finished = True
        return self.reply(message.fd, message.reactor_id, message.ext_flags, data, message.server_fd)

    def reply(self, task_id: int, source: int, task_flags: int, data: Any, handle: int = 0) -> bool:
        """Send a task's result to the event worker that sent it: its result pipe if it blocks in
        task_wait, else its worker pipe (Finish, the per-task callback, or an awaiting task_co); for a task of
        the cluster's queue (``handle``), back through the cluster."""
        if task_flags & NOREPLY or source < 0:
            return False
        tmpdir = None if task_flags & REMOTE else self.rt.setting["task_tmpdir"]
        try:
            payload, flags = pack_payload(data, tmpdir)
        except PayloadError as exc:
            logger.error("result of task %d: %s; the waiter gets False", task_id, exc)
            payload, flags = pack_payload(False, tmpdir)
        flags |= task_flags & (CALLBACK | COROUTINE)
        if task_flags & REMOTE:
            return self.remote.reply(handle, flags, payload)  # type: ignore[union-attr]
        sock = self.pipes.result_writers[source] if task_flags & WAITALL else self.pipes.master_ends[source]
        message = codec.Message(EventType.FINISH, task_id, self.worker_id, ext_flags=flags, data=payload)
        if pipes.send_blocking(sock, codec.encode(message, codec.next_msg_id())):
            return True
        logger.warning("result of task %d could not be sent to worker %d", task_id, source)
        discard_payload(payload, flags)
        return False

    # Coroutine mode -------------------------------------------------------------------------------------

    def _run_loop(self) -> None:
        loop = self.loop = self.runner.loop = self.rt.new_loop()
        self.timers = self.rt.timers = Timers(loop)
        run_until_complete(loop, self._serve())

    async def _serve(self) -> None:
        loop = self.loop
        assert loop is not None
        rt = self.rt
        self._stopped = loop.create_future()
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        for sock in self.sources:
            loop.add_reader(sock.fileno(), self._read, sock)
        fetcher = loop.create_task(self._fetch_remote()) if self.remote is not None else None
        self._rss_timer()
        rt.call_event("worker_start", self.server, self.worker_id)
        await self._stopped
        if fetcher is not None:
            fetcher.cancel()
        for sock in self.sources:
            loop.remove_reader(sock.fileno())
        deadline = time.monotonic() + rt.setting["max_wait_time"]
        while self.runner.tasks and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        rt.call_event("worker_stop", self.server, self.worker_id)

    async def _fetch_remote(self) -> None:
        """Coroutine mode: take tasks from the cluster's queue while fewer than REMOTE_IN_FLIGHT run."""
        remote = self.remote
        assert remote is not None
        while not self.stopping:
            if len(self.runner.tasks) >= REMOTE_IN_FLIGHT:
                await asyncio.sleep(0.005)
                continue
            for task in await remote.afetch(REMOTE_BLOCK * 10):
                if not self.stopping:
                    self.handle(self._remote_message(task))

    def _read(self, sock: Any) -> None:
        self._take(sock)

    def _take(self, sock: Any) -> None:
        """Handle what waits on one source, one datagram (one task) at a time, at most READ_BATCH in a row.
        Once this worker is stopping (task_max_request reached, SIGTERM) it takes no more: the rest stays in
        its pipe for its replacement, or in the shared queue (task_ipc_mode 3) for the next free task worker."""
        for _ in range(READ_BATCH):
            if self.stopping:
                return
            if not pipes.read_datagrams(sock, self._reassembler, self.handle, limit=1):
                return  # nothing more for now
