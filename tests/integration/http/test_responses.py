"""HttpServer's responses over real sockets, in both run modes: status and headers, cookies, chunked streams,
sendfile, redirects, compression, the automatic end and the 500, detach and ``Response.create`` from other
processes, and the error codes of refused calls. Clients: curl, http.client, httpx, a raw socket."""

from __future__ import annotations

import gzip
import http.client
import zlib

import httpx
import pytest

from httpkit import closed_by_server, connect, curl, read_response, start_http_server, url
from pyswoole.constants import ErrorCode


def test_status_reason_and_headers_as_set(start_server, mode):
    server = start_http_server(start_server, mode)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", "/headers")
    reply = connection.getresponse()
    assert (reply.status, reply.reason) == (299, "Custom Reason")
    headers = reply.getheaders()
    assert [value for name, value in headers if name == "X-Multi"] == ["one", "two"]
    assert ("x-lower-case", "kept") in headers  # format=False keeps the name as given
    assert [value for name, value in headers if name == "X-Replaced"] == ["second"]
    names = {name for name, _ in headers}
    assert {"Server", "Date", "Content-Type", "Connection", "Content-Length"} <= names
    assert reply.read() == b"headers"
    connection.close()


def test_cookies_are_set_encoded_or_raw_and_a_bad_raw_cookie_is_refused(start_server, mode):
    server = start_http_server(start_server, mode)
    with httpx.Client(timeout=10) as client:
        answer = client.get(url(server, "/cookies"))
    lines = answer.headers.get_list("set-cookie")
    assert lines == [
        "plain=a+value%3B+with%3Dspecials; path=/p; HttpOnly; SameSite=Lax",
        "raw=as%20is; expires=Wed, 18-May-2033 03:33:20 GMT; Max-Age=" + lines[1].split("Max-Age=")[1],
    ]
    assert lines[1].endswith("; path=/; secure")
    assert answer.json() == {"refused": False, "error": ErrorCode.INVALID_PARAMS}


def test_write_streams_chunks_and_end_sends_the_last_one(start_server, mode):
    server = start_http_server(start_server, mode)
    raw = curl("--raw", url(server, "/stream?n=3&last=done")).stdout
    assert raw == b"8\r\nchunk 0;\r\n8\r\nchunk 1;\r\n8\r\nchunk 2;\r\n4\r\ndone\r\n0\r\n\r\n"
    with httpx.Client(timeout=10) as client:
        with client.stream("GET", url(server, "/astream")) as answer:
            assert answer.headers["transfer-encoding"] == "chunked"
            pieces = list(answer.iter_text())
        assert "".join(pieces) == "part 0;part 1;part 2;"
        assert client.get(url(server, "/?name=after")).text == "hello after"  # the same connection goes on


def test_a_blocking_callback_streams_more_than_socket_buffer_size_in_base_mode(start_server):
    # The loop cannot run while the callback writes, so its whole output is buffered rather than refused. (In
    # PROCESS mode the reactor drains meanwhile, and refuses a writer that gets socket_buffer_size ahead of it.)
    server = start_http_server(start_server, "BASE", socket_buffer_size=1024 * 1024)
    with httpx.stream("GET", url(server, "/bulk?n=160"), timeout=10) as answer:
        received = b"".join(answer.iter_bytes())
    assert received == b"".join(bytes([65 + i % 26]) * 65536 for i in range(160))


def test_sendfile_sends_the_file_or_its_slice_with_a_type_from_the_extension(start_server, mode, tmp_path):
    server = start_http_server(start_server, mode)
    page = tmp_path / "page.json"
    page.write_bytes(b'{"numbers": "%b"}' % b"0123456789" * 10_000)
    with httpx.Client(timeout=10) as client:
        whole = client.get(url(server, "/sendfile"), params={"path": str(page)})
        assert whole.content == page.read_bytes()
        assert whole.headers["content-type"] == "application/json"
        assert int(whole.headers["content-length"]) == page.stat().st_size
        part = client.get(url(server, "/sendfile"), params={"path": str(page), "offset": "13", "length": "5"})
        assert part.content == b"01234"
        missing = client.get(url(server, "/sendfile"), params={"path": str(tmp_path / "missing")})
        folder = client.get(url(server, "/sendfile"), params={"path": str(tmp_path)})
    assert (missing.status_code, missing.text) == (404, f"refused {ErrorCode.FILE_NOT_EXIST}")
    assert (folder.status_code, folder.text) == (404, f"refused {ErrorCode.SERVER_IS_NOT_REGULAR_FILE}")


