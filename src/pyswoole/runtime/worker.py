"""An event worker: its own event loop and the user's callbacks, in either run mode.

BASE mode: the worker is its own reactor. It accepts on every listening socket, reads, runs Receive inline
and writes replies itself; its worker pipe brings sends and closes that other processes forward for its
sessions, and stop requests.

PROCESS mode: the worker owns no socket. Its pipe brings the reactor threads' events (data, datagrams,
connect, close, buffer full/empty); what it sends goes back through the factory to the owning reactor.

Life of one incarnation: WorkerStart -> serve -> (SIGTERM, shutdown() or stop()) -> stop accepting -> (BASE:
every open connection gets Close with reactor_id -1) -> pending coroutines finish or ``max_wait_time``
passes -> WorkerStop -> exit.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Callable, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from .. import log
from ..compiled import unchecked
from ..constants import PROTOCOL_EVENTS_FROM, ErrorCode, EventType, Mode, WorkerStatus
from ..ipc import codec, pipes
from ..ipc.shm import Conn, ExitCause, Global, Slot, SlotCounters
from ..log import logger
from ..port import Port, PortHandlers
from ..protocol.sendfile import open_file
from . import stats
from .callbacks import CallbackRunner, is_coroutine
from .connection import Connection, adopt, expired_connections
from .held_output import HeldOutput
from .loop import run_until_complete
from .stats import resident_memory
from .task_worker import request_limit
from .tasks import deliver_pipe_message
from .timers import Timers

if TYPE_CHECKING:
    from .context import Runtime

# Plain ints: the hot path compares and indexes with them, and enum members cost several times more.
_BUSY: Final = int(WorkerStatus.BUSY)
_IDLE: Final = int(WorkerStatus.IDLE)
_STATUS: Final = Slot.STATUS
_CONN_SIZE: Final = Conn.SIZE
_SESSION_ID: Final = Conn.SESSION_ID
_RECV_DONE_BYTES: Final = Conn.RECV_DONE_BYTES
_CLOSED: Final = Conn.CLOSED
_NOT_EXIST: Final = int(ErrorCode.SESSION_NOT_EXIST)
_now: Final = time.time
ACCEPT_BATCH: Final = 64


class WorkerConnection(Connection):
    """A connection of a BASE-mode worker: a received package goes straight to the Receive callback."""

    __slots__ = ("worker", "server", "counters", "slot")

    def __init__(self, worker: EventWorker, port: Port, handlers: PortHandlers) -> None:
        super().__init__(worker, port, handlers, worker.worker_id)
        self.worker = worker  # self.reactor, typed: the hot path reads its fields natively
        self.server = worker.server
        self.counters = worker.counters
        self.slot = worker.slot

    def stop_serving(self) -> bool:
        """The worker stops (asked once the coroutines in flight are done, or as the connection is accepted
        after the stop): False to be closed at once (Close, reactor_id -1). A protocol whose client may be
        sending right now (an HTTP keep-alive connection) returns True and closes itself as soon as its
        conversation allows; the drain closes what is left at max_wait_time."""
        return False

    def data_received(self, data: bytes) -> None:
        if self.paused:
            self.hold(data)
            return
        counters = self.counters
        if not counters.pending:
            counters.moved()
        self.last_recv_time = self.last_dispatch_time = counters.now
        counters.recv_bytes += len(data)
        handlers = self.handlers
        if self.framer is not None or handlers.receive_async:
            worker = self.worker
            for package in self.split(data) if self.framer is not None else (data,):
                counters.dispatch += 1
                worker.receive(handlers, self.session_id, self.reactor_id, package)
            return
        # EventWorker.receive inlined for the commonest case, raw and plain: the echo's hot path.
        counters.dispatch += 1
        worker = self.worker
        slot = self.slot
        slot[_STATUS] = _BUSY
        try:
            handlers.receive(self.server, self.session_id, self.reactor_id, data)
        except Exception:
            counters.failed += 1
            logger.exception("Receive callback failed (fd=%d)", self.session_id)
        else:
            counters.request += 1
        slot[_STATUS] = _IDLE
        if worker.request_limit:
            worker.check_request_limit()


class EventWorker:
    def __init__(self, rt: Runtime, worker_id: int) -> None:
        self.rt = rt
        self.server = rt.server  # the user's handle: the first argument of every callback
        self.worker_id = worker_id
        self.shared = rt.shared
        self.slot = self.shared.slot(worker_id)
        self.process_mode = rt.mode == Mode.PROCESS
        table = self.shared.connections  # PROCESS mode's shared connection table (BASE: none, never read)
        self._conn_q = table.q if table is not None else memoryview(bytearray(8)).cast("q")
        self._conn_slots = table.size if table is not None else 1
        self.connections: dict[int, Connection] = {}  # BASE mode: the sessions this worker owns
        self.output = HeldOutput()  # BASE mode: output its writers let wait for the end of the loop pass
        self.closing_sessions: set[int] = set()  # PROCESS mode: sessions whose Close callback is running
        primary = rt.ports[0]
        self.handlers = {port.fileno: PortHandlers(port, primary) for port in rt.ports}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.timers: Timers | None = None
        self.stopping = False
        self._servers: list[asyncio.AbstractServer] = []
        self._own_sockets: list[socket.socket] = []
        self._reader_fds: list[int] = []  # UDP ports and TLS listeners, read by hand
        self._writers: dict[int, pipes.PipeWriter] = {}
        self.reactor_writers: list[pipes.PipeWriter] = []
        self._reassembler = codec.Reassembler()
        self._on_message: dict[int, Callable[[codec.Message], None]] = {
            EventType.RECV_DATA: lambda message: self._recv_data(
                message.fd, message.reactor_id, message.server_fd, message.time, message.data
            ),
            EventType.RECV_DGRAM: self._recv_datagram,
            EventType.CONNECT: self._connect_event,
            EventType.CLOSE: self._close_event,
            EventType.BUFFER_FULL: self._buffer_event,
            EventType.BUFFER_EMPTY: self._buffer_event,
            EventType.SEND_DATA: self._forwarded_send,
            EventType.CLOSE_FORWARD: self._forwarded_close,
            EventType.SEND_FILE: self._forwarded_sendfile,
            EventType.PAUSE_RECV: self._forwarded_reading,
            EventType.RESUME_RECV: self._forwarded_reading,
            EventType.SHUTDOWN: lambda message: self.stop(),
            EventType.FINISH: lambda message: rt.tasks.on_finish(message),
            EventType.PIPE_MESSAGE: lambda message: deliver_pipe_message(rt, message, self.call),
        }
        self._stopped: asyncio.Future[None] | None = None
        setting = rt.setting
        self._buffer_limit = setting["socket_buffer_size"]
        self._max_connection = setting["max_connection"]
        self._delay_receive = setting["enable_delay_receive"]
        self._too_many = log.Throttle()
        self.client_certs: dict[int, str] = {}  # PROCESS mode: TLS client certificates that came with Connect
        self.request_limit = request_limit(setting["max_request"], setting["max_request_grace"])

    # Life cycle -----------------------------------------------------------------------------------------

    def run(self, start_callback: bool) -> None:
        """Serve until stopped. ``start_callback``: run the server's Start callback before WorkerStart."""
        rt = self.rt
        log.set_role("worker", self.worker_id)
        rt.set_title(f"worker {self.worker_id}")
        rt.pin_cpu(self.worker_id)
        loop = self.loop = rt.new_loop()
        self.timers = Timers(loop)
        self.shared.begin_incarnation(self.worker_id, os.getpid(), _IDLE)
        self.counters = SlotCounters(self.slot, loop)
        self.runner = CallbackRunner(loop)
        rt.enter_worker(self, os.getpid())
        try:
            run_until_complete(loop, self._serve(start_callback))
        finally:
            self.set_status(WorkerStatus.EXIT)
            rt.leave_worker()

    async def _serve(self, start_callback: bool) -> None:
        loop = self.loop
        assert loop is not None
        rt = self.rt
        self._stopped = loop.create_future()
        for port in rt.ports if not self.process_mode else ():
            handlers = self.handlers[port.fileno]
            if port.ssl_context is not None:
                listening = port.socket_for_worker()
                loop.add_reader(listening.fileno(), self._accept_tls, listening, port, handlers)
                self._reader_fds.append(listening.fileno())
                if listening is not port.sock:  # its own SO_REUSEPORT socket: close it to stop accepting
                    self._own_sockets.append(listening)
            elif port.is_stream:
                listener = await loop.create_server(
                    partial(self.new_connection, port, handlers),
                    sock=port.socket_for_worker(),
                    backlog=port.backlog,
                    start_serving=True,
                )
                self._servers.append(listener)
            else:
                loop.add_reader(port.fileno, self._read_datagrams, port, handlers)
                self._reader_fds.append(port.fileno)
        if rt.pipes is not None:
            worker_end = rt.pipes.worker_ends[self.worker_id]
            loop.add_reader(worker_end.fileno(), self._read_pipe, worker_end)
            if self.process_mode:
                # The pipes the reactor threads read, by index (factory.ProcessFactory.send).
                reactor_pipes = rt.pipes.worker_ends[: rt.setting["worker_num"]]
                self.reactor_writers = [self.writer_for(end) for end in reactor_pipes]
        self._install_signals()
        self._housekeeping()
        interval = rt.setting["heartbeat_check_interval"]
        if interval and not self.process_mode:  # PROCESS mode: the reactor threads own the sockets
            loop.call_later(interval, self._heartbeat, interval)
        if start_callback:
            rt.call_event("start", self.server)
        if self.worker_id == 0 and not self.process_mode:
            self.shared.globals[Global.MASTER_PID] = os.getpid()  # BASE mode: worker 0 stands for the master
        for hook in rt.worker_hooks:
            await hook.worker_started(self)
        rt.call_event("worker_start", self.server, self.worker_id)
        await self._stopped
        await self._drain()
        for hook in rt.worker_hooks:
            await hook.worker_stopping(self)
        rt.call_event("worker_stop", self.server, self.worker_id)

    def _install_signals(self) -> None:
        loop = self.loop
        assert loop is not None
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        loop.add_signal_handler(signal.SIGRTMIN, log.reopen)
        for reload_signal in (signal.SIGUSR1, signal.SIGUSR2):  # their default action would kill the worker
            loop.add_signal_handler(reload_signal, self._reload_signal)
        if self.rt.manager_pid:
            # The manager turns Ctrl-C into an orderly stop of every worker; acting on it here too would
            # look like a crash to it.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        else:
            loop.add_signal_handler(signal.SIGINT, self.stop)

    def _reload_signal(self) -> None:
        """SIGUSR1/SIGUSR2 sent to a worker itself: reloads are the manager's, so (as Swoole) only reopen the
        log; a single-process server (``pyswoole reload`` names its one process) has nothing to reload."""
        log.reopen()
        if not self.rt.manager_pid:
            logger.warning("reload is not supported with single process mode")

    def _housekeeping(self) -> None:
        """Beat for the manager's worker_timeout, publish this process's memory, and leave when the manager is
        gone or memory passes max_worker_rss (the manager starts a fresh worker)."""
        rt = self.rt
        setting = rt.setting
        self.slot[Slot.HEARTBEAT_MS] = int(time.monotonic() * 1000)
        if rt.manager_pid and os.getppid() != rt.manager_pid:
            logger.warning("manager process is gone, worker %d stops", self.worker_id)
            self.stop()
            return
        rss = resident_memory()
        if self.slot[Slot.PID] == os.getpid():  # not yet handed to a replacement (reload_async)
            self.slot[Slot.RSS_BYTES] = rss
        limit = setting["max_worker_rss"]
        if limit and not self.stopping and rss > limit:
            logger.warning(
                "worker %d uses %d bytes of memory, over max_worker_rss %d: recycled", self.worker_id, rss, limit
            )
            self.slot[Slot.EXIT_CAUSE] = ExitCause.MAX_WORKER_RSS  # for the manager's restart count
            self.stop()
        if not rt.manager_pid:
            stats.publish(rt)
        if rt.has_task_client:
            rt.tasks.drop_expired_callbacks()
        timeout = setting["worker_timeout"]
        delay = min(1.0, timeout / 4) if timeout else 1.0
        if not rt.manager_pid:  # this process publishes the stats: every stats_timer_interval
            delay = min(delay, setting["stats_timer_interval"] / 1000)
        self.loop.call_later(delay, self._housekeeping)  # type: ignore[union-attr]

    def stop(self) -> None:
        """Begin the graceful stop: stop accepting and reading the pipe (a replacement may already read it);
        the drain then lets coroutines finish and closes."""
        if self.stopping:
            return
        self.stopping = True
        self.set_status(WorkerStatus.EXIT)
        loop = self.loop
        assert loop is not None
        if self.rt.pipes is not None:
            unchecked(loop).remove_reader(self.rt.pipes.worker_ends[self.worker_id].fileno())
        for listener in self._servers:
            listener.close()
        for fd in self._reader_fds:
            unchecked(loop).remove_reader(fd)
        for sock in self._own_sockets:
            sock.close()  # else the kernel keeps queueing new clients for this worker while it drains
        self.timers.clear_all()  # type: ignore[union-attr]
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    async def _drain(self) -> None:
        """Coroutines in flight finish first (they may still reply); then every connection this worker owns
        gets Close (reactor_id -1) and is closed once its output is flushed (unless it closes itself: see
        ``WorkerConnection.stop_serving``); all within max_wait_time."""
        rt = self.rt
        deadline = time.monotonic() + rt.setting["max_wait_time"]
        while self.runner.tasks and time.monotonic() < deadline:
            rt.call_event("worker_exit", self.server, self.worker_id)
            await asyncio.sleep(0.01)
        for session_id, conn in list(self.connections.items()):
            if not (isinstance(conn, WorkerConnection) and conn.stop_serving()):
                self.close(session_id)
        while (self.runner.tasks or self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self.connections.values()):
            conn.shut(reset=True)
        if self.runner.tasks:
            logger.warning(
                "worker %d: %d coroutines still running after max_wait_time, cancelled",
                self.worker_id,
                len(self.runner.tasks),
            )
            for task in list(self.runner.tasks):
                task.cancel()

    # Callbacks ------------------------------------------------------------------------------------------

    def spawn(self, coroutine: Any) -> None:
        """Run a coroutine (an async callback's) as a task of this worker's loop."""
        self.runner.spawn(coroutine)

    def receive(self, handlers: PortHandlers, fd: int, reactor_id: int, data: bytes) -> None:
        """Run Receive for one package. The hot path of both modes: kept flat on purpose."""
        counters = self.counters  # the caller has marked them moved
        if handlers.receive_async:
            self.spawn(handlers.receive(self.server, fd, reactor_id, data))  # type: ignore[misc]
            counters.request += 1
            return
        slot = self.slot
        slot[_STATUS] = _BUSY
        try:
            handlers.receive(self.server, fd, reactor_id, data)  # type: ignore[misc]
        except Exception:
            counters.failed += 1
            logger.exception("Receive callback failed (fd=%d)", fd)
        else:
            counters.request += 1
        slot[_STATUS] = _IDLE
        if self.request_limit:
            self.check_request_limit()

    def serve_unit(
        self,
        what: str,
        callback: Callable[..., Any],
        args: tuple[Any, ...],
        done: Callable[[Exception | None, Any], None] | None,
    ) -> None:
        """Run a protocol room's callback for one unit of work (an HTTP request, a WebSocket message) as Receive
        runs: counted in the request stats, the worker busy meanwhile, recycled at max_request; a coroutine runs
        as a task. ``done(error, result)`` follows when it is over: what it raised (logged here), or returned;
        None when nobody waits for that."""
        counters = self.counters
        if not counters.pending:
            counters.moved()
        slot = self.slot
        slot[_STATUS] = _BUSY
        try:
            result = callback(*args)
        except Exception as exc:
            counters.failed += 1
            logger.exception("%s callback failed", what)
            if done is not None:
                done(exc, None)
        else:
            counters.request += 1
            if result is not None and is_coroutine(result):  # None (most callbacks): no type check
                self.spawn(_finish_unit(what, result, done) if done is not None else result)
            elif done is not None:
                done(None, result)
        slot[_STATUS] = _IDLE
        if self.request_limit:
            self.check_request_limit()

    def serve_coroutine(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """``serve_unit`` for a unit that is a coroutine already and reports its own failures (an ASGI request):
        counted, run as a task, recycled at max_request. The worker is never busy for it (it only waits)."""
        counters = self.counters
        if not counters.pending:
            counters.moved()
        counters.request += 1
        self.runner.spawn(coroutine)
        if self.request_limit:
            self.check_request_limit()

    def count_send(self, size: int) -> None:
        counters = self.counters
        counters.response += 1
        counters.send_bytes += size
        if not counters.pending:
            counters.moved()

    def count_dispatch(self, received_bytes: int) -> None:
        counters = self.counters
        counters.dispatch += 1
        counters.recv_bytes += received_bytes
        if not counters.pending:
            counters.moved()

    def packet(self, handlers: PortHandlers, data: bytes, address: str, port: int) -> None:
        """Run Packet for one datagram."""
        slot = self.slot
        client = {
            "address": address,
            "port": port,
            "server_socket": handlers.port.fileno,
            "server_port": handlers.port.port,
            "dispatch_time": _now(),
        }
        slot[_STATUS] = _BUSY
        if self.call(handlers.packet, (self.server, data, client)):  # type: ignore[arg-type]
            self.counters.request += 1
        else:
            self.counters.failed += 1
        slot[_STATUS] = _IDLE
        if self.request_limit:
            self.check_request_limit()

    def check_request_limit(self) -> None:
        """max_request: after that many Receive/Packet callbacks (plus grace) the worker is recycled."""
        counters, slot = self.counters, self.slot
        if counters.request + counters.failed - slot[Slot.REQUEST_BASE] - slot[Slot.FAILED_BASE] >= self.request_limit:
            logger.info("worker %d reached max_request (%d): recycled", self.worker_id, self.request_limit)
            self.stop()

    def call(self, callback: Callable[..., Any], args: tuple[Any, ...], then: Callable[[], None] | None = None) -> bool:
        """Call a plain or async callback; True if it ran (or was started) without raising; ``then()`` after."""
        return self.runner.call(callback, args, None if then is None else lambda result: then())

    # Reactor interface (called by Connection) -----------------------------------------------------------

    def admit(self, conn: Connection) -> bool:
        """Accept, or refuse beyond max_connection (all workers together): closed at once, counted in
        abort_count, logged at most once a second."""
        slot = self.slot
        if self.shared.sum_field(Slot.CONNECTION_NUM, 0, self.rt.setting["worker_num"]) >= self._max_connection:
            if self._too_many.ready():
                logger.warning("Too many connections [max_connection=%d], connection refused", self._max_connection)
            slot[Slot.ABORT] += 1
            conn.transport.abort()  # type: ignore[union-attr]
            return False
        conn.session_id = self.shared.allocate_session(self.shared.worker_owner_key(self.worker_id))
        slot[Slot.ACCEPT] += 1
        slot[Slot.CONNECTION_NUM] += 1
        return True

    def on_handshake_failed(self, conn: Connection) -> None:
        self.slot[Slot.ABORT] += 1  # admit() comes after the handshake: no session was made for it

    def _accept_tls(self, listening: socket.socket, port: Port, handlers: PortHandlers) -> None:
        """A TLS port is accepted here rather than by an asyncio server, which would hide a failed handshake
        (Swoole counts it in abort_count); the handshake runs in this loop, and Connect comes after it."""
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _ = listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.warning("accept on %r failed: %s; accepting again in 1 s", port, exc)
                unchecked(self.loop).remove_reader(listening.fileno())
                self.loop.call_later(1.0, self._resume_accept_tls, listening, port, handlers)  # type: ignore[union-attr]
                return
            sock.setblocking(False)
            adopt(self.loop, sock, self.new_connection(port, handlers))  # type: ignore[arg-type]

    def new_connection(self, port: Port, handlers: PortHandlers) -> Connection:
        """A connection of ``port`` accepted by this worker (BASE mode): the port's protocol's, or a raw one."""
        if port.app_protocol is not None:
            return port.app_protocol.worker_connection(self, port, handlers)
        return WorkerConnection(self, port, handlers)

    def _resume_accept_tls(self, listening: socket.socket, port: Port, handlers: PortHandlers) -> None:
        if not self.stopping:
            self.loop.add_reader(listening.fileno(), self._accept_tls, listening, port, handlers)  # type: ignore[union-attr]

    def on_connect(self, conn: Connection) -> None:
        self.connections[conn.session_id] = conn
        conn.transport.set_write_buffer_limits(high=self._buffer_limit)  # type: ignore[union-attr]
        conn.writable = True
        # Accepted in the loop pass that stopped this worker (the listener is closed by now): its client has
        # connected and may have sent its request already, so a protocol that can (HTTP) answers it first;
        # closing over its unread bytes would reset the connection.
        if self.stopping and not (isinstance(conn, WorkerConnection) and conn.stop_serving()):
            self.close(conn.session_id)
            return
        if self._delay_receive:
            conn.set_reading(False)  # until confirm(fd)
        callback = conn.handlers.connect
        if callback is not None:
            self.call(callback, (self.server, conn.session_id, conn.reactor_id))

    def force_close(self, conn: Connection) -> None:
        """Close an idle connection (heartbeat, max_idle_time): Close runs with this worker's reactor_id, then
        the socket is closed at once, dropping any output still pending."""
        if conn.closed:
            if not conn.peer_closed and not conn.closing:
                conn.shut(reset=True)  # closed by the server and still flushing to a client that stalled
            return
        conn.set_reading(False)
        conn.mark_closed(by_peer=False)
        callback = conn.handlers.close
        if callback is None:
            conn.shut(reset=True)
            return
        conn.closing = True

        def after_close() -> None:
            conn.closing = False
            conn.shut(reset=True)

        self.call(callback, (self.server, conn.session_id, conn.reactor_id), after_close)

    def _heartbeat(self, interval: int) -> None:
        """BASE mode: every heartbeat_check_interval, close this worker's connections that stayed idle."""
        now = _now()
        for conn in expired_connections([c for c in self.connections.values() if not c.closed], now):
            logger.info(
                "session %d idle for %.1f s (heartbeat_idle_time): closed", conn.session_id, now - conn.last_recv_time
            )
            self.force_close(conn)
        self.loop.call_later(interval, self._heartbeat, interval)  # type: ignore[union-attr]

    def on_disconnect(self, conn: Connection, exc: Exception | None) -> None:
        if conn.closed:
            self._free(conn)  # a server-initiated close: Close has run already
            return
        conn.mark_closed(by_peer=True)
        callback = conn.handlers.close
        if callback is None:
            self._free(conn)
        else:
            # The session stays readable (get_client_info) until Close is over.
            self.call(callback, (self.server, conn.session_id, conn.reactor_id), lambda: self._free(conn))

    def _free(self, conn: Connection) -> None:
        if self.connections.pop(conn.session_id, None) is None:
            return
        self.shared.free_session(conn.session_id)
        if self.rt.cluster is not None:
            self.rt.cluster.session_closed(conn.session_id)
        slot = self.slot
        slot[Slot.CLOSE] += 1
        slot[Slot.CONNECTION_NUM] -= 1

    def _read_datagrams(self, port: Port, handlers: PortHandlers) -> None:
        for data, host, remote_port in port.receive_datagrams():
            self.count_dispatch(len(data))
            self.packet(handlers, data, host, remote_port)

    def _read_pipe(self, sock: socket.socket) -> None:
        pipes.read_datagrams(
            sock, self._reassembler, self._handle, EventType.RECV_DATA, self._recv_data, stopped=self._is_stopping
        )

    def _is_stopping(self) -> bool:
        return self.stopping

    def _handle(self, message: codec.Message) -> None:
        handler = self._on_message.get(message.type)
        if handler is not None:
            handler(message)
        elif message.type >= PROTOCOL_EVENTS_FROM:
            self._protocol_message(message)
        else:
            logger.warning("unexpected message type %d on worker pipe", message.type)

    def _protocol_message(self, message: codec.Message) -> None:
        """An event of a protocol room: in BASE mode about one of this worker's sessions (forwarded to it); in
        PROCESS mode from a reactor thread, for the port's protocol."""
        if not self.process_mode:
            conn = self.connections.get(message.fd)
            if conn is not None:
                conn.protocol_message(message)
            return
        handlers = self.handlers.get(message.server_fd)
        app_protocol = handlers.port.app_protocol if handlers is not None else None
        if app_protocol is None:
            logger.warning("message type %d for a port without its protocol dropped", message.type)
        else:
            app_protocol.worker_message(self, message)

    # BASE mode: requests other processes forward for this worker's sessions ------------------------------

    def _forwarded_send(self, message: codec.Message) -> None:
        conn = self.connections.get(message.fd)
        if conn is not None and not conn.closed:
            conn.write(message.data)

    def _forwarded_close(self, message: codec.Message) -> None:
        if self.process_mode:
            self.rt.factory.close(message.fd, bool(message.ext_flags))
        else:
            self.close(message.fd, reset=bool(message.ext_flags))

    def _forwarded_reading(self, message: codec.Message) -> None:
        self.set_reading(message.fd, message.type == EventType.RESUME_RECV)

    def _forwarded_sendfile(self, message: codec.Message) -> None:
        try:
            path, offset, length, _ = codec.unpack_sendfile(message.data)  # BASE mode: no file is passed
        except codec.IpcError as exc:
            logger.warning("malformed sendfile request dropped: %s", exc)
            return
        code = self.sendfile(message.fd, path, offset, length)
        if code and code != _NOT_EXIST:
            logger.warning("sendfile of %s to session %d failed [%d]", path, message.fd, code)

    # PROCESS mode: events from the reactor threads -------------------------------------------------------

    def _recv_data(self, session_id: int, reactor_id: int, server_fd: int, time: float, data: bytes) -> None:
        """A package from a reactor thread: PROCESS mode's hot path, called without a Message."""
        q = self._conn_q
        base = (session_id % self._conn_slots) * _CONN_SIZE  # table.find, inlined
        if q[base + _SESSION_ID] == session_id > 0:
            q[base + _RECV_DONE_BYTES] += len(data)
            if q[base + _CLOSED]:
                return  # closed by the server: what the client sent meanwhile is dropped, as in Swoole
        counters = self.counters
        counters.dispatch += 1
        if not counters.pending:
            counters.moved()
        self.receive(self.handlers[server_fd], session_id, reactor_id, data)

    def _recv_datagram(self, message: codec.Message) -> None:
        try:
            address, port, data = codec.unpack_datagram(message.data)
        except codec.IpcError as exc:
            logger.warning("malformed datagram event dropped: %s", exc)
            return
        self.count_dispatch(0)
        self.packet(self.handlers[message.server_fd], data, address, port)

    def _connect_event(self, message: codec.Message) -> None:
        if message.data:
            self.client_certs[message.fd] = message.data.decode()
        callback = self.handlers[message.server_fd].connect
        if callback is not None:
            self.call(callback, (self.server, message.fd, message.reactor_id))

    def _close_event(self, message: codec.Message) -> None:
        """The client closed: run Close, then tell the reactor it may free the session."""
        table = self.shared.table
        base = table.find(message.fd)
        if base < 0 or table.q[base + Conn.CLOSED]:
            return  # this worker closed it first: Close has run
        table.q[base + Conn.CLOSED] = 1
        callback = self.handlers[message.server_fd].close
        answer = codec.Message(EventType.CLOSE, message.fd)
        factory = self.rt.process_factory

        def done() -> None:
            self.client_certs.pop(message.fd, None)
            factory.to_reactor(message.fd, message.reactor_id, answer)

        if callback is None:
            done()
        else:
            self.call(callback, (self.server, message.fd, message.reactor_id), done)

    def _buffer_event(self, message: codec.Message) -> None:
        handlers = self.handlers[message.server_fd]
        callback = handlers.buffer_full if message.type == EventType.BUFFER_FULL else handlers.buffer_empty
        if callback is not None:
            self.call(callback, (self.server, message.fd))

    def close_session(self, session_id: int, base: int, reset: bool) -> None:
        """PROCESS mode: this worker closes a session: Close (reactor_id -1), then the reactor closes it."""
        table = self.shared.table
        table.q[base + Conn.CLOSED] = 1
        reactor_id = table.q[base + Conn.REACTOR_ID]
        handlers = self.handlers[table.q[base + Conn.SERVER_FD]]
        factory = self.rt.process_factory
        request = codec.Message(EventType.CLOSE, session_id, ext_flags=int(reset))

        def done() -> None:
            self.closing_sessions.discard(session_id)
            self.client_certs.pop(session_id, None)
            factory.to_reactor(session_id, reactor_id, request)

        if handlers.close is None or not factory.notify:
            done()
            return
        self.closing_sessions.add(session_id)
        self.call(handlers.close, (self.server, session_id, -1), done)

    # Operations on this worker's own sessions (the factory routes the rest) ------------------------------

    def _unsendable(self, conn: Connection | None) -> int:
        """Why nothing can be sent to an own session now (Swoole's error code), or 0."""
        if conn is None:
            return _NOT_EXIST
        if conn.closed:
            return ErrorCode.SESSION_CLOSED_BY_CLIENT if conn.peer_closed else ErrorCode.SESSION_CLOSED
        if conn.overflow:
            return ErrorCode.OUTPUT_BUFFER_OVERFLOW
        return 0

    def send(self, session_id: int, data: bytes) -> int:
        """Queue data on an own session; 0 on success, else Swoole's error code."""
        conn = self.connections.get(session_id)
        code = self._unsendable(conn)
        if not code:
            conn.write(data)  # type: ignore[union-attr]
        return code

    def sendfile(self, session_id: int, path: str, offset: int, length: int) -> int:
        """Queue a file range on an own session; 0 on success, else Swoole's error code or an errno."""
        conn = self.connections.get(session_id)
        code = self._unsendable(conn)
        if code:
            return code
        try:
            conn.send_file(open_file(path), offset, length)  # type: ignore[union-attr]
        except OSError as exc:
            logger.warning("sendfile to session %d: cannot open %s: %s", session_id, path, exc.strerror)
            return exc.errno or ErrorCode.INVALID_PARAMS
        return 0

    def close(self, session_id: int, reset: bool = False) -> int:
        conn = self.connections.get(session_id)
        if conn is None:
            return ErrorCode.SESSION_NOT_EXIST
        if conn.closing:
            return ErrorCode.SESSION_CLOSING
        if conn.closed:
            if not reset:
                return ErrorCode.SESSION_CLOSED
            conn.shut(reset=True)
            return 0
        conn.mark_closed(by_peer=False)
        callback = conn.handlers.close
        if callback is None:
            conn.shut(reset)
            return 0
        conn.closing = True

        def after_close() -> None:
            conn.closing = False
            conn.shut(reset)

        self.call(callback, (self.server, session_id, -1), after_close)
        return 0

    def set_reading(self, session_id: int, reading: bool) -> int:
        conn = self.connections.get(session_id)
        if conn is None or conn.closed:
            return ErrorCode.SESSION_NOT_EXIST
        conn.set_reading(reading)
        return 0

    def set_status(self, status: WorkerStatus) -> None:
        """Publish this worker's status, unless its slot already belongs to a replacement (reload)."""
        if self.slot[Slot.PID] == os.getpid():
            self.slot[_STATUS] = int(status)

    def flush_pipes(self) -> None:
        """Send every batched or queued pipe message now (before this worker blocks)."""
        for writer in self._writers.values():
            writer.flush()

    def writer_for(self, sock: socket.socket) -> pipes.PipeWriter:
        """The non-blocking writer of this worker's loop for one pipe end."""
        writer = self._writers.get(sock.fileno())
        if writer is None:
            writer = self._writers[sock.fileno()] = pipes.PipeWriter(self.loop, sock, eager=True)  # type: ignore[arg-type]
        return writer

    @property
    def coroutine_num(self) -> int:
        return len(self.runner.tasks)


async def _finish_unit(what: str, coroutine: Any, done: Callable[[Exception | None, Any], None]) -> None:
    try:
        result = await coroutine
    except Exception as exc:
        logger.exception("%s callback failed", what)
        done(exc, None)
    else:
        done(None, result)
