"""The reactor side of one connection: an asyncio protocol that is also the connection's record.

A ``Connection`` keeps the fields of Swoole's connection table (times, addresses, close state) and does the
socket-side actions; its owner, the :class:`Reactor`, is told of connects and disconnects. What received bytes
become is the business of the subclass each run mode defines (``data_received``): in BASE mode the event
worker's, which calls the user's Receive without any hop.

Close state, as in Swoole: ``closed`` flips once (the single Close callback is guarded by it), ``closing``
is true while a server-initiated Close callback runs, and the socket is closed only after that callback.

On a TLS port the transport runs the handshake first (``adopt``): ``connection_made``, hence Connect, only
comes after it, and a failed handshake is only counted (``on_handshake_failed``). A connection is *ready*
once its reactor has registered it (``on_connect``); one the reactor refuses (``admit``) never is, and has no
Receive and no Close. Idle connections (heartbeat, max_idle_time) are closed by the reactor's
``force_close``: the worker still runs Close with a reactor_id >= 0, and output still pending is dropped.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from ..ipc.codec import Message
from ..log import NOTICE, logger
from ..port import Port
from ..protocol.framing import FramingError
from ..protocol.sendfile import FileSender
from ..protocol.tls import peer_certificate_pem

_now: Final = time.time
_LINGER_RESET: Final = struct.pack("ii", 1, 0)
# Open files a connection may hold waiting behind the one being sent. An HTTP client that pipelines requests
# for files without reading would otherwise make the server hold a descriptor per request.
FILES_WAITING_MAX: Final = 4


class Reactor(Protocol):
    """What a connection needs from the event loop's owner."""

    def admit(self, conn: Connection) -> bool: ...  # False: refused (the reactor closed it and counted it)
    def on_connect(self, conn: Connection) -> None: ...  # the connection is ready
    def on_handshake_failed(self, conn: Connection) -> None: ...  # no worker ever heard of it
    def on_disconnect(self, conn: Connection, exc: Exception | None) -> None: ...
    def force_close(self, conn: Connection) -> None: ...  # heartbeat and max_idle_time


