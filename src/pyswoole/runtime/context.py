"""The runtime context: what every role of a running server shares, and which role this process plays.

``Server`` is the user's facade; the roles (master, reactor threads, manager, workers, task workers, user
processes) never see it, only this context. It holds what ``start()`` fixed (settings, ports, callbacks, shared
memory, pipes, the factory) and, per process, the role that process took after fork. The user's server object
rides along as an opaque ``server``: it is the first argument of every callback, and nothing here calls it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

import setproctitle

from ..constants import ErrorCode, Mode
from ..errors import ServerError
from ..ipc.shm import Global
from ..log import logger
from .factory import BaseFactory, ProcessFactory
from .loop import new_event_loop
from .tasks import TaskClient

if TYPE_CHECKING:
    from ..ipc.pipes import WorkerPipes
    from ..ipc.shm import SharedState
    from ..port import Port
    from .connection import Connection
    from .manager import Manager
    from .master import Master
    from .process import Process
    from .task_worker import TaskWorker
    from .timers import Timers
    from .worker import EventWorker

_T = TypeVar("_T")


class WorkerHook(Protocol):
    """Code of a protocol room or a hosted application that an event worker awaits as it starts (before WorkerStart,
    its connections being accepted meanwhile) and as it stops (after its requests drained, before WorkerStop)."""

    async def worker_started(self, worker: EventWorker) -> None: ...
    async def worker_stopping(self, worker: EventWorker) -> None: ...


class ClusterHooks(Protocol):
    """What the runtime asks of a server's cluster (``pyswoole.cluster``, set at start when configured): the manager
    keeps the node registered, the process where a session ends reports it, and with ``task_backend="cluster"``
    tasks go to the shared queue. The runtime never imports the cluster room."""

    def manager_tick(self) -> float:
        """Each pass of the manager's loop: the seconds until it wants the next."""

    def manager_stopped(self) -> None: ...
    def session_closed(self, session_id: int) -> None:
        """BASE mode: in the worker that owned it; PROCESS mode: in the reactor thread that owned it."""

    def queue_tasks(self, tasks: list[tuple[int, bytes, int]], waiting: bool | None) -> tuple[list[bool], int]: ...
    async def aqueue_tasks(self, tasks: list[tuple[int, bytes, int]]) -> tuple[list[bool], int]: ...
    def wait_results(self, task_ids: set[int], deadline: float) -> list[tuple[int, int, bytes]]: ...
    def task_source(self, worker_id: int) -> RemoteTaskSource: ...


class RemoteTaskSource(Protocol):
    """A task worker's reading of the cluster's task queue; a task is (handle, task id, source worker id, flags,
    payload), the handle naming it in ``reply`` and ``done``."""

    def fetch(self, block: float) -> list[tuple[int, int, int, int, bytes]]: ...
    async def afetch(self, block: float) -> list[tuple[int, int, int, int, bytes]]: ...
    def reply(self, handle: int, flags: int, payload: bytes) -> bool: ...
    def done(self, handle: int) -> None: ...


_RUNTIMES: Final[weakref.WeakKeyDictionary[Any, Runtime]] = weakref.WeakKeyDictionary()


def runtime_of(server: Any) -> Runtime:
    """The runtime of a server handle (for the protocol rooms' calls that take the server, as
    ``Response.create(server, fd)``). ``LookupError`` for an object that is no pyswoole server."""
    try:
        return _RUNTIMES[server]
    except (KeyError, TypeError):
        raise LookupError(f"{server!r} is not a pyswoole server") from None


