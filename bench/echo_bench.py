"""Echo benchmark: pyswoole against a bare-uvloop baseline, measured in the same run.

The machine that runs this is small and noisy, so no absolute figure means much on its
own. Every candidate row is therefore paired with a baseline row (a plain uvloop echo
with the same number of serving processes), the two are run back to back in alternating
order, and the figure that matters is the candidate's rps divided by the baseline's rps
of the same repetition (the median of those ratios is reported).

For each run the harness starts the server script on a free port in its own process
group, waits until it echoes a probe, warms it up, drives it with ``echoload`` (the C
load generator in ../shared/bench), and stops the whole process group. Whatever happens
(an exception, Ctrl-C, SIGTERM), no server process outlives the run it belongs to. The
process groups, the schedule, the medians and the table are ``harness.py``'s, shared with
``task_bench.py``.

Exit status: 0 when every run completed with zero errors; 1 when a server failed to
start or died, the load generator failed, or any run reported errors; 2 when the load
generator cannot be built; 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import harness
from harness import (
    HOST,
    REPO_ROOT,
    SERVERS_DIR,
    STOP_GRACE_S,
    BenchFailure,
    ServerStartFailure,
)

ECHOLOAD_SRC_ENV = "PYSWOOLE_ECHOLOAD_SRC"
DEFAULT_ECHOLOAD_SRC = REPO_ROOT.parent / "shared" / "bench" / "echoload.c"


@dataclass(frozen=True)
class ServerConfig:
    """One row of the table: a server script, its arguments, and what it is compared to.

    ``baseline`` names the row this one is divided by (None: this row is a baseline).
    ``target`` is the ratio to the baseline this row is expected to reach, if any.
    """

    name: str
    script: str
    args: tuple[str, ...]
    baseline: str | None = None
    target: float | None = None
    source: Path | None = None  # a pyswoole source tree to run instead of the working tree's (--against)


# Rows in display order. A candidate may be added by one line; its baseline must be listed.
# A baseline may itself be a candidate (PROCESS rows -> BASE 1 worker -> uvloop 1 proc): every row whose
# chain ends in the same root baseline is run in that root's group, so each pair is measured in the same
# repetition, a few runs apart at most.
CONFIGS: tuple[ServerConfig, ...] = (
    ServerConfig("uvloop 1 proc", "uvloop_echo.py", ("--workers", "1")),
    ServerConfig(
        "BASE 1 worker", "pyswoole_echo.py", ("--mode", "base", "--workers", "1"), baseline="uvloop 1 proc", target=0.95
    ),
    ServerConfig(
        "PROCESS 1 worker / 1 reactor",
        "pyswoole_echo.py",
        ("--mode", "process", "--workers", "1", "--reactors", "1"),
        baseline="BASE 1 worker",
        target=0.65,
    ),
    ServerConfig(
        "PROCESS 1 worker / 1 reactor, open_cpu_affinity",
        "pyswoole_echo.py",
        ("--mode", "process", "--workers", "1", "--reactors", "1", "--affinity"),
        baseline="BASE 1 worker",
    ),
    ServerConfig(
        "PROCESS 2 workers / 1 reactor",
        "pyswoole_echo.py",
        ("--mode", "process", "--workers", "2", "--reactors", "1"),
        baseline="BASE 1 worker",
    ),
    ServerConfig(
        "PROCESS 2 workers / 2 reactors",
        "pyswoole_echo.py",
        ("--mode", "process", "--workers", "2", "--reactors", "2"),
        baseline="BASE 1 worker",
    ),
    ServerConfig(
        "BASE 1 worker, framed",
        "pyswoole_echo.py",
        ("--mode", "base", "--workers", "1", "--framed", "64"),
        baseline="BASE 1 worker",
        target=0.85,
    ),
    ServerConfig(
        "PROCESS 1 worker / 1 reactor, framed",
        "pyswoole_echo.py",
        ("--mode", "process", "--workers", "1", "--reactors", "1", "--framed", "64"),
        baseline="PROCESS 1 worker / 1 reactor",
        target=0.85,
    ),
    # The C floor of the two modes (c_echo.c): what the process model itself costs here, without Python.
    ServerConfig("C BASE (floor)", "c_echo.py", ("--mode", "base"), baseline="uvloop 1 proc"),
    ServerConfig("C PROCESS 1 worker (floor)", "c_echo.py", ("--mode", "process"), baseline="C BASE (floor)"),
    ServerConfig(
        "C PROCESS 1 worker, affinity (floor)",
        "c_echo.py",
        ("--mode", "process", "--affinity", "1"),
        baseline="C BASE (floor)",
    ),
    ServerConfig(
        "C PROCESS 2 workers / 1 reactor (floor)",
        "c_echo.py",
        ("--mode", "process", "--workers", "2", "--reactors", "1"),
        baseline="C BASE (floor)",
    ),
    ServerConfig(
        "C PROCESS 2 workers / 2 reactors (floor)",
        "c_echo.py",
        ("--mode", "process", "--workers", "2", "--reactors", "2"),
        baseline="C BASE (floor)",
    ),
    ServerConfig("uvloop 2 procs", "uvloop_echo.py", ("--workers", "2")),
    ServerConfig("BASE 2 workers", "pyswoole_echo.py", ("--mode", "base", "--workers", "2"), baseline="uvloop 2 procs"),
)


# Issue 16's: a second reactor thread must pay (the C floor's rows show what the machine allows).
TARGETS = (harness.Target("PROCESS 2 workers / 2 reactors", "PROCESS 2 workers / 1 reactor", 1.1),)

harness.check_configs(CONFIGS)
harness.check_targets(CONFIGS, TARGETS)


@dataclass(frozen=True)
class LoadSettings:
    conns: int
    size: int
    duration: int
    warmup: int


@dataclass
class RunResult(harness.Run):
    port: int | None = None
    rps: float | None = None
    p50_us: float | None = None
    p99_us: float | None = None
    max_us: float | None = None
    errors: int | None = None
    loadgen_cpu: float | None = None
    server_cpu: float | None = None  # cores used by the server's processes during the measured run
    warmup_errors: int | None = None
    stopped_cleanly: bool | None = None
    # Established connections held by each server process mid-run, largest first: with a shared
    # listening socket the kernel decides the split, and an uneven one moves rps and p99 a lot.
    connection_split: list[int] | None = None


# ---------------------------------------------------------------- load generator


def echoload_source() -> Path:
    return Path(os.environ.get(ECHOLOAD_SRC_ENV) or DEFAULT_ECHOLOAD_SRC).resolve()


def run_echoload(
    binary: Path, port: int, load: LoadSettings, duration: int, during: Callable[[], object] | None = None
) -> dict[str, float]:
    """Run one load and return its RESULT figures; ``during`` is called once mid-run."""
    command = [
        str(binary),
        "-h",
        HOST,
        "-p",
        str(port),
        "-c",
        str(load.conns),
        "-s",
        str(load.size),
        "-d",
        str(duration),
    ]
    return harness.run_result_tool(command, duration, during)


# ---------------------------------------------------------------- server processes


def established_socket_inodes(port: int) -> set[int]:
    inodes: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as rows:
                next(rows)  # header
                for row in rows:
                    # sl local_address rem_address st ... inode(10th)
                    columns = row.split()
                    if columns[3] == "01" and int(columns[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(int(columns[9]))
        except OSError:
            continue
    return inodes


def connection_split(pgid: int, port: int) -> list[int] | None:
    """How many of the port's established connections each process of the group holds."""
    members = harness.group_cpu_ticks(pgid)
    if members is None:
        return None
    inodes = established_socket_inodes(port)
    split = []
    for pid in members:
        held = 0
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and int(target[8:-1]) in inodes:
                held += 1
        if held:
            split.append(held)
    return sorted(split, reverse=True)


