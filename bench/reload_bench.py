"""Zero-downtime reload benchmark (issue 13): requests that fail and keep-alive connections that close while a
server reloads its workers three times under load.

Each row serves the ASGI hello app (``servers/apps.py``) with 2 workers. A closed-loop asyncio client keeps
``--conns`` keep-alive connections busy (each: GET, read the whole response, GET again) for ``--duration``
seconds; at 1/4, 2/4 and 3/4 of it the server is told to reload (``pyswoole reload PIDFILE``, or SIGHUP to
gunicorn's or uvicorn's master), and each time the harness waits until the group's worker processes are all new.
The client counts:

- requests: whole ``200 hello`` answers;
- failed: requests that got no whole 200 answer (reset, closed before or inside the answer, a non-200 status,
  no answer within 5 s, a refused connect);
- closed: keep-alive connections the server ended, announced (``Connection: close``) or not.

Targets: pyswoole 0 failed in both modes; in PROCESS mode (the master holds the connections while the workers
are replaced) also 0 closed. The peers have no target: they show what the usual setups do.

Exit status: 0 when every run completed, reloaded every time and got only right bodies; 1 otherwise (a server
that failed to start, a reload that did not replace the workers); 130 on Ctrl-C. Failed requests and closed
connections are the figures, not errors: a missed target is printed but does not change the exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aioclient
import harness
from harness import HOST, STOP_GRACE_S, BenchFailure, ServerStartFailure
from wrkload import APPS, http_probe

RESPONSE_TIMEOUT_S = 5.0
RECONNECT_PAUSE_S = 0.01  # after a refused connect, so a closed port does not spin the client
REPLACE_TIMEOUT_S = 20.0  # from the reload order until every worker is new
RELOADS = 3
WORKERS = 2


def fill_in(part: str, fill: dict[str, str]) -> str:
    for placeholder, value in fill.items():
        part = part.replace(placeholder, value)
    return part


@dataclass(frozen=True)
class ReloadRow:
    """A server with 2 workers and how to reload it: ``reload`` is a command after the interpreter (``{pidfile}``
    filled in), or None for SIGHUP to the server's first process. ``max_failed``/``max_closed``: the targets."""

    name: str
    command: tuple[str, ...]
    reload: tuple[str, ...] | None = None
    max_failed: int | None = None
    max_closed: int | None = None
    baseline: str | None = None  # no ratios here: every row stands alone
    target: float | None = None

    def argv(self, port: int, pidfile: str) -> list[str]:
        return [
            sys.executable,
            *(part.replace("{port}", str(port)).replace("{pidfile}", pidfile) for part in self.command),
        ]


HOST_PORT = ("--host", HOST, "--port", "{port}")
ASGI_APP = f"{APPS}:asgi_app"
PYSWOOLE = ("-m", "pyswoole", "serve", "--workers", str(WORKERS), "--pid-file", "{pidfile}", "--no-access-log")
PYSWOOLE_RELOAD = ("-m", "pyswoole", "reload", "{pidfile}")

CONFIGS: tuple[ReloadRow, ...] = (
    ReloadRow(
        "pyswoole BASE 2 workers",
        (*PYSWOOLE, "--mode", "base", *HOST_PORT, ASGI_APP),
        reload=PYSWOOLE_RELOAD,
        max_failed=0,
    ),
    ReloadRow(
        "pyswoole PROCESS 2 workers",
        (*PYSWOOLE, "--mode", "process", *HOST_PORT, ASGI_APP),
        reload=PYSWOOLE_RELOAD,
        max_failed=0,
        max_closed=0,
    ),
    ReloadRow(
        "gunicorn + UvicornWorker 2 workers",
        (
            "-m",
            "gunicorn",
            "--worker-class",
            "uvicorn_worker.UvicornWorker",
            "--workers",
            str(WORKERS),
            "--bind",
            f"{HOST}:{{port}}",
            ASGI_APP,
        ),
    ),
    ReloadRow(
        "uvicorn 2 workers",
        (
            "-m",
            "uvicorn",
            "--workers",
            str(WORKERS),
            "--http",
            "httptools",
            "--loop",
            "uvloop",
            "--no-access-log",
            "--log-level",
            "warning",
            *HOST_PORT,
            ASGI_APP,
        ),
    ),
)
harness.check_configs(CONFIGS)


@dataclass
class RunResult(harness.Run):
    port: int | None = None
    requests: int = 0
    rps: float | None = None
    failed: int = 0
    closed: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # failed requests by cause
    errors: int = 0  # 200 answers with a wrong body: a broken server, not a reload's doing
    p50_us: float | None = None
    p99_us: float | None = None
    max_us: float | None = None
    reloads: int = 0  # reloads after which every worker was new
    reload_s: list[float] = field(default_factory=list)  # from the order until every worker was new
    client_cpu: float | None = None  # cores the harness's client used
    stopped_cleanly: bool | None = None


