"""The factory: where a send, close or query about a session goes, from whichever process asks.

Swoole's name for the piece that decides a package's journey; one class per run mode, same methods.

* BASE: a session lives in the worker that accepted it. The owner acts at once; any other process forwards
  the request over the owner's worker pipe. Queries see the calling worker's own sessions (as in Swoole).
* PROCESS: a session lives in a reactor thread of the master, and its record in the shared connection
  table, so queries work from every process. Sends and closes travel to the owning reactor over a worker
  pipe that this reactor reads (Swoole's ``reactor_id + (session_id % reactor_pipe_num) * reactor_num``).

Actions return 0 or one of Swoole's error codes; the Server turns that into True/False and
``get_last_error()``.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any, Final

from ..constants import ErrorCode, EventType
from ..ipc import codec, files, pipes
from ..ipc.shm import Conn
from ..log import logger
from ..protocol.sendfile import open_file
from .connection import SessionFacts, client_info, expired_connections
from .dispatch import HASH_MODES, Dispatcher

if TYPE_CHECKING:
    from .context import Runtime

_NOT_EXIST: Final = int(ErrorCode.SESSION_NOT_EXIST)
_SEND_DATA: Final = int(EventType.SEND_DATA)
# Plain ints for send(), the per-package path.
_CONN_SIZE: Final = Conn.SIZE
_SESSION_ID: Final = Conn.SESSION_ID
_REACTOR_ID: Final = Conn.REACTOR_ID
_CLOSED: Final = Conn.CLOSED
_PEER_CLOSED: Final = Conn.PEER_CLOSED
_OVERFLOW: Final = Conn.OVERFLOW


class _Factory:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def _write(self, sock: socket.socket, message: codec.Message) -> int:
        """Write a message to a pipe end: through this process's loop if it has one, else blocking."""
        rt = self.rt
        worker = rt.worker
        if worker is not None:
            message.reactor_id = worker.worker_id
        datagrams = codec.encode(message, codec.next_msg_id())
        if worker is not None:
            written = worker.writer_for(sock).write_all(datagrams)
        else:
            written = pipes.send_blocking(sock, datagrams)
        return 0 if written else ErrorCode.SEND_TO_WORKER_TIMEOUT

    def stop_worker(self, worker_id: int) -> int:
        return self._write(self.rt.pipes.master_ends[worker_id], codec.Message(EventType.SHUTDOWN))  # type: ignore[union-attr]


class BaseFactory(_Factory):
    def send(self, session_id: int, data: bytes) -> int:
        worker = self.rt.worker
        if worker is not None:
            code = worker.send(session_id, data)
            if code != _NOT_EXIST:
                return code
        return self._forward(session_id, codec.Message(EventType.SEND_DATA, fd=session_id, data=data))

    def sendfile(self, session_id: int, path: str, offset: int, length: int) -> int:
        worker = self.rt.worker
        if worker is not None:
            code = worker.sendfile(session_id, path, offset, length)
            if code != _NOT_EXIST:
                return code
        return self._forward(
            session_id,
            codec.Message(EventType.SEND_FILE, fd=session_id, data=codec.pack_sendfile(path, offset, length, 0)),
        )

    def close(self, session_id: int, reset: bool) -> int:
        worker = self.rt.worker
        if worker is not None:
            code = worker.close(session_id, reset)
            if code != _NOT_EXIST:
                return code
        return self._forward(session_id, codec.Message(EventType.CLOSE_FORWARD, fd=session_id, ext_flags=int(reset)))

    def set_reading(self, session_id: int, reading: bool) -> int:
        worker = self.rt.worker
        if worker is not None and session_id in worker.connections:
            return worker.set_reading(session_id, reading)
        kind = EventType.RESUME_RECV if reading else EventType.PAUSE_RECV
        return self._forward(session_id, codec.Message(kind, fd=session_id))

    def to_owner(self, session_id: int, message: codec.Message) -> int:
        """Hand a protocol room's message about a session to where the session lives: this worker's own
        connection, or the owning worker."""
        worker = self.rt.worker
        conn = worker.connections.get(session_id) if worker is not None else None
        if conn is not None:
            conn.protocol_message(message)
            return 0
        return self._forward(session_id, message)

    def queued_output(self, session_id: int) -> int:
        """Bytes sent to a session that its client has not taken yet (0 for a session not of this worker)."""
        conn = self._conn(session_id)
        return conn.send_queued_bytes() if conn is not None else 0

    def protocol_flags(self, session_id: int) -> int:
        """A protocol room's flags of a live session (0: none), -1 for no such session."""
        return self.rt.shared.session_flags(session_id)

    def set_protocol_flags(self, session_id: int, flags: int) -> None:
        self.rt.shared.set_session_flags(session_id, flags)

    def _forward(self, session_id: int, message: codec.Message) -> int:
        rt = self.rt
        owner = rt.shared.session_owner(session_id)
        if owner < 0 or rt.pipes is None or rt.worker is not None and owner == rt.worker.worker_id:
            return _NOT_EXIST
        return self._write(rt.pipes.master_ends[owner], message)

    # Queries: the calling worker's own sessions ---------------------------------------------------------

    def _conn(self, session_id: int) -> Any:
        worker = self.rt.worker
        return worker.connections.get(session_id) if worker is not None else None

    def exist(self, session_id: int) -> bool:
        conn = self._conn(session_id)
        return conn is not None and not conn.closed

    def client_info(self, session_id: int) -> dict[str, Any] | None:
        conn = self._conn(session_id)
        return client_info(conn.port, conn.facts()) if conn is not None else None

    def live_sessions(self) -> list[tuple[int, int]]:
        """(socket fd, session id) of every open session visible here."""
        worker = self.rt.worker
        if worker is None:
            return []
        return [(c.socket_fd, c.session_id) for c in worker.connections.values() if not c.closed]

    def idle_sessions(self, now: float) -> list[int]:
        """The calling worker's open sessions that the heartbeat would close now."""
        worker = self.rt.worker
        if worker is None:
            return []
        return [
            conn.session_id
            for conn in expired_connections((c for c in worker.connections.values() if not c.closed), now)
        ]

    def bind(self, session_id: int, uid: int) -> int:
        conn = self._conn(session_id)
        if conn is None or conn.closed:
            return _NOT_EXIST
        if conn.uid:
            return ErrorCode.INVALID_PARAMS
        conn.uid = uid
        return 0


