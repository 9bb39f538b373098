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
killed and reported. Whatever happens (an exception, Ctrl-C, SIGTERM), no process outlives its run.

Exit status: 0 when every run completed with zero errors and stopped by itself; 1 otherwise; 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import echo_bench
from echo_bench import (LOG_TAIL_CHARS, POLL_INTERVAL_S, REPO_ROOT, SERVERS_DIR, STOP_GRACE_S,
                        group_has_live_members, median_or_none, positive_int, raise_system_exit,
                        signals_deferred)

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


@dataclass(frozen=True)
class LoadSettings:
    task_workers: int
    window: int
    size: int
    duration: int
    warmup: int


@dataclass
class RunResult:
    repetition: int
    config: str
    ok: bool = False
    failure: str | None = None
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
    with tempfile.TemporaryDirectory(prefix="pyswoole-task-bench-") as scratch, \
            tempfile.TemporaryFile(mode="w+", prefix="pyswoole-task-bench-") as log:
        result_path = Path(scratch) / "result.json"
        command = [sys.executable, str(SERVERS_DIR / config.script),
                   "--task-workers", str(load.task_workers), "--window", str(load.window),
                   "--size", str(load.size), "--warmup", str(load.warmup), "--duration", str(load.duration),
                   "--result", str(result_path)]
        started = time.monotonic()
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=REPO_ROOT)
        pgid = proc.pid

        def log_tail() -> str:
            log.seek(0)
            return log.read()[-LOG_TAIL_CHARS:].strip()

        try:
            deadline = started + load.warmup + load.duration + START_GRACE_S
            while not result_path.exists():
                if proc.poll() is not None:
                    result.failure = (f"exited with status {proc.returncode} without a result\n"
                                      f"--- output ---\n{log_tail()}")
                    return result
                if time.monotonic() > deadline:
                    result.failure = (f"no result {START_GRACE_S:.0f} s after warmup + duration\n"
                                      f"--- output ---\n{log_tail()}")
                    return result
                time.sleep(POLL_INTERVAL_S)
            figures = json.loads(result_path.read_text())
            result.tasks_per_s, result.tasks = figures["tasks_per_s"], figures["tasks"]
            result.p50_us, result.p99_us, result.mean_us = figures["p50_us"], figures["p99_us"], figures["mean_us"]
            result.errors, result.cpu = figures["errors"], figures["cpu"]
            exit_deadline = time.monotonic() + EXIT_GRACE_S
            while proc.poll() is None or group_has_live_members(pgid):
                if time.monotonic() > exit_deadline:
                    break
                time.sleep(POLL_INTERVAL_S)
            result.stopped_by_itself = proc.poll() is not None and not group_has_live_members(pgid)
            if not result.stopped_by_itself:
                result.failure = (f"still running {EXIT_GRACE_S:.0f} s after writing its result; killed\n"
                                  f"--- output ---\n{log_tail()}")
            elif proc.returncode != 0:
                result.failure = f"exited with status {proc.returncode}\n--- output ---\n{log_tail()}"
            result.ok = True  # the figures stand: they were complete before the exit went wrong
        finally:
            with signals_deferred():
                stop_group(proc, pgid)
            result.wall_s = round(time.monotonic() - started, 2)
    return result


