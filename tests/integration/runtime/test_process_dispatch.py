"""PROCESS mode dispatch: which worker each package goes to, per dispatch_mode and dispatch_func (model §5.5),
which modes deliver Connect/Close, and per-connection ordering in the hash modes."""

from __future__ import annotations

import socket
from collections import Counter

import pytest

from processkit import receive_pids, start_process_server, whoami, worker_of_pid, worker_pids
from serverkit import StreamClient, wait_until

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def connect_from():
    """``connect_from(source_ip, port)``: a client bound to a source address of 127/8 (closed at teardown)."""
    clients: list[StreamClient] = []

    def open_client(source_ip: str, port: int) -> StreamClient:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.bind((source_ip, 0))
        sock.connect(("127.0.0.1", port))
        client = StreamClient(sock)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()


def echo_n(client: StreamClient, n: int, tag: str = "m") -> None:
    """n request/response round trips: each package is sent alone and answered before the next."""
    for i in range(n):
        message = f"{tag}{i}".encode()
        assert client.request(message) == message


def test_mode_1_spreads_the_packages_of_one_connection_evenly_over_the_workers(start_server, connect):
    server = start_process_server(start_server, worker_num=3, dispatch_mode=1)
    workers = worker_pids(server, 3)
    client = connect(server.port)

    echo_n(client, 30)

    wid = worker_of_pid(server)
    fd = server.events("receive")[0]["fd"]
    per_worker = Counter(wid[pid] for pid in receive_pids(server, fd))
    assert per_worker == {0: 10, 1: 10, 2: 10}
    assert set(workers) == {0, 1, 2}


def test_mode_2_keeps_a_connection_on_socket_fd_modulo_worker_num(start_server, connect):
    server = start_process_server(start_server, worker_num=3, reactor_num=2)  # dispatch_mode 2 is the default
    workers = worker_pids(server, 3)
    clients = [connect(server.port) for _ in range(6)]

    seen = []
    for client in clients:
        me = whoami(client)
        echo_n(client, 4)
        seen.append(me)
        assert me["worker_id"] == me["socket_fd"] % 3
        assert me["reactor_id"] == me["socket_fd"] % 2  # reactor thread socket_fd % reactor_num owns it
        assert set(receive_pids(server, me["fd"])) == {workers[me["worker_id"]]}
        assert server.wait_event("connect", fd=me["fd"])["pid"] == workers[me["worker_id"]]
    assert len({me["socket_fd"] for me in seen}) == 6


def test_mode_3_gives_packages_to_idle_workers_only(start_server, connect):
    server = start_process_server(start_server, worker_num=2, dispatch_mode=3)
    workers = worker_pids(server, 2)
    a, b, c = connect(server.port), connect(server.port), connect(server.port)

    echo_n(a, 10, "idle")  # nobody busy: the packages of one connection go round the workers
    assert set(receive_pids(server, server.events("receive")[0]["fd"])) == set(workers.values())

    a.send(b"cmd hold")
    busy = server.wait_event("holding")["pid"]
    echo_n(b, 10, "one busy")
    one_busy = server.events(lambda e: e["kind"] == "receive" and e["data"].startswith("one busy"))
    assert {e["pid"] for e in one_busy} == {pid for pid in workers.values() if pid != busy}

    b.send(b"cmd hold")  # the other worker takes it: both are busy now
    holders = server.wait_events("holding", 2)
    assert {e["pid"] for e in holders} == set(workers.values())
    c.send(b"no idle worker")
    wait_until(lambda: "No idle worker is available" in server.log(), message=server.log)
    server.release("holding")
    assert a.recv_exactly(len(b"released")) == b"released"
    assert b.recv_exactly(len(b"released")) == b"released"
    assert c.recv_exactly(len(b"no idle worker")) == b"no idle worker"


def test_mode_4_sends_every_connection_from_one_ip_to_the_same_worker(start_server, connect_from):
    server = start_process_server(start_server, worker_num=3, dispatch_mode=4)
    workers = worker_pids(server, 3)
    # 127.0.0.N as a 32-bit integer modulo 3 (either byte order gives the same residue, as 2**24 % 3 == 1).
    expected = {"127.0.0.1": 2, "127.0.0.2": 0, "127.0.0.3": 1}

    for ip, worker_id in expected.items():
        for _connection in range(2):
            client = connect_from(ip, server.port)
            me = whoami(client)
            echo_n(client, 3)
            assert me["worker_id"] == worker_id, ip
            assert set(receive_pids(server, me["fd"])) == {workers[worker_id]}
            assert server.wait_event("connect", fd=me["fd"])["pid"] == workers[worker_id]
            assert client.ask(f"server.get_client_info({me['fd']})['remote_ip']") == ip


def test_mode_5_dispatches_by_the_uid_a_worker_bound(start_server, connect):
    server = start_process_server(start_server, worker_num=3, dispatch_mode=5)
    workers = worker_pids(server, 3)

    for uid in (7, 9, 5):
        client = connect(server.port)
        before = whoami(client)
        assert before["worker_id"] == before["socket_fd"] % 3  # no uid yet: socket fd
        assert client.ask(f"server.bind(fd, {uid})") is True
        after = whoami(client)
        echo_n(client, 3)
        assert after["worker_id"] == uid % 3
        assert set(receive_pids(server, after["fd"])[-4:]) == {workers[uid % 3]}
        assert client.ask("server.get_client_info(fd)['uid']") == uid
        assert client.ask("[server.bind(fd, 1), server.get_last_error()]")[0] is False  # bound once


