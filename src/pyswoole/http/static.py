"""The static file handler's decisions: which file answers a GET or HEAD, with which status and which bytes.

``StaticFiles.serve`` returns a ``StaticReply`` (the head, an in-memory body, and a file range the server sends
zero-copy) or None when the request is not a static one, and the Request callback gets it, as Swoole falls
through to onRequest. It reads the file system (stat, realpath, listdir) but sends nothing.

Invariant: no file outside the document root is ever served. The request path is decoded once; encoded
separators (``%2f``, ``%5c``), NUL, backslashes, what is still percent-encoded after one decoding (double
encoding) and ``..`` segments make it not static; the file's real path (symlinks resolved) must lie under the
root's real path.
"""

from __future__ import annotations

import html
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Final
from urllib.parse import quote, unquote_to_bytes

from ..protocol.sendfile import open_file
from .headers import BACKSLASH, NUL, PERCENT, build_head, http_date, media_type

UNSAFE_ENCODED = (b"%2f", b"%5c", b"%00")  # separators and NUL, lower-cased
UNSATISFIABLE = (-1, 0)  # byte_range's answer for a range that starts past the end


@dataclass(frozen=True, slots=True)
class FileRange:
    path: str
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class StaticReply:
    """What to send: ``head`` then ``body``, then ``file`` zero-copy if any; then keep or close the connection."""

    status: int
    head: bytes
    body: bytes
    file: FileRange | None
    keep_alive: bool


NO_FILE: Final = -2  # open_reply_file of a reply without a file range


def open_reply_file(reply: StaticReply) -> int:
    """The reply's file, opened now (before its head is sent); NO_FILE without one, -1 when it can no longer be
    opened (deleted since ``serve`` looked at it)."""
    if reply.file is None:
        return NO_FILE
    try:
        return open_file(reply.file.path)
    except OSError:
        return -1