class Connection(asyncio.Protocol):
    __slots__ = (
        "reactor",
        "port",
        "reactor_id",
        "session_id",
        "transport",
        "socket_fd",
        "remote_ip",
        "remote_port",
        "connect_time",
        "last_recv_time",
        "last_send_time",
        "last_dispatch_time",
        "close_errno",
        "closed",
        "closing",
        "peer_closed",
        "uid",
        "paused",
        "overflow",
        "writable",
        "handlers",
        "framer",
        "ready",
        "idle_timer",
        "idle_queued",
        "file_queue",
        "file_sender",
        "files_waiting",
        "close_queued",
        "held",
        "held_output",
    )

    def __init__(self, reactor: Reactor, port: Port, handlers: Any, reactor_id: int) -> None:
        self.reactor = reactor
        self.port = port
        self.handlers = handlers  # the port's callbacks, as the owning reactor resolved them
        self.framer = port.new_framer()
        self.reactor_id = reactor_id
        self.session_id = 0
        self.transport: asyncio.Transport | None = None
        self.socket_fd = -1
        self.remote_ip = ""
        self.remote_port = 0
        self.connect_time = 0.0
        self.last_recv_time = 0.0
        self.last_send_time = 0.0
        self.last_dispatch_time = 0.0
        self.close_errno = 0
        self.closed = False
        self.closing = False
        self.peer_closed = False
        self.uid = 0
        self.paused = False
        self.held: deque[bytes] | None = None  # read while paused, for the resume (see set_reading)
        self.overflow = False  # the output buffer passed socket_buffer_size: send() fails until it drains
        # Ready, open, not overflowing, no file being sent, no output held: what send()'s fast path checks.
        self.writable = False
        self.ready = False
        self.idle_timer: asyncio.TimerHandle | None = None  # max_idle_time
        self.idle_queued = 0  # output queued at the last max_idle_time check, to see it move
        # While a file is being sent, later output waits here in order: bytes, or (open file, offset, length).
        self.file_queue: deque[bytes | tuple[int, int, int]] | None = None
        self.files_waiting = 0  # open files in file_queue: HTTP serves no further request beyond FILES_WAITING_MAX
        self.file_sender: FileSender | None = None
        self.close_queued = False  # close once the file queue is through
        self.held_output: list[bytes] | None = None  # hold_output's bytes: they leave before any later ones

    # asyncio.Protocol ----------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        self.socket_fd = sock.fileno() if sock is not None else -1
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.remote_ip, self.remote_port = peer[0], peer[1]
        elif peer:
            self.remote_ip = peer
        # As in Swoole, a client that never sends is idle since it connected.
        self.connect_time = self.last_recv_time = _now()
        if not self.reactor.admit(self):
            return
        if sock is not None:
            self.port.configure_accepted(sock)
        self.ready = True
        max_idle_time = self.port.protocol["max_idle_time"]
        if max_idle_time:
            self.idle_timer = asyncio.get_running_loop().call_later(max_idle_time, self._check_idle)
        self.reactor.on_connect(self)

    def eof_received(self) -> bool:
        # A half-closed peer is a closed peer, as in Swoole; the transport closes itself after this, so output
        # held for the end of the pass (an answer to the request that came before the EOF) goes now.
        self.flush()
        return False

    def split(self, data: bytes) -> list[bytes]:
        """The packages a read completes. A framing error (oversized or malformed package) closes only this
        connection, logged; the packages before the bad bytes are still delivered, as in Swoole."""
        try:
            return self.framer.feed(data)  # type: ignore[union-attr]
        except FramingError as exc:
            logger.warning(
                "session %d from %s: %s [%d]; connection closed", self.session_id, self.remote_ip, exc, exc.code
            )
            self.close_errno = exc.code
            if self.transport is not None:
                self.transport.close()
            return exc.packages

    def pause_writing(self) -> None:
        self.overflow = True
        self.writable = False

    def resume_writing(self) -> None:
        self.overflow = False
        self.writable = not self.closed and self.file_queue is None and self.held_output is None

    def mark_closed(self, by_peer: bool) -> None:
        self.closed = True
        self.peer_closed = by_peer
        self.writable = False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        self._drop_files()
        self.held_output = None
        if not self.ready:
            return  # refused: the reactor has counted it already
        if exc is not None:
            self.close_errno = getattr(exc, "errno", 0) or 0
        self.reactor.on_disconnect(self, exc)

    # Actions -------------------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        self.last_send_time = _now()
        if self.file_queue is not None:
            self.file_queue.append(data)
            return
        held = self.held_output
        if held is not None:
            self.held_output = None
            held.append(data)
            data = b"".join(held)
            self.writable = not (self.closed or self.overflow)
        self.transport.write(data)  # type: ignore[union-attr]

    def hold_output(self, data: bytes) -> bool:
        """Keep ``data`` for the next ``write`` or ``flush`` rather than write it now: for output that may wait
        for the end of the loop pass, when the caller flushes it. True when nothing was held before (the
        caller's cue to arrange that flush)."""
        self.last_send_time = _now()
        if self.file_queue is not None:
            self.file_queue.append(data)  # it waits anyway, behind the file
            return False
        held = self.held_output
        if held is not None:
            held.append(data)
            return False
        self.held_output = [data]
        self.writable = False  # send()'s fast path would write past it
        return True

    def flush(self) -> None:
        """Write what ``hold_output`` kept, now."""
        held = self.held_output
        if held is None:
            return
        self.held_output = None
        transport = self.transport
        if transport is not None and not transport.is_closing():
            self.writable = not (self.closed or self.overflow)
            transport.write(held[0] if len(held) == 1 else b"".join(held))

    def send_file(self, file_fd: int, offset: int, length: int) -> None:
        """Queue ``length`` bytes of an open file from ``offset`` behind the output sent so far. The connection
        takes the descriptor over: it is closed once sent, or when the connection ends first. ``OSError`` if
        the socket cannot be watched (the descriptor is closed then too)."""
        if self.file_queue is not None:
            self.file_queue.append((file_fd, offset, length))
            self.files_waiting += 1
            return
        self.flush()
        self._send_file(file_fd, offset, length)
        self.file_queue = deque()
        self.writable = False

    def _send_file(self, file_fd: int, offset: int, length: int) -> None:
        assert self.transport is not None
        self.file_sender = FileSender(
            asyncio.get_running_loop(),
            self.transport,
            file_fd,
            offset,
            length,
            self._file_progress,
            self._file_done,
        )

    def _drop_files(self) -> None:
        """Stop the file being sent and close the ones queued behind it, with the output between them."""
        if self.file_sender is not None:
            self.file_sender.cancel()
            self.file_sender = None
        queue, self.file_queue = self.file_queue, None
        self.files_waiting = 0
        for item in queue or ():
            if type(item) is tuple:
                os.close(item[0])

    def _file_progress(self) -> None:
        self.last_send_time = _now()

    def _file_done(self, error: OSError | None) -> None:
        self.file_sender = None
        if error is not None:
            logger.warning("sendfile to session %d failed: %s; connection closed", self.session_id, error)
            self._drop_files()
            self.shut(reset=True)
            return
        queue = self.file_queue
        while queue:
            item = queue.popleft()
            if type(item) is bytes:
                self.transport.write(item)  # type: ignore[union-attr]
                continue
            self.files_waiting -= 1
            try:
                self._send_file(*item)
            except OSError as exc:
                self._file_done(exc)  # what was queued behind it cannot go out without it
                return
            self.file_started()
            return
        self.file_queue = None
        self.writable = not (self.closed or self.overflow)
        if self.close_queued:
            self.shut(reset=False)
        else:
            self.file_started()

    def file_started(self) -> None:
        """The file queue moved on (``files_waiting`` is one less, or the queue is empty): a protocol that
        stopped serving requests for too many waiting files may go on."""

    def shut(self, reset: bool) -> None:
        """Close the socket: after pending output is flushed, or at once with an RST when ``reset``."""
        self.flush()
        transport = self.transport
        if transport is None or transport.is_closing() and not reset:
            return
        if self.file_queue is not None:
            if not reset:
                self.close_queued = True  # the files and what waits behind them go first
                return
            self._drop_files()
        if reset:
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family != socket.AF_UNIX:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
                except OSError:
                    pass
            transport.abort()
        else:
            transport.close()

    def protocol_message(self, message: Message) -> None:
        """A message of a protocol room's own event types about this session (see ``port_protocol``)."""
        logger.warning(
            "message type %d for session %d, which speaks no protocol, dropped", message.type, self.session_id
        )

    def set_reading(self, reading: bool) -> None:
        """pause()/resume(): stop or restart reading from the socket.

        A pause holds even where the transport does not: uvloop starts reading right after
        ``connection_made`` whatever the protocol asked there (enable_delay_receive pauses there). What it
        delivers while paused is ``hold``-ed and handed on, in order, at the resume.
        """
        transport = self.transport
        if transport is None or self.paused != reading:
            return
        self.paused = not reading
        if not reading:
            transport.pause_reading()
        elif self.held is None:
            transport.resume_reading()
        else:
            asyncio.get_running_loop().call_soon(self._release_held)

    def hold(self, data: bytes) -> None:
        """``data_received`` while paused: keep the bytes, and stop the transport for real (it reads now)."""
        if self.held is None:
            self.held = deque()
        self.held.append(data)
        self.transport.pause_reading()  # type: ignore[union-attr]

    def _release_held(self) -> None:
        held = self.held
        while held and not self.paused and not self.closed:
            self.data_received(held.popleft())
        if held:
            return  # paused again, or closed
        self.held = None
        transport = self.transport
        if not self.paused and transport is not None and not transport.is_closing():
            transport.resume_reading()

    def heartbeat_expired(self, now: float) -> bool:
        """Nothing received (or nothing since it connected) for longer than its port's heartbeat_idle_time."""
        idle_time: int = self.port.protocol["heartbeat_idle_time"]
        return idle_time > 0 and self.last_recv_time <= now - idle_time

    def _check_idle(self) -> None:
        """max_idle_time: closed when neither receiving nor the output have moved for that long (also when
        the server closed it and its output stalls on the way out)."""
        self.idle_timer = None
        if self.peer_closed:
            return
        now = _now()
        queued = self.send_queued_bytes()
        if queued != self.idle_queued:
            self.last_send_time = now  # the output buffer moved since the last check
            self.idle_queued = queued
        max_idle_time = self.port.protocol["max_idle_time"]
        last_active = max(self.last_recv_time, self.last_send_time)
        if now - last_active >= max_idle_time:
            logger.info("session %d idle for %.3f s (max_idle_time): closed", self.session_id, now - last_active)
            self.reactor.force_close(self)
        else:
            self.idle_timer = asyncio.get_running_loop().call_later(last_active + max_idle_time - now, self._check_idle)

    def send_queued_bytes(self) -> int:
        transport = self.transport
        return transport.get_write_buffer_size() if transport is not None and not transport.is_closing() else 0

    def client_certificate(self) -> str:
        """The PEM certificate a TLS client presented ("" without one)."""
        transport = self.transport
        return peer_certificate_pem(transport.get_extra_info("ssl_object")) if transport is not None else ""

    def facts(self) -> SessionFacts:
        """What ``getClientInfo`` reports of this connection (BASE mode: the worker's own record)."""
        return SessionFacts(
            socket_fd=self.socket_fd,
            remote_ip=self.remote_ip,
            remote_port=self.remote_port,
            reactor_id=self.reactor_id,
            connect_time=self.connect_time,
            last_recv_time=self.last_recv_time,
            last_send_time=self.last_send_time,
            last_dispatch_time=self.last_dispatch_time,
            close_errno=self.close_errno,
            recv_queued_bytes=0,
            send_queued_bytes=self.send_queued_bytes(),
            uid=self.uid or None,
            ssl_client_cert=self.client_certificate() if self.port.ssl_context is not None else "",
        )


