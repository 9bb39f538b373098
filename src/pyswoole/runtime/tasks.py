"""Tasks and worker-to-worker messages, seen from the caller: ``task``, ``task_wait``, ``task_co``,
``send_message``, and the results coming back.

Payloads are pickled (bytes pass as they are, flagged so). A payload too big for one pipe datagram travels
as a temp file under ``task_tmpdir``, as Swoole does: every task message is then exactly one datagram, which
is what lets task workers share one queue in ``task_ipc_mode`` 3. The reader unlinks the file.

Results of ``task()`` come back on the caller's worker pipe (Finish or the per-task callback, or an awaiting
``task_co``); results of the blocking ``task_wait`` come back on the caller's separate result pipe, which it
reads while it blocks, dropping stale results of earlier, timed-out tasks by task id.

With ``task_backend="cluster"`` a task without a ``dst_worker_id`` goes to the cluster's shared queue instead
(``rt.cluster``), its payload always inline (another machine cannot read this one's temp files), and its result
comes back through the cluster; the rest of this module (ids, callbacks, futures, unpacking) is the same.
"""

from __future__ import annotations

import asyncio
import math
import os
import pickle
import select
import tempfile
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..constants import ErrorCode, EventType, WorkerStatus
from ..errors import ServerError
from ..ipc import codec, pipes
from ..ipc.shm import Global, Slot
from ..log import logger

if TYPE_CHECKING:
    from .context import Runtime

TMPFILE, SERIALIZE, NONBLOCK, CALLBACK, WAITALL, COROUTINE, NOREPLY = 1, 2, 4, 8, 16, 32, 128
REMOTE = 256  # a task worker's mark on a task taken from the cluster's queue (its result goes back through it)
INLINE_LIMIT = codec.MAX_DATAGRAM - codec.HEADER_SIZE
TASK_WAIT_MULTI_MAX = 1024


class PayloadError(TypeError):
    """A payload that cannot be packed (unpicklable: a TypeError at the call site) or unpacked."""


def pack_payload(obj: Any, tmpdir: str | None) -> tuple[bytes, int]:
    """(bytes to send, ext flags) for any picklable object; raises PayloadError (with the cause) if not.
    ``tmpdir`` None: inline whatever the size (for the cluster)."""
    if type(obj) is bytes:
        data, flags = obj, 0
    else:
        try:
            data, flags = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), SERIALIZE
        except Exception as exc:
            raise PayloadError(f"payload of type {type(obj).__name__} cannot be pickled: {exc}") from exc
    if len(data) > INLINE_LIMIT and tmpdir is not None:
        fd, path = tempfile.mkstemp(prefix="pyswoole.task.", dir=tmpdir)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        data, flags = path.encode(), flags | TMPFILE
    return data, flags


def discard_payload(data: bytes, flags: int) -> None:
    """Drop a payload that will never be unpacked (a late result, a failed send): remove its temp file."""
    if flags & TMPFILE:
        try:
            os.unlink(data.decode())
        except OSError:
            pass


def unpack_payload(data: bytes, flags: int) -> Any:
    if flags & TMPFILE:
        path = data.decode()
        try:
            with open(path, "rb") as file:
                data = file.read()
            os.unlink(path)
        except OSError as exc:
            raise PayloadError(f"task payload file {path} unreadable: {exc}") from exc
    if flags & SERIALIZE:
        try:
            return pickle.loads(data)
        except Exception as exc:
            raise PayloadError(f"task payload cannot be unpickled: {exc}") from exc
    return data


