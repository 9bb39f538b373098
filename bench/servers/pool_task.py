"""Baseline task loop: ``concurrent.futures.ProcessPoolExecutor(max_workers=N).submit``.

The same trivial function (``taskload.trivial``), payload and window as ``pyswoole_task.py``, counted by the
same ``taskload.TaskLoop``. Like pyswoole's Finish, each future's done-callback submits the next task, so the
window stays full without a round trip through the main thread. (A main thread looping on
``concurrent.futures.wait(..., FIRST_COMPLETED)`` was no faster in a trial run; the callback form is kept as
the stronger baseline, and the one closer to what pyswoole does.)
"""

from __future__ import annotations

import argparse
import sys
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import taskload


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    taskload.add_common_arguments(parser)
    args = parser.parse_args()

    payload = taskload.make_payload(args.size)
    tally = taskload.TaskLoop(
        payload,
        args.warmup,
        args.duration,
        args.result,
        extra={"task_workers": args.task_workers, "window": args.window},
    )
    # Callbacks run in the pool's result thread, the first window is issued from the main thread.
    lock = threading.Lock()
    over = threading.Event()

    with ProcessPoolExecutor(max_workers=args.task_workers) as pool:

        def issue() -> None:
            future = pool.submit(taskload.trivial, payload)
            with lock:
                tally.issued(future)
            future.add_done_callback(completed)  # never called with the lock held: it may run right here

        def completed(future: Future[Any]) -> None:
            result = None if future.cancelled() or future.exception() else future.result()
            with lock:
                more = tally.completed(future, result)
            if more:
                issue()
            elif tally.finished:
                over.set()

        with lock:
            tally.start()
        for _ in range(args.window):
            issue()
        over.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
