"""The HTTP/1.1 request parser: bytes in, request events out, with llhttp (httptools) underneath.

One ``RequestParser`` per connection. ``feed(data)`` returns the events those bytes complete, in order:
``RequestHead``, ``BodyData``..., ``RequestEnd`` for each request (pipelined requests follow one another), and
at most one ``ParseError`` or ``Upgraded``, after which the parser takes no more input. Nor does it read on after a
request that closes the connection (``keep_alive`` False): its answer is the last.

The framing is decided here, not by llhttp: a header section ends at the first CRLF CRLF, a body by its
Content-Length or by the chunked decoder below. llhttp is fed exactly the same bytes, in the same pieces, and
validates the request line, the header fields and the chunk syntax; any disagreement between the two is a 400.
So the byte offsets that httptools does not report (where a request ends, what ``raw`` is, what follows an
upgrade) are known exactly, and no request can be framed in two ways.

Invariants: the parser holds at most ``max_header_size`` bytes of an unfinished header section or trailer plus
one chunk-size line, never body bytes; the bytes of a request, however they are cut into feeds, give the same
events (but for how the body is cut into ``BodyData``).
"""

from __future__ import annotations

import itertools
import re
import struct
from dataclasses import dataclass
from typing import Final, NamedTuple
from urllib.parse import unquote_to_bytes

import httptools

from .headers import HASH, PERCENT


class RequestHead(NamedTuple):
    """A request's line and header section.

    A NamedTuple rather than a frozen dataclass: it is built once per request on the hot path, and a tuple
    costs a quarter of a twelve-field frozen dataclass's ``__init__``; it is just as immutable.
    """

    method: str
    target: bytes  # the request-target as sent
    path: bytes  # the target without the query (and without scheme and authority in absolute form)
    query: bytes
    version: str  # "1.1" or "1.0"
    headers: list[tuple[bytes, bytes]]  # names lower-cased, values without surrounding whitespace, in order
    keep_alive: bool
    content_length: int | None
    chunked: bool
    expect_continue: bool
    upgrade: bytes | None  # the lower-cased Upgrade value, when the request upgrades (allow_upgrade only)
    raw: bytes  # the header section as received, request line included


@dataclass(frozen=True, slots=True)
class BodyData:
    data: bytes  # de-chunked


@dataclass(frozen=True, slots=True)
class RequestEnd:
    pass


@dataclass(frozen=True, slots=True)
class ParseError:
    """The request cannot be served: answer ``status`` and close. The parser takes nothing more."""

    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class Upgraded:
    """The upgrade request has ended; ``rest`` is what followed it in the same feed. The parser takes nothing
    more: later bytes belong to the protocol upgraded to."""

    rest: bytes


Event = RequestHead | BodyData | RequestEnd | ParseError | Upgraded
WholeRequest = tuple[RequestHead, bytes]  # a head and its whole de-chunked body

# NamedTuple's own __new__ is a Python function: the hot path builds heads without that call.
new_tuple: Final = tuple.__new__

REQUEST_END: Final = RequestEnd()
MAX_CHUNK_LINE: Final = 4096  # a chunk-size line with its extensions
HEX_DIGITS: Final = b"0123456789abcdefABCDEF"
VERSIONS: Final = {b"HTTP/1.1": "1.1", b"HTTP/1.0": "1.0"}
METHODS: Final[dict[bytes, str]] = {}  # llhttp's method names as str, filled as they are met
FRAMING_HEADERS: Final = frozenset({b"content-length", b"transfer-encoding", b"expect", b"upgrade"})
HTTP_VERSION: Final = re.compile(rb"HTTP/\d\.\d")

# Parser states.
IDLE: Final = 0  # between requests
HEAD: Final = 1  # inside a header section
BODY: Final = 2  # inside a Content-Length body
CHUNK_SIZE: Final = 3  # expecting a chunk-size line
CHUNK_DATA: Final = 4
CHUNK_DATA_END: Final = 5  # expecting the CRLF after chunk data
TRAILER: Final = 6  # inside the trailer section
CLOSED: Final = 7  # after a ParseError or an upgrade


