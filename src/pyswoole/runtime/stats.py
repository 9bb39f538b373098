"""Swoole's ``stats()``, summed from the per-slot counters in shared memory, and the *snapshot* published for
operators: ``stats()`` plus one row per process, restarts by cause, reloads and HTTP status classes (the shape
:mod:`pyswoole.ops` describes).

Counters are written by their owners only (a worker, a reactor thread, the manager); reading them here takes no
lock, so a figure may be one loop pass old. The manager, or the only process, builds the snapshot every
``stats_timer_interval`` ms when someone reads it (a stats file, an admin server): it rewrites the stats file
(how ``pyswoole status`` and ``pyswoole top`` see it) and keeps it as :data:`latest` for the admin server.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any, Final

from ..constants import Mode, WorkerStatus
from ..ipc import codec
from ..ipc.shm import Global, Slot
from ..log import logger

if TYPE_CHECKING:
    from .context import Runtime


def collect(rt: Runtime) -> dict[str, Any]:
    """Server-wide counters, plus the calling worker's own."""
    shared = rt.shared
    setting = rt.setting
    worker_num = setting["worker_num"]
    # Connection counters live where the sockets are: in the workers (BASE) or reactor threads (PROCESS).
    io_rows = (shared.worker_slots, setting["reactor_num"]) if rt.mode == Mode.PROCESS else (0, worker_num)

    def io_total(field: int) -> int:
        return shared.sum_field(field, *io_rows)

    def worker_total(field: int) -> int:
        return shared.sum_field(field, 0, worker_num)

    socket_fds = [socket_fd for socket_fd, _ in rt.factory.live_sessions()]
    worker = rt.worker
    if worker is not None:
        worker.counters.publish()
    stats: dict[str, Any] = {
        "start_time": shared.globals[Global.START_TIME_US] // 1_000_000,
        "connection_num": io_total(Slot.CONNECTION_NUM),
        "abort_count": io_total(Slot.ABORT),
        "accept_count": io_total(Slot.ACCEPT),
        "close_count": io_total(Slot.CLOSE),
        "worker_num": worker_num,
        "task_worker_num": setting["task_worker_num"],
        "user_worker_num": len(rt.processes),
        "idle_worker_num": sum(1 for i in range(worker_num) if shared.slot(i)[Slot.STATUS] == WorkerStatus.IDLE),
        "dispatch_count": io_total(Slot.DISPATCH),
        "request_count": worker_total(Slot.REQUEST),
        "response_count": worker_total(Slot.RESPONSE),
        "total_recv_bytes": io_total(Slot.RECV_BYTES),
        "total_send_bytes": worker_total(Slot.SEND_BYTES),
        "pipe_packet_msg_id": codec.process_msg_ids.sent,
        "concurrency": 0,
        "session_round": shared.globals[Global.SESSION_ROUND],
        "min_fd": min(socket_fds, default=0),
        "max_fd": max(socket_fds, default=0),
    }
    if worker is not None:
        slot = worker.slot
        stats.update(
            worker_request_count=slot[Slot.REQUEST] - slot[Slot.REQUEST_BASE],
            worker_response_count=slot[Slot.RESPONSE] - slot[Slot.RESPONSE_BASE],
            worker_dispatch_count=slot[Slot.DISPATCH] - slot[Slot.DISPATCH_BASE],
            worker_concurrency=worker.coroutine_num,
        )
    task_rows = (worker_num, setting["task_worker_num"])
    task_count = worker_total(Slot.TASK_DISPATCHED) + shared.globals[Global.TASKS_FROM_OTHERS]
    stats.update(
        task_idle_worker_num=sum(
            1
            for i in range(worker_num, worker_num + setting["task_worker_num"])
            if shared.slot(i)[Slot.STATUS] == WorkerStatus.IDLE
        ),
        tasking_num=max(0, task_count - shared.sum_field(Slot.TASK_STARTED, *task_rows)),
        task_count=task_count,
        coroutine_num=worker.coroutine_num if worker is not None else 0,
        coroutine_peek_num=0,
    )
    return stats


RESTART_CAUSES: Final = {
    "crash": Global.RESTARTS_CRASH,
    "max_request": Global.RESTARTS_MAX_REQUEST,
    "max_worker_rss": Global.RESTARTS_MAX_WORKER_RSS,
    "worker_timeout": Global.RESTARTS_WORKER_TIMEOUT,
    "reload": Global.RESTARTS_RELOAD,
    "exit": Global.RESTARTS_EXIT,
}
HTTP_CLASSES: Final = {"1xx": Slot.HTTP_1XX, "2xx": Slot.HTTP_2XX, "3xx": Slot.HTTP_3XX, "4xx": Slot.HTTP_4XX,
                "5xx": Slot.HTTP_5XX}  # fmt: skip
