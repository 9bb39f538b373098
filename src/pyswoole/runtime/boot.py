"""Bringing a configured server up: the process tree of each run mode, and what a forked child becomes.

BASE mode: one process that is master and worker 0 (``worker_num=1``, no task workers, no user processes, no
``max_request``), or else this process becomes the manager of the workers. PROCESS mode: this process forks
the manager first (no thread may exist at a fork), then runs the master and its reactor threads. Both return
only in the process that called ``start()``, once the server has stopped; every forked child ends in
``os._exit``.

The admin server is bound before the first fork and served by the manager (or, in a one-process server, by
its :class:`~.manager.OpsThread`); every other process closes its copy of the socket.
"""

from __future__ import annotations

import os
import signal
import sys
from functools import partial
from typing import Any

from .. import log
from ..constants import Mode, WorkerStatus
from ..ipc.pipes import WorkerPipes
from ..ipc.shm import Global, SharedState
from ..log import logger
from ..ops.admin import AdminServer, check_admin_address
from . import stats
from .context import Runtime
from .dispatch import HASH_MODES
from .manager import Manager, OpsThread
from .master import HANDLED_SIGNALS, Master
from .task_worker import TaskWorker
from .worker import EventWorker


def prepare(rt: Runtime) -> None:
    """Make the shared memory and the worker pipes for ``rt.setting``, before any fork."""
    setting = rt.setting
    worker_num, task_worker_num = setting["worker_num"], setting["task_worker_num"]
    slots = worker_num + task_worker_num + len(rt.processes)
    if rt.mode == Mode.PROCESS:
        shared = SharedState(slots, setting["reactor_num"], setting["max_connection"])
        shared.globals[Global.MASTER_PID] = os.getpid()  # known before the manager and workers start
    else:
        shared = SharedState(slots)
    reactor_num = setting["reactor_num"] if rt.mode == Mode.PROCESS else 0
    pipes = None if single_process(rt) else WorkerPipes(worker_num, task_worker_num, reactor_num)
    rt.configure(setting, shared, pipes)


def admin_server(setting: dict[str, Any]) -> AdminServer | None:
    """The ``admin_server``, checked (ValueError naming the setting) and bound (ServerError when the address is in
    use); None without that setting. Call before anything forks."""
    address = setting.get("admin_server")
    if not address:
        return None
    token = setting.get("admin_server_token")
    host, port = check_admin_address(address, token)
    return AdminServer(host, port, token, stats.latest_snapshot)


def single_process(rt: Runtime) -> bool:
    setting = rt.setting
    return (
        rt.mode == Mode.BASE
        and setting["worker_num"] == 1
        and setting["task_worker_num"] == 0
        and setting["max_request"] == 0
        and not rt.processes
    )


def run(rt: Runtime, admin: AdminServer | None = None) -> None:
    """Serve until the server stops; the pid_file exists meanwhile. ``admin``: the bound admin server."""
    pid_file = rt.setting.get("pid_file")
    wrote_pid_file = False
    try:
        if rt.mode == Mode.PROCESS:
            _drop_unsafe_events(rt)
            signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)  # see master.HANDLED_SIGNALS
            manager_pid = _fork_manager(rt, admin)
            if admin is not None:
                admin.close()  # the manager serves it
            rt.manager_pid = manager_pid
            rt.shared.globals[Global.MANAGER_PID] = manager_pid
            wrote_pid_file = _write_pid_file(pid_file)
            Master(rt, manager_pid).run()
        elif single_process(rt):
            wrote_pid_file = _write_pid_file(pid_file)
            rt.shared.globals[Global.MASTER_PID] = os.getpid()
            rt.set_title("master")
            ops = OpsThread(rt, admin) if admin is not None or os.environ.get("NOTIFY_SOCKET") else None
            if ops is not None:
                ops.start()
            try:
                run_child(rt, 0)
            finally:
                if ops is not None:
                    ops.stop()
        else:
            wrote_pid_file = _write_pid_file(pid_file)
            Manager(rt, partial(run_child, rt), admin).run()
    finally:
        if admin is not None:
            admin.close()
        if wrote_pid_file:
            _unlink(pid_file)


def run_child(rt: Runtime, worker_id: int) -> None:
    """Serve as ``worker_id`` in this process: an event worker, a task worker or a user process."""
    setting = rt.setting
    worker_num, task_worker_num = setting["worker_num"], setting["task_worker_num"]
    if worker_id >= worker_num + task_worker_num:
        _run_user_process(rt, worker_id)
    elif worker_id >= worker_num:
        TaskWorker(rt, worker_id).run()
    else:
        start_callback = False
        if rt.mode == Mode.BASE and worker_id == 0:  # PROCESS mode: Start runs in the master
            with rt.shared.locked():
                start_callback = not rt.shared.globals[Global.ONSTART_CALLED]
                rt.shared.globals[Global.ONSTART_CALLED] = 1
        EventWorker(rt, worker_id).run(start_callback)


def _run_user_process(rt: Runtime, worker_id: int) -> None:
    index = worker_id - rt.setting["worker_num"] - rt.setting["task_worker_num"]
    process = rt.processes[index]
    log.set_role("user", worker_id)
    rt.set_title(f"process {index}")
    rt.enter_user_process(worker_id, os.getpid())
    rt.shared.begin_incarnation(worker_id, os.getpid(), int(WorkerStatus.BUSY))
    process.run(worker_id)


def _fork_manager(rt: Runtime, admin: AdminServer | None) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    manager_pid = os.fork()
    if manager_pid:
        return manager_pid
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)  # blocked for the master only
    code = 0
    try:
        Manager(rt, partial(run_child, rt), admin).run()
    except BaseException:
        logger.exception("manager failed")
        code = 255
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _drop_unsafe_events(rt: Runtime) -> None:
    """Only the hash dispatch modes keep a connection's events in one worker; elsewhere Connect, Close and
    the buffer events could run concurrently in several workers, so Swoole drops them (with a warning)."""
    mode = rt.setting["dispatch_mode"]
    if mode in HASH_MODES or rt.setting["enable_unsafe_event"]:
        return
    for port in rt.ports:
        for event in ("connect", "close", "buffer_full", "buffer_empty"):
            if port.callbacks.pop(event, None) is not None:
                name = "on" + event.title().replace("_", "")
                logger.warning("cannot set '%s' event when using dispatch_mode=%d", name, mode)


def _write_pid_file(pid_file: str | None) -> bool:
    if not pid_file:
        return False
    with open(pid_file, "w") as file:
        file.write(f"{os.getpid()}\n")
    return True


def _unlink(path: str | None) -> None:
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass
