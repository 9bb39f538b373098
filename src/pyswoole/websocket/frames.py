"""WebSocket frames (RFC 6455 section 5): Swoole's numbers, the public ``Frame`` classes, encoding, pack and unpack.

``encode_frame`` is the one encoder: every frame pyswoole writes (messages, pongs, close frames, ``pack``) goes
through it. Frames the server sends are unmasked; a mask is only for a client (the tests' side) and ``pack``
with ``MASK``. ``unpack`` reads exactly one whole frame and raises ``ValueError`` for anything else; the
streaming reader for connections is ``parser.FrameParser``.
"""

from __future__ import annotations

import enum
import os
import struct
from dataclasses import dataclass
from typing import Final

from pyswoole.websocket._mask import apply_mask
from pyswoole.websocket.deflate import PerMessageDeflate

# The opcodes as plain ints, Swoole's WEBSOCKET_OPCODE_* (the per-message path compares with these: reading an
# enum member is a class attribute lookup); ``Opcode`` is the same numbers as an enum for the application.
OPCODE_CONTINUATION: Final = 0
OPCODE_TEXT: Final = 1
OPCODE_BINARY: Final = 2
OPCODE_CLOSE: Final = 8
OPCODE_PING: Final = 9
OPCODE_PONG: Final = 10


class Opcode(enum.IntEnum):
    CONTINUATION = OPCODE_CONTINUATION
    TEXT = OPCODE_TEXT
    BINARY = OPCODE_BINARY
    CLOSE = OPCODE_CLOSE
    PING = OPCODE_PING
    PONG = OPCODE_PONG


# Swoole's frame flags (swoole-src include/swoole_websocket.h): bits of ``Frame.flags`` and of the ``flags``
# argument of push and pack, not the bits of the wire header.
FIN: Final = 1
COMPRESS: Final = 2
RSV1: Final = 4
RSV2: Final = 8
RSV3: Final = 16
MASK: Final = 32

# Close codes, with Swoole's names (RFC 6455 section 7.4.1, and the IANA registry for 1012-1014).
CLOSE_NORMAL: Final = 1000
CLOSE_GOING_AWAY: Final = 1001
CLOSE_PROTOCOL_ERROR: Final = 1002
CLOSE_DATA_ERROR: Final = 1003  # a type of data the endpoint cannot accept
CLOSE_STATUS_ERROR: Final = 1005  # no status code in the close frame; never sent
CLOSE_ABNORMAL: Final = 1006  # the connection dropped without a close frame; never sent
CLOSE_MESSAGE_ERROR: Final = 1007  # data not consistent with the message type (text that is not UTF-8)
CLOSE_POLICY_ERROR: Final = 1008
CLOSE_MESSAGE_TOO_BIG: Final = 1009
CLOSE_EXTENSION_MISSING: Final = 1010
CLOSE_SERVER_ERROR: Final = 1011
CLOSE_SERVICE_RESTART: Final = 1012
CLOSE_TRY_AGAIN_LATER: Final = 1013
CLOSE_BAD_GATEWAY: Final = 1014
CLOSE_TLS: Final = 1015  # the TLS handshake failed; never sent

# Swoole's package_max_length default: the largest message a parser or unpack accepts unless told otherwise.
DEFAULT_MAX_MESSAGE_SIZE: Final = 2 * 1024 * 1024
MAX_CONTROL_PAYLOAD: Final = 125
MAX_CLOSE_REASON: Final = MAX_CONTROL_PAYLOAD - 2

_CONTROL_OPCODES: Final = frozenset({Opcode.CLOSE, Opcode.PING, Opcode.PONG})
_OPCODES: Final = {int(opcode): opcode for opcode in Opcode}
_pack_header_7: Final = struct.Struct("!BB").pack
_pack_header_16: Final = struct.Struct("!BBH").pack
_pack_header_64: Final = struct.Struct("!BBQ").pack
_CLOSE_CODE: Final = struct.Struct("!H")


# The __init__s are written out: one Frame is made per delivered message, and the compiled build runs a
# dataclass's generated __init__ as interpreted code, through an argument tuple and dict.
@dataclass(slots=True, init=False)
class Frame:
    """One WebSocket message as the application sees it (Swoole's ``Swoole\\WebSocket\\Frame``).

    ``data`` is ``str`` for a text message, ``bytes`` for binary and control frames. ``finish`` mirrors the
    FIN flag (always ``True`` for a delivered message, fragments being joined). An application may build one
    and hand it to ``push`` or ``pack``.
    """

    fd: int
    data: str | bytes
    opcode: int
    flags: int
    finish: bool

    def __init__(
        self, fd: int = 0, data: str | bytes = "", opcode: int = Opcode.TEXT, flags: int = FIN, finish: bool = True
    ) -> None:
        self.fd = fd
        self.data = data
        self.opcode = opcode
        self.flags = flags
        self.finish = finish


