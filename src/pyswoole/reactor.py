"""The reactor side of one connection: an asyncio protocol that is also the connection's record.

A ``Connection`` keeps the fields of Swoole's connection table (times, addresses, close state) and does the
socket-side actions; its owner, the :class:`Reactor`, is told of connects and disconnects. What received bytes
become is the business of the subclass each run mode defines (``data_received``): in BASE mode the event
worker's, which calls the user's Receive without any hop.

Close state, as in Swoole: ``closed`` flips once (the single Close callback is guarded by it), ``closing``
is true while a server-initiated Close callback runs, and the socket is closed only after that callback.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .server import Port

_now = time.time
_LINGER_RESET = struct.pack("ii", 1, 0)


class Reactor(Protocol):
    """What a connection needs from the event loop's owner."""

    def on_connect(self, conn: Connection) -> None: ...
    def on_disconnect(self, conn: Connection, exc: Exception | None) -> None: ...


class Connection(asyncio.Protocol):
    __slots__ = (
        "reactor", "port", "reactor_id", "session_id", "transport", "socket_fd", "remote_ip", "remote_port",
        "connect_time", "last_recv_time", "last_send_time", "last_dispatch_time", "close_errno", "closed",
        "closing", "peer_closed", "uid", "paused", "overflow", "writable", "handlers",
    )

    def __init__(self, reactor: Reactor, port: Port, handlers: Any, reactor_id: int) -> None:
        self.reactor = reactor
        self.port = port
        self.handlers = handlers  # the port's callbacks, as the owning reactor resolved them
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
        self.overflow = False  # the output buffer passed socket_buffer_size: send() fails until it drains
        self.writable = False  # open, not closing, not overflowing: what the send() fast path checks

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
        self.connect_time = _now()
        self.reactor.on_connect(self)

    def eof_received(self) -> bool:
        return False  # a half-closed peer is a closed peer, as in Swoole

    def pause_writing(self) -> None:
        self.overflow = True
        self.writable = False

    def resume_writing(self) -> None:
        self.overflow = False
        self.writable = not self.closed

    def mark_closed(self, by_peer: bool) -> None:
        self.closed = True
        self.peer_closed = by_peer
        self.writable = False

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.close_errno = getattr(exc, "errno", 0) or 0
        self.reactor.on_disconnect(self, exc)

    # Actions -------------------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        self.last_send_time = _now()
        self.transport.write(data)  # type: ignore[union-attr]

    def shut(self, reset: bool) -> None:
        """Close the socket: after pending output is flushed, or at once with an RST when ``reset``."""
        transport = self.transport
        if transport is None or transport.is_closing() and not reset:
            return
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

    def send_queued_bytes(self) -> int:
        transport = self.transport
        return transport.get_write_buffer_size() if transport is not None and not transport.is_closing() else 0

    def info(self) -> dict[str, Any]:
        """The fields of Swoole's ``getClientInfo``."""
        port = self.port
        info: dict[str, Any] = {
            "server_port": port.port,
            "server_fd": port.fileno,
            "socket_fd": self.socket_fd,
            "socket_type": int(port.base_type),
            "remote_port": self.remote_port,
            "remote_ip": self.remote_ip,
            "reactor_id": self.reactor_id,
            "connect_time": int(self.connect_time),
            "last_time": int(self.last_recv_time),
            "last_recv_time": self.last_recv_time,
            "last_send_time": self.last_send_time,
            "last_dispatch_time": self.last_dispatch_time,
            "close_errno": self.close_errno,
            "recv_queued_bytes": 0,
            "send_queued_bytes": self.send_queued_bytes(),
        }
        if self.uid:
            info["uid"] = self.uid
        return info
