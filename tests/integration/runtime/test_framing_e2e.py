"""Framing end to end, in both modes: packages cut by package_eof or a length header, whatever the reads."""

from __future__ import annotations

import random
import struct

import pytest

from serverkit import wait_until

MODES = ["Mode.BASE", "Mode.PROCESS"]

SERVER = """
server = recording_server(mode=MODE, worker_num=2, **settings)
serve(server)
"""


def start(start_server, mode: str, **settings):
    return start_server(SERVER.replace("MODE", mode), settings=settings)


def received(server, fd: int) -> list[bytes]:
    return [e["data"] for e in server.events("receive", fd=fd)]


@pytest.mark.parametrize("mode", MODES)
def test_one_write_holding_three_eof_packages_makes_three_receive_calls(start_server, connect, mode):
    server = start(start_server, mode, open_eof_split=True, package_eof="\r\n")
    client = connect(server.port)

    client.send(b"one\r\ntwo\r\nthree\r\n")

    assert client.recv_exactly(len(b"one\r\ntwo\r\nthree\r\n")) == b"one\r\ntwo\r\nthree\r\n"
    fd = server.wait_event("connect")["fd"]
    wait_until(lambda: len(received(server, fd)) == 3)
    assert received(server, fd) == ["one\r\n", "two\r\n", "three\r\n"]


@pytest.mark.parametrize("mode", MODES)
def test_a_length_prefixed_package_sent_one_byte_at_a_time_is_one_receive(start_server, connect, mode):
    server = start(
        start_server,
        mode,
        open_length_check=True,
        package_length_type="N",
        package_length_offset=0,
        package_body_offset=4,
    )
    client = connect(server.port)
    package = struct.pack("!I", 11) + b"hello world"

    for byte in package:
        client.send(bytes([byte]))

    assert client.recv_exactly(len(package)) == package
    fd = server.wait_event("connect")["fd"]
    wait_until(lambda: received(server, fd))
    assert len(received(server, fd)) == 1


@pytest.mark.parametrize("mode", MODES)
def test_an_oversized_length_closes_only_that_connection(start_server, connect, mode):
    server = start(
        start_server,
        mode,
        open_length_check=True,
        package_length_type="N",
        package_body_offset=4,
        package_max_length=65536,
    )
    bystander, offender = connect(server.port), connect(server.port)
    assert bystander.request(struct.pack("!I", 2) + b"ok") == struct.pack("!I", 2) + b"ok"

    offender.send(struct.pack("!I", 10_000_000) + b"x" * 100)

    assert offender.recv_eof() == b""
    wait_until(lambda: "1201" in server.log(), message="the oversized package was not logged with 1201")
    assert bystander.request(struct.pack("!I", 5) + b"still") == struct.pack("!I", 5) + b"still"


@pytest.mark.parametrize("mode", MODES)
def test_random_bytes_from_twenty_clients_leave_the_server_serving(start_server, connect, mode):
    server = start(
        start_server,
        mode,
        open_length_check=True,
        package_length_type="n",
        package_body_offset=2,
        package_max_length=65536,
    )
    noise = random.Random(7)
    flooders = [connect(server.port) for _ in range(20)]
    for client in flooders:
        for _ in range(5):
            try:
                client.send(noise.randbytes(noise.randint(1, 4096)))
            except OSError:
                break  # the server may already have closed this one

    probe = connect(server.port)
    assert probe.request(struct.pack("!H", 4) + b"ping") == struct.pack("!H", 4) + b"ping"
    assert server.alive()
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("mode", MODES)
def test_eof_check_delivers_the_buffer_only_when_it_ends_with_the_eof(start_server, connect, mode):
    server = start(start_server, mode, open_eof_check=True, package_eof="\n")
    client = connect(server.port)

    client.send(b"a\nb")  # does not end with the EOF: nothing yet
    client.send(b"c\n")

    assert client.recv_exactly(5) == b"a\nbc\n"
    fd = server.wait_event("connect")["fd"]
    wait_until(lambda: received(server, fd))
    assert "".join(received(server, fd)) == "a\nbc\n"
    assert all(package.endswith("\n") for package in received(server, fd))
