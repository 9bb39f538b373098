"""Hosting an ASGI 3.0 application (spec 2.4): the ``http``, ``websocket`` and ``lifespan`` scopes.

``AsgiApp`` is what ``HttpServer.mount`` installs for an ASGI callable. HTTP requests reach it without a ``Request``
object (``HttpApp.http``: the parsed head and whole body, and the connection's sink); the response is serialized
here. WebSocket sessions go through the WebSocket port's HandShake, Message and Close callbacks, so the session
lives where the server keeps it and the application may be pushed to from anywhere. Lifespan runs once per event
worker, as it starts and as it stops.

Invariants: a response is ended exactly once (a 500 when the application raised before starting it, the
connection closed when it raised after); the request body is handed over whole (the server buffers it, bounded by
``package_max_length``), as one ``http.request`` per 64 KiB with ``more_body``; a WebSocket session's messages
reach the application in order, from the worker that owns the session.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, Final

from ..constants import UNIX_TYPES, Mode
from ..http.headers import CONNECTION_LINES, SERVER_LINE, STATUS_LINES, breaks_the_line, date_line, status_line
from ..http.parser import decode_path
from ..log import NOTICE, logger
from ..websocket.frames import Opcode
from ..websocket.handshake import accept_key
from . import ClientDisconnected, connection_ends

if TYPE_CHECKING:
    from ..http.parser import RequestHead
    from ..http.request import Request
    from ..http.response import Response, ResponseSink
    from ..http.service import Answered
    from ..port import Port
    from ..runtime.context import Runtime
    from ..runtime.worker import EventWorker
    from ..websocket.frames import Frame

# Dicts, as ASGI specifies them: typed so, the compiled build reads them with dict operations rather than generic
# mapping calls (a message that is not a dict is refused with a TypeError).
Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BODY_PIECE: Final = 64 * 1024  # the request body is handed over in pieces of this size at most
DISCONNECT_POLL: Final = 0.1  # seconds between looks at the connection while the application waits for http.disconnect


class _OneTurn:
    """What ``send`` returns for a response's last bytes when the worker holds them for the end of the loop
    pass: awaiting it yields to the loop once (as ``asyncio.sleep(0)``, without a coroutine), and the flush of
    the pass runs before the task resumes. What the application does after its response (a background task
    that blocks, say) never delays it."""

    def __await__(self) -> Generator[None, None, None]:
        yield


ONE_TURN: Final = _OneTurn()
DRAIN_LIMIT: Final = 1 << 20  # BASE mode: a streaming response waits while more than this is queued for its client
ASGI_VERSION: Final = {"version": "3.0", "spec_version": "2.4"}


class AsgiApp:
    def __init__(self, rt: Runtime, app: ASGIApp, lifespan: str = "auto", root_path: str = "") -> None:
        if lifespan not in ("auto", "on", "off"):
            raise ValueError(f"lifespan: {lifespan!r} is not one of 'auto', 'on', 'off'")
        self.rt = rt
        self.app = app
        self.lifespan = lifespan
        self.root_path = root_path
        self.state: dict[str, Any] = {}  # lifespan state, copied into every scope
        self._lifespan_queue: asyncio.Queue[Message] | None = None
        self._lifespan_task: asyncio.Task[None] | None = None
        self._shutdown_message: Message | None = None
        self._sessions: dict[int, _WebSocketSession] = {}  # this worker's WebSocket sessions, by fd
        self._servers: dict[int, tuple[str, int | None]] = {}  # scope["server"] by port number
        self._drain_limit = 0  # see drain_limit
        self._finished: asyncio.Future[None] | None = None  # what every send() that waits for nothing returns
        self.extensions = {"http.response.pathsend": {}, "pyswoole": {"server": rt.server}}
        # Set once lifespan startup is over: a request that comes earlier (the worker already listens, so that
        # startup code can use the server, task_co included) waits for it, and sees the state startup made.
        self._started = asyncio.Event()
        self._ready = False  # _started is set (read per request: cheaper than Event.is_set())

    def _port(self, number: int) -> Port | None:
        return next((port for port in self.rt.ports if port.port == number), None)

    def _server(self, number: int) -> tuple[str, int | None]:
        """ASGI's ``server``: the listening address (a UNIX socket's path and None)."""
        address = self._servers.get(number)
        if address is None:
            port = self._port(number)
            if port is None:
                address = ("", number)
            else:
                address = (port.host, None) if port.base_type in UNIX_TYPES else (port.host, port.port)
            self._servers[number] = address
        return address

    def drain_limit(self) -> int:
        """How much may be queued for a client before a streaming response waits. BASE mode reads the live
        figure of the connection's buffer. PROCESS mode reads the one its reactor thread publishes after each
        write and again when the buffer has drained after a pause, which comes only once the buffer went past the
        high watermark (``ReactorThread``'s: ``buffer_high_watermark``, or 4/5 of ``socket_buffer_size``): a
        lower limit could wait forever on a figure that no longer moves."""
        if not self._drain_limit:
            setting = self.rt.setting
            if self.rt.mode == Mode.PROCESS:
                self._drain_limit = setting["buffer_high_watermark"] or setting["socket_buffer_size"] * 4 // 5
            else:
                self._drain_limit = DRAIN_LIMIT
        return self._drain_limit

    def _rooted(self, path: str, raw_path: bytes) -> tuple[str, bytes]:
        """``path`` and ``raw_path`` under ``root_path`` (as uvicorn): a proxy that strips the prefix gives the
        path without it, and it is put back; a path that still carries it is left as it is."""
        root = self.root_path
        if not root or path == root or path.startswith(root + "/"):
            return path, raw_path
        return root + path, root.encode("utf-8") + raw_path

    # Lifespan (a runtime WorkerHook) -----------------------------------------------------------------------

    async def worker_started(self, worker: EventWorker) -> None:
        try:
            await self._start_lifespan(worker)
        finally:
            self._started.set()
            self._ready = True

    async def _start_lifespan(self, worker: EventWorker) -> None:
        if self.lifespan == "off":
            return
        queue: asyncio.Queue[Message] = asyncio.Queue()
        self._lifespan_queue = queue
        done: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

        async def send(message: Message) -> None:
            if message["type"] in ("lifespan.startup.complete", "lifespan.startup.failed") and not done.done():
                done.set_result(message)
            elif message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                self._shutdown_message = message

        async def run() -> None:
            scope = {"type": "lifespan", "asgi": ASGI_VERSION, "state": self.state}
            try:
                await self.app(scope, queue.get, send)
            except BaseException as exc:
                if not done.done():
                    done.set_exception(exc)
                elif not isinstance(exc, asyncio.CancelledError):
                    logger.exception("the ASGI application's lifespan failed")
            else:
                if not done.done():  # returned without answering: no lifespan support (as uvicorn takes it)
                    done.set_exception(RuntimeError("the lifespan scope returned without lifespan.startup.complete"))

        self._lifespan_task = asyncio.get_running_loop().create_task(run())
        await queue.put({"type": "lifespan.startup"})
        try:
            message = await done
        except Exception:
            if self.lifespan == "on":
                logger.exception("ASGI lifespan startup failed in worker %d; the server stops", worker.worker_id)
                self._startup_failed(worker)
            else:
                logger.info("the ASGI application does not support lifespan (lifespan='auto'): going on without it")
            self._lifespan_queue = None
            return
        if message["type"] == "lifespan.startup.failed":
            logger.error("ASGI lifespan startup failed in worker %d: %s; the server stops", worker.worker_id,
                         message.get("message", ""))  # fmt: skip
            self._startup_failed(worker)

    def _startup_failed(self, worker: EventWorker) -> None:
        self.rt.startup_failed()
        self.rt.server.shutdown()

    async def worker_stopping(self, worker: EventWorker) -> None:
        queue, task = self._lifespan_queue, self._lifespan_task
        if queue is None or task is None or task.done():
            return
        await queue.put({"type": "lifespan.shutdown"})
        deadline = time.monotonic() + self.rt.setting["max_wait_time"]
        while not self._shutdown_reported() and not task.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        message = self._shutdown_message
        if message is not None and message["type"] == "lifespan.shutdown.failed":
            logger.error("ASGI lifespan shutdown failed in worker %d: %s", worker.worker_id, message.get("message", ""))
        task.cancel()

    def _shutdown_reported(self) -> bool:
        return self._shutdown_message is not None

    # HTTP (an HttpApp) ---------------------------------------------------------------------------------------

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
        path, raw_path = self._rooted(decode_path(head.path), head.path)
        scope = {
            "type": "http",
            "asgi": ASGI_VERSION,
            "http_version": head.version,
            "method": head.method,
            "scheme": scheme,
            "path": path,
            "raw_path": raw_path,
            "query_string": head.query,
            "root_path": self.root_path,
            "headers": head.headers,
            "client": (remote_addr, remote_port),
            "server": self._server(server_port),
            "state": self.state.copy(),
            "extensions": self.extensions,
        }
        finished = self._finished
        if finished is None:  # made in the worker's loop, at its first request
            finished = self._finished = asyncio.get_running_loop().create_future()
            finished.set_result(None)
        exchange = _HttpExchange(self.rt, session_id, sink, answered, head.method == "HEAD", head.keep_alive,
                                 head.version, self.drain_limit(), body, finished)  # fmt: skip
        worker.serve_coroutine(self._run_http(scope, exchange))  # it reports its own failures: 500, or a close

    async def _run_http(self, scope: Scope, exchange: _HttpExchange) -> None:
        if not self._ready:
            await self._started.wait()
            scope["state"] = self.state.copy()
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except ClientDisconnected:
            # Raised by send() into the app: the client left (a closed tab, a cancelled download), the app is
            # not at fault, and there is nobody left to answer.
            logger.log(NOTICE, "ASGI response to %s %s cut short: the client went away", scope["method"], scope["path"])
            exchange.failed()
            return
        except BaseException as exc:  # a CancelledError or SystemExit of the app's own too: its request is answered
            exchange.failed()
            if _cancelled(exc):
                raise
            logger.error("ASGI application failed (%s %s)", scope["method"], scope["path"], exc_info=exc)
            return
        exchange.done()

    # WebSocket (the port's HandShake, Message and Close callbacks) -------------------------------------------

    async def websocket_handshake(self, request: Request, response: Response) -> bool:
        """HandShake: run the application until it accepts, refuses or sends a denial response."""
        if not self._started.is_set():
            await self._started.wait()
        offered = request.header.get("sec-websocket-protocol", "")
        server_info = request.server
        port = self._port(server_info["server_port"])
        path, raw_path = self._rooted(server_info["path_info"], server_info["request_uri"].encode("latin-1"))
        scope = {
            "type": "websocket",
            "asgi": ASGI_VERSION,
            "http_version": "1.1",
            "scheme": "wss" if port is not None and port.ssl else "ws",
            "path": path,
            "raw_path": raw_path,
            "query_string": server_info.get("query_string", "").encode("latin-1"),
            "root_path": self.root_path,
            "headers": request.head.headers,  # each line apart: request.header joins a repeated one
            "client": (server_info["remote_addr"], server_info["remote_port"]),
            "server": self._server(server_info["server_port"]),
            "subprotocols": [item.strip() for item in offered.split(",") if item.strip()],
            "state": self.state.copy(),
            "extensions": {**self.extensions, "websocket.http.response": {}},
        }
        session = _WebSocketSession(self.rt, request.fd)
        self._sessions[request.fd] = session
        session.task = asyncio.get_running_loop().create_task(self._run_websocket(scope, session))
        await session.inbox.put({"type": "websocket.connect"})
        verdict = await session.verdict
        if verdict["type"] == "websocket.accept":
            key = request.header.get("sec-websocket-key", "").encode("latin-1")
            response.status(101)
            response.header("Upgrade", "websocket")
            response.header("Connection", "Upgrade")
            response.header("Sec-WebSocket-Accept", accept_key(key).decode("ascii"))
            if verdict.get("subprotocol"):
                response.header("Sec-WebSocket-Protocol", verdict["subprotocol"])
            for name, value in verdict.get("headers", ()):
                response.header(bytes(name).decode("latin-1"), bytes(value).decode("latin-1"))
            response.end()
            session.accepted = True
            # The session is marked upgraded once this callback has returned, in the same step of the loop:
            # the application's accept() returns after that, so it may send at once.
            asyncio.get_running_loop().call_soon(session.established.set_result, None)
            return True
        self._sessions.pop(request.fd, None)
        if verdict["type"] == "websocket.http.response.start":
            response.status(verdict["status"])
            for name, value in verdict.get("headers", ()):
                response.header(bytes(name).decode("latin-1"), bytes(value).decode("latin-1"))
            response.end(await session.denial_body())
        elif verdict.get("failed"):  # the application raised before accepting: 500, as for HTTP
            response.status(500)
            response.end()
        else:  # websocket.close before accept, or the application ended: 403, as the spec asks
            response.status(403)
            response.end()
        session.established.cancel()
        session.inbox.put_nowait({"type": "websocket.disconnect", "code": 1006})  # a later receive() returns
        return False

    async def _run_websocket(self, scope: Scope, session: _WebSocketSession) -> None:
        try:
            await self.app(scope, session.receive, session.send)
        except BaseException as exc:
            session.failed()
            if _cancelled(exc):
                raise
            logger.error("ASGI application failed on WebSocket %s", scope["path"], exc_info=exc)
            return
        session.ended()

    def websocket_message(self, server: Any, frame: Frame) -> None:
        session = self._sessions.get(frame.fd)
        if session is None:
            return
        if frame.opcode == Opcode.CLOSE:
            session.close_code = getattr(frame, "code", 1005) or 1005
        elif frame.opcode == Opcode.TEXT:
            session.inbox.put_nowait({"type": "websocket.receive", "text": frame.data})
        elif frame.opcode == Opcode.BINARY:
            session.inbox.put_nowait({"type": "websocket.receive", "bytes": frame.data})

    def closed(self, server: Any, fd: int, reactor_id: int) -> None:
        session = self._sessions.pop(fd, None)
        if session is not None:
            session.closed = True
            session.inbox.put_nowait({"type": "websocket.disconnect", "code": session.close_code})


class _HttpExchange:
    """One HTTP request's response side: ASGI's ``send`` turned into bytes for the connection's sink."""

    __slots__ = ("rt", "session_id", "sink", "answered", "head_only", "keep_alive", "version", "drain_limit",
                 "started", "ended", "gone", "chunked", "status", "headers", "length", "declared", "finished", "_head",
                 "_body", "_offset")  # fmt: skip

    def __init__(
        self,
        rt: Runtime,
        session_id: int,
        sink: ResponseSink,
        answered: Answered,
        head_only: bool,
        keep_alive: bool,
        version: str,
        drain_limit: int,
        body: bytes,
        finished: Awaitable[None],
    ) -> None:
        self.rt = rt
        self.session_id = session_id
        self.sink = sink
        self.answered = answered
        self.head_only = head_only
        self.keep_alive = keep_alive
        self.version = version
        self.drain_limit = drain_limit
        self.started = False  # http.response.start came
        self.ended = False  # the response is complete, or can no longer be
        self.gone = False  # the client went away before the response was complete
        self.chunked = False
        self.status = 0
        self.headers: Any = ()  # as the application gave them, for the access log
        self.length = 0  # body bytes sent
        self.declared: int | None = None  # the application's Content-Length
        self.finished = finished  # a finished future: what send() returns when there is nothing to wait for
        self._head: list[bytes] = []  # the head's lines, sent with the first body
        self._body = body  # the whole request body, handed to receive() in pieces of BODY_PIECE
        self._offset = -1  # where the next piece starts; -1: no http.request given yet

    async def receive(self) -> Message:
        offset = self._offset
        body = self._body
        if offset < len(body):  # the first call always gives one http.request, empty for an empty body
            start = max(offset, 0)
            end = start + BODY_PIECE
            self._offset = end
            return {"type": "http.request", "body": body[start:end], "more_body": end < len(body)}
        await self.disconnected()
        return {"type": "http.disconnect"}

    def send(self, message: Message) -> Awaitable[None]:
        """ASGI's ``send``. Not a coroutine: the message is acted on at the call, and what is awaited is the
        worker's finished future (no coroutine object per message, as granian's Rust ``send``), or the wait
        for the client to take a streaming body. A refused message raises at the call, before any await."""
        kind = message["type"]
        if self.gone:
            raise ClientDisconnected("the client went away")
        if self.ended:
            raise RuntimeError(f"{kind!r} after the response was complete")
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            status = message["status"]
            self._start(status if type(status) is int else int(status), message.get("headers", ()))
            self.started = True  # after _start: a start it refused leaves the 500 possible
        elif kind == "http.response.body":
            if not self.started:
                raise RuntimeError("http.response.body before http.response.start")
            if self._send_body(as_bytes(message.get("body", b"")), bool(message.get("more_body", False))):
                return self._drain()
            worker = self.rt.worker
            if worker is not None and worker.output.holding:
                return ONE_TURN  # the application goes on once its response has been written
        elif kind == "http.response.pathsend":
            if not self.started:
                raise RuntimeError("http.response.pathsend before http.response.start")
            self._pathsend(os.fspath(message["path"]))
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} for an HTTP request")
        return self.finished

    def _start(self, status: int, headers: Any) -> None:
        self.status = status
        self.headers = headers
        lines = [STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status]
        self.chunked = True  # unless the application gives the length
        has_date = has_server = False
        for raw_name, raw_value in headers:
            name, value = as_bytes(raw_name), as_bytes(raw_value)
            if breaks_the_line(name, value):
                raise RuntimeError(f"header {name!r} holds CR, LF or NUL")
            lower = name.lower()
            if lower == b"content-length":
                self.chunked = False
                self.declared = int(value)
            elif lower == b"connection":
                if b"close" in value.lower():
                    self.keep_alive = False
                continue
            elif lower == b"transfer-encoding":
                continue  # ours to decide
            elif lower == b"date":
                has_date = True
            elif lower == b"server":
                has_server = True
            lines += (name, b": ", value, b"\r\n")  # joined once, with the whole head
        if not has_server:
            lines.append(SERVER_LINE)
        if not has_date:
            lines.append(date_line())
        self._head = lines

    def _finish_head(self, body_length: int | None) -> bytes:
        lines = self._head
        if connection_ends(self.rt):
            self.keep_alive = False
        if self.status in (204, 304) or self.status < 200:
            self.chunked = False  # no body, and no length: RFC 9110 forbids one on 1xx and 204
        elif body_length is not None and self.chunked:
            lines.append(b"Content-Length: %d\r\n" % body_length)  # for HEAD: what a GET would have had
            self.chunked = False
        elif self.chunked:
            if self.head_only:
                self.chunked = False  # nothing follows a HEAD response
            elif self.version == "1.1":
                lines.append(b"Transfer-Encoding: chunked\r\n")
            else:
                self.keep_alive = False  # HTTP/1.0: the body ends with the connection
                self.chunked = False
        lines.append(CONNECTION_LINES[self.keep_alive])
        lines.append(b"\r\n")
        head = b"".join(lines)
        self._head = []
        return head

    def _send_body(self, body: bytes, more: bool) -> bool:
        """Write a body piece; whether the application must now wait for the client to take its output."""
        no_body = self.head_only or self.status in (204, 304) or self.status < 200
        if not no_body and self.declared is not None and self.length + len(body) > self.declared:
            # More than the Content-Length would be read by the client as the next response.
            raise RuntimeError(f"the response body runs over its Content-Length ({self.declared})")
        if self._head:  # the first body message carries the head
            if not more:
                head = self._finish_head(len(body))
                self._write(head if no_body else head + body, True)
                self.length = 0 if no_body else len(body)
                self._end()
                return False
            self._write(self._finish_head(None), False)
        if not no_body and body:
            self._write(b"%x\r\n%s\r\n" % (len(body), body) if self.chunked else body, not more)
            self.length += len(body)
        if more:
            return self.rt.factory.queued_output(self.session_id) > self.drain_limit
        if self.chunked and not no_body:
            self._write(b"0\r\n\r\n", True)
        self._end()
        return False

    def _pathsend(self, path: str) -> None:
        size = os.stat(path).st_size
        if self.declared is not None and self.declared != size:
            raise RuntimeError(f"pathsend of {size} bytes under a Content-Length of {self.declared}")
        head = self._finish_head(size)
        self._write(head, False)
        if not self.head_only and size and not self.sink.sendfile(path, 0, size):
            self.ended = self.gone = True
            raise ClientDisconnected("the client went away")
        self.length = 0 if self.head_only else size
        self._end()

    def _write(self, data: bytes, last: bool) -> None:
        """Send response bytes; the ``last`` of a response leave with the other responses completed in this
        loop pass (``send_soon``), since the task returns to the loop right after. Earlier ones go at once: a
        streaming body's back-pressure is measured on the socket's buffer."""
        if not (self.sink.send_soon(data) if last else self.sink.send(data)):
            self.ended = self.gone = True
            raise ClientDisconnected("the client went away")

    def _end(self) -> None:
        self.ended = True
        no_body = self.head_only or self.status in (204, 304) or self.status < 200
        if not no_body and self.declared is not None and self.length < self.declared:
            logger.error("ASGI response of session %d ended %d bytes short of its Content-Length; connection closed",
                         self.session_id, self.declared - self.length)  # fmt: skip
            self.keep_alive = False  # the client is left waiting for the rest: only the close tells it
        self.sink.finish(self.keep_alive)
        self.answered(self.status, self.length, self.headers)

    async def _drain(self) -> None:
        """Back-pressure: wait while the client has not taken most of what was sent."""
        delay = 0.001
        while self.rt.factory.queued_output(self.session_id) > self.drain_limit:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    async def disconnected(self) -> None:
        """Return once the client has gone away or the response is complete (ASGI's ``http.disconnect``)."""
        while not self.ended and self.rt.factory.exist(self.session_id):
            await asyncio.sleep(DISCONNECT_POLL)

    def failed(self) -> None:
        """The application raised: a 500 if nothing was sent yet, else the connection closes."""
        if self.ended:
            return
        if not self._head and self.started:
            self.ended = True
            self.sink.finish(False)
            return
        body = b"Internal Server Error"
        self.keep_alive = False
        head = b"".join((status_line(500), SERVER_LINE, date_line(), b"Content-Type: text/plain; charset=utf-8\r\n",
                         b"Content-Length: %d\r\n" % len(body), CONNECTION_LINES[False], b"\r\n"))  # fmt: skip
        self.ended = True
        if self.sink.send(head + body):
            self.sink.finish(False)
            self.answered(500, len(body), ())

    def done(self) -> None:
        """The application returned: a response it never completed is answered 500, or closed if it had begun."""
        if self.ended:
            return
        logger.error("ASGI application returned without completing its response (session %d)", self.session_id)
        self.failed()


