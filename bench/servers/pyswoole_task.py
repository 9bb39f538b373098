"""Candidate task loop: pyswoole's task -> Task -> finish -> Finish round trip.

BASE mode, one event worker, ``--task-workers`` task workers. From WorkerStart the event worker issues
``--window`` tasks with ``server.task(payload)``; every Finish issues the next one, so the window stays full.
Task is ``taskload.trivial`` (hands the payload back as the result). After the warmup and the measured
duration the worker writes the result file (see ``taskload.py``) and calls ``server.shutdown()``, which must
stop every process of the server: the harness reports a run whose processes outlive it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import taskload

from pyswoole import Mode, Server

HOST = "127.0.0.1"
LOG_LEVEL_WARNING = 4  # Swoole's SWOOLE_LOG_WARNING: keep the hot path free of log output


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    taskload.add_common_arguments(parser)
    parser.add_argument("--port", type=int, default=0, help="the (unused) TCP port a server needs (0: any)")
    args = parser.parse_args()

    payload = taskload.make_payload(args.size)
    tally = taskload.TaskLoop(
        payload,
        args.warmup,
        args.duration,
        args.result,
        extra={"task_workers": args.task_workers, "window": args.window},
    )
    server = Server(HOST, args.port, Mode.BASE)
    server.set(worker_num=1, task_worker_num=args.task_workers, log_level=LOG_LEVEL_WARNING)

    def issue() -> None:
        task_id = server.task(payload)
        if task_id is False:
            tally.failed_to_issue()
        else:
            tally.issued(task_id)

    @server.on("Receive")
    def receive(server: Server, fd: int, reactor_id: int, data: bytes) -> None:
        pass  # required by the server; nothing connects

    @server.on("Task")
    def task(server: Server, task_id: int, src_worker_id: int, data: Any) -> Any:
        return taskload.trivial(data)

    @server.on("Finish")
    def finish(server: Server, task_id: int, result: Any) -> None:
        if tally.completed(task_id, result):
            issue()
        elif tally.finished and not stopping:
            stop()

    stopping = False

    def stop() -> None:
        nonlocal stopping
        stopping = True
        server.shutdown()

    @server.on("WorkerStart")
    def worker_start(server: Server, worker_id: int) -> None:
        if server.taskworker:
            return
        tally.start()
        for _ in range(args.window):
            issue()

    server.start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
