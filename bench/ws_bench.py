"""WebSocket benchmark (issue 12): pyswoole's WebSocketServer against websockets, uvicorn + Starlette and picows.

Echo (the default): 50 connections each send a 64-byte text message, wait for its echo and send the next, for
``--duration`` seconds; every row is divided by ``picows`` (the fastest asyncio WebSocket library) of the same
repetition, pyswoole PROCESS by pyswoole BASE, and the targets compare pyswoole BASE with websockets too.

Broadcast (``--broadcast``): 5,000 clients connect; then, a few rounds each run, one client sends a message and
the server sends it to every connection; the figure is the time from that send until the last client has the
message (lower is better, so a ratio under 1.00x means faster than the baseline, the websockets server doing the
same with its ``broadcast()``).

The load generator is ``wsload`` (``wsload.c`` beside this file, built with gcc into build/bench/): C and epoll,
so that it uses well under one core and the servers, not the generator, set the pace (its CPU is printed with
every run). The process groups, the schedule, the medians and the table are ``harness.py``'s.

Exit status: 0 when every run completed with zero errors; 1 when a server failed to start or died, the load
generator failed, or any run had errors; 2 when wsload cannot be built; 130 on Ctrl-C. A missed target is
printed but does not change the exit status.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import harness
from harness import HOST, REPO_ROOT, STOP_GRACE_S, BenchFailure, ServerStartFailure

WSLOAD_SRC = REPO_ROOT / "bench" / "wsload.c"
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
BROADCAST_CLIENTS = 5000


@dataclass(frozen=True)
class WsRow:
    """A row: a server command after the interpreter, ``{port}`` replaced by the run's port."""

    name: str
    command: tuple[str, ...]
    baseline: str | None = None
    target: float | None = None

    def argv(self, port: int) -> list[str]:
        return [sys.executable, *(part.replace("{port}", str(port)) for part in self.command)]


PORT = ("--port", "{port}")
UVICORN_STARLETTE = (
    "-m",
    "uvicorn",
    "--workers",
    "1",
    "--http",
    "httptools",
    "--loop",
    "uvloop",
    "--ws",
    "websockets-sansio",
    "--no-access-log",
    "--log-level",
    "warning",
    "--host",
    HOST,
    *PORT,
    "bench.servers.starlette_ws:app",
)
PYSWOOLE = ("bench/servers/pyswoole_ws.py", *PORT)

ECHO_CONFIGS: tuple[WsRow, ...] = (
    WsRow("picows", ("bench/servers/picows_ws.py", *PORT)),
    WsRow("websockets", ("bench/servers/websockets_ws.py", *PORT), baseline="picows"),
    WsRow("uvicorn + starlette", UVICORN_STARLETTE, baseline="picows"),
    WsRow("pyswoole BASE 1 worker", (*PYSWOOLE, "--mode", "base", "--workers", "1"), baseline="picows", target=0.8),
    WsRow(
        "pyswoole PROCESS 1/1",
        (*PYSWOOLE, "--mode", "process", "--workers", "1", "--reactors", "1"),
        baseline="pyswoole BASE 1 worker",
        target=0.5,
    ),
)
ECHO_TARGETS = (harness.Target("pyswoole BASE 1 worker", "websockets", 2.0),)

BROADCAST_CONFIGS: tuple[WsRow, ...] = (
    WsRow("websockets broadcast()", ("bench/servers/websockets_ws.py", *PORT, "--broadcast")),
    WsRow(
        "pyswoole PROCESS 4 workers",
        (*PYSWOOLE, "--mode", "process", "--workers", "4", "--broadcast"),
        baseline="websockets broadcast()",
    ),
)

for configs, targets in ((ECHO_CONFIGS, ECHO_TARGETS), (BROADCAST_CONFIGS, ())):
    harness.check_configs(configs)
    harness.check_targets(configs, targets)


@dataclass(frozen=True)
class LoadSettings:
    wsload: Path
    broadcast: bool
    conns: int
    size: int
    duration: int  # echo: seconds of load per run
    rounds: int  # broadcast: messages sent to all per run
    warmup: int


