"""HttpServer is a Server: listeners (HTTP and plain TCP side by side), Connect and Close, stats, reload and
max_request work on it in both run modes."""

from __future__ import annotations

import os
import signal
import time

import httpx

from httpkit import closed_by_server, connect, read_response, start_http_server, url
from pyswoole.http.base_connection import STOP_GRACE
from serverkit import wait_until


def signal_pending(pid: int, sig: int) -> bool:
    """Whether ``sig`` was sent to process ``pid`` and not yet delivered."""
    with open(f"/proc/{pid}/status") as status:
        fields = dict(line.split(":", 1) for line in status if ":" in line)
    return bool((int(fields["SigPnd"], 16) | int(fields["ShdPnd"], 16)) & 1 << (sig - 1))


def ask(server, expression: str, client: httpx.Client | None = None):
    get = client.get if client is not None else httpx.get
    return get(url(server, "/ask"), params={"expr": expression}, timeout=10).json()


def test_a_plain_tcp_listener_gets_receive_beside_the_http_ports(start_server, mode):
    server = start_http_server(start_server, mode, plain_port=True, http_port=True, task_worker_num=0)
    plain_port = server.wait_event("plain_port")["port"]
    http_port = server.wait_event("http_port")["port"]
    with connect(plain_port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")  # not parsed: a plain port's bytes go to Receive as they are
        assert sock.recv(100) == b"plain GET / HTTP/1.1\r\n\r\n"
    assert server.wait_event("receive")["data"] == "GET / HTTP/1.1\r\n\r\n"
    assert httpx.get(url(server, "/?name=first"), timeout=10).text == "hello first"
    assert httpx.get(url(server, "/?name=second", port=http_port), timeout=10).text == "hello second"
    assert [event["path"] for event in server.events("request")] == ["/", "/"]


def test_connect_close_and_stats_count_http_connections_and_requests(start_server, mode):
    server = start_http_server(start_server, mode, task_worker_num=0)
    with httpx.Client(timeout=10) as client:
        first = ask(server, "server.stats()", client)
        for i in range(5):
            client.get(url(server, f"/?name={i}"))
        second = ask(server, "server.stats()", client)
        fd = ask(server, "request.fd", client)
        assert ask(server, f"[server.exist({fd}), server.get_client_info({fd})['server_port']]", client) == [
            True, server.port,
        ]  # fmt: skip
    assert second["request_count"] - first["request_count"] == 6
    assert second["connection_num"] == 1
    assert second["total_recv_bytes"] > first["total_recv_bytes"]
    server.wait_event("close", fd=fd)
    assert [event["fd"] for event in server.events("connect")] == [fd]


def test_max_request_recycles_a_worker_after_that_many_http_requests(start_server, mode):
    server = start_http_server(start_server, mode, task_worker_num=0, max_request=3)
    pids = []
    for _ in range(7):
        with connect(server.port) as sock:  # a connection each: in BASE mode a recycled worker closes its own
            sock.sendall(b"GET /ask?expr=os.getpid() HTTP/1.1\r\nHost: x\r\n\r\n")
            pids.append(int(read_response(sock)[2]))
    assert pids[0] == pids[1] == pids[2] != pids[3] == pids[4] == pids[5] != pids[6], pids
    server.wait_events("worker_start", 3)


def test_max_request_keeps_keep_alive_connections_in_process_mode(start_server):
    server = start_http_server(start_server, "PROCESS", task_worker_num=0, max_request=2)
    with httpx.Client(timeout=10) as client:
        pids = [ask(server, "os.getpid()", client) for _ in range(5)]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4], pids
    assert len(server.events("connect")) == 1


def test_reload_serves_later_requests_with_new_workers(start_server, mode):
    server = start_http_server(start_server, mode, worker_num=2, task_worker_num=1)
    old = {event["pid"] for event in server.events("worker_start")}
    with httpx.Client(timeout=10) as client:
        assert ask(server, "server.reload()", client) is True
        server.wait_events("worker_start", 6)
        new = {event["pid"] for event in server.events("worker_start")} - old
        assert len(new) == 3

        def served_by_new_workers() -> bool:
            try:
                return ask(server, "os.getpid()", client) in new
            except httpx.HTTPError:  # BASE mode: the old worker's keep-alive connection was closed
                return False

        wait_until(served_by_new_workers, message="no request reached a new worker")
        assert client.get(url(server, "/detach")).text == "from a task worker"
        assert server.wait_event("task_respond")["pid"] in new
    if mode == "PROCESS":  # the reactor keeps the connections: the same keep-alive connection went on
        assert len(server.events("connect")) == 1


def test_a_base_worker_that_stops_as_it_accepts_a_client_answers_that_clients_request_then_closes(start_server):
    """The stop (SIGTERM, as a reload sends) and a new client come in the same loop pass: the worker stops
    accepting, but the client it has accepted already sent its request; it is answered, with Connection: close,
    instead of a reset."""
    server = start_http_server(start_server, "BASE", task_worker_num=0)
    with connect(server.port) as blocking:
        blocking.sendall(b"GET /block?gate=go HTTP/1.1\r\nHost: x\r\n\r\n")
        pid = server.wait_event("blocking")["pid"]  # the worker's loop is held: what follows waits for one pass
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not signal_pending(pid, signal.SIGTERM), message="the worker never took its SIGTERM")
        with connect(server.port) as late:
            late.sendall(b"GET /?name=late HTTP/1.1\r\nHost: x\r\n\r\n")
            server.release("go")
            assert read_response(blocking)[2] == b"unblocked"
            _, headers, body = read_response(late)
            assert closed_by_server(late) == b""

    assert body == b"hello late"
    assert headers["connection"] == "close"
    assert len(server.events("connect")) == 2


def test_a_request_that_reaches_a_stopping_base_worker_as_the_grace_runs_out_is_answered(start_server):
    """An idle keep-alive connection of a stopping worker waits STOP_GRACE for one more request. One that reaches
    the socket while the loop is busy, as the grace runs out, is read and answered before the connection closes:
    closing over it would reset the connection (the loop runs its timers before it reads the sockets)."""
    server = start_http_server(start_server, "BASE", task_worker_num=0)
    with connect(server.port) as blocking, connect(server.port) as idle:
        for sock in (blocking, idle):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(sock)[2] == b"hello world"
        pid = server.wait_event("request")["pid"]
        os.kill(pid, signal.SIGTERM)
        stopped = time.monotonic()
        wait_until(lambda: not signal_pending(pid, signal.SIGTERM), message="the worker never took its SIGTERM")
        # The grace of both connections begins now; the first one's next request holds the loop past its end.
        wait_until(lambda: time.monotonic() >= stopped + STOP_GRACE / 4)
        blocking.sendall(b"GET /block?gate=go HTTP/1.1\r\nHost: x\r\n\r\n")
        server.wait_event("blocking")
        wait_until(lambda: time.monotonic() >= stopped + STOP_GRACE * 1.5, timeout=2 * STOP_GRACE)
        idle.sendall(b"GET /?name=idle HTTP/1.1\r\nHost: x\r\n\r\n")
        server.release("go")
        assert read_response(blocking)[2] == b"unblocked"
        _, headers, body = read_response(idle)
        assert closed_by_server(idle) == b""

    assert body == b"hello idle"
    assert headers["connection"] == "close"
