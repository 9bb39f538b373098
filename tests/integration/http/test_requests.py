"""HttpServer's requests over real sockets, in both run modes: what a Request holds (query, headers, cookies, forms,
uploads, the raw request), request bodies (Content-Length, chunked, 100-continue), keep-alive, pipelining,
HTTP/1.0 and Connection: close. Clients: curl, http.client, httpx, and a raw socket for what they never send."""

from __future__ import annotations

import http.client
import json
import os

import httpx

from httpkit import closed_by_server, connect, curl, read_response, start_http_server, url
from serverkit import wait_until


def test_query_headers_cookies_and_server_fields(start_server, mode):
    server = start_http_server(start_server, mode)
    with httpx.Client(timeout=10) as client:
        answer = client.get(
            url(server, "/echo/caf%C3%A9?a=1&a=2&list[]=x&list[]=y&space=%20s+p"),
            headers=[("X-Repeated", "one"), ("X-Repeated", "two"), ("Cookie", "session=abc%3D%3D; theme=dark")],
        )
        local_port = int(answer.extensions["network_stream"].get_extra_info("client_addr")[1])
    echo = answer.json()
    assert echo["method"] == "GET"
    assert echo["get"] == {"a": "2", "list": ["x", "y"], "space": " s p"}
    assert echo["header"]["x-repeated"] == "one, two"
    assert echo["header"]["host"] == f"127.0.0.1:{server.port}"
    assert echo["cookie"] == {"session": "abc==", "theme": "dark"}
    assert echo["post"] is None and echo["files"] == {} and echo["content"] == ""
    fields = echo["server"]
    assert fields["request_method"] == "GET"
    assert fields["request_uri"] == "/echo/caf%C3%A9"
    assert fields["path_info"] == "/echo/café"
    assert fields["query_string"] == "a=1&a=2&list[]=x&list[]=y&space=%20s+p"
    assert fields["server_protocol"] == "HTTP/1.1"
    assert (fields["remote_addr"], fields["remote_port"]) == ("127.0.0.1", local_port)
    assert fields["server_port"] == server.port
    assert type(fields["master_time"]) is int and type(fields["request_time"]) is int
    assert abs(fields["request_time_float"] - fields["request_time"]) < 1


def test_a_urlencoded_form_the_raw_body_and_the_whole_request(start_server, mode):
    server = start_http_server(start_server, mode)
    result = curl("--data", "name=J%C3%BCrgen&tags[]=a&tags[]=b&empty=", url(server, "/echo?from=query"))
    echo = json.loads(result.stdout)
    assert echo["method"] == "POST"
    assert echo["post"] == {"name": "Jürgen", "tags": ["a", "b"], "empty": ""}
    assert echo["get"] == {"from": "query"}
    body = "name=J%C3%BCrgen&tags[]=a&tags[]=b&empty="
    assert echo["content"] == body
    assert echo["data"].startswith("POST /echo?from=query HTTP/1.1\r\n")
    assert echo["data"].endswith("\r\n\r\n" + body)
    assert "content-type: application/x-www-form-urlencoded" in echo["data"].lower()


def test_multipart_uploads_land_in_upload_tmp_dir_and_are_removed_after_the_callback(start_server, mode, tmp_path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    server = start_http_server(start_server, mode, upload_tmp_dir=str(uploads))
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40)
    result = curl("-F", "title=holiday", "-F", f"photo=@{photo};type=image/png", url(server, "/echo"))
    echo = json.loads(result.stdout)
    assert echo["post"] == {"title": "holiday"}
    upload = echo["files"]["photo"]
    assert upload["name"] == "photo.png" and upload["type"] == "image/png" and upload["error"] == 0
    assert upload["size"] == photo.stat().st_size
    assert upload["content"].encode("latin-1") == photo.read_bytes()
    assert upload["dir"] == str(uploads)
    wait_until(lambda: not os.path.exists(upload["tmp_name"]), message="the upload's temp file was kept")
    # httpx builds its multipart body its own way: several files and a field, in one request.
    with httpx.Client(timeout=10) as client:
        answer = client.post(
            url(server, "/echo"),
            data={"note": "two files"},
            files={"a": ("a.txt", b"first file", "text/plain"), "b": ("b.bin", b"\x00" * 1_500_000)},
        )
    echo = answer.json()
    assert echo["post"] == {"note": "two files"}
    assert {name: (info["name"], info["size"]) for name, info in echo["files"].items()} == {
        "a": ("a.txt", 10),
        "b": ("b.bin", 1_500_000),
    }
    wait_until(lambda: os.listdir(uploads) == [], message="temp files were kept")


