"""Daemon and files: ``daemonize`` detaches (start() returns at once in the foreground), ``pid_file`` names the
daemon, ``log_file`` gets its output in Swoole's line format, ``pyswoole stop`` stops it; SIGRTMIN reopens the
log file of every process (logrotate)."""

from __future__ import annotations

import os
import re
import signal

import pytest

from managerkit import gone, incarnations, run_cli
from serverkit import _proc_stat, wait_until

pytestmark = pytest.mark.timeout(30)

# [<date> <role symbol><pid>.<worker id>]\t<LEVEL>\t<text>
LOG_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [#$*^@](\d+)\.(-?\d+)\]\t([A-Z]+)\t(.*)$")


def log_lines(path) -> list[tuple[int, int, str, str]]:
    """(pid, worker id, level, text) of each Swoole-format line of a log file (other lines are skipped)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [(int(m[1]), int(m[2]), m[3], m[4]) for m in map(LOG_LINE.match, text.splitlines()) if m]


DAEMON_SERVER = """
server = recording_server(mode=Mode.PROCESS, worker_num=2, reactor_num=1, daemonize=True,
                          pid_file="server.pid", log_file="server.log", stats_timer_interval=100)
server.on("Start", lambda server: record("start", sid=os.getsid(0), ppid=os.getppid()))

@server.on("WorkerStart")
def on_worker_start(server, worker_id):
    record("worker_start", worker_id=worker_id)
    print(f"worker {worker_id} says hello on stdout", flush=True)

serve(server)
"""


def test_daemonize_detaches_writes_the_pid_file_logs_to_log_file_and_pyswoole_stop_stops_it(start_server, connect):
    server = start_server(DAEMON_SERVER)
    pid_file, log_file = server.workdir / "server.pid", server.workdir / "server.log"
    stats_file = server.workdir / "server.pid.stats.json"

    assert server.wait_exit(timeout=5) == 0  # the foreground process left at once, with 0 (as Swoole's parent)
    daemon = int(wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), message="no pid file"))
    stat = _proc_stat(daemon)
    assert stat is not None, "the daemon named in the pid file is not running"
    server.adopt_group(stat[2])  # killed at teardown whatever happens

    start = server.wait_event("start")
    assert start["pid"] == daemon != server.pid
    assert start["sid"] == os.getsid(daemon) != os.getsid(0)  # its own session: no controlling terminal
    assert start["ppid"] != server.pid
    assert connect(server.port).request(b"served by the daemon") == b"served by the daemon"
    server.wait_events("worker_start", 2)
    wait_until(lambda: stats_file.exists(), message="no stats file beside the pid file")

    # Output and log lines go to log_file, not to the foreground's stdout/stderr.
    wait_until(
        lambda: (
            "worker 1 says hello on stdout" in log_file.read_text()
            and "worker 0 says hello on stdout" in log_file.read_text()
        )
    )
    manager = server.events("manager_start")[0]["pid"]
    os.kill(daemon, signal.SIGUSR1)  # a reload: the manager logs an INFO line
    wait_until(lambda: all(len(pids) == 2 for pids in incarnations(server).values()), message="no reload")
    wait_until(
        lambda: (manager, -1, "INFO", "Server is reloading all workers now") in log_lines(log_file),
        message=lambda: log_file.read_text(),
    )
    assert "says hello" not in server.log() and "reloading" not in server.log()

    stopped = run_cli("stop", str(pid_file))

    assert (stopped.returncode, stopped.stdout.strip()) == (0, f"server {daemon} stopped"), stopped.stderr
    assert not pid_file.exists() and not stats_file.exists()
    returned = server.events("start_returned")[0]
    assert (returned["pid"], returned["value"]) == (daemon, True)  # start() returned True in the daemon...
    assert server.events("start_returned", pid=server.pid) == []  # ...and never in the foreground process
    kinds = server.kinds()
    assert kinds[-2:] == ["shutdown", "start_returned"] and kinds.count("manager_stop") == 1
    wait_until(
        lambda: all(gone(pid) for pid in [daemon, manager, *[e["pid"] for e in server.events("worker_start")]]),
        message="processes of the daemon live on",
    )


LOGGING_SERVER = """
import logging

from pyswoole import Process

log = logging.getLogger("pyswoole")
server = recording_server(mode=Mode.PROCESS, worker_num=2, task_worker_num=1, reactor_num=1, log_file="server.log")
server.on("WorkerError", lambda server, worker_id, pid, code, signo: record(
    "worker_error", worker_id=worker_id, worker_pid=pid, exit_code=code, signal=signo))

@server.on("Task")
def on_task(server, task_id, src_worker_id, data):
    log.warning("task line %s", data)
    return data

@server.on("Start")
def on_start(server):
    record("start")
    ticks = iter(range(10**9))
    server.tick(50, lambda timer_id: log.warning("master tick %d", next(ticks)))

def user_process(process):
    record("process_start")
    for tick in range(10**9):
        log.warning("process tick %d", tick)
        time.sleep(0.05)

server.add_process(Process(user_process))
serve(server)
"""


def test_sigrtmin_reopens_the_log_file_in_every_process(start_server, connect):
    server = start_server(LOGGING_SERVER)
    log_file, rotated = server.workdir / "server.log", server.workdir / "server.log.1"
    workers = {e["worker_id"]: e["pid"] for e in server.wait_events("worker_start", 3)}  # 2: the task worker
    user = server.wait_event("process_start")["pid"]
    manager = server.wait_event("manager_start")["pid"]
    processes = server.group()
    client = connect(server)
    worker = client.ask("os.getpid()")
    client.ask("__import__('logging').getLogger('pyswoole').warning('worker line before the rotation')")
    wait_until(
        lambda: (
            (worker, worker_id_of(workers, worker), "WARNING", "worker line before the rotation") in log_lines(log_file)
        )
    )

    log_file.rename(rotated)  # what logrotate does
    server.signal(signal.SIGRTMIN)

    # Each process writes to the old file until it has reopened: wait for a line of each in the new file.
    def worker_line_in_new_file() -> bool:
        client.ask("__import__('logging').getLogger('pyswoole').warning('worker line after the rotation')")
        return (worker, worker_id_of(workers, worker), "WARNING", "worker line after the rotation") in log_lines(
            log_file
        )

    wait_until(worker_line_in_new_file, message="the worker still writes to the rotated file")
    wait_until(
        lambda: any(pid == server.pid and text.startswith("master tick") for pid, _, _, text in log_lines(log_file)),
        message="the master still writes to the rotated file",
    )

    def task_line_in_new_file() -> bool:
        client.ask("server.task_wait('after the rotation', 5)")
        return (workers[2], 2, "WARNING", "task line after the rotation") in log_lines(log_file)

    wait_until(task_line_in_new_file, message="the task worker still writes to the rotated file")
    wait_until(
        lambda: any(pid == user and text.startswith("process tick") for pid, _, _, text in log_lines(log_file)),
        message="the user process still writes to the rotated file",
    )
    # The signal killed nobody: every process (task worker and user process included) is the same.
    assert server.events("worker_error") == []
    assert server.group() == processes
    os.kill(manager, signal.SIGUSR1)  # straight to the manager (not through the master, which would reopen too)
    wait_until(
        lambda: (manager, -1, "INFO", "Server is reloading all workers now") in log_lines(log_file),
        message=lambda: f"the manager still writes to the rotated file: {rotated.read_text()[-500:]}",
    )

    old = log_lines(rotated)
    assert (worker, worker_id_of(workers, worker), "WARNING", "worker line before the rotation") in old
    assert not any(text == "Server is reloading all workers now" for _, _, _, text in old)
    # Nothing was lost: the master's ticks are numbered, each is in one file or the other.
    ticks = sorted(
        int(text.split()[-1])
        for pid, _, _, text in old + log_lines(log_file)
        if pid == server.pid and text.startswith("master tick")
    )
    assert ticks == list(range(len(ticks)))


def worker_id_of(workers: dict[int, int], pid: int) -> int:
    return next(worker_id for worker_id, worker_pid in workers.items() if worker_pid == pid)


def test_sigrtmin_moves_a_daemons_stdout_and_stderr_to_the_new_log_file_too(start_server, connect):
    server = start_server(DAEMON_SERVER)
    pid_file, log_file, rotated = (server.workdir / name for name in ("server.pid", "server.log", "server.log.1"))
    assert server.wait_exit(timeout=5) == 0
    daemon = int(wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), message="no pid file"))
    server.adopt_group(_proc_stat(daemon)[2])
    server.wait_events("worker_start", 2)
    client = connect(server.port)
    wait_until(lambda: "says hello on stdout" in log_file.read_text())

    log_file.rename(rotated)  # logrotate
    os.kill(daemon, signal.SIGRTMIN)

    def printed_into_new_file() -> bool:
        client.ask("print('printed after the rotation', flush=True)")
        return log_file.exists() and "printed after the rotation" in log_file.read_text()

    wait_until(printed_into_new_file, timeout=5, message=lambda: "print() still goes to the rotated file")
    # Workers started after the rotation write there too.
    os.kill(daemon, signal.SIGUSR1)
    wait_until(
        lambda: log_file.read_text().count("says hello on stdout") == 2,
        message=lambda: f"new file: {log_file.read_text()!r}",
    )
    assert run_cli("stop", str(pid_file)).returncode == 0