class TaskClient:
    """The task and message calls of one process (event worker, master, manager or user process)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        setting = rt.setting
        self.worker_num: int = setting["worker_num"]
        self.task_worker_num: int = setting["task_worker_num"]
        self.tmpdir: str = setting["task_tmpdir"]
        self.preemptive = setting["task_ipc_mode"] == 3
        self._next_task_id = 0
        self._round = 0
        self._last_busy_warning = 0.0
        # task_id -> (finish_callback, when it is dropped if no result came: monotonic seconds, or inf)
        self._callbacks: dict[int, tuple[Callable[..., Any], float]] = {}
        timeout = setting["task_finish_timeout"]
        self._callback_lifetime: float = timeout if timeout > 0 else math.inf
        self._futures: dict[int, asyncio.Future[Any]] = {}
        self.cluster = rt.cluster if setting["task_backend"] == "cluster" else None

    # task() ---------------------------------------------------------------------------------------------

    def task(self, data: Any, dst_worker_id: int, finish_callback: Callable[..., Any] | None) -> int | bool:
        rt = self.rt
        if self.cluster is not None and dst_worker_id == -1 and not rt.taskworker:
            return self._cluster_task(data, finish_callback)
        if self.task_worker_num == 0:
            logger.warning("task: no task workers (task_worker_num is 0)")
            return rt.fail(ErrorCode.TASK_DISPATCH_FAIL)
        if rt.taskworker:
            logger.warning("task: cannot dispatch a task from a task worker")
            return rt.fail(ErrorCode.TASK_DISPATCH_FAIL)
        if not -1 <= dst_worker_id < self.task_worker_num:
            logger.warning(
                "task: dst_worker_id %d is not a task worker (0..%d)", dst_worker_id, self.task_worker_num - 1
            )
            return rt.fail(ErrorCode.INVALID_PARAMS)
        payload, flags = pack_payload(data, self.tmpdir)
        flags |= NONBLOCK
        if rt.worker is None:
            flags |= NOREPLY  # from the master, the manager or a user process: nobody to answer
        elif finish_callback is not None:
            flags |= CALLBACK
        task_id = self._new_task_id()
        if not self._send_task(task_id, payload, flags, dst_worker_id):
            return rt.fail(ErrorCode.TASK_DISPATCH_FAIL)
        if finish_callback is not None and not flags & NOREPLY:
            self._callbacks[task_id] = (finish_callback, time.monotonic() + self._callback_lifetime)
        return task_id

    def _cluster_task(self, data: Any, finish_callback: Callable[..., Any] | None) -> int | bool:
        rt = self.rt
        payload, flags = pack_payload(data, None)
        flags |= NONBLOCK
        if rt.worker is None:
            flags |= NOREPLY
        elif finish_callback is not None:
            flags |= CALLBACK
        task_id = self._new_task_id()
        _, code = self.cluster.queue_tasks([(task_id, payload, flags)], None if flags & NOREPLY else False)  # type: ignore[union-attr]
        if code:
            return rt.fail(code)
        self._count_dispatch()
        if finish_callback is not None and not flags & NOREPLY:
            self._callbacks[task_id] = (finish_callback, time.monotonic() + self._callback_lifetime)
        return task_id

    def _new_task_id(self) -> int:
        task_id = self._next_task_id
        self._next_task_id += 1
        return task_id

    def _send_task(self, task_id: int, payload: bytes, flags: int, dst_worker_id: int) -> bool:
        rt = self.rt
        target = self.worker_num + (dst_worker_id if dst_worker_id >= 0 else self._pick_task_worker())
        source = rt.worker_id if rt.worker is not None else -1
        message = codec.Message(EventType.TASK, task_id, source, ext_flags=flags, data=payload)
        datagrams = codec.encode(message, codec.next_msg_id())
        worker_pipes = rt.pipes
        assert worker_pipes is not None  # task workers exist, so does the manager with its pipes
        queue = worker_pipes.task_queue
        sock = (
            queue if queue is not None and self.preemptive and dst_worker_id < 0 else worker_pipes.master_ends[target]
        )
        worker = rt.worker
        if worker is not None and not flags & WAITALL:
            # A task worker takes one datagram at a time (to stop exactly at task_max_request, and to leave
            # the next task of the shared queue to whichever task worker is free first): never batch tasks.
            sent = worker.writer_for(sock).write_all(datagrams, batch=False)
        else:  # no loop here, or the caller is about to block on the result anyway
            sent = pipes.send_blocking(sock, datagrams)
        if sent:
            self._count_dispatch()
        else:
            discard_payload(payload, flags)
        return sent

    def _count_dispatch(self) -> None:
        rt = self.rt
        shared = rt.shared
        if rt.worker is not None:
            rt.worker.slot[Slot.TASK_DISPATCHED] += 1
        else:
            with shared.locked():
                shared.globals[Global.TASKS_FROM_OTHERS] += 1

    def _pick_task_worker(self) -> int:
        """An idle task worker, round robin among them; the next in turn when all are busy."""
        workers = self.rt.shared.workers
        count = self.task_worker_num
        for _ in range(count):
            self._round = (self._round + 1) % count
            if workers[(self.worker_num + self._round) * Slot.SIZE + Slot.STATUS] == WorkerStatus.IDLE:
                return self._round
        now = time.monotonic()
        if now - self._last_busy_warning >= 1.0:
            self._last_busy_warning = now
            logger.warning("No idle task worker is available")
        self._round = (self._round + 1) % count
        return self._round

    # task_wait() and friends (block the calling worker) ---------------------------------------------------

    def task_wait(self, data: Any, timeout: float, dst_worker_id: int) -> Any:
        if not -1 <= dst_worker_id < self.task_worker_num:
            logger.warning(
                "task_wait: dst_worker_id %d is not a task worker (0..%d)", dst_worker_id, self.task_worker_num - 1
            )
            return self.rt.fail(ErrorCode.INVALID_PARAMS)
        if not self._may_wait("task_wait", dst_worker_id):
            return False
        results = self._wait_for([data], timeout, dst_worker_id)
        return results.get(0, False)

    def task_wait_multi(self, tasks: list[Any], timeout: float) -> dict[int, Any] | bool:
        if len(tasks) >= TASK_WAIT_MULTI_MAX:
            logger.warning("task_wait_multi: at most %d tasks", TASK_WAIT_MULTI_MAX - 1)
            return self.rt.fail(ErrorCode.INVALID_PARAMS)
        if not self._may_wait("task_wait_multi", -1):
            return False
        return self._wait_for(tasks, timeout, -1)

    def _may_wait(self, what: str, dst_worker_id: int) -> bool:
        """Only an event worker of a server with task workers (or a cluster's queue) can block on task results
        (Swoole: false)."""
        rt = self.rt
        remote = self.cluster is not None and dst_worker_id == -1
        if rt.worker is None or rt.taskworker or self.task_worker_num == 0 and not remote:
            logger.warning("%s: only an event worker can wait for tasks", what)
            rt.fail(ErrorCode.TASK_DISPATCH_FAIL)
            return False
        return True

    def _wait_for(self, tasks: list[Any], timeout: float, dst_worker_id: int) -> dict[int, Any]:
        if self.cluster is not None and dst_worker_id == -1:
            return self._cluster_wait_for(tasks, timeout)
        rt = self.rt
        worker = rt.worker
        assert worker is not None
        worker.flush_pipes()  # what this worker queued earlier goes first
        pending: dict[int, int] = {}
        for index, data in enumerate(tasks):
            payload, flags = pack_payload(data, self.tmpdir)
            task_id = self._new_task_id()
            if self._send_task(task_id, payload, flags | WAITALL, dst_worker_id):
                pending[task_id] = index
        results: dict[int, Any] = {}
        sock = rt.pipes.result_ends[worker.worker_id]  # type: ignore[union-attr]
        reassembler = codec.Reassembler()
        deadline = time.monotonic() + timeout
        while pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([sock], [], [], left)[0]:
                break
            messages: list[codec.Message] = []
            pipes.read_datagrams(sock, reassembler, messages.append)
            for message in messages:
                if message.fd not in pending:
                    discard_payload(message.data, message.ext_flags)  # late result of a timed-out task
                    continue
                index = pending.pop(message.fd)
                try:
                    results[index] = unpack_payload(message.data, message.ext_flags)
                except PayloadError as exc:
                    logger.error("result of task %d: %s", message.fd, exc)
                    results[index] = False
        if pending:
            rt.fail(ErrorCode.TASK_TIMEOUT)
        return results

    def _cluster_wait_for(self, tasks: list[Any], timeout: float) -> dict[int, Any]:
        """task_wait and task_wait_multi through the cluster's queue; raises ServerError if Redis cannot take them
        (False is a result a task may return, so it cannot say that)."""
        deadline = time.monotonic() + timeout
        entries = []
        for data in tasks:
            payload, flags = pack_payload(data, None)
            entries.append((self._new_task_id(), payload, flags | WAITALL))
        queued, code = self.cluster.queue_tasks(entries, True)  # type: ignore[union-attr]
        if code == ErrorCode.CLUSTER_UNAVAILABLE:
            self.rt.fail(code)
            raise ServerError("task_wait: the cluster's Redis is unreachable", code)
        pending = {entries[index][0]: index for index, ok in enumerate(queued) if ok}
        for _ in pending:
            self._count_dispatch()
        results: dict[int, Any] = {}
        for task_id, flags, payload in self.cluster.wait_results(set(pending), deadline):  # type: ignore[union-attr]
            index = pending.pop(task_id)
            try:
                results[index] = unpack_payload(payload, flags)
            except PayloadError as exc:
                logger.error("result of task %d: %s", task_id, exc)
                results[index] = False
        if pending or code:
            self.rt.fail(code or ErrorCode.TASK_TIMEOUT)
        return results

    async def task_co(self, tasks: list[Any], timeout: float) -> list[Any]:
        rt = self.rt
        worker = rt.worker
        if self.cluster is not None and worker is not None and not rt.taskworker:
            return await self._cluster_task_co(tasks, timeout)
        if worker is None or rt.taskworker or self.task_worker_num == 0:
            logger.warning("task_co: only an event worker can wait for tasks")
            return [False] * len(tasks)
        loop = asyncio.get_running_loop()
        futures = []
        for data in tasks:
            payload, flags = pack_payload(data, self.tmpdir)
            task_id = self._new_task_id()
            future = loop.create_future()
            if self._send_task(task_id, payload, flags | NONBLOCK | COROUTINE, -1):
                self._futures[task_id] = future
            else:
                future.set_result(False)
            futures.append((task_id, future))
        done, _ = await asyncio.wait([f for _, f in futures], timeout=timeout) if futures else (set(), set())
        results = []
        for task_id, future in futures:
            self._futures.pop(task_id, None)
            results.append(future.result() if future in done else False)
        return results

    async def _cluster_task_co(self, tasks: list[Any], timeout: float) -> list[Any]:
        loop = asyncio.get_running_loop()
        entries = []
        for data in tasks:
            payload, flags = pack_payload(data, None)
            entries.append((self._new_task_id(), payload, flags | NONBLOCK | COROUTINE))
        futures = {task_id: loop.create_future() for task_id, _, _ in entries}
        self._futures.update(futures)  # before the results may come
        queued, code = await self.cluster.aqueue_tasks(entries)  # type: ignore[union-attr]
        if code == ErrorCode.CLUSTER_UNAVAILABLE:
            for task_id in futures:
                self._futures.pop(task_id, None)
            self.rt.fail(code)
            raise ServerError("task_co: the cluster's Redis is unreachable", code)
        for (task_id, _, _), ok in zip(entries, queued, strict=True):
            if ok:
                self._count_dispatch()
            else:
                futures[task_id].set_result(False)
        done, _ = await asyncio.wait(futures.values(), timeout=timeout) if futures else (set(), set())
        results = []
        for task_id, future in futures.items():
            self._futures.pop(task_id, None)
            results.append(future.result() if future in done else False)
        return results

    # Results arriving on the worker pipe ----------------------------------------------------------------

    def on_remote_result(self, task_id: int, flags: int, payload: bytes) -> None:
        """A result of task() or task_co that came back through the cluster: as if it came on the pipe."""
        self.on_finish(codec.Message(EventType.FINISH, task_id, ext_flags=flags, data=payload))

    def on_finish(self, message: codec.Message) -> None:
        rt = self.rt
        task_id = message.fd
        try:
            result = unpack_payload(message.data, message.ext_flags)
        except PayloadError as exc:
            logger.error("result of task %d dropped: %s", task_id, exc)
            result = False
        if message.ext_flags & COROUTINE:
            future = self._futures.pop(task_id, None)
            if future is None:
                logger.warning("task[%d] has expired", task_id)
            elif not future.done():
                future.set_result(result)
            return
        if message.ext_flags & CALLBACK:
            entry = self._callbacks.pop(task_id, None)
            if entry is None:
                logger.warning("result of task %d came after task_finish_timeout: its callback was dropped", task_id)
                return
            callback: Callable[..., Any] | None = entry[0]
        else:
            callback = rt.callbacks.get("finish")
        if callback is None:
            logger.warning("require 'onFinish' callback: result of task %d dropped", task_id)
            return
        rt.worker.call(callback, (rt.server, task_id, result))  # type: ignore[union-attr]

    def drop_expired_callbacks(self) -> None:
        """Forget the finish callbacks of tasks whose result has not come within ``task_finish_timeout`` (a task
        worker that died with the task, say), so that the table stays bounded."""
        now = time.monotonic()
        expired = [task_id for task_id, (_, deadline) in self._callbacks.items() if deadline <= now]
        for task_id in expired:
            del self._callbacks[task_id]
        if expired:
            logger.warning(
                "%d task finish callback(s) dropped: no result within task_finish_timeout (%s s)",
                len(expired),
                self.rt.setting["task_finish_timeout"],
            )

    # Messages between workers ---------------------------------------------------------------------------

    def send_message(self, message: Any, dst_worker_id: int) -> bool:
        rt = self.rt
        if rt.callbacks.get("pipe_message") is None:
            logger.warning("onPipeMessage is null, can't use send_message")
            return rt.fail(ErrorCode.INVALID_CALLBACK)
        if not 0 <= dst_worker_id < self.worker_num + self.task_worker_num:
            logger.warning("send_message: worker_id[%d] is invalid", dst_worker_id)
            return rt.fail(ErrorCode.INVALID_PARAMS)
        if dst_worker_id == rt.worker_id:
            logger.warning("send_message: can't send messages to self")
            return rt.fail(ErrorCode.INVALID_PARAMS)
        payload, flags = pack_payload(message, self.tmpdir)
        sock = rt.pipes.master_ends[dst_worker_id]  # type: ignore[union-attr]
        note = codec.Message(EventType.PIPE_MESSAGE, 0, rt.worker_id, ext_flags=flags, data=payload)
        datagrams = codec.encode(note, codec.next_msg_id())
        worker = rt.worker
        sent = (
            worker.writer_for(sock).write_all(datagrams) if worker is not None else pipes.send_blocking(sock, datagrams)
        )
        if sent:
            return True
        discard_payload(payload, flags)
        return rt.fail(ErrorCode.SEND_TO_WORKER_TIMEOUT)


def deliver_pipe_message(rt: Runtime, message: codec.Message, call: Callable[..., Any]) -> None:
    """PipeMessage(server, src_worker_id, message) in the receiving worker or task worker."""
    callback = rt.callbacks.get("pipe_message")
    if callback is None:
        return
    try:
        payload = unpack_payload(message.data, message.ext_flags)
    except PayloadError as exc:
        logger.error("pipe message from worker %d dropped: %s", message.reactor_id, exc)
        return
    call(callback, (rt.server, message.reactor_id, payload))