@dataclass(slots=True)
class SessionFacts:
    """One session as ``getClientInfo`` reports it, read from whichever store holds it: a BASE worker's
    ``Connection``, or PROCESS mode's shared connection table. ``None`` fields are left out of the answer."""

    socket_fd: int
    remote_ip: str
    remote_port: int
    reactor_id: int
    connect_time: float
    last_recv_time: float
    last_send_time: float
    last_dispatch_time: float
    close_errno: int
    recv_queued_bytes: int
    send_queued_bytes: int
    uid: int | None = None
    worker_id: int | None = None  # dispatch_mode 8: the worker the session sticks to
    ssl_client_cert: str = ""


def client_info(port: Port | None, facts: SessionFacts) -> dict[str, Any]:
    """The fields of Swoole's ``getClientInfo``, in both run modes."""
    info: dict[str, Any] = {
        "server_port": port.port if port is not None else 0,
        "server_fd": port.fileno if port is not None else -1,
        "socket_fd": facts.socket_fd,
        "socket_type": int(port.base_type) if port is not None else 0,
        "remote_port": facts.remote_port,
        "remote_ip": facts.remote_ip,
        "reactor_id": facts.reactor_id,
        "connect_time": int(facts.connect_time),
        "last_time": int(facts.last_recv_time),
        "last_recv_time": facts.last_recv_time,
        "last_send_time": facts.last_send_time,
        "last_dispatch_time": facts.last_dispatch_time,
        "close_errno": facts.close_errno,
        "recv_queued_bytes": facts.recv_queued_bytes,
        "send_queued_bytes": facts.send_queued_bytes,
    }
    if facts.uid is not None:
        info["uid"] = facts.uid
    if facts.worker_id is not None:
        info["worker_id"] = facts.worker_id
    if facts.ssl_client_cert:
        info["ssl_client_cert"] = facts.ssl_client_cert
    return info