def test_mode_8_sticks_every_event_of_a_connection_to_one_worker(start_server, connect):
    server = start_process_server(start_server, worker_num=3, dispatch_mode=8)
    workers = worker_pids(server, 3)
    wid = {pid: worker_id for worker_id, pid in workers.items()}
    clients = [connect(server.port) for _ in range(4)]

    for client in clients:
        echo_n(client, 2)
        me = whoami(client)
        echo_n(client, 5)
        pids = set(receive_pids(server, me["fd"]))
        assert pids == {me["pid"]}
        assert client.ask("server.get_client_info(fd)['worker_id']") == wid[me["pid"]]
    for client in clients:
        client.close()
    closes = server.wait_events("close", 4)
    for close in closes:
        fd = close["fd"]
        (pid,) = set(receive_pids(server, fd))
        assert server.events("connect", fd=fd)[0]["pid"] == pid, f"Connect of {fd} ran elsewhere"
        assert close["pid"] == pid, f"Close of {fd} ran elsewhere"


DISPATCH_FUNC = """
def choose(server, fd, kind, data):
    record("dispatch", fd=fd, type=kind, data=data)
    if data.startswith(b"to "):
        return int(data.split()[1])
    if data == b"drop":
        return -1
    return -3  # fall back to dispatch_mode

server = recording_server(mode=Mode.PROCESS, worker_num=3, dispatch_func=choose)
serve(server)
"""


def test_dispatch_func_chooses_the_worker_or_discards(start_server, connect):
    server = start_server(DISPATCH_FUNC)
    workers = worker_pids(server, 3)
    client = connect(server.port)

    for worker_id in (2, 0, 1, 2):
        message = f"to {worker_id} x".encode()
        assert client.request(message) == message
        assert server.events("receive", data=message.decode())[0]["pid"] == workers[worker_id]

    client.send(b"drop")
    server.wait_event("dispatch", data="drop")
    client.send(b"to 7 out of range")
    server.wait_event("dispatch", data="to 7 out of range")
    assert client.request(b"to 1 after") == b"to 1 after"
    assert server.events("receive", data="drop") == []
    assert server.events("receive", data="to 7 out of range") == []

    me = whoami(client)  # -3: falls back to dispatch_mode 2
    assert me["worker_id"] == me["socket_fd"] % 3
    dispatch = server.events("dispatch", data="to 1 after")[0]
    assert dispatch["fd"] == me["socket_fd"] and dispatch["type"] == 0  # socket fd, event type RECV_DATA
    assert dispatch["pid"] == server.pid  # runs in the master
    assert server.wait_event("start")["pid"] == server.pid


def test_dispatch_func_is_asked_for_connect_and_close_too(start_server, connect):
    server = start_server(DISPATCH_FUNC)
    worker_pids(server, 3)
    client = connect(server.port)
    me = whoami(client)

    client.close()

    server.wait_event("close", fd=me["fd"])
    kinds = [e["type"] for e in server.events("dispatch", fd=me["socket_fd"])]
    assert kinds[0] == 5 and kinds[-1] == 4, kinds  # CONNECT first, CLOSE last (model §5.1)


UNSAFE = "cannot set 'on{}' event when using dispatch_mode={}"


@pytest.mark.parametrize(
    "dispatch_mode, unsafe, delivered",
    [
        (1, False, False),
        (3, False, False),
        (5, False, False),
        (1, True, True),
        (2, False, True),
        (4, False, True),
        (8, False, True),
    ],
)
def test_connect_and_close_are_delivered_only_in_hash_modes(start_server, connect, dispatch_mode, unsafe, delivered):
    server = start_process_server(start_server, dispatch_mode=dispatch_mode, enable_unsafe_event=unsafe)
    worker_pids(server, 2)
    a = connect(server.port)
    fd = whoami(a)["fd"]

    a.close()
    b = connect(server.port)
    wait_until(lambda: b.ask("server.stats()['connection_num']") == 1, message="a's connection never went away")

    if delivered:
        assert server.wait_event("connect", fd=fd)["reactor_id"] >= 0
        close = server.wait_event("close", fd=fd)
        assert close["reactor_id"] >= 0
        assert close["info"]["remote_ip"] == "127.0.0.1"  # get_client_info works inside Close
        assert "cannot set" not in server.log()
    else:
        assert server.events("connect") == [] and server.events("close") == []
        log = server.log()
        assert UNSAFE.format("Connect", dispatch_mode) in log
        assert UNSAFE.format("Close", dispatch_mode) in log


@pytest.mark.parametrize("dispatch_mode", [2, 4, 8])
def test_the_hash_modes_keep_the_order_of_a_connections_bytes(start_server, connect, dispatch_mode):
    server = start_process_server(start_server, dispatch_mode=dispatch_mode)
    worker_pids(server, 2)
    client = connect(server.port)
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    messages = [b"%04d;" % i for i in range(1000)]
    stream = b"".join(messages)

    def received() -> int:
        return sum(len(e["data"]) for e in server.events("receive"))

    sent = 0
    for i, message in enumerate(messages, 1):  # pipelined: nothing waits for its answer ...
        client.send(message)
        sent += len(message)
        if i % 100 == 0:  # ... but every 100 messages the worker catches up, so there are many packages
            wait_until(
                lambda sent=sent: received() == sent, message=lambda sent=sent: f"{received()} of {sent} bytes received"
            )

    assert client.recv_exactly(len(stream)) == stream
    receives = server.events("receive")
    assert "".join(e["data"] for e in receives).encode() == stream
    assert len({e["pid"] for e in receives}) == 1
    assert len(receives) >= 10