_STATUS_NAMES: Final = {int(WorkerStatus.BUSY): "busy", int(WorkerStatus.IDLE): "idle"}  # anything else: "exit"

latest: dict[str, Any] | None = None
"""The last snapshot :func:`publish` built in this process (what the admin server serves)."""


def resident_memory() -> int:
    """This process's resident set size in bytes (what a worker publishes as its ``rss_bytes``)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def latest_snapshot() -> dict[str, Any]:
    """:data:`latest`; RuntimeError before the first :func:`publish`."""
    if latest is None:
        raise RuntimeError("no snapshot published yet")
    return latest


def snapshot(rt: Runtime) -> dict[str, Any]:
    """``{"time", "server": stats(), "master_pid", "manager_pid", "mode", "workers", "restarts", "reloads",
    "dropped_pipe_messages"}``, and ``"http"`` (responses by status class) when a port speaks HTTP.

    A worker row's ``requests`` and ``dispatch`` count since the server started, across that id's restarts, so
    that they never go back; ``pid`` and ``started`` tell its current process apart.
    """
    shared = rt.shared
    globals_ = shared.globals
    setting = rt.setting
    worker_num = setting["worker_num"]
    task_end = worker_num + setting["task_worker_num"]
    workers = []
    for worker_id in range(task_end + len(rt.processes)):
        slot = shared.slot(worker_id)
        kind = "worker" if worker_id < worker_num else "task_worker" if worker_id < task_end else "user"
        workers.append(
            {
                "id": worker_id,
                "type": kind,
                "pid": slot[Slot.PID],
                "status": _STATUS_NAMES.get(slot[Slot.STATUS], "exit"),
                "requests": slot[Slot.REQUEST],
                "dispatch": slot[Slot.TASK_STARTED if kind == "task_worker" else Slot.DISPATCH],
                "rss_bytes": slot[Slot.RSS_BYTES],
                "connections": slot[Slot.CONNECTION_NUM],
                "started": slot[Slot.START_TIME_US] / 1_000_000,
            }
        )
    rows = shared.worker_slots + shared.reactor_slots
    result: dict[str, Any] = {
        "time": time.time(),
        "server": collect(rt),
        "master_pid": globals_[Global.MASTER_PID],
        "manager_pid": globals_[Global.MANAGER_PID],
        "mode": rt.mode.name,
        "workers": workers,
        "restarts": {cause: globals_[field] for cause, field in RESTART_CAUSES.items()},
        "reloads": globals_[Global.RELOADS],
        "dropped_pipe_messages": shared.sum_field(Slot.PIPE_DROPPED, 0, rows),
    }
    if any(port.speaks_http for port in rt.ports):
        # Workers answer requests; reactor threads (PROCESS mode) answer static files and refused requests.
        rows = shared.worker_slots + shared.reactor_slots
        result["http"] = {name: shared.sum_field(field, 0, rows) for name, field in HTTP_CLASSES.items()}
    return result


def stats_file_for(setting: dict[str, Any]) -> str | None:
    """Where stats are published: stats_file, else ``<pid_file>.stats.json`` when there is a pid_file."""
    if setting.get("stats_file"):
        return str(setting["stats_file"])
    return str(setting["pid_file"]) + ".stats.json" if setting.get("pid_file") else None


def publish(rt: Runtime) -> None:
    """Build the snapshot, if a stats file or an admin server reads it, keep it as :data:`latest` and write it
    to the stats file: as JSON, or for a stats_file not ending in .json as Swoole's ``key: value`` lines of
    ``stats()`` and the pids. Written to a temporary name and renamed, so a reader never sees half a file."""
    global latest
    path = stats_file_for(rt.setting)
    if not path and not rt.setting.get("admin_server"):
        return
    latest = snapshot(rt)
    if not path:
        return
    if path.endswith(".json"):
        text = json.dumps(latest)
    else:
        lines = {**latest["server"], "master_pid": latest["master_pid"], "manager_pid": latest["manager_pid"]}
        text = "".join(f"{key}: {value}\n" for key, value in lines.items())
    try:
        with open(path + ".tmp", "w") as file:
            file.write(text)
        os.replace(path + ".tmp", path)
    except OSError as exc:
        logger.warning("cannot write stats file %s: %s", path, exc)
