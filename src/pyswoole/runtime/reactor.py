"""PROCESS mode's reactor threads: each owns a share of the master's connections and moves their bytes.

A ``ReactorThread`` runs an event loop in a thread of the master. It owns the connections with
``socket_fd % reactor_num == reactor_id`` (the master's accept hands them over), the UDP ports likewise, and
reads the worker pipes with ``worker_id % reactor_num == reactor_id``: a worker's sends for a session come back
to the reactor that owns it. Packages go to workers chosen by the dispatch mode; the connection's record in the
shared connection table is kept current here, so every process can answer queries about it. No user code
runs in a reactor thread.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ..constants import PROTOCOL_EVENTS_FROM, EventType
from ..ipc import codec
from ..ipc.files import FileInbox
from ..ipc.pipes import PipeWriter, read_datagrams
from ..ipc.shm import Conn, Slot, SlotCounters
from ..log import logger
from ..port import Port, PortHandlers
from ..protocol.sendfile import open_file
from .connection import Connection, adopt, expired_connections
from .dispatch import Dispatcher

if TYPE_CHECKING:
    from .context import Runtime

_now: Final = time.time

THROTTLE_FIRST: Final = 0.001
THROTTLE_LAST: Final = 1.024  # max_queued_bytes: Swoole's back-off, in seconds
# Plain ints for the per-package path: an attribute of a class or an enum costs more to read.
_RECV_DATA: Final = int(EventType.RECV_DATA)
_SEND_DATA: Final = int(EventType.SEND_DATA)
_MAX_PAYLOAD: Final = codec.MAX_PAYLOAD
_LAST_RECV_TIME: Final = Conn.LAST_RECV_TIME
_LAST_SEND_TIME: Final = Conn.LAST_SEND_TIME
_LAST_DISPATCH_TIME: Final = Conn.LAST_DISPATCH_TIME
_RECV_QUEUED_BYTES: Final = Conn.RECV_QUEUED_BYTES
_SEND_QUEUED_BYTES: Final = Conn.SEND_QUEUED_BYTES


class ReactorConnection(Connection):
    """A connection owned by one of PROCESS mode's reactor threads: each package is sent to a worker."""

    __slots__ = (
        "base",
        "table_d",
        "table_q",
        "counters",
        "full",
        "close_force",
        "close_flush",
        "throttled",
        "server_fd",
        "worker_writer",
    )

    def __init__(self, reactor: ReactorThread, port: Port, handlers: PortHandlers, session_id: int, base: int) -> None:
        super().__init__(reactor, port, handlers, reactor.reactor_id)
        self.session_id = session_id
        self.base = base
        self.table_d = reactor.table_d
        self.table_q = reactor.table_q
        self.server_fd = port.fileno
        self.counters = reactor.counters
        # The pipe of the worker that gets every package of this connection, when nothing has to be decided
        # per package (raw packages, dispatch_mode 2, no max_queued_bytes): data_received sends them itself.
        self.worker_writer: PipeWriter | None = None
        self.full = False  # above the high watermark: BufferFull was sent
        self.close_force = False  # idle: its worker runs Close, then the reactor drops its output and closes
        self.close_flush = False  # ... or, for a close the protocol asked for, flushes the output first
        self.throttled = False  # max_queued_bytes: reading stopped until its worker catches up

    def data_received(self, data: bytes) -> None:
        if self.paused:
            self.hold(data)
            return
        counters = self.counters
        if not counters.pending:
            counters.moved()
        now = counters.now
        self.last_recv_time = now
        base = self.base
        table_d = self.table_d
        table_d[base + _LAST_RECV_TIME] = now
        counters.recv_bytes += len(data)
        writer = self.worker_writer
        if writer is not None and len(data) <= _MAX_PAYLOAD:
            # ReactorThread.dispatch, inlined for the commonest case: the per-package path of PROCESS mode.
            table_d[base + _LAST_DISPATCH_TIME] = now
            self.table_q[base + _RECV_QUEUED_BYTES] += len(data)
            counters.dispatch += 1
            if not writer.write(codec.pack(_RECV_DATA, self.session_id, self.reactor_id, self.server_fd, now, data)):
                reactor: Any = self.reactor
                reactor.dropped(self.socket_fd % reactor.worker_num, _RECV_DATA, self.session_id)
            return
        if self.framer is None:
            self.reactor.dispatch(self, data, now)  # type: ignore[attr-defined]
            return
        for package in self.split(data):
            self.reactor.dispatch(self, package, now)  # type: ignore[attr-defined]

    def pause_writing(self) -> None:
        super().pause_writing()
        self.reactor.buffer_event(self, EventType.BUFFER_FULL)  # type: ignore[attr-defined]

    def resume_writing(self) -> None:
        super().resume_writing()
        self.reactor.buffer_event(self, EventType.BUFFER_EMPTY)  # type: ignore[attr-defined]


class ReactorThread:
    """One reactor thread of the master: an event loop owning the connections with ``fd % reactor_num == id``,
    the UDP ports likewise, and the master ends of the worker pipes with ``worker_id % reactor_num == id``.

    Everything here runs in the thread's own loop; other threads reach it with ``call_soon_threadsafe``.
    """

    def __init__(self, rt: Runtime, reactor_id: int, handlers: dict[int, PortHandlers]) -> None:
        self.rt = rt
        self.reactor_id = reactor_id
        setting = rt.setting
        self.reactor_num: int = setting["reactor_num"]
        self.worker_num: int = setting["worker_num"]
        self.shared = rt.shared
        self.table = self.shared.table
        self.table_q, self.table_d = self.table.q, self.table.d
        self.slot = self.shared.reactor_slot(reactor_id)
        self.handlers = handlers
        self.dispatcher = Dispatcher(setting, self.shared, rt.server)
        self._fd_modulo = self.dispatcher.mode == 2 and self.dispatcher.func is None
        self.max_queued_bytes: int = setting["max_queued_bytes"]
        self.buffer_limit: int = setting["socket_buffer_size"]
        self.high_watermark = setting["buffer_high_watermark"] or self.buffer_limit * 4 // 5
        self.low_watermark = setting["buffer_low_watermark"]
        self.delay_receive: bool = setting["enable_delay_receive"]
        self.heartbeat_interval: int = setting["heartbeat_check_interval"]
        self.connections: dict[int, ReactorConnection] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ready = threading.Event()
        self._writers: list[PipeWriter] = []  # by worker id
        self._files: FileInbox | None = None  # the open files workers pass for sendfile
        self._reassembler = codec.Reassembler()
        self._msg_ids = codec.MessageIds(os.getpid(), reactor_id + 1)
        self._closing = False
        self._reading_stopped = False  # shutting down: see stop_reading
        self.thread = threading.Thread(target=self._run, name=f"reactor {reactor_id}", daemon=True)

    # Thread ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        rt = self.rt
        rt.pin_cpu(self.reactor_id)
        loop = self.loop = rt.new_loop()
        asyncio.set_event_loop(loop)
        self.counters = SlotCounters(self.slot, loop)
        pipes = rt.pipes
        assert pipes is not None  # PROCESS mode always has a manager, hence pipes
        self._writers = [PipeWriter(loop, master_end) for master_end in pipes.master_ends[: self.worker_num]]
        files = self._files = FileInbox(pipes.file_readers[self.reactor_id])
        for worker_id in range(self.worker_num):
            if worker_id % self.reactor_num == self.reactor_id:
                master_end = pipes.master_ends[worker_id]
                loop.add_reader(master_end.fileno(), self._read_pipe, master_end)
        for port in rt.ports:
            if not port.is_stream and port.fileno % self.reactor_num == self.reactor_id:
                loop.add_reader(port.fileno, self._read_datagrams, port)
        if self.heartbeat_interval:
            # Swoole runs one heartbeat thread over every connection; a timer in each reactor's own loop
            # does the same without locking, each over the connections it owns.
            loop.call_later(self.heartbeat_interval, self._heartbeat)
        self.ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()
            files.close()

    def call(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` in this reactor's thread."""
        self.loop.call_soon_threadsafe(callback, *args)  # type: ignore[union-attr]

    # Connections ----------------------------------------------------------------------------------------

    def adopt(self, sock: socket.socket, port: Port, session_id: int, base: int) -> None:
        """Take over a connection the master accepted (runs in this thread); TLS: the handshake runs here."""
        handlers = self.handlers[port.fileno]
        if port.app_protocol is not None:
            conn = port.app_protocol.reactor_connection(self, port, handlers, session_id, base)
        else:
            conn = ReactorConnection(self, port, handlers, session_id, base)
        adopt(self.loop, sock, conn)  # type: ignore[arg-type]

    def admit(self, conn: Connection) -> bool:
        return True  # the master admitted it (max_connection) before handing it over

    def on_handshake_failed(self, conn: Connection) -> None:
        assert isinstance(conn, ReactorConnection)
        self.slot[Slot.ABORT] += 1
        self._free(conn)  # no worker ever heard of it

    def on_connect(self, conn: Connection) -> None:
        assert isinstance(conn, ReactorConnection)
        self.connections[conn.session_id] = conn
        self.table_q[conn.base + Conn.READY] = 1
        conn.transport.set_write_buffer_limits(high=self.high_watermark, low=self.low_watermark)  # type: ignore[union-attr]
        conn.writable = True
        if self._fd_modulo and conn.framer is None and not self.max_queued_bytes:
            conn.worker_writer = self._writers[conn.socket_fd % self.worker_num]
        if self._closing:
            conn.shut(reset=False)
            return
        if self.delay_receive or self._reading_stopped:
            conn.set_reading(False)
        if self.dispatcher.notify and conn.handlers.connect is not None:
            # The same dispatch rule as data (dispatch_func sees type CONNECT; mode 8 sticks the connection here).
            worker_id = self.dispatcher.worker_for(conn.base, conn.socket_fd, EventType.CONNECT)
            if worker_id >= 0:
                # A TLS client's certificate travels with Connect; only that worker keeps it, as in Swoole.
                certificate = conn.client_certificate().encode() if conn.port.ssl_context is not None else b""
                self.to_worker(
                    worker_id,
                    codec.Message(
                        EventType.CONNECT,
                        conn.session_id,
                        self.reactor_id,
                        conn.port.fileno,
                        time=conn.connect_time,
                        data=certificate,
                    ),
                )

    def dispatch(self, conn: ReactorConnection, data: bytes, now: float) -> None:
        if self._fd_modulo:  # the default mode, decided here without a call: this is the hot path
            worker_id = conn.socket_fd % self.worker_num
        else:
            worker_id = self.dispatcher.worker_for(conn.base, conn.socket_fd, EventType.RECV_DATA, data)
            if worker_id < 0:
                return
        base = conn.base
        self.table_d[base + _LAST_DISPATCH_TIME] = now
        self.table_q[base + _RECV_QUEUED_BYTES] += len(data)
        self.counters.dispatch += 1  # marked moved by data_received
        if len(data) <= codec.MAX_PAYLOAD:
            datagram = codec.pack(_RECV_DATA, conn.session_id, self.reactor_id, conn.port.fileno, now, data)
            if not self._writers[worker_id].write(datagram):
                self.dropped(worker_id, _RECV_DATA, conn.session_id)
        else:
            self.to_worker(
                worker_id,
                codec.Message(EventType.RECV_DATA, conn.session_id, self.reactor_id, conn.port.fileno, 0, now, data),
            )
        if self.max_queued_bytes and not conn.throttled and self._queued(conn) > self.max_queued_bytes:
            conn.throttled = True
            conn.transport.pause_reading()  # type: ignore[union-attr]
            self.loop.call_later(THROTTLE_FIRST, self._retry_reading, conn, THROTTLE_FIRST)  # type: ignore[union-attr]

    def _queued(self, conn: ReactorConnection) -> int:
        """Bytes of this connection sent to a worker that the worker has not taken yet."""
        q = self.table.q
        return q[conn.base + Conn.RECV_QUEUED_BYTES] - q[conn.base + Conn.RECV_DONE_BYTES]

    def _retry_reading(self, conn: ReactorConnection, delay: float) -> None:
        """max_queued_bytes: read again once the worker has caught up; look again 1, 2, 4 ... 1024 ms on."""
        if conn.closed or conn.transport is None or conn.transport.is_closing():
            return
        if self._queued(conn) > self.max_queued_bytes:
            delay = min(delay * 2, THROTTLE_LAST)
            self.loop.call_later(delay, self._retry_reading, conn, delay)  # type: ignore[union-attr]
            return
        conn.throttled = False
        if not conn.paused:
            conn.transport.resume_reading()

    def buffer_event(self, conn: ReactorConnection, kind: EventType) -> None:
        full = kind == EventType.BUFFER_FULL
        if not full:
            self.table.q[conn.base + Conn.OVERFLOW] = 0  # drained: send() is accepted again
            self.table.q[conn.base + Conn.SEND_QUEUED_BYTES] = conn.send_queued_bytes()
        if full == conn.full:
            return
        conn.full = full
        callback = conn.handlers.buffer_full if full else conn.handlers.buffer_empty
        if self.dispatcher.notify and callback is not None:
            self.to_worker(
                self.dispatcher.owner_of(conn.base, conn.socket_fd),
                codec.Message(kind, conn.session_id, self.reactor_id, conn.port.fileno),
            )

    def on_disconnect(self, conn: Connection, exc: Exception | None) -> None:
        assert isinstance(conn, ReactorConnection)
        q = self.table.q
        if q[conn.base + Conn.SESSION_ID] == conn.session_id:
            q[conn.base + Conn.CLOSE_ERRNO] = conn.close_errno
        if conn.close_force:
            # Its worker's Close is running: the record stays until the worker answers.
            conn.peer_closed = True
            q[conn.base + Conn.PEER_CLOSED] = 1
            return
        if conn.closed or q[conn.base + Conn.CLOSED]:
            self._release(conn)  # the server closed it: its Close callback ran in the worker already
            return
        conn.mark_closed(by_peer=True)
        q[conn.base + Conn.PEER_CLOSED] = 1
        if not self._notify_close(conn):
            self._release(conn)

    def _notify_close(self, conn: ReactorConnection) -> bool:
        """Send CLOSE to the worker that runs the session's Close (reactor_id >= 0); False if none does. The
        record stays until the worker answers, so that get_client_info works inside Close."""
        if not self.dispatcher.notify or conn.handlers.close is None or self._closing:
            return False
        worker_id = self.dispatcher.worker_for(conn.base, conn.socket_fd, EventType.CLOSE)
        if worker_id < 0:
            return False
        self.to_worker(worker_id, codec.Message(EventType.CLOSE, conn.session_id, self.reactor_id, conn.port.fileno))
        return True

    def force_close(self, conn: Connection, flush: bool = False) -> None:
        """Close a connection from the reactor (heartbeat, max_idle_time, a protocol's own close): its worker
        runs Close with this reactor's id, then the socket is closed at once, dropping any output still pending,
        or once that output is out with ``flush`` (an error response, a close frame)."""
        assert isinstance(conn, ReactorConnection)
        if conn.closed:
            if not conn.peer_closed and not conn.close_force:
                conn.shut(reset=True)  # closed by the server and still flushing to a client that stalled
            return
        if self.table.q[conn.base + Conn.CLOSED]:
            return  # a worker is closing it: its CLOSE is on the way
        conn.set_reading(False)
        conn.mark_closed(by_peer=False)
        conn.close_force = True
        conn.close_flush = flush
        if not self._notify_close(conn):
            conn.close_force = False
            conn.shut(reset=not flush)

    def _heartbeat(self) -> None:
        now = _now()
        candidates = [conn for conn in self.connections.values() if not conn.peer_closed and not conn.close_force]
        for conn in expired_connections(candidates, now):
            logger.info(
                "session %d idle for %.1f s (heartbeat_idle_time): closed", conn.session_id, now - conn.last_recv_time
            )
            self.force_close(conn)
        self.loop.call_later(self.heartbeat_interval, self._heartbeat)  # type: ignore[union-attr]

    def _release(self, conn: ReactorConnection) -> None:
        if self.connections.pop(conn.session_id, None) is not None:
            self._free(conn)

    def _free(self, conn: ReactorConnection) -> None:
        """Forget a session: its record, its dispatch state and its place in the counters."""
        self.dispatcher.release(conn.base)
        self.table.release(conn.session_id)
        if self.rt.cluster is not None:
            self.rt.cluster.session_closed(conn.session_id)
        self.slot[Slot.CLOSE] += 1
        self.slot[Slot.CONNECTION_NUM] -= 1

    # Pipes ----------------------------------------------------------------------------------------------

    def to_worker(self, worker_id: int, message: codec.Message) -> None:
        if not self._writers[worker_id].write_all(codec.encode(message, self._msg_ids())):
            self.dropped(worker_id, message.type, message.fd)

    def dropped(self, worker_id: int, event_type: int, session_id: int) -> None:
        self.slot[Slot.PIPE_DROPPED] += 1
        logger.warning("worker %d does not keep up: event %d of session %d dropped", worker_id, event_type, session_id)

    def _read_pipe(self, sock: socket.socket) -> None:
        read_datagrams(sock, self._reassembler, self.handle, _SEND_DATA, self._send_data)

    def _send_data(self, session_id: int, worker_id: int, server_fd: int, time: float, data: bytes) -> None:
        """A worker's send() of one datagram: the per-package path, called without a Message."""
        conn = self.connections.get(session_id)
        if conn is None or not conn.writable:
            if conn is not None and not conn.closed:
                self.write(conn, data)  # behind a file, or over the high watermark
            return
        counters = self.counters
        if not counters.pending:
            counters.moved()
        conn.last_send_time = counters.now  # conn.write, inlined: no file queue to mind
        conn.transport.write(data)  # type: ignore[union-attr]
        self._written(conn)

    def handle(self, message: codec.Message) -> None:
        """A request from a worker (or from user code in the master) about one of this reactor's sessions."""
        kind = message.type
        conn = self.connections.get(message.fd)
        if kind == EventType.SEND_DATA:
            if conn is not None and not conn.closed:
                self.write(conn, message.data)
        elif kind == EventType.CLOSE:
            if conn is not None:
                if conn.peer_closed:
                    self._release(conn)  # the worker's answer to our CLOSE: its Close callback is over
                elif conn.close_force:
                    conn.close_force = False  # the worker's Close is over: close now
                    conn.shut(reset=not conn.close_flush)
                else:
                    conn.mark_closed(by_peer=False)
                    conn.shut(reset=bool(message.ext_flags))
        elif kind in (EventType.PAUSE_RECV, EventType.RESUME_RECV):
            if conn is not None and not conn.closed:
                conn.set_reading(kind == EventType.RESUME_RECV)
        elif kind == EventType.SEND_FILE:
            self._send_file(conn, message)
        elif kind >= PROTOCOL_EVENTS_FROM:
            if conn is not None:
                conn.protocol_message(message)
        else:
            logger.warning("unexpected message type %d from a worker", kind)

    def _send_file(self, conn: ReactorConnection | None, message: codec.Message) -> None:
        try:
            path, offset, length, token = codec.unpack_sendfile(message.data)
        except codec.IpcError as exc:
            logger.warning("malformed sendfile request dropped: %s", exc)
            return
        # The file the worker opened and passed (files.py), claimed even for a connection gone meanwhile.
        file_fd = self._files.claim(token) if token and self._files is not None else -1
        if conn is None or conn.closed:
            if file_fd >= 0:
                os.close(file_fd)
            return
        try:
            conn.send_file(file_fd if file_fd >= 0 else open_file(path), offset, length)
        except OSError as exc:
            # Not passed (the channel was full) and unreadable now, or the socket cannot be watched: it cannot
            # follow what was sent before it (an HTTP head that promised its length); only the close tells so.
            logger.warning("sendfile to session %d: cannot send %s: %s; connection closed", conn.session_id, path,
                           exc.strerror)  # fmt: skip
            self.force_close(conn, flush=True)

    def write(self, conn: ReactorConnection, data: bytes) -> None:
        conn.write(data)
        self._written(conn)

    def _written(self, conn: ReactorConnection) -> None:
        """Publish a write: its time, the bytes still queued, and an overflow if the buffer is now past
        socket_buffer_size (the write itself may have crossed the high watermark: pause_writing runs inside
        transport.write)."""
        queued = conn.transport.get_write_buffer_size()  # type: ignore[union-attr]
        base = conn.base
        self.table_d[base + _LAST_SEND_TIME] = conn.last_send_time
        self.table_q[base + _SEND_QUEUED_BYTES] = queued
        if conn.full and queued >= self.buffer_limit:
            self.table_q[base + Conn.OVERFLOW] = 1
            logger.warning("output buffer of session %d overflows (%d bytes)", conn.session_id, self.buffer_limit)

    def _read_datagrams(self, port: Port) -> None:
        for data, host, remote_port in port.receive_datagrams():
            counters = self.counters
            counters.recv_bytes += len(data)
            if not counters.pending:
                counters.moved()
            worker_id = self.dispatcher.worker_for_datagram(host)
            if worker_id < 0:
                continue
            counters.dispatch += 1
            self.to_worker(
                worker_id,
                codec.Message(
                    EventType.RECV_DGRAM,
                    0,
                    self.reactor_id,
                    port.fileno,
                    0,
                    _now(),
                    codec.pack_datagram(host, remote_port, data),
                ),
            )

    # Shutdown -------------------------------------------------------------------------------------------

    def stop_reading(self, done: threading.Event) -> None:
        """Shutdown's first step: read nothing more, so no new request starts, while what the workers still
        send (the answers to the requests they have) goes out until they have stopped."""
        for conn in self.connections.values():
            conn.set_reading(False)
        self._reading_stopped = True
        done.set()

    def shutdown(self, done: threading.Event) -> None:
        """Stop reading, flush and close every connection (workers are not told), then end the loop."""
        self._closing = True
        loop = self.loop
        assert loop is not None
        for conn in list(self.connections.values()):
            conn.mark_closed(by_peer=False)
            conn.shut(reset=False)
        deadline = loop.time() + self.rt.setting["max_wait_time"]

        def wait() -> None:
            if self.connections and loop.time() < deadline:
                loop.call_later(0.01, wait)
                return
            for conn in list(self.connections.values()):
                conn.shut(reset=True)
            loop.stop()
            done.set()

        wait()