class RequestParser:
    """Server-side HTTP/1.1 request parser for one connection (see the module docstring)."""

    __slots__ = (
        "max_header_size",
        "max_body_size",
        "allow_upgrade",
        "_state",
        "_llhttp",
        "_buffer",
        "_headers",
        "_framing",
        "_requests",
        "_llhttp_ends",
        "_llhttp_upgraded",
        "_check_body",
        "_upgrading",
        "_keep_alive",
        "_remaining",
        "_body_size",
        "_trailer_size",
    )

    def __init__(
        self, max_header_size: int = 65536, max_body_size: int = 2 * 1024 * 1024, allow_upgrade: bool = False
    ) -> None:
        self.max_header_size = max_header_size
        self.max_body_size = max_body_size
        self.allow_upgrade = allow_upgrade
        self._state = IDLE
        self._llhttp = httptools.HttpRequestParser(self)
        self._buffer = b""  # the unfinished header section, chunk-size line or trailer line
        self._headers: list[tuple[bytes, bytes]] = []
        self._framing: list[tuple[bytes, bytes]] = []  # the headers among them that frame or upgrade
        self._requests = 0  # requests whose header section was complete (since llhttp's last reset)
        self._llhttp_ends = 0  # ... and that llhttp saw end
        self._llhttp_upgraded = False
        self._check_body = True  # whether llhttp is fed the current body
        self._upgrading = False  # the current request ends in Upgraded
        self._keep_alive = True  # the current request's
        self._remaining = 0  # bytes left in the Content-Length body or in the chunk
        self._body_size = 0  # de-chunked bytes so far
        self._trailer_size = 0

    @property
    def in_head(self) -> bool:
        """Whether a request has started but its header section is not complete (for http_header_timeout)."""
        return self._state == HEAD

    @property
    def in_body(self) -> bool:
        """Whether a request's body (or its chunked trailer) is arriving."""
        return BODY <= self._state <= TRAILER

    # ---- llhttp's callbacks (httptools looks them up by name) ---------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        value = value.rstrip()  # spaces and tabs: llhttp refuses the other control characters in a value
        self._headers.append((name, value))
        if name in FRAMING_HEADERS:
            self._framing.append((name, value))

    def on_headers_complete(self) -> None:
        # llhttp forgets the Connection header once the message is complete: ask now.
        self._keep_alive = self._llhttp.should_keep_alive()

    def on_message_complete(self) -> None:
        self._llhttp_ends += 1

    # ---- feeding ------------------------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[Event]:
        """The events that ``data`` completes, in order; nothing after a ParseError or Upgraded."""
        events: list[Event] = []
        while data:
            state = self._state
            if state <= HEAD:
                data = self._feed_head(data, events)
            elif state == BODY:
                data = self._feed_body(data, events)
            elif state == CLOSED:
                break
            else:
                data = self._feed_chunked(data, events)
        return events

    def _fail(self, events: list[Event], status: int, reason: str) -> bytes:
        events.append(ParseError(status, reason))
        self._state = CLOSED
        self._buffer = b""
        return b""

    def _execute(self, piece: bytes) -> str | None:
        """Feed ``piece`` to llhttp; its complaint, if any."""
        try:
            self._llhttp.feed_data(piece)
        except httptools.HttpParserUpgrade:
            self._llhttp_upgraded = True
        except httptools.HttpParserError as error:
            return str(error) or "malformed request"
        return None

    def _feed_head(self, data: bytes, events: list[Event]) -> bytes:
        buffered = self._buffer
        if buffered:
            buffer = buffered + data
            start = len(buffered) - 3  # CRLF CRLF may straddle the two
        else:
            if self._state == IDLE:
                if data[0] in b"\r\n":  # empty lines before a request line are ignored (RFC 9112 2.2)
                    data = data.lstrip(b"\r\n")
                    if not data:
                        return b""
                self._state = HEAD
            buffer = data
            start = 0
        end = buffer.find(b"\r\n\r\n", start if start > 0 else 0)
        if end < 0:
            if len(buffer) > self.max_header_size:
                return self._fail(events, 431, "header section too large")
            complaint = self._execute(data)  # early, so that garbage is refused before the limit is reached
            if complaint is not None:
                return self._fail(events, malformed_status(buffer), complaint)
            self._buffer = buffer
            return b""
        head_end = end + 4
        if head_end > self.max_header_size:
            return self._fail(events, 431, "header section too large")
        piece = data[: head_end - len(buffered)]
        try:
            self._llhttp.feed_data(piece)
        except httptools.HttpParserUpgrade:
            self._llhttp_upgraded = True
        except httptools.HttpParserError as error:
            return self._fail(events, malformed_status(buffer), str(error) or "malformed request")
        self._buffer = b""
        raw = buffer[:head_end] if len(buffer) > head_end else buffer
        line_end = raw.find(b"\r\n")
        # Slices here never start past their end: mypyc's build raises SystemError on one (CPython gives b"").
        version = VERSIONS.get(raw[line_end - 8 : line_end]) if line_end >= 8 else None
        if version is None:  # llhttp takes HTTP/0.9 and HTTP/2.0 (and RTSP, ICE)
            return self._fail(events, malformed_status(raw), "HTTP version not supported")
        method_name = self._llhttp.get_method()  # bytes, one of llhttp's few method names
        method = METHODS.get(method_name)
        if method is None:
            method = METHODS[method_name] = method_name.decode("ascii")
        # The request line is "method SP target SP HTTP/x.y" (llhttp tolerates extra spaces around the target).
        start = len(method_name) + 1
        target = raw[start : max(start, line_end - 9)].strip(b" ")
        # Origin form is the usual case. (An int needle: ``in`` with a bytes one costs several times more.)
        if target[:1] == b"/" and 35 not in target:  # 35: "#"
            path, _, query = target.partition(b"?") if 63 in target else (target, b"", b"")  # 63: "?"
        else:
            path, query = split_target(target)
        headers = self._headers
        self._headers = []  # llhttp reports trailer fields too: they go there and are dropped
        requests = self._requests = self._requests + 1
        keep_alive = self._keep_alive
        content_length: int | None = None
        chunked = expect_continue = False
        upgrade: bytes | None = None
        if self._framing or self._llhttp_upgraded:
            framing = self._framing_fields(version, method)
            if isinstance(framing, ParseError):
                return self._fail(events, framing.status, framing.reason)
            content_length, chunked, expect_continue, upgrade = framing
        events.append(
            new_tuple(
                RequestHead,
                (
                    method,
                    target,
                    path,
                    query,
                    version,
                    headers,
                    keep_alive,
                    content_length,
                    chunked,
                    expect_continue,
                    upgrade,
                    raw,
                ),
            )
        )
        rest = data[len(piece) :]
        if chunked:
            self._state = CHUNK_SIZE
            self._body_size = self._trailer_size = 0
        elif content_length:
            self._state = BODY
            self._remaining = content_length
        else:
            return self._end_request(rest, events)
        if self._check_body and self._llhttp_ends == requests:
            return self._fail(events, 400, "malformed header section")  # llhttp saw no body coming
        return rest

    def _framing_fields(self, version: str, method: str) -> tuple[int | None, bool, bool, bytes | None] | ParseError:
        """Content-Length, chunked, expect_continue and upgrade from the framing headers, or why not."""
        framing = self._framing
        self._framing = []
        content_length: int | None = None
        expect_continue = False
        upgrade: bytes | None = None
        codings: list[bytes] = []
        for name, value in framing:
            if name == b"content-length":
                content_length = int(value)  # llhttp checked the digits and refused duplicates
            elif name == b"transfer-encoding":
                codings += [coding.strip(b" \t").lower() for coding in value.split(b",")]
            elif name == b"expect":
                expect_continue = value.lower() == b"100-continue"
            elif name == b"upgrade":
                upgrade = value.lower()
        if codings:
            if version == "1.0":
                return ParseError(400, "Transfer-Encoding in an HTTP/1.0 request")
            if codings[-1] != b"chunked" or codings.count(b"chunked") > 1:
                return ParseError(400, "chunked is not the final transfer coding")
            if len(codings) > 1:
                return ParseError(501, "unsupported transfer coding")
        chunked = bool(codings)
        if content_length is not None and content_length > self.max_body_size:
            return ParseError(413, "request body too large")
        self._check_body = True
        self._upgrading = False
        if self._llhttp_upgraded:  # Connection: upgrade with Upgrade, or CONNECT
            self._llhttp_upgraded = False
            # A server ignores Upgrade in an HTTP/1.0 request (RFC 9110 7.8); CONNECT tunnels are not served.
            self._upgrading = self.allow_upgrade and method != "CONNECT" and version == "1.1"
            # llhttp stopped after the header section: a fresh one reads the next request, ours reads the body.
            self._llhttp = httptools.HttpRequestParser(self)
            self._llhttp_ends = self._requests = 0
            self._check_body = False
        # 100 Continue is owed only to an HTTP/1.1 client that is about to send a body (RFC 9110 10.1.1).
        expect_continue = expect_continue and version == "1.1" and (chunked or bool(content_length))
        return content_length, chunked, expect_continue, upgrade if self._upgrading else None

    def _end_request(self, rest: bytes, events: list[Event]) -> bytes:
        if self._check_body and self._llhttp_ends != self._requests:
            return self._fail(events, 400, "malformed message body")
        self._check_body = True
        events.append(REQUEST_END)
        if self._upgrading:
            events.append(Upgraded(rest))
            self._state = CLOSED
            return b""
        if not self._keep_alive:  # the connection closes after this answer: what follows is not read (RFC 9112 9.6)
            self._state = CLOSED
            return b""
        self._state = IDLE
        return rest

    def _feed_body(self, data: bytes, events: list[Event]) -> bytes:
        remaining = self._remaining
        if len(data) <= remaining:
            piece, rest = data, b""
        else:
            piece, rest = data[:remaining], data[remaining:]
        if self._check_body:
            complaint = self._execute(piece)
            if complaint is not None:
                return self._fail(events, 400, complaint)
        events.append(BodyData(piece))
        self._remaining = remaining - len(piece)
        if self._remaining:
            return b""
        return self._end_request(rest, events)

    def _feed_chunked(self, data: bytes, events: list[Event]) -> bytes:
        """Decode chunked framing (RFC 9112 7.1) from ``data`` until the request ends or the data does."""
        position = 0
        size = len(data)
        while position < size:
            state = self._state
            if state == CHUNK_DATA:
                stop = min(size, position + self._remaining)
                events.append(BodyData(data[position:stop]))
                self._remaining -= stop - position
                position = stop
                if not self._remaining:
                    self._state = CHUNK_DATA_END
                continue
            # The other states read one line.
            newline = data.find(b"\n", position)
            if newline < 0:
                self._buffer += data[position:]
                if state == TRAILER:
                    if self._trailer_size + len(self._buffer) > self.max_header_size:
                        return self._fail(events, 431, "trailer section too large")
                elif len(self._buffer) > MAX_CHUNK_LINE:
                    return self._fail(events, 400, "chunk line too long")
                position = size
                break
            line = self._buffer + data[position : newline + 1]
            self._buffer = b""
            position = newline + 1
            if line[-2:] != b"\r\n":
                return self._fail(events, 400, "bare LF in chunked body")
            line = line[:-2]
            if state == CHUNK_SIZE:
                digits = line.partition(b";")[0]
                if not digits or len(digits) > 16 or digits.translate(None, HEX_DIGITS):
                    return self._fail(events, 400, "invalid chunk size")
                chunk = int(digits, 16)
                self._body_size += chunk
                if self._body_size > self.max_body_size:
                    return self._fail(events, 413, "request body too large")
                self._remaining = chunk
                self._state = CHUNK_DATA if chunk else TRAILER
            elif state == CHUNK_DATA_END:
                if line:
                    return self._fail(events, 400, "chunk data longer than its size")
                self._state = CHUNK_SIZE
            elif line:  # a trailer field: llhttp checks it, the section's size is bounded
                self._trailer_size += len(line) + 2
                if self._trailer_size > self.max_header_size:
                    return self._fail(events, 431, "trailer section too large")
            else:
                return self._finish_chunked(data, position, events)
        if self._check_body:
            complaint = self._execute(data)
            if complaint is not None:
                return self._fail(events, 400, complaint)
        return b""

    def _finish_chunked(self, data: bytes, position: int, events: list[Event]) -> bytes:
        if self._check_body:
            complaint = self._execute(data[:position])
            if complaint is not None:
                return self._fail(events, 400, complaint)
        self._headers = []  # the trailer fields llhttp reported
        self._framing = []
        return self._end_request(data[position:], events)


