"""What ``http_bench.py`` and ``hosting_bench.py`` share: HTTP rows driven by ``wrk``, one run measured.

A row is a server command (run with this interpreter, the repository on ``PYTHONPATH``, ``{port}`` filled in).
One run starts it on a free port, waits until ``GET /`` answers ``200 hello``, warms it up with wrk, then runs
``wrk -t1 -cN -dS --latency`` and keeps from wrk's report the requests per second, the p50/p99 latency and the
errors, with the server's CPU read from /proc meanwhile; then the whole process group is stopped. Invariant:
a run counts as error-free only when wrk saw no socket error (connect, read, write, timeout) and no non-2xx
answer, so a server that closes keep-alive connections or answers 500 can never pass for a fast one.
"""

from __future__ import annotations

import argparse
import re
import resource
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import harness
from harness import HOST, LOG_TAIL_CHARS, STOP_GRACE_S, BenchFailure, ServerStartFailure

DEFAULT_WRK = "/usr/bin/wrk"
LOAD_GRACE_S = 30.0  # beyond --duration, before wrk is presumed hung
UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}

# Pieces of the row commands both benches use, so that their uvicorn rows are the same server.
APPS = "bench.servers.apps"
HOST_PORT = ("--host", HOST, "--port", "{port}")
UVICORN = ("-m", "uvicorn", "--workers", "1", "--http", "httptools", "--loop", "uvloop", "--no-access-log")
UVICORN_ASGI = (*UVICORN, "--log-level", "warning", *HOST_PORT, f"{APPS}:asgi_app")


@dataclass(frozen=True)
class HttpRow:
    """A row: a server command after the interpreter, ``{port}`` replaced by the run's port."""

    name: str
    command: tuple[str, ...]
    baseline: str | None = None
    target: float | None = None
    source: Path | None = None  # a pyswoole source tree to run instead of the working tree's (--against)

    def argv(self, port: int) -> list[str]:
        return [sys.executable, *(part.replace("{port}", str(port)) for part in self.command)]


@dataclass(frozen=True)
class LoadSettings:
    wrk: str
    threads: int
    conns: int
    duration: int
    warmup: int
    path: str


@dataclass
class RunResult(harness.Run):
    port: int | None = None
    rps: float | None = None
    p50_us: float | None = None
    p99_us: float | None = None
    max_us: float | None = None
    requests: int | None = None
    errors: int | None = None  # socket errors plus non-2xx answers
    socket_errors: dict[str, int] | None = None  # wrk's: connect, read, write, timeout
    non_2xx: int | None = None
    server_cpu: float | None = None
    loadgen_cpu: float | None = None
    warmup_errors: int | None = None
    stopped_cleanly: bool | None = None


# ---------------------------------------------------------------- wrk


def to_us(text: str) -> float:
    """wrk's durations ("812.00us", "1.20ms", "2.00s") in microseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match[1]) * UNITS_US[match[2]]


@dataclass
class WrkReport:
    rps: float
    p50_us: float
    p99_us: float
    max_us: float | None
    requests: int
    socket_errors: dict[str, int]  # connect, read, write, timeout
    non_2xx: int  # wrk counts answers with a status >= 400 ("Non-2xx or 3xx responses")
    cpu: float | None = None  # cores wrk used

    @property
    def errors(self) -> int:
        return sum(self.socket_errors.values()) + self.non_2xx


def parse_wrk(report: str) -> WrkReport:
    """The figures of ``wrk --latency``'s report (ValueError when one that must be there is missing)."""
    figures: dict[str, float] = {}
    socket_errors: dict[str, int] = {}
    non_2xx = 0
    for line in report.splitlines():
        words = line.split()
        if line.startswith("Requests/sec:"):
            figures["rps"] = float(words[1])
        elif len(words) >= 4 and words[0] == "Latency" and "max_us" not in figures:
            figures["max_us"] = to_us(words[3])  # Latency avg stdev max +/-stdev
        elif len(words) == 2 and words[0] in ("50%", "99%"):
            figures[f"p{words[0][:-1]}_us"] = to_us(words[1])
        elif len(words) >= 3 and words[1] == "requests" and words[2] == "in":
            figures["requests"] = float(words[0])
        elif line.strip().startswith("Socket errors:"):
            socket_errors = {kind: int(count) for kind, count in re.findall(r"(\w+) (\d+)", line)}
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            non_2xx = int(words[-1])
    missing = {"rps", "p50_us", "p99_us", "requests"} - figures.keys()
    if missing:
        raise ValueError(f"wrk's report lacks {sorted(missing)}")
    return WrkReport(
        figures["rps"],
        figures["p50_us"],
        figures["p99_us"],
        figures.get("max_us"),
        int(figures["requests"]),
        socket_errors,
        non_2xx,
    )


