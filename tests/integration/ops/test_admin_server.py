"""AdminServer over real sockets, with real clients (httpx, curl), driven by a select() loop in a thread."""

from __future__ import annotations

import errno
import json
import socket
import subprocess
import time
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from opskit import AdminFactory, make_snapshot
from pyswoole.errors import ServerError
from pyswoole.ops.admin import MAX_REQUEST_BYTES, AdminServer

CURL = "/usr/bin/curl"


def raw_request(address: tuple[str, int], request: bytes, timeout: float = 5) -> bytes:
    """Send ``request`` and read the answer until the server closes."""
    with socket.create_connection(address, timeout=timeout) as client:
        client.sendall(request)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    return answer


def test_metrics_are_prometheus_text(admin: AdminFactory) -> None:
    loop = admin()
    response = httpx.get(loop.url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert response.headers["connection"] == "close"
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    assert families["pyswoole_requests"].samples[0].value == 5000
    assert families["pyswoole_connections"].samples[0].value == 7


def test_stats_is_the_snapshot_as_json(admin: AdminFactory) -> None:
    snapshot = make_snapshot(requests=123)
    loop = admin(snapshot=lambda: snapshot)
    response = httpx.get(loop.url + "/stats?ignored=query")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == snapshot


def test_the_dashboard_page_fetches_nothing_from_outside(admin: AdminFactory) -> None:
    loop = admin()
    response = httpx.get(loop.url + "/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "connect-src 'self'" in response.headers["content-security-policy"]
    assert 'id="rps"' in response.text


def test_curl_gets_every_page(admin: AdminFactory) -> None:
    loop = admin()
    for path in ("/", "/metrics", "/stats"):
        result = subprocess.run(
            [CURL, "-sS", "--fail", "-o", "/dev/null", "-w", "%{http_code}", loop.url + path],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert (result.returncode, result.stdout, result.stderr) == (0, "200", "")


def test_unknown_path_is_404_and_other_methods_405(admin: AdminFactory) -> None:
    loop = admin()
    assert httpx.get(loop.url + "/nope").status_code == 404
    response = httpx.post(loop.url + "/metrics", content=b"x" * 1000)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert httpx.delete(loop.url + "/").status_code == 405


def test_head_has_the_headers_without_the_body(admin: AdminFactory) -> None:
    snapshot = make_snapshot()
    loop = admin(snapshot=lambda: snapshot)
    get, head = httpx.get(loop.url + "/stats"), httpx.head(loop.url + "/stats")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"]


def test_a_token_is_required_on_every_path_but_the_page(admin: AdminFactory) -> None:
    loop = admin(token="s3cret-token")
    for path in ("/metrics", "/stats", "/nope", "/index.html", "//"):
        response = httpx.get(loop.url + path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert b"pyswoole" not in response.content  # nothing of the server's numbers
    page = httpx.get(loop.url + "/?from=bookmark")
    assert page.status_code == 200  # the page holds no data: it asks for the token and sends it itself
    assert page.headers["content-type"].startswith("text/html")
    assert httpx.head(loop.url + "/").status_code == 200
    assert httpx.post(loop.url + "/").status_code == 405
    assert httpx.get(loop.url + "/stats", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(loop.url + "/stats", headers={"Authorization": "s3cret-token"}).status_code == 401
    assert httpx.get(loop.url + "/stats", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
    result = subprocess.run(
        [CURL, "-sS", "-H", "Authorization: Bearer s3cret-token", loop.url + "/metrics"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "pyswoole_requests_total 5000" in result.stdout.splitlines()


def test_a_failing_snapshot_is_a_500_and_the_server_serves_on(admin: AdminFactory) -> None:
    calls: list[int] = []

    def snapshot() -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("not ready")
        return make_snapshot()

    loop = admin(snapshot=snapshot)
    assert httpx.get(loop.url + "/stats").status_code == 500
    assert httpx.get(loop.url + "/stats").status_code == 200


def test_garbage_is_a_400(admin: AdminFactory) -> None:
    loop = admin()
    assert raw_request(loop.server.address, b"\x00\x01 not http\r\n\r\n").startswith(b"HTTP/1.1 400 ")


def test_an_oversized_request_is_refused(admin: AdminFactory) -> None:
    loop = admin()
    request = b"GET / HTTP/1.1\r\nX-Big: " + b"a" * MAX_REQUEST_BYTES + b"\r\n\r\n"
    assert raw_request(loop.server.address, request).startswith(b"HTTP/1.1 431 ")
    request = b"GET / HTTP/1.1\r\nContent-Length: 20000\r\n\r\n"
    with socket.create_connection(loop.server.address, timeout=5) as client:
        client.sendall(request)
        client.sendall(b"b" * 20000)
        assert client.recv(100).startswith(b"HTTP/1.1 413 ")


def test_a_request_split_in_pieces_is_answered(admin: AdminFactory) -> None:
    loop = admin()
    with socket.create_connection(loop.server.address, timeout=5) as client:
        for piece in (b"GET /sta", b"ts HTTP/1.1\r\nHo", b"st: x\r\n", b"\r\n"):
            client.sendall(piece)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert json.loads(body)["mode"] == "PROCESS"


def test_a_stalled_client_does_not_stall_the_others_and_is_dropped_at_its_deadline(admin: AdminFactory) -> None:
    loop = admin(timeout=0.5)
    stalled = socket.create_connection(loop.server.address, timeout=5)
    stalled.sendall(b"GET /metr")
    started = time.monotonic()
    assert httpx.get(loop.url + "/stats").status_code == 200
    assert time.monotonic() - started < 0.5
    assert stalled.recv(100) == b""  # closed by the server, without an answer
    assert 0.4 < time.monotonic() - started < 3
    stalled.close()


def test_a_client_that_does_not_read_its_answer_does_not_stall_the_loop(admin: AdminFactory) -> None:
    big = make_snapshot()
    big["padding"] = "x" * (8 << 20)  # far more than the socket buffers hold
    loop = admin(timeout=1.0, snapshot=lambda: big)
    sluggish = socket.socket()
    sluggish.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sluggish.connect(loop.server.address)
    sluggish.sendall(b"GET /stats HTTP/1.1\r\n\r\n")
    sluggish.settimeout(5)
    assert sluggish.recv(1, socket.MSG_PEEK) == b"H"  # the answer has begun; most of it cannot leave yet
    passes = loop.passes
    assert httpx.get(loop.url + "/metrics").status_code == 200
    assert loop.passes > passes
    assert loop.longest_pass < 0.25, loop.longest_pass
    deadline = time.monotonic() + 5
    while loop.server._connections:  # dropped at its deadline, the answer unfinished
        assert time.monotonic() < deadline
        time.sleep(0.02)
    received = 0
    try:
        while chunk := sluggish.recv(65536):
            received += len(chunk)
    except ConnectionResetError:
        pass
    assert received < len(json.dumps(big, separators=(",", ":")))
    sluggish.close()


def test_connections_over_the_limit_wait_for_a_free_slot(admin: AdminFactory) -> None:
    loop = admin(max_connections=2, timeout=0.6)
    stalled = [socket.create_connection(loop.server.address, timeout=5) for _ in range(2)]
    deadline = time.monotonic() + 5
    while len(loop.server._connections) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    waiting = socket.create_connection(loop.server.address, timeout=5)  # accepted by the kernel only
    waiting.sendall(b"GET /stats HTTP/1.1\r\n\r\n")
    waiting.settimeout(0.3)
    with pytest.raises(TimeoutError):
        waiting.recv(100)
    waiting.settimeout(5)
    assert waiting.recv(100).startswith(b"HTTP/1.1 200 ")  # served once the stalled ones timed out
    for client in [*stalled, waiting]:
        client.close()


def test_an_address_in_use_is_a_server_error_with_its_errno() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken, pytest.raises(ServerError) as raised:
        AdminServer("127.0.0.1", taken.getsockname()[1], None, make_snapshot)
    assert raised.value.code == errno.EADDRINUSE
    assert "admin_server" in str(raised.value)


def test_serves_on_ipv6_loopback(admin: AdminFactory) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        loop = admin(host="::1")
    except ServerError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    assert loop.url.startswith("http://[::1]:")
    assert httpx.get(loop.url + "/stats").status_code == 200
