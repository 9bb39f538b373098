"""WSGI (PEP 3333) as ``pyswoole serve`` hosts it, against a bare application (``apps/wsgi_probe.py``): the
environ, ``wsgi.input``, ``start_response`` and ``write``, ``exc_info``, ``close()``, exceptions, and one request
at a time per worker. The probe runs once per mode (the response travels by different paths)."""

from __future__ import annotations

import socket
import tempfile
import threading
import uuid
from pathlib import Path

import httpx
import pytest
from hostkit import http_client, raw_exchange

from serverkit import wait_until

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def probe_log(tmp_path_factory):
    return tmp_path_factory.mktemp("wsgi") / "probe.txt"


@pytest.fixture(scope="module", params=["process", "base"])
def probe(request, serve_module, probe_log):
    return serve_module("wsgi_probe:app", "--mode", request.param, "--workers", "1", "--no-access-log",
                        env={"PROBE_LOG": str(probe_log)})  # fmt: skip


@pytest.fixture
def client(probe):
    with http_client(base_url=probe.url) as client:
        yield client


def logged(probe_log) -> list[str]:
    return probe_log.read_text().splitlines() if probe_log.exists() else []


def test_a_path_that_is_not_utf8_reaches_path_info_byte_for_byte(client):
    environ = client.get("/caf%E9/a%2Fb/environ").json()

    assert environ["PATH_INFO"] == "/caf\xe9/a/b/environ"  # the bytes as latin-1 text, nothing replaced


def test_the_environ_is_complete(probe, client):
    environ = client.post(
        "/caf%C3%A9/environ?a=1&b=%20",
        content=b"x=1",
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twice": "1", "X-Custom": "v"},
    ).json()

    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["SCRIPT_NAME"] == ""
    assert environ["PATH_INFO"] == "/café/environ".encode().decode("latin-1")  # PEP 3333: bytes as latin-1
    assert environ["QUERY_STRING"] == "a=1&b=%20"
    assert environ["RAW_URI"] == environ["REQUEST_URI"] == "/caf%C3%A9/environ?a=1&b=%20"
    assert (environ["CONTENT_TYPE"], environ["CONTENT_LENGTH"]) == ("application/x-www-form-urlencoded", "3")
    assert environ["SERVER_NAME"] == "127.0.0.1" and environ["SERVER_PORT"] == str(probe.port)
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["REMOTE_ADDR"] == "127.0.0.1" and int(environ["REMOTE_PORT"]) > 0
    assert environ["HTTP_HOST"] == f"127.0.0.1:{probe.port}"
    assert environ["HTTP_X_CUSTOM"] == "v"
    assert "HTTP_CONTENT_TYPE" not in environ and "HTTP_CONTENT_LENGTH" not in environ
    assert environ["wsgi.version"] == [1, 0] and environ["wsgi.url_scheme"] == "http"
    assert (environ["wsgi.multithread"], environ["wsgi.multiprocess"], environ["wsgi.run_once"]) == (False, True, False)
    assert environ["wsgi.input_terminated"] is True and environ["wsgi.input"] and environ["wsgi.errors"]


def test_a_repeated_header_is_joined_and_a_header_with_an_underscore_is_dropped(probe):
    request = (b"GET /environ HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\n"
               b"X_Forwarded_For: 6.6.6.6\r\nConnection: close\r\n\r\n")  # fmt: skip
    with socket.create_connection(("127.0.0.1", probe.port)) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk

    environ = httpx.Response(200, content=answer.split(b"\r\n\r\n", 1)[1]).json()
    assert environ["HTTP_X_FORWARDED_FOR"] == "1.1.1.1,2.2.2.2"


def test_wsgi_input_reads_the_whole_body_by_line_and_by_size(client):
    body = b"first line\n" + b"y" * 100_000

    assert client.post("/body", content=body).json() == {"first_line": 11, "total": len(body)}


def test_the_write_callable_and_the_returned_iterable_both_reach_the_client(client):
    assert client.get("/write").text == "written then returned"


