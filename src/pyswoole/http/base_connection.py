"""BASE mode: an HTTP/1.1 connection in the worker that accepted it.

Bytes are parsed here (``Conversation``), each whole request is answered here by the Request callback (the
connection is the response's sink: its bytes go straight to the transport), static files are served without a
callback, and after an accepted upgrade the connection becomes a WebSocket session of this worker.

Invariants: requests are answered one at a time, in order; the next one waits while the output is over
``socket_buffer_size`` (a client that does not read its answers), and reading stops while too much waits
unanswered, so a connection's memory stays bounded whatever the client sends; a client that does not send a
complete header section within ``http_header_timeout`` is closed.
Once the worker stops, a connection closes after the response it owes, and an idle one (or one accepted in the
loop pass of the stop) waits ``STOP_GRACE`` for the request its client may be sending at that very moment
(answered with ``Connection: close``, then closed), so that a reload loses no request; a WebSocket upgrade
then gets 503 and the close, rather than a session the stopping worker would have to reset.
"""

from __future__ import annotations

import asyncio
import fcntl
import termios
import time
from typing import TYPE_CHECKING, Final

from ..constants import ErrorCode, EventType
from ..ipc import codec
from ..ipc.shm import count_http_status
from ..log import logger
from ..protocol.sendfile import open_file
from ..runtime.connection import FILES_WAITING_MAX
from ..runtime.worker import WorkerConnection
from ..websocket.frames import parse_close_payload
from ..websocket.session import CLOSE_TIMEOUT
from .conversation import Conversation, owed_since
from .headers import error_response
from .parser import ParseError, Upgraded, WholeRequest
from .sink import KEEP_ALIVE
from .static import open_reply_file

if TYPE_CHECKING:
    from ..port import Port, PortHandlers
    from ..runtime.worker import EventWorker
    from ..websocket.session import WebSocketSession
    from .service import HttpService

_now: Final = time.time
_RESPONSE_END: Final = int(EventType.HTTP_RESPONSE_END)
STOP_GRACE: Final = 1.0  # seconds an idle keep-alive connection of a stopping worker waits for one more request
_NONE_UNREAD: Final = bytes(4)  # FIONREAD's int when the socket holds nothing unread
_WEBSOCKET_CLOSE: Final = int(EventType.WEBSOCKET_CLOSE)


