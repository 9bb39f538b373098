"""The manager keeps every worker alive: crashes are reported (WorkerError) and replaced in the same slot, a
crash loop backs off, and workers are recycled after max_request, when wedged (worker_timeout) or when they
use too much memory (max_worker_rss). Also: user processes, process titles, a stop by Ctrl-C or by the
manager's death."""

from __future__ import annotations

import os
import signal
import time

import pytest

from managerkit import gone, incarnations, start_manager_server, whoami
from serverkit import process_title, wait_until

pytestmark = pytest.mark.timeout(30)


def replacement_of(server, worker_id: int, old_pid: int, timeout: float = 10) -> dict:
    """The WorkerStart of the incarnation of ``worker_id`` that came after ``old_pid``."""
    old_start = server.events("worker_start", pid=old_pid)[0]["t"]
    return server.wait_event(
        lambda e: e["kind"] == "worker_start" and e["worker_id"] == worker_id and e["t"] > old_start,
        timeout=timeout,
    )


@pytest.mark.parametrize("mode", ["BASE", "PROCESS"])
def test_a_crash_is_reported_with_its_exit_code_or_signal_and_the_worker_is_replaced(start_server, connect, mode):
    server = start_manager_server(start_server, mode, worker_num=2)
    server.wait_events("worker_start", 2)
    manager = server.wait_event("manager_start")["pid"]
    client = connect(server)
    crashed = whoami(client)

    client.send(b"exit 3")

    error = server.wait_event("worker_error")
    assert (error["worker_id"], error["worker_pid"], error["exit_code"], error["signal"]) == (
        crashed["worker_id"],
        crashed["pid"],
        3,
        0,
    )
    assert error["pid"] == manager  # WorkerError runs in the manager
    first = replacement_of(server, crashed["worker_id"], crashed["pid"])
    assert first["ppid"] == manager
    wait_until(
        lambda: (
            f"worker(pid={crashed['pid']}, id={crashed['worker_id']}) abnormal exit, status=3, signal=0" in server.log()
        )
    )

    # The other worker, killed from outside.
    other_id = 1 - crashed["worker_id"]
    other_pid = incarnations(server)[other_id][-1]
    os.kill(other_pid, signal.SIGKILL)

    killed = server.wait_events("worker_error", 2)[1]
    assert (killed["worker_id"], killed["worker_pid"], killed["exit_code"], killed["signal"]) == (
        other_id,
        other_pid,
        0,
        9,
    )
    second = replacement_of(server, other_id, other_pid)
    assert second["ppid"] == manager

    if mode == "PROCESS":  # the connection lives in the master: it outlives its worker
        assert client.request(b"still connected") == b"still connected"
        assert whoami(client)["pid"] in (first["pid"], second["pid"])
    else:  # BASE: the connection died with the worker that owned it
        assert client.recv_eof() == b""
    for i in range(4):
        assert connect(server).request(b"served %d" % i) == b"served %d" % i
    assert sorted(len(pids) for pids in incarnations(server).values()) == [2, 2]
    assert len(server.events("worker_error")) == 2
    assert server.alive()


def test_a_crash_loop_backs_off_instead_of_spinning(start_server, connect):
    server = start_server("""
        server = recording_server(worker_num=2)

        @server.on("WorkerStart")
        def on_worker_start(server, worker_id):
            record("worker_start", worker_id=worker_id)
            if worker_id == 1:
                os._exit(1)  # a broken deploy: dies at every start

        server.on("WorkerError", lambda server, worker_id, pid, code, signo:
                  record("worker_error", worker_id=worker_id, exit_code=code, signal=signo))
        serve(server)
    """)
    starts = server.wait_events("worker_start", 4, timeout=10, worker_id=1)
    first = starts[0]["t"]
    # Count the starts of the first two seconds of the loop (a tight loop would make hundreds).
    wait_until(lambda: time.monotonic() >= first + 2.0, timeout=5)
    in_two_seconds = [e["t"] for e in server.events("worker_start", worker_id=1) if e["t"] < first + 2.0]
    gaps = [b - a for a, b in zip(in_two_seconds, in_two_seconds[1:], strict=False)]

    assert 3 <= len(in_two_seconds) <= 6, gaps
    assert gaps[0] >= 0.1, gaps
    assert all(b > a for a, b in zip(gaps, gaps[1:], strict=False)), f"restart delays do not grow: {gaps}"
    assert in_two_seconds[3] - first >= 1.0, gaps  # three delays of about 0.2 + 0.4 + 0.8 s
    errors = server.events("worker_error")
    assert {(e["worker_id"], e["exit_code"], e["signal"]) for e in errors} == {(1, 1, 0)}
    assert "restarting it in" in server.log()
    # Worker 0 was never disturbed and serves.
    assert len(server.events("worker_start", worker_id=0)) == 1
    assert connect(server).request(b"still served") == b"still served"


