"""Peer WebSocket app for ``ws_bench.py``: a Starlette WebSocket echo, served by uvicorn (``app``).

Each text message goes back with ``send_text``; the connection ends when the client goes away. Imported as
``bench.servers.starlette_ws:app`` with the repository on ``PYTHONPATH``.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass


app = Starlette(routes=[WebSocketRoute("/", echo)])