class ProcessFactory(_Factory):
    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        setting = rt.setting
        self.notify = setting["dispatch_mode"] in HASH_MODES or setting["enable_unsafe_event"]
        self.hash_mode = setting["dispatch_mode"] in HASH_MODES
        self.reactor_num: int = setting["reactor_num"]
        self.reactor_pipe_num = max(1, setting["worker_num"] // self.reactor_num)
        self.output_limit: int = setting["buffer_output_size"]
        self.dispatcher = Dispatcher(setting, rt.shared, rt.server)
        self.table = rt.shared.table
        self.table_q, self.table_slots = self.table.q, self.table.size
        self.ports = {port.fileno: port for port in rt.ports}

    def _writable_record(self, session_id: int) -> tuple[int, int]:
        """(record, 0) for a session that can be sent to; (-1, error code) otherwise."""
        base = self.table.find(session_id)
        if base < 0:
            return -1, _NOT_EXIST
        q = self.table.q
        if q[base + Conn.CLOSED]:
            return -1, ErrorCode.SESSION_CLOSED
        if q[base + Conn.PEER_CLOSED]:
            return -1, ErrorCode.SESSION_CLOSED_BY_CLIENT
        return base, 0

    def send(self, session_id: int, data: bytes) -> int:
        q = self.table_q
        base = (session_id % self.table_slots) * _CONN_SIZE  # table.find, inlined: this is the per-package path
        if (
            session_id <= 0
            or q[base + _SESSION_ID] != session_id
            or q[base + _CLOSED]
            or q[base + _PEER_CLOSED]
            or q[base + _OVERFLOW]
            or len(data) > self.output_limit
        ):
            return self._refusal(session_id, len(data))
        reactor_id = q[base + _REACTOR_ID]
        worker = self.rt.worker
        if worker is not None and len(data) <= codec.MAX_PAYLOAD:
            # A worker's send: one datagram, packed without a Message.
            writer = worker.reactor_writers[reactor_id + (session_id % self.reactor_pipe_num) * self.reactor_num]
            datagram = codec.pack(_SEND_DATA, session_id, worker.worker_id, 0, 0.0, data)
            return 0 if writer.write(datagram) else ErrorCode.SEND_TO_WORKER_TIMEOUT
        return self.to_reactor(session_id, reactor_id, codec.Message(EventType.SEND_DATA, session_id, data=data))

    def _refusal(self, session_id: int, size: int) -> int:
        """Why send() refuses: the session is gone or closing, its buffer overflows, or the data is too big."""
        base, code = self._writable_record(session_id)
        if code:
            return code
        if size > self.output_limit:
            logger.warning("send: %d bytes exceed buffer_output_size %d", size, self.output_limit)
            return ErrorCode.DATA_LENGTH_TOO_LARGE
        return ErrorCode.OUTPUT_BUFFER_OVERFLOW

    def sendfile(self, session_id: int, path: str, offset: int, length: int) -> int:
        """The owning reactor sends the file (from the master's side of the socket), opened here and passed to
        it, so that what the caller does to the file next (delete it, write it) cannot change what is sent."""
        if self.rt.master is not None:
            logger.warning("sendfile cannot be used in the master process")
            return ErrorCode.SEND_IN_MASTER
        base, code = self._writable_record(session_id)
        if code:
            return code
        try:
            file_fd = open_file(path)
        except OSError as exc:
            logger.warning("sendfile to session %d: cannot open %s: %s", session_id, path, exc.strerror)
            return exc.errno or ErrorCode.INVALID_PARAMS
        reactor_id = self.table.q[base + Conn.REACTOR_ID]
        token = files.new_token()
        try:
            if not files.pass_file(self.rt.pipes.file_writers[reactor_id], token, file_fd):  # type: ignore[union-attr]
                token = 0  # the channel is full: the reactor opens the path itself
        finally:
            os.close(file_fd)  # the passed duplicate lives on in the channel
        return self.to_reactor(
            session_id,
            reactor_id,
            codec.Message(EventType.SEND_FILE, session_id, data=codec.pack_sendfile(path, offset, length, token)),
        )

    def to_owner(self, session_id: int, message: codec.Message) -> int:
        """Hand a protocol room's message about a session to the reactor thread that owns its connection."""
        base = self.table.find(session_id)
        if base < 0:
            return _NOT_EXIST
        return self.to_reactor(session_id, self.table.q[base + Conn.REACTOR_ID], message)

    def queued_output(self, session_id: int) -> int:
        """Bytes sent to a session that its client has not taken yet: what its reactor last published, plus, in
        a worker, what the pipe to that reactor has not delivered yet (the reactor publishes only what it has
        written, so a fast sender would otherwise outrun the figure)."""
        base = self.table.find(session_id)
        if base < 0:
            return 0
        q = self.table.q
        queued = q[base + Conn.SEND_QUEUED_BYTES]
        worker = self.rt.worker
        if worker is not None:
            writer = worker.reactor_writers[
                q[base + Conn.REACTOR_ID] + (session_id % self.reactor_pipe_num) * self.reactor_num
            ]
            queued += writer.unread_bytes()
        return int(queued)

    def protocol_flags(self, session_id: int) -> int:
        """A protocol room's flags of a live session (0: none), -1 for no such session or one closing."""
        base = self.table.find(session_id)
        q = self.table.q
        if base < 0 or q[base + Conn.CLOSED] or q[base + Conn.PEER_CLOSED]:
            return -1
        return q[base + Conn.PROTOCOL_FLAGS]

    def set_protocol_flags(self, session_id: int, flags: int) -> None:
        base = self.table.find(session_id)
        if base >= 0:
            self.table.q[base + Conn.PROTOCOL_FLAGS] = flags

    def to_reactor(self, session_id: int, reactor_id: int, message: codec.Message) -> int:
        rt = self.rt
        master = rt.master
        if master is not None:  # user code in the master: hand it to the reactor thread directly
            reactor = master.reactors[reactor_id]
            reactor.call(reactor.handle, message)
            return 0
        index = reactor_id + (session_id % self.reactor_pipe_num) * self.reactor_num
        return self._write(rt.pipes.worker_ends[index], message)  # type: ignore[union-attr]

    def close(self, session_id: int, reset: bool) -> int:
        base = self.table.find(session_id)
        if base < 0:
            return _NOT_EXIST
        worker = self.rt.worker
        if worker is not None and session_id in worker.closing_sessions:
            return ErrorCode.SESSION_CLOSING
        q = self.table.q
        if q[base + Conn.CLOSED] and not reset:
            return ErrorCode.SESSION_CLOSED
        owner = self.dispatcher.owner_of(base, q[base + Conn.SOCKET_FD])
        if worker is not None and (worker.worker_id == owner or not self.hash_mode):
            worker.close_session(session_id, base, reset)
            return 0
        # Close runs in the worker that owns the session's events; ask it.
        return self._write(
            self.rt.pipes.master_ends[owner],  # type: ignore[union-attr]
            codec.Message(EventType.CLOSE_FORWARD, session_id, ext_flags=int(reset)),
        )

    def set_reading(self, session_id: int, reading: bool) -> int:
        base = self.table.find(session_id)
        if base < 0:
            return _NOT_EXIST
        kind = EventType.RESUME_RECV if reading else EventType.PAUSE_RECV
        return self.to_reactor(session_id, self.table.q[base + Conn.REACTOR_ID], codec.Message(kind, session_id))

    # Queries: every session of the server, from the shared connection table ------------------------------

    def _ready_record(self, session_id: int) -> int:
        """The record of a session that queries may show (its TLS handshake is over), or -1."""
        base = self.table.find(session_id)
        return base if base >= 0 and self.table.q[base + Conn.READY] else -1

    def exist(self, session_id: int) -> bool:
        base = self._ready_record(session_id)
        q = self.table.q
        return base >= 0 and not q[base + Conn.CLOSED] and not q[base + Conn.PEER_CLOSED]

    def client_info(self, session_id: int) -> dict[str, Any] | None:
        table = self.table
        base = self._ready_record(session_id)
        if base < 0:
            return None
        q, d = table.q, table.d
        mode = self.dispatcher.mode
        worker = self.rt.worker
        facts = SessionFacts(
            socket_fd=q[base + Conn.SOCKET_FD],
            remote_ip=table.remote_ip(base),
            remote_port=q[base + Conn.REMOTE_PORT],
            reactor_id=q[base + Conn.REACTOR_ID],
            connect_time=d[base + Conn.CONNECT_TIME],
            last_recv_time=d[base + Conn.LAST_RECV_TIME],
            last_send_time=d[base + Conn.LAST_SEND_TIME],
            last_dispatch_time=d[base + Conn.LAST_DISPATCH_TIME],
            close_errno=q[base + Conn.CLOSE_ERRNO],
            recv_queued_bytes=max(0, q[base + Conn.RECV_QUEUED_BYTES] - q[base + Conn.RECV_DONE_BYTES]),
            send_queued_bytes=q[base + Conn.SEND_QUEUED_BYTES],
            uid=q[base + Conn.UID] if q[base + Conn.UID] or mode == 5 else None,
            worker_id=q[base + Conn.WORKER_ID] if q[base + Conn.WORKER_ID] >= 0 and mode == 8 else None,
            # Only the worker where Connect ran has the certificate, as in Swoole.
            ssl_client_cert=worker.client_certs.get(session_id, "") if worker is not None else "",
        )
        return client_info(self.ports.get(q[base + Conn.SERVER_FD]), facts)

    def idle_sessions(self, now: float) -> list[int]:
        """Every open session that received nothing for longer than its port's heartbeat_idle_time."""
        q, d = self.table.q, self.table.d
        idle = []
        for base in range(0, self.table.size * Conn.SIZE, Conn.SIZE):
            session_id = q[base + Conn.SESSION_ID]
            if not session_id or not q[base + Conn.READY] or q[base + Conn.CLOSED] or q[base + Conn.PEER_CLOSED]:
                continue
            port = self.ports.get(q[base + Conn.SERVER_FD])
            idle_time = port.protocol["heartbeat_idle_time"] if port is not None else 0
            if idle_time and d[base + Conn.LAST_RECV_TIME] <= now - idle_time:
                idle.append(session_id)
        return idle

    def live_sessions(self) -> list[tuple[int, int]]:
        q = self.table.q
        live = []
        for base in range(0, self.table.size * Conn.SIZE, Conn.SIZE):
            session_id = q[base + Conn.SESSION_ID]
            if session_id and q[base + Conn.READY] and not q[base + Conn.CLOSED] and not q[base + Conn.PEER_CLOSED]:
                live.append((q[base + Conn.SOCKET_FD], session_id))
        return live

    def bind(self, session_id: int, uid: int) -> int:
        base = self.table.find(session_id)
        if base < 0 or self.table.q[base + Conn.CLOSED]:
            return _NOT_EXIST
        if self.table.q[base + Conn.UID]:
            return ErrorCode.INVALID_PARAMS
        self.table.q[base + Conn.UID] = uid
        return 0
