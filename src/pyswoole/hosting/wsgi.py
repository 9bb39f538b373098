"""Hosting a WSGI application (PEP 3333): each request runs the application in the worker, blocking, one at a
time, with a complete ``environ``; the response goes out through the connection's sink.

In PROCESS mode the master's reactor thread buffers the whole request before a worker sees it, and the client's
pace of reading the response is the reactor's business too: a slow client never occupies a worker (what gunicorn's
sync workers need a buffering proxy in front for).

Invariants: ``start_response`` may be called again only with ``exc_info`` and only before the head is sent; the
iterable's ``close()`` is called whatever happens; an exception before the head goes out gives a 500, after it the
connection is closed. A request header whose name has an underscore is dropped (as gunicorn and nginx do): in the
environ it would be indistinguishable from, and could pose as, the same name with a dash (``X_Forwarded_For``).
"""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from ..http.headers import (
    CONNECTION_LINES,
    PERCENT,
    SERVER_LINE,
    STATUS_LINES,
    UNDERSCORE,
    breaks_the_line,
    date_line,
)
from ..log import NOTICE, logger
from . import ClientDisconnected, connection_ends

if TYPE_CHECKING:
    from ..http.parser import RequestHead
    from ..http.response import ResponseSink
    from ..http.service import Answered
    from ..runtime.context import Runtime
    from ..runtime.worker import EventWorker

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class WsgiApp:
    def __init__(self, rt: Runtime, app: WSGIApp, root_path: str = "") -> None:
        self.rt = rt
        self.app = app
        self.root_path = root_path
        self.errors = _LogStream()
        self._server_names: dict[int, str] = {}  # SERVER_NAME by port number, when no Host header names one

    def _server_name(self, number: int) -> str:
        name = self._server_names.get(number)
        if name is None:
            name = next((port.host for port in self.rt.ports if port.port == number), "localhost")
            self._server_names[number] = name
        return name

    def http(
        self,
        worker: EventWorker,
        head: RequestHead,
        body: bytes,
        session_id: int,
        remote_addr: str,
        remote_port: int,
        server_port: int,
        scheme: str,
        sink: ResponseSink,
        answered: Answered,
    ) -> None:
        environ = self.environ(head, body, remote_addr, remote_port, server_port, scheme)
        exchange = _WsgiExchange(self.rt, sink, answered, head.method == "HEAD", head.keep_alive, head.version)
        worker.serve_unit("WSGI application", self._run, (environ, exchange), None)

    def environ(
        self, head: RequestHead, body: bytes, remote_addr: str, remote_port: int, server_port: int, scheme: str
    ) -> dict[str, Any]:
        # PEP 3333: the path's bytes as latin-1 text, whatever they are (not UTF-8 decoded, nothing replaced).
        path = (unquote_to_bytes(head.path) if PERCENT in head.path else head.path).decode("latin-1")
        root = self.root_path.encode("utf-8").decode("latin-1")
        if root and (path == root or path.startswith(root + "/")):
            path = path[len(root) :]
        environ: dict[str, Any] = {
            "REQUEST_METHOD": head.method,
            "SCRIPT_NAME": root,
            "PATH_INFO": path,
            "QUERY_STRING": head.query.decode("latin-1"),
            "REQUEST_URI": head.target.decode("latin-1"),  # the target as sent (Apache's name; gunicorn's below)
            "RAW_URI": head.target.decode("latin-1"),
            "SERVER_NAME": self._server_name(server_port),
            "SERVER_PORT": str(server_port),
            "SERVER_PROTOCOL": "HTTP/" + head.version,
            "REMOTE_ADDR": remote_addr,
            "REMOTE_PORT": str(remote_port),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": scheme,
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": self.errors,
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "CONTENT_LENGTH": str(len(body)) if body else "",
        }
        for name, value in head.headers:
            if UNDERSCORE in name:
                continue  # see the module's docstring
            key = name.decode("latin-1").upper().replace("-", "_")
            text = value.decode("latin-1")
            if key == "CONTENT_TYPE":
                environ["CONTENT_TYPE"] = text
            elif key == "CONTENT_LENGTH":
                continue  # the body is whole: its real length is what counts
            elif key == "HOST":
                environ["HTTP_HOST"] = text
                host, _, port = text.rpartition(":") if text.rpartition(":")[2].isdigit() else (text, "", "")
                environ["SERVER_NAME"] = host or text
            else:
                key = "HTTP_" + key
                environ[key] = environ[key] + "," + text if key in environ else text
        return environ

    def _run(self, environ: dict[str, Any], exchange: _WsgiExchange) -> None:
        # The application runs as under a synchronous server: the worker's loop, blocked meanwhile, is hidden from
        # it, so that code which starts a loop of its own (asyncio.run, asgiref's async_to_sync under Django's
        # async views) does not find one running in this thread.
        loop = asyncio._get_running_loop()
        asyncio._set_running_loop(None)
        try:
            self._call(environ, exchange)
        finally:
            asyncio._set_running_loop(loop)

    def _call(self, environ: dict[str, Any], exchange: _WsgiExchange) -> None:
        result: Iterable[bytes] | None = None
        try:
            result = self.app(environ, exchange.start_response)
            # A list is all there at once (its one piece goes out with a Content-Length); an iterator's pieces
            # may come slowly (server-sent events, a long export): each goes out as soon as it is given.
            exchange.streaming = not isinstance(result, (list, tuple))
            for data in result:
                if data:
                    exchange.write(data)
            exchange.finish()
        except ClientDisconnected:
            # Not the application's failure: a client that left (a closed tab, a cancelled download, an
            # EventSource gone) ends the stream, as Swoole reports a closed session.
            logger.log(NOTICE, "WSGI response to %s %s cut short: the client went away", environ["REQUEST_METHOD"],
                       environ["PATH_INFO"])  # fmt: skip
            exchange.gone()
        except Exception:
            logger.exception("WSGI application failed (%s %s)", environ["REQUEST_METHOD"], environ["PATH_INFO"])
            exchange.fail()
        finally:
            # A list (the usual result) has no close(): asking getattr() would raise and clear an AttributeError.
            close = None if type(result) is list else getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    logger.exception("close() of the WSGI application's result failed")


