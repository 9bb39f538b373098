"""What every response head is made of: status lines, the cached Date, header names, Set-Cookie values.

Shared by ``response`` and ``static`` so that both serialize heads the same way. Everything returns ready
bytes; status lines and formatted header names are cached, the Date line is rebuilt once a second.
"""

from __future__ import annotations

import mimetypes
import os
import time
from email.utils import formatdate
from typing import Final
from urllib.parse import quote_plus

# Single bytes to look for in a bytes value, as ints: ``PERCENT in path`` is a memchr, while ``b"%" in path``
# first tries the needle as an int inside CPython, raising and clearing a TypeError each time (~20x the cost).
NUL: Final = 0x00
LF: Final = 0x0A
CR: Final = 0x0D
HASH: Final = 0x23
PERCENT: Final = 0x25
PLUS: Final = 0x2B
BACKSLASH: Final = 0x5C
UNDERSCORE: Final = 0x5F
SERVER_LINE: Final = b"Server: pyswoole\r\n"
HEADER_FORBIDDEN: Final = frozenset("\r\n\0")  # in a header value
NAME_FORBIDDEN: Final = frozenset(' \t\r\n\0:;,"()<>@[]{}/?=\\')  # in a header name (a token)
CONNECTION_LINES: Final = {True: b"Connection: keep-alive\r\n", False: b"Connection: close\r\n"}
DEFAULT_CONTENT_TYPE_LINE: Final = b"Content-Type: text/html\r\n"

REASONS: Final = {
    100: "Continue",
    101: "Switching Protocols",
    102: "Processing",
    103: "Early Hints",
    200: "OK",
    201: "Created",
    202: "Accepted",
    203: "Non-Authoritative Information",
    204: "No Content",
    205: "Reset Content",
    206: "Partial Content",
    207: "Multi-Status",
    208: "Already Reported",
    226: "IM Used",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    304: "Not Modified",
    305: "Use Proxy",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    409: "Conflict",
    410: "Gone",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Payload Too Large",
    414: "URI Too Long",
    415: "Unsupported Media Type",
    416: "Range Not Satisfiable",
    417: "Expectation Failed",
    418: "I'm a teapot",
    421: "Misdirected Request",
    422: "Unprocessable Entity",
    423: "Locked",
    424: "Failed Dependency",
    425: "Too Early",
    426: "Upgrade Required",
    428: "Precondition Required",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    451: "Unavailable For Legal Reasons",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
    506: "Variant Also Negotiates",
    507: "Insufficient Storage",
    508: "Loop Detected",
    510: "Not Extended",
    511: "Network Authentication Required",
}

STATUS_LINES: Final = {code: f"HTTP/1.1 {code} {reason}\r\n".encode("latin-1") for code, reason in REASONS.items()}

# Characters a cookie name, value (sent raw), path or domain cannot carry (Swoole's list), and "=" in a name.
COOKIE_FORBIDDEN: Final = frozenset(",; \t\r\n\x0b\x0c")
COOKIE_NAME_FORBIDDEN: Final = COOKIE_FORBIDDEN | {"="}
MAX_COOKIE_EXPIRES: Final = 253402300800  # 10000-01-01T00:00:00Z: a year of five digits is not an HTTP date
DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def status_line(code: int, reason: str | None = None) -> bytes:
    """``HTTP/1.1 <code> <reason>\\r\\n``; a known code's reason unless ``reason`` is given."""
    if reason is None:
        return STATUS_LINES[code]
    return f"HTTP/1.1 {code} {reason}\r\n".encode()


class _DateLine:
    """The Date line of the current second (an object's fields: module globals are dict entries to compiled
    code, and this runs per response)."""

    __slots__ = ("second", "line")

    def __init__(self) -> None:
        self.second = -1
        self.line = b""


_DATE: Final = _DateLine()


def date_line() -> bytes:
    """``Date: <now as an HTTP date>\\r\\n``, formatted once a second."""
    now = int(time.time())
    cache = _DATE
    if now != cache.second:
        cache.line = b"Date: " + formatdate(now, usegmt=True).encode("ascii") + b"\r\n"
        cache.second = now
    return cache.line


def http_date(timestamp: float) -> str:
    """An HTTP date (IMF-fixdate), e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    return formatdate(timestamp, usegmt=True)


def format_header_name(name: str) -> str:
    """``content-type`` -> ``Content-Type``: upper case after a dash and at the start, lower case elsewhere."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


