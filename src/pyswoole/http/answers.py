"""What becomes of each answered HTTP request: the status-class counter of the process or thread that answered it
(for ``stats()`` and ``/metrics``), and, with ``http_access_log``, one access-log line.

A log line is formatted by the caller (a few microseconds) and written by a background thread behind a bounded
queue (``ops.access_log.AccessLog``), so a slow disk never blocks an event loop. Each thread that answers
requests (a worker's loop, a PROCESS reactor thread for static files and refused requests) has its own writer,
made on first use after fork.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from ..ipc.shm import SlotCounters, count_http_status
from ..ops.access_log import AccessLog, AccessLogFormat, AccessRecord
from .parser import RequestHead


class Answers:
    """One HTTP port's record of answered requests."""

    def __init__(self, access_log: bool, access_log_format: str) -> None:
        self.enabled = access_log
        self.format = access_log_format
        if access_log:
            AccessLogFormat(access_log_format)  # a bad format raises ValueError now, before any fork
        self._logs: dict[int, AccessLog] = {}  # by thread: an AccessLog is used from one thread

    def answered(
        self,
        counters: SlotCounters,
        head: RequestHead,
        remote_addr: str,
        status: int,
        length: int,
        started: float,
        response_headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        """Count a response of ``status`` (``length`` body bytes) to ``head``, and log it when asked to."""
        count_http_status(counters, status)
        if not self.enabled:
            return
        thread = threading.get_ident()
        log = self._logs.get(thread)
        if log is None:
            log = self._logs[thread] = AccessLog(self.format)
        log.log(
            AccessRecord(
                remote_addr, head.method, head.target.decode("latin-1"), head.version, status, length, head.headers,
                response_headers, started, time.time() - started,
            )
        )  # fmt: skip
