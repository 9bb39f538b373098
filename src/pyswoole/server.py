"""``Server``, the facade: construct and bind, ``set``, ``on``, and ``start()`` as the ordered steps of Swoole's
model; then, from any process of the server, the session, task and life-cycle calls.

Nothing below this module knows it: the roles (``runtime/``) get a :class:`~pyswoole.runtime.context.Runtime`
that holds what they need, and this object only as the opaque first argument of the user's callbacks. A method
here checks its arguments, asks the runtime (mostly its factory, which knows where a session lives), and turns
Swoole's error codes into ``False`` plus :meth:`Server.get_last_error`.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import sys
import time
from collections.abc import Callable
from typing import Any, ClassVar

from . import log, state
from . import settings as settings_module
from .cluster import Cluster
from .constants import DGRAM_TYPES, ErrorCode, EventType, Mode, SockType
from .errors import ServerError
from .hosting.asgi import AsgiApp
from .hosting.mount import interface_of
from .hosting.wsgi import WsgiApp
from .http.service import HttpApp, HttpService
from .ipc import codec
from .ipc.shm import Global, Slot
from .log import logger
from .port import PORT_EVENTS, Port, event_key, port_event_name
from .runtime import boot, stats
from .runtime.context import Runtime
from .runtime.handle import ServerHandle, to_bytes
from .runtime.process import Process
from .websocket import frames as websocket_frames
from .websocket.frames import CLOSE_NORMAL, FIN, Frame
from .websocket.handle import WebSocketHandle
from .websocket.service import WebSocketService

SERVER_EVENTS = (
    "start",
    "before_shutdown",
    "shutdown",
    "worker_start",
    "worker_stop",
    "worker_exit",
    "worker_error",
    "manager_start",
    "manager_stop",
    "before_reload",
    "after_reload",
    "task",
    "finish",
    "pipe_message",
)
HTTP_EVENTS = ("request",)
WEBSOCKET_EVENTS = ("handshake", "open", "message")


def _event_keys(events: tuple[str, ...]) -> dict[str, str]:
    """Swoole's spelling, lower-cased ("workerstart"), to the snake_case name."""
    return {name.replace("_", ""): name for name in events}


CLIENT_LIST_MAX = 100
_NOT_RUNNING = int(ErrorCode.SERVER_NOT_RUNNING)


