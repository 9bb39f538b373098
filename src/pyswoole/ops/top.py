"""``pyswoole top PIDFILE``: a live terminal view of the server's snapshot, one row per process.

:func:`render` is pure (snapshots in, screen lines out); :func:`run` is the curses loop around it, reading the
snapshot the server writes every second to ``<pid_file>.stats.json``. Invariant: every line :func:`render`
returns fits ``width`` and there are at most ``height`` of them, so the loop never writes off the screen.
Rates (requests/s) come from two snapshots: the current one and the one before it.
"""

from __future__ import annotations

import curses
import json
import os
import time
from collections.abc import Mapping
from typing import Any

REFRESH = 1.0  # seconds between two reads of the stats file
STALE_AFTER = 5.0  # seconds: an older snapshot means the server stopped publishing
TABLE_TITLE_ROW = 4  # the line of the column titles, drawn in reverse video
COLUMNS = f"{'ID':>4}  {'TYPE':<11} {'PID':>8}  {'STATUS':<6} {'REQUESTS':>12} {'REQ/S':>9} {'RSS MiB':>9} {'CONNS':>6}"

Snapshot = Mapping[str, Any]


def render(snapshot: Snapshot, previous_snapshot: Snapshot | None, width: int, height: int) -> list[str]:
    """The screen for ``snapshot``: three header lines, a blank one, the column titles, one row per process."""
    server: Mapping[str, Any] = snapshot.get("server", {})
    now = snapshot.get("time", 0.0)
    previous_server: Mapping[str, Any] = previous_snapshot.get("server", {}) if previous_snapshot else {}
    elapsed = now - previous_snapshot.get("time", now) if previous_snapshot else 0.0
    workers: list[Mapping[str, Any]] = snapshot.get("workers", [])
    events = [worker for worker in workers if worker.get("type") == "worker"]
    busy = sum(worker.get("status") == "busy" for worker in events)
    rss = sum(worker.get("rss_bytes", 0) for worker in workers)
    restarts: Mapping[str, int] = snapshot.get("restarts", {})
    restart_causes = ", ".join(f"{cause} {count}" for cause, count in restarts.items() if count)

    header = [
        f"pyswoole  {snapshot.get('mode', '?')}  master {snapshot.get('master_pid', '-')}  "
        f"manager {snapshot.get('manager_pid', '-')}  up {_uptime(now - server.get('start_time', now))}  "
        f"at {time.strftime('%H:%M:%S', time.localtime(now))}",
        f"connections {server.get('connection_num', 0):,}  "
        f"requests/s {_rate(server.get('request_count'), previous_server.get('request_count'), elapsed)}  "
        f"requests {server.get('request_count', 0):,}  tasks queued {server.get('tasking_num', 0):,}  "
        f"workers {busy} busy / {len(events) - busy} idle  "
        f"task workers {server.get('task_idle_worker_num', 0)}/{server.get('task_worker_num', 0)} idle",
        f"memory {rss / 2**20:,.1f} MiB  restarts {sum(restarts.values())}"
        + (f" ({restart_causes})" if restart_causes else "")
        + f"  reloads {snapshot.get('reloads', 0)}  dropped pipe messages {snapshot.get('dropped_pipe_messages', 0)}",
        "",
        COLUMNS,
    ]
    before = {worker.get("id"): worker for worker in previous_snapshot.get("workers", [])} if previous_snapshot else {}
    rows = []
    for worker in workers:
        earlier = before.get(worker.get("id"))
        # A new pid is a restarted process, whose counters began again at 0: no rate across the restart.
        previous_requests = earlier.get("requests") if earlier and earlier.get("pid") == worker.get("pid") else None
        rows.append(
            f"{worker.get('id', '?'):>4}  {worker.get('type', '?'):<11} {worker.get('pid', '-'):>8}  "
            f"{worker.get('status', '?'):<6} {worker.get('requests', 0):>12,} "
            f"{_rate(worker.get('requests'), previous_requests, elapsed):>9} "
            f"{worker.get('rss_bytes', 0) / 2**20:>9,.1f} {worker.get('connections', 0):>6,}"
        )
    room = max(0, height - len(header))
    if len(rows) > room:
        hidden = len(rows) - room + 1
        rows = rows[: room - 1] + [f"  ... {hidden} more"] if room else []
    return [line[:width] for line in (header + rows)[: max(0, height)]]


def _rate(current: int | None, previous: int | None, elapsed: float) -> str:
    if current is None or previous is None or elapsed <= 0 or current < previous:
        return "-"
    return f"{(current - previous) / elapsed:,.1f}"


def _uptime(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    clock = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}d {clock}" if days else clock


def run(pid_file: str, stats_file: str | None = None) -> int:
    """Show the server's snapshot from ``stats_file`` (default ``<pid_file>.stats.json``) until ``q``."""
    path = stats_file or pid_file + ".stats.json"
    # curses would take exported LINES/COLUMNS (readline exports them) over the terminal's real, changing size.
    os.environ.pop("LINES", None)
    os.environ.pop("COLUMNS", None)
    try:
        return curses.wrapper(_loop, path)
    except KeyboardInterrupt:
        return 0


def _read(path: str) -> tuple[Snapshot | None, str | None]:
    """The snapshot in ``path``, or why there is none."""
    try:
        with open(path, encoding="utf-8") as file:
            snapshot = json.load(file)
    except FileNotFoundError:
        return None, f"no stats: is the server running, with this pid_file? (waiting for {path})"
    except (OSError, ValueError) as exc:
        return None, f"cannot read the stats: {exc}"
    if not isinstance(snapshot, dict) or "server" not in snapshot:
        return None, f"not a pyswoole snapshot: {path}"
    return snapshot, None


def _loop(screen: curses.window, path: str) -> int:
    try:
        curses.curs_set(0)
    except curses.error:
        pass  # a terminal that cannot hide its cursor
    screen.timeout(int(REFRESH * 1000))
    current: Snapshot | None = None
    previous: Snapshot | None = None
    while True:
        snapshot, problem = _read(path)
        if snapshot is not None and (current is None or snapshot.get("time") != current.get("time")):
            previous, current = current, snapshot
        if snapshot is not None and time.time() - snapshot.get("time", 0) > STALE_AFTER:
            age = time.time() - snapshot.get("time", 0)
            problem = f"stale: these stats are {age:.0f}s old; is the server stopped or stuck? ({path})"
        _draw(screen, render(current, previous, *_size(screen)) if current is not None else [], problem)
        if screen.getch() in (ord("q"), ord("Q")):
            return 0


def _size(screen: curses.window) -> tuple[int, int]:
    """The room for :func:`render`: the last column stays empty (curses cannot write the bottom-right cell) and
    the last line is for the status line."""
    height, width = screen.getmaxyx()
    return width - 1, height - 1


def _draw(screen: curses.window, lines: list[str], problem: str | None) -> None:
    width, height = _size(screen)
    screen.erase()
    try:
        for row, line in enumerate(lines):
            screen.addstr(row, 0, line, curses.A_REVERSE if row == TABLE_TITLE_ROW else curses.A_NORMAL)
        status, attribute = (problem, curses.A_BOLD) if problem else ("q quits", curses.A_DIM)
        screen.addstr(height, 0, status[:width], attribute)
    except curses.error:
        pass  # a terminal too small for even that much
    screen.refresh()
