"""The pyswoole chat demo (``make run``): a WebSocket chat on http://127.0.0.1:9501/.

The page (``public/index.html``) is served by the static handler, straight from the reactor threads; each
message a browser sends reaches a worker's Message callback, which pushes it to every chat member. Who is in the
chat lives in a shared-memory ``Table`` that every worker sees. In PROCESS mode the master holds every
connection, so any worker (or task worker) can push to any of them; reload the workers (``kill -USR1 <master
pid>``) and nobody is disconnected. Ctrl-C stops it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from pyswoole import Frame, Mode, Request, Table, WebSocketServer

PUBLIC = Path(__file__).resolve().parent / "public"

server = WebSocketServer(os.environ.get("HOST", "127.0.0.1"), int(os.environ.get("PORT", "9501")), Mode.PROCESS)
server.set(
    worker_num=int(os.environ.get("WORKERS", "2")),
    document_root=str(PUBLIC),
    enable_static_handler=True,
    http_index_files=["index.html"],
    websocket_compression=True,
    heartbeat_idle_time=600,
)


# The chat's members, by session id, seen by every worker (made before start: shared memory is made before fork).
members = Table(4096)
members.column("joined", Table.TYPE_INT)
members.create()


def broadcast(server: WebSocketServer, event: dict[str, object]) -> None:
    text = json.dumps(event)
    for fd, _ in members:
        server.push(int(fd), text)


@server.on("Start")
def on_start(server: WebSocketServer) -> None:
    print(f"pyswoole chat: open http://{server.host}:{server.port}/ in two browser windows", flush=True)


@server.on("Open")
def on_open(server: WebSocketServer, request: Request) -> None:
    members.set(str(request.fd), {"joined": int(time.time())})
    server.push(request.fd, json.dumps({"type": "welcome", "id": request.fd, "online": members.count()}))
    broadcast(server, {"type": "joined", "id": request.fd})


@server.on("Message")
def on_message(server: WebSocketServer, frame: Frame) -> None:
    try:
        message = json.loads(frame.data)
        event = {"type": "message", "id": frame.fd, "name": str(message["name"])[:32], "text": str(message["text"])}
    except (ValueError, KeyError, TypeError):
        server.disconnect(frame.fd, 1003, "send JSON: {name, text}")
        return
    broadcast(server, event)


@server.on("Close")
def on_close(server: WebSocketServer, fd: int, reactor_id: int) -> None:
    if members.delete(str(fd)):  # plain HTTP connections (the page itself) close too: they were never members
        broadcast(server, {"type": "left", "id": fd})


if __name__ == "__main__":
    server.start()
