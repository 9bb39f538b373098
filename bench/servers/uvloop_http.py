"""Baseline HTTP server for ``http_bench.py``: the ceiling of what Python plus uvloop can answer.

An ``asyncio.Protocol`` on one uvloop loop answers fixed bytes to every request, keep-alive, with no parsing
beyond finding where each request ends. Invariant: requests are cut correctly whatever the reads look like,
because the end of a request (``CRLFCRLF``; the load sends no bodies) is searched in what was kept of the last
read plus the new one, so a terminator split across two reads is still found once. SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import uvloop

HOST = "127.0.0.1"
BACKLOG = 1024
END_OF_HEADERS = b"\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello"


class HelloProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.pending = b""  # the start of a request whose end has not arrived yet

    def data_received(self, data: bytes) -> None:
        buffer = self.pending + data if self.pending else data
        complete = buffer.count(END_OF_HEADERS)
        if complete:
            # Pipelined requests get their responses in one write, in order.
            self.transport.write(RESPONSE * complete)
            self.pending = buffer[buffer.rindex(END_OF_HEADERS) + len(END_OF_HEADERS) :]
        else:
            self.pending = buffer


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set_result, None)
    server = await loop.create_server(HelloProtocol, HOST, port, backlog=BACKLOG, reuse_address=True)
    async with server:
        await stop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvloop.run(serve(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