class _WebSocketSession:
    """One ASGI WebSocket connection in the worker that owns it."""

    def __init__(self, rt: Runtime, fd: int) -> None:
        self.rt = rt
        self.fd = fd
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.verdict: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.established: asyncio.Future[None] = asyncio.get_running_loop().create_future()  # 101 sent, upgraded
        self.denial: asyncio.Queue[Message] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.accepted = False
        self.closed = False  # the client is gone
        self.close_sent = False
        self.close_code = 1006  # ASGI's code for a connection that ended without a close frame

    async def receive(self) -> Message:
        return await self.inbox.get()

    async def send(self, message: Message) -> None:
        kind = message["type"]
        server = self.rt.server
        if not self.verdict.done():
            if kind in ("websocket.accept", "websocket.close", "websocket.http.response.start"):
                self.verdict.set_result(message)
                if kind == "websocket.accept":
                    await self.established
                return
            raise RuntimeError(f"{kind!r} before the WebSocket was accepted")
        if kind == "websocket.http.response.body":
            await self.denial.put(message)
            return
        if self.closed or self.close_sent:
            raise ClientDisconnected("the WebSocket is closed")
        if kind == "websocket.send":
            text = message.get("text")
            data: str | bytes = text if text is not None else bytes(message.get("bytes") or b"")
            if not server.push(self.fd, data):
                raise ClientDisconnected("the WebSocket is closed")
        elif kind == "websocket.close":
            self.close_sent = True
            server.disconnect(self.fd, int(message.get("code", 1000)), str(message.get("reason") or ""))
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} on a WebSocket")

    async def denial_body(self) -> bytes:
        parts = []
        while True:
            message = await self.denial.get()
            parts.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                return b"".join(parts)

    def _end_denial(self) -> None:
        """The application stopped while a denial response's body was still owed: what it sent is all."""
        if self.verdict.done() and self.verdict.result()["type"] == "websocket.http.response.start":
            self.denial.put_nowait({"type": "websocket.http.response.body", "body": b""})

    def failed(self) -> None:
        self._end_denial()
        if not self.verdict.done():
            self.verdict.set_result({"type": "websocket.close", "code": 1011, "failed": True})
        elif self.accepted and not self.closed and not self.close_sent:
            self.close_sent = True
            self.rt.server.disconnect(self.fd, 1011, "internal error")

    def ended(self) -> None:
        self._end_denial()
        if not self.verdict.done():
            self.verdict.set_result({"type": "websocket.close", "code": 1000})
        elif self.accepted and not self.closed and not self.close_sent:
            self.close_sent = True
            self.rt.server.disconnect(self.fd, 1000, "")


def as_bytes(value: Any) -> bytes:
    """``bytes(value)`` without the call for what already is bytes (nearly always, in ASGI): calling the type costs
    more than the whole check, per header and per body."""
    return value if type(value) is bytes else bytes(value)


def _cancelled(exc: BaseException) -> bool:
    """Whether ``exc`` is this task being cancelled (the worker stopping), not a CancelledError the application
    raised by itself."""
    task = asyncio.current_task()
    return isinstance(exc, asyncio.CancelledError) and task is not None and task.cancelling() > 0
