"""Fuzz the HTTP request parser and Request's accessors with random and mutated requests cut into random reads.

Run it from the repository root::

    .venv/bin/python bench/fuzz_http.py --count 100000          # 100,000 inputs
    .venv/bin/python bench/fuzz_http.py --count 1000 --seed 7   # another reproducible run

Each input starts from a corpus of valid requests (GET, url-encoded and multipart POSTs, chunked bodies with
extensions and trailers, pipelined requests, upgrades, HTTP/1.0, absolute-form targets), mostly mutated (bytes
flipped, inserted, deleted, duplicated, truncated; header lines repeated; numbers made huge; CR, LF, NUL and
percent signs spliced in), sometimes plain random bytes. A parser with random limits reads it whole and cut into
random reads (sometimes one byte each). The run fails on anything escaping ``feed()`` or an accessor, and on any
broken property:

* the events follow RequestHead, BodyData*, RequestEnd per request; at most one ParseError (400, 413, 431, 501,
  505) or Upgraded, last; a RequestEnd's body is its Content-Length, and no body passes max_body_size, no head
  max_header_size; the parser never holds more than its limits;
* the requests completed before any error are the same whatever the cut; without an error all events are;
* for each whole request: ``pack_request``/``unpack_request`` give it back; ``header``, ``server``, ``get``,
  ``post``, ``cookie`` and ``files`` answer without raising; ``cleanup()`` leaves no upload behind; a Response
  to it ends without raising (its Accept-Encoding read); the static handler, asked for its path, raises
  nothing and serves nothing from outside its document root.

Exit status 0 when every input passed; 1 at the first violation, printed with what replays it.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from pyswoole.http.options import HttpOptions
from pyswoole.http.parser import (
    MAX_CHUNK_LINE,
    BodyData,
    Event,
    ParseError,
    RequestCollector,
    RequestEnd,
    RequestHead,
    RequestParser,
    Upgraded,
    pack_request,
    unpack_request,
)
from pyswoole.http.request import Request
from pyswoole.http.response import Response
from pyswoole.http.static import StaticFiles
from pyswoole.log import logger

ERROR_STATUSES = {400, 413, 431, 501, 505}
BOUNDARY = b"fuzzBoundary1234"


class Violation(AssertionError):
    pass


class NullSink:
    def send(self, data: bytes) -> bool:
        return True

    def sendfile(self, path: str, offset: int, length: int) -> bool:
        return True

    def finish(self, keep_alive: bool) -> None:
        pass

    def fail(self, code: int) -> bool:
        return False


# ---- the corpus --------------------------------------------------------------------------------------------


def multipart_body() -> bytes:
    return (
        b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="title"\r\n\r\nhello world\r\n'
        b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="tags[]"\r\n\r\na\r\n'
        b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="tags[]"\r\n\r\nb\r\n'
        b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="up[x]"; filename="f.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\nfile body\r\nline two\r\n"
        b"--" + BOUNDARY + b"--\r\n"
    )


def with_length(head: bytes, body: bytes) -> bytes:
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


CORPUS = [
    b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"GET /search?q=caf%C3%A9&page=2&f[]=a&f[]=b&n[x][y]=1 HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n"
    b"Cookie: sid=abc%20def; theme=dark; sid=2\r\nUser-Agent: fuzz\r\n\r\n",
    with_length(
        b"POST /form HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-www-form-urlencoded\r\n", b"a=1&b=x+y&c[]=%21"
    ),
    with_length(
        b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Type: multipart/form-data; boundary=" + BOUNDARY + b"\r\n",
        multipart_body(),
    ),
    b"POST /chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\n\r\n4;ext=1\r\na=1&\r\n3\r\nb=2\r\n0\r\nTrailer: yes\r\n\r\n",
    b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n" + with_length(b"PUT /c HTTP/1.1\r\n", b"xyz"),
    b"GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x81\x85\x37\xfa\x21\x3d\x7f\x9f",
    b"GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /old2 HTTP/1.0\r\n\r\n",
    b"GET http://example.com:8080/abs?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
    with_length(b"POST /expect HTTP/1.1\r\nExpect: 100-continue\r\nContent-Type: text/plain\r\n", b"0123456789"),
    b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /sub/b.css HTTP/1.1\r\nRange: bytes=1-2\r\nIf-Modified-Since: Tue, 14 Nov 2023 22:13:20 GMT\r\n\r\n",
    b"GET /sub/%2e%2e/%2e%2e/secret.txt HTTP/1.1\r\nAccept-Encoding: gzip;q=0.5, deflate\r\n\r\n",
    b"HEAD /h HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
]
SPLICES = [
    b"\r\n",
    b"\n",
    b"\r",
    b"\x00",
    b"%",
    b"%2",
    b"%00",
    b"%ff",
    b"[",
    b"]",
    b"=",
    b"&",
    b";",
    b" ",
    b"\t",
    b"--",
    b"--" + BOUNDARY,
    b"/..",
    b"%2e",
    b"%252e",
    b"chunked",
    b"gzip, ",
    b"HTTP/2.0",
    b"Content-Length: ",
    b"Transfer-Encoding: chunked\r\n",
    b":",
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        where = rng.randint(0, len(out))
        match rng.randrange(9):
            case 0 if out:
                out[min(where, len(out) - 1)] ^= 1 << rng.randrange(8)
            case 1:
                out[where:where] = rng.randbytes(rng.randint(1, 8))
            case 2:
                del out[where : where + rng.randint(1, 16)]
            case 3:
                out[where:where] = out[where : where + rng.randint(1, 64)]
            case 4:
                del out[where:]
            case 5:  # a header line repeated
                start = out.rfind(b"\r\n", 0, where)
                stop = out.find(b"\r\n", where)
                if 0 <= start < stop:
                    out[stop:stop] = out[start:stop]
            case 6:  # a number made huge (or negative)
                digits = [i for i, byte in enumerate(out) if 48 <= byte <= 57]
                if digits:
                    at = rng.choice(digits)
                    out[at : at + 1] = rng.choice([b"9" * rng.randint(5, 40), b"-1", b"ffffffffffffffff", b"0"])
            case 7:
                out[where:where] = rng.choice(SPLICES)
            case _:
                out[where : where + 1] = out[where : where + 1].swapcase()
    return bytes(out)


def make_input(rng: random.Random) -> tuple[dict[str, Any], bytes]:
    params = {
        "max_header_size": rng.choice([65536, 65536, rng.randint(16, 400)]),
        "max_body_size": rng.choice([2 * 1024 * 1024, rng.randint(0, 300)]),
        "allow_upgrade": rng.random() < 0.5,
    }
    roll = rng.random()
    if roll < 0.1:
        stream = rng.randbytes(rng.randint(0, 300))
    else:
        stream = b"".join(rng.choice(CORPUS) for _ in range(rng.randint(1, 3)))
        if roll < 0.85:
            stream = mutate(rng, stream)
    return params, stream


def cut_points(rng: random.Random, size: int) -> list[int]:
    if size and rng.random() < 0.05:
        return list(range(1, size))  # one byte per read
    return sorted(rng.randint(0, size) for _ in range(rng.randint(0, 8)))


# ---- the properties ----------------------------------------------------------------------------------------


def feed(params: dict[str, Any], stream: bytes, cuts: list[int]) -> list[Event]:
    parser = RequestParser(**params)
    limit = max(params["max_header_size"], MAX_CHUNK_LINE) + 4
    events: list[Event] = []
    bounds = [0, *cuts, len(stream)]
    for start, stop in zip(bounds, bounds[1:], strict=False):
        if events and isinstance(events[-1], Upgraded):
            # The glue hands what follows an upgrade to the next protocol: the parser takes none of it.
            if parser.feed(stream[start:stop]):
                raise Violation("the parser took bytes after Upgraded")
            events[-1] = Upgraded(events[-1].rest + stream[start:stop])
            continue
        events += parser.feed(stream[start:stop])
        if len(parser._buffer) > limit:  # the property is about the parser's own buffer: read it
            raise Violation(f"the parser holds {len(parser._buffer)} bytes, over its limits")
    return events


def check_sequence(params: dict[str, Any], events: list[Event]) -> None:
    head: RequestHead | None = None
    body = 0
    for index, event in enumerate(events):
        if isinstance(event, (ParseError, Upgraded)):
            if index != len(events) - 1:
                raise Violation(f"{event!r} is not the last event")
            if isinstance(event, ParseError) and event.status not in ERROR_STATUSES:
                raise Violation(f"unexpected error status {event.status}")
            if isinstance(event, Upgraded) and not (
                head is None and index and isinstance(events[index - 1], RequestEnd)
            ):
                raise Violation("Upgraded does not follow a RequestEnd")
        elif isinstance(event, RequestHead):
            if head is not None:
                raise Violation("a RequestHead inside a request")
            if len(event.raw) > params["max_header_size"]:
                raise Violation("a header section over max_header_size")
            head, body = event, 0
        elif isinstance(event, BodyData):
            if head is None:
                raise Violation("BodyData outside a request")
            body += len(event.data)
            if body > params["max_body_size"]:
                raise Violation("a body over max_body_size")
        else:
            if head is None:
                raise Violation("RequestEnd outside a request")
            if head.content_length is not None and not head.chunked and body != head.content_length:
                raise Violation(f"a body of {body} bytes for Content-Length {head.content_length}")
            head = None


def completed(events: list[Event]) -> list[tuple[RequestHead, bytes]]:
    return [item for item in RequestCollector().collect(events) if isinstance(item, tuple)]


def normalized(events: list[Event]) -> list[Event]:
    merged: list[Event] = []
    for event in events:
        if isinstance(event, BodyData) and merged and isinstance(merged[-1], BodyData):
            merged[-1] = BodyData(merged[-1].data + event.data)
        elif not (isinstance(event, BodyData) and not event.data):
            merged.append(event)
    return merged


def check_requests(requests: list[tuple[RequestHead, bytes]], options: HttpOptions, static: StaticFiles) -> int:
    """Run the per-request properties; how many requests the static handler answered."""
    served = 0
    for head, body in requests:
        if unpack_request(pack_request(head, body)) != (head, body):
            raise Violation("pack_request then unpack_request changed the request")
        request = Request(head, body, 1, "127.0.0.1", 40000, 9501, time.time(), options)
        for accessor in ("header", "server", "get", "post", "cookie", "files"):
            getattr(request, accessor)
        request.get_content()
        request.get_data()
        request.cleanup()
        Response(NullSink(), head, options).end("answer " * 10)
        reply = static.serve(head.method, head.path, head.headers, head.keep_alive)
        served += reply is not None
        if reply is not None and reply.file is not None and not reply.file.path.startswith(static_root(static)):
            raise Violation(f"the static handler serves {reply.file.path}, outside its root")
    left = os.listdir(options.upload_tmp_dir)
    if left:
        raise Violation(f"uploads left behind: {left}")
    return served


def static_root(static: StaticFiles) -> str:
    return os.fsdecode(static.root) + "/"


def check(
    params: dict[str, Any], stream: bytes, cuts: list[int], options: HttpOptions, static: StaticFiles
) -> tuple[str, int, int]:
    """Run every property on one input: its outcome ("ok", "upgraded" or the error status), its whole requests,
    those the static handler answered."""
    whole = feed(params, stream, [])
    pieces = feed(params, stream, cuts)
    check_sequence(params, whole)
    check_sequence(params, pieces)
    if completed(whole) != completed(pieces):
        raise Violation("the requests completed differ with the cut")
    last = whole[-1] if whole else None
    if not isinstance(last, ParseError) and normalized(whole) != normalized(pieces):
        raise Violation("the events differ with the cut")
    requests = completed(whole)
    served = check_requests(requests, options, static)
    if isinstance(last, ParseError):
        return str(last.status), len(requests), served
    return "upgraded" if isinstance(last, Upgraded) else "ok", len(requests), served


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="inputs (default 100000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    args = parser.parse_args(argv)

    logger.setLevel(logging.ERROR)  # malformed multipart bodies are logged, by design: not news here
    rng = random.Random(args.seed)
    outcomes: dict[str, int] = {}
    requests = served = 0
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fuzz_http.") as work:
        uploads, root = Path(work, "uploads"), Path(work, "root")
        (root / "sub").mkdir(parents=True)
        uploads.mkdir()
        for name in ("index.html", "a.txt", "sub/b.css"):
            (root / name).write_text(name)
        Path(work, "secret.txt").write_text("secret")
        options = HttpOptions(upload_tmp_dir=str(uploads))
        static = StaticFiles(str(root), index_files=["index.html"], autoindex=True)
        for index in range(args.count):
            params, stream = make_input(rng)
            cuts = cut_points(rng, len(stream))
            try:
                outcome, whole_requests, static_replies = check(params, stream, cuts, options, static)
            except Exception as failure:
                print(f"FAILED input {index} (seed {args.seed}): {failure!r}")
                print(f"  params={params!r}\n  stream={stream!r}\n  cuts={cuts!r}")
                return 1
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            requests += whole_requests
            served += static_replies
    elapsed = time.perf_counter() - began
    print(
        f"{args.count} inputs ({requests} whole requests, {served} answered by the static handler) passed in "
        f"{elapsed:.1f} s "
        f"({args.count / elapsed:,.0f} inputs/s, seed {args.seed})"
    )
    print("  outcomes: " + "  ".join(f"{outcome}: {count}" for outcome, count in sorted(outcomes.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
