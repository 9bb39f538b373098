"""Candidate WebSocket server for ``ws_bench.py``: pyswoole's WebSocketServer, echo or broadcast.

Written against the contract (docs api-http.md). Echo: the Message callback pushes the frame's data back to its
sender, ``server.push(frame.fd, frame.data)`` (a text message stays text). ``--broadcast``: the Message callback
pushes the message to every open connection, ``server.push(fd, data)`` for each fd of ``server.connections``
(all of them in PROCESS mode; in BASE mode only the worker's own). The open-files limit is raised before the
server is built, since max_connection's default follows it. ``server.start()`` blocks; SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pyswoole import Frame, Mode, WebSocketServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for the harness
import harness

HOST = "127.0.0.1"
LOG_LEVEL_WARNING = 4  # Swoole's SWOOLE_LOG_WARNING: keep the hot path free of log output
BACKLOG = 4096
MODES = {"base": Mode.BASE, "process": Mode.PROCESS}


def echo(server: WebSocketServer, frame: Frame) -> None:
    server.push(frame.fd, frame.data)


def broadcast(server: WebSocketServer, frame: Frame) -> None:
    for fd in server.connections:
        server.push(fd, frame.data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1, help="worker_num (default 1)")
    parser.add_argument("--mode", choices=sorted(MODES), default="base")
    parser.add_argument("--reactors", type=int, help="reactor_num, PROCESS mode only (default: pyswoole's)")
    parser.add_argument("--broadcast", action="store_true", help="send every message to every connection")
    args = parser.parse_args()
    harness.raise_open_files_limit()
    settings: dict[str, Any] = {"worker_num": args.workers, "log_level": LOG_LEVEL_WARNING, "backlog": BACKLOG}
    if args.reactors is not None:
        if args.mode != "process":
            parser.error("--reactors is for --mode process (BASE workers are their own reactors)")
        settings["reactor_num"] = args.reactors

    server = WebSocketServer(HOST, args.port, MODES[args.mode])
    server.set(settings)
    server.on("Message", broadcast if args.broadcast else echo)
    server.start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