class _WsgiExchange:
    """One response: the head held until the first body bytes (or the end), then plain or chunked bytes."""

    __slots__ = ("rt", "sink", "answered", "head_only", "keep_alive", "version", "status", "headers", "head_sent",
                 "chunked", "length", "sent", "no_body", "streaming", "ended", "buffered")  # fmt: skip

    def __init__(
        self, rt: Runtime, sink: ResponseSink, answered: Answered, head_only: bool, keep_alive: bool, version: str
    ) -> None:
        self.rt = rt
        self.sink = sink
        self.answered = answered
        self.head_only = head_only
        self.keep_alive = keep_alive
        self.version = version
        self.status = ""
        self.headers: list[tuple[str, str]] = []
        self.head_sent = False
        self.chunked = False
        self.length: int | None = None  # the application's Content-Length
        self.sent = 0  # body bytes sent
        self.no_body = head_only  # and, once the status is known, 1xx, 204 and 304
        self.streaming = False  # the application returned an iterator: every piece goes out at once
        self.ended = False
        self.buffered: list[bytes] = []  # the first body piece, kept to send with the head

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status:
            raise RuntimeError("start_response called twice without exc_info")
        if breaks_the_line(b"", status.encode("latin-1")):
            raise ValueError(f"status {status!r} holds CR, LF or NUL")
        for name, value in headers:
            if breaks_the_line(name.encode("latin-1"), value.encode("latin-1")):
                raise ValueError(f"header {name!r} holds CR, LF or NUL")
        self.buffered.clear()  # a body piece written under the status being replaced
        self.status = status
        self.headers = list(headers)
        return self.write

    def _head(self, body_length: int | None) -> bytes:
        if connection_ends(self.rt):
            self.keep_alive = False
        code = int(self.status.split(" ", 1)[0])
        lines = [b"HTTP/1.1 " + self.status.encode("latin-1") + b"\r\n"]
        has_date = has_server = False
        for name, value in self.headers:
            lower = name.lower()
            if lower == "content-length":
                self.length = int(value)
            elif lower == "connection":
                if "close" in value.lower():
                    self.keep_alive = False
                continue
            elif lower == "transfer-encoding":
                continue
            elif lower == "date":
                has_date = True
            elif lower == "server":
                has_server = True
            lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        if not has_server:
            lines.append(SERVER_LINE)
        if not has_date:
            lines.append(date_line())
        self.no_body = self.head_only or code in (204, 304) or code < 200
        if self.length is None and code >= 200 and code not in (204, 304):
            if body_length is not None:  # for HEAD too: the length a GET would have had (the body is not sent)
                lines.append(b"Content-Length: %d\r\n" % body_length)
            elif self.head_only:
                pass  # no body follows a HEAD response whatever its headers say
            elif self.version == "1.1":
                lines.append(b"Transfer-Encoding: chunked\r\n")
                self.chunked = True
            else:
                self.keep_alive = False  # HTTP/1.0: the body ends with the connection
        lines.append(CONNECTION_LINES[self.keep_alive])
        lines.append(b"\r\n")
        self.head_sent = True
        return b"".join(lines)

    def write(self, data: bytes) -> None:
        if not self.status:
            raise RuntimeError("the WSGI application wrote before calling start_response")
        if not self.head_sent and not self.buffered and not self.streaming:
            self.buffered.append(bytes(data))  # one piece may be all there is: sent with a Content-Length
            return
        if not self.head_sent:
            self._send(self._head(None))
            if self.buffered:
                self._body(self.buffered.pop())
        self._body(bytes(data))
        if self.streaming:
            worker = self.rt.worker
            if worker is not None:
                worker.flush_pipes()  # PROCESS mode: to the reactor now, not when the application returns

    def _body(self, data: bytes) -> None:
        if self.no_body or not data:
            return
        if self.length is not None and self.sent + len(data) > self.length:
            # More than the Content-Length would be read by the client as the next response.
            raise RuntimeError(f"the response body runs over its Content-Length ({self.length})")
        self._send(b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data)
        self.sent += len(data)

    def _send(self, data: bytes) -> None:
        if not self.sink.send(data):
            raise ClientDisconnected("the client went away")  # the sink has closed the connection

    def finish(self) -> None:
        if not self.status:
            raise RuntimeError("the WSGI application returned without calling start_response")
        if not self.head_sent:
            body = self.buffered.pop() if self.buffered else b""
            head = self._head(len(body))
            if self.no_body:
                body = b""
            elif self.length is not None and len(body) > self.length:
                self.head_sent = False  # it was not: fail() answers 500
                raise RuntimeError(f"the response body runs over its Content-Length ({self.length})")
            self._send(head + body)
            self.sent = len(body)
        elif self.chunked:
            self._send(b"0\r\n\r\n")
        if not self.no_body and self.length is not None and self.sent < self.length:
            logger.error("WSGI response ended %d bytes short of its Content-Length; connection closed",
                         self.length - self.sent)  # fmt: skip
            self.keep_alive = False  # the client is left waiting for the rest: only the close tells it
        self.ended = True
        self.sink.finish(self.keep_alive)
        self.answered(int(self.status.split(" ", 1)[0]), self.sent, self._header_pairs())

    def _header_pairs(self) -> list[tuple[bytes, bytes]]:
        return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in self.headers]

    def gone(self) -> None:
        """The client left: the response counts under its status with the bytes that went out, as the native
        Response's does (the access log too, as nginx logs a cut download)."""
        self.ended = True
        if self.status:
            self.answered(int(self.status.split(" ", 1)[0]), self.sent, self._header_pairs())

    def fail(self) -> None:
        if self.ended:
            return
        self.ended = True
        if self.head_sent:
            self.sink.finish(False)
            return
        body = b"Internal Server Error"
        head = b"".join((STATUS_LINES[500], SERVER_LINE, date_line(), b"Content-Type: text/plain; charset=utf-8\r\n",
                         b"Content-Length: %d\r\n" % len(body), CONNECTION_LINES[False], b"\r\n"))  # fmt: skip
        if self.sink.send(head + body):
            self.sink.finish(False)
            self.answered(500, len(body), ())


class _LogStream:
    """``wsgi.errors``: what the application writes there goes to the ``pyswoole`` logger."""

    def write(self, text: str) -> int:
        if text.strip():
            logger.error("%s", text.rstrip())
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        sys.stderr.flush()
