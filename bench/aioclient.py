"""The asyncio HTTP/1.1 client pieces ``reload_bench.py`` and ``slow_clients_bench.py`` build their clients from.

Just enough HTTP for a hello app: a GET out, one response in (status line, headers, a ``Content-Length`` or
chunked body), and whether the server keeps the connection. Invariant: a response is only ever returned whole;
anything short of that (a reset, an early close, a malformed head) raises ``ResponseError`` or an ``OSError``,
so a caller counts it as a failed request and never as a success.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from harness import HOST

MAX_HEAD = 64 * 1024


class ResponseError(Exception):
    """The server's bytes were not one whole, well-formed response."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    keep_alive: bool  # False: the server said Connection: close (or spoke HTTP/1.0 without keep-alive)


def get_request(path: str, port: int) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()


async def read_response(
    reader: asyncio.StreamReader, read_body: Callable[[int], Awaitable[bytes]] | None = None
) -> Response:
    """One response from ``reader``; ``read_body(n)`` reads n body bytes (default ``readexactly``: whole)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise ConnectionResetError("closed before the response") from None
        raise ResponseError(f"closed inside the head: {exc.partial[:100]!r}") from None
    except asyncio.LimitOverrunError:
        raise ResponseError("head too large") from None
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
        raise ResponseError(f"bad status line {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    connection = headers.get("connection", "").lower()
    keep_alive = "close" not in connection and (version == "HTTP/1.1" or "keep-alive" in connection)
    read = read_body or reader.readexactly
    try:
        if "content-length" in headers:
            body = await read(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                body += await read(size)
                await reader.readexactly(2)
            await reader.readuntil(b"\r\n")  # no trailers from a hello app: the empty line
        else:
            raise ResponseError("no Content-Length and not chunked")
    except asyncio.IncompleteReadError:
        raise ResponseError("closed inside the body") from None
    return Response(int(rest[:3]), body, keep_alive)


async def open_connection(
    port: int, receive_buffer: int | None = None, limit: int = 2**16
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection to the server; ``receive_buffer`` shrinks the socket's receive buffer (SO_RCVBUF) before
    connecting, so that a client that reads slowly soon stops the server's sending (with a small ``limit``,
    asyncio stops reading from the socket as well)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (HOST, port))
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock, limit=limit)


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
