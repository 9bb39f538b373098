"""A WebSocket port in the process model, on top of its HTTP service: the upgrade, the messages, and the
sessions that connections switch to.

A worker answers an upgrade request (:meth:`WebSocketService.upgrade`): the HandShake callback when there is
one, else the RFC 6455 handshake of ``handshake``; then Open. Once upgraded, the connection (wherever it lives)
reads frames with a ``WebSocketSession`` and each whole message reaches a worker's Message callback
(:meth:`WebSocketService.deliver`).

Invariants: a session is marked upgraded in shared memory before Open runs, so that Open (or anyone) may push to
it at once; Open runs only after the 101 response was sent; a refused upgrade closes the connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

from ..http.response import ResponseSink
from ..log import logger
from .frames import OPCODE_CLOSE, OPCODE_TEXT, CloseFrame, Frame, Opcode, parse_close_payload
from .handshake import Accepted, handshake
from .session import Delivery, WebSocketSession, deflate_of, upgraded_flags

OPCODE_MASK: Final = 0xF
FLAGS_SHIFT: Final = 4

if TYPE_CHECKING:
    from ..http.parser import RequestHead
    from ..http.request import Request
    from ..http.response import Response
    from ..port import Port
    from ..runtime.context import Runtime
    from ..runtime.worker import EventWorker


class UpgradeSink(ResponseSink, Protocol):
    """A response sink that can also switch its connection to WebSocket (both run modes' sinks can)."""

    def upgraded(self, flags: int) -> None: ...


class HandshakeSink:
    """The sink of the HandShake callback's response: its bytes go out, but ending it does not move the
    connection on; the callback's verdict does."""

    __slots__ = ("inner", "ended")

    def __init__(self, inner: ResponseSink) -> None:
        self.inner = inner
        self.ended = False

    def send(self, data: bytes) -> bool:
        return self.inner.send(data)

    def send_soon(self, data: bytes) -> bool:
        return self.inner.send_soon(data)

    def sendfile(self, path: str, offset: int, length: int) -> bool:
        return self.inner.sendfile(path, offset, length)

    def finish(self, keep_alive: bool) -> None:
        self.ended = True

    def fail(self, code: int) -> bool:
        return self.inner.fail(code)


class WebSocketService:
    def __init__(self, rt: Runtime, port: Port) -> None:
        self.rt = rt
        protocol = port.protocol
        self.max_message_size: int = protocol["package_max_length"]
        self.subprotocols: list[str] | None = protocol.get("websocket_subprotocol")
        self.compression: bool = protocol["websocket_compression"]
        self.deliver_ping: bool = protocol["open_websocket_ping_frame"]
        self.deliver_pong: bool = protocol["open_websocket_pong_frame"]
        self.deliver_close: bool = protocol["open_websocket_close_frame"]

    def new_session(self, flags: int) -> WebSocketSession:
        """The session a connection switches to once ``flags`` (see ``session.upgraded_flags``) were agreed."""
        return WebSocketSession(
            self.max_message_size, deflate_of(flags), self.deliver_ping, self.deliver_pong, self.deliver_close
        )

    # The worker side ----------------------------------------------------------------------------------------

    def upgrade(
        self,
        worker: EventWorker,
        head: RequestHead,
        request: Request,
        new_response: Callable[[ResponseSink], Response],
        sink: UpgradeSink,
        mark: Callable[[int], None],
    ) -> None:
        """Answer an upgrade request: HandShake decides if set, else the server's own handshake; then Open.
        ``mark(flags)`` records the session as upgraded in shared memory (before Open runs)."""
        callbacks = self.rt.callbacks
        custom = callbacks.get("handshake")
        if custom is not None:
            handshake_sink = HandshakeSink(sink)
            response = new_response(handshake_sink)

            def decided(error: Exception | None, accepted: Any) -> None:
                request.cleanup()
                if error is None and accepted is True and handshake_sink.ended and response.status_code == 101:
                    self._established(worker, request, sink, mark, upgraded_flags(None), run_open=False)
                else:
                    if error is None:
                        logger.info("session %d: HandShake refused the upgrade", request.fd)
                    sink.finish(False)

            worker.serve_unit("HandShake", custom, (request, response), decided)
            return
        answer = handshake(head.method, head.version, head.headers, self.subprotocols, self.compression)
        sink.send(answer.response)
        if not isinstance(answer, Accepted):
            logger.info("session %d: WebSocket handshake refused: %d %s", request.fd, answer.status, answer.reason)
            sink.finish(False)
            return
        self._established(worker, request, sink, mark, upgraded_flags(answer.deflate), run_open=True)

    def _established(
        self,
        worker: EventWorker,
        request: Request,
        sink: UpgradeSink,
        mark: Callable[[int], None],
        flags: int,
        run_open: bool,
    ) -> None:
        mark(flags)
        sink.upgraded(flags)
        callback = self.rt.callbacks.get("open")
        if run_open and callback is not None:
            worker.serve_unit("Open", callback, (self.rt.server, request), lambda error, result: request.cleanup())
        else:
            request.cleanup()

    def deliver_packed(self, worker: EventWorker, session_id: int, ext_flags: int, data: bytes) -> None:
        """PROCESS mode: a message as ``pack_delivery`` sent it across from the reactor thread."""
        opcode, flags = ext_flags & OPCODE_MASK, ext_flags >> FLAGS_SHIFT
        if opcode == OPCODE_TEXT:
            self.deliver(worker, session_id, Delivery(opcode, data.decode(), flags))
        elif opcode == OPCODE_CLOSE:
            code, reason = parse_close_payload(data)  # checked by the reactor's parser already
            self.deliver(worker, session_id, Delivery(opcode, data, flags, code, reason))
        else:
            self.deliver(worker, session_id, Delivery(opcode, data, flags))

    def deliver(self, worker: EventWorker, session_id: int, message: Delivery) -> None:
        """A whole message for the Message callback."""
        frame: Frame
        if message.opcode == OPCODE_CLOSE:
            frame = CloseFrame(
                session_id, message.data, Opcode.CLOSE, message.flags, True, message.code, message.reason
            )
        else:
            frame = Frame(session_id, message.data, message.opcode, message.flags, True)
        worker.serve_unit("Message", self.rt.callbacks["message"], (self.rt.server, frame), None)


def pack_delivery(message: Delivery) -> tuple[int, bytes]:
    """A message as it crosses from a reactor thread to a worker: (ext_flags, payload)."""
    data = message.data
    payload = data.encode() if isinstance(data, str) else data
    return message.opcode | message.flags << FLAGS_SHIFT, payload
