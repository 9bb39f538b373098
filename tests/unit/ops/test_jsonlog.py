"""JsonFormatter: one JSON object per line, naming the process that wrote it."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from pyswoole import log
from pyswoole.ops.jsonlog import JsonFormatter


@pytest.fixture
def restore_role() -> Iterator[None]:
    role, worker_id = log._role, log._worker_id
    yield
    log.set_role(role, worker_id)


def record(message: str, *args: object, level: int = logging.INFO, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError("boom")
        except RuntimeError as error:
            exc_info = (type(error), error, error.__traceback__)
    return logging.LogRecord("pyswoole", level, __file__, 1, message, args, exc_info)


def formatted(rec: logging.LogRecord) -> dict[str, Any]:
    line = JsonFormatter(log.role).format(rec)
    assert "\n" not in line
    result: dict[str, Any] = json.loads(line)
    return result


def test_fields_of_a_plain_record(restore_role: None) -> None:
    log.set_role("worker", 3)
    entry = formatted(record("served %d requests", 12, level=logging.WARNING))
    assert entry["message"] == "served 12 requests"
    assert entry["level"] == "WARNING"
    assert entry["pid"] == os.getpid()
    assert entry["role"] == "worker"
    assert entry["worker_id"] == 3
    assert entry["logger"] == "pyswoole"
    assert "exc" not in entry


def test_role_is_read_at_format_time_not_at_construction(restore_role: None) -> None:
    formatter = JsonFormatter(log.role)
    log.set_role("manager")
    first = json.loads(formatter.format(record("a")))
    log.set_role("task_worker", 5)
    second = json.loads(formatter.format(record("b")))
    assert (first["role"], first["worker_id"]) == ("manager", -1)
    assert (second["role"], second["worker_id"]) == ("task_worker", 5)


def test_time_is_iso_8601_with_microseconds_and_offset() -> None:
    rec = record("x")
    rec.created = 1_800_000_000.123456
    entry = formatted(rec)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d\d:\d\d", entry["time"])
    assert datetime.fromisoformat(entry["time"]).timestamp() == pytest.approx(1_800_000_000.123456, abs=1e-6)


def test_an_exception_adds_its_traceback_as_exc() -> None:
    entry = formatted(record("failed", exc=True))
    assert entry["exc"].startswith("Traceback (most recent call last):")
    assert entry["exc"].endswith("RuntimeError: boom")


def test_a_multiline_message_stays_on_one_line() -> None:
    entry = formatted(record('line one\nline "two"\tand ünïcode'))
    assert entry["message"] == 'line one\nline "two"\tand ünïcode'


def test_through_a_logger_and_handler(restore_role: None, tmp_path: Any) -> None:
    log.set_role("master")
    path = tmp_path / "json.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(JsonFormatter(log.role))
    logger = logging.getLogger("pyswoole.test_jsonlog")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.error("first")
        try:
            {}["missing"]
        except KeyError:
            logger.exception("second")
    finally:
        logger.removeHandler(handler)
        handler.close()
    lines = path.read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert [entry["message"] for entry in entries] == ["first", "second"]
    assert "KeyError: 'missing'" in entries[1]["exc"]
    assert entries[0]["logger"] == "pyswoole.test_jsonlog"


def test_role_is_what_the_process_recorded(restore_role: None) -> None:
    log.set_role("task_worker", 3)
    assert log.role() == ("task_worker", 3)


@pytest.fixture
def pristine_logger(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The ``pyswoole`` logger as before any configure(), restored afterwards (other tests rely on its state)."""
    monkeypatch.setattr(log, "_handler", None)
    monkeypatch.setattr(log.logger, "handlers", [])
    monkeypatch.setattr(log.logger, "propagate", log.logger.propagate)
    monkeypatch.setattr(log.logger, "level", log.logger.level)
    yield
    if log._handler is not None:
        log._handler.close()


@pytest.mark.parametrize(("log_format", "json_lines"), [("json", True), ("swoole", False)])
def test_configure_writes_the_log_format_asked_for(
    pristine_logger: None, restore_role: None, tmp_path: Any, log_format: str, json_lines: bool
) -> None:
    path = tmp_path / "server.log"
    log.set_role("manager")

    log.configure(str(path), 2, log_format=log_format)
    log.logger.info("configured")

    line = path.read_text().rstrip("\n")
    if json_lines:
        entry = json.loads(line)
        assert (entry["message"], entry["role"], entry["worker_id"], entry["pid"]) == ("configured", "manager", -1,
                                                                                       os.getpid())  # fmt: skip
    else:
        assert re.fullmatch(rf"\[[-\d :]+ \${os.getpid()}\.-1\]\tINFO\tconfigured", line)