class Server(ServerHandle):
    """A Swoole server: bound at construction, configured with :meth:`set` and :meth:`on`, run by :meth:`start`.

    The same object is the user's handle in every process of the server: inside a worker, ``server.send()``
    reaches any session, ``server.worker_id`` is that worker's id, and so on.
    """

    _EVENTS: ClassVar[dict[str, str]] = _event_keys(SERVER_EVENTS)
    _SPEAKS: ClassVar[dict[str, bool]] = {}  # the protocols every port speaks unless its settings say otherwise

    def __init__(
        self, host: str = "0.0.0.0", port: int = 0, mode: int = Mode.BASE, sock_type: int = SockType.TCP
    ) -> None:
        """Create the listening socket and bind it at once: an address in use, a bad host or a port out of
        range raises :class:`ServerError`. ``port=0`` binds an ephemeral port (read it from ``server.port``);
        for UNIX sockets ``host`` is the path and ``port`` is 0."""
        try:
            self.mode = Mode(mode)
        except ValueError:
            raise ValueError(f"invalid mode {mode!r}: use Mode.BASE or Mode.PROCESS") from None
        self._rt = Runtime(self, self.mode)
        self._settings: dict[str, Any] = {}
        self.setting: dict[str, Any] = {}
        """The settings: as given to :meth:`set`, then, once :meth:`start` began, complete with defaults."""
        self._shutdown_done = False
        self._app: HttpApp | None = None  # a mounted application (HttpServer.mount)
        primary = Port(self._rt, host, port, sock_type)
        self._rt.ports.append(primary)
        self.host: str = primary.host
        self.port: int = primary.port
        self.sock_type: int = primary.sock_type

    # Configuration ---------------------------------------------------------------------------------------

    def set(self, settings: dict[str, Any] | None = None, /, **kwargs: Any) -> None:
        """Merge settings, given as a dict or as keywords (Swoole's names: ``worker_num``, ``max_request``...).

        Each call is validated at once: an unknown key raises ``ValueError`` naming the closest valid one, a
        wrong value raises ``ValueError`` naming its key; sizes also take strings such as ``"2M"``. Defaults and
        clamping are applied at :meth:`start`. Raises :class:`ServerError` once the server runs.
        """
        self._rt.check_not_started("set")
        normalized = settings_module.normalize({**(settings or {}), **kwargs})
        self._settings.update(normalized)
        self.setting = dict(self._settings)

    def on(self, event: str, callback: Callable[..., Any] | None = None) -> Any:
        """Register a callback, ``server.on("Receive", fn)``, or use ``@server.on("receive")`` as a decorator.

        Event names are case-insensitive, in Swoole's spelling or snake_case; an unknown one raises
        ``ValueError``. Port events (Connect, Receive, Close, Packet, BufferFull, BufferEmpty) go to the primary
        port. Returns the callback (or the decorator).
        """
        key = event_key(event)
        events = self._EVENTS
        if key not in events and port_event_name(event) is None:
            known = ", ".join((*events.values(), *PORT_EVENTS))
            raise ValueError(f"unknown event {event!r}; events are: {known}")
        if key not in events:
            return self.ports[0].on(event, callback)
        if callback is None:
            return lambda fn: self.on(event, fn)
        self._rt.check_not_started("on")
        if not callable(callback):
            raise TypeError(f"callback for {event!r} must be callable, not {type(callback).__name__}")
        self._rt.callbacks[events[key]] = callback
        return callback

    def get_callback(self, event: str) -> Callable[..., Any] | None:
        """The callback registered for ``event``, or None."""
        key = event_key(event)
        if key in self._EVENTS:
            return self._rt.callbacks.get(self._EVENTS[key])
        if port_event_name(event) is not None:
            return self.ports[0].get_callback(event)
        raise ValueError(f"unknown event {event!r}")

    def add_listener(self, host: str, port: int, sock_type: int = SockType.TCP) -> Port:
        """Bind another port at once (like the constructor); returns its :class:`Port`."""
        self._rt.check_not_started("add_listener")
        new_port = Port(self._rt, host, port, sock_type)
        self._rt.ports.append(new_port)
        return new_port

    listen = add_listener

    @property
    def ports(self) -> list[Port]:
        """Every listening port, the primary one (the constructor's) first."""
        return self._rt.ports

    # start() --------------------------------------------------------------------------------------------

    def start(self) -> bool:
        """Run the server until it is shut down; True after a clean shutdown. Blocks.

        Raises :class:`ServerError` before anything is forked when the server cannot work (a required callback
        missing, a bad TLS certificate), and when it is already running or was shut down.
        """
        if self._shutdown_done:
            raise ServerError("the server has been shut down, unable to execute start()")
        if self._rt.started:
            raise ServerError("the server is running, unable to execute start()")
        state.seal()
        setting = settings_module.resolve(self._settings, self.mode)
        log.configure(
            setting.get("log_file"),
            setting["log_level"],
            setting["log_date_format"],
            setting["log_date_with_microseconds"],
            setting["log_format"],
        )
        for port in self.ports:  # a bad TLS certificate raises here, before anything is started
            port.resolve_protocol(self._settings, port is self.ports[0], self._SPEAKS if port.is_stream else {})
        self._check_start(setting)
        if setting.get("cluster"):
            self.cluster.prepare(setting)
        setting["heartbeat_check_interval"] = self._heartbeat_interval(setting["heartbeat_check_interval"])
        self.setting = self._rt.setting = setting
        for port in self.ports:
            if port.speaks_http:
                websocket = WebSocketService(self._rt, port) if port.speaks_websocket else None
                port.app_protocol = HttpService(self._rt, port, websocket, self._app)
        admin = boot.admin_server(setting)  # before anything forks: ValueError, or ServerError when in use
        if setting["daemonize"]:
            daemonize(setting.get("log_file"))
        for port in self.ports:
            port.listen(setting["enable_reuse_port"] and self.mode == Mode.BASE)
        boot.prepare(self._rt)
        try:
            boot.run(self._rt, admin)
            self._rt.call_event("shutdown", self)
            if self._rt.shared.globals[Global.STARTUP_FAILED]:
                raise ServerError(
                    "the application failed to start in a worker (see the log); the server stopped",
                    ErrorCode.WORKER_TERMINATED,
                )
        finally:
            _unlink(stats.stats_file_for(setting))
            self._rt.started = False
            self._shutdown_done = True
            for port in self.ports:
                port.close()
            if self._rt.pipes is not None:
                self._rt.pipes.close()
        return True

    def _check_start(self, setting: dict[str, Any]) -> None:
        """Refuse, before anything is forked, a start that cannot work."""
        if setting["task_worker_num"] > 0 and "task" not in self._rt.callbacks:
            raise ServerError("require 'onTask' callback", ErrorCode.INVALID_CALLBACK)
        if isinstance(self._app, AsgiApp) and self.mode == Mode.PROCESS and setting["dispatch_mode"] not in (2, 4, 5):
            raise ValueError(
                f"dispatch_mode: {setting['dispatch_mode']} lets a session's events reach several workers; "
                "a mounted ASGI application needs 2, 4 or 5"
            )
        primary = self.ports[0]
        for port in self.ports:
            if port.base_type in DGRAM_TYPES:
                if port.get_callback("packet") is None and primary.get_callback("packet") is None:
                    raise ServerError(f"require onPacket callback for {port!r}", ErrorCode.INVALID_CALLBACK)
            elif port.speaks_websocket:
                if "message" not in self._rt.callbacks:
                    raise ServerError(f"require onMessage callback for {port!r}", ErrorCode.INVALID_CALLBACK)
            elif port.speaks_http:
                if "request" not in self._rt.callbacks and self._app is None:
                    raise ServerError(f"require onRequest callback for {port!r}", ErrorCode.INVALID_CALLBACK)
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
        return int(interval)

    # Sessions --------------------------------------------------------------------------------------------

    def sendto(self, ip: str, port: int, data: bytes | str, server_socket: int = -1) -> bool:
        """Send a datagram from a UDP or UNIX-dgram listening socket (``server_socket``: that port's fd)."""
        data = to_bytes(data)
        if server_socket >= 0:
            candidates = [p for p in self.ports if p.fileno == server_socket and not p.is_stream]
        else:
            wanted = SockType.UNIX_DGRAM if ip.startswith("/") else SockType.UDP6 if ":" in ip else SockType.UDP
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
        if self._rt.foreign_thread():
            return self._rt.in_loop_thread(self.close, fd, reset)
        if not self._rt.started:
            return self._fail(_NOT_RUNNING)
        code = self._rt.factory.close(fd, reset)
        return self._fail(code) if code else True

    def pause(self, fd: int) -> bool:
        """Stop reading from a connection (its data waits in the kernel) until :meth:`resume`."""
        if self._rt.foreign_thread():
            return self._rt.in_loop_thread(self.pause, fd)
        code = self._rt.factory.set_reading(fd, False) if self._rt.started else _NOT_RUNNING
        return self._fail(code) if code else True

    def resume(self, fd: int) -> bool:
        """Read again from a connection paused by :meth:`pause` (or by ``enable_delay_receive``)."""
        if self._rt.foreign_thread():
            return self._rt.in_loop_thread(self.resume, fd)
        code = self._rt.factory.set_reading(fd, True) if self._rt.started else _NOT_RUNNING
        return self._fail(code) if code else True

    confirm = resume

    def sendfile(self, fd: int, filename: str | os.PathLike[str], offset: int = 0, length: int = 0) -> bool:
        """Send ``length`` bytes of a file from ``offset`` (0: up to its end), after what was sent before.

        The kernel copies it from the page cache to the socket (``os.sendfile``) unless the connection is
        TLS. False (see :meth:`get_last_error`) for a missing or non-regular file, a negative offset or length,
        a range beyond the end of the file, or a session that is unknown or closed.
        """
        if self._rt.foreign_thread():
            return self._rt.in_loop_thread(self.sendfile, fd, filename, offset, length)
        if not self._rt.started:
            return self._fail(_NOT_RUNNING)
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
            logger.warning(
                "sendfile: %s has %d bytes, fewer than offset %d + length %d", path, info.st_size, offset, length
            )
            return self._fail(ErrorCode.INVALID_PARAMS)
        length = length or info.st_size - offset
        code = self._rt.factory.sendfile(fd, path, offset, length)
        if code:
            return self._fail(code)
        worker = self._rt.worker
        if worker is not None:
            worker.count_send(length)
        return True

    def heartbeat(self, if_close_connection: bool = True) -> list[int] | bool:
        """The sessions that received nothing for longer than their port's ``heartbeat_idle_time``; with
        ``if_close_connection`` they are also closed, their pending output dropped. False when the server has
        no heartbeat (``heartbeat_check_interval`` < 1). BASE mode sees the calling worker's own sessions."""
        if self._rt.foreign_thread():
            return self._rt.in_loop_thread(self.heartbeat, if_close_connection)
        rt = self._rt
        if not rt.started:
            return self._fail(_NOT_RUNNING)
        if self.setting["heartbeat_check_interval"] < 1:
            return False
        idle = rt.factory.idle_sessions(time.time())
        if if_close_connection:
            for fd in idle:
                rt.factory.close(fd, True)
        return idle

    def exist(self, fd: int) -> bool:
        """True if ``fd`` is an open session (BASE mode sees only the calling worker's, as Swoole)."""
        return self._rt.started and self._rt.factory.exist(fd)

    exists = exist

    def get_client_info(self, fd: int, reactor_id: int = -1, ignore_error: bool = False) -> dict[str, Any] | None:
        """Swoole's connection info (remote_ip, remote_port, server_port, connect_time, last_recv_time, ...),
        or None for an unknown session. It still answers inside the session's Close callback."""
        info = self._rt.factory.client_info(fd) if self._rt.started else None
        if info is None:
            self._rt.last_error = ErrorCode.SESSION_NOT_EXIST
        return info

    getClientInfo = get_client_info

    def get_client_list(self, start_fd: int = 0, page_size: int = 10) -> list[int] | None:
        """Up to ``page_size`` open sessions after ``start_fd``, in socket-fd order (as Swoole pages them)."""
        if page_size > CLIENT_LIST_MAX or page_size < 1:
            logger.warning("get_client_list: page_size must be 1..%d", CLIENT_LIST_MAX)
            return None
        if not self._rt.started:
            return None
        live = sorted(self._rt.factory.live_sessions())
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
        if not self._rt.started:
            return []
        return [session_id for _, session_id in sorted(self._rt.factory.live_sessions())]

    def bind(self, fd: int, uid: int) -> bool:
        """Attach a uid to a session (for dispatch_mode 5); refused once it has a non-zero uid."""
        if self._rt.foreign_thread():
            return self._rt.in_loop_thread(self.bind, fd, uid)
        if not -(2**31) <= uid <= 2**32 - 1:
            logger.warning("bind: uid %d out of range", uid)
            return self._fail(ErrorCode.INVALID_PARAMS)
        code = self._rt.factory.bind(fd, uid) if self._rt.started else _NOT_RUNNING
        return self._fail(code) if code else True

    # Tasks and messages between workers ------------------------------------------------------------------

    def task(self, data: Any, dst_worker_id: int = -1, finish_callback: Callable[..., Any] | None = None) -> int | bool:
        """Run ``data`` through Task in a task worker; the id of the task, or False. The result comes back to
        Finish (or ``finish_callback(server, task_id, result)``) in this worker. ``data``: any picklable
        object."""
        if self._rt.foreign_thread():
            return self._rt.in_loop_thread(self.task, data, dst_worker_id, finish_callback)
        if not self._rt.started:
            return self._fail(_NOT_RUNNING)
        return self._rt.tasks.task(data, dst_worker_id, finish_callback)

    def task_wait(self, data: Any, timeout: float = 0.5, dst_worker_id: int = -1) -> Any:
        """Run a task and block this worker until its result comes back; False on timeout."""
        if self._rt.foreign_thread():
            return self._rt.in_loop_thread(self.task_wait, data, timeout, dst_worker_id)
        if not self._rt.started:
            return self._fail(_NOT_RUNNING)
        return self._rt.tasks.task_wait(data, timeout, dst_worker_id)

    taskwait = task_wait

    def task_wait_multi(self, tasks: list[Any], timeout: float = 0.5) -> dict[int, Any] | bool:
        """Run several tasks and block until all are done or the timeout: {index: result} of those in time."""
        if self._rt.foreign_thread():
            return self._rt.in_loop_thread(self.task_wait_multi, tasks, timeout)
        if not self._rt.started:
            return self._fail(_NOT_RUNNING)
        return self._rt.tasks.task_wait_multi(list(tasks), timeout)

    async def task_co(self, tasks: list[Any], timeout: float = 0.5) -> list[Any]:
        """``await`` several tasks from an async callback: their results in order, False where timed out."""
        if not self._rt.started:
            self._fail(_NOT_RUNNING)
            return [False] * len(tasks)
        return await self._rt.tasks.task_co(list(tasks), timeout)

    def finish(self, data: Any) -> bool:
        """Inside Task: send the result back to the worker that sent the task."""
        task_worker = self._rt.task_worker
        return task_worker.finish(data) if task_worker is not None else self._fail(ErrorCode.INVALID_PARAMS)

    def send_message(self, message: Any, dst_worker_id: int) -> bool:
        """Deliver ``message`` to PipeMessage(server, src_worker_id, message) of another worker or task worker."""
        if self._rt.foreign_thread():
            return self._rt.in_loop_thread(self.send_message, message, dst_worker_id)
        if not self._rt.started:
            return self._fail(_NOT_RUNNING)
        return self._rt.tasks.send_message(message, dst_worker_id)

    sendMessage = send_message

    # Timers ---------------------------------------------------------------------------------------------

    def tick(self, ms: int, callback: Callable[..., Any], *args: Any) -> int | bool:
        """Call ``callback(timer_id, *args)`` every ``ms`` milliseconds in this process."""
        if self._rt.foreign_thread():
            return self._rt.in_loop_thread(self.tick, ms, callback, *args)
        timers = self._rt.timers
        if timers is None:
            return self._fail(_NOT_RUNNING)
        return timers.tick(ms, callback, args)

    def after(self, ms: int, callback: Callable[..., Any], *args: Any) -> int | bool:
        """Call ``callback(*args)`` once, ``ms`` milliseconds from now, in this process."""
        if self._rt.foreign_thread():
            return self._rt.in_loop_thread(self.after, ms, callback, *args)
        timers = self._rt.timers
        if timers is None:
            return self._fail(_NOT_RUNNING)
        return timers.after(ms, callback, args)

    def clear_timer(self, timer_id: int) -> bool:
        """Cancel a timer of this process; False if there is none with that id."""
        if self._rt.foreign_thread():
            return self._rt.in_loop_thread(self.clear_timer, timer_id)
        timers = self._rt.timers
        return timers is not None and timers.clear(timer_id)

    # Life cycle -----------------------------------------------------------------------------------------

    def add_process(self, process: Process) -> int:
        """Add a user process that the manager starts and keeps alive; its index (0-based)."""
        self._rt.check_not_started("add_process")
        if not isinstance(process, Process):
            raise TypeError(f"add_process() takes a pyswoole.Process, not {type(process).__name__}")
        process.id = len(self._rt.processes)
        self._rt.processes.append(process)
        return process.id

    def reload(self, only_reload_taskworker: bool = False) -> bool:
        """Restart every worker and task worker (or only the task workers) gracefully."""
        rt = self._rt
        if not rt.started:
            return self._fail(_NOT_RUNNING)
        manager_pid = rt.shared.globals[Global.MANAGER_PID]
        if not manager_pid:
            logger.warning("reload is not supported with single process mode")
            return self._fail(ErrorCode.INVALID_PARAMS)
        if rt.manager is not None and os.getpid() == manager_pid:
            return rt.manager.reload(only_reload_taskworker)
        os.kill(manager_pid, signal.SIGUSR2 if only_reload_taskworker else signal.SIGUSR1)
        return True

    def shutdown(self) -> bool:
        """Stop the whole server gracefully (from any of its processes)."""
        rt = self._rt
        if not rt.started:
            return self._fail(_NOT_RUNNING)
        # PROCESS mode: the master stops everything; BASE mode: the manager, or else the only process.
        globals_ = rt.shared.globals
        if self.mode == Mode.PROCESS:
            target = globals_[Global.MASTER_PID]
        else:
            target = globals_[Global.MANAGER_PID] or globals_[Global.MASTER_PID]
        try:
            os.kill(target, signal.SIGTERM)
        except OSError as exc:
            return self._fail(exc.errno or errno.ESRCH)
        return True

    def stop(self, worker_id: int = -1, wait_event: bool = False) -> bool:
        """Stop one event worker gracefully (the calling one by default); the manager starts a new one."""
        if self._rt.foreign_thread():
            return self._rt.in_loop_thread(self.stop, worker_id, wait_event)
        rt = self._rt
        if not rt.started:
            return self._fail(_NOT_RUNNING)
        worker = rt.worker
        if worker_id == -1 or worker is not None and worker_id == worker.worker_id:
            if worker is None or worker.loop is None:
                return self._fail(ErrorCode.INVALID_PARAMS)
            worker.loop.call_soon(worker.stop)
            return True
        if not 0 <= worker_id < self.setting["worker_num"]:
            return self._fail(ErrorCode.INVALID_PARAMS)
        code = rt.factory.stop_worker(worker_id)
        return self._fail(code) if code else True

    # Cluster --------------------------------------------------------------------------------------------

    @property
    def cluster(self) -> Cluster:
        """This server as a node of a cluster of servers sharing one Redis (the ``cluster`` setting): nodes,
        sessions on other nodes, groups, and with ``task_backend="cluster"`` tasks (docs/cluster.md)."""
        return Cluster.of(self._rt)

    # Introspection --------------------------------------------------------------------------------------

    def get_last_error(self) -> int:
        """Swoole's error number of the last call that failed in this process (see :class:`ErrorCode`)."""
        return self._rt.last_error

    @property
    def worker_id(self) -> int:
        """This process's worker id: 0..worker_num-1 in event workers, then task workers; -1 elsewhere."""
        return self._rt.worker_id

    @property
    def worker_pid(self) -> int:
        """This worker's pid (0 outside workers)."""
        return self._rt.worker_pid

    @property
    def taskworker(self) -> bool:
        """True in a task worker."""
        return self._rt.taskworker

    def get_worker_id(self) -> int:
        return self._rt.worker_id

    def get_worker_pid(self, worker_id: int = -1) -> int | bool:
        """The pid of a worker (this one by default); False for an unknown id."""
        slot = self._worker_slot(worker_id)
        return False if slot is None else slot[Slot.PID]

    def get_worker_status(self, worker_id: int = -1) -> int | bool:
        """A worker's :class:`WorkerStatus` (this one by default) as an int; False for an unknown id."""
        slot = self._worker_slot(worker_id)
        return False if slot is None else slot[Slot.STATUS]

    def _worker_slot(self, worker_id: int) -> memoryview | None:
        rt = self._rt
        if worker_id == -1:
            worker_id = rt.worker_id
        if not rt.started or not 0 <= worker_id < rt.shared.worker_slots:
            return None
        return rt.shared.slot(worker_id)

    def get_manager_pid(self) -> int:
        return self._rt.shared.globals[Global.MANAGER_PID] if self._rt.started else 0

    def get_master_pid(self) -> int:
        return self._rt.shared.globals[Global.MASTER_PID] if self._rt.started else 0

    @property
    def manager_pid(self) -> int:
        return self.get_manager_pid()

    @property
    def master_pid(self) -> int:
        return self.get_master_pid()

    def stats(self) -> dict[str, Any]:
        """Swoole's ``stats()``: server-wide counters (connections, requests, tasks...), plus the calling
        worker's own (``worker_request_count``...). Empty before the server starts."""
        return stats.collect(self._rt) if self._rt.started else {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.mode.name} {self.host}:{self.port}>"