class StaticFiles:
    """Swoole's static handler: ``document_root``, ``static_handler_locations``, ``http_index_files``,
    ``http_autoindex``."""

    def __init__(
        self,
        document_root: str,
        locations: Sequence[str] = (),
        index_files: Sequence[str] = (),
        autoindex: bool = False,
    ) -> None:
        self.root = os.fsencode(os.path.realpath(document_root))
        self.locations = [os.fsencode(location.rstrip("/")) for location in locations]
        self.index_files = [os.fsencode(name) for name in index_files if name and "/" not in name]
        self.autoindex = autoindex

    def serve(
        self, method: str, path: bytes, headers: list[tuple[bytes, bytes]], keep_alive: bool
    ) -> StaticReply | None:
        """The reply to a request for ``path`` (as sent, without the query), or None when it is not static."""
        if method != "GET" and method != "HEAD":
            return None
        decoded = self._decode(path)
        if decoded is None:
            return None
        if self.locations and not any(
            decoded == location or decoded.startswith(location + b"/") for location in self.locations
        ):
            return None
        segments = [segment for segment in decoded.split(b"/") if segment and segment != b"."]
        found = self._inside_root(os.path.join(self.root, *segments))
        if found is None:
            return None
        real, info = found
        if stat.S_ISDIR(info.st_mode):
            for name in self.index_files:
                index = self._inside_root(os.path.join(real, name))
                if index is not None and stat.S_ISREG(index[1].st_mode):
                    return self._file(method, index[0], index[1], headers, keep_alive, typed_only=False)
            if self.autoindex:
                return self._listing(method, decoded, real, keep_alive)
            return None
        if stat.S_ISREG(info.st_mode):
            # As Swoole: without locations, only files of a known type are static (not, say, a script).
            return self._file(method, real, info, headers, keep_alive, typed_only=not self.locations)
        return None

    @staticmethod
    def _decode(path: bytes) -> bytes | None:
        """The path percent-decoded once, or None when it is not a safe static path."""
        if path[:1] != b"/" or NUL in path or BACKSLASH in path:
            return None
        if PERCENT in path:
            lowered = path.lower()
            if any(encoded in lowered for encoded in UNSAFE_ENCODED):
                return None
            path = unquote_to_bytes(path)
            if PERCENT in path or NUL in path or BACKSLASH in path:  # double encoding, or what it decoded to
                return None
        if b".." in path.split(b"/"):
            return None
        return path

    def _inside_root(self, candidate: bytes) -> tuple[bytes, os.stat_result] | None:
        """The real path of ``candidate`` and its stat, if it exists and lies under the document root."""
        real = os.path.realpath(candidate)
        if real != self.root and not real.startswith(self.root + b"/"):
            return None
        try:
            return real, os.stat(real)
        except (OSError, ValueError):
            return None

    def _file(
        self,
        method: str,
        real: bytes,
        info: os.stat_result,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        typed_only: bool,
    ) -> StaticReply | None:
        path = os.fsdecode(real)
        content_type = media_type(path)
        if content_type is None:
            if typed_only:
                return None
            content_type = "application/octet-stream"
        size = info.st_size
        mtime = int(info.st_mtime)
        last_modified = http_date(mtime)
        lines = [
            f"Content-Type: {content_type}\r\n".encode(),
            f"Last-Modified: {last_modified}\r\nAccept-Ranges: bytes\r\n".encode(),
        ]
        since = range_spec = if_range = None
        for name, value in headers:
            if name == b"if-modified-since":
                since = value
            elif name == b"range":
                range_spec = value
            elif name == b"if-range":
                if_range = value
        if since is not None and not_modified_since(since, mtime):
            return StaticReply(304, build_head(304, lines, keep_alive, None), b"", None, keep_alive)
        offset, length, status = 0, size, 200
        if range_spec is not None and (if_range is None or if_range.decode("latin-1") == last_modified):
            chosen = byte_range(range_spec, size)
            if chosen == UNSATISFIABLE:
                lines.append(b"Content-Range: bytes */%d\r\n" % size)
                return StaticReply(416, build_head(416, lines, keep_alive, 0), b"", None, keep_alive)
            if chosen is not None:
                offset, length = chosen
                status = 206
                lines.append(b"Content-Range: bytes %d-%d/%d\r\n" % (offset, offset + length - 1, size))
        head = build_head(status, lines, keep_alive, length)
        file = FileRange(path, offset, length) if method == "GET" and length else None
        return StaticReply(status, head, b"", file, keep_alive)

    def _listing(self, method: str, decoded: bytes, real: bytes, keep_alive: bool) -> StaticReply | None:
        try:
            names = sorted(os.listdir(real))
        except OSError:
            return None
        folder = os.fsdecode(decoded.rstrip(b"/") + b"/")
        title = html.escape(folder.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
        items = [] if folder == "/" else [f'<li><a href="{quote(folder + "..")}/">..</a></li>']
        for name in names:
            is_folder = os.path.isdir(os.path.join(real, name))
            entry = os.fsdecode(name) + ("/" if is_folder else "")
            href = html.escape(quote(folder + entry, errors="surrogateescape"))
            text = html.escape(entry.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
            items.append(f'<li><a href="{href}">{text}</a></li>')
        page = (
            '<!DOCTYPE html>\n<html>\n<head><meta charset="UTF-8"><title>Index of '
            + title
            + "</title></head>\n<body>\n<h1>Index of "
            + title
            + "</h1>\n<ul>\n"
            + "\n".join(items)
            + "\n</ul>\n</body>\n</html>\n"
        ).encode()
        lines = [b"Content-Type: text/html; charset=UTF-8\r\n"]
        head = build_head(200, lines, keep_alive, len(page))
        return StaticReply(200, head, page if method == "GET" else b"", None, keep_alive)


def not_modified_since(value: bytes, mtime: int) -> bool:
    """Whether an If-Modified-Since date is at or after ``mtime`` (a date that cannot be read: False)."""
    try:
        return parsedate_to_datetime(value.decode("latin-1")).timestamp() >= mtime
    except (ValueError, TypeError, OverflowError):
        return False


def byte_range(value: bytes, size: int) -> tuple[int, int] | None:
    """``(offset, length)`` for a single ``bytes=`` range, ``UNSATISFIABLE``, or None to send the whole file
    (another unit, several ranges, a syntax error)."""
    unit, _, spec = value.partition(b"=")
    if unit.strip().lower() != b"bytes" or b"," in spec:
        return None
    first, dash, last = spec.strip().partition(b"-")
    first, last = first.strip(), last.strip()
    if not dash or not (first.isdigit() or first == b"") or not (last.isdigit() or last == b""):
        return None
    if not first:  # a suffix: the last N bytes
        if not last:
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            return UNSATISFIABLE
        return max(0, size - suffix), min(suffix, size)
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        return UNSATISFIABLE
    end = min(int(last), size - 1) if last else size - 1
    return start, end - start + 1