def test_redirects_are_followed_by_real_clients(start_server, mode):
    server = start_http_server(start_server, mode)
    with httpx.Client(timeout=10, follow_redirects=True) as client:
        answer = client.get(url(server, "/redirect"), params={"to": "/?name=target", "code": "301"})
    assert answer.text == "hello target"
    assert [(hop.status_code, hop.headers["location"]) for hop in answer.history] == [(301, "/?name=target")]
    result = curl("--location", "--write-out", " %{num_redirects}", url(server, "/redirect?to=/%3Fname=curl"))
    assert result.stdout == b"hello curl 1"


def test_compression_by_accept_encoding_type_and_length(start_server, mode):
    server = start_http_server(start_server, mode)
    body = b"pyswoole compresses " * 100
    with connect(server.port) as sock:
        buffer = bytearray()

        def get(path: str, accept: bytes) -> tuple[dict[str, str], bytes]:
            sock.sendall(b"GET %b HTTP/1.1\r\nHost: x\r\nAccept-Encoding: %b\r\n\r\n" % (path.encode(), accept))
            _, headers, data = read_response(sock, buffer)
            return headers, data

        headers, data = get("/big", b"gzip, deflate")
        assert headers["content-encoding"] == "gzip" and headers["vary"] == "Accept-Encoding"
        assert gzip.decompress(data) == body and int(headers["content-length"]) == len(data) < len(body)
        headers, data = get("/big", b"gzip;q=0.5, deflate")
        assert headers["content-encoding"] == "deflate" and zlib.decompress(data) == body
        headers, data = get("/big", b"br")
        assert "content-encoding" not in headers and data == body
        headers, data = get("/big?type=image/png", b"gzip")
        assert "content-encoding" not in headers and data == body
        headers, data = get("/?name=short", b"gzip")  # under compression_min_length
        assert "content-encoding" not in headers and data == b"hello short"
    with httpx.Client(timeout=10) as client:  # httpx asks for gzip and inflates it
        answer = client.get(url(server, "/big?type=application/json"))
        assert answer.headers["content-encoding"] == "gzip" and answer.content == body
    assert curl("--compressed", url(server, "/big")).stdout == body


@pytest.mark.parametrize("settings", [{"http_compression": False}, {"http_compression_level": 9}], ids=str)
def test_compression_settings(start_server, mode, settings):
    server = start_http_server(start_server, mode, **settings)
    body = b"pyswoole compresses " * 100
    answer = httpx.get(url(server, "/big"), headers={"Accept-Encoding": "gzip"}, timeout=10)
    raw = answer.read() if "content-encoding" not in answer.headers else None
    if settings.get("http_compression") is False:
        assert raw == body and "vary" not in answer.headers
    else:
        with httpx.stream("GET", url(server, "/big"), headers={"Accept-Encoding": "gzip"}, timeout=10) as stream:
            compressed = b"".join(stream.iter_raw())
        assert compressed == zlib.compress(body, 9, 31) != zlib.compress(body, 1, 31)


def test_a_callback_that_returns_without_ending_gets_its_response_ended(start_server, mode):
    server = start_http_server(start_server, mode)
    with httpx.Client(timeout=10) as client:
        plain = client.get(url(server, "/noend"))
        coroutine = client.get(url(server, "/async-noend"))
    assert (plain.status_code, plain.headers["x-set"], plain.headers["content-length"], plain.content) == (
        201, "before the return", "0", b"",
    )  # fmt: skip
    assert (coroutine.status_code, coroutine.headers["x-set"], coroutine.content) == (200, "after an await", b"")


