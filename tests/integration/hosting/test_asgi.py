"""ASGI 3.0 (spec 2.4) as ``pyswoole serve`` hosts it, against a bare application (``apps/asgi_probe.py``): the
http scope (streamed request bodies, streamed responses with back-pressure, http.disconnect, pathsend, exceptions),
the websocket scope (subprotocol, headers, text and binary, close codes, the denial response) and lifespan per
worker. The probe's server runs once per mode, since the two modes carry bytes by different paths."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import uuid
from urllib.parse import quote

import httpx
import pytest
from hostkit import http_client, raw_exchange
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

from serverkit import wait_until

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module", params=["process", "base"])
def probe(request, serve_module):
    return serve_module("asgi_probe:app", "--mode", request.param, "--workers", "1", "--no-access-log")


@pytest.fixture
def client(probe):
    with http_client(base_url=probe.url) as client:
        yield client


def events(client, token: str) -> list:
    return client.get("/events", params={"token": token}).json()


def new_token() -> str:
    return uuid.uuid4().hex


# http ---------------------------------------------------------------------------------------------------------


def test_a_request_body_reaches_the_application_in_64_KiB_pieces_with_more_body(client):
    body = bytes(range(256)) * 800  # 204,800 bytes

    answer = client.post("/body", content=body).json()
    empty = client.post("/body", content=b"").json()

    assert answer == {"size": len(body), "pieces": [65536, 65536, 65536, 8192], "sum": sum(body) % 65536}
    assert empty == {"size": 0, "pieces": [0], "sum": 0}


def test_a_chunked_request_body_reaches_the_application_whole(client):
    parts = [b"a" * 70000, b"b" * 10]

    answer = client.post("/body", content=iter(parts)).json()  # an iterator: httpx sends it chunked

    assert answer["size"] == 70010 and answer["pieces"] == [65536, 4474]


def test_a_response_streamed_with_more_body_is_sent_chunked(client):
    with client.stream("GET", "/stream", params={"n": 4}) as response:
        parts = list(response.iter_lines())

    assert response.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in response.headers
    assert parts == ["part 0", "part 1", "part 2", "part 3"]


def test_a_slow_reader_makes_the_applications_send_wait_and_it_resumes_as_the_client_reads(probe, client):
    total, token = 256 * 1024 * 1024, new_token()
    progress = lambda: (events(client, token) or [0])[0]  # noqa: E731
    seen = [-1, time.monotonic()]

    def settled() -> bool:  # no progress for half a second: the application waits in send()
        now = progress()
        if now != seen[0]:
            seen[:] = [now, time.monotonic()]
            return False
        return time.monotonic() - seen[1] > 0.5

    with socket.create_connection(("127.0.0.1", probe.port)) as reader:
        reader.sendall(f"GET /flood?total={total}&token={token} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        wait_until(settled, 20, "the application's sends never stopped")  # the client reads nothing meanwhile
        held = seen[0]
        received = 0
        reader.settimeout(10)
        while received < total:  # the head, then the body
            data = reader.recv(1 << 20)
            if not data:
                break
            received += len(data)

    # What the kernel's socket buffers (a few MiB each way) and the server's output buffer hold, not 256 MiB.
    assert 0 < held <= 48 * 1024 * 1024, f"{held} bytes handed to send() while the client read nothing"
    assert received >= total
    wait_until(lambda: progress() == total, 10, "the application never finished")
    assert "overflow" not in probe.output()


def test_the_application_learns_of_a_client_that_left_and_its_later_send_raises_oserror(probe, client):
    token = new_token()
    with socket.create_connection(("127.0.0.1", probe.port)) as leaving:
        leaving.sendall(f"GET /wait-disconnect?token={token} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        wait_until(lambda: client.get("/").status_code == 200)  # the request is in (one worker, in order)

    seen = wait_until(lambda: len(events(client, token)) == 2 and events(client, token), 10)

    assert seen == ["http.disconnect", "send raised ClientDisconnected"]


def test_receive_after_a_complete_response_returns_http_disconnect_at_once(client):
    token = new_token()

    assert client.get("/after-response", params={"token": token}).text == "done"
    assert wait_until(lambda: events(client, token), 4) == ["http.disconnect"]


def test_an_exception_before_the_response_gives_500_and_the_worker_serves_on(probe, client):
    response = client.get("/raise-before")

    assert response.status_code == 500
    assert client.get("/").text == "probe"
    wait_until(lambda: "raised before the response started, on purpose" in probe.output(), 5)
    assert "Traceback" in probe.output()


def test_an_exception_after_the_response_started_closes_the_connection(probe, client):
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/raise-after")

    assert client.get("/").text == "probe"
    wait_until(lambda: "raised after the response started, on purpose" in probe.output(), 5)


@pytest.mark.parametrize("path", ["/no-response", "/half-response"])
def test_an_application_that_returns_before_sending_anything_gets_500(client, path):
    assert client.get(path).status_code == 500


def test_pathsend_sends_the_file_as_the_body(client, tmp_path):
    data = os.urandom(300_000)
    path = tmp_path / "file.bin"
    path.write_bytes(data)

    response = client.get("/pathsend", params={"path": str(path)})
    head = client.head("/pathsend", params={"path": str(path)})

    assert response.status_code == 200 and response.content == data
    assert head.headers["content-length"] == str(len(data)) and head.content == b""


def test_pathsend_of_a_file_deleted_at_once_still_sends_the_whole_file(probe, client, tmp_path):
    """FastAPI's FileResponse with a background task that deletes the file: the application deletes it as soon
    as pathsend returns. The file was opened at the call (in PROCESS mode, passed to the reactor thread open),
    so the whole body goes out, in both modes, and the connection serves on."""
    for attempt in range(5):  # the race is the application's to win: it deletes before the file is sent
        data = os.urandom(300_000)
        path = tmp_path / f"deleted-{attempt}.bin"
        path.write_bytes(data)
        received = b""
        with socket.create_connection(("127.0.0.1", probe.port), timeout=10) as sock:
            sock.sendall(f"GET /pathsend-unlink?path={quote(str(path))} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            while len(received.partition(b"\r\n\r\n")[2]) < len(data):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        head, _, body = received.partition(b"\r\n\r\n")

        assert head.startswith(b"HTTP/1.1 200")
        assert len(body) == len(data) and body == data
        assert not path.exists()
    assert "cannot open" not in probe.output()
    assert client.get("/").text == "probe"


def test_a_client_that_leaves_mid_stream_is_no_application_failure(probe, client):
    """send() raises ClientDisconnected into the app (ASGI 2.4's OSError); one that lets it out is not at fault."""
    with socket.create_connection(("127.0.0.1", probe.port), timeout=10) as sock:
        sock.sendall(b"GET /endless HTTP/1.1\r\nHost: t\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")

    wait_until(lambda: "ASGI response to GET /endless cut short: the client went away" in probe.output(), 10)
    assert "ASGI application failed (GET /endless)" not in probe.output()
    assert client.get("/").text == "probe"


def test_the_http_scope_is_complete_and_carries_the_pyswoole_extension(probe, client):
    scope = client.get("/a%20b/scope", params={"x": "1 2"}, headers={"X-Custom": "v"}).json()

    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert (scope["type"], scope["http_version"], scope["method"], scope["scheme"]) == ("http", "1.1", "GET", "http")
    assert (scope["path"], scope["raw_path"], scope["query_string"]) == ("/a b/scope", "/a%20b/scope", "x=1+2")
    assert scope["root_path"] == ""
    assert ["x-custom", "v"] in scope["headers"]
    assert scope["client"][0] == "127.0.0.1" and scope["client"][1] > 0
    assert scope["server"] == ["127.0.0.1", probe.port]
    assert scope["extensions"] == ["http.response.pathsend", "pyswoole"]
    assert scope["worker_id"] == 0
    assert scope["state"] == {"started_by": scope["pid"]}  # lifespan's state, in the worker that serves


# websocket ----------------------------------------------------------------------------------------------------


def ws_url(probe, path: str) -> str:
    return f"ws://127.0.0.1:{probe.port}{path}"


def test_a_websocket_is_accepted_with_the_subprotocol_and_headers_the_application_chose(probe):
    with ws_connect(ws_url(probe, "/ws/echo"), subprotocols=["chat", "other"], proxy=None) as ws:
        assert ws.subprotocol == "chat"
        assert ws.response.headers["x-accepted"] == "yes"
        ws.send("hi")
        assert ws.recv() == "text:hi"
        ws.send(b"\x00\xff")
        assert ws.recv() == b"bytes:\x00\xff"
        scope = json.loads((ws.send("scope"), ws.recv())[1])

    assert (scope["type"], scope["scheme"], scope["path"]) == ("websocket", "ws", "/ws/echo")
    assert "websocket.http.response" in scope["extensions"] and "pyswoole" in scope["extensions"]


def test_a_repeated_header_reaches_the_websocket_scope_once_per_line(probe):
    tags = [("X-Tag", "first"), ("X-Tag", "second")]
    with ws_connect(ws_url(probe, "/ws/echo"), additional_headers=tags, proxy=None) as ws:
        scope = json.loads((ws.send("scope"), ws.recv())[1])

    assert [value for name, value in scope["headers"] if name == "x-tag"] == ["first", "second"]
    assert all(name == name.lower() for name, _ in scope["headers"])


def test_the_application_may_send_at_once_after_accepting(probe):
    with ws_connect(ws_url(probe, "/ws/hello"), proxy=None) as ws:
        assert ws.recv() == "hello"
        assert ws.recv() == b"\x00\x01"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv()

    assert closed.value.rcvd.code == 1000


def test_the_applications_close_code_reaches_the_client(probe):
    with ws_connect(ws_url(probe, "/ws/echo"), proxy=None) as ws:
        ws.send("close:4001")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv()

    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "asked to")