@dataclass(slots=True, init=False)
class CloseFrame(Frame):
    """A close frame: ``code`` and ``reason`` read from (or written to) its payload; ``data`` is the raw payload."""

    code: int
    reason: str

    def __init__(
        self,
        fd: int = 0,
        data: str | bytes = b"",
        opcode: int = Opcode.CLOSE,
        flags: int = FIN,
        finish: bool = True,
        code: int = CLOSE_NORMAL,
        reason: str = "",
    ) -> None:
        Frame.__init__(self, fd, data, opcode, flags, finish)  # not super(): slots=True makes a new class
        self.code = code
        self.reason = reason


class InvalidClosePayload(ValueError):
    """A close frame's payload that breaks RFC 6455 section 5.5.1; ``code`` is the close code it calls for."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def is_sendable_close_code(code: int) -> bool:
    """Whether ``code`` may travel in a close frame (RFC 6455 section 7.4, the IANA registry)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def parse_close_payload(payload: bytes) -> tuple[int, str]:
    """The code and reason of a close frame's payload; an empty payload reads as 1005 (no status) with no reason.

    Raises ``InvalidClosePayload`` with 1002 for a 1-byte payload or a code that may not be sent, 1007 for a
    reason that is not UTF-8.
    """
    if not payload:
        return CLOSE_STATUS_ERROR, ""
    if len(payload) == 1:
        raise InvalidClosePayload(CLOSE_PROTOCOL_ERROR, "close payload of 1 byte")
    (code,) = _CLOSE_CODE.unpack_from(payload)
    if not is_sendable_close_code(code):
        raise InvalidClosePayload(CLOSE_PROTOCOL_ERROR, f"close code {code} may not be sent")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        raise InvalidClosePayload(CLOSE_MESSAGE_ERROR, "close reason is not UTF-8")
    return code, reason


def encode_frame(opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False, mask: bytes | None = None) -> bytes:
    """One frame: header (7-, 16- or 64-bit length), then ``payload``, masked with the 4-byte ``mask`` if given.

    The caller answers for the frame's sense (a known opcode, control frames whole and at most 125 bytes).
    """
    first = opcode | 0x80 if fin else opcode
    if rsv1:
        first |= 0x40
    length = len(payload)
    if mask is None:
        if length < 126:
            return _pack_header_7(first, length) + payload
        if length < 0x10000:
            return _pack_header_16(first, 126, length) + payload
        return _pack_header_64(first, 127, length) + payload
    if length < 126:
        header = _pack_header_7(first, 0x80 | length)
    elif length < 0x10000:
        header = _pack_header_16(first, 0xFE, length)
    else:
        header = _pack_header_64(first, 0xFF, length)
    return header + mask + apply_mask(payload, mask)


def close_payload(code: int = CLOSE_NORMAL, reason: str = "") -> bytes:
    """The payload of a close frame; 1005 (no status, as a received empty close frame reads) gives an empty one.

    Raises ``ValueError`` for a code that may not be sent or a reason over 123 bytes of UTF-8.
    """
    if code == CLOSE_STATUS_ERROR and not reason:
        return b""
    if not is_sendable_close_code(code):
        raise ValueError(f"close code {code} may not be sent")
    encoded = reason.encode()
    if len(encoded) > MAX_CLOSE_REASON:
        raise ValueError(f"a close reason is at most {MAX_CLOSE_REASON} bytes of UTF-8, not {len(encoded)}")
    return _CLOSE_CODE.pack(code) + encoded


def pack_close(code: int = CLOSE_NORMAL, reason: str = "") -> bytes:
    """A server's close frame (for ``disconnect``, and to answer a close or a protocol error)."""
    return encode_frame(Opcode.CLOSE, close_payload(code, reason))


def pack(data: str | bytes | Frame, opcode: int | None = None, flags: int = FIN) -> bytes:
    """``WebSocketServer.pack``: one frame as Swoole packs it.

    ``opcode=None`` picks TEXT for ``str`` and BINARY for bytes. ``flags`` are Swoole's: FIN ends the message,
    COMPRESS deflates a whole text or binary message (RFC 7692, no context takeover) and sets RSV1, RSV1 sets
    it (for a payload deflated already), MASK masks the payload with a random key; RSV2 and RSV3 are read-only
    (Swoole's word) and ignored. A CLOSE frame carries code 1000 and ``data`` as its reason. A ``Frame`` is
    packed from its own fields (a ``CloseFrame`` from ``code`` and ``reason``, ``finish`` deciding FIN).
    Raises ``ValueError`` for an unknown opcode, a control frame that is fragmented or over 125 bytes, a
    compressed fragment or control frame, or a bad close code or reason.
    """
    if isinstance(data, Frame):
        frame = data
        flags = frame.flags | FIN if frame.finish else frame.flags & ~FIN
        if isinstance(frame, CloseFrame) or frame.opcode == Opcode.CLOSE:
            code = frame.code if isinstance(frame, CloseFrame) else CLOSE_NORMAL
            reason = frame.reason if isinstance(frame, CloseFrame) else _as_text(frame.data)
            return _pack_payload(close_payload(code, reason), Opcode.CLOSE, flags)
        return pack(frame.data, frame.opcode, flags)
    if opcode is None:
        opcode = Opcode.TEXT if isinstance(data, str) else Opcode.BINARY
    if opcode == Opcode.CLOSE:
        return _pack_payload(close_payload(CLOSE_NORMAL, _as_text(data)), opcode, flags)
    return _pack_payload(data.encode() if isinstance(data, str) else bytes(data), opcode, flags)