@dataclass
class RunResult(harness.Run):
    port: int | None = None
    rps: float | None = None  # echo: messages echoed per second
    last_us: float | None = None  # broadcast: median over the rounds of the send-to-last-receipt time
    first_us: float | None = None
    p50_us: float | None = None
    p99_us: float | None = None
    max_us: float | None = None
    errors: int | None = None
    server_cpu: float | None = None
    loadgen_cpu: float | None = None
    connect_s: float | None = None  # broadcast: time to connect and upgrade every client
    warmup_errors: int | None = None
    stopped_cleanly: bool | None = None


# ---------------------------------------------------------------- the probe and the load


def ws_probe(port: int) -> None:
    """The readiness probe: an upgrade (101 with the right accept key), then a text message echoed back.

    In broadcast mode the server sends the message to every connection, which is the probe alone: an echo.
    """
    key = base64.b64encode(os.urandom(16))
    accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
    message = b"pyswoole-bench-probe"
    mask = os.urandom(4)
    frame = bytes([0x81, 0x80 | len(message)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(message))
    with socket.create_connection((HOST, port), timeout=2.0) as conn:
        conn.sendall(
            b"GET / HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (HOST.encode(), port, key)
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = conn.recv(4096)
            if not chunk:
                raise ConnectionResetError("closed during the upgrade")
            answer += chunk
        head, _, rest = answer.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101") or accept not in head:
            raise ServerStartFailure(f"upgrade answered {head[:300]!r}")
        conn.sendall(frame)
        expected = bytes([0x81, len(message)]) + message
        while len(rest) < len(expected):
            chunk = conn.recv(4096)
            if not chunk:
                raise ServerStartFailure("closed instead of echoing the probe message")
            rest += chunk
        if rest[: len(expected)] != expected:
            raise ServerStartFailure(f"probe message came back as {rest[:100]!r}")


def run_wsload(port: int, load: LoadSettings, duration: int) -> dict[str, float]:
    common = [str(load.wsload), "-h", HOST, "-p", str(port), "-c", str(load.conns), "-s", str(load.size)]
    if load.broadcast:
        # Each round waits at most 10 s for its last client; connecting 5,000 clients takes a few seconds.
        return harness.run_result_tool([*common, "-b", str(load.rounds)], 10.0 * load.rounds + 30.0)
    return harness.run_result_tool([*common, "-d", str(duration)], duration)


# ---------------------------------------------------------------- one run


def measure(row: WsRow, repetition: int, load: LoadSettings) -> RunResult:
    result = RunResult(repetition=repetition, config=row.name)
    try:
        server = harness.start_server(row.argv, ws_probe, harness.python_env())
    except ServerStartFailure as failure:
        result.failure = failure.describe()
        return result
    result.port = server.port
    try:
        if load.warmup and not load.broadcast:
            result.warmup_errors = int(run_wsload(server.port, load, load.warmup)["errors"])
        cpu_before, wall_before = server.cpu_seconds(), time.monotonic()
        figures = run_wsload(server.port, load, load.duration)
        cpu_after, wall = server.cpu_seconds(), time.monotonic() - wall_before
        server.check_alive()
        result.p50_us, result.p99_us = figures["p50_us"], figures["p99_us"]
        result.errors, result.loadgen_cpu = int(figures["errors"]), figures["cpu"]
        if load.broadcast:
            result.last_us, result.first_us, result.connect_s = (
                figures["last_us"],
                figures["first_us"],
                figures["connect_s"],
            )
            if figures["clients"] < load.conns:
                raise BenchFailure(f"only {figures['clients']:.0f} of {load.conns} clients were connected")
        else:
            result.rps, result.max_us = figures["rps"], figures["max_us"]
        if cpu_before is not None and cpu_after is not None:
            result.server_cpu = round((cpu_after - cpu_before) / wall, 3)
        result.ok = True
    except BenchFailure as failure:
        result.failure = str(failure)
    finally:
        result.stopped_cleanly = server.stop()
    return result


# ---------------------------------------------------------------- command line

ECHO_METRIC = harness.Metric(rate="rps", rate_label="msg/s", cpu="server_cpu")
BROADCAST_METRIC = harness.Metric(rate="last_us", rate_label="last_us", cpu="server_cpu", per_unit=False)


def describe(result: RunResult) -> str:
    if result.last_us is not None:
        head = f"last {result.last_us / 1e3:8.1f} ms  first {result.first_us:8.0f} us  p50 {result.p50_us:8.0f} us"
        tail = f"  connect {result.connect_s:.1f} s"
    else:
        head = f"msg/s {result.rps:>9,.0f}  p50 {result.p50_us:8.1f} us  p99 {result.p99_us:8.1f} us"
        tail = ""
    return f"{head}  errors {result.errors}  server_cpu {result.server_cpu}  wsload_cpu {result.loadgen_cpu}{tail}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = harness.argument_parser(
        __doc__,
        duration=4,
        duration_help="echo: seconds of load per run (whole seconds)",
        warmup_help="echo: seconds of unmeasured load before each run (0: none)",
    )
    parser.add_argument("--broadcast", action="store_true", help="the broadcast bench instead of the echo bench")
    parser.add_argument(
        "--conns", type=harness.positive_int, help=f"connections (default: 50; with --broadcast {BROADCAST_CLIENTS})"
    )
    parser.add_argument("--size", type=harness.positive_int, default=64, help="message size in bytes")
    parser.add_argument("--rounds", type=harness.positive_int, default=5, help="broadcast: messages per run")
    parser.add_argument(
        "--only",
        action="append",
        metavar="TEXT",
        help="run only rows whose name contains TEXT (repeatable), plus their baselines",
    )
    harness.add_output_arguments(parser, aa_help="also run each baseline against itself (A/A), the noise floor")
    args = harness.parse_args(parser, argv)
    if args.size > 65535:
        parser.error("--size must be <= 65535")
    if args.conns is None:
        args.conns = BROADCAST_CLIENTS if args.broadcast else 50
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    harness.unwind_on_termination()
    try:
        wsload = harness.build_tool(WSLOAD_SRC, "wsload")
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"ws_bench: cannot build wsload: {exc}", file=sys.stderr)
        return 2
    configs: Sequence[WsRow] = BROADCAST_CONFIGS if args.broadcast else ECHO_CONFIGS
    targets = () if args.broadcast else ECHO_TARGETS
    selected = harness.select_configs(configs, args.only, args.aa)
    if not selected:
        print(f"ws_bench: no row matches --only {args.only}", file=sys.stderr)
        return 2
    load = LoadSettings(wsload, args.broadcast, args.conns, args.size, args.duration, args.rounds, args.warmup)
    plan = list(harness.schedule(selected, args.repeat))
    if args.broadcast:
        what = f"{load.conns} clients, {load.rounds} broadcasts of {load.size} B per run"
        heading = (
            f"\nBroadcast to {load.conns} clients, {load.size}-byte text message, median of {load.rounds} rounds per "
            f"run and of {args.repeat} repetitions; last_us: from the send until the last client has it (lower is "
            f"better); p50/p99: the clients' receipt times; ratio = median of per-repetition last_us ratios\n"
        )
        minutes = len(plan) * (10 + load.rounds * 0.5) / 60
    else:
        what = f"{load.warmup} s warmup + {load.duration} s, {load.conns} conns x {load.size} B"
        heading = (
            f"\nWebSocket echo, {load.conns} connections x {load.size}-byte text messages, one in flight each, "
            f"{load.duration} s per run, median of {args.repeat} repetitions; "
            f"ratio = median of per-repetition msg/s ratios (min-max)\n"
        )
        minutes = len(plan) * (load.duration + load.warmup + 2) / 60
    print(f"ws_bench: {len(plan)} runs, {what} (about {minutes:.1f} min)", file=sys.stderr)

    return harness.run_bench(
        tool="ws_bench",
        plan=plan,
        configs=selected,
        metric=BROADCAST_METRIC if args.broadcast else ECHO_METRIC,
        measure=lambda row, repetition: measure(row, repetition, load),
        describe=describe,
        meta=harness.metadata(
            args,
            ("pyswoole", "uvloop", "websockets", "picows", "uvicorn", "starlette"),
            {"wsload": str(wsload), "broadcast": args.broadcast},
            {"conns": load.conns, "size": load.size, "rounds": load.rounds},
        ),
        json_path=args.json,
        stopped="servers",
        heading=heading,
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


if __name__ == "__main__":
    sys.exit(main())
