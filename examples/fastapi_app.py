"""A FastAPI application served by pyswoole, using the server itself from its routes.

Serve it (from the repository's root; FastAPI comes with ``pip install fastapi``)::

    pyswoole serve fastapi_app:app --app-dir examples --workers 2 \\
        --task-workers 2 --task-handler fastapi_app:checksum_task

Then::

    curl localhost:8000/items/3?q=pen               # plain FastAPI: path and query parameters, JSON
    curl -X POST localhost:8000/checksums -H 'content-type: application/json' -d '{"texts": ["a", "b"]}'
    websocat ws://localhost:8000/ws                 # (or any WebSocket client) a chat: see what others send
    curl -X POST localhost:8000/broadcast -H 'content-type: application/json' -d '{"text": "hello, all"}'

What it shows: ``request.scope["extensions"]["pyswoole"]["server"]`` is the running server (pyswoole's ASGI
extension). ``/checksums`` hands CPU-bound work to the task workers with ``task_co`` and awaits the results, so
the event worker stays free for other requests. ``/broadcast`` and the chat push a message to every WebSocket
client of the server, whichever worker holds their connection: in PROCESS mode (``pyswoole serve``'s default)
``server.connections`` lists every session and ``server.push(fd, ...)`` reaches any of them.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from pydantic import BaseModel

from pyswoole import WebSocketServer

app = FastAPI(title="pyswoole example")


def pyswoole_server(scope: dict[str, Any]) -> WebSocketServer:
    """The server that runs this application (pyswoole's ASGI extension)."""
    server: WebSocketServer = scope["extensions"]["pyswoole"]["server"]
    return server


def push_to_all(server: WebSocketServer, text: str) -> int:
    """Push ``text`` to every WebSocket client of the server; how many got it."""
    return sum(server.push(fd, text) for fd in server.connections if server.is_established(fd))


@app.get("/")
def hello() -> dict[str, Any]:
    return {"hello": "from pyswoole", "worker_pid": os.getpid()}


@app.get("/items/{item_id}")
def read_item(item_id: int, q: str | None = None) -> dict[str, Any]:
    return {"item_id": item_id, "q": q}


class Texts(BaseModel):
    texts: list[str]


@app.post("/checksums")
async def checksums(body: Texts, request: Request) -> dict[str, Any]:
    """One task per text, run by the task workers; the results come back in order (None for a timeout)."""
    server = pyswoole_server(request.scope)
    results = await server.task_co(body.texts, timeout=5.0)
    return {"checksums": results, "worker_pid": os.getpid()}


def checksum_task(server: WebSocketServer, task_id: int, src_worker_id: int, text: str) -> dict[str, Any]:
    """The Task callback (``--task-handler fastapi_app:checksum_task``): runs in a task worker, blocking."""
    digest = text.encode()
    for _ in range(10_000):  # stands for real CPU-bound work
        digest = hashlib.sha256(digest).digest()
    return {"text": text, "sha256x10000": digest.hex(), "task_worker_pid": os.getpid()}


class Message(BaseModel):
    text: str


@app.post("/broadcast")
def broadcast(message: Message, request: Request) -> dict[str, int]:
    return {"delivered": push_to_all(pyswoole_server(request.scope), message.text)}


@app.websocket("/ws")
async def chat(websocket: WebSocket) -> None:
    """Each message a client sends is pushed to every client (the sender too)."""
    await websocket.accept()
    server = pyswoole_server(websocket.scope)
    try:
        while True:
            push_to_all(server, await websocket.receive_text())
    except WebSocketDisconnect:
        pass
