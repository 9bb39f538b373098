"""Request: Swoole's accessors over a parsed request, each parsed on first use, none raising on bad input."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyswoole.http.options import HttpOptions
from pyswoole.http.parser import RequestCollector, RequestParser
from pyswoole.http.request import Request
from pyswoole.log import logger

BOUNDARY = "----pyswooleBoundary7MA4YWxk"


def make_request(raw: bytes, options: HttpOptions | None = None, master_time: float = 1700000000.5) -> Request:
    ((head, body),) = RequestCollector().collect(RequestParser().feed(raw))  # type: ignore[misc]
    return Request(head, body, 7, "10.0.0.1", 54321, 9501, master_time, options or HttpOptions())


def post(content_type: str, body: bytes, extra: str = "") -> bytes:
    head = f"POST /form HTTP/1.1\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


def multipart(*parts: tuple[str, str | None, str | None, bytes], boundary: str = BOUNDARY) -> bytes:
    """A multipart/form-data body from (name, filename, content type, content) parts."""
    out = b""
    for name, filename, content_type, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        if content_type:
            out += f"Content-Type: {content_type}\r\n".encode()
        out += b"\r\n" + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


@pytest.fixture
def pyswoole_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog, fed by the pyswoole logger even if a server's logging setup stopped its propagation."""
    propagate = logger.propagate
    logger.propagate = True
    caplog.set_level(logging.WARNING, logger="pyswoole")
    try:
        yield caplog
    finally:
        logger.propagate = propagate


@pytest.fixture
def uploads(tmp_path: Path) -> HttpOptions:
    return HttpOptions(upload_tmp_dir=str(tmp_path))


# ---- header and server -----------------------------------------------------------------------------------


def test_header_has_lower_cased_names_and_repeated_values_joined() -> None:
    request = make_request(b"GET / HTTP/1.1\r\nHost: a\r\nX-Tag: one\r\nx-tag: two\r\n\r\n")

    assert request.header == {"host": "a", "x-tag": "one, two"}


def test_server_holds_swooles_keys() -> None:
    request = make_request(b"GET /a%20b/c+d?x=1 HTTP/1.1\r\n\r\n")

    server = request.server
    assert server["request_method"] == "GET"
    assert server["request_uri"] == "/a%20b/c+d"
    assert server["path_info"] == "/a b/c+d"
    assert server["query_string"] == "x=1"
    assert server["server_protocol"] == "HTTP/1.1"
    assert (server["remote_addr"], server["remote_port"], server["server_port"]) == ("10.0.0.1", 54321, 9501)
    assert server["master_time"] == 1700000000
    assert isinstance(server["request_time"], int)
    assert isinstance(server["request_time_float"], float)
    assert server["request_time"] == int(server["request_time_float"])


def test_server_has_no_query_string_without_a_query_and_names_http10() -> None:
    server = make_request(b"GET /? HTTP/1.0\r\n\r\n").server

    assert "query_string" not in server
    assert server["server_protocol"] == "HTTP/1.0"


def test_the_session_id_method_body_and_raw_request_are_at_hand() -> None:
    raw = post("text/plain", b"payload")
    request = make_request(raw)

    assert request.fd == 7
    assert request.get_method() == request.getMethod() == "POST"
    assert request.get_content() == request.getContent() == request.rawContent() == b"payload"
    assert request.get_data() == request.getData() == raw


def test_get_data_holds_a_chunked_body_de_chunked() -> None:
    raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"

    assert make_request(raw).get_data() == b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nabc"


def test_accessors_are_computed_once_and_can_be_assigned() -> None:
    request = make_request(b"GET /?a=1 HTTP/1.1\r\n\r\n")

    assert request.get is request.get
    request.get = {"a": "changed"}
    assert request.get == {"a": "changed"}


# ---- get -------------------------------------------------------------------------------------------------


