"""Shared-state benchmark: pyswoole's Table and Atomic against multiprocessing.Manager().dict() and Redis, in one run.

What one row measures: single-row operations per second, summed over 1 or 4 processes that all work on the same
key at once, for each backend:

- get: ``Table.get(key)`` (a row of an int, a float and a 32-byte string, as a dict); ``d[key]`` of a
  ``Manager().dict()`` holding the same row as a dict; Redis ``HGETALL key``.
- incr: ``Table.incr(key, "hits")``; ``d[key]`` read, bumped and stored under a ``Manager().Lock()`` (a dict proxy
  has no atomic increment, and without the lock 4 processes lose counts); Redis ``INCR key``.
- add: ``Atomic.add()``; (no Manager row); Redis ``INCR key``.

The processes are forked (multiprocessing's fork context, so that Manager proxies reconnect) after the shared
objects are made, wait at a start line, then each counts its operations for ``--duration`` seconds; the rate of a
row is the sum of each process's count over its own elapsed time. The three backends of a row run back to back,
in an order that rotates every repetition, and a ratio is the median of the per-repetition ratios.

The bench starts ``redis-server`` (``--redis-server``, default /usr/bin/redis-server) on a free port without
persistence and stops it at the end, whatever happens; it needs the ``redis`` package (``pip install redis``).
Targets: ``Table.get`` at least 20x ``Manager().dict()`` (1 process), and ``Table.incr`` from 4 processes at least
10x Redis ``INCR`` from 4 processes. A missed target is printed but does not change the exit status (0; 1 when a
run failed).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis

from pyswoole import Atomic, Table

KEY = "user:42"
ROW = {"hits": 0, "score": 0.5, "name": "x" * 32}
BATCH = 100  # operations between two looks at the clock
BACKENDS = ("pyswoole", "Manager().dict()", "Redis")
Op = Callable[[], object]


@dataclass(frozen=True)
class Row:
    operation: str
    processes: int


@dataclass(frozen=True)
class Target:
    row: Row
    versus: str
    ratio: float


ROWS = [Row(op, n) for op in ("get", "incr", "add") for n in (1, 4)]
TARGETS = [Target(Row("get", 1), "Manager().dict()", 20.0), Target(Row("incr", 4), "Redis", 10.0)]


# -- the backends -----------------------------------------------------------------------------------------------


@dataclass
class Backends:
    table: Table
    atomic: Atomic
    manager_dict: Any
    manager_lock: Any
    redis_port: int


def pyswoole_op(backends: Backends, operation: str) -> Op:
    table, atomic = backends.table, backends.atomic
    if operation == "get":
        return lambda: table.get(KEY)
    if operation == "incr":
        return lambda: table.incr(KEY, "hits")
    return atomic.add


def manager_op(backends: Backends, operation: str) -> Op | None:
    d, lock = backends.manager_dict, backends.manager_lock
    if operation == "get":
        return lambda: d[KEY]
    if operation == "incr":

        def incr() -> None:
            with lock:
                row = d[KEY]
                row["hits"] += 1
                d[KEY] = row

        return incr
    return None


def redis_op(backends: Backends, operation: str) -> Op:
    client = redis.Redis(port=backends.redis_port)  # made in the measuring process: one connection each
    if operation == "get":
        return lambda: client.hgetall(KEY)
    return lambda: client.incr("counter")


OP_MAKERS: dict[str, Callable[[Backends, str], Op | None]] = {
    "pyswoole": pyswoole_op,
    "Manager().dict()": manager_op,
    "Redis": redis_op,
}


# -- one measurement -------------------------------------------------------------------------------------------


def measure_one_process(make: Callable[[], Op], start_line: Any, duration: float, results: Any) -> None:
    """Runs in each forked process: waits at the start line, then counts operations for `duration` seconds."""
    op = make()
    op()  # a warm connection and a warm code path before the clock starts
    start_line.wait()
    count = 0
    started = time.perf_counter()
    deadline = started + duration
    while True:
        for _ in range(BATCH):
            op()
        count += BATCH
        now = time.perf_counter()
        if now >= deadline:
            break
    results.put(count / (now - started))


def measure(backends: Backends, backend: str, row: Row, duration: float) -> float | None:
    """Operations per second of one backend on one row, summed over its processes; None if it has no such op."""
    if OP_MAKERS[backend](backends, row.operation) is None:
        return None
    context = multiprocessing.get_context("fork")
    start_line = context.Barrier(row.processes)
    results = context.Queue()
    workers = [
        context.Process(
            target=measure_one_process,
            args=(lambda: OP_MAKERS[backend](backends, row.operation), start_line, duration, results),
        )
        for _ in range(row.processes)
    ]
    for worker in workers:
        worker.start()
    rates = [results.get(timeout=duration + 60) for _ in workers]
    for worker in workers:
        worker.join(10)
        if worker.exitcode != 0:
            raise RuntimeError(f"{backend} {row}: a measuring process exited with {worker.exitcode}")
    return float(sum(rates))


# -- redis-server ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def redis_server(executable: str) -> Iterator[int]:
    """A redis-server on a free loopback port, without persistence, stopped on the way out."""
    if shutil.which(executable) is None:
        raise SystemExit(f"no redis-server at {executable} (apt-get install redis-server, or --redis-server)")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="state-bench-redis-")
    process = subprocess.Popen(
        [executable, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"redis-server did not start on port {port}")
                time.sleep(0.02)
        client.close()
        yield port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


# -- the run --------------------------------------------------------------------------------------------------


def reset(backends: Backends) -> None:
    backends.table.set(KEY, ROW)
    backends.manager_dict[KEY] = dict(ROW)
    client = redis.Redis(port=backends.redis_port)
    client.delete(KEY, "counter")
    client.hset(KEY, mapping={"hits": 0, "score": 0.5, "name": "x" * 32})
    client.close()


def run(args: argparse.Namespace, backends: Backends) -> dict[Row, dict[str, list[float | None]]]:
    rates: dict[Row, dict[str, list[float | None]]] = {row: {b: [] for b in BACKENDS} for row in ROWS}
    for repetition in range(args.repeat):
        for row in ROWS:
            order = BACKENDS[repetition % 3 :] + BACKENDS[: repetition % 3]
            for backend in order:
                reset(backends)
                rate = measure(backends, backend, row, args.duration)
                rates[row][backend].append(rate)
                shown = "-" if rate is None else f"{rate:,.0f}/s"
                print(f"[{repetition + 1}/{args.repeat}] {row.operation} x{row.processes} {backend}: {shown}",
                      file=sys.stderr, flush=True)  # fmt: skip
    return rates


def median_ratio(ours: list[float | None], theirs: list[float | None]) -> float | None:
    ratios = [a / b for a, b in zip(ours, theirs, strict=True) if a is not None and b]
    return statistics.median(ratios) if ratios else None


def report(rates: dict[Row, dict[str, list[float | None]]]) -> str:
    def median(values: list[float | None]) -> str:
        present = [v for v in values if v is not None]
        return f"{statistics.median(present):,.0f}" if present else "-"

    def ratio(row: Row, versus: str) -> str:
        value = median_ratio(rates[row]["pyswoole"], rates[row][versus])
        return "-" if value is None else f"**{value:,.1f}x**"

    lines = [
        "| operation | processes | pyswoole ops/s | Manager().dict() ops/s | Redis ops/s | vs Manager | vs Redis |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    names = {"get": "Table.get", "incr": "Table.incr", "add": "Atomic.add"}
    for row in ROWS:
        r = rates[row]
        lines.append(
            f"| {names[row.operation]} | {row.processes} | {median(r['pyswoole'])} | {median(r['Manager().dict()'])} "
            f"| {median(r['Redis'])} | {ratio(row, 'Manager().dict()')} | {ratio(row, 'Redis')} |"
        )
    for target in TARGETS:
        value = median_ratio(rates[target.row]["pyswoole"], rates[target.row][target.versus])
        verdict = "met" if value is not None and value >= target.ratio else "MISSED"
        lines.append(
            f"\ntarget: {names[target.row.operation]} x{target.row.processes} >= {target.ratio:g}x {target.versus}: "
            f"{'-' if value is None else f'{value:.1f}x'} ({verdict})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=1.0, help="seconds each measurement counts (1.0)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of every row (3)")
    parser.add_argument("--redis-server", default="/usr/bin/redis-server", help="the redis-server to start")
    args = parser.parse_args(argv)

    table = Table(1024)
    table.column("hits", Table.TYPE_INT)
    table.column("score", Table.TYPE_FLOAT)
    table.column("name", Table.TYPE_STRING, 32)
    table.create()
    atomic = Atomic()
    with redis_server(args.redis_server) as port, multiprocessing.get_context("fork").Manager() as manager:
        backends = Backends(table, atomic, manager.dict(), manager.Lock(), port)
        try:
            rates = run(args, backends)
        except (RuntimeError, OSError, redis.RedisError) as exc:
            print(f"FAILED: {exc}", file=sys.stderr)
            return 1
    print(f"\npyswoole state bench: {os.cpu_count()} CPUs, {args.repeat} x {args.duration:g} s per measurement\n")
    print(report(rates))
    return 0


if __name__ == "__main__":
    sys.exit(main())
