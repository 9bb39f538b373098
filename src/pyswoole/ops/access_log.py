"""The HTTP access log: gunicorn's format atoms, and a writer that never blocks the worker's event loop.

:class:`AccessLogFormat` compiles ``http_access_log_format`` once (an unknown atom is a ``ValueError`` at
construction, not a broken line per request). :class:`AccessLog` formats a line in the caller and hands it to a
background thread through a bounded queue; invariant: :meth:`AccessLog.log` never waits for I/O nor for a lock
the writer holds while writing, so when the output is slower than the requests (a full disk, a stalled pipe)
lines are dropped and counted instead.

Atoms (gunicorn's, less its WSGI environ ``{var}e``), all written as ``%(atom)s``:

``h`` remote address, ``l`` ``-``, ``u`` user name of Basic auth or ``-``, ``t`` date as
``[10/Oct/2000:13:55:36 +0000]``, ``r`` request line, ``m`` method, ``U`` path without the query, ``q`` query
string, ``H`` protocol (``HTTP/1.1``), ``s`` status, ``B`` response body bytes, ``b`` the same or ``-`` for 0,
``f`` referer, ``a`` user agent, ``T`` request time in whole seconds, ``D`` in microseconds, ``M`` in
milliseconds, ``L`` in decimal seconds, ``p`` ``<pid>``, ``{name}i`` a request header, ``{name}o`` a response
header; ``%%`` is a literal ``%``. What the client or the application chose (request line, headers, user) is
escaped as Apache does (``\\"``, ``\\\\``, control bytes as ``\\xhh``), so a line cannot be forged or split.
"""

from __future__ import annotations

import binascii
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pyswoole.log import Throttle, logger

DEFAULT_FORMAT = '%(h)s "%(r)s" %(s)s %(b)s %(D)sus'
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
access_logger = logging.getLogger("pyswoole.access")


@dataclass(frozen=True, slots=True)
class AccessRecord:
    """One HTTP request and its answer, as the access log needs them."""

    remote_addr: str
    method: str
    target: str  # the request target as received: path, then ``?query`` if any
    http_version: str  # "1.1"
    status: int
    response_length: int  # body bytes sent
    request_headers: Sequence[tuple[bytes, bytes]]
    response_headers: Sequence[tuple[bytes, bytes]]
    start_time: float  # seconds since the epoch, when the request arrived
    duration: float  # seconds from arrival to the last byte of the answer handed to the transport


Atom = Callable[[AccessRecord], str]

