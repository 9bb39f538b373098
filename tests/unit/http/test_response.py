"""Response: Swoole's response calls in, bytes and completion through a sink out."""

from __future__ import annotations

import gzip
import logging
import re
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyswoole.constants import ErrorCode
from pyswoole.http.headers import CONTINUE_RESPONSE, REASONS, cookie_date, error_response, format_header_name
from pyswoole.http.options import HttpOptions
from pyswoole.http.parser import RequestHead, RequestParser
from pyswoole.http.response import Response
from pyswoole.log import logger

DATE = re.compile(rb"Date: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT\r\n")


class RecordingSink:
    def __init__(self, accept: bool = True) -> None:
        self.accept = accept
        self.sent: list[bytes] = []
        self.files: list[tuple[str, int, int]] = []
        self.finished: list[bool] = []
        self.errors: list[int] = []

    def send(self, data: bytes) -> bool:
        self.sent.append(data)
        return self.accept

    def sendfile(self, path: str, offset: int, length: int) -> bool:
        self.files.append((path, offset, length))
        return self.accept

    def finish(self, keep_alive: bool) -> None:
        self.finished.append(keep_alive)

    def fail(self, code: int) -> bool:
        self.errors.append(code)
        return False


def head_of(request: bytes) -> RequestHead:
    head = RequestParser().feed(request)[0]
    assert isinstance(head, RequestHead)
    return head