def malformed_status(head: bytes) -> int:
    """505 when the request line names an HTTP version other than 1.0 and 1.1, else 400."""
    version = head.split(b"\r\n", 1)[0].rpartition(b" ")[2]
    return 505 if HTTP_VERSION.fullmatch(version) and version not in VERSIONS else 400


def decode_path(path: bytes) -> str:
    """A request path percent-decoded (``+`` stays a plus: it is a plain character in a path)."""
    if PERCENT in path:
        path = unquote_to_bytes(path)
    return path.decode("utf-8", "replace")


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """The path and the query of a request-target in any form (origin, absolute, authority, asterisk)."""
    if HASH in target:  # a fragment is never meant for the server
        target = target.partition(b"#")[0]
    path, _, query = target.partition(b"?")
    if path[:1] != b"/" and b"://" in path:  # absolute form: drop scheme and authority
        slash = path.find(b"/", path.find(b"://") + 3)
        path = path[slash:] if slash >= 0 else b"/"
    return path, query


# ---- whole requests ----------------------------------------------------------------------------------------


class RequestCollector:
    """Turns a parser's events into whole requests (head plus de-chunked body), for one request per package.

    ``collect(events)`` returns, in order, a ``(head, body)`` pair for every request that ended, and any
    ``ParseError`` or ``Upgraded``; an unfinished request's body is kept until a later call ends it. The body held
    is bounded by the parser's ``max_body_size``. The caller still sees every event first, e.g. a head that
    expects ``100 Continue``.
    """

    __slots__ = ("_head", "_parts")

    def __init__(self) -> None:
        self._head: RequestHead | None = None
        self._parts: list[bytes] = []

    def collect(self, events: list[Event]) -> list[WholeRequest | ParseError | Upgraded]:
        done: list[WholeRequest | ParseError | Upgraded] = []
        for event in events:
            kind = type(event)
            if kind is RequestHead:
                self._head = event  # type: ignore[assignment]
            elif kind is BodyData:
                self._parts.append(event.data)  # type: ignore[union-attr]
            elif kind is RequestEnd:
                head = self._head
                assert head is not None, "RequestEnd without RequestHead"
                parts = self._parts
                done.append((head, parts[0] if len(parts) == 1 else b"".join(parts)))
                self._head = None
                self._parts = []
            else:
                done.append(event)  # type: ignore[arg-type]
        return done


