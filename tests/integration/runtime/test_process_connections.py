"""PROCESS mode connections: big payloads both ways, many clients, a slow reader, send/close from workers and the
shared connection table that every worker reads (model §5.4)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest

from processkit import pattern, start_process_server, whoami, worker_pids
from serverkit import StreamClient, wait_until

pytestmark = pytest.mark.timeout(30)

MIB = 1 << 20


@dataclass
class Placed:
    client: StreamClient
    fd: int
    socket_fd: int
    worker_id: int
    pid: int


def one_connection_per_worker(server, connect, worker_num: int = 2) -> list[Placed]:
    """Connections until every worker owns one (dispatch_mode 2: socket_fd % worker_num); index = worker id."""
    placed: dict[int, Placed] = {}
    for _ in range(4 * worker_num):
        client = connect(server.port)
        me = whoami(client)
        placed.setdefault(me["worker_id"], Placed(client, me["fd"], me["socket_fd"], me["worker_id"], me["pid"]))
        if len(placed) == worker_num:
            return [placed[i] for i in range(worker_num)]
    raise AssertionError(f"connections landed only on workers {sorted(placed)}")


# Payloads -----------------------------------------------------------------------------------------------


def test_a_3_mib_upload_arrives_in_several_receives_and_is_echoed_intact(start_server, connect):
    server = start_process_server(start_server)
    client = connect(server.port)
    fd = whoami(client)["fd"]
    payload = pattern(3 * MIB)
    echoed = bytearray()

    def read_echo() -> None:
        echoed.extend(client.recv_exactly(len(payload)))

    reader = threading.Thread(target=read_echo, daemon=True)
    reader.start()
    client.send(payload)
    reader.join(20)

    assert not reader.is_alive(), f"only {len(echoed)} bytes came back"
    assert bytes(echoed) == payload
    receives = server.events("receive", fd=fd)[1:]  # after the whoami probe
    sizes = [e.get("size", len(e.get("data", ""))) for e in receives]
    assert sum(sizes) == len(payload)
    assert len(sizes) > 1, "raw mode: the upload arrives in several Receive calls"
    assert len({e["pid"] for e in receives}) == 1


def test_a_3_mib_send_from_a_worker_arrives_intact(start_server, connect):
    server = start_process_server(start_server)
    client = connect(server.port)

    client.send(b"cmd big %d" % (3 * MIB))

    assert client.recv_exactly(3 * MIB) == pattern(3 * MIB)
    assert server.wait_event("cmd_result", op="big")["ok"] is True
    assert client.request(b"after") == b"after"


def test_500_concurrent_connections_are_all_served(start_server, connect):
    server = start_process_server(start_server)
    worker_pids(server, 2)
    clients = [connect(server.port) for _ in range(500)]

    for i, client in enumerate(clients):
        client.send(b"client %d" % i)
    replies = [client.recv_exactly(len(b"client %d" % i)) for i, client in enumerate(clients)]

    assert replies == [b"client %d" % i for i in range(500)]
    stats = clients[0].ask("server.stats()")
    assert (stats["connection_num"], stats["accept_count"]) == (500, 500)
    assert len({e["pid"] for e in server.events("receive")}) == 2
    for client in clients[1:]:
        client.close()
    wait_until(
        lambda: clients[0].ask("server.stats()['connection_num']") == 1,
        message="the closed connections were never released",
    )


def test_a_client_that_does_not_read_does_not_stall_the_others(start_server, connect):
    # One worker and one reactor thread: the slow reader shares everything with the other client.
    server = start_process_server(start_server, worker_num=1, reactor_num=1)
    slow, other = connect(server.port), connect(server.port)

    # 8 MiB the client does not read for now: about half fits in the kernel's buffers, the rest waits in the
    # reactor's output buffer (under the default socket_buffer_size of 8 MiB).
    slow.send(b"cmd flood %d 16" % (512 * 1024))
    assert server.wait_event("cmd_result", op="flood")["ok"] == [True] * 16

    for i in range(50):
        assert other.request(b"still served %d" % i) == b"still served %d" % i
    assert slow.recv_exactly(16 * 512 * 1024) == pattern(512 * 1024) * 16


def test_client_info_counts_the_bytes_waiting_for_a_slow_reader(start_server, connect):
    server = start_process_server(start_server, worker_num=1, reactor_num=1)
    slow, other = connect(server.port), connect(server.port)
    slow_fd = whoami(slow)["fd"]

    slow.send(b"cmd flood %d 16" % (512 * 1024))
    server.wait_event("cmd_result", op="flood")

    queued = wait_until(
        lambda: other.ask(f"server.get_client_info({slow_fd})['send_queued_bytes']"),
        timeout=3,
        message="send_queued_bytes stayed 0 while megabytes wait for the client",
    )
    assert 0 < queued <= 8 * MIB
    assert slow.recv_exactly(16 * 512 * 1024) == pattern(512 * 1024) * 16


# Sends as big as the buffer, so that the one that crosses the high watermark (80 %) also passes the limit:
# one that travels chunked (the reactor's general path), one that fits a datagram (its per-package path).
@pytest.mark.parametrize("size", [MIB, 60_000])
def test_an_overflowing_output_buffer_refuses_sends_with_1009_until_it_drains(start_server, connect, size):
    server = start_process_server(start_server, worker_num=1, reactor_num=1, socket_buffer_size=size)
    slow, other = connect(server.port), connect(server.port)
    slow_fd = whoami(slow)["fd"]
    queued = f"server.get_client_info({slow_fd})['send_queued_bytes']"
    send = f"[{queued}, server.send({slow_fd}, b'z' * {size}), server.get_last_error()]"

    accepted = 0
    while accepted * size < 40 * MIB:  # the kernel takes a few MiB, the reactor one send more; then overflow
        queued_before, sent, code = other.ask(send)
        if not sent:
            break
        assert queued_before < size, f"send accepted with {queued_before} bytes already queued"
        accepted += 1
    else:
        raise AssertionError("40 MiB were accepted for a client that reads nothing")
    assert code == 1009

    assert slow.recv_exactly(accepted * size) == b"z" * (accepted * size)  # nothing accepted was lost
    wait_until(lambda: other.ask(send)[1], timeout=5, message="send() still refused after the buffer drained")
    assert slow.recv_exactly(size) == b"z" * size


def test_a_send_leaves_before_the_callback_that_made_it_blocks(start_server, connect):
    server = start_process_server(start_server, worker_num=1, reactor_num=1)
    client = connect(server.port)

    client.send(b"ask [server.send(fd, b'early\\n'), __import__('time').sleep(3)]\n")
    started = time.monotonic()
    assert client.recv_line() == b"early\n"
    assert time.monotonic() - started < 2, "the reply waited for the blocking call"
    assert client.recv_json() == {"value": [True, None]}


# Errors of send() ---------------------------------------------------------------------------------------


def test_send_to_an_unknown_fd_fails_with_1005(start_server, connect):
    server = start_process_server(start_server)
    client = connect(server.port)

    assert client.ask("[server.send(9999, b'x'), server.get_last_error()]") == [False, 1005]
    assert client.ask("[server.exist(9999), server.get_client_info(9999)]") == [False, None]


def test_a_send_larger_than_buffer_output_size_fails_with_1203(start_server, connect):
    server = start_process_server(start_server, buffer_output_size=64 * 1024)
    client = connect(server.port)

    assert client.ask("[server.send(fd, b'x' * (64 * 1024 + 1)), server.get_last_error()]") == [False, 1203]
    assert client.ask("server.send(fd, b'')") is False  # and the connection still works:
    assert client.request(b"y" * 1000) == b"y" * 1000


# The shared connection table ----------------------------------------------------------------------------


def test_every_worker_sees_every_connection(start_server, connect):
    server = start_process_server(start_server, worker_num=2)
    a, b = one_connection_per_worker(server, connect)
    assert a.pid != b.pid

    info = b.client.ask(f"server.get_client_info({a.fd})")  # asked in the other worker
    assert info["remote_ip"] == "127.0.0.1"
    assert info["remote_port"] == a.client.local_port
    assert info["server_port"] == server.port
    assert info["socket_fd"] == a.socket_fd
    assert b.client.ask(f"server.exist({a.fd})") is True
    assert a.client.ask(f"server.exist({b.fd})") is True
    opened = sorted(set(b.client.ask("list(server.connections)")))
    assert {a.fd, b.fd} <= set(opened)
    assert sorted(a.client.ask("server.get_client_list(0, 100)")) == opened
    stats_a, stats_b = a.client.ask("server.stats()"), b.client.ask("server.stats()")
    for stats in (stats_a, stats_b):
        assert stats["connection_num"] == len(opened)
        assert stats["accept_count"] == len(opened)
        assert stats["worker_num"] == 2


def test_a_worker_can_send_to_a_connection_another_worker_handles(start_server, connect):
    server = start_process_server(start_server, worker_num=2)
    a, b = one_connection_per_worker(server, connect)

    assert b.client.ask(f"server.send({a.fd}, b'from the other worker')") is True

    assert a.client.recv_exactly(len(b"from the other worker")) == b"from the other worker"


# Closing ------------------------------------------------------------------------------------------------


def test_close_from_the_worker_runs_close_with_reactor_id_minus_1_then_the_client_sees_eof(start_server, connect):
    server = start_process_server(start_server)
    client = connect(server.port)
    fd = whoami(client)["fd"]

    client.send(b"cmd close")

    assert client.recv_eof() == b""
    (close,) = server.events("close", fd=fd)  # Close ran before the reactor was asked to close the socket
    assert close["reactor_id"] == -1
    assert close["info"]["remote_ip"] == "127.0.0.1"
    assert server.wait_event("cmd_result", op="close")["ok"] is True


def test_close_of_another_workers_connection_runs_close_in_its_owner(start_server, connect):
    server = start_process_server(start_server, worker_num=2)
    a, b = one_connection_per_worker(server, connect)

    assert b.client.ask(f"server.close({a.fd})") is True

    assert a.client.recv_eof() == b""
    close = server.wait_event("close", fd=a.fd)
    assert (close["pid"], close["reactor_id"]) == (a.pid, -1)
    assert b.client.request(b"still here") == b"still here"
    wait_until(lambda: b.client.ask(f"server.exist({a.fd})") is False, message="the closed session still exists")


def test_a_client_close_runs_close_with_its_reactor_id_and_client_info_still_works(start_server, connect):
    server = start_process_server(start_server, reactor_num=2)
    client = connect(server.port)
    me = whoami(client)

    client.close()

    close = server.wait_event("close", fd=me["fd"])
    assert close["reactor_id"] == me["reactor_id"] >= 0
    assert close["pid"] == me["pid"]
    assert close["info"]["remote_ip"] == "127.0.0.1"
    assert close["info"]["socket_fd"] == me["socket_fd"]


def test_close_after_a_2_mib_send_delivers_every_byte_before_eof(start_server, connect):
    server = start_process_server(start_server)
    client = connect(server.port)

    client.send(b"cmd bigclose %d" % (2 * MIB))

    assert client.recv_eof() == pattern(2 * MIB)
    assert server.wait_event("cmd_result", op="bigclose")["ok"] == [True, True]


def test_close_with_reset_makes_the_client_see_a_reset(start_server, connect):
    server = start_process_server(start_server)
    client = connect(server.port)
    fd = whoami(client)["fd"]

    client.send(b"cmd reset")

    with pytest.raises(ConnectionResetError):
        client.recv_eof()
    assert server.wait_event("cmd_result", op="reset")["ok"] is True
    assert server.wait_event("close", fd=fd)["reactor_id"] == -1


def test_a_closed_session_refuses_sends_and_a_second_close(start_server, connect):
    server = start_process_server(start_server, worker_num=2)
    a, b = one_connection_per_worker(server, connect)
    assert b.client.ask(f"server.close({a.fd})") is True
    assert a.client.recv_eof() == b""
    wait_until(lambda: b.client.ask(f"server.exist({a.fd})") is False, message="the closed session still exists")

    sent, code = b.client.ask(f"[server.send({a.fd}, b'late'), server.get_last_error()]")

    assert sent is False and code in (1001, 1004, 1005)
    assert b.client.ask(f"server.close({a.fd})") is False