def test_the_clients_close_code_reaches_the_application(probe, client):
    token = new_token()
    with ws_connect(ws_url(probe, f"/ws/echo?token={token}"), proxy=None) as ws:
        ws.send("x")
        ws.recv()
        ws.close(4002, "leaving")

    assert wait_until(lambda: events(client, token), 5) == [["disconnect", 4002]]


def test_a_dropped_websocket_reaches_the_application_as_code_1006(probe, client):
    token = new_token()
    with ws_connect(ws_url(probe, f"/ws/echo?token={token}"), proxy=None) as ws:
        ws.send("x")
        ws.recv()
        ws.socket.shutdown(socket.SHUT_RDWR)  # no close frame

    assert wait_until(lambda: events(client, token), 5) == [["disconnect", 1006]]


def test_the_denial_response_reaches_the_client(probe):
    with pytest.raises(InvalidStatus) as denied:
        ws_connect(ws_url(probe, "/ws/deny"), proxy=None)

    response = denied.value.response
    assert response.status_code == 401
    assert response.headers["x-denied"] == "yes"
    assert response.body == b"not allowed"


@pytest.mark.parametrize(("path", "status"), [("/ws/reject", 403), ("/ws/raise", 500)])
def test_a_websocket_closed_or_failed_before_accept_is_refused(probe, path, status):
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(ws_url(probe, path), proxy=None)

    assert refused.value.response.status_code == status