def adopt(loop: asyncio.AbstractEventLoop, sock: socket.socket, conn: Connection) -> None:
    """Run ``conn`` on a socket accepted by hand. On a TLS port the handshake comes first, and the connection
    only gets ``connection_made`` after it; if it fails (or the transport cannot be made) the reactor's
    ``on_handshake_failed`` is told, the socket is closed, and no worker ever hears of it."""
    context = conn.port.ssl_context
    try:
        peer = "{}:{}".format(*sock.getpeername()[:2]) if sock.family != socket.AF_UNIX else "a unix socket"
    except OSError:
        peer = "a vanished peer"
    task = loop.create_task(
        loop.connect_accepted_socket(
            lambda: conn,
            sock,
            ssl=context,
            ssl_handshake_timeout=conn.port.handshake_timeout if context is not None else None,
        )
    )

    def adopted(task: asyncio.Task[Any]) -> None:
        exc = None if task.cancelled() else task.exception()
        if exc is None and not task.cancelled():
            return
        sock.close()
        if context is not None:
            logger.log(NOTICE, "TLS handshake with %s failed: %r", peer, exc)
        else:
            logger.warning("could not take over the connection from %s: %r", peer, exc)
        conn.reactor.on_handshake_failed(conn)

    task.add_done_callback(adopted)


def expired_connections(connections: Iterable[Connection], now: float) -> list[Connection]:
    """The connections the heartbeat closes: nothing received for longer than their port's idle time."""
    return [conn for conn in connections if conn.heartbeat_expired(now)]