def echo_probe(port: int) -> None:
    """The readiness probe: a message must come back byte for byte."""
    probe = b"pyswoole-bench-probe".ljust(64, b".")  # as long as the framed rows' packages
    with socket.create_connection((HOST, port), timeout=1.0) as conn:
        conn.sendall(probe)
        echoed = b""
        while len(echoed) < len(probe):
            chunk = conn.recv(len(probe) - len(echoed))
            echoed += chunk
            if not probe.startswith(echoed):
                raise ServerStartFailure(f"probe came back as {echoed!r}")
            if not chunk:
                raise ConnectionResetError("closed before echoing the probe")


def start_server(config: ServerConfig) -> harness.ServerProcess:
    env = harness.python_env(config.source) if config.source is not None else None
    return harness.start_server(
        lambda port: [sys.executable, str(SERVERS_DIR / config.script), "--port", str(port), *config.args],
        echo_probe,
        env,
    )


# ---------------------------------------------------------------- one run


def measure(config: ServerConfig, repetition: int, echoload: Path, load: LoadSettings) -> RunResult:
    result = RunResult(repetition=repetition, config=config.name)
    try:
        server = start_server(config)
    except ServerStartFailure as failure:
        result.failure = failure.describe()
        return result
    result.port = server.port
    try:
        if load.warmup:
            result.warmup_errors = int(run_echoload(echoload, server.port, load, load.warmup)["errors"])
        cpu_before, wall_before = server.cpu_seconds(), time.monotonic()

        def sample_split() -> None:
            result.connection_split = connection_split(server.pgid, server.port)

        figures = run_echoload(echoload, server.port, load, load.duration, during=sample_split)
        cpu_after, wall = server.cpu_seconds(), time.monotonic() - wall_before
        server.check_alive()
        result.rps, result.p50_us, result.p99_us = figures["rps"], figures["p50_us"], figures["p99_us"]
        result.max_us, result.errors, result.loadgen_cpu = figures["max_us"], int(figures["errors"]), figures["cpu"]
        if cpu_before is not None and cpu_after is not None:
            result.server_cpu = round((cpu_after - cpu_before) / wall, 3)
        result.ok = True
    except BenchFailure as failure:
        result.failure = str(failure)
    finally:
        result.stopped_cleanly = server.stop()
    return result


