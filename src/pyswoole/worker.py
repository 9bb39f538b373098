"""An event worker: its own event loop, its connections, and the user's callbacks (BASE mode).

In BASE mode the worker is its own reactor: it accepts on every listening socket, reads, runs Receive inline
and writes replies itself. Messages from other processes (a send or close for one of its sessions, a stop
request) arrive on its worker pipe.

Life of one incarnation: WorkerStart -> serve -> (SIGTERM, shutdown() or stop()) -> stop accepting -> every
open connection gets Close (reactor_id -1) -> pending coroutines finish or ``max_wait_time`` passes ->
WorkerStop -> exit.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import ipc, log, pipes
from .constants import EventType, ErrorCode, WorkerStatus
from .log import logger
from .reactor import Connection
from .shm import Global, Slot
from .timers import Timers

if TYPE_CHECKING:
    from .server import Port, Server

# Plain ints: the hot path compares and indexes with them, and enum members cost several times more.
_BUSY = int(WorkerStatus.BUSY)
_IDLE = int(WorkerStatus.IDLE)
_REQUEST, _FAILED, _RECV_BYTES, _STATUS = Slot.REQUEST, Slot.FAILED, Slot.RECV_BYTES, Slot.STATUS
_RESPONSE, _SEND_BYTES = Slot.RESPONSE, Slot.SEND_BYTES
_NOT_EXIST = int(ErrorCode.SESSION_NOT_EXIST)
_now = time.time


class PortHandlers:
    """One port's callbacks as a worker calls them, resolved once per worker (the port's own, else the
    primary port's) so the hot path reads attributes instead of looking names up."""

    __slots__ = ("connect", "receive", "close", "packet", "receive_async")

    def __init__(self, port: Port, primary: Port) -> None:
        def pick(event: str) -> Callable[..., Any] | None:
            return port.callbacks.get(event) or primary.callbacks.get(event)

        self.connect = pick("connect")
        self.receive = pick("receive")
        self.close = pick("close")
        self.packet = pick("packet")
        self.receive_async = self.receive is not None and asyncio.iscoroutinefunction(self.receive)


class WorkerConnection(Connection):
    """A connection of a BASE-mode worker: a received package goes straight to the Receive callback."""

    __slots__ = ("server", "slot")

    def __init__(self, worker: EventWorker, port: Port, handlers: PortHandlers) -> None:
        super().__init__(worker, port, handlers, worker.worker_id)
        self.server = worker.server
        self.slot = worker.slot

    def data_received(self, data: bytes) -> None:
        # The hot path: kept flat on purpose, every call and lookup here is paid per package.
        self.last_recv_time = self.last_dispatch_time = _now()
        slot = self.slot
        slot[_RECV_BYTES] += len(data)
        handlers = self.handlers
        if handlers.receive_async:
            self.reactor.spawn(handlers.receive(self.server, self.session_id, self.reactor_id, data))  # type: ignore[attr-defined]
            slot[_REQUEST] += 1
            return
        slot[_STATUS] = _BUSY
        try:
            handlers.receive(self.server, self.session_id, self.reactor_id, data)
        except Exception:
            slot[_FAILED] += 1
            logger.exception("Receive callback failed (fd=%d)", self.session_id)
        else:
            slot[_REQUEST] += 1
        slot[_STATUS] = _IDLE