class Runtime:
    """One server's shared parts and this process's role in it.

    Made with the ``Server`` (ports, callbacks and user processes are collected from then on); ``start()``
    fixes the rest with :meth:`configure` before anything is forked. The parts ``configure`` sets exist only
    once ``started`` is True.
    """

    setting: dict[str, Any]
    shared: SharedState
    pipes: WorkerPipes | None
    factory: BaseFactory | ProcessFactory

    def __init__(self, server: Any, mode: Mode) -> None:
        self.server = server  # the user's handle, passed on to callbacks
        _RUNTIMES[server] = self
        self.mode = mode
        self.ports: list[Port] = []
        self.callbacks: dict[str, Callable[..., Any]] = {}
        self.processes: list[Process] = []
        self.started = False
        self.worker_hooks: list[WorkerHook] = []  # what a hosted application runs as event workers start and stop
        self.cluster: ClusterHooks | None = None  # the server's cluster, when the cluster setting names a Redis
        self.manager_pid = 0
        self.last_error = 0
        # This process's role: at most one of worker, task_worker, master and manager is set.
        self.worker: EventWorker | None = None
        self.task_worker: TaskWorker | None = None
        self.master: Master | None = None
        self.manager: Manager | None = None
        self.timers: Timers | None = None
        self.local_connections: dict[int, Connection] = {}  # BASE mode: the sessions this worker owns
        self.worker_id = -1
        self.worker_pid = 0
        self.taskworker = False
        # The thread that runs this event worker's loop (0 elsewhere): calls from other threads are handed to it.
        self.loop_thread = 0
        self._tasks: TaskClient | None = None

    def configure(self, setting: dict[str, Any], shared: SharedState, pipes: WorkerPipes | None) -> None:
        """Fix what ``start()`` decided, before the first fork; from here on the server is started."""
        self.setting, self.shared, self.pipes = setting, shared, pipes
        self.factory = ProcessFactory(self) if self.mode == Mode.PROCESS else BaseFactory(self)
        self.started = True

    @property
    def process_factory(self) -> ProcessFactory:
        """The factory, where only PROCESS mode can be (a worker's dealings with the reactor threads)."""
        factory = self.factory
        if not isinstance(factory, ProcessFactory):
            raise RuntimeError("a BASE-mode server has no reactor threads")
        return factory

    def check_not_started(self, what: str) -> None:
        """Configuration calls (set, on, add_listener, ...) are refused once the server runs."""
        if self.started:
            raise ServerError(f"server is running, unable to execute {what}()", ErrorCode.SERVER_NOT_RUNNING)

    # Services every role uses ------------------------------------------------------------------------------

    def fail(self, code: int) -> bool:
        """Record Swoole's error code for ``get_last_error()``; False, for ``return rt.fail(...)``."""
        self.last_error = int(code)
        return False

    def call_event(self, name: str, *args: Any) -> None:
        """Run a server-level callback if one is registered; log what it raises (the process goes on)."""
        callback = self.callbacks.get(name)
        if callback is None:
            return
        try:
            result = callback(*args)
            if asyncio.iscoroutine(result):
                role = self.worker or self.task_worker or self.master
                if role is not None and role.runner.loop is not None:
                    role.runner.spawn(result)  # a task of this process's loop
                else:  # the manager, a blocking task worker: no loop, run it to the end here
                    loop = self.new_loop()
                    try:
                        loop.run_until_complete(result)
                    finally:
                        loop.close()
        except Exception:
            logger.exception("%s callback failed", name)

    def foreign_thread(self) -> bool:
        """True in an event worker, on a thread other than its loop's (a ``run_in_executor`` job, say)."""
        return self.loop_thread != 0 and threading.get_ident() != self.loop_thread

    def in_loop_thread(self, call: Callable[..., _T], *args: Any) -> _T | bool:
        """Run ``call(*args)`` in the worker's loop thread and wait for what it returns (or raises).

        A session's transport, the pipe writers and the timers belong to the loop: touching them from another
        thread would race with it. False (SERVER_NOT_RUNNING) once the loop has stopped.
        """
        worker = self.worker
        loop = worker.loop if worker is not None else None
        if loop is None or loop.is_closed():
            return self.fail(ErrorCode.SERVER_NOT_RUNNING)
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def run() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(call(*args))
                except BaseException as exc:
                    future.set_exception(exc)

        try:
            loop.call_soon_threadsafe(run)
        except RuntimeError:  # the loop closed meanwhile
            return self.fail(ErrorCode.SERVER_NOT_RUNNING)
        try:
            return future.result(timeout=self.setting["max_wait_time"] + 10)
        except concurrent.futures.TimeoutError:  # the loop stopped before it got to the call
            future.cancel()
            return self.fail(ErrorCode.SERVER_NOT_RUNNING)

    def startup_failed(self) -> None:
        """This process could not start what it hosts: ``start()`` raises once the server has stopped."""
        self.shared.globals[Global.STARTUP_FAILED] = 1

    def set_title(self, role: str) -> None:
        """Name this process in ps/top: ``<process_name>: <role>``."""
        setproctitle.setproctitle(f"{self.setting['process_name']}: {role}")

    def pin_cpu(self, index: int) -> None:
        """``open_cpu_affinity``, as Swoole: bind the calling thread (a reactor thread, or a worker's only
        thread) to one CPU, the ``index``-th modulo their number of those this process may use and
        ``cpu_affinity_ignore`` does not name. Reactor thread i and worker i so share CPU i, and a package's hand
        over between them wakes a thread on the same CPU (no wake-up of another, possibly halted, CPU)."""
        if not self.setting["open_cpu_affinity"]:
            return
        usable = sorted(os.sched_getaffinity(0))
        ignored = set(self.setting.get("cpu_affinity_ignore") or ())
        cpus = [cpu for cpu in usable if cpu not in ignored] or usable
        cpu = cpus[index % len(cpus)]
        try:
            os.sched_setaffinity(0, {cpu})  # 0: the calling thread
        except OSError as exc:
            logger.warning("open_cpu_affinity: cannot bind to cpu %d: %s", cpu, exc)

    def new_loop(self) -> asyncio.AbstractEventLoop:
        return new_event_loop(self.setting["event_loop"])

    @property
    def has_task_client(self) -> bool:
        return self._tasks is not None

    @property
    def tasks(self) -> TaskClient:
        """This process's side of the task and message calls (made on first use, after fork)."""
        if self._tasks is None:
            self._tasks = TaskClient(self)
        return self._tasks

    # Roles -------------------------------------------------------------------------------------------------

    def enter_worker(self, worker: EventWorker, pid: int) -> None:
        self.worker = worker
        self.timers = worker.timers
        self.local_connections = worker.connections
        self.worker_id = worker.worker_id
        self.worker_pid = pid
        self.loop_thread = threading.get_ident()

    def leave_worker(self) -> None:
        self.worker = None
        self.timers = None
        self.local_connections = {}
        self.worker_id = -1
        self.loop_thread = 0

    def enter_task_worker(self, task_worker: TaskWorker, pid: int) -> None:
        self.task_worker = task_worker
        self.taskworker = True
        self.worker_id = task_worker.worker_id
        self.worker_pid = pid

    def enter_master(self, master: Master) -> None:
        self.master = master
        self.timers = master.timers

    def leave_master(self) -> None:
        self.master = None
        self.timers = None

    def enter_user_process(self, worker_id: int, pid: int) -> None:
        self.worker_id = worker_id
        self.worker_pid = pid