def message(data: str | bytes | Frame, opcode: int | None, flags: int, deflate: PerMessageDeflate | None) -> bytes:
    """A frame for ``push`` to one session: as ``pack``, but ``COMPRESS`` deflates with the window the session
    agreed to, and is dropped for a session that did not agree to permessage-deflate."""
    if flags == FIN and opcode is None and type(data) is str:  # the common push, kept short
        return encode_frame(OPCODE_TEXT, data.encode())
    if deflate is None:
        flags &= ~COMPRESS
    if isinstance(data, Frame):
        return pack(data, opcode, flags)
    if opcode is None:
        opcode = Opcode.TEXT if isinstance(data, str) else Opcode.BINARY
    payload = data.encode() if isinstance(data, str) else bytes(data)
    if flags & COMPRESS and deflate is not None and opcode in (Opcode.TEXT, Opcode.BINARY) and flags & FIN:
        return encode_frame(opcode, deflate.compress(payload), True, True)
    return _pack_payload(payload, opcode, flags & ~MASK)


def _as_text(data: str | bytes) -> str:
    return data if isinstance(data, str) else bytes(data).decode()


def _pack_payload(payload: bytes, opcode: int, flags: int) -> bytes:
    if opcode not in _OPCODES:
        raise ValueError(f"unknown opcode {opcode}")
    if opcode in _CONTROL_OPCODES and (not flags & FIN or len(payload) > MAX_CONTROL_PAYLOAD):
        raise ValueError(f"a control frame is whole (FIN) and at most {MAX_CONTROL_PAYLOAD} bytes")
    if flags & COMPRESS:
        if opcode not in (Opcode.TEXT, Opcode.BINARY) or not flags & FIN:
            raise ValueError("only a whole text or binary message can be compressed")
        payload = PerMessageDeflate().compress(payload)
        flags |= RSV1
    return encode_frame(opcode, payload, bool(flags & FIN), bool(flags & RSV1), os.urandom(4) if flags & MASK else None)


def unpack(data: bytes, max_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> Frame:
    """``WebSocketServer.unpack``: the ``Frame`` (a ``CloseFrame`` for a close frame) that ``data`` holds.

    A masked payload is unmasked (MASK in ``flags``); a text or binary frame with RSV1 is inflated as
    permessage-deflate, at most ``max_size`` bytes, its flags then showing COMPRESS instead of RSV1, as Swoole
    reports a compressed message. Raises ``ValueError`` unless ``data`` is exactly one whole, sound frame (a
    text frame's payload must be UTF-8 on its own, so a fragment cut inside a code point is refused).
    """
    size = len(data)
    if size < 2:
        raise ValueError(f"not a whole WebSocket frame: {size} bytes, a header alone is 2")
    first, second = data[0], data[1]
    opcode = _OPCODES.get(first & 0x0F)
    if opcode is None:
        raise ValueError(f"unknown opcode {first & 0x0F}")
    length = second & 0x7F
    offset = 2
    if length == 126:
        offset = 4
    elif length == 127:
        offset = 10
    if second & 0x80:
        offset += 4
    if size < offset:
        raise ValueError(f"not a whole WebSocket frame: {size} bytes, its header alone is {offset}")
    if length >= 126:
        length = int.from_bytes(data[2 : 4 if length == 126 else 10], "big")
    if size != offset + length:
        raise ValueError(f"not one whole WebSocket frame: {size} bytes, the frame is {offset + length}")
    payload = bytes(data[offset:])
    flags = first >> 7
    if first & 0x40:
        flags |= RSV1
    if first & 0x20:
        flags |= RSV2
    if first & 0x10:
        flags |= RSV3
    if second & 0x80:
        payload = apply_mask(payload, data[offset - 4 : offset])
        flags |= MASK
    if opcode in _CONTROL_OPCODES:
        if not flags & FIN or length > MAX_CONTROL_PAYLOAD:
            raise ValueError(f"a control frame is whole (FIN) and at most {MAX_CONTROL_PAYLOAD} bytes")
        if opcode == Opcode.CLOSE:
            code, reason = parse_close_payload(payload)
            return CloseFrame(0, payload, opcode, flags, True, code, reason)
    elif flags & RSV1 and opcode != Opcode.CONTINUATION:
        payload = PerMessageDeflate().decompress(payload, max_size)
        flags ^= RSV1 | COMPRESS
    if opcode == Opcode.TEXT:
        try:
            return Frame(0, payload.decode(), opcode, flags, bool(flags & FIN))
        except UnicodeDecodeError:
            raise ValueError("a text frame whose payload is not UTF-8")
    return Frame(0, payload, opcode, flags, bool(flags & FIN))