# key -> (lower-cased name, b"Name: "), one cache with format=True, one without; names come from code.
_header_names: Final[tuple[dict[str, tuple[str, bytes]], dict[str, tuple[str, bytes]]]] = ({}, {})
MAX_CACHED_NAMES: Final = 1024


def header_name(key: str, format: bool) -> tuple[str, bytes] | None:
    """The lower-cased name and the line prefix of header ``key`` (formatted if ``format``); None if invalid."""
    cache = _header_names[format]
    name = cache.get(key)
    if name is None:
        if not key or not key.isascii() or not NAME_FORBIDDEN.isdisjoint(key) or not key.isprintable():
            return None
        name = (key.lower(), (format_header_name(key) if format else key).encode("ascii") + b": ")
        if len(cache) < MAX_CACHED_NAMES:
            cache[key] = name
    return name


def header_text(value: str | bytes | int | float) -> str:
    """A header value as text: bytes read as latin-1, numbers written out, surrounding blanks dropped."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return str(value).strip(" \t")


def cookie_date(timestamp: int) -> str:
    """Swoole's Set-Cookie date: ``Thu, 01-Jan-1970 00:00:01 GMT``."""
    t = time.gmtime(timestamp)
    return (
        f"{DAYS[t.tm_wday]}, {t.tm_mday:02d}-{MONTHS[t.tm_mon - 1]}-{t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def format_cookie(
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
) -> str | None:
    """A Set-Cookie value spelled as Swoole does, or None when one of the parts cannot be carried.

    An empty value deletes the cookie (``name=deleted`` with a past date and ``Max-Age=0``); ``encode``
    percent-encodes the value (space as ``+``), else it is sent as given.
    """
    if not name or not COOKIE_NAME_FORBIDDEN.isdisjoint(name):
        return None
    if not value:
        text = f"{name}=deleted; expires={cookie_date(1)}; Max-Age=0"
    else:
        if encode:
            value = quote_plus(value, safe="")
        elif not COOKIE_FORBIDDEN.isdisjoint(value):
            return None
        text = f"{name}={value}"
        if expires > 0:
            if expires >= MAX_COOKIE_EXPIRES:
                return None
            text += f"; expires={cookie_date(expires)}; Max-Age={max(0, expires - int(time.time()))}"
    for option in (path, domain, samesite, priority):
        if not COOKIE_FORBIDDEN.isdisjoint(option):
            return None
    if path:
        text += f"; path={path}"
    if domain:
        text += f"; domain={domain}"
    if secure:
        text += "; secure"
    if httponly:
        text += "; HttpOnly"
    if samesite:
        text += f"; SameSite={samesite}"
    if priority:
        text += f"; Priority={priority}"
    return text


def build_head(status: int, lines: list[bytes], keep_alive: bool, content_length: int | None) -> bytes:
    """A head made of server-chosen ``lines`` (each ending in CRLF) plus Server, Date and Connection."""
    return b"".join(
        (
            STATUS_LINES[status],
            *lines,
            SERVER_LINE,
            date_line(),
            CONNECTION_LINES[keep_alive],
            b"" if content_length is None else b"Content-Length: %d\r\n" % content_length,
            b"\r\n",
        )
    )


_media_types: Final[dict[str, str | None]] = {}


def media_type(path: str) -> str | None:
    """The media type of a file from its extension (mimetypes' table), None when unknown."""
    extension = os.path.splitext(path)[1].lower()
    if extension in _media_types:
        return _media_types[extension]
    found = mimetypes.guess_type("x" + extension)[0] if extension else None
    if len(_media_types) < MAX_CACHED_NAMES:
        _media_types[extension] = found
    return found


CONTINUE_RESPONSE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"  # owed to a head with expect_continue, before its body


def error_response(status: int) -> bytes:
    """The whole answer to a request the parser refused (``ParseError.status``); the connection then closes."""
    body = f"<html><body><h1>{status} {REASONS[status]}</h1></body></html>\n".encode()
    return build_head(status, [b"Content-Type: text/html\r\n"], False, len(body)) + body


def breaks_the_line(name: bytes, value: bytes) -> bool:
    """Whether a header an application gave could end its line early (CR, LF or NUL) and so inject another
    header, or a whole response."""
    return CR in name or LF in name or NUL in name or CR in value or LF in value or NUL in value
