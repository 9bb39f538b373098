"""Shared pieces of the manager tests (``test_manager_*.py``, ``test_cli.py``); this module holds no tests.

``MANAGER_SERVER`` is a recording server (see ``serverkit.recording_server``) in the mode named by ``mode``
(``"BASE"`` or ``"PROCESS"``), built with ``server.set(**settings)``. On top of what the recording server
records it records ``worker_error``, ``before_reload``, ``after_reload`` and, in ``worker_start`` /
``worker_stop``, whether the process is a task worker. Its Receive understands a few commands, each sent
alone on its connection:

* ``exit N``: the worker calls ``os._exit(N)`` (a crash);
* ``spin``: the worker loops in ``while True: pass`` (wedged: no answer, no loop pass);
* ``grow N``: the worker keeps N MiB more of touched memory, then replies ``grown\\n``;

anything else is echoed, and ``ask <expression>`` is answered (``serverkit.answer``). With task workers, Task
returns its data (so ``server.task_wait(x)`` is ``x``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from serverkit import ServerProcess, StreamClient

MANAGER_SERVER = """
server = recording_server(mode=getattr(Mode, mode), **settings)
echo = server.get_callback("Receive")
hoard = []

@server.on("WorkerStart")
def on_worker_start(server, worker_id):
    record("worker_start", worker_id=worker_id, taskworker=server.taskworker, ppid=os.getppid())

@server.on("WorkerStop")
def on_worker_stop(server, worker_id):
    record("worker_stop", worker_id=worker_id, taskworker=server.taskworker)

@server.on("WorkerError")
def on_worker_error(server, worker_id, worker_pid, exit_code, signal_number):
    record("worker_error", worker_id=worker_id, worker_pid=worker_pid, exit_code=exit_code, signal=signal_number)

server.on("BeforeReload", lambda server: record("before_reload"))
server.on("AfterReload", lambda server: record("after_reload"))
if settings.get("task_worker_num"):
    server.on("Task", lambda server, task_id, src_worker_id, data: data)

@server.on("Receive")
def on_receive(server, fd, reactor_id, data):
    if data.startswith(b"exit "):
        record("exiting", code=int(data[5:]))
        os._exit(int(data[5:]))
    elif data == b"spin":
        record("spinning")
        while True:
            pass
    elif data.startswith(b"grow "):
        hoard.append(b"\\x01" * (int(data[5:]) << 20))  # written, so resident (bytes(n) would not be)
        server.send(fd, b"grown\\n")
    else:
        echo(server, fd, reactor_id, data)

serve(server)
"""


def start_manager_server(start_server, mode: str = "PROCESS", **settings: Any) -> ServerProcess:
    """A ``MANAGER_SERVER`` in ``mode`` with ``server.set(**settings)`` (PROCESS: reactor_num 1 unless given)."""
    if mode == "PROCESS":
        settings = {"reactor_num": 1, **settings}
    return start_server(MANAGER_SERVER, mode=mode, settings=settings)


def incarnations(server: ServerProcess) -> dict[int, list[int]]:
    """worker id -> pids of its incarnations so far, in start order (event workers and task workers)."""
    found: dict[int, list[int]] = {}
    for event in server.events("worker_start"):
        found.setdefault(event["worker_id"], []).append(event["pid"])
    return found


def whoami(client: StreamClient) -> dict[str, Any]:
    """Session id, worker id and pid of the worker that answers this connection's probe."""
    fd, worker_id, pid = client.ask("[fd, server.worker_id, os.getpid()]")
    return {"fd": fd, "worker_id": worker_id, "pid": pid}


def gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie counts as gone: it runs nothing any more)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] in "ZX"


def cli_command() -> list[str]:
    """How to run the ``pyswoole`` console script of the interpreter running the tests."""
    script = Path(sys.executable).parent / "pyswoole"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pyswoole.cli"]


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 20.0) -> subprocess.CompletedProcess:
    """``pyswoole ARGS...``: its exit code, stdout and stderr (text)."""
    return subprocess.run(
        [*cli_command(), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )
