"""Swoole's ``stats()``, summed from the per-slot counters in shared memory, and its publication to a file.

Counters are written by their owners only (a worker, a reactor thread); reading them here takes no lock, so a
figure may be one loop pass old. The stats file is how processes outside the server (``pyswoole status``)
see them: the manager, or the only process, rewrites it every ``stats_timer_interval`` ms.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

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


def stats_file_for(setting: dict[str, Any]) -> str | None:
    """Where stats are published: stats_file, else ``<pid_file>.stats.json`` when there is a pid_file."""
    if setting.get("stats_file"):
        return str(setting["stats_file"])
    return str(setting["pid_file"]) + ".stats.json" if setting.get("pid_file") else None


def publish(rt: Runtime) -> None:
    """Write stats() for readers outside the server: JSON, or Swoole's ``key: value`` lines for a stats_file
    not ending in .json. Written to a temporary name and renamed, so a reader never sees half a file."""
    path = stats_file_for(rt.setting)
    if not path:
        return
    stats = collect(rt)
    stats["master_pid"] = rt.shared.globals[Global.MASTER_PID]
    stats["manager_pid"] = rt.shared.globals[Global.MANAGER_PID]
    text = json.dumps(stats) if path.endswith(".json") else "".join(f"{k}: {v}\n" for k, v in stats.items())
    try:
        with open(path + ".tmp", "w") as file:
            file.write(text)
        os.replace(path + ".tmp", path)
    except OSError as exc:
        logger.warning("cannot write stats file %s: %s", path, exc)
