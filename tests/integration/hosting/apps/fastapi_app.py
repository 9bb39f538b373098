"""A FastAPI application as a user writes one: JSON in and out, path and query parameters, a file upload, a
streaming response, a background task and a WebSocket route. ``FRAMEWORK_LOG`` names the file the background
task writes to."""

from __future__ import annotations

import asyncio
import hashlib
import os

from fastapi import BackgroundTasks, FastAPI, File, Form, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

app = FastAPI()


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


@app.get("/")
def root() -> dict:
    return {"framework": "fastapi", "pid": os.getpid()}


@app.get("/items/{item_id}")
def read_item(item_id: int, q: str | None = None, limit: int = 10) -> dict:
    return {"item_id": item_id, "q": q, "limit": limit}


@app.post("/items")
def create_item(item: Item) -> dict:
    return {"created": item.model_dump(), "double": item.price * 2}


@app.post("/upload")
async def upload(file: UploadFile = File(...), note: str = Form(...)) -> dict:  # noqa: B008
    data = await file.read()
    return {
        "filename": file.filename,
        "content_type": file.content_type,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "note": note,
    }


@app.get("/stream")
async def stream(n: int = 5) -> StreamingResponse:
    async def numbers():
        for i in range(n):
            yield f"line {i}\n"
            await asyncio.sleep(0.01)

    return StreamingResponse(numbers(), media_type="text/plain")


def write_line(token: str) -> None:
    with open(os.environ["FRAMEWORK_LOG"], "a") as file:
        file.write(f"background {token}\n")


@app.post("/background")
def background(token: str, tasks: BackgroundTasks) -> dict:
    tasks.add_task(write_line, token)
    return {"queued": token}


@app.websocket("/ws")
async def websocket_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive_json()
            await websocket.send_json({"echo": message, "pid": os.getpid()})
    except WebSocketDisconnect:
        pass