GET = head_of(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")


def respond(request: RequestHead | None = GET, **options: object) -> tuple[Response, RecordingSink]:
    sink = RecordingSink()
    return Response(sink, request, HttpOptions(**options)), sink  # type: ignore[arg-type]


def split(message: bytes) -> tuple[list[bytes], bytes]:
    """The head's lines (status line first, Date normalized) and the body."""
    head, _, body = message.partition(b"\r\n\r\n")
    return DATE.sub(b"Date: <date>\r\n", head + b"\r\n").split(b"\r\n")[:-1], body


@pytest.fixture
def pyswoole_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    propagate = logger.propagate
    logger.propagate = True
    caplog.set_level(logging.WARNING, logger="pyswoole")
    try:
        yield caplog
    finally:
        logger.propagate = propagate


# ---- end -------------------------------------------------------------------------------------------------


def test_end_sends_status_headers_and_body_in_one_send_then_finishes() -> None:
    response, sink = respond()

    assert response.end("héllo") is True

    (message,) = sink.sent
    lines, body = split(message)
    assert lines == [
        b"HTTP/1.1 200 OK",
        b"Server: pyswoole",
        b"Date: <date>",
        b"Content-Type: text/html",
        b"Connection: keep-alive",
        b"Content-Length: 6",
    ]
    assert body == "héllo".encode()
    assert sink.finished == [True]
    assert response.ended and response.headers_sent and not response.is_writable()


def test_the_application_headers_come_first_and_replace_the_defaults() -> None:
    response, sink = respond()
    response.header("content-type", "text/plain; charset=utf-8")
    response.header("X-Request-Id", 42)
    response.header("server", "mine")

    response.end(b"ok")

    lines, _ = split(sink.sent[0])
    assert lines == [
        b"HTTP/1.1 200 OK",
        b"Content-Type: text/plain; charset=utf-8",
        b"X-Request-Id: 42",
        b"Server: mine",
        b"Date: <date>",
        b"Connection: keep-alive",
        b"Content-Length: 2",
    ]


def test_header_with_format_false_keeps_the_name_and_a_name_again_replaces_it() -> None:
    response, sink = respond()
    response.header("x-lower", "1", format=False)
    response.header("X-LOWER", "2", format=False)
    response.header("x-multi", ["a", "b"])
    response.header("x-gone", "soon")
    response.header("X-Gone", None)

    response.end()

    lines, _ = split(sink.sent[0])
    assert b"X-LOWER: 2" in lines and b"x-lower: 1" not in lines
    assert lines.count(b"X-Multi: a") == 1 and lines.count(b"X-Multi: b") == 1
    assert not any(line.lower().startswith(b"x-gone") for line in lines)


def test_content_length_and_transfer_encoding_set_by_the_application_are_ignored() -> None:
    response, sink = respond()
    response.header("Content-Length", "999")
    response.header("Transfer-Encoding", "chunked")

    response.end(b"abc")

    lines, body = split(sink.sent[0])
    assert b"Content-Length: 3" in lines and b"Content-Length: 999" not in lines
    assert not any(line.startswith(b"Transfer-Encoding") for line in lines)
    assert body == b"abc"


@pytest.mark.parametrize(
    ("key", "value"),
    [("X-Bad", "a\r\nInjected: 1"), ("X-Bad", "a\nb"), ("Bad Name", "v"), ("Bad:Name", "v"), ("", "v"), ("É", "v")],
)
def test_a_header_that_would_break_the_head_is_refused(key: str, value: str) -> None:
    response, sink = respond()

    assert response.header(key, value) is False

    assert sink.errors == [ErrorCode.INVALID_PARAMS]
    response.end()
    assert b"Injected" not in sink.sent[0]


def test_format_header_name_capitalizes_each_dash_separated_word() -> None:
    assert format_header_name("content-TYPE") == "Content-Type"
    assert format_header_name("x-b3-traceid") == "X-B3-Traceid"


def test_status_sets_a_known_reason_or_needs_one() -> None:
    response, sink = respond()

    assert response.status(299) is False
    assert response.status(404) is True
    assert response.status(599, "Custom Reason") is True
    response.end()

    assert sink.sent[0].startswith(b"HTTP/1.1 599 Custom Reason\r\n")
    assert sink.errors == [ErrorCode.INVALID_PARAMS]
    assert response.status_code == 599


@pytest.mark.parametrize("code", [204, 304, 101 + 1])
def test_no_body_statuses_send_neither_body_nor_content_length(code: int) -> None:
    response, sink = respond()
    response.status(code)

    response.end("ignored")

    lines, body = split(sink.sent[0])
    assert body == b""
    assert not any(line.startswith(b"Content-Length") for line in lines)


def test_a_switching_protocols_response_sends_only_its_own_headers() -> None:
    response, sink = respond()
    response.status(101)
    response.header("Upgrade", "websocket")
    response.header("Connection", "Upgrade")
    response.header("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")

    response.end()

    lines, body = split(sink.sent[0])
    assert lines == [
        b"HTTP/1.1 101 Switching Protocols",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-Websocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
        b"Server: pyswoole",
        b"Date: <date>",
    ]
    assert body == b""
    assert sink.finished == [True]


def test_a_head_request_gets_the_headers_with_the_length_a_get_would_have() -> None:
    response, sink = respond(head_of(b"HEAD / HTTP/1.1\r\n\r\n"))

    response.end("four")

    lines, body = split(sink.sent[0])
    assert b"Content-Length: 4" in lines
    assert body == b""


def test_a_head_request_ended_empty_keeps_the_content_length_the_application_set() -> None:
    response, sink = respond(head_of(b"HEAD / HTTP/1.1\r\n\r\n"))
    response.header("Content-Length", "1234")

    response.end()

    assert b"Content-Length: 1234" in split(sink.sent[0])[0]


@pytest.mark.parametrize(
    ("request_bytes", "header", "keep_alive"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", None, True),
        (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", None, False),
        (b"GET / HTTP/1.1\r\n\r\n", "close", False),
        (b"GET / HTTP/1.0\r\n\r\n", None, False),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", None, True),
    ],
)
def test_connection_close_from_either_side_ends_the_connection(
    request_bytes: bytes, header: str | None, keep_alive: bool
) -> None:
    response, sink = respond(head_of(request_bytes))
    if header:
        response.header("Connection", header)

    response.end()

    expected = b"Connection: keep-alive" if keep_alive else b"Connection: close"
    assert expected in split(sink.sent[0])[0]
    assert sink.finished == [keep_alive]
    assert response.keep_alive is keep_alive


def test_a_response_without_a_request_answers_as_to_an_http11_get() -> None:
    response, sink = respond(None)

    response.end("x")

    assert b"Connection: keep-alive" in sink.sent[0]
    assert sink.finished == [True]


def test_a_failed_send_returns_false_and_does_not_finish() -> None:
    sink = RecordingSink(accept=False)
    response = Response(sink, GET)

    assert response.end("x") is False
    assert sink.finished == []
    assert response.ended


# ---- refusals --------------------------------------------------------------------------------------------


def test_anything_after_end_is_refused_with_one_warning_each(pyswoole_log: pytest.LogCaptureFixture) -> None:
    response, sink = respond()
    response.end()

    results = [
        response.end(),
        response.write("x"),
        response.header("X", "1"),
        response.status(200),
        response.cookie("a", "b"),
        response.sendfile(__file__),
        response.redirect("/"),
        response.detach(),
    ]

    assert results == [False] * 8
    assert sink.errors == [ErrorCode.HTTP_CONTEXT_UNAVAILABLE] * 8
    assert len(pyswoole_log.records) == 8
    assert len(sink.sent) == 1


# ---- cookies ---------------------------------------------------------------------------------------------


def test_cookie_is_spelled_as_swoole_does_with_the_value_percent_encoded() -> None:
    response, sink = respond()
    expires = 2000000000

    response.cookie("session", "a b;c", expires, "/app", "example.com", True, True, "Lax", "High")
    response.cookie("plain", "1")
    response.end()

    lines, _ = split(sink.sent[0])
    cookies = [line for line in lines if line.startswith(b"Set-Cookie")]
    assert cookies[0].startswith(b"Set-Cookie: session=a+b%3Bc; expires=Wed, 18-May-2033 03:33:20 GMT; Max-Age=")
    assert cookies[0].endswith(b"; path=/app; domain=example.com; secure; HttpOnly; SameSite=Lax; Priority=High")
    assert cookies[1] == b"Set-Cookie: plain=1; path=/"


def test_a_cookie_with_an_empty_value_is_deleted() -> None:
    response, sink = respond()

    response.cookie("gone")
    response.end()

    assert b"Set-Cookie: gone=deleted; expires=Thu, 01-Jan-1970 00:00:01 GMT; Max-Age=0; path=/" in sink.sent[0]


def test_raw_cookie_sends_the_value_as_given_and_refuses_what_a_cookie_cannot_carry() -> None:
    response, sink = respond()

    assert response.raw_cookie("token", "a%20b/c=") is True
    assert response.raw_cookie("bad", "a b") is False
    assert response.cookie("bad=name", "v") is False
    response.end()

    assert b"Set-Cookie: token=a%20b/c=; path=/" in sink.sent[0]
    assert b"bad" not in sink.sent[0]
    assert sink.errors == [ErrorCode.INVALID_PARAMS, ErrorCode.INVALID_PARAMS]


def test_swooles_spellings_rawcookie_and_iswritable_do_what_raw_cookie_and_is_writable_do() -> None:
    response, sink = respond()

    assert response.rawcookie("token", "a%20b", path="/app", httponly=True) is True
    assert response.isWritable() is True
    response.end()

    assert b"Set-Cookie: token=a%20b; path=/app; HttpOnly" in sink.sent[0]
    assert response.isWritable() is False


def test_cookie_dates_use_swooles_dashed_format() -> None:
    assert cookie_date(0) == "Thu, 01-Jan-1970 00:00:00 GMT"


# ---- write -----------------------------------------------------------------------------------------------


def test_write_streams_chunks_after_headers_sent_with_the_first_one() -> None:
    response, sink = respond()
    response.header("Content-Type", "text/plain")

    assert response.write("hello ") is True
    assert response.write(b"world") is True
    assert response.header("X-Late", "1") is False
    assert response.end("!") is True

    first, second, last = sink.sent
    lines, body = split(first)
    assert b"Transfer-Encoding: chunked" in lines
    assert not any(line.startswith(b"Content-Length") for line in lines)
    assert body == b"6\r\nhello \r\n"
    assert second == b"5\r\nworld\r\n"
    assert last == b"1\r\n!\r\n0\r\n\r\n"
    assert sink.finished == [True]


def test_end_without_data_after_write_sends_only_the_last_chunk() -> None:
    response, sink = respond()
    response.write("x")

    response.end()

    assert sink.sent[-1] == b"0\r\n\r\n"


def test_an_empty_write_is_refused() -> None:
    response, sink = respond()

    assert response.write(b"") is False
    assert sink.errors == [ErrorCode.NO_PAYLOAD]
    assert sink.sent == []


def test_an_http10_client_gets_the_stream_unchunked_and_the_connection_closed() -> None:
    response, sink = respond(head_of(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"))

    response.write("abc")
    response.end("def")

    lines, body = split(sink.sent[0])
    assert b"Connection: close" in lines
    assert not any(line.startswith((b"Transfer-Encoding", b"Content-Length")) for line in lines)
    assert body == b"abc"
    assert sink.sent[1] == b"def"
    assert sink.finished == [False]


def test_a_stream_to_a_head_request_sends_only_the_headers() -> None:
    response, sink = respond(head_of(b"HEAD / HTTP/1.1\r\n\r\n"))

    response.write("abc")
    response.write("def")
    response.end("ghi")

    assert len(sink.sent) == 1 and sink.sent[0].endswith(b"\r\n\r\n")
    assert sink.finished == [True]


# ---- compression -----------------------------------------------------------------------------------------

BIG = "compress me " * 20


def test_a_compressible_body_is_gzipped_when_the_client_accepts_it() -> None:
    response, sink = respond(head_of(b"GET / HTTP/1.1\r\nAccept-Encoding: gzip, deflate, br\r\n\r\n"))

    response.end(BIG)

    lines, body = split(sink.sent[0])
    assert b"Content-Encoding: gzip" in lines and b"Vary: Accept-Encoding" in lines
    assert b"Content-Length: %d" % len(body) in lines
    assert gzip.decompress(body) == BIG.encode()


def test_q_values_choose_the_coding() -> None:
    response, sink = respond(head_of(b"GET / HTTP/1.1\r\nAccept-Encoding: gzip;q=0.5, deflate;q=0.8\r\n\r\n"))

    response.end(BIG)

    lines, body = split(sink.sent[0])
    assert b"Content-Encoding: deflate" in lines
    assert zlib.decompress(body) == BIG.encode()


@pytest.mark.parametrize(
    ("accept", "content_type", "body", "options"),
    [
        (b"identity", "text/html", BIG, {}),
        (b"gzip;q=0, deflate;q=0", "text/html", BIG, {}),
        (b"gzip", "image/png", BIG, {}),
        (b"gzip", "text/html", "short", {}),
        (b"gzip", "text/html", BIG, {"http_compression": False}),
    ],
)
def test_no_compression_when_refused_incompressible_short_or_off(
    accept: bytes, content_type: str, body: str, options: dict[str, object]
) -> None:
    response, sink = respond(head_of(b"GET / HTTP/1.1\r\nAccept-Encoding: " + accept + b"\r\n\r\n"), **options)
    response.header("Content-Type", content_type)

    response.end(body)

    lines, sent = split(sink.sent[0])
    assert sent == body.encode()
    assert not any(line.startswith(b"Content-Encoding") for line in lines)


def test_a_body_the_application_encoded_itself_is_left_alone() -> None:
    response, sink = respond(head_of(b"GET / HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n"))
    response.header("Content-Encoding", "br")

    response.end(BIG)

    assert split(sink.sent[0])[1] == BIG.encode()


def test_vary_is_set_even_when_this_client_does_not_compress() -> None:
    response, sink = respond()

    response.end(BIG)

    assert b"Vary: Accept-Encoding" in split(sink.sent[0])[0]


# ---- sendfile, redirect, detach, 500 ---------------------------------------------------------------------


@pytest.fixture
def page(tmp_path: Path) -> Path:
    path = tmp_path / "page.css"
    path.write_bytes(b"0123456789")
    return path


def test_sendfile_sends_the_head_then_hands_the_file_over(page: Path) -> None:
    response, sink = respond()

    assert response.sendfile(str(page)) is True

    lines, body = split(sink.sent[0])
    assert b"Content-Type: text/css" in lines and b"Content-Length: 10" in lines and body == b""
    assert sink.files == [(str(page), 0, 10)]
    assert sink.finished == [True]


def test_sendfile_sends_a_part_of_the_file(page: Path) -> None:
    response, sink = respond()
    response.header("Content-Type", "application/x-custom")

    response.sendfile(str(page), 2, 5)

    assert b"Content-Type: application/x-custom" in split(sink.sent[0])[0]
    assert b"Content-Length: 5" in split(sink.sent[0])[0]
    assert sink.files == [(str(page), 2, 5)]


def test_sendfile_to_a_head_request_sends_no_file(page: Path) -> None:
    response, sink = respond(head_of(b"HEAD / HTTP/1.1\r\n\r\n"))

    response.sendfile(str(page))

    assert b"Content-Length: 10" in sink.sent[0]
    assert sink.files == []


@pytest.mark.parametrize(
    ("name", "offset", "length", "code"),
    [
        ("missing.txt", 0, 0, ErrorCode.FILE_NOT_EXIST),
        (".", 0, 0, ErrorCode.SERVER_IS_NOT_REGULAR_FILE),
        ("page.css", 11, 0, ErrorCode.INVALID_PARAMS),
        ("page.css", 5, 6, ErrorCode.INVALID_PARAMS),
        ("page.css", -1, 0, ErrorCode.INVALID_PARAMS),
    ],
)
def test_sendfile_refuses_what_it_cannot_send(page: Path, name: str, offset: int, length: int, code: int) -> None:
    response, sink = respond()

    assert response.sendfile(str(page.parent / name), offset, length) is False

    assert sink.errors == [code]
    assert sink.sent == [] and response.is_writable()


def test_sendfile_after_write_is_refused(page: Path) -> None:
    response, sink = respond()
    response.write("x")

    assert response.sendfile(str(page)) is False
    assert sink.files == []


def test_redirect_ends_the_response_with_a_location() -> None:
    response, sink = respond()

    assert response.redirect("/elsewhere", 301) is True

    lines, _ = split(sink.sent[0])
    assert lines[0] == b"HTTP/1.1 301 Moved Permanently"
    assert b"Location: /elsewhere" in lines
    assert response.ended


def test_a_detached_response_takes_nothing_more() -> None:
    response, sink = respond()

    assert response.detach() is True

    assert response.detached and not response.ended and not response.is_writable()
    assert response.end() is False
    assert sink.sent == [] and sink.errors == [ErrorCode.HTTP_CONTEXT_UNAVAILABLE]


def test_fail_500_replaces_what_was_set_when_nothing_was_sent() -> None:
    response, sink = respond()
    response.status(201)
    response.header("X-Partial", "1")
    response.cookie("c", "v")

    assert response.fail_500() is True

    lines, body = split(sink.sent[0])
    assert lines[0] == b"HTTP/1.1 500 Internal Server Error"
    assert b"X-Partial: 1" not in lines and not any(line.startswith(b"Set-Cookie") for line in lines)
    assert b"Content-Length: 0" in lines and body == b""
    assert sink.finished == [True]


def test_fail_500_cannot_help_once_headers_were_sent() -> None:
    response, sink = respond()
    response.write("partial")

    assert response.fail_500() is False
    assert len(sink.sent) == 1


# ---- what the server sends without a Response -------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 413, 431, 501, 505])
def test_an_error_response_is_whole_and_closes_the_connection(status: int) -> None:
    message = error_response(status)

    lines, body = split(message)
    assert lines[0] == b"HTTP/1.1 %d %s" % (status, REASONS[status].encode())
    assert b"Connection: close" in lines
    assert b"Content-Length: %d" % len(body) in lines
    assert str(status).encode() in body


def test_the_continue_response_is_an_interim_status_line() -> None:
    assert CONTINUE_RESPONSE == b"HTTP/1.1 100 Continue\r\n\r\n"
