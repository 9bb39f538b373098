"""The task-loop bookkeeping shared by ``pyswoole_task.py`` and ``pool_task.py``.

Both sides run the same trivial function, keep the same window of tasks in flight, and count with this same
code, so that the only difference between them is how a task travels to a worker process and back.

A run has two phases, both timed from the completions themselves (no timer thread): ``warmup`` seconds that
are not counted (workers forked, caches and pipes warm), then ``duration`` seconds in which every completed
task counts and its round trip (submit to result back in the submitting process) is recorded. The result is
written as one JSON object, atomically, to the file the harness named.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for the harness's /proc reading
import harness


def trivial(data: Any) -> Any:
    """The task: hand the payload back. Module-level so that ProcessPoolExecutor can pickle it by name."""
    return data


class TaskLoop:
    """Counts completions, checks each result, and says when to stop issuing.

    ``issued(key)`` when a task is handed over, ``completed(key, result)`` when its result is back; the latter
    returns False once the measured phase is over (issue nothing more then), after writing the result file.
    """

    def __init__(
        self, payload: Any, warmup: float, duration: float, result_path: str, extra: dict[str, Any] | None = None
    ) -> None:
        self.payload = payload
        self.warmup = warmup
        self.duration = duration
        self.result_path = result_path
        self.extra = extra or {}
        self._issued_at: dict[Any, float] = {}
        self._measuring = False
        self._finished = False
        self._phase_end = 0.0
        self._begin = 0.0
        self._cpu_begin: float | None = None
        self.counted = 0
        self.errors = 0
        self.latencies: list[float] = []

    def start(self) -> None:
        """Call right before issuing the first window."""
        now = time.perf_counter()
        if self.warmup > 0:
            self._phase_end = now + self.warmup
        else:
            self._begin_measuring(now)

    def _begin_measuring(self, now: float) -> None:
        self._measuring = True
        self._cpu_begin = harness.group_cpu_seconds(os.getpgrp())  # the harness gives each run its own group
        self._begin = time.perf_counter() if self._cpu_begin is not None else now
        self._phase_end = self._begin + self.duration

    def issued(self, key: Any) -> None:
        self._issued_at[key] = time.perf_counter()

    def failed_to_issue(self) -> None:
        self.errors += 1

    def completed(self, key: Any, result: Any) -> bool:
        now = time.perf_counter()
        issued_at = self._issued_at.pop(key, None)
        if self._finished:
            return False
        if self._measuring:
            self.counted += 1
            if issued_at is None or result != self.payload:
                self.errors += 1
            else:
                self.latencies.append(now - issued_at)
        if now < self._phase_end:
            return True
        if not self._measuring:
            self._begin_measuring(now)
            return True
        self._finish(now)
        return False

    @property
    def finished(self) -> bool:
        return self._finished

    def _finish(self, now: float) -> None:
        self._finished = True
        cpu_end = harness.group_cpu_seconds(os.getpgrp())
        elapsed = now - self._begin
        latencies = sorted(self.latencies)

        def percentile_us(q: float) -> float | None:
            if not latencies:
                return None
            return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e6

        result = {
            "tasks": self.counted,
            "seconds": elapsed,
            "tasks_per_s": self.counted / elapsed if elapsed > 0 else 0.0,
            "p50_us": percentile_us(0.50),
            "p99_us": percentile_us(0.99),
            "mean_us": statistics.fmean(latencies) * 1e6 if latencies else None,
            "errors": self.errors,
            "cpu": (None if cpu_end is None or self._cpu_begin is None else (cpu_end - self._cpu_begin) / elapsed),
            **self.extra,
        }
        partial = f"{self.result_path}.{os.getpid()}.tmp"
        with open(partial, "w") as out:
            json.dump(result, out)
        os.replace(partial, self.result_path)  # the harness never reads half a file


def add_common_arguments(parser: Any) -> None:
    parser.add_argument("--task-workers", type=int, default=2, help="task worker processes (default 2)")
    parser.add_argument("--window", type=int, default=16, help="tasks kept in flight (default 16)")
    parser.add_argument("--size", type=int, default=64, help="payload bytes (default 64)")
    parser.add_argument("--warmup", type=float, default=1.0, help="uncounted seconds first (default 1)")
    parser.add_argument("--duration", type=float, default=3.0, help="counted seconds (default 3)")
    parser.add_argument("--result", required=True, help="where to write the JSON result")


def make_payload(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))
