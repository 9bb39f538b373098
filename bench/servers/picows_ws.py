"""Peer WebSocket server for ``ws_bench.py``: a picows echo, the fastest asyncio WebSocket library, on uvloop.

Every message frame goes straight back from ``on_ws_frame`` with its own type and payload (the load generator
sends only whole, unfragmented text frames). picows answers pings and closes by itself; it pings nobody. The
open-files limit is raised for thousands of clients. SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for the harness
import harness

HOST = "127.0.0.1"
BACKLOG = 4096


class EchoListener(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
            transport.send(frame.msg_type, frame.get_payload_as_memoryview())
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()


def listener_factory(request: WSUpgradeRequest) -> EchoListener:
    return EchoListener()


async def run(port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set_result, None)
    server = await ws_create_server(listener_factory, HOST, port, backlog=BACKLOG, reuse_address=True)
    async with server:
        await stop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    harness.raise_open_files_limit()
    uvloop.run(run(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
