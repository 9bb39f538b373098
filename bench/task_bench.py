"""Task benchmark: pyswoole's task round trip against ProcessPoolExecutor, measured in the same run.

Both sides run the same trivial function (it hands its payload back) in N worker processes, keep the same
window of K tasks in flight, and count with the same code (``servers/taskload.py``): pyswoole issues the tasks
from its one event worker with ``server.task()`` and the next one from each Finish; the baseline submits them
to ``ProcessPoolExecutor(max_workers=N)`` and the next one from each future's done-callback. The two sides run
back to back in alternating order, and the figure that matters is pyswoole's tasks/s divided by the pool's
tasks/s of the same repetition (the median of those ratios is reported), as in ``echo_bench.py``.

Each run is a script started in its own process group. It warms up, counts completed tasks for a fixed
duration, writes its result file and stops by itself (pyswoole through ``server.shutdown()``). The harness
waits for the result, then for the whole process group to be gone; what is left after a grace period is
killed and reported. Whatever happens (an exception, Ctrl-C, SIGTERM), no process outlives its run. The process
groups, the schedule, the medians and the table are ``harness.py``'s, shared with ``echo_bench.py``.

Exit status: 0 when every run completed with zero errors and stopped by itself; 1 otherwise; 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import harness
from harness import POLL_INTERVAL_S, SERVERS_DIR

START_GRACE_S = 30.0  # beyond warmup + duration, before a run without a result is presumed hung
EXIT_GRACE_S = 10.0  # from the result file to the last process of the run gone by itself


@dataclass(frozen=True)
class TaskConfig:
    """One row: a task-loop script in servers/, and the row it is divided by (None: a baseline)."""

    name: str
    script: str
    baseline: str | None = None
    target: float | None = None


CONFIGS: tuple[TaskConfig, ...] = (
    TaskConfig("ProcessPoolExecutor", "pool_task.py"),
    TaskConfig("pyswoole task, BASE 1 worker", "pyswoole_task.py", baseline="ProcessPoolExecutor", target=1.5),
)
harness.check_configs(CONFIGS)


@dataclass(frozen=True)
class LoadSettings:
    task_workers: int
    window: int
    size: int
    duration: int
    warmup: int


@dataclass
class RunResult(harness.Run):
    tasks_per_s: float | None = None
    tasks: int | None = None
    p50_us: float | None = None
    p99_us: float | None = None
    mean_us: float | None = None
    errors: int | None = None
    cpu: float | None = None  # cores used by all the run's processes during the measured phase
    stopped_by_itself: bool | None = None
    wall_s: float | None = None  # from spawn to the last process gone


def run_once(config: TaskConfig, repetition: int, load: LoadSettings) -> RunResult:
    """Start the script in its own process group, wait for its result and its exit, clean up."""
    result = RunResult(repetition=repetition, config=config.name)
    with tempfile.TemporaryDirectory(prefix="pyswoole-task-bench-") as scratch:
        result_path = Path(scratch) / "result.json"
        command = [
            sys.executable,
            str(SERVERS_DIR / config.script),
            "--task-workers",
            str(load.task_workers),
            "--window",
            str(load.window),
            "--size",
            str(load.size),
            "--warmup",
            str(load.warmup),
            "--duration",
            str(load.duration),
            "--result",
            str(result_path),
        ]
        started = time.monotonic()
        run = harness.ProcessGroup(command, log_prefix="pyswoole-task-bench-")
        try:
            deadline = started + load.warmup + load.duration + START_GRACE_S
            while not result_path.exists():
                if run.proc.poll() is not None:
                    result.failure = (
                        f"exited with status {run.proc.returncode} without a result\n--- output ---\n{run.log_tail()}"
                    )
                    return result
                if time.monotonic() > deadline:
                    result.failure = (
                        f"no result {START_GRACE_S:.0f} s after warmup + duration\n--- output ---\n{run.log_tail()}"
                    )
                    return result
                time.sleep(POLL_INTERVAL_S)
            figures = json.loads(result_path.read_text())
            result.tasks_per_s, result.tasks = figures["tasks_per_s"], figures["tasks"]
            result.p50_us, result.p99_us, result.mean_us = figures["p50_us"], figures["p99_us"], figures["mean_us"]
            result.errors, result.cpu = figures["errors"], figures["cpu"]
            result.stopped_by_itself = run.wait_gone(EXIT_GRACE_S)
            if not result.stopped_by_itself:
                result.failure = (
                    f"still running {EXIT_GRACE_S:.0f} s after writing its result; killed\n"
                    f"--- output ---\n{run.log_tail()}"
                )
            elif run.proc.returncode != 0:
                result.failure = f"exited with status {run.proc.returncode}\n--- output ---\n{run.log_tail()}"
            result.ok = True  # the figures stand: they were complete before the exit went wrong
        finally:
            run.stop()
            result.wall_s = round(time.monotonic() - started, 2)
    return result


METRIC = harness.Metric(rate="tasks_per_s", rate_label="tasks/s", cpu="cpu")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = harness.argument_parser(
        __doc__,
        duration=3,
        duration_help="seconds counted per run",
        warmup_help="seconds of uncounted tasks before each run (0: none)",
    )
    parser.add_argument(
        "--task-workers",
        type=harness.positive_int,
        default=2,
        help="N: pyswoole's task_worker_num and the pool's max_workers",
    )
    parser.add_argument("--window", type=harness.positive_int, default=16, help="K: tasks kept in flight")
    parser.add_argument("--size", type=harness.positive_int, default=64, help="payload bytes")
    harness.add_output_arguments(
        parser, aa_help="also run the baseline against itself (A/A), to see the noise floor of the ratio"
    )
    return harness.parse_args(parser, argv)


def describe(result: RunResult) -> str:
    return (
        f"tasks/s {result.tasks_per_s:>9,.0f}  p50 {result.p50_us or 0:8.1f} us  "
        f"p99 {result.p99_us or 0:8.1f} us  errors {result.errors}  cpu {result.cpu and round(result.cpu, 2)}"
        f"  wall {result.wall_s} s"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    harness.unwind_on_termination()
    load = LoadSettings(args.task_workers, args.window, args.size, args.duration, args.warmup)
    configs = harness.select_configs(CONFIGS, None, args.aa)
    plan = list(harness.schedule(configs, args.repeat))
    print(
        f"task_bench: {len(plan)} runs of {load.warmup} s warmup + {load.duration} s, "
        f"{load.task_workers} task workers, window {load.window}, {load.size} B payload "
        f"(about {len(plan) * (load.duration + load.warmup + 1) / 60:.1f} min)",
        file=sys.stderr,
    )

    return harness.run_bench(
        tool="task_bench",
        plan=plan,
        configs=configs,
        metric=METRIC,
        measure=lambda config, repetition: run_once(config, repetition, load),
        describe=describe,
        meta=harness.metadata(
            args, ("pyswoole",), {}, {"task_workers": args.task_workers, "window": args.window, "size": args.size}
        ),
        json_path=args.json,
        stopped="runs",
        heading=(
            f"\nTasks, trivial task round trip, {load.task_workers} task workers, window {load.window}, "
            f"{load.size} B payload, {load.duration} s per run, median of {args.repeat} repetitions; "
            f"ratio = median of per-repetition tasks/s ratios (min-max)\n"
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
