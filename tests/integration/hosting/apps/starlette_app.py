"""A Starlette application: lifespan state, path parameters, a form, a streaming response, a file response
(which Starlette sends with ``http.response.pathsend`` when the server offers it) and a WebSocket route."""

from __future__ import annotations

import contextlib
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


@contextlib.asynccontextmanager
async def lifespan(app):
    yield {"greeting": "hello from the lifespan", "started_by": os.getpid()}


async def home(request: Request) -> JSONResponse:
    return JSONResponse({
        "greeting": request.state.greeting,
        "started_by": request.state.started_by,
        "pid": os.getpid(),
        "pathsend": "http.response.pathsend" in request.scope.get("extensions", {}),
    })  # fmt: skip


async def user(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"user {request.path_params['name']} page {request.query_params.get('page', '1')}")


async def form(request: Request) -> JSONResponse:
    async with request.form() as data:
        return JSONResponse({key: str(value) for key, value in data.items()})


async def stream(request: Request) -> StreamingResponse:
    async def parts():
        for i in range(3):
            yield f"part {i}\n".encode()

    return StreamingResponse(parts(), media_type="text/plain")


async def file(request: Request) -> FileResponse:
    return FileResponse(request.query_params["path"])


async def echo(websocket: WebSocket) -> None:
    await websocket.accept(subprotocol="echo" if "echo" in websocket.scope["subprotocols"] else None)
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await websocket.send_text(message["text"].upper())
            else:
                await websocket.send_bytes(message["bytes"][::-1])
    except WebSocketDisconnect:
        pass


app = Starlette(
    routes=[
        Route("/", home),
        Route("/users/{name}", user),
        Route("/form", form, methods=["POST"]),
        Route("/stream", stream),
        Route("/file", file),
        WebSocketRoute("/ws", echo),
    ],
    lifespan=lifespan,
)