def test_get_is_none_without_a_query() -> None:
    assert make_request(b"GET / HTTP/1.1\r\n\r\n").get is None
    assert make_request(b"GET /?&& HTTP/1.1\r\n\r\n").get is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"a=1&b=2", {"a": "1", "b": "2"}),
        (b"a=1&a=2", {"a": "2"}),
        (b"a[]=1&a[]=2", {"a": ["1", "2"]}),
        (b"a[x]=1&a[y]=2", {"a": {"x": "1", "y": "2"}}),
        (b"a[x][]=1&a[x][]=2&a[y][z]=3", {"a": {"x": ["1", "2"], "y": {"z": "3"}}}),
        (b"a[][x]=1", {"a": [{"x": "1"}]}),
        (b"name=J%C3%BCrgen+M&sp%61ce=a%20b", {"name": "Jürgen M", "space": "a b"}),
        (b"flag&empty=", {"flag": "", "empty": ""}),
        (b"[]=dropped&=dropped&k=v", {"k": "v"}),
        (b"a[b=1", {"a_b": "1"}),
        (b"a[b]c=1", {"a": {"b": "1"}}),
        (b"bad=%ff%fe&pct=%zz", {"bad": "\ufffd\ufffd", "pct": "%zz"}),
        (b"a=1&a[]=2", {"a": ["2"]}),
        (b"a[]=1&a=2", {"a": "2"}),
    ],
)
def test_get_follows_swooles_rules(query: bytes, expected: dict[str, object]) -> None:
    assert make_request(b"GET /?" + query + b" HTTP/1.1\r\n\r\n").get == expected


def test_a_name_nested_too_deep_is_dropped() -> None:
    query = b"a" + b"[x]" * 65 + b"=1&b=2"

    assert make_request(b"GET /?" + query + b" HTTP/1.1\r\n\r\n").get == {"b": "2"}


# ---- post ------------------------------------------------------------------------------------------------


def test_post_parses_an_urlencoded_body() -> None:
    request = make_request(post("application/x-www-form-urlencoded; charset=UTF-8", b"a=1&b[]=x+y&b[]=%21"))

    assert request.post == {"a": "1", "b": ["x y", "!"]}
    assert request.files is None


def test_post_is_none_for_another_body_type_or_no_body_or_when_off() -> None:
    form = post("application/x-www-form-urlencoded", b"a=1")

    assert make_request(post("application/json", b'{"a": 1}')).post is None
    assert make_request(b"GET /?a=1 HTTP/1.1\r\n\r\n").post is None
    assert make_request(form, HttpOptions(http_parse_post=False)).post is None


def test_multipart_gives_fields_and_uploads_in_temp_files(uploads: HttpOptions) -> None:
    body = multipart(
        ("title", None, None, "Grüße".encode()),
        ("tags[]", None, None, b"a"),
        ("tags[]", None, None, b"b"),
        ("doc", "report.txt", "text/plain", b"file content\r\nline 2"),
    )
    request = make_request(post(f"multipart/form-data; boundary={BOUNDARY}", body), uploads)

    assert request.post == {"title": "Grüße", "tags": ["a", "b"]}
    assert request.files is not None
    upload = request.files["doc"]
    assert upload["name"] == "report.txt"
    assert upload["type"] == "text/plain"
    assert upload["error"] == 0
    assert upload["size"] == len(b"file content\r\nline 2")
    assert Path(upload["tmp_name"]).parent == Path(uploads.upload_tmp_dir)
    assert Path(upload["tmp_name"]).read_bytes() == b"file content\r\nline 2"


def test_several_uploads_under_one_name_form_a_list(uploads: HttpOptions) -> None:
    body = multipart(("f[]", "a.bin", "application/octet-stream", b"A"), ("f[]", "b.bin", None, b"BB"))
    request = make_request(post(f'multipart/form-data; boundary="{BOUNDARY}"', body), uploads)

    assert request.files is not None
    assert [(upload["name"], upload["size"], upload["type"]) for upload in request.files["f"]] == [
        ("a.bin", 1, "application/octet-stream"),
        ("b.bin", 2, ""),
    ]


def test_an_empty_file_input_is_upload_error_4_without_a_temp_file(uploads: HttpOptions) -> None:
    body = multipart(("doc", "", "application/octet-stream", b""))
    request = make_request(post(f"multipart/form-data; boundary={BOUNDARY}", body), uploads)

    assert request.files == {
        "doc": {"name": "", "type": "application/octet-stream", "tmp_name": "", "error": 4, "size": 0}
    }
    assert os.listdir(uploads.upload_tmp_dir) == []


def test_cleanup_removes_the_temp_files_left_and_spares_moved_ones(uploads: HttpOptions, tmp_path: Path) -> None:
    body = multipart(("kept", "k.txt", None, b"k"), ("left", "l.txt", None, b"l"))
    request = make_request(post(f"multipart/form-data; boundary={BOUNDARY}", body), uploads)
    assert request.files is not None
    moved = tmp_path / "moved.txt"
    os.rename(request.files["kept"]["tmp_name"], moved)

    request.cleanup()

    assert not Path(request.files["left"]["tmp_name"]).exists()
    assert moved.read_bytes() == b"k"


