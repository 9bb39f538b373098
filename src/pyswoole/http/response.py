"""The public ``Response``: a state machine that turns Swoole's response calls into bytes for an injected sink.

A Response does no I/O: it hands bytes to its ``ResponseSink`` (the server's glue), which sends them, records
error codes and moves the connection on once the response is complete. The states are: headers not sent ->
streaming (``write`` sent the headers) -> ended; ``detach()`` hands the response away from any state but ended.

Invariants: ``end()`` and the first ``write()`` each reach the sink as one ``send``; ``finish(keep_alive)`` is
called exactly once, after the last successful send of a complete response; a call the response can no longer
take returns False through ``sink.fail(code)`` with one warning logged, and sends nothing.
"""

from __future__ import annotations

import os
import stat
import zlib
from typing import Any, Final, Protocol

from ..constants import ErrorCode
from ..log import logger
from ..runtime.context import runtime_of
from .headers import (
    CONNECTION_LINES,
    DEFAULT_CONTENT_TYPE_LINE,
    HEADER_FORBIDDEN,
    REASONS,
    SERVER_LINE,
    STATUS_LINES,
    date_line,
    format_cookie,
    header_name,
    header_text,
    media_type,
    status_line,
)
from .options import HttpOptions
from .parser import RequestHead
from .sink import SessionSink

DEFAULT_OPTIONS: Final = HttpOptions()
STATUS_200: Final = STATUS_LINES[200]
# Headers whose lines the response writes itself whatever the application set.
MANAGED_HEADERS: Final = frozenset({"content-length", "transfer-encoding", "connection"})
NO_BODY_STATUSES: Final = frozenset({204, 304})
COMPRESSIBLE_TYPES: Final = frozenset(
    {
        "application/json",
        "application/javascript",
        "application/x-javascript",
        "application/xml",
        "application/xhtml+xml",
        "application/rss+xml",
        "application/atom+xml",
        "application/ld+json",
        "application/manifest+json",
        "application/x-www-form-urlencoded",
        "image/svg+xml",
    }
)
MAX_CACHED: Final = 256


class ResponseSink(Protocol):
    """Where a Response's bytes go: the server's side of one HTTP connection."""

    def send(self, data: bytes) -> bool:
        """Queue ``data`` for the client; False (the error code recorded) when the connection is gone."""
        ...

    def send_soon(self, data: bytes) -> bool:
        """``send``, for a writer that returns to the event loop at once: the bytes may leave at the end of the
        loop pass, with the other output of the pass, and always before anything sent after them."""
        ...

    def sendfile(self, path: str, offset: int, length: int) -> bool:
        """Queue ``length`` bytes of the file at ``offset``, zero-copy; False as for ``send``."""
        ...

    def finish(self, keep_alive: bool) -> None:
        """The response is complete: serve the next pipelined request, or close when not ``keep_alive``."""
        ...

    def fail(self, code: int) -> bool:
        """Record ``code`` for ``server.get_last_error()``; returns False."""
        ...


_accepted_encodings: Final[dict[bytes, str | None]] = {}


def accepted_encoding(accept_encoding: bytes) -> str | None:
    """``"gzip"``, ``"deflate"`` or None: the coding the client prefers (q-values) among those we produce."""
    if accept_encoding in _accepted_encodings:
        return _accepted_encodings[accept_encoding]
    weights: dict[str, float] = {}
    for item in accept_encoding.decode("latin-1").lower().split(","):
        coding, _, params = item.partition(";")
        weight = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights[coding.strip()] = weight
    star = weights.get("*", 0.0)
    best: str | None = None
    best_weight = 0.0
    for coding in ("gzip", "deflate"):  # gzip first: it wins a tie
        weight = weights.get(coding, star)
        if weight > best_weight:
            best, best_weight = coding, weight
    if len(_accepted_encodings) < MAX_CACHED:
        _accepted_encodings[accept_encoding] = best
    return best


