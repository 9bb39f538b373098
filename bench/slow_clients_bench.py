"""Slow-clients benchmark (issue 13): do 100 slow clients hold up the normal ones of a 2-worker WSGI server?

Each row serves the WSGI app (``servers/apps.py``) with 2 workers. 100 slow clients, started over the first
second, each loop: connect with a 4 KiB receive buffer, send ``GET /?size=262144`` one byte every 50 ms, then
read the 256 KiB answer 4 KiB every 50 ms (about 2.5 s to send, 3 s to read). Two seconds in, when every slow
client is busy, 10 normal clients start, each looping for ``--duration`` seconds: ``GET /`` (a new connection
when the server closed the last one, the connect counted in the latency), the whole answer, 10 ms pause. An answer
that takes over 5 s counts as a timeout, and as 5 s in the percentiles (so p99 shows it).

pyswoole runs in PROCESS mode, where the master buffers whole requests and whole responses so no worker waits
on a slow client (target: the normal clients' p99 under 50 ms); gunicorn's sync workers (2) take the same load
beside it, as they would without nginx in front; granian's WSGI (2 workers, its I/O apart from the app's
threads) is the reference that shows the load can be served on this machine.

Exit status: 0 when every run completed and no answer was wrong; 1 otherwise (a server that failed to start or
died, a wrong body); 130 on Ctrl-C. Latencies and timeouts are the figures, not errors: a missed target is
printed but does not change the exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aioclient
import harness
from harness import HOST, STOP_GRACE_S, BenchFailure, ServerStartFailure
from wrkload import APPS, http_probe

SLOW_CLIENTS = 100
NORMAL_CLIENTS = 10
SLOW_BODY = 256 * 1024
SLOW_STEP_S = 0.05  # the slow clients' pace: one request byte, or one read, every 50 ms
SLOW_READ = 4096  # bytes a slow client reads each step
SLOW_RECEIVE_BUFFER = 4096  # SO_RCVBUF of a slow client, so that the server's sending soon waits for it
SLOW_TIMEOUT_S = 60.0
SLOW_LEAD_S = 2.0  # from the first slow client until the normal clients start
NORMAL_PAUSE_S = 0.01
NORMAL_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class SlowRow:
    """A server with 2 workers; ``max_p99_ms``: the target for the normal clients' p99."""

    name: str
    command: tuple[str, ...]
    max_p99_ms: float | None = None
    baseline: str | None = None  # no ratios here: every row stands alone
    target: float | None = None

    def argv(self, port: int) -> list[str]:
        return [sys.executable, *(part.replace("{port}", str(port)) for part in self.command)]


WSGI_APP = f"{APPS}:wsgi_app"
CONFIGS: tuple[SlowRow, ...] = (
    SlowRow(
        "pyswoole PROCESS 2 workers",
        (
            "-m",
            "pyswoole",
            "serve",
            "--interface",
            "wsgi",
            "--workers",
            "2",
            "--mode",
            "process",
            "--no-access-log",
            "--host",
            HOST,
            "--port",
            "{port}",
            WSGI_APP,
        ),
        max_p99_ms=50.0,
    ),
    SlowRow(
        "gunicorn sync 2 workers",
        ("-m", "gunicorn", "--worker-class", "sync", "--workers", "2", "--bind", f"{HOST}:{{port}}", WSGI_APP),
    ),
    # The reference: a WSGI server whose I/O does not wait on its workers, so the load is shown passable here.
    SlowRow(
        "granian WSGI 2 workers",
        (
            "-m",
            "granian",
            "--interface",
            "wsgi",
            "--workers",
            "2",
            "--no-access-log",
            "--host",
            HOST,
            "--port",
            "{port}",
            WSGI_APP,
        ),
    ),
)
harness.check_configs(CONFIGS)


@dataclass
class RunResult(harness.Run):
    port: int | None = None
    normal_done: int = 0  # whole 200 answers to the normal clients
    normal_rps: float | None = None
    normal_timeouts: int = 0
    normal_failed: int = 0  # resets, refused connects, non-200 answers
    p50_us: float | None = None  # the normal clients' latency, timeouts counted as NORMAL_TIMEOUT_S
    p99_us: float | None = None
    slow_done: int = 0  # whole answers to the slow clients
    slow_failed: int = 0
    errors: int = 0  # 200 answers with a wrong body
    client_cpu: float | None = None
    stopped_cleanly: bool | None = None
    latencies_ms: list[float] = field(default_factory=list, repr=False)


