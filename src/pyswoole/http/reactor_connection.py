"""PROCESS mode: an HTTP/1.1 connection owned by a reactor thread of the master.

The reactor parses (``Conversation``) and sends a worker one whole request at a time (``HTTP_REQUEST``), so a
slow client never holds a worker; the worker's response comes back as plain sends, then ``HTTP_RESPONSE_END``
lets the next pipelined request go. Static files, malformed requests and the header timeout are answered here
without a worker.

Invariants: at most one request of a connection is with a worker, and none while the output is over the high
watermark (a client that does not read its answers; reading stops once enough waits); a request whose worker
died before answering closes its connection (the client may retry) rather than leaving it waiting forever.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Final

from ..constants import EventType
from ..ipc import codec
from ..ipc.shm import Conn, count_http_status
from ..log import logger
from ..runtime.connection import FILES_WAITING_MAX
from ..runtime.reactor import ReactorConnection
from ..websocket.frames import parse_close_payload
from ..websocket.service import pack_delivery
from ..websocket.session import CLOSE_TIMEOUT
from .conversation import Conversation, owed_since
from .headers import error_response
from .parser import ParseError, Upgraded, WholeRequest, pack_request
from .sink import KEEP_ALIVE, UPGRADED
from .static import open_reply_file

if TYPE_CHECKING:
    from ..port import Port, PortHandlers
    from ..runtime.reactor import ReactorThread
    from ..websocket.session import WebSocketSession
    from .service import HttpService

_now: Final = time.time
_HTTP_REQUEST: Final = int(EventType.HTTP_REQUEST)
_RESPONSE_END: Final = int(EventType.HTTP_RESPONSE_END)
_WEBSOCKET_MESSAGE: Final = int(EventType.WEBSOCKET_MESSAGE)
_WEBSOCKET_CLOSE: Final = int(EventType.WEBSOCKET_CLOSE)
_LAST_RECV_TIME: Final = Conn.LAST_RECV_TIME
_LAST_DISPATCH_TIME: Final = Conn.LAST_DISPATCH_TIME
_HTTP_WORKER_PID: Final = Conn.HTTP_WORKER_PID
NO_WORKER: Final = -1


class HttpReactorConnection(ReactorConnection):
    __slots__ = (
        "owner",
        "service",
        "conversation",
        "owing_since",
        "advancing",
        "http_throttled",
        "upgrade",
        "worker_id",
        "worker_seen_dead",
        "close_timer",
    )

    def __init__(
        self,
        reactor: ReactorThread,
        port: Port,
        handlers: PortHandlers,
        session_id: int,
        base: int,
        service: HttpService,
    ) -> None:
        super().__init__(reactor, port, handlers, session_id, base)
        self.framer = None  # HTTP frames its own requests
        self.owner = reactor
        self.service = service
        self.conversation = Conversation(service.new_parser(), service.max_body_size)
        # When the client began to owe a complete header section (time.monotonic; 0: it owes none now).
        self.owing_since = 0.0
        self.advancing = False
        self.http_throttled = False
        self.upgrade: WebSocketSession | None = None  # after an accepted WebSocket upgrade
        self.close_timer: asyncio.TimerHandle | None = None
        self.worker_id = NO_WORKER  # the worker the current request went to
        self.worker_seen_dead = False  # the last look found the process that took it gone

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
        now = counters.now
        self.last_recv_time = now
        self.table_d[self.base + _LAST_RECV_TIME] = now
        counters.recv_bytes += len(data)
        if self.upgrade is not None:
            self._websocket_receive(data)
            return
        interim = self.conversation.receive(data)
        if interim:
            self.owner.write(self, interim)
        self._advance()

    def _advance(self) -> None:
        if self.advancing:
            return
        self.advancing = True
        conversation = self.conversation
        try:
            # overflow, or files waiting: the client does not read its answers
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
                        self.owner.force_close(self)
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
        static = self.service.static
        if static is not None and (head.method == "GET" or head.method == "HEAD"):
            reply = static.serve(head.method, head.path, head.headers, head.keep_alive)
            if reply is not None:
                file_fd = open_reply_file(reply)
                if file_fd == -1:
                    self._reject(404, "the static file went away")
                    return
                self.owner.write(self, reply.head + reply.body)
                length = len(reply.body)
                if reply.file is not None:
                    self.send_file(file_fd, reply.file.offset, reply.file.length)
                    length += reply.file.length
                self.service.answers.answered(self.counters, head, self.remote_ip, reply.status, length, _now())
                self._answered(reply.keep_alive)
                return
        reactor = self.owner
        worker_id = reactor.dispatcher.worker_for(self.base, self.socket_fd, EventType.RECV_DATA)
        if worker_id < 0:
            self._reject(503, "no worker to dispatch to")
            return
        counters = self.counters
        if not counters.pending:
            counters.moved()
        now = counters.now
        self.last_dispatch_time = now
        self.table_d[self.base + _LAST_DISPATCH_TIME] = now
        counters.dispatch += 1
        self.worker_id = worker_id
        self.worker_seen_dead = False
        self.table_q[self.base + _HTTP_WORKER_PID] = 0  # the worker that takes it writes its pid
        reactor.to_worker(
            worker_id,
            codec.Message(
                _HTTP_REQUEST,
                self.session_id,
                self.reactor_id,
                self.server_fd,
                0,
                now,
                pack_request(head, body),
            ),
        )

    def _reject(self, status: int, reason: str) -> None:
        logger.info("session %d from %s: %d %s; closed", self.session_id, self.remote_ip, status, reason)
        self.owner.write(self, error_response(status))
        count_http_status(self.counters, status)
        self.owner.force_close(self, flush=True)

    def _answered(self, keep_alive: bool) -> None:
        self.worker_id = NO_WORKER
        if not keep_alive:
            self.owner.force_close(self, flush=True)
            return
        interim = self.conversation.answered()
        if interim and not self.closed:
            self.owner.write(self, interim)
        if not self.advancing:
            self._advance()

    def protocol_message(self, message: codec.Message) -> None:
        kind = message.type
        if kind == _RESPONSE_END:
            if self.worker_id == NO_WORKER:
                return
            if message.ext_flags & UPGRADED:
                websocket = self.service.websocket
                assert websocket is not None
                self.upgrade = websocket.new_session(self.table_q[self.base + Conn.PROTOCOL_FLAGS])
            self._answered(bool(message.ext_flags & KEEP_ALIVE))
        elif kind == _WEBSOCKET_CLOSE:
            self._websocket_close(message.data)
        else:
            super().protocol_message(message)

    # WebSocket ---------------------------------------------------------------------------------------------

    def _websocket_receive(self, data: bytes) -> None:
        session = self.upgrade
        assert session is not None
        received = session.receive(data)
        reactor = self.owner
        if received.reply and not self.closed:
            reactor.write(self, received.reply)
        if received.messages:
            worker_id = reactor.dispatcher.worker_for(self.base, self.socket_fd, EventType.RECV_DATA)
            now = _now()
            for message in received.messages:
                self.counters.dispatch += 1
                ext_flags, payload = pack_delivery(message)
                reactor.to_worker(
                    worker_id,
                    codec.Message(_WEBSOCKET_MESSAGE, self.session_id, self.reactor_id, self.server_fd, ext_flags, now,
                                  payload),
                )  # fmt: skip
        if received.close and not self.closed:
            reactor.force_close(self, flush=True)

    def _websocket_close(self, payload: bytes) -> None:
        session = self.upgrade
        if session is None or self.closed:
            return
        frame = session.close(*parse_close_payload(payload))
        if frame:
            self.owner.write(self, frame)
            self.close_timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self._close_timed_out)

    def _close_timed_out(self) -> None:
        self.close_timer = None
        if not self.closed:
            self.owner.force_close(self, flush=True)

    @property
    def waiting_for_worker(self) -> bool:
        return self.worker_id != NO_WORKER

    def worker_lost(self) -> bool:
        """Whether the worker process that took this connection's request has died without answering: true at
        the second look in a row that finds it gone, since its answer may still be in the pipe at the first.

        Not the worker id's current process: a request still in a pipe is taken by whichever process reads that
        pipe next (a replacement, after a crash or a reload), and one that a reloaded worker took is answered by
        that old process while it drains."""
        pid = self.table_q[self.base + _HTTP_WORKER_PID]
        dead = False
        if pid and self.worker_id != NO_WORKER:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                dead = True
            except PermissionError:
                pass  # it exists
        lost = dead and self.worker_seen_dead
        self.worker_seen_dead = dead
        return lost

    def abandon(self) -> None:
        """The worker died with the request: close, so that the client may retry elsewhere."""
        logger.warning(
            "session %d: worker %d exited before answering its request; connection closed",
            self.session_id,
            self.worker_id,
        )
        self.worker_id = NO_WORKER
        self.owner.force_close(self, flush=True)

    # Limits ------------------------------------------------------------------------------------------------

    def resume_writing(self) -> None:
        """The client has read enough of its answers: serve its next pipelined request (see ``_advance``)."""
        super().resume_writing()
        if not self.closed and self.upgrade is None:
            self._advance()

    def file_started(self) -> None:
        if not self.closed and self.upgrade is None:
            self._advance()  # it may have stopped at FILES_WAITING_MAX

    def _watch_header(self) -> None:
        self.owing_since = owed_since(self.owing_since, self.upgrade is None and self.conversation.awaiting_head)

    def sweep(self, now: float) -> None:
        """The service's look, twice a second: is the client too late with its header section, or did the worker
        that has its request die?"""
        timeout = self.service.header_timeout
        if timeout and self.owing_since and now - self.owing_since >= timeout and not self.closed:
            self._header_timed_out()
        elif self.worker_id != NO_WORKER and not self.closed and self.worker_lost():
            self.abandon()

    def _header_timed_out(self) -> None:
        self.owing_since = 0.0
        if self.conversation.parser.in_head:
            logger.info(
                "session %d from %s: no complete request header within %s s (http_header_timeout); closed",
                self.session_id,
                self.remote_ip,
                self.service.header_timeout,
            )
            self.owner.write(self, error_response(408))
        self.owner.force_close(self, flush=True)

    def _throttle(self) -> None:
        transport = self.transport
        if transport is None or self.closed:
            return
        over = self.conversation.over_limit
        if over and not self.http_throttled:
            self.http_throttled = True
            transport.pause_reading()
        elif not over and self.http_throttled:
            self.http_throttled = False
            if not self.paused:
                transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.service.untrack(self)
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None
        super().connection_lost(exc)