def run_wrk(port: int, load: LoadSettings, duration: int) -> WrkReport:
    """One wrk run's report, with the cores wrk used."""
    command = [
        load.wrk,
        f"-t{load.threads}",
        f"-c{load.conns}",
        f"-d{duration}s",
        "--latency",
        f"http://{HOST}:{port}{load.path}",
    ]
    before, wall_before = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=duration + LOAD_GRACE_S)
    except subprocess.TimeoutExpired:
        raise BenchFailure(f"wrk still running {LOAD_GRACE_S:.0f} s after its {duration} s") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # wrk is the only child reaped in between, so the children's rusage grew by its own CPU time.
    after, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic() - wall_before
    try:
        if proc.returncode != 0:
            raise ValueError(f"exit status {proc.returncode}")
        report = parse_wrk(out)
    except ValueError as exc:
        detail = (err.strip() + "\n" + out.strip()).strip()[-LOG_TAIL_CHARS:]
        raise BenchFailure(f"wrk failed ({exc}): {detail}") from None
    report.cpu = round((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) / wall, 3)
    return report


def read_response(conn: socket.socket) -> bytes:
    """One whole HTTP/1.1 response: up to its Content-Length, its last chunk, or the close."""
    answer = b""
    while True:
        head, separator, body = answer.partition(b"\r\n\r\n")
        if separator:
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if length is not None and len(body) >= int(length[1]):
                return answer
            if re.search(rb"(?im)^transfer-encoding:\s*chunked", head) and body.endswith(b"0\r\n\r\n"):
                return answer
        chunk = conn.recv(65536)
        if not chunk:
            if not answer:
                raise ConnectionResetError("closed without an answer")
            return answer
        answer += chunk


def http_probe(port: int) -> None:
    """The readiness probe: ``GET /`` must answer 200 with the body ``hello``."""
    with socket.create_connection((HOST, port), timeout=2.0) as conn:
        conn.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode())
        answer = read_response(conn)
    head, _, body = answer.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200") or b"hello" not in body:
        raise ServerStartFailure(f"GET / answered {answer[:200]!r}")


# ---------------------------------------------------------------- one run


def measure(row: HttpRow, repetition: int, load: LoadSettings) -> RunResult:
    result = RunResult(repetition=repetition, config=row.name)
    try:
        server = harness.start_server(row.argv, http_probe, harness.python_env(row.source))
    except ServerStartFailure as failure:
        result.failure = failure.describe()
        return result
    result.port = server.port
    try:
        if load.warmup:
            result.warmup_errors = run_wrk(server.port, load, load.warmup).errors
        cpu_before, wall_before = server.cpu_seconds(), time.monotonic()
        report = run_wrk(server.port, load, load.duration)
        cpu_after, wall = server.cpu_seconds(), time.monotonic() - wall_before
        server.check_alive()
        result.rps, result.p50_us, result.p99_us = report.rps, report.p50_us, report.p99_us
        result.max_us, result.requests = report.max_us, report.requests
        result.errors, result.non_2xx = report.errors, report.non_2xx
        result.socket_errors, result.loadgen_cpu = report.socket_errors, report.cpu
        if cpu_before is not None and cpu_after is not None:
            result.server_cpu = round((cpu_after - cpu_before) / wall, 3)
        result.ok = True
    except BenchFailure as failure:
        result.failure = str(failure)
    finally:
        result.stopped_cleanly = server.stop()
    return result


