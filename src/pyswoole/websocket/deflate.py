"""permessage-deflate (RFC 7692): negotiating it from a client's offers, compressing and inflating messages.

The server always answers ``server_no_context_takeover`` and ``client_no_context_takeover`` (as Swoole does),
so every message is compressed and inflated on its own and a connection holds no zlib state between
messages. That costs some ratio on streams of similar messages, and buys memory: one compressor per thread
serves every connection (a full flush after each message empties its history, so nothing later refers back
to it) instead of ~260 KiB of compressor per connection, and a message is inflated by a fresh inflater
(0.2 us; its 32 KiB window lives only while the message is inflated). It also makes compressing in any
process or thread safe: no context has to follow a connection around.

Invariant: ``decompress`` never inflates more than ``max_size + 1`` bytes, whatever the input (zlib's
``max_length``), so a compression bomb is stopped after ``max_size`` bytes of output.
"""

from __future__ import annotations

import re
import threading
import zlib
from dataclasses import dataclass
from typing import Final

EXTENSION_NAME: Final = "permessage-deflate"
# The empty stored block a sync or full flush ends with: the sender strips it, the receiver puts it back.
_SYNC_TAIL: Final = b"\x00\x00\xff\xff"
# zlib cannot make a raw deflate stream with a 256-byte window: an offer that demands one is declined.
_WINDOW_BITS: Final = {str(bits): bits for bits in range(8, 16)}
_ZLIB_MIN_WINDOW_BITS: Final = 9

_TOKEN: Final = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED: Final = r'"(?:[^"\\]|\\.)*"'
_LEXEME: Final = re.compile(rf"[ \t]*(?:({_TOKEN})|({_QUOTED})|([;,=]))[ \t]*")
_ESCAPE: Final = re.compile(r"\\(.)")

# An extension offer: its name and its parameters in order, a parameter without a value having None.
Offer = tuple[str, list[tuple[str, str | None]]]


class DeflateError(ValueError):
    """A compressed message that does not inflate."""


class MessageTooBig(ValueError):
    """A compressed message whose inflated size passes the limit (the parser closes with 1009)."""


_threads = threading.local()


def _shared_compressor(window_bits: int) -> zlib._Compress:
    """This thread's compressor for ``window_bits``: shared by every connection, since no context is kept."""
    compressors: dict[int, zlib._Compress] | None = getattr(_threads, "compressors", None)
    if compressors is None:
        compressors = _threads.compressors = {}
    compressor = compressors.get(window_bits)
    if compressor is None:
        compressor = compressors[window_bits] = zlib.compressobj(
            zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -window_bits
        )
    return compressor


@dataclass(frozen=True, slots=True)
class PerMessageDeflate:
    """The agreed permessage-deflate of one connection: no context takeover either way.

    ``server_max_window_bits`` is the window the client allowed the server (15 unless it asked for less).
    """

    server_max_window_bits: int = 15

    def compress(self, payload: bytes) -> bytes:
        """A message's payload deflated, as RSV1 frames carry it (the trailing empty block removed)."""
        compressor = _shared_compressor(self.server_max_window_bits)
        # The full flush ends with the 4-byte empty block RFC 7692 strips, and resets the history.
        return (compressor.compress(payload) + compressor.flush(zlib.Z_FULL_FLUSH))[:-4]

    def decompress(self, payload: bytes, max_size: int) -> bytes:
        """A compressed message's payload inflated; ``MessageTooBig`` past ``max_size`` bytes, ``DeflateError``."""
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            inflated = inflater.decompress(payload + _SYNC_TAIL, max_size + 1)
        except zlib.error as error:
            raise DeflateError(f"compressed message does not inflate: {error}")
        if len(inflated) > max_size:
            raise MessageTooBig(f"compressed message inflates past {max_size} bytes")
        return inflated


def parse_extensions(value: str) -> list[Offer] | None:
    """The offers of a ``Sec-WebSocket-Extensions`` value (RFC 6455 section 9.1), or None if it is malformed."""
    lexemes: list[tuple[str, str]] = []
    position = 0
    while position < len(value):
        match = _LEXEME.match(value, position)
        if match is None:
            if value[position:].strip(" \t"):
                return None
            break
        token, quoted, separator = match.groups()
        if token is not None:
            lexemes.append(("token", token))
        elif quoted is not None:
            lexemes.append(("value", _ESCAPE.sub(r"\1", quoted[1:-1])))
        else:
            lexemes.append((separator, separator))
        position = match.end()
    offers: list[Offer] = []
    index = 0
    count = len(lexemes)
    while index < count:
        kind, text = lexemes[index]
        if kind == ",":  # empty list elements are allowed (RFC 9110 section 5.6.1)
            index += 1
            continue
        if kind != "token":
            return None
        params: list[tuple[str, str | None]] = []
        offers.append((text.lower(), params))
        index += 1
        while index < count and lexemes[index][0] == ";":
            if index + 1 >= count or lexemes[index + 1][0] != "token":
                return None
            name = lexemes[index + 1][1].lower()
            index += 2
            param_value: str | None = None
            if index < count and lexemes[index][0] == "=":
                if index + 1 >= count or lexemes[index + 1][0] not in ("token", "value"):
                    return None
                param_value = lexemes[index + 1][1]
                index += 2
            params.append((name, param_value))
        if index < count and lexemes[index][0] != ",":
            return None
    return offers


def negotiate(extensions: str) -> tuple[str, PerMessageDeflate] | None:
    """The first acceptable permessage-deflate offer of a ``Sec-WebSocket-Extensions`` value, or None.

    Returns the response header value and the connection's ``PerMessageDeflate``. An offer with an unknown,
    repeated or ill-valued parameter is declined (RFC 7692 section 5), and so is one that demands a window of 8
    bits, which zlib cannot make; the next offer is tried.
    """
    for name, params in parse_extensions(extensions) or ():
        if name == EXTENSION_NAME:
            accepted = _accept(params)
            if accepted is not None:
                return accepted
    return None


def _accept(params: list[tuple[str, str | None]]) -> tuple[str, PerMessageDeflate] | None:
    seen: set[str] = set()
    server_window: int | None = None
    for name, value in params:
        if name in seen:
            return None
        seen.add(name)
        if name in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                return None
        elif name == "server_max_window_bits":
            server_window = _WINDOW_BITS.get(value or "")
            if server_window is None or server_window < _ZLIB_MIN_WINDOW_BITS:
                return None
        elif name == "client_max_window_bits":
            # A hint that the client can limit its window; the inflater takes any window, so no answer.
            if value is not None and value not in _WINDOW_BITS:
                return None
        else:
            return None
    response = f"{EXTENSION_NAME}; server_no_context_takeover; client_no_context_takeover"
    if server_window is None:
        return response, PerMessageDeflate()
    return f"{response}; server_max_window_bits={server_window}", PerMessageDeflate(server_window)
