"""A listening port: its socket (bound when the Port is made, as Swoole does), its settings and callbacks.

At start the port's protocol settings are fixed (``resolve_protocol``): its framing, its heartbeat and idle
times, the socket options each accepted connection gets, and for an SSL port its TLS context.

Socket activation: when systemd passed sockets (``LISTEN_FDS``), each new Port takes the next one, in order,
instead of binding (the constructor's port first, then ``add_listener``'s); its family and type must be the
Port's. Such a socket is systemd's: it is never swapped for an SO_REUSEPORT one, nor its path unlinked.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import ssl
import stat
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from . import settings as settings_module
from .constants import INET6_TYPES, SSL_FLAG, STREAM_TYPES, UNIX_TYPES, SockType
from .errors import ServerError
from .log import logger
from .ops import systemd
from .protocol.framing import Framer, framer_for
from .protocol.tls import server_context

if TYPE_CHECKING:
    from .runtime.context import Runtime
    from .runtime.port_protocol import PortProtocol

PORT_EVENTS = ("connect", "receive", "close", "packet", "buffer_full", "buffer_empty")

_passed_sockets: list[socket.socket] | None = None  # socket activation: what systemd passed, not yet taken


def _next_passed_socket() -> socket.socket | None:
    """The next socket systemd passed to this process, or None (none passed, or all taken)."""
    global _passed_sockets
    if _passed_sockets is None:
        _passed_sockets = systemd.listen_fds()
    return _passed_sockets.pop(0) if _passed_sockets else None


def event_key(name: str) -> str:
    """Event names are case-insensitive and may be written as Swoole spells them or in snake_case."""
    if not isinstance(name, str):
        raise TypeError(f"event name must be a str, not {type(name).__name__}")
    return name.replace("_", "").lower()


def _socket_family(base_type: SockType) -> int:
    if base_type in UNIX_TYPES:
        return socket.AF_UNIX
    return socket.AF_INET6 if base_type in INET6_TYPES else socket.AF_INET


class Port:
    def __init__(self, rt: Runtime, host: str, port: int, sock_type: int) -> None:
        """Bind at once, as the server's constructor does (``Server.add_listener`` makes ports)."""
        try:
            base_type = SockType(int(sock_type) & ~SSL_FLAG)
        except ValueError:
            raise ValueError(f"invalid sock_type {sock_type!r}") from None
        if base_type == SockType.SSL:
            raise ValueError("sock_type SSL is a flag: use SockType.TCP | SockType.SSL")
        if not isinstance(host, str) or not host:
            raise ValueError(f"host must be a non-empty str, not {host!r}")
        if isinstance(port, bool) or not isinstance(port, int):
            raise ValueError(f"port must be an int, not {port!r}")
        if base_type not in UNIX_TYPES and not 0 <= port <= 65535:
            raise ServerError(
                f"failed to listen server port[{host}:{port}], Error: port out of range 0..65535", errno.EINVAL
            )
        self.ssl = bool(int(sock_type) & SSL_FLAG)
        if self.ssl and base_type not in STREAM_TYPES:
            raise ServerError(
                f"failed to listen server port[{host}:{port}], Error: SSL over datagrams (DTLS) is not supported",
                errno.EPROTONOSUPPORT,
            )
        self._rt = rt
        self.host = host
        self.sock_type = int(sock_type)
        self.base_type = base_type
        self.is_stream = base_type in STREAM_TYPES
        self.setting: dict[str, Any] = {}
        self.protocol: dict[str, Any] = {}  # effective port-level settings, fixed at start
        self.ssl_context: ssl.SSLContext | None = None  # SSL ports, from start on
        self._accepted_options: list[tuple[int, int, int]] = []  # setsockopt() for each accepted socket
        self._configured = False  # Port.set() was called: the port inherits nothing from the server
        self.callbacks: dict[str, Callable[..., Any]] = {}
        passed = _next_passed_socket()
        self.activated = passed is not None  # listening on a socket systemd passed
        self.sock = self._adopt(passed) if passed is not None else self._bind(host, port)
        self.fileno = self.sock.fileno()
        self.port = 0 if base_type in UNIX_TYPES else self.sock.getsockname()[1]
        self._reuse_port = False
        # What the port speaks beyond raw packages (HTTP, WebSocket): set by the facade at start.
        self.app_protocol: PortProtocol | None = None

    def _adopt(self, sock: socket.socket) -> socket.socket:
        """A socket systemd passed, for this port: it must be of the port's family and type."""
        family = _socket_family(self.base_type)
        kind = socket.SOCK_STREAM if self.is_stream else socket.SOCK_DGRAM
        if sock.family != family or sock.type != kind:
            passed = f"{sock.family.name}/{sock.type.name} {sock.getsockname()!r}"
            sock.close()
            expected = f"{socket.AddressFamily(family).name}/{kind.name}"
            raise ServerError(
                f"socket activation: the socket passed for {self.base_type.name} port {self.host} is {passed}, not "
                f"{expected} (see the order and addresses of the Listen lines of the .socket unit)",
                errno.EINVAL,
            )
        name = sock.getsockname()
        if isinstance(name, tuple):
            self.host = name[0]
        elif isinstance(name, str) and name:
            self.host = name
        sock.setblocking(False)
        return sock

    def _bind(self, host: str, port: int) -> socket.socket:
        family = _socket_family(self.base_type)
        kind = socket.SOCK_STREAM if self.is_stream else socket.SOCK_DGRAM
        if family == socket.AF_UNIX:
            if len(host.encode()) >= 108:
                raise ServerError(f"failed to listen server port[{host}], Error: path too long", errno.ENAMETOOLONG)
            _remove_stale_unix_socket(host)
        sock = socket.socket(family, kind)
        try:
            if family != socket.AF_UNIX:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(host if family == socket.AF_UNIX else (host, port))
            sock.setblocking(False)
        except (OSError, OverflowError) as exc:
            sock.close()
            code = getattr(exc, "errno", None) or errno.EINVAL
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ServerError(f"failed to listen server port[{host}:{port}], Error: {reason}[{code}]", code) from None
        return sock

    # Public API -----------------------------------------------------------------------------------------

    def set(self, settings: dict[str, Any] | None = None, /, **kwargs: Any) -> None:
        """Per-port settings (framing, heartbeat, buffers). Before start only."""
        self._rt.check_not_started("set")
        self.setting.update(settings_module.normalize({**(settings or {}), **kwargs}))
        self._configured = True

    def on(self, event: str, callback: Callable[..., Any] | None = None) -> Any:
        """Register a port callback (Connect, Receive, Close, Packet, BufferFull, BufferEmpty); also a decorator."""
        name = port_event_name(event)
        if name is None:
            raise ValueError(f"unknown port event {event!r}; a port has {', '.join(PORT_EVENTS)}")
        if callback is None:
            return lambda fn: self.on(event, fn)
        self._rt.check_not_started("on")
        if not callable(callback):
            raise TypeError(f"callback for {event!r} must be callable, not {type(callback).__name__}")
        self.callbacks[name] = callback
        return callback

    def get_callback(self, event: str) -> Callable[..., Any] | None:
        name = port_event_name(event)
        return None if name is None else self.callbacks.get(name)

    # Runtime --------------------------------------------------------------------------------------------

    def resolve_protocol(
        self, server_settings: dict[str, Any], is_primary: bool, speaks: dict[str, bool] | None = None
    ) -> None:
        """Fix the port's effective protocol settings. Swoole's rule: the primary port takes the server's
        settings; another port takes them all, unless its own ``set()`` was called, then none of them.
        ``speaks``: the server class's protocols (``open_http_protocol``...), which every port keeps unless its
        settings turn them off."""
        own = self.setting if self._configured and not is_primary else server_settings
        effective = settings_module.resolve(own, self._rt.mode)
        self.protocol = {key: effective[key] for key in settings_module.PORT_KEYS if key in effective}
        for key, on in {"open_http_protocol": False, "open_websocket_protocol": False, **(speaks or {})}.items():
            self.protocol.setdefault(key, on)
        if self.protocol["open_websocket_protocol"]:
            self.protocol["open_http_protocol"] = True  # the upgrade is an HTTP request
        if self.ssl:
            self.ssl_context = server_context(self.protocol, repr(self))
        self._accepted_options = self._socket_options()

    @property
    def speaks_http(self) -> bool:
        return self.is_stream and bool(self.protocol.get("open_http_protocol"))

    @property
    def speaks_websocket(self) -> bool:
        return self.is_stream and bool(self.protocol.get("open_websocket_protocol"))

    def _socket_options(self) -> list[tuple[int, int, int]]:
        """The options every accepted socket of this port gets (Swoole sets them at accept or listen)."""
        protocol = self.protocol
        options = []
        if self.base_type != SockType.UNIX_STREAM:
            # asyncio and uvloop turn TCP_NODELAY on for every TCP transport: set it either way.
            options.append((socket.IPPROTO_TCP, socket.TCP_NODELAY, int(protocol["open_tcp_nodelay"])))
            if protocol["open_tcp_keepalive"]:
                options += [
                    (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
                    (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, protocol["tcp_keepidle"]),
                    (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, protocol["tcp_keepinterval"]),
                    (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, protocol["tcp_keepcount"]),
                ]
            if protocol["tcp_user_timeout"]:
                options.append((socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, protocol["tcp_user_timeout"]))
        for key, option in (
            ("kernel_socket_recv_buffer_size", socket.SO_RCVBUF),
            ("kernel_socket_send_buffer_size", socket.SO_SNDBUF),
        ):
            if protocol[key]:
                options.append((socket.SOL_SOCKET, option, protocol[key]))
        return options

    def configure_accepted(self, sock: Any) -> None:
        """Apply the port's socket options to a connection it accepted (a socket or a transport's socket)."""
        for level, option, value in self._accepted_options:
            try:
                sock.setsockopt(level, option, value)
            except OSError as exc:
                logger.warning(
                    "setsockopt(%d, %d, %d) on a connection of %r failed: %s", level, option, value, self, exc
                )

    @property
    def handshake_timeout(self) -> float:
        """How long a TLS client may take to finish its handshake. Swoole's heartbeat closes a connection still
        handshaking when it goes idle; the handshake timeout is that idle time here (else asyncio's 60 s)."""
        return float(self.protocol["heartbeat_idle_time"] or self.protocol["max_idle_time"] or 60)

    def new_framer(self) -> Framer | None:
        """A fresh framer for one connection of this port; None in raw mode."""
        return framer_for(self.protocol)

    @property
    def backlog(self) -> int:
        return int(self.protocol["backlog"])

    def listen(self, reuse_port: bool) -> None:
        """Start listening (stream ports) before any fork, so that clients queue up while workers start.

        With ``reuse_port`` the constructor's socket is swapped for an SO_REUSEPORT one that only holds the
        address; each worker then listens on a socket of its own and the kernel spreads connections.
        """
        if not self.is_stream:
            return
        self._reuse_port = reuse_port and self.sock.family != socket.AF_UNIX and not self.activated
        if self._reuse_port:
            self.sock.close()
            self.sock = self._reuse_port_socket()
            self.fileno = self.sock.fileno()
        else:
            self._listen(self.sock)

    def socket_for_worker(self) -> socket.socket:
        if not self._reuse_port:
            return self.sock
        sock = self._reuse_port_socket()
        self._listen(sock)
        return sock

    def _listen(self, sock: socket.socket) -> None:
        if sock.family != socket.AF_UNIX:
            if self.protocol["tcp_defer_accept"]:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, self.protocol["tcp_defer_accept"])
            if self.protocol["tcp_fastopen"]:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, self.backlog)
        sock.listen(self.backlog)

    def _reuse_port_socket(self) -> socket.socket:
        sock = socket.socket(self.sock.family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if self.sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((self.host, self.port))
        sock.setblocking(False)
        return sock

    def receive_datagrams(self, batch: int = 64) -> Iterator[tuple[bytes, str, int]]:
        """(data, sender address, sender port) of the datagrams waiting on this port, at most ``batch``.
        A UNIX-datagram sender's address is its path ("" when it did not bind one), its port 0."""
        for _ in range(batch):
            try:
                data, address = self.sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.warning("recvfrom on %r failed: %s", self, exc)
                return
            if isinstance(address, tuple):
                yield data, address[0], address[1]
            else:
                yield data, address or "", 0

    def close(self) -> None:
        self.sock.close()
        if self.base_type in UNIX_TYPES and not self.activated:
            try:
                os.unlink(self.host)
            except OSError:
                pass

    def __repr__(self) -> str:
        return f"<Port {self.base_type.name} {self.host}:{self.port}>"


def port_event_name(event: str) -> str | None:
    key = event_key(event)
    for name in PORT_EVENTS:
        if name.replace("_", "") == key:
            return name
    return None


def _remove_stale_unix_socket(path: str) -> None:
    """A socket file left by a server that died is removed; a live one is left alone (bind then fails)."""
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return
    except OSError:
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)
    except OSError:
        pass
    finally:
        probe.close()


class PortHandlers:
    """One port's callbacks as a worker calls them, resolved once per worker (the port's own, else the
    primary port's) so the hot path reads attributes instead of looking names up."""

    __slots__ = ("port", "connect", "receive", "close", "packet", "buffer_full", "buffer_empty", "receive_async")

    def __init__(self, port: Port, primary: Port) -> None:
        def pick(event: str) -> Callable[..., Any] | None:
            return port.callbacks.get(event) or primary.callbacks.get(event)

        self.port = port
        self.connect = pick("connect")
        self.receive = pick("receive")
        self.close = pick("close")
        self.packet = pick("packet")
        self.buffer_full = pick("buffer_full")
        self.buffer_empty = pick("buffer_empty")
        self.receive_async = self.receive is not None and asyncio.iscoroutinefunction(self.receive)
