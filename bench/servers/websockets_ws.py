"""Peer WebSocket server for ``ws_bench.py``: the ``websockets`` library's asyncio server, on uvloop.

Echo: every message goes back as it came. ``--broadcast``: every message goes to every open connection with
``websockets.asyncio.server.broadcast`` (the sender included), the library's own fan-out. Pings are off
(``ping_interval=None``) so the load generator sees only echoes; compression is off, as the generator offers
none anyway. The open-files limit is raised for thousands of clients. SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from contextlib import suppress
from pathlib import Path

import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for the harness
import harness

HOST = "127.0.0.1"
BACKLOG = 4096


async def run(port: int, fan_out: bool) -> None:
    async def echo(connection: ServerConnection) -> None:
        # The load generator drops its connections without a closing handshake at the end of a run.
        with suppress(ConnectionClosed):
            async for message in connection:
                await connection.send(message)

    async def broadcaster(connection: ServerConnection) -> None:
        with suppress(ConnectionClosed):
            async for message in connection:
                broadcast(connection.server.connections, message)

    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set_result, None)
    async with serve(
        broadcaster if fan_out else echo,
        HOST,
        port,
        ping_interval=None,
        compression=None,
        backlog=BACKLOG,
        reuse_address=True,
    ):
        await stop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--broadcast", action="store_true", help="send every message to every connection")
    args = parser.parse_args()
    harness.raise_open_files_limit()
    uvloop.run(run(args.port, args.broadcast))
    return 0


if __name__ == "__main__":
    sys.exit(main())