def test_chunked_request_bodies_arrive_whole(start_server, mode):
    server = start_http_server(start_server, mode)

    def pieces():
        for i in range(50):
            yield b"piece %03d|" % i

    with httpx.Client(timeout=10) as client:
        answer = client.post(url(server, "/echo"), content=pieces())
    echo = answer.json()
    assert echo["header"]["transfer-encoding"] == "chunked"
    assert echo["content"] == "".join(f"piece {i:03d}|" for i in range(50))
    result = curl("-H", "Transfer-Encoding: chunked", "--data-binary", "x" * 70000, url(server, "/echo"))
    assert json.loads(result.stdout)["content"] == "x" * 70000


def test_keep_alive_serves_many_requests_on_one_connection(start_server, mode):
    server = start_http_server(start_server, mode)
    with httpx.Client(timeout=10) as client:
        answers = [client.get(url(server, f"/?name={i}")).text for i in range(5)]
    assert answers == [f"hello {i}" for i in range(5)]
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    for i in range(3):
        connection.request("POST", "/echo", body=b"body %d" % i)
        reply = connection.getresponse()
        assert reply.getheader("Connection") == "keep-alive"
        assert json.loads(reply.read())["content"] == f"body {i}"
    connection.close()
    fds = {event["fd"] for event in server.wait_events("request", 8)}
    assert len(fds) == 2  # one connection per client
    assert len(server.events("connect")) == 2


def test_pipelined_requests_are_answered_in_the_order_they_came(start_server, mode):
    server = start_http_server(start_server, mode, worker_num=2)
    with connect(server.port) as sock:
        sock.sendall(
            b"GET /hold?gate=first HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /?name=second HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nthird"
        )
        server.wait_event("request", path="/hold")
        server.release("first")
        buffer = bytearray()
        bodies = [read_response(sock, buffer)[2] for _ in range(3)]
    assert bodies[0] == b"released"
    assert bodies[1] == b"hello second"
    assert json.loads(bodies[2])["content"] == "third"


def test_expect_100_continue_is_answered_before_the_body_is_sent(start_server, mode):
    server = start_http_server(start_server, mode)
    with connect(server.port) as sock:
        sock.sendall(b"PUT /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n")
        interim = b""
        while b"\r\n\r\n" not in interim:
            interim += sock.recv(100)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello world")
        status, _, body = read_response(sock)
    assert status == b"HTTP/1.1 200 OK"
    assert json.loads(body)["content"] == "hello world"
    # curl waits for the 100 before it sends the body (up to its expect100 timeout, which we shorten to fail).
    result = curl("--expect100-timeout", "30", "-H", "Expect: 100-continue", "--data-binary", "y" * 3000,
                  "--write-out", "%{time_total}", "--output", "/dev/null", url(server, "/echo"))  # fmt: skip
    assert float(result.stdout) < 10


