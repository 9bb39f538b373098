"""A failing callback or a misbehaving client costs one call or one connection, never the worker."""

from __future__ import annotations

import pytest

from serverkit import wait_until

RAISING = """
server = recording_server(worker_num=worker_num)
recorder = server.get_callback(event)

def raising(*args):
    recorder(*args)
    raise RuntimeError(f"raised in {event} on purpose")

server.on(event, raising)
serve(server)
"""


@pytest.mark.parametrize("worker_num", [1, 2])
@pytest.mark.parametrize("event", ["Connect", "Receive", "Close"])
def test_an_exception_in_a_callback_is_logged_and_the_worker_keeps_serving(start_server, connect, event, worker_num):
    server = start_server(RAISING, event=event, worker_num=worker_num)
    workers = server.wait_events("worker_start", worker_num)
    first = connect(server)
    assert first.request(b"one") == b"one"
    assert first.request(b"two") == b"two"
    first.close()
    server.wait_event("close")

    second = connect(server)

    assert second.request(b"three") == b"three"
    wait_until(lambda: f"raised in {event} on purpose" in server.log())
    assert "Traceback" in server.log()
    assert server.events("worker_start") == workers  # no worker died and was replaced
    assert server.alive()


def test_an_exception_in_worker_start_is_logged_and_the_worker_still_serves(start_server, connect):
    server = start_server(RAISING, event="WorkerStart", worker_num=1)
    wait_until(lambda: "raised in WorkerStart on purpose" in server.log())

    assert connect(server).request(b"served") == b"served"
    assert connect(server).request(b"and served") == b"and served"
    assert "Traceback" in server.log()
    assert server.alive() and server.events("start_returned") == []


def test_an_exception_in_packet_is_logged_and_the_worker_keeps_serving(start_server, dgram):
    server = start_server("""
        server = recording_server(worker_num=1, sock_type=SockType.UDP)
        echo = server.get_callback("Packet")

        @server.on("Packet")
        def on_packet(server, data, client_info):
            if data == b"raise":
                raise RuntimeError("raised in Packet on purpose")
            echo(server, data, client_info)

        serve(server)
    """)
    client = dgram()

    client.sendto(b"raise", ("127.0.0.1", server.port))
    client.sendto(b"after", ("127.0.0.1", server.port))

    assert client.recv(100) == b"after"
    wait_until(lambda: "raised in Packet on purpose" in server.log())
    assert "Traceback" in server.log()


def test_a_client_that_vanishes_mid_send_costs_only_its_connection(start_server, connect):
    server = start_server("""
        server = recording_server(worker_num=1, buffer_output_size="16M")
        echo = server.get_callback("Receive")

        @server.on("Receive")
        def on_receive(server, fd, reactor_id, data):
            if data == b"flood me":
                record("flooded", fd=fd, ok=server.send(fd, b"x" * (8 * 1024 * 1024)))
            else:
                echo(server, fd, reactor_id, data)

        serve(server)
    """)
    bystander = connect(server)
    assert bystander.request(b"before") == b"before"
    vanishing = connect(server)
    vanishing.send(b"flood me")
    flooded = server.wait_event("flooded")

    vanishing.close()

    assert flooded["ok"] is True
    server.wait_event("close", fd=flooded["fd"])
    assert bystander.request(b"after") == b"after"
    assert connect(server).request(b"newcomer") == b"newcomer"
    assert len(server.events("worker_start")) == 1
    assert server.alive()


def test_a_client_reset_is_reported_as_a_close(start_server, connect):
    server = start_server("""
        server = recording_server(worker_num=1)
        serve(server)
    """)
    client = connect(server)
    client.request(b"x")

    client.abort()

    close = server.wait_event("close")
    assert close["fd"] == server.events("connect")[0]["fd"]
    assert connect(server).request(b"y") == b"y"