# ---------------------------------------------------------------- command line


def with_revision_twins(rows: list[HttpRow], revision: str, only: list[str] | None) -> list[HttpRow]:
    """Each pyswoole row the user asked for, followed by its twin on ``revision``, measured against it."""
    source = harness.export_revision(revision)
    twinned = []
    for row in rows:
        twinned.append(row)
        if row.name.startswith("pyswoole") and harness.asked_for(row.name, only):
            twinned.append(replace(row, name=f"{row.name} @ {revision}", baseline=row.name, target=None, source=source))
    return twinned


METRIC = harness.Metric(rate="rps", rate_label="req/s", cpu="server_cpu")


def describe(result: RunResult) -> str:
    errors = f"errors {result.errors}"
    if result.errors:
        errors += f" (socket {result.socket_errors}, non-2xx {result.non_2xx})"
    return (
        f"req/s {result.rps:>9,.0f}  p50 {result.p50_us:8.1f} us  p99 {result.p99_us:8.1f} us  {errors}  "
        f"server_cpu {result.server_cpu}  wrk_cpu {result.loadgen_cpu}"
    )


def main(
    tool: str,
    doc: str,
    configs: Sequence[HttpRow],
    targets: Sequence[harness.Target],
    argv: list[str] | None,
    *,
    repeat: int,
    duration: int,
) -> int:
    """Parse the command line, run the rows with ``harness.run_bench``, print the table; the exit status."""
    parser = harness.argument_parser(
        doc,
        duration=duration,
        duration_help="seconds of wrk load per run",
        warmup_help="seconds of unmeasured wrk load before each run (0: none)",
    )
    parser.set_defaults(repeat=repeat)
    parser.add_argument("--conns", type=harness.positive_int, default=50, help="wrk's -c")
    parser.add_argument("--threads", type=harness.positive_int, default=1, help="wrk's -t")
    parser.add_argument("--path", default="/", help="the path wrk asks for")
    parser.add_argument("--wrk", default=shutil.which("wrk") or DEFAULT_WRK, help="the wrk binary")
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
    harness.add_output_arguments(parser, aa_help="also run each baseline against itself (A/A), the noise floor")
    args: argparse.Namespace = harness.parse_args(parser, argv)
    if not shutil.which(args.wrk):
        print(f"{tool}: wrk not found at {args.wrk} (apt-get install wrk)", file=sys.stderr)
        return 2
    harness.unwind_on_termination()

    selected = harness.select_configs(configs, args.only, args.aa)
    if args.against:
        selected = with_revision_twins(selected, args.against, args.only)
    if not selected:
        print(f"{tool}: no row matches --only {args.only}", file=sys.stderr)
        return 2
    load = LoadSettings(args.wrk, args.threads, args.conns, args.duration, args.warmup, args.path)
    plan = list(harness.schedule(selected, args.repeat))
    print(
        f"{tool}: {len(plan)} runs of {load.warmup} s warmup + {load.duration} s, wrk -t{load.threads} "
        f"-c{load.conns} (about {len(plan) * (load.duration + load.warmup + 2) / 60:.1f} min)",
        file=sys.stderr,
    )
    wrk_version = subprocess.run([args.wrk, "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    return harness.run_bench(
        tool=tool,
        plan=plan,
        configs=selected,
        metric=METRIC,
        measure=lambda row, repetition: measure(row, repetition, load),
        describe=describe,
        meta=harness.metadata(
            args,
            ("pyswoole", "uvloop", "granian", "uvicorn", "httptools", "gunicorn"),
            {"wrk": wrk_version},
            {"conns": load.conns, "threads": load.threads, "path": load.path},
        ),
        json_path=args.json,
        stopped="servers",
        heading=(
            f"\n{doc.splitlines()[0]}\nwrk -t{load.threads} -c{load.conns} -d{load.duration}s, median of "
            f"{args.repeat} repetitions; ratio = median of per-repetition req/s ratios (min-max)\n"
        ),
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
        targets=targets,
    )
