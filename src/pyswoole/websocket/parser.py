"""The WebSocket frame parser of one connection: bytes in, whole messages and control events out (RFC 6455, 7692).

``FrameParser.feed(data)`` returns the events the bytes complete: a ``Message`` is a whole message (fragments
joined, inflated, text decoded), control frames come as ``Ping``, ``Pong`` and ``Close`` in the order they
arrived (between fragments too), and a broken rule ends the stream with one ``ProtocolError`` carrying the
close code to send. After a ``Close`` or a ``ProtocolError`` the parser takes nothing more.

Invariants: a header is checked as soon as it is complete, before its payload is waited for, so an oversized
message is refused (1009) without being buffered; the parser never holds more than ``max_message_size`` bytes
of message plus one partial frame of at most that message's remaining size, or of one control frame (131
bytes), plus its header.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Final

from pyswoole.websocket._mask import unmask_payload
from pyswoole.websocket.deflate import DeflateError, MessageTooBig, PerMessageDeflate
from pyswoole.websocket.frames import (
    CLOSE_MESSAGE_ERROR,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_PROTOCOL_ERROR,
    DEFAULT_MAX_MESSAGE_SIZE,
    InvalidClosePayload,
    Opcode,
    parse_close_payload,
)

TEXT: Final = Opcode.TEXT
BINARY: Final = Opcode.BINARY
_Utf8Decoder: Final = codecs.getincrementaldecoder("utf-8")


@dataclass(slots=True, init=False)
class Message:
    """A whole message: ``data`` is ``str`` for TEXT, ``bytes`` for BINARY; ``compressed`` if it came deflated.

    Not frozen, unlike the other events: one is made per received message, and a frozen class's fields can only
    be set through ``object.__setattr__`` (twice the cost of the parse's own work). Nothing changes one."""

    opcode: Opcode
    data: str | bytes
    compressed: bool

    def __init__(self, opcode: Opcode, data: str | bytes, compressed: bool = False) -> None:
        self.opcode = opcode
        self.data = data
        self.compressed = compressed


@dataclass(frozen=True, slots=True)
class Ping:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """A close frame: ``code`` 1005 and no reason when it had no payload."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """The peer broke a rule; close with ``code`` (``reason`` says which rule, short enough for a close frame)."""

    code: int
    reason: str


Event = Message | Ping | Pong | Close | ProtocolError


class _Failure(Exception):
    """Raised inside ``feed`` to end the stream with a ``ProtocolError``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class FrameParser:
    """Parses the frames one peer sends. The server's parser requires masked frames (``require_mask``);
    ``deflate`` is the connection's negotiated permessage-deflate, which allows RSV1 on a message's first
    frame. ``max_message_size`` bounds a message's payload, and a compressed message's inflated size.
    """

    __slots__ = (
        "_closed",
        "_decoder",
        "_deflate",
        "_fragments",
        "_max_size",
        "_message_compressed",
        "_message_opcode",
        "_message_size",
        "_needed",
        "_pending",
        "_require_mask",
    )

    def __init__(
        self,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        require_mask: bool = True,
        deflate: PerMessageDeflate | None = None,
    ) -> None:
        self._max_size = max_message_size
        self._require_mask = require_mask
        self._deflate = deflate
        self._closed = False
        # The start of a frame not yet whole, parsed once _needed bytes are there. One bytearray rather than a
        # list of the reads: a peer trickling a frame byte by byte must not cost an object per byte.
        self._pending = bytearray()
        self._needed = 0
        # The fragmented message in progress: its opcode (0 when none), payload so far, size, text validator.
        self._message_opcode = 0
        self._message_compressed = False
        self._message_size = 0
        self._fragments = bytearray()
        self._decoder: codecs.IncrementalDecoder | None = None

    def feed(self, data: bytes) -> list[Event]:
        """The events that ``data`` completes, in order; a ``ProtocolError`` or ``Close`` is the last ever."""
        if self._closed:
            return []
        if self._pending:
            self._pending += data
            if len(self._pending) < self._needed:
                return []
            data = bytes(self._pending)
            self._pending = bytearray()
        events: list[Event] = []
        size = len(data)
        position = 0
        try:
            while position < size:
                available = size - position
                if available < 2:
                    self._wait(data, position, 2)
                    break
                first = data[position]
                second = data[position + 1]
                opcode = first & 0x0F
                if first & 0x70 and (first & 0x70 != 0x40 or self._deflate is None or not 0 < opcode < 3):
                    raise _Failure(CLOSE_PROTOCOL_ERROR, "reserved bits set")
                masked = second & 0x80
                if not masked and self._require_mask:
                    raise _Failure(CLOSE_PROTOCOL_ERROR, "unmasked client frame")
                length = second & 0x7F
                if opcode & 0x08:
                    if opcode > 10:
                        raise _Failure(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
                    if not first & 0x80 or length > 125:
                        raise _Failure(CLOSE_PROTOCOL_ERROR, "control frame fragmented or over 125 bytes")
                    offset = 2
                else:
                    if opcode > 2:
                        raise _Failure(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
                    if opcode == 0:
                        if not self._message_opcode:
                            raise _Failure(CLOSE_PROTOCOL_ERROR, "continuation frame without a message")
                    elif self._message_opcode:
                        raise _Failure(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one")
                    if length < 126:
                        offset = 2
                    elif length == 126:
                        if available < 4:
                            self._wait(data, position, 4)
                            break
                        offset = 4
                        length = data[position + 2] << 8 | data[position + 3]
                    else:
                        if available < 10:
                            self._wait(data, position, 10)
                            break
                        offset = 10
                        length = int.from_bytes(data[position + 2 : position + 10], "big")
                        if length >> 63:
                            raise _Failure(CLOSE_PROTOCOL_ERROR, "64-bit length with its top bit set")
                    if self._message_size + length > self._max_size:
                        raise _Failure(CLOSE_MESSAGE_TOO_BIG, f"message over {self._max_size} bytes")
                start = position + offset + 4 if masked else position + offset
                end = start + length
                if end > size:
                    self._wait(data, position, end - position)
                    break
                payload = unmask_payload(data, start, end) if masked else data[start:end]
                position = end

                if first == 0x81:  # the common case, a whole uncompressed text message in one frame
                    try:
                        events.append(Message(TEXT, payload.decode(), False))
                    except UnicodeDecodeError:
                        raise _Failure(CLOSE_MESSAGE_ERROR, "text message is not UTF-8")
                elif opcode == 1 or opcode == 2:
                    compressed = first & 0x40 != 0
                    if first & 0x80:
                        events.append(self._message(opcode, payload, compressed))
                    else:
                        self._message_opcode = opcode
                        self._message_compressed = compressed
                        self._message_size = length
                        self._fragments += payload
                        if opcode == 1 and not compressed:
                            self._decoder = _Utf8Decoder()
                            self._validate(payload, False)
                elif opcode == 0:
                    self._message_size += length
                    self._fragments += payload
                    if self._decoder is not None:
                        self._validate(payload, first & 0x80 != 0)
                    if first & 0x80:
                        events.append(self._end_fragmented_message())
                elif opcode == 8:
                    try:
                        code, reason = parse_close_payload(payload)
                    except InvalidClosePayload as error:
                        raise _Failure(error.code, str(error))
                    self._finish()
                    events.append(Close(code, reason))
                    break
                elif opcode == 9:
                    events.append(Ping(payload))
                else:
                    events.append(Pong(payload))
        except _Failure as failure:
            self._finish()
            events.append(ProtocolError(failure.code, failure.reason))
        return events

    def _message(self, opcode: int, payload: bytes, compressed: bool) -> Message:
        if compressed:
            assert self._deflate is not None  # RSV1 is refused in the header without it
            try:
                payload = self._deflate.decompress(payload, self._max_size)
            except MessageTooBig:
                raise _Failure(CLOSE_MESSAGE_TOO_BIG, f"message inflates over {self._max_size} bytes")
            except DeflateError:
                raise _Failure(CLOSE_MESSAGE_ERROR, "compressed message does not inflate")
        if opcode == 1:
            try:
                return Message(TEXT, payload.decode(), compressed)
            except UnicodeDecodeError:
                raise _Failure(CLOSE_MESSAGE_ERROR, "text message is not UTF-8")
        return Message(BINARY, payload, compressed)

    def _end_fragmented_message(self) -> Message:
        opcode, compressed, payload = self._message_opcode, self._message_compressed, bytes(self._fragments)
        self._message_opcode = 0
        self._message_size = 0
        self._fragments = bytearray()
        self._decoder = None
        return self._message(opcode, payload, compressed)

    def _validate(self, fragment: bytes, final: bool) -> None:
        """Check a text fragment as it comes, so bad UTF-8 fails the connection before the message ends."""
        assert self._decoder is not None
        try:
            self._decoder.decode(fragment, final)
        except UnicodeDecodeError:
            raise _Failure(CLOSE_MESSAGE_ERROR, "text message is not UTF-8")

    def _wait(self, data: bytes, position: int, needed: int) -> None:
        """Keep the partial frame at ``position`` until ``needed`` bytes of it have come."""
        self._pending = bytearray(memoryview(data)[position:])
        self._needed = needed

    def _finish(self) -> None:
        self._closed = True
        self._pending = bytearray()
        self._fragments = bytearray()
        self._decoder = None
