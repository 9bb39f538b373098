"""``pyswoole``: the operator's command line for a running server, found through its pid_file.

pyswoole reload [--task-workers] PIDFILE   graceful reload (SIGUSR1, or SIGUSR2 for task workers only)
pyswoole stop [--timeout S] PIDFILE        graceful shutdown (SIGTERM); waits until the server is gone
pyswoole status [--json] PIDFILE           stats() of the running server (--json: its whole snapshot)
pyswoole top PIDFILE                       a live view of the server's processes, refreshed every second
pyswoole serve [OPTIONS] MODULE:APP        serve an ASGI or WSGI application (``hosting/serve.py``)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Any

from . import __version__
from .hosting import serve as serve_command
from .ops import top as top_view

STALE_AFTER = 5.0  # seconds: a stats file older than this means the server stopped publishing


def read_pid(pid_file: str) -> int:
    try:
        with open(pid_file) as file:
            pid = int(file.read().strip())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"pyswoole: cannot read a pid from {pid_file}: {exc}") from None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise SystemExit(f"pyswoole: no server runs as pid {pid} (stale {pid_file})") from None
    return pid


def _running(pid: int) -> bool:
    """True while ``pid`` runs; an exited server that its parent has not reaped yet (a zombie) has stopped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as file:
            stat = file.read()
    except OSError:
        return True  # no /proc: trust kill()
    return stat[stat.rindex(")") + 2] not in "ZX"


def reload(pid_file: str, task_workers: bool) -> int:
    os.kill(read_pid(pid_file), signal.SIGUSR2 if task_workers else signal.SIGUSR1)
    print(f"reload of {'task workers' if task_workers else 'all workers'} requested")
    return 0


def stop(pid_file: str, timeout: float) -> int:
    pid = read_pid(pid_file)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _running(pid):
            print(f"server {pid} stopped")
            return 0
        time.sleep(0.05)
    print(f"pyswoole: server {pid} still running after {timeout}s", file=sys.stderr)
    return 1


def status(pid_file: str, stats_file: str | None, as_json: bool) -> int:
    read_pid(pid_file)
    path = stats_file or pid_file + ".stats.json"
    try:
        with open(path) as file:
            text = file.read()
        age = time.time() - os.stat(path).st_mtime
        # A stats_file not ending in .json holds Swoole's "key: value" lines.
        stats: dict[str, Any] = (
            json.loads(text)
            if path.endswith(".json")
            else {key: value for key, _, value in (line.partition(": ") for line in text.splitlines()) if key}
        )
    except (OSError, ValueError) as exc:
        raise SystemExit(f"pyswoole: cannot read stats from {path}: {exc}") from None
    if age > STALE_AFTER:
        print(f"pyswoole: {path} is {age:.0f}s old; the server may be stuck", file=sys.stderr)
    if as_json:
        print(json.dumps(stats, indent=2))
        return 0
    if isinstance(stats.get("server"), dict):  # the snapshot: its stats() part and the pids
        stats = {**stats["server"], "master_pid": stats.get("master_pid"), "manager_pid": stats.get("manager_pid")}
    width = max(map(len, stats))
    for key, value in stats.items():
        print(f"{key:<{width}}  {value}")
    return 0


def top(pid_file: str, stats_file: str | None) -> int:
    read_pid(pid_file)
    return top_view.run(pid_file, stats_file)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pyswoole", description="Control a running pyswoole server.")
    parser.add_argument("--version", action="version", version=f"pyswoole {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    reload_parser = commands.add_parser("reload", help="restart the workers gracefully")
    reload_parser.add_argument("--task-workers", action="store_true", help="only the task workers")
    stop_parser = commands.add_parser("stop", help="shut the server down gracefully")
    stop_parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (default 30)")
    status_parser = commands.add_parser("status", help="print the server's stats()")
    status_parser.add_argument("--json", action="store_true", help="as JSON")
    top_parser = commands.add_parser("top", help="watch the server's processes live (q quits)")
    for sub in (status_parser, top_parser):
        sub.add_argument("--stats-file", help="the server's stats_file, if it set one (a JSON one)")
    for sub in (reload_parser, stop_parser, status_parser, top_parser):
        sub.add_argument("pid_file", help="the server's pid_file")
    serve_parser = serve_command.add_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve_command.run(args, serve_parser)
    if args.command == "reload":
        return reload(args.pid_file, args.task_workers)
    if args.command == "stop":
        return stop(args.pid_file, args.timeout)
    if args.command == "top":
        return top(args.pid_file, args.stats_file)
    return status(args.pid_file, args.stats_file, args.json)


if __name__ == "__main__":
    sys.exit(main())
