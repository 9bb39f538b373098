"""The admin endpoint (``admin_server="host:port"``): ``/metrics``, ``/stats`` and the dashboard page, served from a
process without an event loop (the manager's select() loop).

The loop asks :meth:`AdminServer.fds` what to watch, selects, and hands every ready fd to
:meth:`AdminServer.on_ready`. Invariant: nothing here blocks or waits on a client. Sockets are non-blocking,
one call reads or writes at most once per connection, a request is at most :data:`MAX_REQUEST_BYTES`, at most
``max_connections`` are open (further clients wait in the kernel's backlog), and a connection still open
``timeout`` seconds after it was accepted is closed. Every answer ends with ``Connection: close``.

With a token, every request but the page's (``GET /``) needs ``Authorization: Bearer <token>`` (compared in
constant time), else 401, unknown paths included. The page holds no data: it takes the token from its URL's
fragment (``/#token=...``, which browsers never send) or asks for it, and sends it with its own requests.
"""

from __future__ import annotations

import errno
import hmac
import ipaddress
import json
import socket
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from importlib.resources import files
from typing import Any

import httptools

from pyswoole.errors import ServerError
from pyswoole.log import Throttle, logger
from pyswoole.ops.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from pyswoole.ops.metrics import render_metrics

MAX_REQUEST_BYTES = 16 * 1024
LINGER = 1.0  # seconds to wait for the client's FIN after the answer, so that unread input does not reset it
ACCEPT_PAUSE = 0.5  # seconds without accepting after accept() failed for lack of fds
PAGE_SECURITY_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
    "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def check_admin_address(address: str, token: str | None) -> tuple[str, int]:
    """``"host:port"`` (an IPv6 host in brackets) as ``(host, port)``.

    Raises ValueError naming the setting for a malformed address, for an empty or unsendable token, and for an
    address that is not loopback when there is no token (``localhost`` and loopback IPs are loopback; a host
    name could resolve anywhere, so it needs a token).
    """
    host, colon, port_text = address.rpartition(":") if isinstance(address, str) else ("", "", "")
    if not colon or not host or not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        raise ValueError(f"admin_server: {address!r} is not 'host:port' ('[::1]:9502' for IPv6)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not _is_ip(host, 6):
            raise ValueError(f"admin_server: {address!r}: {host!r} in brackets is not an IPv6 address")
    elif ":" in host or "[" in host or "]" in host:
        raise ValueError(f"admin_server: {address!r}: an IPv6 address goes in brackets, as '[::1]:9502'")
    if token is not None and (not token or not token.isascii() or not token.isprintable() or " " in token):
        raise ValueError("admin_server_token: must be a non-empty string of printable ASCII without spaces")
    if token is None and not _is_loopback(host):
        raise ValueError(
            f"admin_server: {address!r} is not a loopback address; set admin_server_token to serve it there"
        )
    return host, int(port_text)


def _is_ip(host: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(host).version == version
    except ValueError:
        return False


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None  # ::ffff:127.0.0.1
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


class _Connection:
    """One admin client: its request being parsed, then its answer being written, then its close awaited."""

    __slots__ = ("sock", "deadline", "parser", "url", "authorization", "received", "headers_done", "done",
                 "output", "draining")  # fmt: skip

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.authorization: bytes | None = None
        self.received = 0
        self.headers_done = False
        self.done = False
        self.output: memoryview | None = None  # set once the answer is known
        self.draining = False  # the answer is out; reading until the client closes

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"authorization":
            self.authorization = value

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_message_complete(self) -> None:
        self.done = True


class AdminServer:
    """The admin endpoint, bound at construction (an address in use raises :class:`ServerError` with its errno).

    ``snapshot`` is called for every ``/metrics`` and ``/stats`` request, in the loop's thread.
    """

    def __init__(
        self,
        host: str,
        port: int,
        token: str | None,
        snapshot: Callable[[], Mapping[str, Any]],
        *,
        max_connections: int = 32,
        timeout: float = 5.0,
    ) -> None:
        self.snapshot = snapshot
        self.max_connections = max_connections
        self.timeout = timeout
        self._expected_authorization = b"Bearer " + token.encode() if token else None
        self._page = (files("pyswoole.ops") / "dashboard.html").read_bytes()
        self._connections: dict[int, _Connection] = {}
        self._accept_paused_until = 0.0
        self._throttle = Throttle(10.0)
        try:
            family, kind, proto, _, sockaddr = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
        except socket.gaierror as exc:
            raise ServerError(f"admin_server {host}:{port}: {exc.strerror}", exc.errno or 0) from None
        self._listener = socket.socket(family, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, proto)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind(sockaddr)
            self._listener.listen(128)
        except OSError as exc:
            self._listener.close()
            raise ServerError(f"admin_server {host}:{port}: {exc.strerror}", exc.errno or 0) from None
        self.address: tuple[str, int] = self._listener.getsockname()[:2]

    def fds(self) -> tuple[list[int], list[int]]:
        """The fds to select on: (for reading, for writing). Closes the connections past their deadline, so the
        loop must call it at least every second or so, as it does before each select()."""
        now = time.monotonic()
        for fd, connection in list(self._connections.items()):
            if now >= connection.deadline:
                self._close(fd)
        readers: list[int] = []
        if len(self._connections) < self.max_connections and now >= self._accept_paused_until:
            readers.append(self._listener.fileno())
        writers: list[int] = []
        for fd, connection in self._connections.items():
            (writers if connection.output is not None and not connection.draining else readers).append(fd)
        return readers, writers

    def on_ready(self, fd: int) -> None:
        """Serve what ``fd`` (one of :meth:`fds`) is ready for; an fd no longer ours is ignored."""
        if fd == self._listener.fileno():
            self._accept()
            return
        connection = self._connections.get(fd)
        if connection is None:
            return
        if connection.output is not None and not connection.draining:
            self._flush(fd, connection)
        else:
            self._read(fd, connection)

    def close(self) -> None:
        for fd in list(self._connections):
            self._close(fd)
        self._listener.close()

    def _accept(self) -> None:
        while len(self._connections) < self.max_connections:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._accept_paused_until = time.monotonic() + ACCEPT_PAUSE
                    if self._throttle.ready():
                        logger.warning("admin_server: accept failed: %s", exc)
                return
            sock.setblocking(False)
            self._connections[sock.fileno()] = _Connection(sock, time.monotonic() + self.timeout)

    def _read(self, fd: int, connection: _Connection) -> None:
        try:
            data = connection.sock.recv(65536 if connection.draining else 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(fd)
            return
        if not data:
            self._close(fd)
            return
        if connection.draining:
            return
        connection.received += len(data)
        if connection.received > MAX_REQUEST_BYTES:
            too_large = HTTPStatus.REQUEST_ENTITY_TOO_LARGE if connection.headers_done else (
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)  # fmt: skip
            self._answer(fd, connection, self._error(too_large))
            return
        try:
            connection.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            connection.done = True  # the request is complete; what follows is not HTTP and is not read
        except httptools.HttpParserError:
            self._answer(fd, connection, self._error(HTTPStatus.BAD_REQUEST))
            return
        if connection.done:
            self._answer(fd, connection, self._respond(connection))

    def _respond(self, connection: _Connection) -> bytes:
        try:
            path = httptools.parse_url(connection.url).path
        except httptools.HttpParserInvalidURLError:
            return self._error(HTTPStatus.BAD_REQUEST)
        expected = self._expected_authorization
        if path != b"/" and expected is not None and not hmac.compare_digest(connection.authorization or b"", expected):
            return self._error(HTTPStatus.UNAUTHORIZED, ("WWW-Authenticate", 'Bearer realm="pyswoole"'))
        method = connection.parser.get_method()
        if method not in (b"GET", b"HEAD"):
            return self._error(HTTPStatus.METHOD_NOT_ALLOWED, ("Allow", "GET, HEAD"))
        head = method == b"HEAD"
        if path == b"/":
            return _response(HTTPStatus.OK, "text/html; charset=utf-8", self._page, head,
                             ("Content-Security-Policy", PAGE_SECURITY_POLICY))  # fmt: skip
        if path not in (b"/metrics", b"/stats"):
            return self._error(HTTPStatus.NOT_FOUND)
        try:
            snapshot = self.snapshot()
            if path == b"/metrics":
                return _response(HTTPStatus.OK, METRICS_CONTENT_TYPE, render_metrics(snapshot).encode(), head)
            body = json.dumps(snapshot, separators=(",", ":")).encode()
        except Exception:
            logger.exception("admin_server: %s failed", path.decode())
            return self._error(HTTPStatus.INTERNAL_SERVER_ERROR)
        return _response(HTTPStatus.OK, "application/json", body, head)

    @staticmethod
    def _error(status: HTTPStatus, *headers: tuple[str, str]) -> bytes:
        return _response(status, "text/plain; charset=utf-8", f"{status.value} {status.phrase}\n".encode(), False,
                         *headers)  # fmt: skip

    def _answer(self, fd: int, connection: _Connection, response: bytes) -> None:
        connection.output = memoryview(response)
        self._flush(fd, connection)

    def _flush(self, fd: int, connection: _Connection) -> None:
        assert connection.output is not None
        try:
            sent = connection.sock.send(connection.output)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(fd)
            return
        connection.output = connection.output[sent:]
        if connection.output:
            return
        try:
            connection.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(fd)
            return
        connection.draining = True
        connection.deadline = min(connection.deadline, time.monotonic() + LINGER)

    def _close(self, fd: int) -> None:
        connection = self._connections.pop(fd)
        connection.sock.close()


def _response(status: HTTPStatus, content_type: str, body: bytes, head: bool, *headers: tuple[str, str]) -> bytes:
    lines = [
        f"HTTP/1.1 {status.value} {status.phrase}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        "X-Content-Type-Options: nosniff",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if head else body)