# ---- shipping a parsed request to another process ------------------------------------------------------------

# flags, content_length (-1: none), then the sizes of method, target, path, query, headers, upgrade, raw
PACKED_HEADER: Final = struct.Struct("<Bq7I")
KEEP_ALIVE: Final = 1
CHUNKED: Final = 2
EXPECT_CONTINUE: Final = 4
HAS_UPGRADE: Final = 8
VERSION_11: Final = 16


def pack_request(head: RequestHead, body: bytes) -> bytes:
    """``head`` and ``body`` as one bytes object for ``unpack_request`` in another process.

    The header fields travel NUL-separated: llhttp refuses control characters in names and values.
    """
    flags = (
        (KEEP_ALIVE if head.keep_alive else 0)
        | (CHUNKED if head.chunked else 0)
        | (EXPECT_CONTINUE if head.expect_continue else 0)
        | (HAS_UPGRADE if head.upgrade is not None else 0)
        | (VERSION_11 if head.version == "1.1" else 0)
    )
    method = head.method.encode("ascii")
    headers = b"\0".join(itertools.chain.from_iterable(head.headers))
    upgrade = head.upgrade or b""
    return b"".join(
        (
            PACKED_HEADER.pack(
                flags,
                -1 if head.content_length is None else head.content_length,
                len(method),
                len(head.target),
                len(head.path),
                len(head.query),
                len(headers),
                len(upgrade),
                len(head.raw),
            ),
            method,
            head.target,
            head.path,
            head.query,
            headers,
            upgrade,
            head.raw,
            body,
        )
    )


