"""Per-request cost of the sans-IO HTTP path: parse, collect, Request, Response.end, with no socket.

Run it from the repository root::

    .venv/bin/python bench/http_sansio_micro.py              # every step, best of 7 rounds
    .venv/bin/python bench/http_sansio_micro.py --number 50000

It prints microseconds per request for each step and for the whole hello-world path: a wrk-like GET parsed
by ``RequestParser``, gathered by ``RequestCollector``, wrapped in a ``Request``, answered by a ``Response``
that sets Content-Type and ends with "Hello, World!". Read the figures as ratios between runs on one machine.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from pyswoole.http.options import HttpOptions
from pyswoole.http.parser import RequestCollector, RequestHead, RequestParser, pack_request, unpack_request
from pyswoole.http.request import Request
from pyswoole.http.response import Response

REQUEST = (
    b"GET /plaintext HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n"
    b"Connection: keep-alive\r\n\r\n"
)


class NullSink:
    def send(self, data: bytes) -> bool:
        return True

    def sendfile(self, path: str, offset: int, length: int) -> bool:
        return True

    def finish(self, keep_alive: bool) -> None:
        pass

    def fail(self, code: int) -> bool:
        return False


def steps() -> dict[str, Callable[[], object]]:
    sink = NullSink()
    options = HttpOptions()
    parser = RequestParser()
    collector = RequestCollector()
    ((head, body),) = RequestCollector().collect(RequestParser().feed(REQUEST))  # type: ignore[misc]
    assert isinstance(head, RequestHead)
    packed = pack_request(head, body)
    events = RequestParser().feed(REQUEST)

    def whole() -> None:
        for request_head, request_body in collector.collect(parser.feed(REQUEST)):  # type: ignore[misc]
            Request(request_head, request_body, 7, "127.0.0.1", 50000, 8080, 0.0, options)
            response = Response(sink, request_head, options)
            response.header("Content-Type", "text/plain")
            response.end("Hello, World!")

    def respond() -> None:
        response = Response(sink, head, options)
        response.header("Content-Type", "text/plain")
        response.end("Hello, World!")

    feeder = RequestParser()
    return {
        "parse (RequestParser.feed)": lambda: feeder.feed(REQUEST),
        "collect": lambda: collector.collect(events),
        "Request(...)": lambda: Request(head, body, 7, "127.0.0.1", 50000, 8080, 0.0, options),
        "Response: header + end": respond,
        "pack_request": lambda: pack_request(head, body),
        "unpack_request": lambda: unpack_request(packed),
        "whole: parse + collect + Request + Response.end": whole,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20_000, help="calls per round (default 20000)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds, the best one counts (default 7)")
    args = parser.parse_args(argv)
    for name, step in steps().items():
        best = min(timeit.repeat(step, number=args.number, repeat=args.rounds)) / args.number
        print(f"{name:<50} {best * 1e6:6.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
