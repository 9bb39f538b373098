"""An HTTP port in the process model: its connections in each run mode, and what a worker does with a request.

The facade sets one ``HttpService`` on every port that speaks HTTP (a ``PortProtocol``). Connections are the
BASE worker's (``base_connection``: parsed and answered in the worker) or the PROCESS reactor thread's
(``reactor_connection``: parsed in the reactor, one whole request at a time to a worker). Either way a worker
runs the Request callback through :meth:`HttpService.serve`, with a sink that carries the response to the
connection: the connection itself in BASE mode, the session's owner through the factory otherwise. On a
WebSocket port, upgrade requests and messages go to the port's ``WebSocketService`` instead.

Invariants: a request's response is ended exactly once (by the application, by ``serve`` when the callback
returns without ending it, or as a 500 when it raised before sending anything); the uploads' temp files are
removed once the callback is over.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

from ..constants import EventType
from ..ipc import codec
from ..ipc.shm import Conn
from ..log import logger
from .answers import Answers
from .headers import error_response
from .options import HttpOptions
from .parser import RequestHead, RequestParser, unpack_request
from .request import Request
from .response import Response
from .sink import SessionSink
from .static import StaticFiles

if TYPE_CHECKING:
    from ..port import Port, PortHandlers
    from ..runtime.connection import Connection
    from ..runtime.context import Runtime
    from ..runtime.reactor import ReactorThread
    from ..runtime.worker import EventWorker
    from ..websocket.service import UpgradeSink, WebSocketService
    from .response import ResponseSink


SWEEP_INTERVAL: Final = 0.5  # seconds between looks at a thread's HTTP connections (header deadlines, lost workers)


class SweptConnection(Protocol):
    def sweep(self, now: float) -> None: ...


# What a hosted application reports once a response is complete: its status, its body's length and its headers
# (bytes pairs), counted and access-logged as a Request callback's response is.
Answered = Callable[[int, int, Sequence[tuple[bytes, bytes]]], None]


class HttpApp(Protocol):
    """A hosted application (``HttpServer.mount``) that answers every HTTP request of a port in place of the
    Request callback: it gets the parsed head, the whole body, the connection's sink, and ``answered`` to report
    the response it completed."""

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
    ) -> None: ...


class HttpService:
    def __init__(
        self, rt: Runtime, port: Port, websocket: WebSocketService | None = None, app: HttpApp | None = None
    ) -> None:
        self.rt = rt
        self.port = port
        self.websocket = websocket
        self.app = app
        self.scheme = "https" if port.ssl else "http"
        self.answers = Answers(rt.setting["http_access_log"], rt.setting["http_access_log_format"])
        protocol = port.protocol
        self.options = HttpOptions.from_settings(protocol)
        self.max_header_size: int = protocol["http_header_max_size"]
        self.max_body_size: int = protocol["package_max_length"]
        self.header_timeout: float = protocol["http_header_timeout"]
        self._tracked: dict[int, set[SweptConnection]] = {}  # by thread (a worker's loop, a reactor's): see track
        document_root = protocol.get("document_root")
        self.static: StaticFiles | None = None
        if protocol["enable_static_handler"] and document_root:
            self.static = StaticFiles(
                document_root,
                protocol.get("static_handler_locations") or (),
                protocol.get("http_index_files") or (),
                protocol["http_autoindex"],
            )

    def new_parser(self) -> RequestParser:
        return RequestParser(self.max_header_size, self.max_body_size, allow_upgrade=self.websocket is not None)

    # PortProtocol ----------------------------------------------------------------------------------------

    def worker_connection(self, worker: EventWorker, port: Port, handlers: PortHandlers) -> Connection:
        from .base_connection import HttpWorkerConnection

        return HttpWorkerConnection(worker, port, handlers, self)

    def reactor_connection(
        self, reactor: ReactorThread, port: Port, handlers: PortHandlers, session_id: int, base: int
    ) -> Connection:
        from .reactor_connection import HttpReactorConnection

        return HttpReactorConnection(reactor, port, handlers, session_id, base, self)

    def worker_message(self, worker: EventWorker, message: codec.Message) -> None:
        """PROCESS mode: a whole request, or a WebSocket message, from the reactor that owns the connection."""
        if message.type == EventType.HTTP_REQUEST:
            table = self.rt.shared.table
            base = table.find(message.fd)
            if base < 0:
                return  # the client left while the request travelled: nobody to answer
            table.q[base + Conn.HTTP_WORKER_PID] = self.rt.worker_pid  # taken: see HttpReactorConnection.worker_lost
            head, body = unpack_request(message.data)
            remote_ip, remote_port = table.remote_ip(base), table.q[base + Conn.REMOTE_PORT]
            sink = SessionSink(self.rt, message.fd)
            self.serve(worker, head, body, message.fd, remote_ip, remote_port, message.time, sink)
        elif message.type == EventType.WEBSOCKET_MESSAGE and self.websocket is not None:
            self.websocket.deliver_packed(worker, message.fd, message.ext_flags, message.data)
        else:
            logger.warning("unexpected message type %d for an HTTP port", message.type)

    def track(self, conn: SweptConnection) -> None:
        """Look after a connection of this port, twice a second in its own thread's loop, until it is lost: its
        header deadline, and in PROCESS mode the worker process that has its request (``sweep``)."""
        thread = threading.get_ident()
        tracked = self._tracked.get(thread)
        if tracked is None:
            tracked = self._tracked[thread] = set()
            asyncio.get_running_loop().call_later(SWEEP_INTERVAL, self._sweep, thread)
        tracked.add(conn)

    def untrack(self, conn: SweptConnection) -> None:
        tracked = self._tracked.get(threading.get_ident())
        if tracked is not None:
            tracked.discard(conn)

    def _sweep(self, thread: int) -> None:
        tracked = self._tracked[thread]
        now = time.monotonic()
        for conn in list(tracked):
            conn.sweep(now)
        if tracked:
            asyncio.get_running_loop().call_later(SWEEP_INTERVAL, self._sweep, thread)
        else:
            del self._tracked[thread]

    # The worker side ----------------------------------------------------------------------------------------

    def serve(
        self,
        worker: EventWorker,
        head: RequestHead,
        body: bytes,
        session_id: int,
        remote_addr: str,
        remote_port: int,
        master_time: float,
        sink: UpgradeSink,
    ) -> None:
        """Run the Request callback for one whole request (or the upgrade, for a WebSocket handshake); end its
        response if the callback does not."""
        websocket = self.websocket
        if self.app is not None and (websocket is None or head.upgrade != b"websocket"):
            answers = self.answers

            def answered(status: int, length: int, headers: Sequence[tuple[bytes, bytes]]) -> None:
                answers.answered(worker.counters, head, remote_addr, status, length, master_time, headers)

            self.app.http(worker, head, body, session_id, remote_addr, remote_port, self.port.port, self.scheme, sink,
                          answered)  # fmt: skip
            return
        request = Request(head, body, session_id, remote_addr, remote_port, self.port.port, master_time, self.options)
        if websocket is not None and head.upgrade == b"websocket":
            websocket.upgrade(worker, head, request, lambda s: Response(s, head, self.options), sink,
                              lambda flags: self.rt.factory.set_protocol_flags(session_id, flags))  # fmt: skip
            return
        callback = self.rt.callbacks.get("request")
        if callback is None:  # a WebSocket port without a Request callback: plain HTTP is not served
            sink.send(error_response(400))
            sink.finish(False)
            return
        response = Response(sink, head, self.options)

        def done(error: Exception | None, result: Any) -> None:
            request.cleanup()
            if error is not None:
                if not response.fail_500():
                    sink.finish(False)  # the response had started: all that is left is to close
            elif not response.ended and not response.detached:
                response.end()
            if response.ended:
                answers = self.answers
                pairs = response.header_pairs() if answers.enabled else ()
                answers.answered(worker.counters, head, remote_addr, response.status_code, response.body_bytes,
                                 master_time, pairs)  # fmt: skip

        worker.serve_unit("Request", callback, (request, response), done)