class HttpServer(Server):
    """A :class:`Server` whose ports speak HTTP/1.1: the Request callback, ``(request, response)``, runs in a
    worker for each request. Everything else (settings, modes, task workers, reload, ``add_listener``...) works
    as on a ``Server``; a listener added with ``add_listener`` speaks HTTP too unless its own ``set()`` turns
    ``open_http_protocol`` off, and then gets Receive as a plain port."""

    _EVENTS = _event_keys(SERVER_EVENTS + HTTP_EVENTS)
    _SPEAKS = {"open_http_protocol": True}

    def mount(self, app: Any, interface: str = "auto", *, lifespan: str = "auto", root_path: str = "") -> None:
        """Serve a Python web application: every HTTP request (and on a :class:`WebSocketServer` every WebSocket
        connection) goes to ``app``, an ASGI 3 or a WSGI callable (``interface``: ``"auto"``, ``"asgi"``,
        ``"wsgi"``). ASGI: ``lifespan`` (``"auto"``, ``"on"``, ``"off"``) runs once per event worker; in PROCESS
        mode a session must stay on one worker (``dispatch_mode`` 2, 4 or 5). ``root_path``: the prefix the
        application is mounted under (ASGI's ``root_path``, WSGI's ``SCRIPT_NAME``). Before ``start()`` only."""
        rt = self._rt
        rt.check_not_started("mount")
        kind = interface_of(app, interface)
        if kind == "wsgi":
            if isinstance(self, WebSocketServer):
                raise ValueError("a WSGI application cannot serve WebSocket connections: use an HttpServer")
            self._app = WsgiApp(rt, app, root_path)
            return
        adapter = AsgiApp(rt, app, lifespan, root_path)
        self._app = adapter
        rt.worker_hooks.append(adapter)
        if isinstance(self, WebSocketServer):
            # The application decides each upgrade, and learns the code of a client's close frame.
            self.on("HandShake", adapter.websocket_handshake)
            self.on("Message", adapter.websocket_message)
            self.on("Close", adapter.closed)
            self.set(open_websocket_close_frame=True)


