"""The request parser: bytes in, RequestHead / BodyData / RequestEnd / ParseError / Upgraded out."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyswoole.http.parser import (
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

GET = b"GET /index.html?a=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"


def feed_in_pieces(parser: RequestParser, data: bytes, cuts: list[int]) -> list[Event]:
    events: list[Event] = []
    bounds = [0, *sorted(cuts), len(data)]
    for start, stop in zip(bounds, bounds[1:], strict=False):
        events += parser.feed(data[start:stop])
    return events


def normalized(events: list[Event]) -> list[Event]:
    """Events with consecutive BodyData merged: how a body is cut into pieces depends on the reads."""
    merged: list[Event] = []
    for event in events:
        if isinstance(event, BodyData) and merged and isinstance(merged[-1], BodyData):
            merged[-1] = BodyData(merged[-1].data + event.data)
        elif not (isinstance(event, BodyData) and not event.data):
            merged.append(event)
    return merged


def only_head(events: list[Event]) -> RequestHead:
    heads = [event for event in events if isinstance(event, RequestHead)]
    assert len(heads) == 1, events
    return heads[0]


def error_of(data: bytes, **limits: int) -> ParseError:
    events = RequestParser(**limits).feed(data)
    assert isinstance(events[-1], ParseError), events
    return events[-1]


# ---- the head --------------------------------------------------------------------------------------------


def test_a_get_gives_its_head_then_its_end() -> None:
    events = RequestParser().feed(GET)

    head, end = events
    assert isinstance(head, RequestHead)
    assert end == RequestEnd()
    assert head.method == "GET"
    assert head.target == b"/index.html?a=1"
    assert (head.path, head.query) == (b"/index.html", b"a=1")
    assert head.version == "1.1"
    assert head.headers == [(b"host", b"example.com"), (b"accept", b"*/*")]
    assert head.raw == GET
    assert head.keep_alive is True
    assert head.content_length is None
    assert not head.chunked and not head.expect_continue and head.upgrade is None


def test_header_names_are_lower_cased_and_values_stripped_in_their_order() -> None:
    head = only_head(RequestParser().feed(b"GET / HTTP/1.1\r\nX-One:  a b \t\r\nx-one: 2\r\nEmpty:\r\n\r\n"))

    assert head.headers == [(b"x-one", b"a b"), (b"x-one", b"2"), (b"empty", b"")]


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [
        ("1.1", None, True),
        ("1.1", "close", False),
        ("1.1", "Keep-Alive, Close", False),
        ("1.0", None, False),
        ("1.0", "keep-alive", True),
    ],
)
def test_keep_alive_follows_the_version_and_the_connection_header(
    version: str, connection: str | None, keep_alive: bool
) -> None:
    line = f"Connection: {connection}\r\n" if connection else ""
    head = only_head(RequestParser().feed(f"GET / HTTP/{version}\r\n{line}\r\n".encode()))

    assert head.version == version
    assert head.keep_alive is keep_alive


def test_empty_lines_before_a_request_line_are_ignored() -> None:
    events = RequestParser().feed(b"\r\n\r\n" + GET)

    assert only_head(events).raw == GET


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        (b"/a/b?x=1&y", b"/a/b", b"x=1&y"),
        (b"/a?", b"/a", b""),
        (b"http://example.com/a/b?q", b"/a/b", b"q"),
        (b"http://example.com", b"/", b""),
        (b"/a#fragment", b"/a", b""),
        (b"*", b"*", b""),
    ],
)
def test_path_and_query_are_split_from_the_target_in_any_form(target: bytes, path: bytes, query: bytes) -> None:
    method = b"OPTIONS" if target == b"*" else b"GET"
    head = only_head(RequestParser().feed(method + b" " + target + b" HTTP/1.1\r\n\r\n"))

    assert head.target == target
    assert (head.path, head.query) == (path, query)


def test_extra_spaces_around_the_target_are_not_part_of_it() -> None:
    head = only_head(RequestParser().feed(b"GET  /x  HTTP/1.1\r\n\r\n"))

    assert head.target == b"/x"


# ---- bodies ----------------------------------------------------------------------------------------------


def test_a_content_length_body_streams_as_body_data_across_feeds() -> None:
    parser = RequestParser()

    first = parser.feed(b"POST /f HTTP/1.1\r\nContent-Length: 10\r\n\r\nhello")
    second = parser.feed(b"world")

    assert only_head(first).content_length == 10
    assert first[1:] == [BodyData(b"hello")]
    assert second == [BodyData(b"world"), RequestEnd()]


def test_a_zero_content_length_ends_the_request_with_its_head() -> None:
    events = RequestParser().feed(b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n")

    assert only_head(events).content_length == 0
    assert events[1:] == [RequestEnd()]


def test_a_chunked_body_is_de_chunked_with_extensions_and_trailers_dropped() -> None:
    data = (
        b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nTrailer-One: x\r\n\r\n"
        b"GET /next HTTP/1.1\r\n\r\n"
    )

    events = RequestParser().feed(data)

    first, second = [event for event in events if isinstance(event, RequestHead)]
    assert first.chunked and first.content_length is None
    assert normalized(events) == [first, BodyData(b"hello world"), RequestEnd(), second, RequestEnd()]
    assert second.headers == []  # the trailer field is no header of the next request


def test_a_chunked_body_cut_one_byte_at_a_time_gives_the_same_bytes() -> None:
    data = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n0\r\n\r\n"
    parser = RequestParser()

    events = feed_in_pieces(parser, data, list(range(1, len(data))))

    assert [event for event in normalized(events) if not isinstance(event, RequestHead)] == [
        BodyData(b"0123456789"),
        RequestEnd(),
    ]


def test_expect_100_continue_is_reported_for_an_http11_request_with_a_body() -> None:
    with_body = b"POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n"
    without_body = b"GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n"
    http10 = b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"

    assert only_head(RequestParser().feed(with_body)).expect_continue is True
    assert only_head(RequestParser().feed(without_body)).expect_continue is False
    assert only_head(RequestParser().feed(http10)).expect_continue is False


# ---- several requests ------------------------------------------------------------------------------------


def test_pipelined_requests_in_one_feed_come_out_in_order() -> None:
    data = GET + b"POST /p HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi" + b"DELETE /d HTTP/1.1\r\n\r\n"

    events = RequestParser().feed(data)

    assert [type(event) for event in events] == [
        RequestHead,
        RequestEnd,
        RequestHead,
        BodyData,
        RequestEnd,
        RequestHead,
        RequestEnd,
    ]
    assert [event.method for event in events if isinstance(event, RequestHead)] == ["GET", "POST", "DELETE"]


def test_nothing_is_read_after_a_request_that_closes_the_connection() -> None:
    events = RequestParser().feed(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n" + GET)

    assert [type(event) for event in events] == [RequestHead, RequestEnd]


def test_in_head_is_true_only_inside_a_header_section() -> None:
    parser = RequestParser()
    assert parser.in_head is False

    parser.feed(b"POST / HTTP/1.1\r\nContent-")
    assert parser.in_head is True

    parser.feed(b"Length: 4\r\n\r\nab")
    assert parser.in_head is False  # inside the body

    parser.feed(b"cd")
    assert parser.in_head is False  # between requests


# ---- upgrades --------------------------------------------------------------------------------------------

WEBSOCKET = b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n\r\n"


def test_an_allowed_upgrade_ends_with_the_bytes_that_followed_it() -> None:
    parser = RequestParser(allow_upgrade=True)

    events = parser.feed(WEBSOCKET + b"\x81\x85frame" + GET)

    head, end, upgraded = events
    assert isinstance(head, RequestHead) and head.upgrade == b"websocket"
    assert end == RequestEnd()
    assert upgraded == Upgraded(b"\x81\x85frame" + GET)
    assert parser.feed(b"more") == []


def test_an_upgrade_request_with_a_body_upgrades_after_the_body() -> None:
    data = b"POST /u HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: h2c\r\nContent-Length: 3\r\n\r\nabcREST"

    events = RequestParser(allow_upgrade=True).feed(data)

    assert events[1:] == [BodyData(b"abc"), RequestEnd(), Upgraded(b"REST")]


def test_without_allow_upgrade_the_upgrade_is_ignored_and_http_goes_on() -> None:
    data = b"POST /u HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: h2c\r\nContent-Length: 3\r\n\r\nabc" + GET

    events = RequestParser().feed(data)

    heads = [event for event in events if isinstance(event, RequestHead)]
    assert [head.upgrade for head in heads] == [None, None]
    assert events[1:3] == [BodyData(b"abc"), RequestEnd()]
    assert events[-1] == RequestEnd()


def test_an_upgrade_in_an_http10_request_is_ignored() -> None:
    events = RequestParser(allow_upgrade=True).feed(WEBSOCKET.replace(b"HTTP/1.1", b"HTTP/1.0"))

    assert only_head(events).upgrade is None
    assert not any(isinstance(event, Upgraded) for event in events)


def test_connect_is_no_upgrade() -> None:
    events = RequestParser(allow_upgrade=True).feed(b"CONNECT example.com:443 HTTP/1.1\r\n\r\n" + GET)

    assert [type(event) for event in events] == [RequestHead, RequestEnd, RequestHead, RequestEnd]


# ---- errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"GET\r\n\r\n",
        b"get / HTTP/1.1\r\n\r\n",
        b"GET /a b HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\nHost: x\n\n",
        b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
        b"GET / RTSP/1.0\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ],
)
def test_a_malformed_request_gets_400(data: bytes) -> None:
    assert error_of(data).status == 400


@pytest.mark.parametrize(
    "chunks",
    [
        b"x\r\nhello\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b" 5\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhelloEXTRA\r\n0\r\n\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\r\n0\r\nBad Trailer\r\n\r\n",
        b"1" * 20 + b"\r\n",
    ],
)
def test_a_malformed_chunked_body_gets_400(chunks: bytes) -> None:
    assert error_of(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks).status == 400


def test_an_endless_chunk_size_line_gets_400_without_being_kept() -> None:
    parser = RequestParser()
    parser.feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;")

    events = parser.feed(b"x" * 10_000)

    assert events == [ParseError(400, "chunk line too long")]


def test_a_coding_before_chunked_gets_501() -> None:
    assert error_of(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").status == 501


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/1.2", b"HTTP/0.9", b"HTTP/3.0"])
def test_an_unsupported_version_gets_505(version: bytes) -> None:
    assert error_of(b"GET / " + version + b"\r\n\r\n").status == 505


@pytest.mark.parametrize("head", [b"GET /\r\n\r\n", b"GET /.0\r\nConnection: keep-alive\r\n\r\n"])
def test_a_request_line_shorter_than_a_version_gets_400(head: bytes) -> None:
    assert RequestParser().feed(head) == [ParseError(400, "HTTP version not supported")]


def test_a_header_section_over_the_limit_gets_431_as_soon_as_it_passes_it() -> None:
    parser = RequestParser(max_header_size=100)
    parser.feed(b"GET / HTTP/1.1\r\nX: ")

    assert parser.feed(b"a" * (100 - 19)) == []  # exactly at the limit: still waiting
    assert parser.feed(b"a") == [ParseError(431, "header section too large")]


def test_a_complete_header_section_over_the_limit_gets_431() -> None:
    assert error_of(b"GET / HTTP/1.1\r\nX: " + b"a" * 200 + b"\r\n\r\n", max_header_size=100).status == 431


def test_a_content_length_over_the_limit_gets_413_without_a_head() -> None:
    events = RequestParser(max_body_size=10).feed(b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n")

    assert events == [ParseError(413, "request body too large")]


def test_a_chunked_body_over_the_limit_gets_413_when_a_chunk_size_passes_it() -> None:
    parser = RequestParser(max_body_size=10)
    events = parser.feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello!\r\n")

    assert events[1:] == [BodyData(b"hello!")]
    assert parser.feed(b"5\r\n") == [ParseError(413, "request body too large")]


def test_a_trailer_section_over_the_header_limit_gets_431() -> None:
    data = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + b"T: x\r\n" * 30

    assert error_of(data, max_header_size=100).status == 431


def test_garbage_is_refused_before_a_header_section_could_end() -> None:
    assert RequestParser().feed(b"\x16\x03\x01") == [ParseError(400, "Invalid method encountered")]


def test_the_parser_takes_nothing_after_a_parse_error() -> None:
    parser = RequestParser()
    parser.feed(b"BAD\r\n\r\n")

    assert parser.feed(GET) == []


# ---- a request cut anywhere ------------------------------------------------------------------------------

TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12).filter(lambda name: name[0] != "-")
VALUE = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789 ;=/,.", max_size=20).map(str.strip)
PATH = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/._-%", max_size=20).map(lambda path: "/" + path)


@st.composite
def valid_requests(draw: st.DrawFn) -> bytes:
    """A valid HTTP/1.1 request: no body, a Content-Length body or a chunked body."""
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]))
    target = draw(PATH) + draw(st.sampled_from(["", "?", "?a=1&b=2", "?x"]))
    reserved = {"content-length", "transfer-encoding", "connection", "upgrade", "expect"}
    headers = draw(st.lists(st.tuples(TOKEN.filter(lambda name: name not in reserved), VALUE), max_size=6))
    lines = [f"{name}: {value}\r\n" for name, value in headers]
    body_kind = draw(st.sampled_from(["none", "length", "chunked"]))
    body = b""
    if body_kind == "length":
        content = draw(st.binary(max_size=50))
        lines.append(f"Content-Length: {len(content)}\r\n")
        body = content
    elif body_kind == "chunked":
        chunks = draw(st.lists(st.binary(min_size=1, max_size=20), max_size=4))
        lines.append("Transfer-Encoding: chunked\r\n")
        body = b"".join(b"%x\r\n%b\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"
    return f"{method} {target} HTTP/1.1\r\n{''.join(lines)}\r\n".encode() + body


@settings(max_examples=300, deadline=None)
@given(requests=st.lists(valid_requests(), min_size=1, max_size=4), data=st.data())
def test_valid_requests_cut_at_any_points_give_the_same_events(requests: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(requests)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))

    whole = RequestParser().feed(stream)
    pieces = feed_in_pieces(RequestParser(), stream, cuts)

    assert normalized(pieces) == normalized(whole)
    assert sum(isinstance(event, RequestEnd) for event in whole) == len(requests)
    assert not any(isinstance(event, ParseError) for event in whole)


# ---- whole requests and the worker codec -----------------------------------------------------------------


def test_the_collector_gives_whole_requests_across_calls() -> None:
    parser = RequestParser()
    collector = RequestCollector()

    first = collector.collect(parser.feed(GET + b"POST /p HTTP/1.1\r\nContent-Length: 6\r\n\r\nab"))
    second = collector.collect(parser.feed(b"cdef" + b"BAD\r\n\r\n"))

    assert [(head.path, body) for head, body in first] == [(b"/index.html", b"")]  # type: ignore[misc]
    request, error = second
    assert isinstance(request, tuple) and request[1] == b"abcdef"
    assert isinstance(error, ParseError) and error.status == 400


def test_the_collector_passes_an_upgrade_through_after_its_request() -> None:
    events = RequestParser(allow_upgrade=True).feed(WEBSOCKET + b"rest")

    (head, body), upgraded = RequestCollector().collect(events)  # type: ignore[misc]

    assert head.upgrade == b"websocket" and body == b""
    assert upgraded == Upgraded(b"rest")


@settings(max_examples=200, deadline=None)
@given(request=valid_requests())
def test_pack_then_unpack_gives_back_the_head_and_the_body(request: bytes) -> None:
    ((head, body),) = RequestCollector().collect(RequestParser().feed(request))  # type: ignore[misc]

    assert unpack_request(pack_request(head, body)) == (head, body)


def test_pack_then_unpack_keeps_every_flag_and_an_upgrade() -> None:
    data = b"POST /x?y HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: h2c\r\nExpect: 100-continue\r\n"
    data += b"Content-Length: 2\r\n\r\nok"
    ((head, body), _) = RequestCollector().collect(RequestParser(allow_upgrade=True).feed(data))  # type: ignore[misc]

    unpacked, unpacked_body = unpack_request(pack_request(head, body))

    assert unpacked == head and unpacked_body == b"ok"
    assert unpacked.upgrade == b"h2c" and unpacked.expect_continue and unpacked.content_length == 2
