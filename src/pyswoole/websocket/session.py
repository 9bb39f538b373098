"""One upgraded connection, wherever it lives (a BASE worker, a PROCESS reactor thread): frames in, what the
application is given and what the protocol answers by itself out. Sans-IO.

``receive(data)`` returns a ``Received``: bytes to write at once (a pong, the reply to a close, the close frame
of a protocol error), the messages for the Message callback, and whether the connection ends once the bytes are
out. ``close(code, reason)`` starts a server-side close handshake.

Invariants: at most one close frame is ever sent; after a close frame in either direction no message is
delivered; pings are answered automatically unless ``open_websocket_ping_frame`` asks to deliver them.
"""

from __future__ import annotations

from typing import Final

from .deflate import PerMessageDeflate
from .frames import COMPRESS, FIN, OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG, close_payload, encode_frame, pack_close
from .parser import Close, FrameParser, Message, Ping, Pong, ProtocolError

# The upgraded state of a session, as every process sees it (shared memory: the session table in BASE mode, the
# connection table in PROCESS mode): established, and the agreed permessage-deflate's window, so that any process
# can frame (and compress) a message for it.
CLOSE_TIMEOUT: Final = 3.0  # seconds a client has to answer the server's close frame before the connection is closed
ESTABLISHED: Final = 1
DEFLATE: Final = 2
WINDOW_SHIFT: Final = 4


def upgraded_flags(deflate: PerMessageDeflate | None) -> int:
    if deflate is None:
        return ESTABLISHED
    return ESTABLISHED | DEFLATE | deflate.server_max_window_bits << WINDOW_SHIFT


def deflate_of(flags: int) -> PerMessageDeflate | None:
    return PerMessageDeflate(flags >> WINDOW_SHIFT) if flags & DEFLATE else None


class Delivery:
    """A message for the Message callback: Swoole's frame fields (close frames carry code and reason)."""

    __slots__ = ("opcode", "data", "flags", "code", "reason")

    def __init__(self, opcode: int, data: str | bytes, flags: int, code: int = 0, reason: str = "") -> None:
        self.opcode = opcode
        self.data = data
        self.flags = flags
        self.code = code
        self.reason = reason


class Received:
    """What one ``receive`` gives: bytes to write at once, the messages, and whether the connection then ends."""

    __slots__ = ("reply", "messages", "close")

    def __init__(self, reply: bytes, messages: list[Delivery], close: bool) -> None:
        self.reply = reply
        self.messages = messages
        self.close = close


class WebSocketSession:
    __slots__ = ("parser", "deflate", "deliver_ping", "deliver_pong", "deliver_close", "close_sent", "closed")

    def __init__(
        self,
        max_message_size: int,
        deflate: PerMessageDeflate | None,
        deliver_ping: bool = False,
        deliver_pong: bool = False,
        deliver_close: bool = False,
    ) -> None:
        self.parser = FrameParser(max_message_size, True, deflate)
        self.deflate = deflate
        self.deliver_ping = deliver_ping
        self.deliver_pong = deliver_pong
        self.deliver_close = deliver_close
        self.close_sent = False
        self.closed = False  # a close frame came, or a protocol error: nothing more is read

    def receive(self, data: bytes) -> Received:
        reply = b""
        messages: list[Delivery] = []
        close = False
        for event in self.parser.feed(data):
            kind = type(event)
            if kind is Message:
                message: Message = event  # type: ignore[assignment]
                messages.append(Delivery(message.opcode, message.data, FIN | COMPRESS if message.compressed else FIN))
            elif kind is Ping:
                if self.deliver_ping:
                    messages.append(Delivery(OPCODE_PING, event.payload, FIN))  # type: ignore[union-attr]
                elif not self.close_sent:
                    reply += encode_frame(OPCODE_PONG, event.payload)  # type: ignore[union-attr]
            elif kind is Pong:
                if self.deliver_pong:
                    messages.append(Delivery(OPCODE_PONG, event.payload, FIN))  # type: ignore[union-attr]
            elif kind is Close:
                code, reason = event.code, event.reason  # type: ignore[union-attr]
                if self.deliver_close:
                    payload = close_payload(code, reason) if code != 1005 else b""
                    messages.append(Delivery(OPCODE_CLOSE, payload, FIN, code, reason))
                if not self.close_sent:
                    self.close_sent = True
                    reply += pack_close(code)  # the client's code echoed (1005: an empty close frame)
                self.closed = close = True
            elif kind is ProtocolError:
                if not self.close_sent:
                    self.close_sent = True
                    reply += pack_close(event.code, event.reason)  # type: ignore[union-attr]
                self.closed = close = True
        return Received(reply, messages, close)

    def close(self, code: int, reason: str) -> bytes:
        """The close frame that starts a server-side close handshake; b"" when one was sent already."""
        if self.close_sent:
            return b""
        self.close_sent = True
        return pack_close(code, reason)
