"""An ASGI application that says which version of its code runs; the reload test rewrites ``VERSION``."""

from __future__ import annotations

import os

VERSION = "v1"


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = f"{VERSION} {os.getpid()}".encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
