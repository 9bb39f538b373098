"""``Server``: construct and bind, ``set``, ``on``, and ``start()`` as the ordered steps of Swoole's model.

The Server object is the user's handle in every process. After fork each process sees the same object with
its own role filled in: in an event worker ``_worker`` is that worker, in the manager it is None. Methods
that act on sessions go through the factory, which knows whether the session is local or must be forwarded.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import stat
import sys
import time
from collections.abc import Callable
from typing import Any

from . import ipc, log, state
from . import settings as settings_module
from .constants import DGRAM_TYPES, ErrorCode, Mode, SockType, WorkerStatus
from .errors import ServerError
from .dispatch import HASH_MODES
from .factory import BaseFactory, ProcessFactory
from .log import logger
from .loop import new_event_loop
from .manager import Manager
from .master import Master
from .pipes import WorkerPipes
from .port import Port, event_key, port_event_name
from .process import Process
from .shm import Global, SharedState, Slot
from .task_worker import TaskWorker
from .tasks import TaskClient
from .timers import Timers
from .worker import EventWorker

SERVER_EVENTS = (
    "start", "before_shutdown", "shutdown", "worker_start", "worker_stop", "worker_exit", "worker_error",
    "manager_start", "manager_stop", "before_reload", "after_reload", "task", "finish", "pipe_message",
)
_SERVER_EVENT_KEYS = {name.replace("_", ""): name for name in SERVER_EVENTS}
CLIENT_LIST_MAX = 100
_RESPONSE, _SEND_BYTES = Slot.RESPONSE, Slot.SEND_BYTES

try:
    import setproctitle
except ImportError:  # optional: without it processes keep the interpreter's name
    setproctitle = None  # type: ignore[assignment]
_now = time.time


def _to_bytes(data: Any) -> bytes:
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"data must be bytes or str, not {type(data).__name__}")


class Server:
    def __init__(self, host: str = "0.0.0.0", port: int = 0, mode: int = Mode.BASE,
                 sock_type: int = SockType.TCP) -> None:
        try:
            self.mode = Mode(mode)
        except ValueError:
            raise ValueError(f"invalid mode {mode!r}: use Mode.BASE or Mode.PROCESS") from None
        self._settings: dict[str, Any] = {}
        self.setting: dict[str, Any] = {}
        self._callbacks: dict[str, Callable[..., Any]] = {}
        self.ports: list[Port] = []
        self._started = False
        self._shutdown_done = False
        self._wrote_pid_file = False
        self._shared: SharedState | None = None
        self._pipes: WorkerPipes | None = None
        self._worker: EventWorker | None = None
        self._master: Master | None = None
        self._task_worker: TaskWorker | None = None
        self._task_client: TaskClient | None = None
        self._processes: list[Process] = []
        self._manager: Manager | None = None
        self._timers: Timers | None = None
        self._local_connections: dict[int, Any] = {}
        self._manager_pid = 0
        self._last_error = 0
        self._factory: BaseFactory | ProcessFactory = BaseFactory(self)
        self.worker_id = -1
        self.worker_pid = 0
        self.taskworker = False
        primary = Port(self, host, port, sock_type)
        self.ports.append(primary)
        self.host = primary.host
        self.port = primary.port
        self.sock_type = primary.sock_type

    # Configuration ---------------------------------------------------------------------------------------

    def set(self, settings: dict[str, Any] | None = None, /, **kwargs: Any) -> None:
        """Merge settings (Swoole's keys); validated at once, defaults and clamping applied at start."""
        self._check_not_started("set")
        normalized = settings_module.normalize({**(settings or {}), **kwargs})
        self._settings.update(normalized)
        self.setting = dict(self._settings)

    def on(self, event: str, callback: Callable[..., Any] | None = None) -> Any:
        """Register a callback, ``server.on("Receive", fn)``, or use ``@server.on("receive")`` as a decorator."""
        key = event_key(event)
        if key not in _SERVER_EVENT_KEYS and port_event_name(event) is None:
            known = ", ".join(SERVER_EVENTS + ("connect", "receive", "close", "packet", "buffer_full", "buffer_empty"))
            raise ValueError(f"unknown event {event!r}; events are: {known}")
        if key not in _SERVER_EVENT_KEYS:
            return self.ports[0].on(event, callback)
        if callback is None:
            return lambda fn: self.on(event, fn)
        self._check_not_started("on")
        if not callable(callback):
            raise TypeError(f"callback for {event!r} must be callable, not {type(callback).__name__}")
        self._callbacks[_SERVER_EVENT_KEYS[key]] = callback
        return callback

    def get_callback(self, event: str) -> Callable[..., Any] | None:
        key = event_key(event)
        if key in _SERVER_EVENT_KEYS:
            return self._callbacks.get(_SERVER_EVENT_KEYS[key])
        if port_event_name(event) is not None:
            return self.ports[0].get_callback(event)
        raise ValueError(f"unknown event {event!r}")

    def add_listener(self, host: str, port: int, sock_type: int = SockType.TCP) -> Port:
        """Bind another port at once (like the constructor); returns its :class:`Port`."""
        self._check_not_started("add_listener")
        new_port = Port(self, host, port, sock_type)
        self.ports.append(new_port)
        return new_port

    listen = add_listener

    def _check_not_started(self, what: str) -> None:
        if self._started:
            raise ServerError(f"server is running, unable to execute {what}()", ErrorCode.SERVER_NOT_RUNNING)

    # start() --------------------------------------------------------------------------------------------

    def start(self) -> bool:
        """Run the server until it is shut down; True after a clean shutdown. Blocks."""
        if self._shutdown_done:
            raise ServerError("the server has been shut down, unable to execute start()")
        if self._started:
            raise ServerError("the server is running, unable to execute start()")
        state.seal()
        setting = settings_module.resolve(self._settings, self.mode)
        log.configure(setting.get("log_file"), setting["log_level"], setting["log_date_format"],
                      setting["log_date_with_microseconds"])
        self._check_start(setting)
        for port in self.ports:  # a bad TLS certificate raises here, before anything is started
            port.resolve_protocol(self._settings, port is self.ports[0])
        setting["heartbeat_check_interval"] = self._heartbeat_interval(setting["heartbeat_check_interval"])
        self._started = True
        self.setting = setting
        pid_file = setting.get("pid_file")
        if setting["daemonize"]:
            daemonize(setting.get("log_file"))
        for port in self.ports:
            port.listen(setting["enable_reuse_port"] and self.mode == Mode.BASE)
        try:
            if self.mode == Mode.PROCESS:
                self._start_process_mode()
            else:
                self._start_base_mode()
            self._call_event("shutdown", self)
        finally:
            if pid_file and self._wrote_pid_file:
                _unlink(pid_file)
            _unlink(stats_file_for(setting))
            self._started = False
            self._shutdown_done = True
            for port in self.ports:
                port.close()
            if self._pipes is not None:
                self._pipes.close()
        return True

    def _start_base_mode(self) -> None:
        """One process that is master and worker 0, or this process becomes the manager of the workers."""
        setting = self.setting
        worker_num, task_worker_num = setting["worker_num"], setting["task_worker_num"]
        self._shared = shared = SharedState(worker_num + task_worker_num + len(self._processes))
        self._write_pid_file()
        if worker_num == 1 and task_worker_num == 0 and setting["max_request"] == 0 and not self._processes:
            shared.globals[Global.MASTER_PID] = os.getpid()
            self._set_title("master")
            self._run_worker(0)
            return
        self._pipes = WorkerPipes(worker_num, task_worker_num)
        self._manager = Manager(self)
        self._manager.run()

    def _start_process_mode(self) -> None:
        """Fork the manager first (no thread may exist at a fork), then run the master's threads here."""
        setting = self.setting
        worker_num, task_worker_num = setting["worker_num"], setting["task_worker_num"]
        self._shared = SharedState(worker_num + task_worker_num + len(self._processes), setting["reactor_num"],
                                   setting["max_connection"])
        self._shared.globals[Global.MASTER_PID] = os.getpid()  # known before the manager and workers start
        self._pipes = WorkerPipes(worker_num, task_worker_num)
        self._factory = ProcessFactory(self)
        self._drop_unsafe_events()
        sys.stdout.flush()
        sys.stderr.flush()
        manager_pid = os.fork()
        if manager_pid == 0:
            code = 0
            try:
                self._manager = Manager(self)
                self._manager.run()
            except BaseException:
                logger.exception("manager failed")
                code = 255
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self._manager_pid = manager_pid
        self._shared.globals[Global.MANAGER_PID] = manager_pid
        self._write_pid_file()
        Master(self, manager_pid).run()

    def _drop_unsafe_events(self) -> None:
        """Only the hash dispatch modes keep a connection's events in one worker; elsewhere Connect, Close and
        the buffer events could run concurrently in several workers, so Swoole drops them (with a warning)."""
        mode = self.setting["dispatch_mode"]
        if mode in HASH_MODES or self.setting["enable_unsafe_event"]:
            return
        for port in self.ports:
            for event in ("connect", "close", "buffer_full", "buffer_empty"):
                if port.callbacks.pop(event, None) is not None:
                    name = "on" + event.title().replace("_", "")
                    logger.warning("cannot set '%s' event when using dispatch_mode=%d", name, mode)

    def _check_start(self, setting: dict[str, Any]) -> None:
        """Refuse, before anything is forked, a start that cannot work."""
        if setting["task_worker_num"] > 0 and "task" not in self._callbacks:
            raise ServerError("require 'onTask' callback", ErrorCode.INVALID_CALLBACK)
        primary = self.ports[0]
        for port in self.ports:
            if port.base_type in DGRAM_TYPES:
                if port.get_callback("packet") is None and primary.get_callback("packet") is None:
                    raise ServerError(f"require onPacket callback for {port!r}", ErrorCode.INVALID_CALLBACK)
            elif port.get_callback("receive") is None and primary.get_callback("receive") is None:
                raise ServerError(f"require onReceive callback for {port!r}", ErrorCode.INVALID_CALLBACK)

    def _heartbeat_interval(self, interval: int) -> int:
        """Swoole's start_check over the ports: with a heartbeat, a stream port without an idle time gets twice
        the interval; a port with one lowers the interval to half of it (at least 1 s), so that an idle
        connection is closed between idle and 1.5 x idle seconds after its last receive."""
        stream_ports = [port for port in self.ports if port.is_stream]
        if interval > 0:
            for port in stream_ports:
                if port.protocol["heartbeat_idle_time"] == 0:
                    port.protocol["heartbeat_idle_time"] = interval * 2
        for port in stream_ports:
            idle_time = port.protocol["heartbeat_idle_time"]
            if idle_time > 0:
                expected = idle_time // 2 if idle_time > 2 else 1
                if interval == 0 or interval > expected:
                    interval = expected
        return interval

    def _write_pid_file(self) -> None:
        pid_file = self.setting.get("pid_file")
        if pid_file:
            with open(pid_file, "w") as file:
                file.write(f"{os.getpid()}\n")
            self._wrote_pid_file = True

    def _set_title(self, role: str) -> None:
        """Name this process in ps/top: ``<process_name>: <role>``."""
        if setproctitle is not None:
            setproctitle.setproctitle(f"{self.setting['process_name']}: {role}")

    def _write_stats_file(self) -> None:
        """Publish stats() for readers outside the server (``pyswoole status``): stats_file, or beside the
        pid_file; JSON, or Swoole's ``key: value`` lines for a stats_file not ending in .json."""
        path = stats_file_for(self.setting)
        if not path:
            return
        stats = self.stats()
        stats["master_pid"], stats["manager_pid"] = self.get_master_pid(), self.get_manager_pid()
        text = json.dumps(stats) if path.endswith(".json") else "".join(f"{k}: {v}\n" for k, v in stats.items())
        try:
            with open(path + ".tmp", "w") as file:
                file.write(text)
            os.replace(path + ".tmp", path)
        except OSError as exc:
            logger.warning("cannot write stats file %s: %s", path, exc)

    def _run_user_process(self, worker_id: int) -> None:
        """Serve as user process ``worker_id`` in this (forked) child."""
        index = worker_id - self.setting["worker_num"] - self.setting["task_worker_num"]
        process = self._processes[index]
        log.set_role("user", worker_id)
        self._set_title(f"process {index}")
        self.worker_id, self.worker_pid = worker_id, os.getpid()
        self._shared.begin_incarnation(worker_id, os.getpid(), int(WorkerStatus.BUSY))  # type: ignore[union-attr]
        process.run(worker_id)

    def _run_worker(self, worker_id: int) -> None:
        """Serve as event worker ``worker_id`` in this process (the forked child, or the only process)."""
        shared = self._shared
        assert shared is not None
        if worker_id >= self.setting["worker_num"]:
            TaskWorker(self, worker_id).run()
            return
        start_callback = False
        if self.mode == Mode.BASE and worker_id == 0:  # PROCESS mode: Start runs in the master
            with shared.locked():
                start_callback = not shared.globals[Global.ONSTART_CALLED]
                shared.globals[Global.ONSTART_CALLED] = 1
        EventWorker(self, worker_id).run(start_callback)

    def _enter_worker(self, worker: EventWorker) -> None:
        self._worker = worker
        self._timers = worker.timers
        self._local_connections = worker.connections
        self.worker_id = worker.worker_id
        self.worker_pid = os.getpid()

    def _leave_worker(self) -> None:
        self._worker = None
        self._timers = None
        self._local_connections = {}
        self.worker_id = -1

    def _enter_task_worker(self, task_worker: TaskWorker) -> None:
        self._task_worker = task_worker
        self.taskworker = True
        self.worker_id = task_worker.worker_id
        self.worker_pid = os.getpid()

    def _enter_master(self, master: Master) -> None:
        self._master = master
        self._timers = master.timers

    def _leave_master(self) -> None:
        self._master = None
        self._timers = None

    def _new_loop(self) -> asyncio.AbstractEventLoop:
        return new_event_loop(self.setting["event_loop"])

    def _call_event(self, name: str, *args: Any) -> None:
        """Run a server-level callback if one is registered; log what it raises (the process goes on)."""
        callback = self._callbacks.get(name)
        if callback is None:
            return
        try:
            result = callback(*args)
            if asyncio.iscoroutine(result):
                role = self._worker or self._task_worker or self._master
                if role is not None and role.runner.loop is not None:
                    role.runner.spawn(result)  # a task of this process's loop
                else:  # the manager, a blocking task worker: no loop, run it to the end here
                    loop = self._new_loop()
                    try:
                        loop.run_until_complete(result)
                    finally:
                        loop.close()
        except Exception:
            logger.exception("%s callback failed", name)

    # Sessions --------------------------------------------------------------------------------------------

    def _fail(self, code: int) -> bool:
        self._last_error = int(code)
        return False

    def send(self, fd: int, data: bytes | str, server_socket: int = -1) -> bool:
        """Send to a session; False (see ``get_last_error()``) if it is unknown, closed or its buffer is full."""
        conn = self._local_connections.get(fd)
        if conn is not None and conn.writable and type(data) is bytes and data:
            # The hot path: BASE mode's local send, inlined; everything else goes through the factory.
            conn.last_send_time = _now()
            conn.transport.write(data)
            counters = conn.counters
            counts = counters.values
            counts[_RESPONSE] += 1
            counts[_SEND_BYTES] += len(data)
            if not counters.pending:
                counters.moved()
            return True
        if type(data) is not bytes:
            data = _to_bytes(data)
        if not data:
            return self._fail(ErrorCode.NO_PAYLOAD)
        if not self._started:
            return self._fail(ErrorCode.SERVER_NOT_RUNNING)
        code = self._factory.send(fd, data)
        if code:
            return self._fail(code)
        worker = self._worker
        if worker is not None:
            worker.count_send(len(data))
        return True

    def sendto(self, ip: str, port: int, data: bytes | str, server_socket: int = -1) -> bool:
        """Send a datagram from a UDP or UNIX-dgram listening socket."""
        data = _to_bytes(data)
        if server_socket >= 0:
            candidates = [p for p in self.ports if p.fileno == server_socket and not p.is_stream]
        else:
            wanted = (SockType.UNIX_DGRAM if ip.startswith("/") else
                      SockType.UDP6 if ":" in ip else SockType.UDP)
            candidates = [p for p in self.ports if p.base_type == wanted]
            if not candidates:
                logger.warning("UDP listener has to be added before executing sendto")
        if not candidates:
            return self._fail(ErrorCode.INVALID_PARAMS)
        sock = candidates[0].sock
        try:
            sock.sendto(data, ip if sock.family == 1 else (ip, port))
        except OSError as exc:
            return self._fail(exc.errno or ErrorCode.INVALID_PARAMS)
        return True

    def close(self, fd: int, reset: bool = False) -> bool:
        """Close a session: its Close callback runs (reactor_id -1), then the socket closes after pending
        output is flushed; ``reset=True`` drops pending output and aborts with an RST."""
        if not self._started:
            return self._fail(ErrorCode.SERVER_NOT_RUNNING)
        code = self._factory.close(fd, reset)
        return self._fail(code) if code else True

    def pause(self, fd: int) -> bool:
        """Stop reading from a connection (its data waits in the kernel) until ``resume``."""
        code = self._factory.set_reading(fd, False) if self._started else ErrorCode.SERVER_NOT_RUNNING
        return self._fail(code) if code else True

    def resume(self, fd: int) -> bool:
        code = self._factory.set_reading(fd, True) if self._started else ErrorCode.SERVER_NOT_RUNNING
        return self._fail(code) if code else True

    confirm = resume

    def sendfile(self, fd: int, filename: str | os.PathLike[str], offset: int = 0, length: int = 0) -> bool:
        """Send ``length`` bytes of a file from ``offset`` (0: up to its end), after what was sent before.

        The kernel copies it from the page cache to the socket (``os.sendfile``) unless the connection is
        TLS. False (see ``get_last_error()``) for a missing or non-regular file, a negative offset or length,
        a range beyond the end of the file, or a session that is unknown or closed.
        """
        if not self._started:
            return self._fail(ErrorCode.SERVER_NOT_RUNNING)
        if offset < 0 or length < 0:
            logger.warning("sendfile: offset (%d) and length (%d) must not be negative", offset, length)
            return self._fail(ErrorCode.INVALID_PARAMS)
        path = os.path.abspath(os.fspath(filename))  # the reactor that sends it may run elsewhere
        try:
            info = os.stat(path)
        except OSError as exc:
            logger.warning("sendfile: cannot use %s: %s", path, exc.strerror)
            return self._fail(exc.errno or errno.ENOENT)
        if not stat.S_ISREG(info.st_mode):
            logger.warning("sendfile: %s is not a regular file", path)
            return self._fail(ErrorCode.INVALID_PARAMS)
        if offset >= info.st_size or length > info.st_size - offset:
            logger.warning("sendfile: %s has %d bytes, fewer than offset %d + length %d", path, info.st_size,
                           offset, length)
            return self._fail(ErrorCode.INVALID_PARAMS)
        length = length or info.st_size - offset
        code = self._factory.sendfile(fd, path, offset, length)
        if code:
            return self._fail(code)
        worker = self._worker
        if worker is not None:
            worker.count_send(length)
        return True

    def heartbeat(self, if_close_connection: bool = True) -> list[int] | bool:
        """The sessions that received nothing for longer than their port's ``heartbeat_idle_time``; with
        ``if_close_connection`` they are also closed, their pending output dropped. False when the server has
        no heartbeat (``heartbeat_check_interval`` < 1). BASE mode sees the calling worker's own sessions."""
        if not self._started:
            return self._fail(ErrorCode.SERVER_NOT_RUNNING)
        if self.setting["heartbeat_check_interval"] < 1:
            return False
        idle = self._factory.idle_sessions(_now())
        if if_close_connection:
            for fd in idle:
                self._factory.close(fd, True)
        return idle

    def exist(self, fd: int) -> bool:
        """True if ``fd`` is an open session (BASE mode sees only the calling worker's, as Swoole)."""
        return self._started and self._factory.exist(fd)

    exists = exist

    def get_client_info(self, fd: int, reactor_id: int = -1, ignore_error: bool = False) -> dict[str, Any] | None:
        """Swoole's connection info; it still answers inside the session's Close callback."""
        info = self._factory.client_info(fd) if self._started else None
        if info is None:
            self._last_error = ErrorCode.SESSION_NOT_EXIST
        return info

    getClientInfo = get_client_info

    def get_client_list(self, start_fd: int = 0, page_size: int = 10) -> list[int] | None:
        """Up to ``page_size`` open sessions after ``start_fd``, in socket-fd order (as Swoole pages them)."""
        if page_size > CLIENT_LIST_MAX or page_size < 1:
            logger.warning("get_client_list: page_size must be 1..%d", CLIENT_LIST_MAX)
            return None
        if not self._started:
            return None
        live = sorted(self._factory.live_sessions())
        after = -1
        if start_fd:
            found = [socket_fd for socket_fd, session_id in live if session_id == start_fd]
            if not found:
                return None
            after = found[0]
        return [session_id for socket_fd, session_id in live if socket_fd > after][:page_size]

    @property
    def connections(self) -> list[int]:
        """Open sessions in socket-fd order: all of them in PROCESS mode, the worker's own in BASE mode."""
        return [session_id for _, session_id in sorted(self._factory.live_sessions())] if self._started else []

    def bind(self, fd: int, uid: int) -> bool:
        """Attach a uid to a session (for dispatch_mode 5); refused once it has a non-zero uid."""
        if not -(2**31) <= uid <= 2**32 - 1:
            logger.warning("bind: uid %d out of range", uid)
            return self._fail(ErrorCode.INVALID_PARAMS)
        code = self._factory.bind(fd, uid) if self._started else ErrorCode.SERVER_NOT_RUNNING
        return self._fail(code) if code else True

    # Tasks and messages between workers ------------------------------------------------------------------

    @property
    def _tasks(self) -> TaskClient:
        if self._task_client is None or self._task_client.server is not self:
            self._task_client = TaskClient(self)
        return self._task_client

    def task(self, data: Any, dst_worker_id: int = -1, finish_callback: Callable[..., Any] | None = None) -> int | bool:
        """Run ``data`` through Task in a task worker; the id of the task, or False. The result comes back to
        Finish (or ``finish_callback(server, task_id, result)``) in this worker."""
        if not self._started:
            return self._fail(ErrorCode.SERVER_NOT_RUNNING)
        return self._tasks.task(data, dst_worker_id, finish_callback)

    def task_wait(self, data: Any, timeout: float = 0.5, dst_worker_id: int = -1) -> Any:
        """Run a task and block this worker until its result comes back; False on timeout."""
        if not self._started:
            return self._fail(ErrorCode.SERVER_NOT_RUNNING)
        return self._tasks.task_wait(data, timeout, dst_worker_id)

    taskwait = task_wait

    def task_wait_multi(self, tasks: list[Any], timeout: float = 0.5) -> dict[int, Any] | bool:
        """Run several tasks and block until all are done or the timeout: {index: result} of those in time."""
        if not self._started:
            return self._fail(ErrorCode.SERVER_NOT_RUNNING)
        return self._tasks.task_wait_multi(list(tasks), timeout)

    async def task_co(self, tasks: list[Any], timeout: float = 0.5) -> list[Any]:
        """``await`` several tasks from an async callback: their results in order, False where timed out."""
        return await self._tasks.task_co(list(tasks), timeout)

    def finish(self, data: Any) -> bool:
        """Inside Task: send the result back to the worker that sent the task."""
        task_worker = self._task_worker
        return task_worker.finish(data) if task_worker is not None else self._fail(ErrorCode.INVALID_PARAMS)

    def send_message(self, message: Any, dst_worker_id: int) -> bool:
        """Deliver ``message`` to PipeMessage(server, src_worker_id, message) of another worker or task worker."""
        if not self._started:
            return self._fail(ErrorCode.SERVER_NOT_RUNNING)
        return self._tasks.send_message(message, dst_worker_id)

    sendMessage = send_message

    # Timers ---------------------------------------------------------------------------------------------

    def tick(self, ms: int, callback: Callable[..., Any], *args: Any) -> int | bool:
        """Call ``callback(timer_id, *args)`` every ``ms`` milliseconds in this process."""
        if self._timers is None:
            return self._fail(ErrorCode.SERVER_NOT_RUNNING)
        return self._timers.tick(ms, callback, args)

    def after(self, ms: int, callback: Callable[..., Any], *args: Any) -> int | bool:
        """Call ``callback(*args)`` once, ``ms`` milliseconds from now, in this process."""
        if self._timers is None:
            return self._fail(ErrorCode.SERVER_NOT_RUNNING)
        return self._timers.after(ms, callback, args)

    def clear_timer(self, timer_id: int) -> bool:
        return self._timers is not None and self._timers.clear(timer_id)

    # Life cycle -----------------------------------------------------------------------------------------

    def add_process(self, process: Process) -> int:
        """Add a user process that the manager starts and keeps alive; its index (0-based)."""
        self._check_not_started("add_process")
        if not isinstance(process, Process):
            raise TypeError(f"add_process() takes a pyswoole.Process, not {type(process).__name__}")
        process.id = len(self._processes)
        self._processes.append(process)
        return process.id

    def reload(self, only_reload_taskworker: bool = False) -> bool:
        """Restart every worker and task worker (or only the task workers) gracefully."""
        if not self._started or self._shared is None:
            return self._fail(ErrorCode.SERVER_NOT_RUNNING)
        manager_pid = self._shared.globals[Global.MANAGER_PID]
        if not manager_pid:
            logger.warning("reload is not supported with single process mode")
            return self._fail(ErrorCode.INVALID_PARAMS)
        if self._manager is not None and os.getpid() == manager_pid:
            return self._manager.reload(only_reload_taskworker)
        os.kill(manager_pid, signal.SIGUSR2 if only_reload_taskworker else signal.SIGUSR1)
        return True

    def shutdown(self) -> bool:
        """Stop the whole server gracefully (from any of its processes)."""
        if not self._started or self._shared is None:
            return self._fail(ErrorCode.SERVER_NOT_RUNNING)
        # PROCESS mode: the master stops everything; BASE mode: the manager, or else the only process.
        globals_ = self._shared.globals
        target = globals_[Global.MASTER_PID] if self.mode == Mode.PROCESS else \
            globals_[Global.MANAGER_PID] or globals_[Global.MASTER_PID]
        try:
            os.kill(target, signal.SIGTERM)
        except OSError as exc:
            return self._fail(exc.errno or errno.ESRCH)
        return True

    def stop(self, worker_id: int = -1, wait_event: bool = False) -> bool:
        """Stop one event worker gracefully (the calling one by default); the manager starts a new one."""
        if not self._started:
            return self._fail(ErrorCode.SERVER_NOT_RUNNING)
        worker = self._worker
        if worker_id == -1 or worker is not None and worker_id == worker.worker_id:
            if worker is None:
                return self._fail(ErrorCode.INVALID_PARAMS)
            worker.loop.call_soon(worker.stop)  # type: ignore[union-attr]
            return True
        if not 0 <= worker_id < self.setting["worker_num"]:
            return self._fail(ErrorCode.INVALID_PARAMS)
        code = self._factory.stop_worker(worker_id)
        return self._fail(code) if code else True

    # Introspection --------------------------------------------------------------------------------------

    def get_last_error(self) -> int:
        return self._last_error

    def get_worker_id(self) -> int:
        return self.worker_id

    def get_worker_pid(self, worker_id: int = -1) -> int | bool:
        if worker_id == -1:
            worker_id = self.worker_id
        if self._shared is None or not 0 <= worker_id < self._shared.worker_slots:
            return False
        return self._shared.slot(worker_id)[Slot.PID]

    def get_worker_status(self, worker_id: int = -1) -> int | bool:
        if worker_id == -1:
            worker_id = self.worker_id
        if self._shared is None or not 0 <= worker_id < self._shared.worker_slots:
            return False
        return self._shared.slot(worker_id)[Slot.STATUS]

    def get_manager_pid(self) -> int:
        return self._shared.globals[Global.MANAGER_PID] if self._shared is not None else 0

    def get_master_pid(self) -> int:
        return self._shared.globals[Global.MASTER_PID] if self._shared is not None else 0

    @property
    def manager_pid(self) -> int:
        return self.get_manager_pid()

    @property
    def master_pid(self) -> int:
        return self.get_master_pid()

    def stats(self) -> dict[str, Any]:
        """Swoole's ``stats()``: server-wide counters, plus the calling worker's own."""
        shared = self._shared
        if shared is None:
            return {}
        setting = self.setting
        worker_num = setting["worker_num"]
        # Connection counters live where the sockets are: in the workers (BASE) or reactor threads (PROCESS).
        io_rows = (shared.worker_slots, setting["reactor_num"]) if self.mode == Mode.PROCESS else (0, worker_num)

        def io_total(field: int) -> int:
            return shared.sum_field(field, *io_rows)

        def worker_total(field: int) -> int:
            return shared.sum_field(field, 0, worker_num)

        socket_fds = [socket_fd for socket_fd, _ in self._factory.live_sessions()]
        worker = self._worker
        if worker is not None:
            worker.counters.publish()
        stats: dict[str, Any] = {
            "start_time": shared.globals[Global.START_TIME_US] // 1_000_000,
            "connection_num": io_total(Slot.CONNECTION_NUM),
            "abort_count": io_total(Slot.ABORT),
            "accept_count": io_total(Slot.ACCEPT),
            "close_count": io_total(Slot.CLOSE),
            "worker_num": worker_num,
            "task_worker_num": setting["task_worker_num"],
            "user_worker_num": len(self._processes),
            "idle_worker_num": sum(
                1 for i in range(worker_num) if shared.slot(i)[Slot.STATUS] == WorkerStatus.IDLE),
            "dispatch_count": io_total(Slot.DISPATCH),
            "request_count": worker_total(Slot.REQUEST),
            "response_count": worker_total(Slot.RESPONSE),
            "total_recv_bytes": io_total(Slot.RECV_BYTES),
            "total_send_bytes": worker_total(Slot.SEND_BYTES),
            "pipe_packet_msg_id": ipc.process_msg_ids.sent,
            "concurrency": 0,
            "session_round": shared.globals[Global.SESSION_ROUND],
            "min_fd": min(socket_fds, default=0),
            "max_fd": max(socket_fds, default=0),
        }
        if worker is not None:
            slot = worker.slot
            stats.update(
                worker_request_count=slot[Slot.REQUEST] - slot[Slot.REQUEST_BASE],
                worker_response_count=slot[Slot.RESPONSE] - slot[Slot.RESPONSE_BASE],
                worker_dispatch_count=slot[Slot.DISPATCH] - slot[Slot.DISPATCH_BASE],
                worker_concurrency=worker.coroutine_num,
            )
        task_rows = (worker_num, setting["task_worker_num"])
        task_count = worker_total(Slot.TASK_DISPATCHED) + shared.globals[Global.TASKS_FROM_OTHERS]
        stats.update(task_idle_worker_num=sum(
                         1 for i in range(worker_num, worker_num + setting["task_worker_num"])
                         if shared.slot(i)[Slot.STATUS] == WorkerStatus.IDLE),
                     tasking_num=max(0, task_count - shared.sum_field(Slot.TASK_STARTED, *task_rows)),
                     task_count=task_count,
                     coroutine_num=worker.coroutine_num if worker is not None else 0,
                     coroutine_peek_num=0)
        return stats

    def __repr__(self) -> str:
        return f"<Server {self.mode.name} {self.host}:{self.port}>"


def stats_file_for(setting: dict[str, Any]) -> str | None:
    """Where stats are published: stats_file, else ``<pid_file>.stats.json`` when there is a pid_file."""
    if setting.get("stats_file"):
        return setting["stats_file"]
    return setting["pid_file"] + ".stats.json" if setting.get("pid_file") else None


def daemonize(log_file: str | None) -> None:
    """Detach from the terminal (double fork, new session); stdout and stderr go to log_file or /dev/null.

    Unlike Swoole the working directory is kept, so relative paths in settings still mean what they meant.
    """
    for _ in range(2):
        sys.stdout.flush()
        sys.stderr.flush()
        if os.fork():
            os._exit(0)
        if _ == 0:
            os.setsid()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    log.redirect_stdio(log_file or os.devnull)  # reopened with the log file (SIGRTMIN, logrotate)


def _unlink(path: str | None) -> None:
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass
