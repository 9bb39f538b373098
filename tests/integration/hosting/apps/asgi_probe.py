"""A bare ASGI 3 application that exercises the protocol itself (no framework between it and the server).

Served with one worker, it remembers what it saw in ``EVENTS`` (by token) and answers ``GET /events?token=T``
with it as JSON, so a test can ask what happened inside the application. ``PROBE_LOG``, when set, names a file
that gets one line per lifespan event (``startup <pid>``, ``shutdown <pid>``); ``PROBE_STARTUP=fail`` makes the
startup fail, ``PROBE_STARTUP=raise`` makes it raise.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any
from urllib.parse import parse_qs

EVENTS: dict[str, list[Any]] = {}


def note(token: str, what: Any) -> None:
    EVENTS.setdefault(token, []).append(what)


def log_line(text: str) -> None:
    path = os.environ.get("PROBE_LOG")
    if path:
        with open(path, "a") as file:
            file.write(f"{text} {os.getpid()}\n")


async def app(scope, receive, send):
    kind = scope["type"]
    if kind == "lifespan":
        await lifespan(scope, receive, send)
    elif kind == "http":
        await http(scope, receive, send)
    elif kind == "websocket":
        await websocket(scope, receive, send)


async def lifespan(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            behaviour = os.environ.get("PROBE_STARTUP", "")
            if behaviour == "raise":
                raise RuntimeError("startup raised on purpose")
            if behaviour == "fail":
                await send({"type": "lifespan.startup.failed", "message": "failed on purpose"})
                return
            if behaviour == "return":  # an application that ignores the lifespan scope
                return
            if behaviour.startswith("slow:"):  # a startup that takes a while (a pool to open, a model to load)
                await asyncio.sleep(float(behaviour[5:]))
            scope["state"]["started_by"] = os.getpid()
            log_line("startup")
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            log_line("shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def answer(send, body: bytes | str, status: int = 200, content_type: bytes = b"application/json") -> None:
    if isinstance(body, str):
        body = body.encode()
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def jsonable_scope(scope) -> dict:
    server = scope["extensions"]["pyswoole"]["server"]
    return {
        "type": scope["type"],
        "asgi": scope["asgi"],
        "http_version": scope["http_version"],
        "method": scope.get("method"),
        "scheme": scope["scheme"],
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode("latin-1"),
        "query_string": scope["query_string"].decode("latin-1"),
        "root_path": scope["root_path"],
        "headers": [[name.decode("latin-1"), value.decode("latin-1")] for name, value in scope["headers"]],
        "client": list(scope["client"]) if scope["client"] else None,
        "server": list(scope["server"]) if scope["server"] else None,
        "state": scope["state"],
        "extensions": sorted(scope["extensions"]),
        "worker_id": server.worker_id,
        "pid": os.getpid(),
        "setting": {key: server.setting.get(key) for key in SETTINGS_SHOWN},
    }


SETTINGS_SHOWN = (
    "worker_num", "reactor_num", "task_worker_num", "max_request", "max_request_grace", "worker_timeout",
    "max_wait_time", "log_level", "log_file", "pid_file", "http_access_log", "package_max_length", "dispatch_mode",
    "ssl_verify_peer", "ssl_client_cert_file",
)  # fmt: skip


async def read_body(receive) -> tuple[bytes, list[int]]:
    """The whole body, and the size of each ``http.request`` piece it came in."""
    chunks, sizes = [], []
    while True:
        message = await receive()
        assert message["type"] == "http.request", message
        chunks.append(message["body"])
        sizes.append(len(message["body"]))
        if not message.get("more_body", False):
            return b"".join(chunks), sizes


async def http(scope, receive, send):
    path = scope["path"]
    query = {key: values[-1] for key, values in parse_qs(scope["query_string"].decode()).items()}
    token = query.get("token", "")
    if path == "/":
        await answer(send, b"probe", content_type=b"text/plain")
    elif path.endswith("/scope"):
        await answer(send, json.dumps(jsonable_scope(scope)))
    elif path == "/events":
        await answer(send, json.dumps(EVENTS.get(token, [])))
    elif path == "/body":
        body, sizes = await read_body(receive)
        await answer(send, json.dumps({"size": len(body), "pieces": sizes, "sum": sum(body) % 65536}))
    elif path == "/cancel":  # the application's own CancelledError (not the server cancelling it)
        raise asyncio.CancelledError()
    elif path == "/exit":
        raise SystemExit(3)
    elif path in ("/long", "/short"):  # a body that does not match the Content-Length given
        headers = [(b"content-length", b"3" if path == "/long" else b"10")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"abcdef" if path == "/long" else b"abc"})
    elif path == "/inject":  # a header value that would smuggle another header in
        headers = [(b"x-a", b"1\r\nSet-Cookie: evil=1")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"injected"})
    elif path == "/bare":  # a body without a Content-Length of the application's, under any status
        headers = [(b"content-type", b"text/plain")]
        await send({"type": "http.response.start", "status": int(query.get("code", "200")), "headers": headers})
        await send({"type": "http.response.body", "body": b"bare"})
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for i in range(int(query.get("n", "3"))):
            await send({"type": "http.response.body", "body": f"part {i}\n".encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/endless":  # an event stream that lets ClientDisconnected out when its client leaves
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for _ in range(6000):
            await send({"type": "http.response.body", "body": b"x" * 4096, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})
    elif path == "/flood":
        await flood(send, token, int(query["total"]), int(query.get("chunk", "65536")))
    elif path == "/wait-disconnect":
        await read_body(receive)
        message = await receive()  # nothing more comes from the client: this waits for it to leave
        note(token, message["type"])
        try:
            await answer(send, b"too late", content_type=b"text/plain")
        except OSError as exc:  # ASGI 2.4: send() on a closed connection raises an OSError
            note(token, f"send raised {type(exc).__name__}")
    elif path == "/after-response":
        await read_body(receive)
        await answer(send, b"done", content_type=b"text/plain")
        message = await asyncio.wait_for(receive(), 5)  # the response is complete: disconnect at once
        note(token, message["type"])
    elif path == "/raise-before":
        raise RuntimeError("raised before the response started, on purpose")
    elif path == "/raise-after":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("raised after the response started, on purpose")
    elif path == "/no-response":
        return
    elif path == "/half-response":
        await send({"type": "http.response.start", "status": 200, "headers": []})
    elif path == "/pathsend":
        size = os.stat(query["path"]).st_size
        headers = [(b"content-type", b"application/octet-stream"), (b"content-length", str(size).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.pathsend", "path": query["path"]})
    elif path == "/pathsend-unlink":  # FastAPI's FileResponse with a background task that deletes the file
        size = os.stat(query["path"]).st_size
        headers = [(b"content-type", b"application/octet-stream"), (b"content-length", str(size).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.pathsend", "path": query["path"]})
        os.unlink(query["path"])
    elif path == "/block":  # a synchronous call in an async def: the loop stands still, then the response
        if "mark" in query:
            open(query["mark"], "w").close()  # the test's cue: this worker is about to block
        time.sleep(float(query["seconds"]))
        await answer(send, b"blocked", content_type=b"text/plain")
    elif path == "/block-then-await":  # synchronous work, then an await (a query), then the response
        time.sleep(float(query["seconds"]))
        await asyncio.sleep(0)
        await answer(send, b"blocked", content_type=b"text/plain")
    elif path == "/then-block":  # the response, then work that blocks the loop (a background task that blocks)
        await answer(send, b"answered", content_type=b"text/plain")
        time.sleep(float(query["seconds"]))
    elif path == "/task":
        server = scope["extensions"]["pyswoole"]["server"]
        results = await server.task_co([query.get("data", "x")], 5)
        await answer(send, json.dumps(results))
    else:
        await answer(send, b"not found", 404, b"text/plain")


async def flood(send, token: str, total: int, chunk: int) -> None:
    """``total`` bytes in pieces of ``chunk``; ``EVENTS[token]`` holds the bytes handed to ``send`` so far."""
    EVENTS[token] = [0]
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(total).encode())]})  # fmt: skip
    piece = b"x" * chunk
    sent = 0
    while sent < total:
        size = min(chunk, total - sent)
        sent += size
        await send({"type": "http.response.body", "body": piece[:size], "more_body": sent < total})
        EVENTS[token][0] = sent


async def websocket(scope, receive, send):
    path = scope["path"]
    query = {key: values[-1] for key, values in parse_qs(scope["query_string"].decode()).items()}
    token = query.get("token", "")
    message = await receive()
    assert message["type"] == "websocket.connect", message
    if path == "/ws/echo":
        offered = scope["subprotocols"]
        await send({"type": "websocket.accept", "subprotocol": offered[0] if offered else None,
                    "headers": [(b"x-accepted", b"yes")]})  # fmt: skip
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                note(token, ["disconnect", message.get("code")])
                return
            text = message.get("text")
            if text is not None and text.startswith("close:"):
                await send({"type": "websocket.close", "code": int(text[6:]), "reason": "asked to"})
                continue
            if text == "scope":
                await send({"type": "websocket.send", "text": json.dumps(jsonable_scope(scope))})
            elif text is not None:
                await send({"type": "websocket.send", "text": "text:" + text})
            else:
                await send({"type": "websocket.send", "bytes": b"bytes:" + message["bytes"]})
    elif path == "/ws/hello":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "hello"})  # at once, before anything was received
        await send({"type": "websocket.send", "bytes": b"\x00\x01"})
        await send({"type": "websocket.close", "code": 1000})
    elif path == "/ws/deny":
        await send({"type": "websocket.http.response.start", "status": 401,
                    "headers": [(b"content-type", b"text/plain"), (b"x-denied", b"yes")]})  # fmt: skip
        await send({"type": "websocket.http.response.body", "body": b"not ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"allowed"})
    elif path == "/ws/deny-raise":  # fails between the denial's start and its body
        await send({"type": "websocket.http.response.start", "status": 401, "headers": []})
        raise RuntimeError("raised in the middle of a denial, on purpose")
    elif path == "/ws/close-first":  # refuses, then asks for the next message as if nothing happened
        await send({"type": "websocket.close", "code": 1000})
        note(token, (await receive())["type"])
    elif path == "/ws/reject":
        await send({"type": "websocket.close", "code": 1000})
    elif path == "/ws/raise":
        raise RuntimeError("raised before accepting, on purpose")
    else:
        await send({"type": "websocket.close"})
