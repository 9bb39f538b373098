"""Baseline echo server: a bare uvloop ``asyncio.Protocol``, one loop per process.

This is the yardstick the pyswoole rows are divided by, so it must stay the plainest
echo uvloop can do: ``data_received`` writes the bytes straight back, nothing else.

With ``--workers 1`` the process itself serves. With ``--workers N > 1`` the parent
binds and listens once, forks N children that each accept on that shared socket with
their own loop, and then only supervises (it never serves, so N processes serve, as
in pyswoole BASE mode). SIGTERM or SIGINT stops everything; a child that dies on its
own makes the parent stop the rest and exit 1, so the harness sees the failure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
import traceback

import uvloop

HOST = "127.0.0.1"
BACKLOG = 1024


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


def listen_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


def serve(sock: socket.socket) -> None:
    """Run one event loop accepting on ``sock`` until SIGTERM/SIGINT."""
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, loop.stop)
    server = loop.run_until_complete(loop.create_server(EchoProtocol, sock=sock, backlog=BACKLOG))
    try:
        loop.run_forever()
    finally:
        server.close()
        loop.close()


def fork_worker(sock: socket.socket) -> int:
    pid = os.fork()
    if pid:
        return pid
    # Child: drop the supervisor's handlers before anything else can run them.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    # Whatever happens, the child leaves through os._exit: unwinding would run the parent's code.
    try:
        serve(sock)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    os._exit(0)


def supervise(sock: socket.socket, workers: int) -> int:
    stopping = False
    children: set[int] = set()

    def stop_children(signum: int = signal.SIGTERM, _frame: object = None) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    # Installed before forking, so a SIGTERM that lands mid-startup still stops every child.
    signal.signal(signal.SIGTERM, stop_children)
    signal.signal(signal.SIGINT, stop_children)
    for _ in range(workers):
        if stopping:
            break
        children.add(fork_worker(sock))
    sock.close()

    status = 0
    while children:
        pid, wait_status = os.wait()  # retried after our handler on EINTR (PEP 475)
        children.discard(pid)
        if not stopping:
            code = os.waitstatus_to_exitcode(wait_status)
            print(f"uvloop_echo: worker {pid} exited unexpectedly ({code}); stopping", file=sys.stderr)
            status = 1
            stop_children()
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1, help="serving processes (default 1)")
    args = parser.parse_args()
    if args.workers < 1:
        parser.error("--workers must be >= 1")

    sock = listen_socket(args.port)
    if args.workers == 1:
        serve(sock)
        return 0
    return supervise(sock, args.workers)


if __name__ == "__main__":
    sys.exit(main())