# ---------------------------------------------------------------- the client


class KeepAliveLoad:
    """``conns`` closed-loop keep-alive connections, counting into a RunResult until ``stop`` is set."""

    def __init__(self, port: int, result: RunResult) -> None:
        self.port = port
        self.result = result
        self.latencies: list[float] = []
        self.stop = asyncio.Event()

    def fail(self, cause: str) -> None:
        self.result.failed += 1
        self.result.failures[cause] = self.result.failures.get(cause, 0) + 1

    async def connection(self) -> None:
        request = aioclient.get_request("/", self.port)
        while not self.stop.is_set():
            try:
                reader, writer = await aioclient.open_connection(self.port)
            except OSError:
                self.fail("connect")
                await asyncio.sleep(RECONNECT_PAUSE_S)
                continue
            try:
                await self.requests(reader, writer, request)
            finally:
                await aioclient.close(writer)

    async def requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> None:
        """Requests on one connection until the server ends it (counted as closed) or the run is over."""
        while not self.stop.is_set():
            start = time.perf_counter()
            try:
                writer.write(request)
                response = await asyncio.wait_for(aioclient.read_response(reader), RESPONSE_TIMEOUT_S)
            except TimeoutError:
                self.fail("timeout")
                return
            except OSError:
                self.fail("reset or closed before the answer")
                self.result.closed += 1
                return
            except aioclient.ResponseError:
                self.fail("closed inside the answer")
                self.result.closed += 1
                return
            self.latencies.append(time.perf_counter() - start)
            if response.status != 200:
                self.fail(f"status {response.status}")
            elif response.body != b"hello":
                self.result.errors += 1
            else:
                self.result.requests += 1
            if not response.keep_alive:
                self.result.closed += 1
                return


def worker_pids(pgid: int) -> set[int]:
    return set(harness.group_cpu_ticks(pgid) or {})