def stop_group(proc: subprocess.Popen[str], pgid: int) -> None:
    """SIGTERM, then SIGKILL, whatever is left of the run's process group; return when it is all gone."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None and not group_has_live_members(pgid):
            return
        try:
            os.killpg(pgid, signum)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline:
            if proc.poll() is not None and not group_has_live_members(pgid):
                return
            time.sleep(POLL_INTERVAL_S)
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def select_configs(self_check: bool) -> list[TaskConfig]:
    selected = list(CONFIGS)
    if self_check:
        for config in [c for c in selected if c.baseline is None]:
            twin = TaskConfig(f"{config.name} (A/A)", config.script, baseline=config.name)
            selected.insert(selected.index(config) + 1, twin)
    return selected


def schedule(configs: list[TaskConfig], repeat: int) -> Iterator[tuple[int, TaskConfig]]:
    """All rows each repetition, the order flipped every repetition, so a drift favours neither side."""
    for repetition in range(repeat):
        yield from ((repetition, config) for config in (configs if repetition % 2 == 0 else configs[::-1]))


@dataclass
class Summary:
    config: str
    baseline: str | None
    target: float | None
    runs: int
    tasks_per_s: float | None = None
    p50_us: float | None = None
    p99_us: float | None = None
    errors: int = 0
    cpu: float | None = None
    ratio: float | None = None
    ratio_min: float | None = None
    ratio_max: float | None = None
    failures: list[str] = field(default_factory=list)


def summarize(configs: list[TaskConfig], results: list[RunResult]) -> list[Summary]:
    ok = {(r.config, r.repetition): r for r in results if r.ok}
    summaries = []
    for config in configs:
        mine = [r for r in results if r.config == config.name]
        good = [r for r in mine if r.ok]
        summary = Summary(config.name, config.baseline, config.target, runs=len(good),
                          tasks_per_s=median_or_none([r.tasks_per_s for r in good]),
                          p50_us=median_or_none([r.p50_us for r in good]),
                          p99_us=median_or_none([r.p99_us for r in good]),
                          errors=sum(r.errors or 0 for r in good),
                          cpu=median_or_none([r.cpu for r in good]),
                          failures=[r.failure for r in mine if r.failure])
        if config.baseline:
            ratios = [r.tasks_per_s / ok[config.baseline, r.repetition].tasks_per_s for r in good
                      if (config.baseline, r.repetition) in ok and ok[config.baseline, r.repetition].tasks_per_s]
            if ratios:
                summary.ratio, summary.ratio_min, summary.ratio_max = (
                    statistics.median(ratios), min(ratios), max(ratios))
        summaries.append(summary)
    return summaries


def markdown_table(summaries: list[Summary]) -> str:
    lines = ["| config | tasks/s | p50_us | p99_us | errors | cpu | vs baseline tasks/s |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for s in summaries:
        if s.tasks_per_s is None:
            lines.append(f"| {s.config} | failed | | | | | |")
            continue
        if s.baseline is None:
            versus = "1.00x (baseline)"
        elif s.ratio is None:
            versus = f"n/a ({s.baseline} failed)"
        else:
            versus = f"**{s.ratio:.2f}x** ({s.ratio_min:.2f}-{s.ratio_max:.2f}) of {s.baseline}"

        def us(value: float | None) -> str:
            return "" if value is None else f"{value:.1f}"

        cpu = "" if s.cpu is None else f"{s.cpu:.2f}"
        lines.append(f"| {s.config} | {s.tasks_per_s:,.0f} | {us(s.p50_us)} | {us(s.p99_us)} | {s.errors} "
                     f"| {cpu} | {versus} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--repeat", type=positive_int, default=5, help="repetitions of every row")
    parser.add_argument("--duration", type=positive_int, default=3, help="seconds counted per run")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of uncounted tasks before each run (0: none)")
    parser.add_argument("--task-workers", type=positive_int, default=2,
                        help="N: pyswoole's task_worker_num and the pool's max_workers")
    parser.add_argument("--window", type=positive_int, default=16, help="K: tasks kept in flight")
    parser.add_argument("--size", type=positive_int, default=64, help="payload bytes")
    parser.add_argument("--aa", action="store_true",
                        help="also run the baseline against itself (A/A), to see the noise floor of the ratio")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write every run's raw figures to PATH")
    args = parser.parse_args(argv)
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    return args


def metadata(args: argparse.Namespace) -> dict[str, object]:
    git = subprocess.run(["git", "rev-parse", "--verify", "--quiet", "HEAD"], cwd=REPO_ROOT,
                         capture_output=True, text=True)
    try:
        pyswoole_version: str | None = importlib.metadata.version("pyswoole")
    except importlib.metadata.PackageNotFoundError:
        pyswoole_version = None
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git_head": git.stdout.strip() if git.returncode == 0 else None,
        "python": platform.python_version(),
        "pyswoole": pyswoole_version,
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "repeat": args.repeat, "duration": args.duration, "warmup": args.warmup,
        "task_workers": args.task_workers, "window": args.window, "size": args.size,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_system_exit)
    signal.signal(signal.SIGHUP, raise_system_exit)
    load = LoadSettings(args.task_workers, args.window, args.size, args.duration, args.warmup)
    configs = select_configs(args.aa)
    plan = list(schedule(configs, args.repeat))
    print(f"task_bench: {len(plan)} runs of {load.warmup} s warmup + {load.duration} s, "
          f"{load.task_workers} task workers, window {load.window}, {load.size} B payload "
          f"(about {len(plan) * (load.duration + load.warmup + 1) / 60:.1f} min)", file=sys.stderr)

    meta = metadata(args)
    results: list[RunResult] = []
    interrupted = False
    try:
        for number, (repetition, config) in enumerate(plan, 1):
            result = run_once(config, repetition, load)
            results.append(result)
            prefix = f"[{number:2}/{len(plan)}] rep {repetition + 1} {config.name:<30}"
            if result.ok:
                print(f"{prefix} tasks/s {result.tasks_per_s:>9,.0f}  p50 {result.p50_us or 0:8.1f} us  "
                      f"p99 {result.p99_us or 0:8.1f} us  errors {result.errors}  cpu {result.cpu and round(result.cpu, 2)}"
                      f"  wall {result.wall_s} s", file=sys.stderr)
            if result.failure:
                print(f"{prefix} FAILED: {result.failure}", file=sys.stderr)
    except KeyboardInterrupt:
        interrupted = True
        print("task_bench: interrupted; runs stopped", file=sys.stderr)
    finally:
        summaries = summarize(configs, results)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({
                "meta": meta,
                "complete": len(results) == len(plan) and not interrupted,
                "runs": [asdict(r) for r in results],
                "summary": [asdict(s) for s in summaries],
            }, indent=2) + "\n")

    if interrupted:
        return 130
    print(f"\nTasks, trivial task round trip, {load.task_workers} task workers, window {load.window}, "
          f"{load.size} B payload, {load.duration} s per run, median of {args.repeat} repetitions; "
          f"ratio = median of per-repetition tasks/s ratios (min-max)\n")
    print(markdown_table(summaries))
    verdicts = echo_bench.target_verdicts(summaries)  # type: ignore[arg-type]
    if verdicts:
        print()
        print("\n".join(verdicts))

    problems = [f"{r.config} (rep {r.repetition + 1}): {r.failure.splitlines()[0]}" for r in results if r.failure]
    problems += [f"{r.config} (rep {r.repetition + 1}): {r.errors} errors" for r in results if r.errors]
    if problems:
        print("\nFAILED:\n" + "\n".join(f"- {p}" for p in problems))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