# ---------------------------------------------------------------- the clients


async def slow_client(port: int, result: RunResult, stop: asyncio.Event) -> None:
    request = aioclient.get_request(f"/?size={SLOW_BODY}", port)

    async def read_slowly(size: int) -> bytes:
        body = b""
        while len(body) < size:
            await asyncio.sleep(SLOW_STEP_S)
            chunk = await reader.read(min(SLOW_READ, size - len(body)))
            if not chunk:
                raise asyncio.IncompleteReadError(body, size)
            body += chunk
        return body

    while not stop.is_set():
        try:
            reader, writer = await aioclient.open_connection(port, SLOW_RECEIVE_BUFFER, limit=SLOW_READ)
        except OSError:
            result.slow_failed += 1
            await asyncio.sleep(SLOW_STEP_S)
            continue
        try:
            for index in range(len(request)):
                writer.write(request[index : index + 1])
                await writer.drain()
                await asyncio.sleep(SLOW_STEP_S)
            response = await asyncio.wait_for(aioclient.read_response(reader, read_slowly), SLOW_TIMEOUT_S)
            if response.status == 200 and len(response.body) == SLOW_BODY:
                result.slow_done += 1
            else:
                result.slow_failed += 1
        except (OSError, TimeoutError, aioclient.ResponseError):
            result.slow_failed += 1
        finally:
            await aioclient.close(writer)


async def normal_client(port: int, result: RunResult, stop: asyncio.Event) -> None:
    request = aioclient.get_request("/", port)
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while not stop.is_set():
        start = time.perf_counter()
        response: aioclient.Response | None = None
        try:
            async with asyncio.timeout(NORMAL_TIMEOUT_S):
                if connection is None:
                    connection = await aioclient.open_connection(port)
                reader, writer = connection
                writer.write(request)
                response = await aioclient.read_response(reader)
        except TimeoutError:
            result.normal_timeouts += 1
            result.latencies_ms.append(NORMAL_TIMEOUT_S * 1e3)
        except (OSError, aioclient.ResponseError):
            result.normal_failed += 1
        if response is not None:
            result.latencies_ms.append((time.perf_counter() - start) * 1e3)
            if response.status != 200:
                result.normal_failed += 1
            elif response.body != b"hello":
                result.errors += 1
            else:
                result.normal_done += 1
        if connection is not None and (response is None or not response.keep_alive):
            await aioclient.close(connection[1])
            connection = None
        await asyncio.sleep(NORMAL_PAUSE_S)
    if connection is not None:
        await aioclient.close(connection[1])


async def slow_and_normal_load(port: int, duration: float, result: RunResult) -> float:
    """The whole load; returns the seconds the normal clients ran."""
    stop_slow, stop_normal = asyncio.Event(), asyncio.Event()
    slow = []
    for _ in range(SLOW_CLIENTS):
        slow.append(asyncio.create_task(slow_client(port, result, stop_slow)))
        await asyncio.sleep(1.0 / SLOW_CLIENTS)
    await asyncio.sleep(SLOW_LEAD_S - 1.0)
    start = time.monotonic()
    normal = [asyncio.create_task(normal_client(port, result, stop_normal)) for _ in range(NORMAL_CLIENTS)]
    try:
        await asyncio.sleep(duration)
        stop_normal.set()
        await asyncio.wait(normal, timeout=NORMAL_TIMEOUT_S + 1.0)
        return time.monotonic() - start
    finally:
        stop_slow.set()
        for task in slow + normal:
            task.cancel()
        await asyncio.gather(*slow, *normal, return_exceptions=True)


# ---------------------------------------------------------------- one run


def measure(row: SlowRow, repetition: int, duration: int) -> RunResult:
    result = RunResult(repetition=repetition, config=row.name)
    try:
        server = harness.start_server(row.argv, http_probe, harness.python_env())
    except ServerStartFailure as failure:
        result.failure = failure.describe()
        return result
    result.port = server.port
    try:
        cpu_before, wall_before = time.process_time(), time.monotonic()
        normal_s = asyncio.run(slow_and_normal_load(server.port, duration, result))
        result.client_cpu = round((time.process_time() - cpu_before) / (time.monotonic() - wall_before), 3)
        server.check_alive()
        result.normal_rps = result.normal_done / normal_s
        if len(result.latencies_ms) >= 2:
            quantiles = statistics.quantiles(result.latencies_ms, n=100)
            result.p50_us, result.p99_us = quantiles[49] * 1e3, quantiles[98] * 1e3
        result.ok = True
    except BenchFailure as failure:
        result.failure = str(failure)
    finally:
        result.stopped_cleanly = server.stop()
    return result