async def reload_once(server: harness.ServerProcess, row: ReloadRow, pidfile: str) -> float | None:
    """Order a reload and wait until WORKERS processes of the group are gone and WORKERS new ones are there.

    Returns the seconds that took, or None when it did not happen within REPLACE_TIMEOUT_S.
    """
    before = worker_pids(server.pgid)
    start = time.monotonic()
    if row.reload is None:
        os.kill(server.proc.pid, signal.SIGHUP)
    else:
        command = await asyncio.create_subprocess_exec(
            sys.executable,
            *(fill_in(part, {"{pidfile}": pidfile}) for part in row.reload),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        if await command.wait() != 0:
            return None
    while time.monotonic() - start < REPLACE_TIMEOUT_S:
        now = worker_pids(server.pgid)
        if len(before - now) >= WORKERS and len(now - before) >= WORKERS:
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    return None


async def load_with_reloads(
    server: harness.ServerProcess, row: ReloadRow, pidfile: str, conns: int, duration: float, result: RunResult
) -> list[float]:
    load = KeepAliveLoad(server.port, result)
    clients = [asyncio.create_task(load.connection()) for _ in range(conns)]
    start = time.monotonic()
    try:
        for number in range(1, RELOADS + 1):
            await asyncio.sleep(max(0.0, start + duration * number / (RELOADS + 1) - time.monotonic()))
            took = await reload_once(server, row, pidfile)
            if took is None:
                result.failure = f"reload {number}: the workers were not all replaced within {REPLACE_TIMEOUT_S:.0f} s"
                if row.reload is not None:
                    result.failure += " (or the reload command failed)"
            else:
                result.reloads += 1
                result.reload_s.append(round(took, 2))
        await asyncio.sleep(max(0.0, start + duration - time.monotonic()))
    finally:
        load.stop.set()
        # A connection waiting for an answer ends within RESPONSE_TIMEOUT_S; the run is over, so cancel it.
        for client in clients:
            client.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
    return load.latencies


# ---------------------------------------------------------------- one run


def measure(row: ReloadRow, repetition: int, conns: int, duration: int) -> RunResult:
    result = RunResult(repetition=repetition, config=row.name)
    with tempfile.TemporaryDirectory(prefix="pyswoole-reload-") as folder:
        pidfile = str(Path(folder) / "server.pid")
        try:
            server = harness.start_server(lambda port: row.argv(port, pidfile), http_probe, harness.python_env())
        except ServerStartFailure as failure:
            result.failure = failure.describe()
            return result
        result.port = server.port
        try:
            cpu_before, wall_before = time.process_time(), time.monotonic()
            latencies = asyncio.run(load_with_reloads(server, row, pidfile, conns, duration, result))
            wall = time.monotonic() - wall_before
            server.check_alive()
            result.client_cpu = round((time.process_time() - cpu_before) / wall, 3)
            result.rps = result.requests / wall
            if len(latencies) >= 2:
                quantiles = statistics.quantiles(latencies, n=100)
                result.p50_us, result.p99_us = quantiles[49] * 1e6, quantiles[98] * 1e6
                result.max_us = max(latencies) * 1e6
            result.ok = True
        except BenchFailure as failure:
            result.failure = str(failure)
        finally:
            result.stopped_cleanly = server.stop()
    return result


# ---------------------------------------------------------------- the report

METRIC = harness.Metric(rate="rps", rate_label="req/s", cpu="client_cpu", per_unit=False)


def describe(result: RunResult) -> str:
    causes = ", ".join(f"{cause} {count}" for cause, count in result.failures.items())
    return (
        f"requests {result.requests:>7,}  failed {result.failed}{f' ({causes})' if causes else ''}  "
        f"closed {result.closed}  reloads {result.reloads}/{RELOADS} {result.reload_s} s  "
        f"p99 {(result.p99_us or 0) / 1e3:.1f} ms  max {(result.max_us or 0) / 1e3:.1f} ms"
    )


def report(rows: Sequence[ReloadRow], summaries: list[harness.Summary], results: Sequence[RunResult]) -> list[str]:
    """The table of counts (summed over the repetitions) and the targets' verdicts."""
    lines = [
        "| server | runs | requests | req/s | failed | closed | reloads done | reload s (median) | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    verdicts = []
    for row, summary in zip(rows, summaries, strict=True):
        mine = [r for r in results if r.config == row.name and r.ok]
        if not mine:
            lines.append(f"| {row.name} | 0 | failed | | | | | | | |")
        else:
            reload_s = [s for r in mine for s in r.reload_s]
            lines.append(
                f"| {row.name} | {len(mine)} | {sum(r.requests for r in mine):,} | {summary.rate or 0:,.0f} | "
                f"{sum(r.failed for r in mine)} | {sum(r.closed for r in mine)} | "
                f"{sum(r.reloads for r in mine)}/{RELOADS * len(mine)} | "
                f"{statistics.median(reload_s) if reload_s else '-'} | "
                f"{(summary.p99_us or 0) / 1e3:.1f} | {max(r.max_us or 0 for r in mine) / 1e3:.1f} |"
            )
        for what, limit in (("failed", row.max_failed), ("closed", row.max_closed)):
            if limit is None:
                continue
            head = f"target {row.name}: {what} <= {limit}"
            if not mine:
                verdicts.append(f"{head}: not measured")
            else:
                count = sum(getattr(r, what) for r in mine)
                verdicts.append(f"{head}: {'met' if count <= limit else 'MISSED'} ({count})")
    return [*lines, "", *verdicts]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--repeat", type=harness.positive_int, default=2, help="repetitions of every row")
    parser.add_argument(
        "--duration",
        type=harness.positive_int,
        default=12,
        help=f"seconds of load per run; the {RELOADS} reloads are spread evenly over it",
    )
    parser.add_argument("--conns", type=harness.positive_int, default=16, help="keep-alive connections")
    parser.add_argument(
        "--only", action="append", metavar="TEXT", help="run only rows whose name contains TEXT (repeatable)"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write every run's raw figures to PATH")
    # The load itself warms the server up: a quarter of --duration passes before the first reload.
    parser.set_defaults(warmup=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    harness.unwind_on_termination()
    rows = harness.select_configs(CONFIGS, args.only, self_check=False)
    if not rows:
        print(f"reload_bench: no row matches --only {args.only}", file=sys.stderr)
        return 2
    plan = list(harness.schedule(rows, args.repeat))
    print(
        f"reload_bench: {len(plan)} runs of {args.duration} s with {RELOADS} reloads, {args.conns} keep-alive "
        f"connections (about {len(plan) * (args.duration + 4) / 60:.1f} min)",
        file=sys.stderr,
    )
    return harness.run_bench(
        tool="reload_bench",
        plan=plan,
        configs=rows,
        metric=METRIC,
        measure=lambda row, repetition: measure(row, repetition, args.conns, args.duration),
        describe=describe,
        meta=harness.metadata(
            args, ("pyswoole", "uvicorn", "gunicorn", "uvicorn-worker", "uvloop"), {}, {"conns": args.conns}
        ),
        json_path=args.json,
        stopped="servers",
        heading=(
            f"\nReload under load: {RELOADS} reloads of 2 workers in {args.duration} s, {args.conns} keep-alive "
            f"connections in a closed loop; sums over {args.repeat} repetitions (req/s and p99: medians)\n"
        ),
        give_up=lambda result: bool(result.failure and result.failure.startswith("server failed to start")),
        warning=lambda result: (
            f"warning: not stopped by SIGTERM within {STOP_GRACE_S:.0f} s; killed"
            if result.stopped_cleanly is False
            else None
        ),
        report=lambda summaries, results: report(rows, summaries, results),
    )


if __name__ == "__main__":
    sys.exit(main())