# Client-chosen text: quote and backslash escaped, C0/C1 control characters as \xhh (as Apache's mod_log_config),
# and the two Unicode line separators, which some readers split lines on.
_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))}
_ESCAPES |= {ord('"'): '\\"', ord("\\"): "\\\\", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def _escape(text: str) -> str:
    return text.translate(_ESCAPES)


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str:
    for key, value in headers:
        if key.lower() == name:
            return _escape(value.decode("latin-1"))
    return "-"


def _user(record: AccessRecord) -> str:
    for key, value in record.request_headers:
        if key.lower() == b"authorization":
            scheme, _, credentials = value.partition(b" ")
            if scheme.lower() == b"basic":
                try:
                    return _escape(binascii.a2b_base64(credentials.strip()).decode("latin-1").partition(":")[0])
                except binascii.Error:
                    return "-"
    return "-"


def _date(record: AccessRecord) -> str:
    local = time.localtime(record.start_time)
    offset = local.tm_gmtoff // 60
    sign = "-" if offset < 0 else "+"
    return (
        f"[{local.tm_mday:02d}/{MONTHS[local.tm_mon - 1]}/{local.tm_year}:{local.tm_hour:02d}:{local.tm_min:02d}:"
        f"{local.tm_sec:02d} {sign}{abs(offset) // 60:02d}{abs(offset) % 60:02d}]"
    )


_ATOMS: dict[str, Atom] = {
    "h": lambda r: r.remote_addr,
    "l": lambda r: "-",
    "u": _user,
    "t": _date,
    "r": lambda r: _escape(f"{r.method} {r.target} HTTP/{r.http_version}"),
    "m": lambda r: _escape(r.method),
    "U": lambda r: _escape(r.target.partition("?")[0]),
    "q": lambda r: _escape(r.target.partition("?")[2]),
    "H": lambda r: _escape(f"HTTP/{r.http_version}"),
    "s": lambda r: str(r.status),
    "B": lambda r: str(r.response_length),
    "b": lambda r: str(r.response_length) if r.response_length else "-",
    "f": lambda r: _header(r.request_headers, b"referer"),
    "a": lambda r: _header(r.request_headers, b"user-agent"),
    "T": lambda r: str(int(r.duration)),
    "D": lambda r: str(int(r.duration * 1_000_000)),
    "M": lambda r: str(int(r.duration * 1_000)),
    "L": lambda r: f"{r.duration:.6f}",
    "p": lambda r: f"<{os.getpid()}>",
}
_PLACEHOLDER = re.compile(r"%(?:%|\((?P<atom>[^)]*)\)(?P<conversion>.)?)?")


class AccessLogFormat:
    """``http_access_log_format`` compiled into a list of literal strings and atom getters."""

    def __init__(self, fmt: str = DEFAULT_FORMAT) -> None:
        self.fmt = fmt
        self._parts: list[str | Atom] = []
        position = 0
        for match in _PLACEHOLDER.finditer(fmt):
            self._parts.append(fmt[position : match.start()])
            position = match.end()
            if match.group() == "%%":
                self._parts.append("%")
                continue
            atom = match.group("atom")
            if atom is None or match.group("conversion") != "s":
                raise ValueError(f"http_access_log_format: {match.group()!r} at {match.start()} is not %(atom)s")
            self._parts.append(self._getter(atom))
        self._parts.append(fmt[position:])
        self._parts = [part for part in self._parts if part != ""]

    @staticmethod
    def _getter(atom: str) -> Atom:
        if atom in _ATOMS:
            return _ATOMS[atom]
        header = re.fullmatch(r"\{([^}]+)\}([io])", atom)
        if header is None:
            raise ValueError(f"http_access_log_format: unknown atom %({atom})s")
        name = header.group(1).lower().encode("latin-1")
        if header.group(2) == "i":
            return lambda r: _header(r.request_headers, name)
        return lambda r: _header(r.response_headers, name)

    def format(self, record: AccessRecord) -> str:
        return "".join(part if isinstance(part, str) else part(record) for part in self._parts)


class AccessLog:
    """Writes access lines to ``path`` (appending), or to the ``pyswoole.access`` logger when ``path`` is None,
    from a daemon thread.

    Create it in the process that logs (threads do not survive a fork), and call :meth:`log` from one thread
    (the event loop's). At most ``max_queue`` lines wait for the writer; past that :meth:`log` drops the line and
    counts it in :attr:`dropped`, as it does lines that the writer failed to write.
    """

    def __init__(self, fmt: str = DEFAULT_FORMAT, path: str | None = None, max_queue: int = 8192) -> None:
        self.format = AccessLogFormat(fmt)
        self.path = path
        self.max_queue = max_queue
        self._refused = 0  # written by the caller's thread only
        self._failed = 0  # written by the writer thread only
        self._lines: deque[str] = deque()
        self._wakeup = threading.Event()
        self._closing = False
        self._reopen = False
        self._throttle = Throttle(10.0)
        # Opened here, so that a bad path fails at start; a FIFO blocks here until it has a reader.
        self._fd = self._open() if path is not None else -1
        self._thread = threading.Thread(target=self._write_loop, name="pyswoole-access-log", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        """Lines lost: refused because the queue was full, or that the writer failed to write."""
        return self._refused + self._failed

    def log(self, record: AccessRecord) -> None:
        if len(self._lines) >= self.max_queue:
            self._refused += 1
            return
        self._lines.append(self.format.format(record))
        if not self._wakeup.is_set():  # reading the flag takes no lock; setting it does
            self._wakeup.set()

    def reopen(self) -> None:
        """Reopen the file after logrotate moved it away; lines queued before go to whichever file is open."""
        self._reopen = True
        self._wakeup.set()

    def close(self, timeout: float = 5.0) -> bool:
        """Write out the queued lines and stop the writer; False if that took longer than ``timeout``."""
        self._closing = True
        self._wakeup.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _open(self) -> int:
        assert self.path is not None
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def _write_loop(self) -> None:
        lines = self._lines
        while True:
            self._wakeup.wait()
            self._wakeup.clear()
            if self._reopen and self._fd >= 0:
                self._reopen = False
                self._reopen_file()
            batch = [lines.popleft() for _ in range(len(lines))]
            if batch:
                self._write(batch)
            if self._closing and not lines:
                if self._fd >= 0:
                    os.close(self._fd)
                return

    def _reopen_file(self) -> None:
        try:
            fd = self._open()
        except OSError as exc:  # keep writing to the old file rather than to nothing
            logger.warning("access log %s: cannot reopen: %s", self.path, exc)
            return
        os.close(self._fd)
        self._fd = fd

    def _write(self, batch: list[str]) -> None:
        if self._fd < 0:
            for line in batch:
                access_logger.info(line)
            return
        data = memoryview(("\n".join(batch) + "\n").encode("utf-8", "backslashreplace"))
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError as exc:
            self._failed += len(batch)  # a partly written batch counts whole: its lines cannot be told apart
            if self._throttle.ready():
                logger.warning("access log %s: %s; lines are dropped", self.path, exc)