class WebSocketServer(HttpServer, WebSocketHandle):
    """An :class:`HttpServer` whose ports also accept the WebSocket upgrade: Open ``(server, request)`` once a
    client is upgraded, Message ``(server, frame)`` for each whole message, Close for every connection; plain HTTP
    requests still go to Request. :meth:`push` reaches any WebSocket session from any process of the server."""

    _EVENTS = _event_keys(SERVER_EVENTS + HTTP_EVENTS + WEBSOCKET_EVENTS)
    _SPEAKS = {"open_http_protocol": True, "open_websocket_protocol": True}

    def disconnect(self, fd: int, code: int = CLOSE_NORMAL, reason: str = "") -> bool:
        """Close WebSocket session ``fd`` with a close frame (``code``, ``reason``), then the close handshake."""
        rt = self._rt
        if rt.foreign_thread():
            return rt.in_loop_thread(self.disconnect, fd, code, reason)
        if not rt.started:
            return self._fail(_NOT_RUNNING)
        state = rt.factory.protocol_flags(fd)
        if state <= 0:
            return self._fail(ErrorCode.SESSION_NOT_EXIST if state < 0 else ErrorCode.WEBSOCKET_UNCONNECTED)
        try:
            payload = websocket_frames.close_payload(code, reason)
        except ValueError as exc:
            logger.warning("disconnect of session %d: %s", fd, exc)
            return self._fail(ErrorCode.INVALID_PARAMS)
        code = rt.factory.to_owner(fd, codec.Message(EventType.WEBSOCKET_CLOSE, fd, data=payload))
        return self._fail(code) if code else True

    def is_established(self, fd: int) -> bool:
        """Whether ``fd`` is an open WebSocket session (its handshake done), from any process."""
        return self._rt.started and self._rt.factory.protocol_flags(fd) > 0

    isEstablished = is_established

    @staticmethod
    def pack(data: str | bytes | Frame, opcode: int | None = None, flags: int = FIN) -> bytes:
        """One WebSocket frame as the server sends it (unmasked); ``opcode`` as for :meth:`push`."""
        return websocket_frames.pack(data, opcode, flags)

    @staticmethod
    def unpack(data: bytes) -> Frame:
        """The :class:`Frame` (a :class:`CloseFrame` for a close frame) of one whole frame's bytes."""
        return websocket_frames.unpack(data)


def daemonize(log_file: str | None) -> None:
    """Detach from the terminal (double fork, new session); stdout and stderr go to log_file or /dev/null.

    Unlike Swoole the working directory is kept, so relative paths in settings still mean what they meant.
    """
    for generation in range(2):
        sys.stdout.flush()
        sys.stderr.flush()
        if os.fork():
            os._exit(0)
        if generation == 0:
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
