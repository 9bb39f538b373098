"""``log_format="json"`` in a real server: every process writes JSON lines to the log file, each saying which
process wrote it."""

from __future__ import annotations

import json

import pytest

from serverkit import wait_until

pytestmark = pytest.mark.timeout(30)

JSON_LOG_SERVER = """
from pyswoole.log import logger

server = recording_server(mode=Mode.PROCESS, worker_num=2, task_worker_num=1, reactor_num=1,
                          log_format="json", log_file="server.log")

@server.on("Start")
def on_start(server):
    record("start")
    logger.info("hello from the master")

@server.on("ManagerStart")
def on_manager_start(server):
    record("manager_start")
    logger.info("hello from the manager")

@server.on("WorkerStart")
def on_worker_start(server, worker_id):
    record("worker_start", worker_id=worker_id)
    logger.warning("hello from worker %d", worker_id)

@server.on("Receive")
def on_receive(server, fd, reactor_id, data):
    raise RuntimeError("two\\nlines")

server.on("Task", lambda server, task_id, src_worker_id, data: data)
serve(server)
"""


def test_every_process_writes_json_lines_that_say_who_wrote_them(start_server, connect):
    server = start_server(JSON_LOG_SERVER)
    starts = server.wait_events("worker_start", 3)
    master, manager = server.wait_event("start")["pid"], server.wait_event("manager_start")["pid"]
    client = connect(server)
    client.send(b"boom")
    log = server.workdir / "server.log"

    def entries() -> dict[str, dict]:
        lines = log.read_text().splitlines() if log.exists() else []
        return {entry["message"]: entry for entry in map(json.loads, lines)}

    logged = wait_until(
        lambda: len(found := entries()) >= 6 and any(m.startswith("Receive callback failed") for m in found) and found,
        message=lambda: log.read_text() if log.exists() else "no log file",
    )

    def who(message: str) -> tuple[str, int, int]:
        entry = logged[message]
        return entry["role"], entry["worker_id"], entry["pid"]

    assert who("hello from the master") == ("master", -1, master)
    assert who("hello from the manager") == ("manager", -1, manager)
    for event in starts:
        role = "task_worker" if event["worker_id"] == 2 else "worker"
        assert who(f"hello from worker {event['worker_id']}") == (role, event["worker_id"], event["pid"])
    entry = logged["hello from worker 0"]
    assert (entry["level"], entry["logger"]) == ("WARNING", "pyswoole")
    assert entry["time"][10] == "T" and entry["time"][-6] in "+-"  # ISO 8601 with its UTC offset
    [failure] = [entry for message, entry in logged.items() if message.startswith("Receive callback failed")]
    assert failure["role"] == "worker" and failure["level"] == "ERROR"
    assert failure["exc"].rstrip().endswith("RuntimeError: two\nlines")  # the traceback, in the same line
