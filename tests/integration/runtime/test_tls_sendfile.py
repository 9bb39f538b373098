"""TLS ports (``SockType.TCP | SockType.SSL``) and ``sendfile()``, in both modes: a real ``ssl`` client gets its
echo, Connect comes only after the handshake, a required client certificate is enforced, a missing certificate
stops start(); a file arrives intact and in order with what was sent around it, over plain TCP and over TLS."""

from __future__ import annotations

import json
import os
import socket
import ssl
from pathlib import Path

import pytest

from programs import need
from serverkit import recv_exactly
from tlscerts import make_test_certificates

pytestmark = pytest.mark.timeout(30)

MODES = [pytest.param(1, id="base"), pytest.param(2, id="process")]  # Mode.BASE, Mode.PROCESS
MIB = 1 << 20


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    need("openssl")
    return make_test_certificates(tmp_path_factory.mktemp("certs"))


def tls_client(port: int, certs: dict[str, str], with_certificate: bool = False) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=certs["ca.pem"])
    if with_certificate:
        context.load_cert_chain(certs["client.pem"], certs["client.key"])
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return context.wrap_socket(sock, server_hostname="127.0.0.1")


def recv_line(sock: socket.socket) -> bytes:
    data = bytearray()
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise AssertionError(f"EOF before end of line: {bytes(data)!r}")
        data += chunk
    return bytes(data)


TLS_SERVER = """
server = recording_server(mode=Mode(mode), sock_type=SockType.TCP | SockType.SSL, worker_num=1,
                          ssl_cert_file=certs["server.pem"], ssl_key_file=certs["server.key"], **settings)
echo = server.get_callback("Receive")

@server.on("Receive")
def on_receive(server, fd, reactor_id, data):
    if data == b"file":
        record("sent", ok=[server.send(fd, b"<"), server.sendfile(fd, path), server.send(fd, b">")])
    elif data == b"whoami":
        info = server.get_client_info(fd)
        server.send(fd, json.dumps({"fd": fd, "cert": info.get("ssl_client_cert", "")}) + "\\n")
    else:
        echo(server, fd, reactor_id, data)

serve(server)
"""


def start_tls_server(start_server, certs, mode, path="", **settings):
    return start_server(TLS_SERVER, mode=mode, certs=certs, path=path, settings=settings)


# TLS ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_tls_client_gets_its_echo_and_connect_waits_for_the_handshake(start_server, certs, mode):
    server = start_tls_server(start_server, certs, mode)
    server.wait_event("worker_start")
    silent = socket.create_connection(("127.0.0.1", server.port), timeout=10)  # never says hello

    with tls_client(server.port, certs) as client:
        client.sendall(b"over tls")
        assert recv_exactly(client, 8) == b"over tls"
        assert client.version() in ("TLSv1.2", "TLSv1.3")
        fd = server.wait_event("receive")["fd"]
        # The silent client is still in its handshake: no session to see yet, as in Swoole.
        client.sendall(b"ask [list(server.connections), server.get_client_info(fd) is not None]\n")
        assert json.loads(recv_line(client))["value"] == [[fd], True]

    assert server.wait_event("receive")["data"] == "over tls"
    assert [e["fd"] for e in server.events("connect")] == [fd], "no Connect before a handshake"
    silent.close()


@pytest.mark.parametrize("mode", MODES)
def test_a_required_client_certificate_is_verified_and_shown_in_client_info(start_server, certs, mode):
    server = start_tls_server(start_server, certs, mode, ssl_verify_peer=True, ssl_client_cert_file=certs["ca.pem"])
    server.wait_event("worker_start")

    # TLS 1.3: the server's refusal comes with the data
    with (
        pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)),
        tls_client(server.port, certs) as anonymous,
    ):
        anonymous.sendall(b"let me in")
        if not anonymous.recv(100):
            raise ConnectionResetError("closed without a reply")

    with tls_client(server.port, certs, with_certificate=True) as client:
        client.sendall(b"whoami")
        me = json.loads(recv_line(client))
        client.sendall(b"ask server.stats()['abort_count']\n")
        aborted = json.loads(recv_line(client))["value"]

    assert "BEGIN CERTIFICATE" in me["cert"]
    assert aborted == 1, "a failed handshake counts in abort_count"
    assert [e["fd"] for e in server.events("connect")] == [me["fd"]]


@pytest.mark.parametrize("mode", MODES)
def test_an_ssl_port_without_its_certificate_does_not_start(start_server, mode):
    server = start_server(
        """
        server = recording_server(mode=Mode(mode), sock_type=SockType.TCP | SockType.SSL, worker_num=1)
        serve(server)
    """,
        mode=mode,
    )

    assert server.wait_exit() != 0
    error = server.wait_event("start_returned")["error"]
    assert error.startswith("ServerError") and "ssl_cert_file" in error
    assert server.events("worker_start") == []


# sendfile ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mib_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("files") / "one.mib"
    path.write_bytes(os.urandom(MIB))
    return path


SENDFILE_SERVER = """
server = recording_server(mode=Mode(mode), worker_num=1)
echo = server.get_callback("Receive")

@server.on("Receive")
def on_receive(server, fd, reactor_id, data):
    if data.startswith(b"file"):
        offset, length = (int(n) for n in data.split()[1:]) if b" " in data else (0, 0)
        record("sent", ok=[server.send(fd, b"<"), server.sendfile(fd, path, offset, length), server.send(fd, b">")])
    elif data.startswith(b"ask "):
        answer(server, fd, data, path=path)
    else:
        echo(server, fd, reactor_id, data)

serve(server)
"""


@pytest.mark.parametrize("mode", MODES)
def test_sendfile_sends_a_mib_intact_in_order_with_the_sends_around_it(start_server, connect, mib_file, mode):
    server = start_server(SENDFILE_SERVER, mode=mode, path=str(mib_file))
    client = connect(server.port)
    content = mib_file.read_bytes()

    client.send(b"file")
    assert client.recv_exactly(MIB + 2) == b"<" + content + b">"
    client.send(b"file 1000 5000")
    assert client.recv_exactly(5002) == b"<" + content[1000:6000] + b">"

    assert [e["ok"] for e in server.events("sent")] == [[True, True, True]] * 2
    assert client.request(b"after") == b"after"


@pytest.mark.parametrize("mode", MODES)
def test_sendfile_refuses_a_missing_file_a_bad_range_and_negative_numbers(start_server, connect, mib_file, mode):
    server = start_server(SENDFILE_SERVER, mode=mode, path=str(mib_file))
    client = connect(server.port)

    def attempt(call: str) -> list:
        return client.ask(f"[server.sendfile(fd, {call}), server.get_last_error()]")

    assert attempt("'/nonexistent/file'") == [False, 2]  # ENOENT
    assert attempt(f"path, {MIB}") == [False, 9004]  # offset at the end of the file
    assert attempt(f"path, 10, {MIB}") == [False, 9004]  # beyond the end
    assert attempt("path, -1") == [False, 9004]
    assert attempt("'/tmp'") == [False, 9004]  # not a regular file
    assert client.request(b"nothing was sent") == b"nothing was sent"


@pytest.mark.parametrize("mode", MODES)
def test_sendfile_over_tls_sends_the_file_intact(start_server, certs, mib_file, mode):
    server = start_tls_server(start_server, certs, mode, path=str(mib_file))
    server.wait_event("worker_start")

    with tls_client(server.port, certs) as client:
        client.sendall(b"file")
        received = recv_exactly(client, MIB + 2)

    assert received == b"<" + mib_file.read_bytes() + b">"
    assert server.wait_event("sent")["ok"] == [True, True, True]