class EventWorker:
    def __init__(self, server: Server, worker_id: int) -> None:
        self.server = server
        self.worker_id = worker_id
        self.shared = server._shared
        self.slot = self.shared.slot(worker_id)
        self.connections: dict[int, Connection] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.timers: Timers | None = None
        self.stopping = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._servers: list[asyncio.AbstractServer] = []
        self._dgram_fds: list[int] = []
        self._writers: dict[int, pipes.PipeWriter] = {}
        self._reassembler = ipc.Reassembler()
        self._stopped: asyncio.Future[None] | None = None
        self._buffer_limit = server.setting["socket_buffer_size"]

    # Life cycle -----------------------------------------------------------------------------------------

    def run(self, start_callback: bool) -> None:
        """Serve until stopped. ``start_callback``: run the server's Start callback before WorkerStart."""
        server = self.server
        log.set_role("worker", self.worker_id)
        loop = self.loop = server._new_loop()
        asyncio.set_event_loop(loop)
        self.timers = Timers(loop)
        self.shared.begin_incarnation(self.worker_id, os.getpid(), _IDLE)
        server._enter_worker(self)
        try:
            loop.run_until_complete(self._serve(start_callback))
        finally:
            self.slot[_STATUS] = int(WorkerStatus.EXIT)
            server._leave_worker()
            loop.close()
            asyncio.set_event_loop(None)

    async def _serve(self, start_callback: bool) -> None:
        loop = self.loop
        assert loop is not None
        server = self.server
        self._stopped = loop.create_future()
        primary = server.ports[0]
        for port in server.ports:
            handlers = PortHandlers(port, primary)
            if port.is_stream:
                listener = await loop.create_server(
                    lambda port=port, handlers=handlers: WorkerConnection(self, port, handlers),
                    sock=port.socket_for_worker(),
                    backlog=server.setting["backlog"], start_serving=True)
                self._servers.append(listener)
            else:
                loop.add_reader(port.fileno, self._read_datagrams, port, handlers)
                self._dgram_fds.append(port.fileno)
        if server._pipes is not None:
            worker_end = server._pipes.worker_ends[self.worker_id]
            loop.add_reader(worker_end.fileno(), self._read_pipe, worker_end)
        self._install_signals()
        if start_callback:
            server._call_event("start", server)
        if self.worker_id == 0:
            self.shared.globals[Global.MASTER_PID] = os.getpid()  # BASE mode: worker 0 stands for the master
        server._call_event("worker_start", server, self.worker_id, fatal=True)
        await self._stopped
        await self._drain()
        server._call_event("worker_stop", server, self.worker_id)

    def _install_signals(self) -> None:
        loop = self.loop
        assert loop is not None
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        if self.server._manager_pid:
            # The manager turns Ctrl-C into an orderly stop of every worker; acting on it here too would
            # look like a crash to it.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            self._watch_manager()
        else:
            loop.add_signal_handler(signal.SIGINT, self.stop)

    def _watch_manager(self) -> None:
        if os.getppid() != self.server._manager_pid:
            logger.warning("manager process is gone, worker %d stops", self.worker_id)
            self.stop()
            return
        self.loop.call_later(1.0, self._watch_manager)  # type: ignore[union-attr]

    def stop(self) -> None:
        """Begin the graceful stop: stop accepting, close every connection, let coroutines finish."""
        if self.stopping:
            return
        self.stopping = True
        self.slot[_STATUS] = int(WorkerStatus.EXIT)
        loop = self.loop
        assert loop is not None
        for listener in self._servers:
            listener.close()
        for fd in self._dgram_fds:
            loop.remove_reader(fd)
        self.timers.clear_all()  # type: ignore[union-attr]
        for session_id in list(self.connections):
            self.close(session_id)
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    async def _drain(self) -> None:
        deadline = time.monotonic() + self.server.setting["max_wait_time"]
        while (self._tasks or self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self.connections.values()):
            conn.shut(reset=True)
        if self._tasks:
            logger.warning("worker %d: %d coroutines still running after max_wait_time, cancelled",
                           self.worker_id, len(self._tasks))
            for task in list(self._tasks):
                task.cancel()

    # Callbacks ------------------------------------------------------------------------------------------

    def spawn(self, coroutine: Any, then: Callable[[], None] | None = None) -> None:
        """Run a coroutine callback as a task; log what it raises; call ``then`` when it is over."""
        task = self.loop.create_task(coroutine)  # type: ignore[union-attr]
        self._tasks.add(task)

        def done(task: asyncio.Task[Any]) -> None:
            self._tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                exc = task.exception()
                logger.error("callback %s failed", coroutine.__qualname__, exc_info=(type(exc), exc, exc.__traceback__))
            if then is not None:
                then()

        task.add_done_callback(done)

    def _call(self, callback: Callable[..., Any], args: tuple[Any, ...], then: Callable[[], None] | None = None) -> bool:
        """Call a plain or async callback; True if it ran (or was started) without raising."""
        try:
            result = callback(*args)
        except Exception:
            logger.exception("%s callback failed", getattr(callback, "__qualname__", callback))
            result = None
            ok = False
        else:
            ok = True
        if asyncio.iscoroutine(result):
            self.spawn(result, then)
        elif then is not None:
            then()
        return ok

    # Reactor interface (called by Connection) -----------------------------------------------------------

    def on_connect(self, conn: Connection) -> None:
        conn.session_id = self.shared.allocate_session(self.worker_id)
        self.connections[conn.session_id] = conn
        slot = self.slot
        slot[Slot.ACCEPT] += 1
        slot[Slot.CONNECTION_NUM] += 1
        conn.transport.set_write_buffer_limits(high=self._buffer_limit)  # type: ignore[union-attr]
        conn.writable = True
        if self.stopping:
            self.close(conn.session_id)
            return
        callback = conn.handlers.connect
        if callback is not None:
            self._call(callback, (self.server, conn.session_id, conn.reactor_id))

    def on_disconnect(self, conn: Connection, exc: Exception | None) -> None:
        if conn.session_id == 0:
            return  # refused before it was registered
        if conn.closed:
            self._free(conn)  # a server-initiated close: Close has run already
            return
        conn.mark_closed(by_peer=True)
        callback = conn.handlers.close
        if callback is None:
            self._free(conn)
        else:
            # The session stays readable (get_client_info) until Close is over.
            self._call(callback, (self.server, conn.session_id, conn.reactor_id), lambda: self._free(conn))

    def _free(self, conn: Connection) -> None:
        if self.connections.pop(conn.session_id, None) is None:
            return
        self.shared.free_session(conn.session_id)
        slot = self.slot
        slot[Slot.CLOSE] += 1
        slot[Slot.CONNECTION_NUM] -= 1

    def _read_datagrams(self, port: Port, handlers: PortHandlers) -> None:
        sock = port.sock
        slot = self.slot
        for _ in range(64):
            try:
                data, address = sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.warning("recvfrom on port %s failed: %s", port.port, exc)
                return
            slot[_RECV_BYTES] += len(data)
            if isinstance(address, tuple):
                client = {"address": address[0], "port": address[1]}
            else:
                client = {"address": address or "", "port": 0}
            client.update(server_socket=port.fileno, server_port=port.port, dispatch_time=time.time())
            slot[_STATUS] = _BUSY
            slot[_REQUEST if self._call(handlers.packet, (self.server, data, client)) else _FAILED] += 1  # type: ignore[arg-type]
            slot[_STATUS] = _IDLE

    def _read_pipe(self, sock: socket.socket) -> None:
        for message in pipes.read_datagrams(sock, self._reassembler):
            kind = message.type
            if kind == EventType.SEND_DATA:
                conn = self.connections.get(message.fd)
                if conn is not None and not conn.closed:
                    conn.write(message.data)
            elif kind == EventType.CLOSE_FORWARD:
                self.close(message.fd, reset=bool(message.ext_flags))
            elif kind == EventType.PAUSE_RECV:
                self.pause(message.fd)
            elif kind == EventType.RESUME_RECV:
                self.resume(message.fd)
            elif kind == EventType.SHUTDOWN:
                self.stop()
            else:
                logger.warning("unexpected message type %d on worker pipe", kind)

    # Operations on this worker's own sessions (the factory routes the rest) ------------------------------

    def send(self, session_id: int, data: bytes) -> int:
        """Queue data on an own session; 0 on success, else Swoole's error code."""
        conn = self.connections.get(session_id)
        if conn is None:
            return _NOT_EXIST
        if conn.closed:
            return ErrorCode.SESSION_CLOSED_BY_CLIENT if conn.peer_closed else ErrorCode.SESSION_CLOSED
        if conn.overflow:
            return ErrorCode.OUTPUT_BUFFER_OVERFLOW
        conn.write(data)
        slot = self.slot
        slot[_RESPONSE] += 1
        slot[_SEND_BYTES] += len(data)
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

        self._call(callback, (self.server, session_id, -1), after_close)
        return 0

    def pause(self, session_id: int) -> int:
        return self._set_reading(session_id, False)

    def resume(self, session_id: int) -> int:
        return self._set_reading(session_id, True)

    def _set_reading(self, session_id: int, reading: bool) -> int:
        conn = self.connections.get(session_id)
        if conn is None or conn.closed:
            return ErrorCode.SESSION_NOT_EXIST
        if conn.paused == reading:
            conn.paused = not reading
            if reading:
                conn.transport.resume_reading()  # type: ignore[union-attr]
            else:
                conn.transport.pause_reading()  # type: ignore[union-attr]
        return 0

    def writer_for(self, worker_id: int) -> pipes.PipeWriter:
        writer = self._writers.get(worker_id)
        if writer is None:
            sock = self.server._pipes.master_ends[worker_id]  # type: ignore[union-attr]
            writer = self._writers[worker_id] = pipes.PipeWriter(self.loop, sock)  # type: ignore[arg-type]
        return writer

    @property
    def coroutine_num(self) -> int:
        return len(self._tasks)