def test_a_callback_that_raises_gets_500_and_the_worker_serves_on(start_server, mode):
    server = start_http_server(start_server, mode)
    with httpx.Client(timeout=10) as client:
        assert client.get(url(server, "/raise")).status_code == 500
        assert client.get(url(server, "/async-raise")).status_code == 500
        assert client.get(url(server, "/?name=again")).text == "hello again"
    # After a write nothing but closing is left: the client sees the stream cut.
    with connect(server.port) as sock:
        sock.sendall(b"GET /raise-after-write HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = closed_by_server(sock)
    assert answer.startswith(b"HTTP/1.1 200 OK") and b"7\r\npartial\r\n" in answer and b"0\r\n\r\n" not in answer
    assert httpx.get(url(server, "/?name=still"), timeout=10).text == "hello still"
    assert len({event["pid"] for event in server.events("request")}) == 1  # one worker served all
    log = server.log()
    assert "RuntimeError: the callback failed" in log and "RuntimeError: the coroutine failed" in log


def test_a_head_request_gets_the_headers_of_a_get_without_the_body(start_server, mode):
    server = start_http_server(start_server, mode)
    with connect(server.port) as sock:
        buffer = bytearray()
        sock.sendall(b"HEAD /?name=head HTTP/1.1\r\nHost: x\r\n\r\nGET /?name=next HTTP/1.1\r\nHost: x\r\n\r\n")
        _, headers, _ = read_response(sock, buffer, head=True)
        assert headers["content-length"] == str(len("hello head"))
        # The next response follows the head at once: the HEAD's response carried no body.
        _, _, body = read_response(sock, buffer)
        assert body == b"hello next"


@pytest.mark.parametrize("to", ["task", "process"])
def test_a_detached_response_is_answered_by_response_create_in_another_process(start_server, mode, to):
    server = start_http_server(start_server, mode, with_process=True, worker_num=2)
    with httpx.Client(timeout=10) as client:
        first = client.get(url(server, "/detach"), params={"to": to})
        second = client.get(url(server, "/?name=after"))  # the keep-alive connection goes on
    assert first.text == ("from a task worker" if to == "task" else "from a user process")
    assert second.text == "hello after"
    answered = server.wait_event("task_respond" if to == "task" else "process_respond")
    assert answered["ok"] is True
    assert answered["pid"] != server.wait_event("request", path="/detach")["pid"]


def test_a_detached_response_is_answered_later_by_the_same_worker(start_server, mode):
    server = start_http_server(start_server, mode)
    with httpx.Client(timeout=10) as client:
        assert client.get(url(server, "/detach-later")).text == "answered later"
        assert client.get(url(server, "/?name=next")).text == "hello next"


def test_refused_response_calls_return_false_with_their_error_code(start_server, mode):
    server = start_http_server(start_server, mode)
    assert httpx.get(url(server, "/refusals"), timeout=10).text == "streaming"
    unavailable = ErrorCode.HTTP_CONTEXT_UNAVAILABLE
    assert server.wait_event("refusals")["codes"] == {
        "header_after_write": [False, unavailable],
        "status_after_write": [False, unavailable],
        "cookie_after_write": [False, unavailable],
        "sendfile_after_write": [False, unavailable],
        "write_empty": [False, ErrorCode.NO_PAYLOAD],
        "end_after_end": [False, unavailable],
        "write_after_end": [False, unavailable],
        "is_writable_after_end": [False, unavailable],
        "detach_after_end": [False, unavailable],
    }
    codes = httpx.get(url(server, "/sendfile-refusals"), timeout=10).json()
    assert codes == {
        "missing": [False, ErrorCode.FILE_NOT_EXIST],
        "folder": [False, ErrorCode.SERVER_IS_NOT_REGULAR_FILE],
        "bad_status": [False, ErrorCode.INVALID_PARAMS],
        "writable": True,
    }
    # Response.create for a session that is gone: end() fails with the session's error.
    with connect(server.port) as sock:
        sock.sendall(b"GET /ask?expr=request.fd HTTP/1.1\r\nHost: x\r\n\r\n")
        fd = int(read_response(sock)[2])
    server.wait_event("close", fd=fd)
    expression = f"[Response.create(server, {fd}).end('late'), server.get_last_error()]"
    assert httpx.get(url(server, "/ask"), params={"expr": expression}, timeout=10).json() == [
        False, ErrorCode.SESSION_NOT_EXIST,
    ]  # fmt: skip