@pytest.mark.parametrize(("max_request", "grace", "per_incarnation"), [(10, None, 10), (12, 0, 12)])
def test_max_request_recycles_a_worker_after_exactly_the_computed_count(
    start_server, connect, max_request, grace, per_incarnation
):
    settings = {"worker_num": 1, "max_request": max_request}
    if grace is not None:
        settings["max_request_grace"] = grace
    server = start_manager_server(start_server, "PROCESS", **settings)
    client = connect(server)
    total = 2 * per_incarnation + 5

    for i in range(total):
        assert client.request(b"request %03d" % i) == b"request %03d" % i

    pids = incarnations(server)[0]
    counts = [len(server.events("receive", pid=pid)) for pid in pids]
    assert counts == [per_incarnation, per_incarnation, 5]
    assert [e["pid"] for e in server.events("worker_stop")] == pids[:2]  # recycled gracefully
    assert server.events("worker_error") == []
    wait_until(lambda: f"reached max_request ({per_incarnation})" in server.log())


def test_max_request_grace_adds_a_random_margin_when_max_request_is_over_10(start_server, connect):
    server = start_manager_server(start_server, "PROCESS", worker_num=1, max_request=20)  # grace 10
    client = connect(server)

    for i in range(45):
        assert client.request(b"request %03d" % i) == b"request %03d" % i

    pids = incarnations(server)[0]
    counts = [len(server.events("receive", pid=pid)) for pid in pids]
    assert len(pids) >= 2 and sum(counts) == 45
    assert all(21 <= count <= 30 for count in counts[:-1]), counts


def test_a_wedged_worker_is_killed_after_worker_timeout_and_replaced(start_server, connect):
    server = start_manager_server(start_server, "PROCESS", worker_num=2, worker_timeout=1)
    workers = {e["worker_id"]: e["pid"] for e in server.wait_events("worker_start", 2)}
    client = connect(server)
    wedged = whoami(client)

    client.send(b"spin")
    spinning = server.wait_event("spinning")

    error = server.wait_event("worker_error", timeout=10)
    assert (error["worker_id"], error["worker_pid"], error["exit_code"], error["signal"]) == (
        wedged["worker_id"],
        wedged["pid"],
        0,
        9,
    )
    # The last beat came at most worker_timeout/4 before the spin began; then the manager waits worker_timeout.
    assert 0.7 <= error["t"] - spinning["t"] <= 3.0
    replacement = replacement_of(server, wedged["worker_id"], wedged["pid"])
    assert "(worker_timeout)" in server.log()
    # The same connection is now served by the replacement; the idle worker was never touched.
    assert client.request(b"after the wedge") == b"after the wedge"
    assert whoami(client)["pid"] == replacement["pid"]
    assert len(server.events("worker_error")) == 1
    assert not gone(workers[1 - wedged["worker_id"]])
    assert incarnations(server)[1 - wedged["worker_id"]] == [workers[1 - wedged["worker_id"]]]


def test_a_worker_over_max_worker_rss_is_recycled(start_server, connect):
    limit = 64 << 20
    server = start_manager_server(start_server, "PROCESS", worker_num=2, max_worker_rss="64M")
    server.wait_events("worker_start", 2)
    client = connect(server)
    before = whoami(client)
    baseline = client.ask("__import__('pyswoole.runtime.worker').runtime.worker.resident_memory()")
    assert baseline < limit - (24 << 20), f"a fresh worker already uses {baseline} bytes: the test needs room"

    assert client.request(b"grow 96", 6) == b"grown\n"

    replacement = replacement_of(server, before["worker_id"], before["pid"])
    assert server.events("worker_stop", pid=before["pid"])  # a graceful exit, not a kill
    assert server.events("worker_error") == []
    wait_until(lambda: f"over max_worker_rss {limit}: recycled" in server.log())
    assert whoami(client)["pid"] == replacement["pid"]
    assert client.ask("__import__('pyswoole.runtime.worker').runtime.worker.resident_memory()") < limit


USER_PROCESS_SERVER = """
from pyswoole import Process

server = recording_server(mode=getattr(Mode, mode), worker_num=2, **settings)
server.on("PipeMessage", lambda server, src, message: record(
    "pipe_message", worker_id=server.worker_id, src=src, message=message))
if settings.get("task_worker_num"):
    server.on("Task", lambda server, task_id, src_worker_id, data: data)

def run(process):
    record("process_start", worker_id=server.worker_id, ppid=os.getppid())
    while True:  # sends for the test whenever it drops a session id into the file "target"
        try:
            with open("target") as f:
                fd = int(f.read())
        except (FileNotFoundError, ValueError):
            time.sleep(0.01)
            continue
        os.unlink("target")
        record("process_sent", fd=fd, send=server.send(fd, b"from process %d\\n" % os.getpid()),
               message=server.send_message("hello from process %d" % os.getpid(), 0))

server.add_process(Process(run))
serve(server)
"""