# ---------------------------------------------------------------- the report

METRIC = harness.Metric(rate="normal_rps", rate_label="normal req/s", cpu="client_cpu", per_unit=False)


def ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1e3:.1f}"


def describe(result: RunResult) -> str:
    return (
        f"normal: {result.normal_done} done, {result.normal_timeouts} timeouts, {result.normal_failed} failed, "
        f"p50 {ms(result.p50_us)} ms, p99 {ms(result.p99_us)} ms; slow: {result.slow_done} done, "
        f"{result.slow_failed} failed"
    )


def report(rows: Sequence[SlowRow], summaries: list[harness.Summary], results: Sequence[RunResult]) -> list[str]:
    """The table (counts summed over the repetitions, percentiles over all the normal requests) and the verdicts."""
    lines = [
        "| server | runs | normal done | normal timeouts | normal failed | normal p50 ms | normal p99 ms "
        "| slow done | slow failed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    verdicts = []
    for row in rows:
        mine = [r for r in results if r.config == row.name and r.ok]
        latencies = [latency for r in mine for latency in r.latencies_ms]
        p50 = p99 = None
        if len(latencies) >= 2:
            quantiles = statistics.quantiles(latencies, n=100)
            p50, p99 = quantiles[49], quantiles[98]
        if not mine:
            lines.append(f"| {row.name} | 0 | failed | | | | | | |")
        else:
            lines.append(
                f"| {row.name} | {len(mine)} | {sum(r.normal_done for r in mine):,} | "
                f"{sum(r.normal_timeouts for r in mine)} | {sum(r.normal_failed for r in mine)} | "
                f"{'-' if p50 is None else f'{p50:.1f}'} | {'-' if p99 is None else f'{p99:.1f}'} | "
                f"{sum(r.slow_done for r in mine)} | {sum(r.slow_failed for r in mine)} |"
            )
        if row.max_p99_ms is not None:
            head = f"target {row.name}: normal clients' p99 < {row.max_p99_ms:.0f} ms"
            if p99 is None:
                verdicts.append(f"{head}: not measured")
            else:
                verdicts.append(f"{head}: {'met' if p99 < row.max_p99_ms else 'MISSED'} ({p99:.1f} ms)")
    return [*lines, "", *verdicts]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--repeat", type=harness.positive_int, default=2, help="repetitions of every row")
    parser.add_argument(
        "--duration", type=harness.positive_int, default=10, help="seconds the normal clients run per run"
    )
    parser.add_argument(
        "--only", action="append", metavar="TEXT", help="run only rows whose name contains TEXT (repeatable)"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write every run's raw figures to PATH")
    # The slow clients' lead (SLOW_LEAD_S) is the warmup.
    parser.set_defaults(warmup=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    harness.unwind_on_termination()
    rows = harness.select_configs(CONFIGS, args.only, self_check=False)
    if not rows:
        print(f"slow_clients_bench: no row matches --only {args.only}", file=sys.stderr)
        return 2
    plan = list(harness.schedule(rows, args.repeat))
    print(
        f"slow_clients_bench: {len(plan)} runs of {SLOW_LEAD_S:.0f} s + {args.duration} s, {SLOW_CLIENTS} slow and "
        f"{NORMAL_CLIENTS} normal clients (about {len(plan) * (args.duration + SLOW_LEAD_S + 5) / 60:.1f} min)",
        file=sys.stderr,
    )
    return harness.run_bench(
        tool="slow_clients_bench",
        plan=plan,
        configs=rows,
        metric=METRIC,
        measure=lambda row, repetition: measure(row, repetition, args.duration),
        describe=describe,
        meta=harness.metadata(
            args,
            ("pyswoole", "gunicorn"),
            {},
            {"slow_clients": SLOW_CLIENTS, "normal_clients": NORMAL_CLIENTS, "slow_body": SLOW_BODY},
        ),
        json_path=args.json,
        stopped="servers",
        heading=(
            f"\nSlow clients: {SLOW_CLIENTS} clients sending a byte and reading {SLOW_READ} B every "
            f"{SLOW_STEP_S * 1e3:.0f} ms ({SLOW_BODY // 1024} KiB answers) beside {NORMAL_CLIENTS} normal ones, "
            f"{args.duration} s per run, {args.repeat} repetitions summed\n"
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
