"""Bad input and limits over real sockets, in both run modes: 400, 413, 431, the header timeout (408 for a trickling
header, a plain close for an idle keep-alive connection), bounded memory for a client that pipelines without
reading, a worker killed while it holds a request (PROCESS mode), and garbage from many clients at once while
others are served."""

from __future__ import annotations

import os
import random
import signal
import socket
import threading
import time

import httpx
import pytest

from httpkit import closed_by_server, connect, read_response, start_http_server, url
from pyswoole.constants import ErrorCode
from serverkit import wait_until


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def connection_owner(server, mode: str) -> int:
    """The process whose memory holds the connections: the worker (BASE), the master's reactor (PROCESS)."""
    if mode == "PROCESS":
        return server.pid
    return server.wait_event("worker_start", worker_id=0)["pid"]


def test_a_client_that_pipelines_without_reading_is_read_no_further_and_memory_stays_bounded(start_server, mode):
    server = start_http_server(start_server, mode, task_worker_num=0, socket_buffer_size=1024 * 1024)
    owner = connection_owner(server, mode)
    count, size = 1000, 50_000  # 50 MB of answers to 40 kB of requests
    httpx.get(url(server, "/big?n=2500"), timeout=10)  # warm up: the memory of one answer is not the point
    before = rss_kib(owner)
    with connect(server.port) as sock:
        sock.sendall(b"GET /big?n=2500 HTTP/1.1\r\nHost: x\r\n\r\n" * count)
        served: list[int] = []

        def settled() -> bool:
            served.append(len(server.events("request")))
            return len(served) > 50 and served[-1] == served[-50]  # no new request for 50 polls

        wait_until(settled, interval=0.01, message="the server kept serving a client that does not read")
        grown = rss_kib(owner) - before
        assert served[-1] < count // 2, f"served {served[-1]} of {count} requests that nobody read"
        assert grown < 25_000, f"the connection's owner grew by {grown} KiB"
        # Once the client reads, every answer comes, whole and in order.
        buffer = bytearray()
        for _ in range(count):
            status, _, body = read_response(sock, buffer)
            assert status == b"HTTP/1.1 200 OK" and len(body) == size
    assert len(server.wait_events("request", count + 1)) == count + 1


def test_a_response_streamed_past_socket_buffer_size_to_a_client_that_does_not_read_is_cut(start_server, mode):
    server = start_http_server(start_server, mode, task_worker_num=0, socket_buffer_size=1024 * 1024)
    with connect(server.port) as sock:
        sock.sendall(b"GET /flood?n=1000 HTTP/1.1\r\nHost: x\r\n\r\n")  # 64 MB that nobody reads
        refused = server.wait_event("flood_refused")
        assert (refused["error"], refused["writable"]) == (ErrorCode.OUTPUT_BUFFER_OVERFLOW, False)
        assert refused["after"] < 500
        answer = closed_by_server(sock)  # what was queued, then the close: never the last chunk
    assert answer.startswith(b"HTTP/1.1 200 OK") and not answer.endswith(b"0\r\n\r\n")
    assert httpx.get(url(server, "/?name=others"), timeout=10).text == "hello others"


MALFORMED = [
    b"GET / HTTP/1.1\r\nHost x\r\n\r\n",  # a header line without a colon
    b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n",  # a control character in the target
    b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",  # a space in a header name
    b"GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",  # a chunk size that is no number
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40),  # a TLS ClientHello on a plain port
]


def test_a_malformed_request_gets_400_and_its_connection_closes_while_others_are_served(start_server, mode):
    server = start_http_server(start_server, mode, task_worker_num=0)
    with httpx.Client(timeout=10) as good:
        assert good.get(url(server, "/?name=before")).text == "hello before"
        for garbage in MALFORMED:
            with connect(server.port) as sock:
                sock.sendall(garbage)
                answer = closed_by_server(sock)
            assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), (garbage, answer)
            assert good.get(url(server, "/?name=between")).text == "hello between"  # the same connection
        with connect(server.port) as sock:
            sock.sendall(b"GET / HTTP/9.9\r\nHost: x\r\n\r\n")
            assert closed_by_server(sock).startswith(b"HTTP/1.1 505 HTTP Version Not Supported\r\n")
    assert [event["path"] for event in server.events("request")] == ["/"] * (1 + len(MALFORMED))