class HttpWorkerConnection(WorkerConnection):
    __slots__ = (
        "worker", "service", "conversation", "owing_since", "advancing", "throttled", "upgrade", "close_timer",
        "stuck", "stop_timer",
    )  # fmt: skip

    def __init__(self, worker: EventWorker, port: Port, handlers: PortHandlers, service: HttpService) -> None:
        super().__init__(worker, port, handlers)
        self.framer = None  # HTTP frames its own requests
        self.worker = worker
        self.service = service
        self.conversation = Conversation(service.new_parser(), service.max_body_size)
        # When the client began to owe a complete header section (time.monotonic; 0: it owes none now).
        self.owing_since = 0.0
        self.advancing = False  # inside _advance: a response finished meanwhile is picked up by its loop
        self.throttled = False  # reading stopped because too many requests wait
        self.upgrade: WebSocketSession | None = None  # after an accepted WebSocket upgrade
        self.close_timer: asyncio.TimerHandle | None = None  # a server-side close handshake's deadline
        self.stuck = False  # the output stayed over socket_buffer_size while the loop ran: the client is not reading
        self.stop_timer: asyncio.TimerHandle | None = None  # the worker stops: STOP_GRACE for an idle connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.ready:
            self.service.track(self)
            self._watch_header()

    def data_received(self, data: bytes) -> None:
        if self.paused:
            self.hold(data)
            return
        counters = self.counters
        if not counters.pending:
            counters.moved()
        self.last_recv_time = counters.now
        counters.recv_bytes += len(data)
        if self.upgrade is not None:
            self._websocket_receive(data)
            return
        interim = self.conversation.receive(data)
        if interim:
            self.write(interim)
        self._advance()

    def _advance(self) -> None:
        """Answer what is ready, in order, while nothing is being answered and the client reads what it got."""
        if self.advancing:
            return
        self.advancing = True
        conversation = self.conversation
        try:
            while not self.closed and not self.overflow and self.files_waiting < FILES_WAITING_MAX:
                item = conversation.next()
                if item is None:
                    break
                self.owing_since = 0.0
                if type(item) is tuple:
                    self._serve(item)
                elif type(item) is ParseError:
                    self._reject(item.status, item.reason)
                elif type(item) is Upgraded:
                    if self.upgrade is None:
                        logger.warning("session %d: an upgrade nobody accepted; closed", self.session_id)
                        self.worker.close(self.session_id)
                    else:
                        rest = conversation.upgraded_bytes()
                        if rest:
                            self._websocket_receive(rest)
        finally:
            self.advancing = False
        self._watch_header()
        self._throttle()

    def _serve(self, request: WholeRequest) -> None:
        head, body = request
        if self.worker.stopping:
            if head.upgrade == b"websocket" and self.service.websocket is not None:
                # A WebSocket opened now would outlive the drain (closed at max_wait_time, or reset): the client
                # is told to come back, to a worker that serves on.
                self._reject(503, "a WebSocket upgrade while the worker stops")
                return
            if head.keep_alive:
                head = head._replace(keep_alive=False)  # the connection's last request: its answer says so
        counters = self.counters
        if not counters.pending:
            counters.moved()
        self.last_dispatch_time = now = counters.now
        counters.dispatch += 1
        static = self.service.static
        if static is not None and (head.method == "GET" or head.method == "HEAD"):
            reply = static.serve(head.method, head.path, head.headers, head.keep_alive)
            if reply is not None:
                file_fd = open_reply_file(reply)
                if file_fd == -1:
                    self._reject(404, "the static file went away")
                    return
                self.write(reply.head + reply.body)
                length = len(reply.body)
                if reply.file is not None:
                    self.send_file(file_fd, reply.file.offset, reply.file.length)
                    length += reply.file.length
                self.service.answers.answered(counters, head, self.remote_ip, reply.status, length, now)
                self.finish(reply.keep_alive)
                return
        self.service.serve(self.worker, head, body, self.session_id, self.remote_ip, self.remote_port, now, self)

    def _reject(self, status: int, reason: str) -> None:
        """A request that cannot be served: its status, then close, whatever else the client sent."""
        logger.info("session %d from %s: %d %s; closed", self.session_id, self.remote_ip, status, reason)
        self.write(error_response(status))
        count_http_status(self.counters, status)
        self.worker.close(self.session_id)

    # The response's sink (http.response.ResponseSink) ---------------------------------------------------------

    def send(self, data: bytes) -> bool:
        if not self._may_send():
            return False
        self.write(data)
        self._count_send(len(data))
        return True

    def send_soon(self, data: bytes) -> bool:
        if not self._may_send():
            return False
        self.worker.output.write_soon(self, data)
        self._count_send(len(data))
        return True

    def _may_send(self) -> bool:
        # is_closing: a write already failed (the client left) while a blocking callback, a WSGI application
        # streaming its response, keeps the loop from running connection_lost, which sets ``closed``.
        if self.closed or self.transport.is_closing():  # type: ignore[union-attr]
            return self.worker.rt.fail(ErrorCode.SESSION_CLOSED)
        if self.stuck:  # a response streamed to a client that does not read: it cannot be completed
            logger.warning("session %d: output over socket_buffer_size; the response is cut, closed", self.session_id)
            self.worker.close(self.session_id, True)
            return self.worker.rt.fail(ErrorCode.OUTPUT_BUFFER_OVERFLOW)
        return True

    def _count_send(self, size: int) -> None:
        counters = self.counters
        counters.response += 1
        counters.send_bytes += size
        if not counters.pending:
            counters.moved()

    def sendfile(self, path: str, offset: int, length: int) -> bool:
        if self.closed:
            return self.worker.rt.fail(ErrorCode.SESSION_CLOSED)
        try:
            self.send_file(open_file(path), offset, length)
        except OSError as exc:
            # Checked by the response a moment ago; now unreadable, it cannot follow the head that promised it.
            logger.warning("sendfile to session %d: cannot open %s: %s; connection closed", self.session_id, path,
                           exc.strerror)  # fmt: skip
            self.worker.close(self.session_id)
            return self.worker.rt.fail(exc.errno or ErrorCode.INVALID_PARAMS)
        return True

    def finish(self, keep_alive: bool) -> None:
        """The current request is answered: on to the next one, or close (always, once the worker stops)."""
        if not keep_alive or (self.worker.stopping and self.upgrade is None):
            self.worker.close(self.session_id)
            return
        interim = self.conversation.answered()
        if interim and not self.closed:
            self.write(interim)
        if not self.advancing:
            self._advance()

    def fail(self, code: int) -> bool:
        return self.worker.rt.fail(code)

    def stop_serving(self) -> bool:
        """The worker stops (see the module's docstring): a WebSocket closes at once; a connection with a
        request under way closes after its response (``finish``); an idle one after STOP_GRACE."""
        if self.upgrade is not None or self.closed:
            return False
        if self.conversation.awaiting_head and self.stop_timer is None:
            self.stop_timer = asyncio.get_running_loop().call_later(STOP_GRACE, self._stop_idle)
        return True

    def _stop_idle(self) -> None:
        """STOP_GRACE is over: close, unless the client's next request has reached the socket meanwhile. The loop
        runs its timers before it reads the sockets, so that request is read in this very pass and answered (then
        the connection closes); closing over it would answer it with a reset."""
        self.stop_timer = None
        if self.closed or not self.conversation.awaiting_head:
            return
        if self._unread():
            self.stop_timer = asyncio.get_running_loop().call_later(STOP_GRACE, self._stop_idle)
            return
        self.worker.close(self.session_id)

    def _unread(self) -> bool:
        """Whether bytes from the client wait in the socket, not yet read."""
        try:
            return fcntl.ioctl(self.socket_fd, termios.FIONREAD, _NONE_UNREAD) != _NONE_UNREAD
        except OSError:
            return False

    def upgraded(self, flags: int) -> None:
        """The WebSocket handshake succeeded: from now on the connection reads frames."""
        websocket = self.service.websocket
        assert websocket is not None
        self.upgrade = websocket.new_session(flags)
        self.finish(True)

    def protocol_message(self, message: codec.Message) -> None:
        """A response ended in another process (``Response.create`` there, a detached response), or a
        ``disconnect()`` from anywhere."""
        if message.type == _RESPONSE_END:
            self.finish(bool(message.ext_flags & KEEP_ALIVE))
        elif message.type == _WEBSOCKET_CLOSE:
            self._websocket_close(message.data)
        else:
            super().protocol_message(message)

    # WebSocket ---------------------------------------------------------------------------------------------

    def _websocket_receive(self, data: bytes) -> None:
        session = self.upgrade
        assert session is not None
        received = session.receive(data)
        if received.reply and not self.closed:
            self.write(received.reply)
        websocket = self.service.websocket
        assert websocket is not None
        for message in received.messages:
            self.counters.dispatch += 1
            websocket.deliver(self.worker, self.session_id, message)
        if received.close and not self.closed:
            self.worker.close(self.session_id)

    def _websocket_close(self, payload: bytes) -> None:
        """``disconnect()``: a close frame, then the client's reply (or CLOSE_TIMEOUT) ends the connection."""
        session = self.upgrade
        if session is None or self.closed:
            return
        frame = session.close(*parse_close_payload(payload))
        if frame:
            self.write(frame)
            self.close_timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self._close_timed_out)

    def _close_timed_out(self) -> None:
        self.close_timer = None
        if not self.closed:
            self.worker.close(self.session_id)

    # Limits ------------------------------------------------------------------------------------------------

    def pause_writing(self) -> None:
        """The output is over socket_buffer_size. Writes go on until the loop has run once more: a callback that
        blocks (a WSGI application) cannot let the client read meanwhile, so its whole response is buffered; one
        that awaits between writes is refused (``send``) while the client still does not read."""
        super().pause_writing()
        asyncio.get_running_loop().call_soon(self._output_stuck)

    def _output_stuck(self) -> None:
        self.stuck = self.overflow

    def resume_writing(self) -> None:
        """The client has read enough of its answers: serve its next pipelined request (see ``_advance``)."""
        super().resume_writing()
        self.stuck = False
        if not self.closed and self.upgrade is None:
            self._advance()

    def file_started(self) -> None:
        if not self.closed and self.upgrade is None:
            self._advance()  # it may have stopped at FILES_WAITING_MAX

    def _watch_header(self) -> None:
        self.owing_since = owed_since(self.owing_since, self.upgrade is None and self.conversation.awaiting_head)

    def sweep(self, now: float) -> None:
        """The service's look, twice a second: is the client too late with its header section?"""
        timeout = self.service.header_timeout
        if timeout and self.owing_since and now - self.owing_since >= timeout and not self.closed:
            self._header_timed_out()

    def _header_timed_out(self) -> None:
        self.owing_since = 0.0
        if self.conversation.parser.in_head:
            logger.info(
                "session %d from %s: no complete request header within %s s (http_header_timeout); closed",
                self.session_id,
                self.remote_ip,
                self.service.header_timeout,
            )
            self.write(error_response(408))
        self.worker.close(self.session_id)

    def _throttle(self) -> None:
        """Stop reading while too much waits unanswered; read again once the queue drains."""
        transport = self.transport
        if transport is None or self.closed:
            return
        over = self.conversation.over_limit
        if over and not self.throttled:
            self.throttled = True
            transport.pause_reading()
        elif not over and self.throttled:
            self.throttled = False
            if not self.paused:
                transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.service.untrack(self)
        for timer in (self.close_timer, self.stop_timer):
            if timer is not None:
                timer.cancel()
        self.close_timer = self.stop_timer = None
        super().connection_lost(exc)