# ---------------------------------------------------------------- command line


METRIC = harness.Metric(rate="rps", rate_label="rps", cpu="server_cpu")


def with_revision_twins(configs: list[ServerConfig], revision: str, only: list[str] | None) -> list[ServerConfig]:
    """Each pyswoole row the user asked for, followed by its twin on ``revision``, measured against it."""
    source = harness.export_revision(revision)
    twinned = []
    for config in configs:
        twinned.append(config)
        if config.script == "pyswoole_echo.py" and harness.asked_for(config.name, only):
            twinned.append(
                replace(config, name=f"{config.name} @ {revision}", baseline=config.name, target=None, source=source)
            )
    return twinned


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = harness.argument_parser(
        __doc__,
        duration=5,
        duration_help="seconds of load per run (whole seconds)",
        warmup_help="seconds of unmeasured load before each run (0: none)",
    )
    parser.add_argument("--conns", type=harness.positive_int, default=50, help="concurrent connections")
    parser.add_argument("--size", type=harness.positive_int, default=64, help="message size in bytes")
    parser.add_argument(
        "--only",
        action="append",
        metavar="TEXT",
        help="run only rows whose name contains TEXT (repeatable), plus their baselines",
    )
    parser.add_argument(
        "--against",
        metavar="REV",
        help="also run every pyswoole row on git revision REV's src/, as 'ROW @ REV', divided by "
        "ROW (below 1.00x: REV is slower than the working tree)",
    )
    harness.add_output_arguments(
        parser, aa_help="also run each baseline against itself (A/A), to see the noise floor of the ratio"
    )
    args = harness.parse_args(parser, argv)
    if args.size > 65507:
        parser.error("--size must be <= 65507")
    return args


def describe(result: RunResult) -> str:
    return (
        f"rps {result.rps:>9,.0f}  p50 {result.p50_us:8.1f} us  p99 {result.p99_us:8.1f} us  "
        f"errors {result.errors}  server_cpu {result.server_cpu}  "
        f"connections {'/'.join(map(str, result.connection_split or [])) or '?'}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    harness.unwind_on_termination()
    try:
        echoload = harness.build_tool(echoload_source(), "echoload")
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"echo_bench: cannot build echoload: {exc} (set {ECHOLOAD_SRC_ENV})", file=sys.stderr)
        return 2

    configs = harness.select_configs(CONFIGS, args.only, args.aa)
    if not configs:
        print(f"echo_bench: no row matches --only {args.only}", file=sys.stderr)
        return 2
    if args.against:
        try:
            configs = with_revision_twins(configs, args.against, args.only)
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"echo_bench: cannot export revision {args.against}: {exc}", file=sys.stderr)
            return 2
    load = LoadSettings(args.conns, args.size, args.duration, args.warmup)
    plan = list(harness.schedule(configs, args.repeat))
    print(
        f"echo_bench: {len(plan)} runs of {load.warmup} s warmup + {load.duration} s, "
        f"{load.conns} conns x {load.size} B (about {len(plan) * (load.duration + load.warmup + 1) / 60:.1f} min)",
        file=sys.stderr,
    )

    return harness.run_bench(
        tool="echo_bench",
        plan=plan,
        configs=configs,
        metric=METRIC,
        measure=lambda config, repetition: measure(config, repetition, echoload, load),
        describe=describe,
        meta=harness.metadata(
            args, ("uvloop", "pyswoole"), {"echoload": str(echoload)}, {"conns": args.conns, "size": args.size}
        ),
        json_path=args.json,
        stopped="servers",
        targets=TARGETS,
        heading=(
            f"\nEcho, {load.conns} connections x {load.size} B ping-pong, {load.duration} s per run, "
            f"median of {args.repeat} repetitions; ratio = median of per-repetition rps ratios (min-max)\n"
        ),
        # A server that failed to start once is not retried every repetition.
        give_up=lambda result: bool(result.failure and result.failure.startswith("server failed to start")),
        warning=lambda result: (
            f"warning: not stopped by SIGTERM within {STOP_GRACE_S:.0f} s; killed"
            if result.stopped_cleanly is False
            else None
        ),
        more_problems=lambda results: [
            f"{r.config} (rep {r.repetition + 1}): {r.warmup_errors} errors during warmup"
            for r in results
            if r.warmup_errors
        ],
    )


if __name__ == "__main__":
    sys.exit(main())
