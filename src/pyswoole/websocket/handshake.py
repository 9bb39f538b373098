"""The WebSocket opening handshake, server side (RFC 6455 section 4.2): check an upgrade request and answer it.

``handshake()`` takes what the HTTP layer parsed (method, version, lower-cased header pairs) and the port's
settings, and returns either ``Accepted`` (the complete ``101 Switching Protocols`` response, the chosen
subprotocol, the connection's ``PerMessageDeflate`` or None) or ``Rejected`` (a complete 4xx response, to be
sent before the connection is closed, and no Open).

Invariant: a request is accepted only when every requirement of RFC 6455 section 4.2.1 checked here holds:
GET over HTTP/1.1, ``Upgrade: websocket``, ``Connection: upgrade``, one ``Sec-WebSocket-Key`` of 16
base64-encoded bytes and ``Sec-WebSocket-Version: 13``. (``Host`` is the HTTP layer's business.)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final

from pyswoole.websocket.deflate import PerMessageDeflate, negotiate

WEBSOCKET_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WEBSOCKET_VERSION: Final = b"13"
_KEY_BYTES: Final = 16


@dataclass(frozen=True, slots=True)
class Accepted:
    """The upgrade is accepted: send ``response``, then speak WebSocket (with ``deflate`` if not None)."""

    response: bytes
    subprotocol: str | None
    deflate: PerMessageDeflate | None


@dataclass(frozen=True, slots=True)
class Rejected:
    """The upgrade is refused: send ``response`` (status ``status``) and close; ``reason`` says why."""

    response: bytes
    status: int
    reason: str


def accept_key(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` value for a client's ``Sec-WebSocket-Key`` (RFC 6455 section 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + WEBSOCKET_GUID).digest())


def handshake(
    method: str,
    http_version: str,
    headers: Iterable[tuple[bytes, bytes]],
    subprotocols: str | Sequence[str] | None = None,
    compression: bool = False,
) -> Accepted | Rejected:
    """Check an upgrade request and build the answer.

    ``http_version`` is as httptools gives it (``"1.1"``); ``headers`` are (name, value) pairs with lower-cased
    names, a header sent twice appearing twice. ``subprotocols`` is the port's ``websocket_subprotocol``: a
    name, several names separated by commas, or a list; the first subprotocol the client offers that is among
    them is chosen (the client lists them by preference), and with none offered or none matching the response
    names none. With ``compression`` (``websocket_compression``) permessage-deflate is agreed when offered.
    A missing or malformed requirement gets 400; a ``Sec-WebSocket-Version`` other than 13 gets 426 naming 13.
    """
    fields: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        fields.setdefault(name, []).append(value.strip(b" \t"))
    if method != "GET":
        return _reject(HTTPStatus.BAD_REQUEST, f"a WebSocket upgrade is a GET, not {method}")
    if http_version != "1.1":
        return _reject(HTTPStatus.BAD_REQUEST, f"a WebSocket upgrade is an HTTP/1.1 request, not HTTP/{http_version}")
    if b"websocket" not in _tokens(fields.get(b"upgrade")):
        return _reject(HTTPStatus.BAD_REQUEST, "no 'Upgrade: websocket' header")
    if b"upgrade" not in _tokens(fields.get(b"connection")):
        return _reject(HTTPStatus.BAD_REQUEST, "no 'Connection: upgrade' header")
    keys = fields.get(b"sec-websocket-key", [])
    if len(keys) != 1 or not _is_valid_key(keys[0]):
        return _reject(HTTPStatus.BAD_REQUEST, "Sec-WebSocket-Key is not one base64-encoded 16-byte value")
    versions = fields.get(b"sec-websocket-version")
    if not versions:
        return _reject(HTTPStatus.BAD_REQUEST, "no Sec-WebSocket-Version header")
    if versions != [WEBSOCKET_VERSION]:
        return _reject(HTTPStatus.UPGRADE_REQUIRED, "only WebSocket version 13 is supported")

    lines = [
        b"HTTP/1.1 101 Switching Protocols",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Accept: " + accept_key(keys[0]),
        b"Sec-WebSocket-Version: " + WEBSOCKET_VERSION,
    ]
    subprotocol = _choose_subprotocol(fields.get(b"sec-websocket-protocol"), subprotocols)
    if subprotocol is not None:
        lines.append(b"Sec-WebSocket-Protocol: " + subprotocol.encode("latin-1"))
    deflate: PerMessageDeflate | None = None
    offers = fields.get(b"sec-websocket-extensions")
    if compression and offers:
        agreed = negotiate(b", ".join(offers).decode("latin-1"))
        if agreed is not None:
            extension, deflate = agreed
            lines.append(b"Sec-WebSocket-Extensions: " + extension.encode("latin-1"))
    return Accepted(b"\r\n".join(lines) + b"\r\n\r\n", subprotocol, deflate)


def _tokens(values: list[bytes] | None) -> set[bytes]:
    """The lower-cased items of a comma-separated header, over all its lines."""
    return {item.strip(b" \t").lower() for value in values or () for item in value.split(b",")}


def _is_valid_key(key: bytes) -> bool:
    try:
        return len(base64.b64decode(key, validate=True)) == _KEY_BYTES
    except binascii.Error:
        return False


def _choose_subprotocol(offered: list[bytes] | None, supported: str | Sequence[str] | None) -> str | None:
    if not offered or not supported:
        return None
    names = supported.split(",") if isinstance(supported, str) else supported
    accepted = {name.strip() for name in names} - {""}
    for value in offered:
        for item in value.decode("latin-1").split(","):
            name = item.strip(" \t")
            if name in accepted:
                return name
    return None


def _reject(status: HTTPStatus, reason: str) -> Rejected:
    body = reason.encode() + b"\n"
    lines = [
        f"HTTP/1.1 {status.value} {status.phrase}".encode(),
        b"Connection: close",
        b"Content-Type: text/plain; charset=utf-8",
        b"Content-Length: " + str(len(body)).encode(),
    ]
    if status == HTTPStatus.UPGRADE_REQUIRED:
        lines += [b"Upgrade: websocket", b"Sec-WebSocket-Version: " + WEBSOCKET_VERSION]
    return Rejected(b"\r\n".join(lines) + b"\r\n\r\n" + body, status.value, reason)
