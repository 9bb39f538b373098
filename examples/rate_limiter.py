"""A rate-limited line server on 127.0.0.1:9502: two workers share one limit per client address.

Each line a client sends is answered by whichever of the two worker processes owns its connection, yet a client
gets LIMIT lines per WINDOW seconds in all, counted in a ``Table`` that both workers share; an ``Atomic`` counts
the lines served by the whole server.

    python examples/rate_limiter.py
    nc 127.0.0.1 9502               # type lines: the 6th within 10 s is refused
    nc -s 127.0.0.2 127.0.0.1 9502  # another client address, with its own budget

Ctrl-C stops it. How it works: a client's count for the current window is one row, keyed by its address and the
window's number, and ``Table.incr`` bumps it atomically in whichever process runs it, so the count is exact however
the client's connections are spread over the workers. The first request of a window deletes the row of the
window before, so the table holds about one row per active client.
"""

import os
import time

from pyswoole import Atomic, Mode, Server, Table

LIMIT = 5  # lines per client and window
WINDOW = 10  # seconds

# Made before start(): the workers are forked from this process and share the memory.
counts = Table(4096)  # rows: one per client address and window
counts.column("lines", Table.TYPE_INT)
counts.create()
served = Atomic()

server = Server("127.0.0.1", int(os.environ.get("PORT", "9502")), Mode.BASE)
server.set(worker_num=2, open_eof_split=True, package_eof="\n")


@server.on("start")
def on_start(server: Server) -> None:
    print(
        f"rate limiter on {server.host}:{server.port}: {LIMIT} lines per {WINDOW} s per client address; "
        f"talk to it with: nc {server.host} {server.port}",
        flush=True,
    )


@server.on("receive")
def on_receive(server: Server, fd: int, reactor_id: int, data: bytes) -> None:
    client = server.get_client_info(fd)["remote_ip"]
    window = int(time.time()) // WINDOW
    lines = counts.incr(f"{client}:{window}", "lines")
    if lines is False:  # the table is full: fail open rather than refuse everyone
        lines = 0
    elif lines == 1:
        counts.delete(f"{client}:{window - 1}")
    if lines > LIMIT:
        retry = WINDOW - int(time.time()) % WINDOW
        server.send(fd, f"slow down: {LIMIT} lines per {WINDOW} s (retry in {retry} s)\n")
        return
    total = served.add()
    server.send(
        fd,
        f"ok {lines}/{LIMIT} from worker {server.worker_id} (pid {os.getpid()}), "
        f"{total} served in all: {data.decode(errors='replace').strip()}\n",
    )


if __name__ == "__main__":
    server.start()