def test_a_body_over_package_max_length_gets_413(start_server, mode):
    server = start_http_server(start_server, mode, task_worker_num=0, package_max_length=64 * 1024)
    with connect(server.port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 65537\r\n\r\n")  # refused before the body
        assert closed_by_server(sock).startswith(b"HTTP/1.1 413 ")
    with connect(server.port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(20):  # chunks: the size is known only as they come
                sock.sendall(b"1000\r\n" + b"z" * 4096 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert closed_by_server(sock).startswith(b"HTTP/1.1 413 ")
    with httpx.Client(timeout=10) as client:
        assert client.post(url(server, "/echo"), content=b"k" * 65536).json()["content"] == "k" * 65536
        assert client.post(url(server, "/echo"), content=b"k" * 65537).status_code == 413
    assert [event["body_size"] for event in server.events("request")] == [65536]


def test_a_header_section_over_http_header_max_size_gets_431(start_server, mode):
    server = start_http_server(start_server, mode, task_worker_num=0, http_header_max_size=4096)
    with connect(server.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 5000 + b"\r\n\r\n")
        assert closed_by_server(sock).startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    with connect(server.port) as sock:  # never ending: refused once past the limit, not at its end
        sock.sendall(b"GET / HTTP/1.1\r\n" + b"X-Many: header\r\n" * 300)
        assert closed_by_server(sock).startswith(b"HTTP/1.1 431 ")
    fits = httpx.get(url(server, "/echo"), headers={"X-Big": "b" * 3500}, timeout=10).json()
    assert fits["header"]["x-big"] == "b" * 3500


def test_a_header_that_trickles_past_http_header_timeout_gets_408_and_is_closed(start_server, mode):
    server = start_http_server(start_server, mode, task_worker_num=0, http_header_timeout=0.5)
    with connect(server.port) as sock:
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\n")
        sock.settimeout(0.1)
        answer = b""
        while time.monotonic() - started < 5:  # a byte every 0.1 s: the slowloris client
            try:
                sock.sendall(b"X")
                answer = sock.recv(4096)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if answer:
                break
        elapsed = time.monotonic() - started
        answer += closed_by_server(sock)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
    assert 0.45 < elapsed < 2
    assert server.events("request") == []


def test_an_idle_keep_alive_connection_is_closed_after_http_header_timeout(start_server, mode):
    server = start_http_server(start_server, mode, task_worker_num=0, http_header_timeout=0.5)
    with connect(server.port) as silent, connect(server.port) as idle:
        idle.sendall(b"GET /?name=once HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(idle)[2] == b"hello once"
        answered = time.monotonic()
        assert closed_by_server(idle) == b""  # nothing was started: no 408, a plain close
        assert 0.45 < time.monotonic() - answered < 2
        assert closed_by_server(silent) == b""
    assert len(server.wait_events("close", 2)) == 2


def test_a_busy_keep_alive_connection_outlives_http_header_timeout(start_server, mode):
    server = start_http_server(start_server, mode, task_worker_num=0, http_header_timeout=0.5)
    with connect(server.port) as sock:
        started = time.monotonic()
        answered = 0
        while time.monotonic() - started < 2.0:  # four header timeouts, each request well within one
            sock.sendall(b"GET /?name=busy HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _, body = read_response(sock)
            assert (status, body) == (b"HTTP/1.1 200 OK", b"hello busy")
            answered += 1
    assert answered >= 10


def test_a_body_slower_than_http_header_timeout_is_not_cut(start_server, mode):
    server = start_http_server(start_server, mode, task_worker_num=0, http_header_timeout=0.5)
    with connect(server.port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nsl")
        for piece in (b"ow", b"ly"):
            # A witness whose header started now is closed once the header timeout has passed: then the body
            # goes on, each piece later than the timeout after the one before.
            with connect(server.port) as witness:
                witness.sendall(b"GET / HTTP/1.1\r\n")
                assert closed_by_server(witness).startswith(b"HTTP/1.1 408 ")
            sock.sendall(piece)
        _, _, body = read_response(sock)
    assert b'"content": "slowly"' in body


def test_a_worker_killed_with_a_request_closes_that_connection_and_others_are_served(start_server):
    server = start_http_server(start_server, "PROCESS", task_worker_num=0, worker_num=1)
    with connect(server.port) as victim, connect(server.port) as other:
        victim.sendall(b"GET /block?gate=never HTTP/1.1\r\nHost: x\r\n\r\n")
        blocked = server.wait_event("blocking")
        killed = time.monotonic()
        os.kill(blocked["pid"], signal.SIGKILL)
        # Sent while the only worker is dead: it waits in the worker's pipe for the replacement, which answers it.
        other.sendall(b"GET /?name=waiting HTTP/1.1\r\nHost: x\r\n\r\n")
        assert closed_by_server(victim, timeout=5) == b""
        assert time.monotonic() - killed < 3  # the reactor looks twice a second, and needs two looks
        assert read_response(other)[2] == b"hello waiting"
        other.sendall(b"GET /?name=again HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(other)[2] == b"hello again"
    server.wait_events("worker_start", 2)


def test_a_request_in_flight_across_a_reload_is_answered_by_its_old_worker(start_server):
    server = start_http_server(start_server, "PROCESS", task_worker_num=0, worker_num=1, max_wait_time=10)
    with connect(server.port) as slow:
        slow.sendall(b"GET /hold?gate=finish HTTP/1.1\r\nHost: x\r\n\r\n")
        old = server.wait_event("request", path="/hold")["pid"]
        assert httpx.get(url(server, "/ask"), params={"expr": "server.reload()"}, timeout=10).json() is True
        new = server.wait_events("worker_start", 2)[1]["pid"]
        assert httpx.get(url(server, "/ask"), params={"expr": "os.getpid()"}, timeout=10).json() == new
        # The old worker still drains its request: the reactor must not take it for dead (it looks twice a
        # second, so 1.5 s covers several looks).
        slow.settimeout(1.5)
        with pytest.raises(TimeoutError):
            slow.recv(1)
        slow.settimeout(10)
        server.release("finish")
        assert read_response(slow)[2] == b"released"
    assert old != new


def garbage_client(port: int, stop: threading.Event, seed: int, answers: list[bytes]) -> None:
    """Sends what no HTTP client should, over and over: random bytes, cut requests, oversized headers."""
    rng = random.Random(seed)
    shapes = [
        lambda: rng.randbytes(rng.randint(1, 3000)),
        lambda: b"GET /" + rng.randbytes(50) + b"\x01 HTTP/1.1\r\n\r\n",  # never a valid target
        lambda: b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + rng.randbytes(200),
        lambda: b"GET / HTTP/1.1\r\n" + b"X: " + b"y" * 70_000 + b"\r\n\r\n",
        lambda: b"GET / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
        lambda: b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[: rng.randint(1, 20)],
    ]
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.sendall(rng.choice(shapes)())
                if rng.random() < 0.5:
                    sock.shutdown(socket.SHUT_WR)
                    answers.append(sock.recv(100))
        except OSError:
            pass


def test_garbage_from_20_clients_does_not_disturb_the_others(start_server, mode):
    server = start_http_server(start_server, mode, task_worker_num=0, worker_num=2, http_header_timeout=2)
    stop = threading.Event()
    answers: list[bytes] = []
    threads = [threading.Thread(target=garbage_client, args=(server.port, stop, seed, answers)) for seed in range(20)]
    for thread in threads:
        thread.start()
    try:
        with httpx.Client(timeout=10) as client:
            deadline = time.monotonic() + 2
            served = 0
            while time.monotonic() < deadline:
                body = f"payload {served}".encode() * (served % 7 + 1)
                assert client.post(url(server, f"/echo?n={served}"), content=body).json()["content"] == body.decode()
                served += 1
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert served > 20
    refusals = [answer for answer in answers if answer]
    assert refusals and all(answer.startswith(b"HTTP/1.1 4") or answer.startswith(b"HTTP/1.1 5") for answer in refusals)
    assert server.alive()
    assert "Traceback" not in server.log()
