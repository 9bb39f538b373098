"""What the server records of each answered request: the access log (``http_access_log``), one line per request in
its format, and the responses by status class in the published snapshot (what ``/metrics`` exports)."""

from __future__ import annotations

import re
import socket

import httpx

from httpkit import http_counts, start_http_server, url
from serverkit import wait_until


def test_the_access_log_has_one_line_per_request_in_its_format(start_server, mode, tmp_path):
    log_file = tmp_path / "server.log"
    server = start_http_server(
        start_server, mode, http_access_log=True, log_file=str(log_file),
        http_access_log_format='%(h)s "%(r)s" %(s)s %(b)s %({x-trace}i)s',
    )  # fmt: skip
    with httpx.Client() as client:
        assert client.get(url(server, "/hello?name=log"), headers={"X-Trace": "abc"}).status_code == 200
        assert client.get(url(server, "/raise")).status_code == 500

    def lines() -> list[str]:
        return re.findall(r'127\.0\.0\.1 "GET [^"]*" \d+ \S+ \S+', log_file.read_text())

    wait_until(lambda: len(lines()) == 2, message=lambda: log_file.read_text())
    hello, failed = lines()
    assert hello == '127.0.0.1 "GET /hello?name=log HTTP/1.1" 200 9 abc'
    assert failed.startswith('127.0.0.1 "GET /raise HTTP/1.1" 500 ')


def test_an_unknown_access_log_atom_is_refused_before_start(start_server, mode):
    server = start_server(
        """
        from pyswoole import HttpServer
        server = HttpServer("127.0.0.1", 0, getattr(Mode, mode))
        server.set(http_access_log=True, http_access_log_format="%(nope)s")
        server.on("Request", lambda request, response: response.end())
        try:
            server.start()
        except ValueError as exc:
            record("refused", error=str(exc))
        """,
        mode=mode,
    )
    assert "http_access_log_format" in server.wait_event("refused")["error"]


def test_responses_are_counted_by_status_class_in_the_snapshot(start_server, mode, tmp_path):
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "page.txt").write_text("static")
    pid_file = tmp_path / "server.pid"
    server = start_http_server(
        start_server, mode, pid_file=str(pid_file), stats_timer_interval=100,
        document_root=str(tmp_path / "public"), enable_static_handler=True,
    )  # fmt: skip
    with httpx.Client() as client:
        for _ in range(3):
            assert client.get(url(server, "/hello")).status_code == 200
        assert client.get(url(server, "/page.txt")).text == "static"  # the static handler's answer
        assert client.get(url(server, "/raise")).status_code == 500
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as bad:
        bad.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert bad.recv(100).startswith(b"HTTP/1.1 400")
    wait_until(lambda: http_counts(pid_file) == {"1xx": 0, "2xx": 4, "3xx": 0, "4xx": 1, "5xx": 1},
               message=lambda: f"counts: {http_counts(pid_file)}")  # fmt: skip
