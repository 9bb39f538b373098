"""A bare WSGI (PEP 3333) application that exercises the interface itself (no framework in between).

``PROBE_LOG``, when set, names a file that gets one line per event the test cannot see on the wire:
``closed <token>`` when a result's ``close()`` ran (``/stream``, ``/raise-after``, ``/endless``),
``begin|end <token> <monotonic time>`` around ``/sleep``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from urllib.parse import parse_qs


def log_line(text: str) -> None:
    path = os.environ.get("PROBE_LOG")
    if path:
        with open(path, "a") as file:
            file.write(text + "\n")


class Closing:
    """A result whose ``close()`` the server must call, whatever happened while it was iterated."""

    def __init__(self, token: str, parts: list[bytes], fail_after: int | None = None) -> None:
        self.token = token
        self.parts = parts
        self.fail_after = fail_after

    def __iter__(self):
        for index, part in enumerate(self.parts):
            if index == self.fail_after:
                raise RuntimeError("raised while iterating, on purpose")
            yield part

    def close(self) -> None:
        log_line(f"closed {self.token}")


class Endless:
    """A stream that goes on until the server stops iterating it (or a minute has passed)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __iter__(self):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            yield b"x" * 4096
            time.sleep(0.01)

    def close(self) -> None:
        log_line(f"closed {self.token}")


def jsonable_environ(environ) -> dict:
    shown = {key: value for key, value in environ.items() if isinstance(value, str)}
    for key in ("wsgi.version", "wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once", "wsgi.input_terminated"):
        shown[key] = environ.get(key)
    shown["wsgi.input"] = hasattr(environ["wsgi.input"], "read")
    shown["wsgi.errors"] = hasattr(environ["wsgi.errors"], "write")
    return shown


def app(environ, start_response):
    path = environ["PATH_INFO"]
    query = {key: values[-1] for key, values in parse_qs(environ["QUERY_STRING"]).items()}
    token = query.get("token", "")
    if path == "/":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"probe"]
    if path.endswith("/environ"):
        body = json.dumps(jsonable_environ(environ)).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/body":
        stream = environ["wsgi.input"]
        first_line = stream.readline()
        rest = stream.read(10)
        rest += stream.read()
        body = json.dumps({"first_line": len(first_line), "total": len(first_line) + len(rest)}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        write(b"then ")
        return [b"returned"]
    if path == "/held":  # a stream whose second piece waits for the client to have the first
        marker = os.path.join(tempfile.gettempdir(), f"pyswoole-held-{token}")

        def pieces():
            yield b"first\n"
            deadline = time.monotonic() + 5
            while not os.path.exists(marker) and time.monotonic() < deadline:
                time.sleep(0.01)
            yield b"released\n" if os.path.exists(marker) else b"timed out\n"

        start_response("200 OK", [("Content-Type", "text/plain")])
        return pieces()
    if path in ("/long", "/short"):  # a body that does not match the Content-Length given
        start_response("200 OK", [("Content-Length", "3" if path == "/long" else "10")])
        return [b"abcdef" if path == "/long" else b"abc"]
    if path == "/no-content":  # a body under a status that has none
        start_response("204 No Content", [])
        return [b"should not be sent"]
    if path == "/inject":  # a header value that would smuggle another header in
        start_response("200 OK", [("X-A", "1\r\nSet-Cookie: evil=1")])
        return [b"injected"]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closing(token, [b"one\n", b"two\n", b"three\n"])
    if path == "/endless":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Endless(token)
    if path == "/raise-before":
        raise RuntimeError("raised before start_response, on purpose")
    if path == "/raise-after":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closing(token, [b"first\n", b"second\n", b"third\n"], fail_after=2)
    if path == "/exc-info":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("changed its mind")
        except ValueError:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"sorry"]
    if path == "/errors":
        environ["wsgi.errors"].write("a line for wsgi.errors\n")
        start_response("204 No Content", [])
        return []
    if path == "/sleep":
        log_line(f"begin {token} {time.monotonic()}")
        time.sleep(float(query.get("s", "0.2")))
        log_line(f"end {token} {time.monotonic()}")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"slept"]
    if path == "/asyncio-run":

        async def compute() -> bytes:
            await asyncio.sleep(0.001)
            return b"ran its own loop"

        body = asyncio.run(compute())  # as under a synchronous server: no loop runs in this thread
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    if path == "/size":
        body = b"x" * int(query["n"])
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found"]