def test_a_pipelined_expect_100_continue_gets_its_100_only_after_the_answer_before_it(start_server, mode):
    server = start_http_server(start_server, mode)
    with connect(server.port) as sock:
        sock.sendall(
            b"GET /hold?gate=first HTTP/1.1\r\nHost: x\r\n\r\n"
            b"PUT /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
        )
        server.wait_event("request", path="/hold")
        server.release("first")
        buffer = bytearray()
        assert read_response(sock, buffer)[2] == b"released"  # a 100 here would be read as this answer
        assert read_response(sock, buffer)[0] == b"HTTP/1.1 100 Continue"
        sock.sendall(b"body")
        assert json.loads(read_response(sock, buffer)[2])["content"] == "body"
        # A client that sends its body without waiting gets no 100 at all (a late one would precede an answer).
        sock.sendall(
            b"GET /hold?gate=second HTTP/1.1\r\nHost: x\r\n\r\n"
            b"PUT /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nbody"
            b"GET /?name=last HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        server.wait_events("request", 2, path="/hold")
        server.release("second")
        bodies = [read_response(sock, buffer)[2] for _ in range(3)]
        assert bodies[0] == b"released" and json.loads(bodies[1])["content"] == "body" and bodies[2] == b"hello last"
        sock.sendall(b"GET /?name=after HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock, buffer)[:3:2] == (b"HTTP/1.1 200 OK", b"hello after")


def test_expect_100_continue_with_a_length_over_package_max_length_gets_413_at_once(start_server, mode):
    server = start_http_server(start_server, mode, package_max_length=100_000)
    with connect(server.port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 100001\r\n\r\n")
        answer = closed_by_server(sock)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"100 Continue" not in answer
    assert server.events("request") == []


def test_http_10_closes_after_the_response_unless_the_client_asks_for_keep_alive(start_server, mode):
    server = start_http_server(start_server, mode)
    with connect(server.port) as sock:
        sock.sendall(b"GET /?name=old HTTP/1.0\r\n\r\n")
        answer = closed_by_server(sock)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") or answer.startswith(b"HTTP/1.0 200 OK\r\n")
    assert b"\r\nConnection: close\r\n" in answer
    assert answer.endswith(b"hello old")
    with connect(server.port) as sock:
        buffer = bytearray()
        for name in (b"one", b"two"):
            sock.sendall(b"GET /?name=%b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" % name)
            _, headers, body = read_response(sock, buffer)
            assert headers["connection"] == "keep-alive"
            assert body == b"hello " + name
    # A streamed response to an HTTP/1.0 client cannot be chunked: it ends when the connection does.
    with connect(server.port) as sock:
        sock.sendall(b"GET /stream?n=2&last=end HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        answer = closed_by_server(sock)
    assert b"transfer-encoding" not in answer.lower()
    assert answer.endswith(b"\r\n\r\nchunk 0;chunk 1;end")


def test_connection_close_from_the_client_or_the_application_closes_after_the_response(start_server, mode):
    server = start_http_server(start_server, mode)
    with connect(server.port) as sock:
        sock.sendall(b"GET /?name=last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n")
        answer = closed_by_server(sock)
    assert b"\r\nConnection: close\r\n" in answer
    assert answer.endswith(b"hello last")  # the request after it is never answered
    assert len(server.wait_events("request", 1)) == 1
    server.wait_event("close")
    with connect(server.port) as sock:
        sock.sendall(b"GET /ask?expr=response.header('Connection','close') HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = closed_by_server(sock)
    assert b"\r\nConnection: close\r\n" in answer and answer.endswith(b"\r\n\r\ntrue")


def test_a_trickled_request_reaches_the_worker_whole_while_other_clients_are_served(start_server, mode):
    server = start_http_server(start_server, mode)

    def dispatch_count(client: httpx.Client) -> int:
        return int(client.get(url(server, "/ask?expr=server.stats()['dispatch_count']")).json())

    with httpx.Client(timeout=10) as client, connect(server.port) as slow:
        before = dispatch_count(client)
        slow.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n")
        for i in range(10):
            slow.sendall(bytes([65 + i]) * 1000)
            assert client.get(url(server, f"/?name={i}")).text == f"hello {i}"
        _, _, body = read_response(slow)
        assert json.loads(body)["content"] == "".join(chr(65 + i) * 1000 for i in range(10))
        after = dispatch_count(client)
    # 10 requests, the slow one once (not once per piece), and the second ask: each ask may or may not see its
    # own dispatch yet (the counters are published once per loop pass).
    assert 11 <= after - before <= 13
    assert [event["body_size"] for event in server.events("request", path="/echo")] == [10000]