def ask_process_to_send(server, fd: int) -> None:
    tmp = server.workdir / "target.tmp"
    tmp.write_text(str(fd))
    tmp.rename(server.workdir / "target")


@pytest.mark.parametrize("mode", ["BASE", "PROCESS"])
def test_a_user_process_is_restarted_after_being_killed_and_can_send_to_clients_and_workers(
    start_server, connect, mode
):
    settings = {"reactor_num": 1} if mode == "PROCESS" else {}
    server = start_server(USER_PROCESS_SERVER, mode=mode, settings=settings)
    first = server.wait_event("process_start")
    manager = server.wait_event("manager_start")["pid"]
    client = connect(server)
    fd = client.ask("fd")

    for incarnation in range(2):
        process = server.events("process_start")[-1]
        assert process["worker_id"] == 2  # after the 2 event workers (no task workers)
        ask_process_to_send(server, fd)
        assert client.recv_line() == b"from process %d\n" % process["pid"]
        sent = server.wait_events("process_sent", incarnation + 1)[-1]
        assert (sent["pid"], sent["send"], sent["message"]) == (process["pid"], True, True)
        message = server.wait_events("pipe_message", incarnation + 1)[-1]
        assert (message["worker_id"], message["src"], message["message"]) == (
            0,
            2,
            f"hello from process {process['pid']}",
        )
        if incarnation == 0:
            os.kill(process["pid"], signal.SIGKILL)
            restarted = server.wait_events("process_start", 2)[1]
            assert restarted["pid"] != first["pid"]
            assert restarted["ppid"] == first["ppid"] == manager
            wait_until(lambda: gone(first["pid"]))
    assert client.request(b"echo still works") == b"echo still works"


@pytest.mark.parametrize("mode", ["BASE", "PROCESS"])
def test_every_process_is_titled_with_its_role(start_server, connect, mode):
    server = start_server(USER_PROCESS_SERVER, mode=mode, settings={"task_worker_num": 1, "process_name": "myapp"})
    starts = {e["worker_id"]: e["pid"] for e in server.wait_events("worker_start", 3)}
    user = server.wait_event("process_start")
    manager = server.wait_event("manager_start")["pid"]
    assert connect(server).request(b"serving") == b"serving"
    assert sorted(starts) == [0, 1, 2]  # 2: the task worker

    titles = {pid: process_title(pid) for pid in server.group()}

    expected = {
        manager: "myapp: manager",
        starts[0]: "myapp: worker 0",
        starts[1]: "myapp: worker 1",
        starts[2]: "myapp: task worker 2",
        user["pid"]: "myapp: process 0",
    }
    if mode == "PROCESS":
        expected[server.pid] = "myapp: master"
    else:
        assert manager == server.pid  # BASE: the script's process manages the workers
    assert titles == expected


def test_ctrl_c_stops_a_process_mode_server_in_order_with_exit_0(start_server, connect):
    server = start_manager_server(start_server, "PROCESS", worker_num=2, task_worker_num=1)
    server.wait_events("worker_start", 3)
    client = connect(server)
    assert client.request(b"x") == b"x"

    server.signal_group(signal.SIGINT)  # what a terminal's Ctrl-C does: every process of the group gets it

    assert server.wait_exit() == 0
    kinds = server.kinds()
    stops = [i for i, kind in enumerate(kinds) if kind == "worker_stop"]
    assert len(stops) == 3
    assert kinds.count("manager_stop") == kinds.count("shutdown") == 1
    assert max(stops) < kinds.index("manager_stop") < kinds.index("shutdown")
    assert server.events("worker_error") == []
    assert server.events("start_returned")[0]["value"] is True
    assert client.recv_eof() == b""
    wait_until(lambda: server.group() == [], message=lambda: f"left behind: {server.group()}")


def test_the_master_shuts_down_when_the_manager_dies(start_server, connect):
    server = start_server(USER_PROCESS_SERVER, mode="PROCESS", settings={"reactor_num": 1, "task_worker_num": 1})
    server.wait_events("worker_start", 3)
    server.wait_event("process_start")
    manager = server.wait_event("manager_start")["pid"]
    client = connect(server)
    assert client.request(b"x") == b"x"

    os.kill(manager, signal.SIGKILL)

    assert server.wait_exit() == 0
    assert server.events("start_returned")[0]["value"] is True
    assert "manager process exit" in server.log()
    assert client.recv_eof() == b""
    # Orphaned workers, task worker and user process notice and leave too.
    wait_until(lambda: server.group() == [], timeout=5, message=lambda: f"left behind: {server.group()}")
