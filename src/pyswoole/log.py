"""Logging in Swoole's line format, through the standard ``logging`` module (logger ``pyswoole``).

Every line says which process wrote it: ``[<date> <symbol><pid>.<worker_id>]\\t<LEVEL>\\t<text>``, where the
symbol is the process role (``#`` master, ``$`` manager, ``*`` worker, ``^`` task worker, ``@`` user process);
with ``log_format="json"`` one JSON object per line (:class:`pyswoole.ops.jsonlog.JsonFormatter`) says the same.
Each process sets its role once after fork with :func:`set_role`; the formatter reads it per record.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from .constants import ROLE_SYMBOL
from .ops.jsonlog import JsonFormatter

logger = logging.getLogger("pyswoole")

TRACE = 15
NOTICE = 25
NONE = logging.CRITICAL + 10
logging.addLevelName(TRACE, "TRACE")
logging.addLevelName(NOTICE, "NOTICE")

# Swoole's log_level numbers mapped onto logging's levels.
SWOOLE_TO_LOGGING = {
    0: logging.DEBUG,
    1: TRACE,
    2: logging.INFO,
    3: NOTICE,
    4: logging.WARNING,
    5: logging.ERROR,
    6: NONE,
}

_role = "master"
_worker_id = -1


def set_role(role: str, worker_id: int = -1) -> None:
    """Record which role this process plays, for the prefix of every later log line."""
    global _role, _worker_id
    _role, _worker_id = role, worker_id


def role() -> tuple[str, int]:
    """This process's role (master, manager, worker, task_worker, user) and worker id (-1 outside workers)."""
    return _role, _worker_id


class SwooleFormatter(logging.Formatter):
    def __init__(self, date_format: str = "%Y-%m-%d %H:%M:%S", microseconds: bool = False) -> None:
        super().__init__()
        self.date_format = date_format
        self.microseconds = microseconds

    def format(self, record: logging.LogRecord) -> str:
        date = time.strftime(self.date_format, time.localtime(record.created))
        if self.microseconds:
            date += f"<.{int(record.msecs * 1000):06d}>"
        line = f"[{date} {ROLE_SYMBOL[_role]}{os.getpid()}.{_worker_id}]\t{record.levelname}\t{record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _ReopenableFileHandler(logging.FileHandler):
    """A file handler whose file can be reopened after logrotate moved it away."""

    def reopen(self) -> None:
        self.acquire()
        try:
            if self.stream:
                self.stream.close()
            self.stream = self._open()
        finally:
            self.release()


class Throttle:
    """Lets a recurring warning through at most once per ``period`` seconds, as Swoole rate-limits its own
    (too many connections, no idle worker): a flood of refusals must not become a flood of log lines."""

    def __init__(self, period: float = 1.0) -> None:
        self.period = period
        self._last = float("-inf")

    def ready(self) -> bool:
        now = time.monotonic()
        if now - self._last < self.period:
            return False
        self._last = now
        return True


_handler: logging.Handler | None = None


def configure(
    log_file: str | None,
    log_level: int,
    date_format: str = "%Y-%m-%d %H:%M:%S",
    microseconds: bool = False,
    log_format: str = "swoole",
) -> None:
    """Send the ``pyswoole`` logger to ``log_file`` (or stderr), in Swoole's format or, with ``log_format="json"``,
    as JSON lines.

    A handler the user attached to the ``pyswoole`` logger themselves wins: then only the level is set.
    """
    global _handler
    logger.setLevel(SWOOLE_TO_LOGGING.get(log_level, logging.INFO))
    if logger.handlers and _handler not in logger.handlers:
        return
    if _handler is not None:
        logger.removeHandler(_handler)
        _handler.close()
    _handler = _ReopenableFileHandler(log_file, delay=False) if log_file else logging.StreamHandler(sys.stderr)
    _handler.setFormatter(JsonFormatter(role) if log_format == "json" else SwooleFormatter(date_format, microseconds))
    logger.addHandler(_handler)
    logger.propagate = False


_stdio_file: str | None = None  # a daemon's stdout and stderr go there, and are reopened with the log


def redirect_stdio(path: str) -> None:
    """Point stdout and stderr (the file descriptors) at ``path``, appending; again at every :func:`reopen`."""
    global _stdio_file
    _stdio_file = path
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def reopen() -> None:
    """Reopen the log file (after logrotate), and a daemon's stdout/stderr; a no-op when logging to stderr."""
    if isinstance(_handler, _ReopenableFileHandler):
        _handler.reopen()
    if _stdio_file is not None:
        redirect_stdio(_stdio_file)
