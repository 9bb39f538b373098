"""Candidate HTTP server for ``http_bench.py``: pyswoole's HttpServer answering ``hello`` from Request.

Written against the contract (docs api-http.md), as Swoole's hello world: ``response.end("hello")`` and nothing
else, so the row measures the server's own HTTP path. ``--mode`` picks BASE or PROCESS, ``--reactors`` PROCESS
mode's reactor_num. ``server.start()`` blocks; SIGTERM stops the server with all its processes.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pyswoole import HttpServer, Mode, Request, Response

HOST = "127.0.0.1"
LOG_LEVEL_WARNING = 4  # Swoole's SWOOLE_LOG_WARNING: keep the hot path free of log output
MODES = {"base": Mode.BASE, "process": Mode.PROCESS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1, help="worker_num (default 1)")
    parser.add_argument("--mode", choices=sorted(MODES), default="base")
    parser.add_argument("--reactors", type=int, help="reactor_num, PROCESS mode only (default: pyswoole's)")
    args = parser.parse_args()
    settings: dict[str, Any] = {"worker_num": args.workers, "log_level": LOG_LEVEL_WARNING}
    if args.reactors is not None:
        if args.mode != "process":
            parser.error("--reactors is for --mode process (BASE workers are their own reactors)")
        settings["reactor_num"] = args.reactors

    server = HttpServer(HOST, args.port, MODES[args.mode])
    server.set(settings)

    @server.on("Request")
    def on_request(request: Request, response: Response) -> None:
        response.end("hello")

    server.start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