def test_an_iterable_of_several_pieces_is_streamed_chunked_and_closed(client, probe_log):
    token = uuid.uuid4().hex
    response = client.get("/stream", params={"token": token})

    assert response.text == "one\ntwo\nthree\n"
    assert response.headers["transfer-encoding"] == "chunked"
    wait_until(lambda: f"closed {token}" in logged(probe_log), 5)


def test_an_exception_before_start_response_gives_500_and_the_worker_serves_on(probe, client):
    assert client.get("/raise-before").status_code == 500
    assert client.get("/").text == "probe"
    wait_until(lambda: "raised before start_response, on purpose" in probe.output(), 5)


def test_an_exception_while_iterating_closes_the_connection_and_close_is_still_called(client, probe_log):
    token = uuid.uuid4().hex

    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/raise-after", params={"token": token})

    wait_until(lambda: f"closed {token}" in logged(probe_log), 5)
    assert client.get("/").text == "probe"


def test_a_client_that_leaves_mid_stream_is_no_application_failure_and_close_is_still_called(probe, client, probe_log):
    token = uuid.uuid4().hex
    with socket.create_connection(("127.0.0.1", probe.port), timeout=10) as sock:
        sock.sendall(f"GET /endless?token={token} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")

    wait_until(lambda: f"closed {token}" in logged(probe_log), 10)  # the stream stopped, its close() ran
    wait_until(lambda: "GET /endless cut short: the client went away" in probe.output(), 5)
    assert "WSGI application failed (GET /endless)" not in probe.output()
    assert client.get("/").text == "probe"


def test_start_response_with_exc_info_replaces_the_status_before_anything_was_sent(client):
    response = client.get("/exc-info")

    assert (response.status_code, response.text) == (503, "sorry")


def test_wsgi_errors_goes_to_the_servers_log(probe, client):
    assert client.get("/errors").status_code == 204
    wait_until(lambda: "a line for wsgi.errors" in probe.output(), 5)


def test_the_application_runs_as_under_a_synchronous_server_with_no_event_loop_running(client):
    for _ in range(2):  # and the worker's own loop goes on after it
        assert client.get("/asyncio-run").text == "ran its own loop"
    assert client.get("/").text == "probe"


def test_head_gets_the_length_and_no_body(client):
    response = client.head("/size", params={"n": 1234})

    assert response.headers["content-length"] == "1234" and response.content == b""


def test_head_gets_the_length_of_a_body_the_application_did_not_measure(client):
    response = client.head("/")  # the probe answers "probe" without a Content-Length of its own

    assert response.headers["content-length"] == "5" and response.content == b""
    assert client.get("/").text == "probe"  # and the connection serves on


def test_a_worker_runs_one_request_at_a_time(probe, probe_log):
    tokens = [uuid.uuid4().hex for _ in range(2)]

    def call(token: str) -> None:
        with http_client(base_url=probe.url) as client:
            assert client.get("/sleep", params={"token": token, "s": "0.3"}).text == "slept"

    threads = [threading.Thread(target=call, args=(token,)) for token in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    times = {}
    for line in logged(probe_log):
        word, token, *when = line.split()
        if token in tokens:
            times[word, token] = float(when[0])
    first, second = sorted(tokens, key=lambda token: times["begin", token])
    assert times["end", first] <= times["begin", second]  # one worker: the second waited for the first


def test_a_header_with_a_line_break_is_refused_with_500_and_nothing_smuggled(client):
    response = client.get("/inject")

    assert response.status_code == 500 and "set-cookie" not in response.headers
    assert b"injected" not in response.content


def test_a_body_under_204_is_not_sent(probe):
    received = raw_exchange(probe.port, b"GET /no-content HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")

    assert received.startswith(b"HTTP/1.1 204") and b"should not be sent" not in received
    assert received.endswith(b"probe")  # the connection serves on


def test_an_iterator_s_pieces_go_out_as_they_are_given(client):
    token = uuid.uuid4().hex
    marker = Path(tempfile.gettempdir()) / f"pyswoole-held-{token}"
    try:
        with client.stream("GET", "/held", params={"token": token}) as response:
            lines = response.iter_lines()
            assert next(lines) == "first"  # while the application still holds the second piece back
            marker.touch()
            assert next(lines) == "released"
    finally:
        marker.unlink(missing_ok=True)