def test_files_alone_or_fields_alone_follow_the_settings(tmp_path: Path) -> None:
    body = multipart(("a", None, None, b"1"), ("f", "f.txt", None, b"x"))
    raw = post(f"multipart/form-data; boundary={BOUNDARY}", body)

    no_files = make_request(raw, HttpOptions(http_parse_files=False, upload_tmp_dir=str(tmp_path)))
    no_fields = make_request(raw, HttpOptions(http_parse_post=False, upload_tmp_dir=str(tmp_path)))

    assert (no_files.post, no_files.files) == ({"a": "1"}, None)
    assert no_fields.post is None
    assert no_fields.files is not None and no_fields.files["f"]["size"] == 1
    assert os.listdir(tmp_path) == [os.path.basename(no_fields.files["f"]["tmp_name"])]


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (f"multipart/form-data; boundary={BOUNDARY}", multipart(("f", "f.txt", None, b"data"))[:-20]),
        (f"multipart/form-data; boundary={BOUNDARY}", b"not multipart at all"),
        ("multipart/form-data", multipart(("a", None, None, b"1"))),
    ],
    ids=["truncated", "garbage", "no boundary"],
)
def test_a_malformed_multipart_body_gives_none_one_warning_and_no_temp_file(
    content_type: str, body: bytes, uploads: HttpOptions, pyswoole_log: pytest.LogCaptureFixture
) -> None:
    request = make_request(post(content_type, body), uploads)

    assert request.post is None
    assert request.files is None
    assert len(pyswoole_log.messages) == 1 and "multipart" in pyswoole_log.messages[0]
    assert os.listdir(uploads.upload_tmp_dir) == []


# ---- cookie ----------------------------------------------------------------------------------------------


def test_cookie_values_are_percent_decoded_and_the_first_of_a_name_wins() -> None:
    raw = b"GET / HTTP/1.1\r\nCookie: sid=a%3Db; theme=dark+blue; sid=other\r\nCookie:  lang=en;;bare\r\n\r\n"

    assert make_request(raw).cookie == {"sid": "a=b", "theme": "dark blue", "lang": "en", "bare": ""}


def test_cookie_is_none_without_a_cookie_header_or_when_off() -> None:
    raw = b"GET / HTTP/1.1\r\nCookie: a=1\r\n\r\n"

    assert make_request(b"GET / HTTP/1.1\r\n\r\n").cookie is None
    assert make_request(raw, HttpOptions(http_parse_cookie=False)).cookie is None


# ---- nothing raises --------------------------------------------------------------------------------------

SAFE_HEADER_VALUE = st.binary(max_size=60).map(lambda value: bytes(b for b in value if b > 31 and b != 127).strip())


@settings(max_examples=200, deadline=None)
@given(
    query=st.binary(max_size=80).map(lambda q: bytes(b for b in q if 33 <= b < 127 and b not in b"#")),
    cookie=SAFE_HEADER_VALUE,
    content_type=st.sampled_from(
        [
            b"application/x-www-form-urlencoded",
            b"multipart/form-data; boundary=" + BOUNDARY.encode(),
            b"multipart/form-data; boundary=",
            b"text/plain",
        ]
    ),
    body=st.binary(max_size=200) | st.builds(lambda raw: multipart(("a[]", None, None, raw)), st.binary(max_size=40)),
)
def test_no_accessor_raises_whatever_the_client_sent(
    query: bytes, cookie: bytes, content_type: bytes, body: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    raw = b"POST /?" + query + b" HTTP/1.1\r\nCookie: " + cookie + b"\r\nContent-Type: " + content_type
    raw += b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    events = RequestParser().feed(raw)
    collected = RequestCollector().collect(events)
    if not collected or not isinstance(collected[0], tuple):
        return  # llhttp refused the request line: nothing to access
    head, body = collected[0]
    options = HttpOptions(upload_tmp_dir=str(tmp_path_factory.mktemp("uploads")))
    request = Request(head, body, 1, "::1", 1, 80, 0.0, options)

    for accessor in ("header", "server", "get", "post", "cookie", "files"):
        getattr(request, accessor)
    request.cleanup()
