"""``log_format="json"``: a :class:`logging.Formatter` writing one JSON object per line.

Each line says which process wrote it, as Swoole's text format does: ``pid``, ``role`` (master, manager, worker,
task_worker, user) and ``worker_id`` are read at format time from the ``role`` callable, which
:func:`pyswoole.log.configure` hands in as :func:`pyswoole.log.role` (what the process recorded with
:func:`pyswoole.log.set_role` after its fork); this module does not import the log module, which imports it.
Invariant: a record is exactly one line (newlines in the message or the traceback are escaped by JSON), so a log
shipper can split on newlines.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from datetime import datetime
from typing import Any


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "pid", "role", "worker_id", "logger", "message"}``, plus ``exc`` (the traceback text)
    when the record carries an exception and ``stack`` when it carries stack info.

    ``time`` is ISO 8601 in local time with its UTC offset and microseconds (``2026-11-27T10:04:05.123456+01:00``),
    the clock Swoole's text lines use, made unambiguous.
    """

    def __init__(self, role: Callable[[], tuple[str, int]]) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        role, worker_id = self.role()
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="microseconds"),
            "level": record.levelname,
            "pid": os.getpid(),
            "role": role,
            "worker_id": worker_id,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)
