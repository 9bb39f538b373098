"""The applications the hosting benches serve: the same plain-text hello behind every interface.

``asgi_app`` (ASGI 3), ``wsgi_app`` (PEP 3333) and ``rsgi_app`` (granian's RSGI) answer ``200 hello`` with a
``text/plain`` body and a ``Content-Length``, so every server sends the same bytes and the benches compare only
the servers. Each also answers ``GET /?size=N`` with N bytes (``slow_clients_bench.py``'s slow readers need a
body larger than the socket buffers). Imported as ``bench.servers.apps`` with the repository on ``PYTHONPATH``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

HELLO = b"hello"
MAX_SIZE = 16 * 1024 * 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


def body_for(query: bytes) -> bytes:
    """``hello``, or as many bytes as ``size=N`` asks (up to MAX_SIZE)."""
    for pair in query.split(b"&"):
        key, _, value = pair.partition(b"=")
        if key == b"size" and value.isdigit():
            return b"x" * min(int(value), MAX_SIZE)
    return HELLO


async def asgi_app(
    scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = body_for(scope.get("query_string", b"")) if scope.get("query_string") else HELLO
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    query = environ.get("QUERY_STRING", "")
    body = body_for(query.encode("latin-1")) if query else HELLO
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


async def rsgi_app(scope: Any, protocol: Any) -> None:
    """granian's RSGI: ``response_bytes`` answers in one call (RSGI has no lifespan scope to handle)."""
    body = body_for(scope.query_string.encode("latin-1")) if scope.query_string else HELLO
    protocol.response_bytes(200, [("content-type", "text/plain"), ("content-length", str(len(body)))], body)
