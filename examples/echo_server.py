"""The pyswoole demo: a TCP echo server on 127.0.0.1:9501 (``make run``).

Talk to it with ``nc 127.0.0.1 9501``: every line you type comes back. Ctrl-C stops it.
"""

import os

from pyswoole import Mode, Server

server = Server("127.0.0.1", int(os.environ.get("PORT", "9501")), Mode.BASE)
server.set(worker_num=int(os.environ.get("WORKERS", "2")), open_eof_split=True, package_eof="\n")


@server.on("start")
def on_start(server: Server) -> None:
    print(
        f"pyswoole echo server listening on {server.host}:{server.port}; "
        f"talk to it with: nc {server.host} {server.port}",
        flush=True,
    )


@server.on("receive")
def on_receive(server: Server, fd: int, reactor_id: int, data: bytes) -> None:
    server.send(fd, data)


if __name__ == "__main__":
    server.start()