def test_an_application_failing_in_the_middle_of_a_denial_does_not_leave_the_handshake_hanging(probe):
    with pytest.raises(InvalidStatus) as denied:
        ws_connect(ws_url(probe, "/ws/deny-raise"), proxy=None, open_timeout=5)

    assert denied.value.response.status_code == 401


def test_receive_after_a_refusal_returns_websocket_disconnect(probe, client):
    token = uuid.uuid4().hex
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(ws_url(probe, f"/ws/close-first?token={token}"), proxy=None)

    assert refused.value.response.status_code == 403
    assert wait_until(lambda: events(client, token), 5) == ["websocket.disconnect"]


# lifespan, per worker -------------------------------------------------------------------------------------------


def lifespan_lines(path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    return [(word, int(pid)) for word, pid in (line.split() for line in path.read_text().splitlines())]


@pytest.mark.parametrize("mode", ["process", "base"])
def test_lifespan_runs_in_each_worker_and_its_state_reaches_that_workers_requests(serve, tmp_path, mode):
    log = tmp_path / "lifespan.txt"
    served = serve("asgi_probe:app", "--mode", mode, "--workers", "2", env={"PROBE_LOG": str(log)})
    started = wait_until(lambda: len(lifespan_lines(log)) == 2 and lifespan_lines(log), 10)
    workers = {pid for _, pid in started}

    seen = {}
    with http_client(base_url=served.url) as client:
        for _ in range(20):  # new connections: they spread over both workers
            scope = client.get("/scope", headers={"Connection": "close"}).json()
            seen[scope["pid"]] = scope["state"]["started_by"]
    status = served.stop()

    assert {word for word, _ in started} == {"startup"} and len(workers) == 2
    assert all(pid == started_by for pid, started_by in seen.items()) and set(seen) <= workers
    assert status == 0
    assert sorted(lifespan_lines(log)[2:]) == sorted(("shutdown", pid) for pid in workers)


@pytest.mark.parametrize(("startup", "lifespan"), [("raise", "on"), ("fail", "auto"), ("fail", "on")])
def test_a_failed_lifespan_startup_stops_the_server_with_exit_status_3(serve, startup, lifespan):
    served = serve("asgi_probe:app", "--lifespan", lifespan, "--workers", "2", start=False,
                   env={"PROBE_STARTUP": startup})  # fmt: skip

    status = served.launch().wait(30)

    assert status == 3, served.describe()
    assert "the application failed to start" in served.output()


def test_a_lifespan_startup_that_raises_with_lifespan_auto_is_taken_as_no_lifespan_support(serve):
    served = serve("asgi_probe:app", "--lifespan", "auto", env={"PROBE_STARTUP": "raise"})

    with http_client(base_url=served.url) as client:
        assert client.get("/scope").json()["state"] == {}
    assert served.stop() == 0


def test_lifespan_off_never_calls_the_lifespan_scope(serve, tmp_path):
    log = tmp_path / "lifespan.txt"
    served = serve("asgi_probe:app", "--lifespan", "off", env={"PROBE_LOG": str(log)})

    with http_client(base_url=served.url) as client:
        assert client.get("/scope").json()["state"] == {}
    assert served.stop(signal.SIGINT) == 0
    assert not log.exists()


def test_head_gets_the_length_a_get_would_have_had_and_no_body(client):
    response = client.head("/bare")

    assert response.headers["content-length"] == "4" and response.content == b""
    assert client.get("/bare").text == "bare"  # the connection serves on


@pytest.mark.parametrize("code", [204, 304])
def test_a_bodiless_status_gets_neither_a_length_nor_a_body(probe, code):
    received = raw_exchange(
        probe.port, b"GET /bare?code=%d HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n" % code
    )

    first, second = received.split(b"HTTP/1.1 200", 1)
    assert first.startswith(b"HTTP/1.1 %d" % code) and first.endswith(b"\r\n\r\n")
    assert b"content-length" not in first.lower() and b"transfer-encoding" not in first.lower()
    assert b"bare" not in first and second.endswith(b"probe")


@pytest.mark.parametrize("mode", ["base", "process"])
def test_a_request_during_a_slow_lifespan_startup_waits_for_it(serve, mode):
    served = serve("asgi_probe:app", "--mode", mode, "--workers", "1", start=False,
                   env={"PROBE_STARTUP": "slow:1.5"})  # fmt: skip
    served.launch()

    # The worker listens before its startup is over: whatever answers first must see the state startup made.
    def first_state() -> list[dict] | None:
        try:
            with http_client(base_url=served.url) as client:
                return [client.get("/scope").json()["state"]]  # in a list: an empty state is an answer too
        except httpx.TransportError:
            return None

    (state,) = wait_until(first_state, 30, "the server never answered")
    assert "started_by" in state


def test_an_application_that_returns_on_the_lifespan_scope_is_served_without_lifespan(serve):
    served = serve("asgi_probe:app", "--lifespan", "auto", "--workers", "1", env={"PROBE_STARTUP": "return"})

    with http_client(base_url=served.url) as client:
        assert client.get("/scope").json()["state"] == {}
    started = time.monotonic()
    assert served.stop() == 0
    assert time.monotonic() - started < 5  # the worker's startup was not left hanging: it stops at once


def test_a_header_with_a_line_break_is_refused_with_500_and_nothing_smuggled(client):
    response = client.get("/inject")

    assert response.status_code == 500 and "set-cookie" not in response.headers
    assert b"injected" not in response.content


@pytest.mark.parametrize("path", ["/cancel", "/exit"])
def test_an_application_raising_cancelled_error_or_system_exit_gets_a_500_and_the_worker_serves_on(probe, path):
    with http_client(base_url=probe.url) as client:
        pid = client.get("/scope").json()["pid"]
        assert client.get(path).status_code == 500
        assert client.get("/scope").json()["pid"] == pid  # the same worker, still serving