def compressible(content_type: str) -> bool:
    media_type = content_type.partition(";")[0].strip().lower()
    return (
        media_type.startswith("text/")
        or media_type in COMPRESSIBLE_TYPES
        or media_type.endswith("+json")
        or media_type.endswith("+xml")
    )


def compress(data: bytes, coding: str, level: int) -> bytes:
    # gzip: a gzip wrapper (wbits 31); deflate: the zlib format, as RFC 9110 8.4.1.2 defines "deflate".
    return zlib.compress(data, level, 31 if coding == "gzip" else 15)


# Header lines and Content-Length lines already built: applications set the same few again and again.
MAX_CACHED_LINES: Final = 4096
_header_lines: Final[dict[tuple[bytes, str], tuple[bytes, str]]] = {}
_length_lines: Final[dict[int, bytes]] = {}


def content_length_line(length: int) -> bytes:
    """``Content-Length: <length>`` and the blank line that ends the head."""
    line = _length_lines.get(length)
    if line is None:
        line = b"Content-Length: %d\r\n\r\n" % length
        if len(_length_lines) < MAX_CACHED_LINES:
            _length_lines[length] = line
    return line


class Response:
    """An HTTP response, as Swoole's ``Swoole\\Http\\Response`` (see the module docstring).

    ``head`` is the request answered (None for ``Response.create``: a GET over HTTP/1.1 with keep-alive).
    The glue reads ``ended``, ``detached``, ``headers_sent``, ``status_code``, ``keep_alive`` and ``body_bytes``.
    """

    __slots__ = (
        "status_code",
        "reason",
        "headers_sent",
        "ended",
        "detached",
        "keep_alive",
        "body_bytes",
        "_open",
        "_head_open",
        "_status_line",
        "_streaming",
        "_chunked",
        "_sink",
        "_head",
        "_options",
        "_headers",
        "_cookies",
    )

    def __init__(self, sink: ResponseSink, head: RequestHead | None, options: HttpOptions = DEFAULT_OPTIONS) -> None:
        self._sink = sink
        self._head = head
        self._options = options
        self._headers: dict[str, tuple[bytes, str]] = {}  # lower-cased name -> (its lines, its value)
        self._cookies: list[bytes] = []
        self.status_code = 200
        self.reason: str | None = None
        self._status_line = STATUS_200
        self.headers_sent = self.ended = self.detached = False
        self.keep_alive = True  # final once the headers are sent
        self.body_bytes = 0  # of the body handed to the sink (for the access log)
        self._open = True  # not ended, not detached
        self._head_open = True  # ... and the headers not sent
        self._streaming = False  # write() sent the headers
        self._chunked = False  # ... with Transfer-Encoding: chunked

    def header_pairs(self) -> list[tuple[bytes, bytes]]:
        """The headers the application set, as (lower-cased name, value) pairs (for the access log)."""
        return [(name.encode("latin-1"), value.encode()) for name, (_, value) in self._headers.items()]

    @classmethod
    def create(cls, server: Any, fd: int) -> Response:
        """A response for session ``fd`` of ``server``, from any worker, task worker or user process: with
        ``detach()`` a request can be answered later, elsewhere. It answers as to a GET over HTTP/1.1."""
        return cls(SessionSink(runtime_of(server), fd), None)

    def __repr__(self) -> str:
        state = "ended" if self.ended else "detached" if self.detached else "open"
        return f"<Response {self.status_code} {state}>"

    # ---- refusals ------------------------------------------------------------------------------------------

    def _refuse(self, code: int, message: str) -> bool:
        logger.warning("http response: %s", message)
        return self._sink.fail(code)

    def _unavailable(self) -> bool:
        return self._refuse(ErrorCode.HTTP_CONTEXT_UNAVAILABLE, "the response is unavailable (ended or detached)")

    def _headers_gone(self) -> bool:
        if not self._open:
            return self._unavailable()
        return self._refuse(ErrorCode.HTTP_CONTEXT_UNAVAILABLE, "the headers were sent already")

    def _close(self) -> None:
        """The response is ended (its headers sent, or failed to send): it takes nothing more."""
        self.ended = self.headers_sent = True
        self._open = self._head_open = False

    # ---- headers -------------------------------------------------------------------------------------------

    def status(self, code: int, reason: str | None = None) -> bool:
        """Set the status line; a code this module does not know needs a ``reason``."""
        if not self._head_open:
            return self._headers_gone()
        if not 100 <= code <= 999 or (reason is None and code not in REASONS):
            return self._refuse(ErrorCode.INVALID_PARAMS, f"status code {code} needs a reason phrase")
        if reason is not None and not HEADER_FORBIDDEN.isdisjoint(reason):
            return self._refuse(ErrorCode.INVALID_PARAMS, "a reason phrase cannot hold CR, LF or NUL")
        self.status_code = code
        self.reason = reason
        self._status_line = status_line(code, reason)
        return True

    def header(self, key: str, value: str | bytes | int | float | list[str] | None, format: bool = True) -> bool:
        """Set (or with None, remove) a header; the same name again replaces it; a list sends one line each."""
        if not self._head_open:
            return self._headers_gone()
        name = header_name(key, format)
        if name is None:
            return self._refuse(ErrorCode.INVALID_PARAMS, f"invalid header name {key!r}")
        lower, prefix = name
        if type(value) is str:  # the usual case, without the general path's list
            line = _header_lines.get((prefix, value))
            if line is None:
                text = value.strip(" \t")
                if "\r" in text or "\n" in text or "\0" in text:
                    return self._refuse(ErrorCode.INVALID_PARAMS, f"the value of header {key!r} holds CR, LF or NUL")
                line = (prefix + text.encode() + b"\r\n", text)
                if len(_header_lines) < MAX_CACHED_LINES:
                    _header_lines[(prefix, value)] = line
            self._headers[lower] = line
            return True
        if value is None:
            self._headers.pop(lower, None)
            return True
        texts = [header_text(item) for item in value] if isinstance(value, list) else [header_text(value)]
        if not all(HEADER_FORBIDDEN.isdisjoint(text) for text in texts):
            return self._refuse(ErrorCode.INVALID_PARAMS, f"the value of header {key!r} holds CR, LF or NUL")
        self._headers[lower] = (b"".join(prefix + text.encode() + b"\r\n" for text in texts), ", ".join(texts))
        return True

    def cookie(
        self,
        name: str,
        value: str = "",
        expires: int = 0,
        path: str = "/",
        domain: str = "",
        secure: bool = False,
        httponly: bool = False,
        samesite: str = "",
        priority: str = "",
    ) -> bool:
        """Add a Set-Cookie line, the value percent-encoded."""
        return self._set_cookie(name, value, expires, path, domain, secure, httponly, samesite, priority, True)

    def raw_cookie(
        self,
        name: str,
        value: str = "",
        expires: int = 0,
        path: str = "/",
        domain: str = "",
        secure: bool = False,
        httponly: bool = False,
        samesite: str = "",
        priority: str = "",
    ) -> bool:
        """Add a Set-Cookie line, the value as given (refused when it holds a character a cookie cannot)."""
        return self._set_cookie(name, value, expires, path, domain, secure, httponly, samesite, priority, False)

    def rawcookie(self, name: str, *args: Any, **kwargs: Any) -> bool:
        """Swoole's spelling of :meth:`raw_cookie` (a method, not an alias: mypyc's classes take no aliases)."""
        return self.raw_cookie(name, *args, **kwargs)

    def _set_cookie(
        self,
        name: str,
        value: str,
        expires: int,
        path: str,
        domain: str,
        secure: bool,
        httponly: bool,
        samesite: str,
        priority: str,
        encode: bool,
    ) -> bool:
        if not self._head_open:
            return self._headers_gone()
        text = format_cookie(name, value, expires, path, domain, secure, httponly, samesite, priority, encode)
        if text is None:
            return self._refuse(ErrorCode.INVALID_PARAMS, f"cookie {name!r} has a character a cookie cannot carry")
        self._cookies.append(b"Set-Cookie: " + text.encode() + b"\r\n")
        return True

    # ---- the head ------------------------------------------------------------------------------------------

    def _build_head(self, length: int | None, extra: bytes = b"", body: bytes = b"") -> bytes:
        """The status line and header section (then ``body``); ``length`` None: no Content-Length."""
        head = self._head
        headers = self._headers
        keep_alive = head is None or head.keep_alive
        parts = [self._status_line]
        if headers:
            if keep_alive and "connection" in headers and "close" in headers["connection"][1].lower():
                keep_alive = False
            upgrading = self.status_code == 101
            for name, (lines, _) in headers.items():
                if name not in MANAGED_HEADERS or upgrading:
                    parts.append(lines)
            if "server" not in headers:
                parts.append(SERVER_LINE)
            if "date" not in headers:
                parts.append(date_line())
            if upgrading:  # the handshake's own headers only: the connection changes protocol
                parts += self._cookies
                parts.append(b"\r\n")
                self.keep_alive = keep_alive
                return b"".join(parts)
            if "content-type" not in headers:
                parts.append(DEFAULT_CONTENT_TYPE_LINE)
        else:
            parts.append(SERVER_LINE)
            parts.append(date_line())
            parts.append(DEFAULT_CONTENT_TYPE_LINE)
        if self._cookies:
            parts += self._cookies
        if self._streaming and not self._chunked:  # an HTTP/1.0 stream ends when the connection does
            keep_alive = False
        self.keep_alive = keep_alive
        parts.append(CONNECTION_LINES[keep_alive])
        if extra:
            parts.append(extra)
        if length is not None:
            parts.append(content_length_line(length))
        else:
            parts.append(b"\r\n")
        if body:
            parts.append(body)
        return b"".join(parts)

    def _no_body(self) -> bool:
        """Whether this response carries no body bytes: a HEAD request, 1xx, 204 or 304."""
        code = self.status_code
        return (self._head is not None and self._head.method == "HEAD") or code < 200 or code in NO_BODY_STATUSES

    # ---- the body ------------------------------------------------------------------------------------------

    def end(self, data: str | bytes = b"") -> bool:
        """Send what is left: the whole response, or after ``write()`` the last chunk; the response is over."""
        if not self._open:
            return self._unavailable()
        body = data.encode() if isinstance(data, str) else data
        if self._streaming:
            return self._end_stream(body)
        code = self.status_code
        headers = self._headers
        if code < 200 or code in NO_BODY_STATUSES:
            # No Content-Length for these (RFC 9110 8.6), but a 304 may repeat the one the application set.
            out = self._build_head(
                None, headers["content-length"][0] if code == 304 and "content-length" in headers else b""
            )
        else:
            extra = b""
            options = self._options
            if (
                options.http_compression
                and len(body) >= options.compression_min_length
                and "content-encoding" not in headers
            ):
                body, extra = self._compressed(body)
            head = self._head
            if head is not None and head.method == "HEAD":
                length = len(body)
                announced = headers["content-length"][1] if "content-length" in headers else ""
                if not body and announced.isdigit():  # the length a GET would have, as the application set it
                    length = int(announced)
                out = self._build_head(length, extra)
            else:
                out = self._build_head(len(body), extra, body)
                self.body_bytes = len(body)
        self._close()
        if not self._sink.send(out):
            return False
        self._sink.finish(self.keep_alive)
        return True

    def _compressed(self, body: bytes) -> tuple[bytes, bytes]:
        """``body`` compressed when its type is compressible and the client accepts it, and the header lines."""
        content_type = self._headers["content-type"][1] if "content-type" in self._headers else "text/html"
        if not compressible(content_type):
            return body, b""
        vary = self._vary_line()
        head = self._head
        if head is None:
            return body, vary
        coding = None
        for name, value in head.headers:
            if name == b"accept-encoding":
                coding = accepted_encoding(value)
                break
        if coding is None:
            return body, vary
        level = min(max(self._options.http_compression_level, 1), 9)
        return compress(body, coding, level), vary + b"Content-Encoding: " + coding.encode() + b"\r\n"

    def _vary_line(self) -> bytes:
        """``Vary: Accept-Encoding`` unless the application's Vary says it already (a second line is valid)."""
        if "vary" in self._headers:
            value = self._headers["vary"][1].lower()
            if "accept-encoding" in value or "*" in value:
                return b""
        return b"Vary: Accept-Encoding\r\n"

    def write(self, data: str | bytes) -> bool:
        """Stream one piece of the body; the first call sends the headers (chunked, for HTTP/1.1 clients)."""
        if not self._open:
            return self._unavailable()
        body = data.encode() if isinstance(data, str) else data
        if not body:
            return self._refuse(ErrorCode.NO_PAYLOAD, "the data to write must not be empty")
        no_body = self._no_body()
        if not self._streaming:
            self._streaming = True
            self._chunked = self._head is None or self._head.version == "1.1"
            coding = b"Transfer-Encoding: chunked\r\n" if self._chunked else b""
            out = self._build_head(None, coding, b"" if no_body else self._chunk(body))
            self.headers_sent = True
            self._head_open = False
        elif no_body:
            return True
        else:
            out = self._chunk(body)
        if not no_body:
            self.body_bytes += len(body)
        if not self._sink.send(out):
            self._close()
            return False
        return True

    def _chunk(self, body: bytes) -> bytes:
        return b"%x\r\n%b\r\n" % (len(body), body) if self._chunked else body

    def _end_stream(self, body: bytes) -> bool:
        out = b""
        if not self._no_body():
            if body:
                out = self._chunk(body)
                self.body_bytes += len(body)
            if self._chunked:
                out += b"0\r\n\r\n"
        self._close()
        if out and not self._sink.send(out):
            return False
        self._sink.finish(self.keep_alive)
        return True

    def sendfile(self, filename: str, offset: int = 0, length: int = 0) -> bool:
        """The file (from ``offset``, ``length`` bytes, 0: to its end) as the body, sent zero-copy."""
        if not self._open:
            return self._unavailable()
        if self._streaming:
            return self._refuse(ErrorCode.HTTP_CONTEXT_UNAVAILABLE, "sendfile() after write()")
        if offset < 0 or length < 0:
            return self._refuse(ErrorCode.INVALID_PARAMS, "sendfile() offset and length must not be negative")
        try:
            info = os.stat(filename)
        except OSError as error:
            return self._refuse(ErrorCode.FILE_NOT_EXIST, f"stat({filename}) failed: {error.strerror}")
        if not stat.S_ISREG(info.st_mode):
            return self._refuse(ErrorCode.SERVER_IS_NOT_REGULAR_FILE, f"{filename} is not a regular file")
        if offset > info.st_size or length > info.st_size - offset:
            return self._refuse(ErrorCode.INVALID_PARAMS, f"offset {offset} and length {length} exceed {filename}")
        if length == 0:
            length = info.st_size - offset
        if "content-type" not in self._headers:
            self.header("Content-Type", media_type(filename) or "application/octet-stream")
        out = self._build_head(length)
        self._close()
        if not self._sink.send(out):
            return False
        if length and not self._no_body():
            if not self._sink.sendfile(filename, offset, length):
                return False
            self.body_bytes = length
        self._sink.finish(self.keep_alive)
        return True

    def redirect(self, location: str, http_code: int = 302) -> bool:
        """A redirect to ``location``, ended."""
        if not self._head_open:
            return self._headers_gone()
        return self.status(http_code) and self.header("Location", location) and self.end()

    def detach(self) -> bool:
        """Give the response away: the server does not end it when the callback returns."""
        if not self._open:
            return self._unavailable()
        self.detached = True
        self._open = self._head_open = False
        return True

    def is_writable(self) -> bool:
        return self._open

    def fail_500(self) -> bool:
        """For the server when the callback raised: a 500 with what was set dropped, if no header was sent."""
        if not self._head_open:
            return False
        self.status_code, self.reason, self._status_line = 500, None, STATUS_LINES[500]
        self._headers = {}
        self._cookies = []
        return self.end()

    def isWritable(self) -> bool:  # Swoole's spelling of is_writable
        return self._open