def unpack_request(data: bytes) -> tuple[RequestHead, bytes]:
    """The ``(head, body)`` that ``pack_request`` packed."""
    flags, content_length, n_method, n_target, n_path, n_query, n_headers, n_upgrade, n_raw = PACKED_HEADER.unpack_from(
        data
    )
    start = PACKED_HEADER.size
    method_name = data[start : start + n_method]
    start += n_method
    target = data[start : start + n_target]
    start += n_target
    path = data[start : start + n_path]
    start += n_path
    query = data[start : start + n_query]
    start += n_query
    if n_headers:
        items = iter(data[start : start + n_headers].split(b"\0"))
        headers = list(zip(items, items, strict=True))  # (name, value) pairs
    else:
        headers = []
    start += n_headers
    upgrade = data[start : start + n_upgrade] if flags & HAS_UPGRADE else None
    start += n_upgrade
    raw = data[start : start + n_raw]
    start += n_raw
    method = METHODS.get(method_name)
    if method is None:
        method = method_name.decode("ascii")
    head: RequestHead = new_tuple(
        RequestHead,
        (
            method,
            target,
            path,
            query,
            "1.1" if flags & VERSION_11 else "1.0",
            headers,
            bool(flags & KEEP_ALIVE),
            None if content_length < 0 else content_length,
            bool(flags & CHUNKED),
            bool(flags & EXPECT_CONTINUE),
            upgrade,
            raw,
        ),
    )
    return head, data[start:]
