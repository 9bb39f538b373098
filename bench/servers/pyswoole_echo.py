"""Candidate echo server: the same echo as ``uvloop_echo.py``, on pyswoole.

Every byte received is sent straight back from the Receive callback. ``--mode``
selects BASE or PROCESS, so a PROCESS row in the bench is one more config line;
``--reactors`` sets PROCESS mode's reactor_num (pyswoole clamps it to worker_num).
``server.start()`` blocks; SIGTERM stops the server with all its processes.
"""

from __future__ import annotations

import argparse
import sys

from pyswoole import Mode, Server

HOST = "127.0.0.1"
LOG_LEVEL_WARNING = 4  # Swoole's SWOOLE_LOG_WARNING: keep the hot path free of log output
MODES = {"base": Mode.BASE, "process": Mode.PROCESS}


def echo(server: Server, fd: int, reactor_id: int, data: bytes) -> None:
    server.send(fd, data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1, help="worker_num (default 1)")
    parser.add_argument("--mode", choices=sorted(MODES), default="base")
    parser.add_argument("--reactors", type=int, help="reactor_num, PROCESS mode only (default: pyswoole's)")
    parser.add_argument(
        "--framed",
        type=int,
        metavar="SIZE",
        help="length framing: package_length_func cuts SIZE-byte packages (echoload's -s)",
    )
    parser.add_argument("--affinity", action="store_true", help="open_cpu_affinity (Swoole's CPU binding)")
    args = parser.parse_args()
    settings = {"worker_num": args.workers, "log_level": LOG_LEVEL_WARNING, "open_cpu_affinity": args.affinity}
    if args.framed:
        # echoload's messages carry no header, so the length comes from a length function: the framing
        # layer still buffers and cuts every read, and calls Python per package (its costliest kind).
        size = args.framed
        settings.update(open_length_check=True, package_length_func=lambda buffer: size)
    if args.reactors is not None:
        if args.mode != "process":
            parser.error("--reactors is for --mode process (BASE workers are their own reactors)")
        if not 1 <= args.reactors <= args.workers:
            # Caught here: pyswoole would clamp it with a warning and the row would measure something else.
            parser.error(f"--reactors must be 1..{args.workers} (reactor_num is clamped to worker_num)")
        settings["reactor_num"] = args.reactors

    server = Server(HOST, args.port, MODES[args.mode])
    server.set(settings)
    server.on("Receive", echo)
    server.start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
