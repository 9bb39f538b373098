"""BASE mode with several workers: the starting process manages forked workers that all accept.

To put two connections in two different workers deterministically, the first connection blocks
its worker on a gate (``hold``); only the other worker is then free to accept the second one.
"""

from __future__ import annotations

from dataclasses import dataclass

from serverkit import ServerProcess, StreamClient

HOLDING = """
server = recording_server(worker_num=worker_num)
echo = server.get_callback("Receive")

@server.on("Receive")
def on_receive(server, fd, reactor_id, data):
    if data == b"hold":
        record("holding", fd=fd, reactor_id=reactor_id)
        hold("holding")
        server.send(fd, b"released")
    else:
        echo(server, fd, reactor_id, data)

serve(server)
"""


@dataclass
class TwoWorkers:
    """Two connections owned by two different workers."""

    a: StreamClient
    fd_a: int
    pid_a: int
    b: StreamClient
    fd_b: int
    pid_b: int


def connections_in_two_workers(server: ServerProcess, connect) -> TwoWorkers:
    a = connect(server)
    a.send(b"hold")
    holding = server.wait_event("holding")
    b = connect(server)
    assert b.request(b"ping") == b"ping"  # served while a's worker is blocked
    server.release("holding")
    assert a.recv_exactly(len(b"released")) == b"released"
    connect_b = server.events("connect")[1]
    return TwoWorkers(a, holding["fd"], holding["pid"], b, connect_b["fd"], connect_b["pid"])


def test_the_starting_process_becomes_the_manager_of_forked_workers(start_server):
    server = start_server(HOLDING, worker_num=3)

    workers = server.wait_events("worker_start", 3)
    manager_start = server.wait_event("manager_start")

    assert sorted(w["worker_id"] for w in workers) == [0, 1, 2]
    pids = [w["pid"] for w in workers]
    assert len(set(pids)) == 3 and server.pid not in pids
    assert all(w["ppid"] == server.pid for w in workers)
    assert all(w["manager_pid"] == server.pid for w in workers)
    assert manager_start["pid"] == server.pid
    assert manager_start["worker_id_property"] == -1
    assert sorted(server.children()) == sorted(pids)


def test_pid_properties_agree_with_the_methods_inside_a_worker(start_server, connect):
    server = start_server(HOLDING, worker_num=2)
    client = connect(server)

    pids = client.ask(
        "dict(manager_pid=server.manager_pid, get_manager_pid=server.get_manager_pid(), "
        "master_pid=server.master_pid, get_master_pid=server.get_master_pid(), "
        "worker_pid=server.worker_pid, own_pid=os.getpid())"
    )

    assert pids["manager_pid"] == pids["get_manager_pid"] == server.pid
    assert pids["master_pid"] == pids["get_master_pid"]
    assert pids["worker_pid"] == pids["own_pid"] != server.pid


def test_start_runs_once_in_worker_zero(start_server, connect):
    server = start_server(HOLDING, worker_num=3)
    workers = server.wait_events("worker_start", 3)
    start = server.wait_event("start")
    connect(server).request(b"x")

    worker_zero = next(w for w in workers if w["worker_id"] == 0)
    assert len(server.events("start")) == 1
    assert start["pid"] == worker_zero["pid"]


def test_an_idle_worker_accepts_while_another_is_busy(start_server, connect):
    server = start_server(HOLDING, worker_num=2)

    two = connections_in_two_workers(server, connect)

    assert two.pid_a != two.pid_b
    assert {two.pid_a, two.pid_b} == set(server.children())


def test_reactor_id_is_the_id_of_the_worker_that_owns_the_connection(start_server, connect):
    server = start_server(HOLDING, worker_num=2)

    connections_in_two_workers(server, connect)

    worker_id_of = {w["pid"]: w["worker_id"] for w in server.wait_events("worker_start", 2)}
    connects = server.events("connect")
    assert [c["reactor_id"] for c in connects] == [worker_id_of[c["pid"]] for c in connects]
    assert connects[0]["reactor_id"] != connects[1]["reactor_id"]


def test_session_ids_are_unique_and_increasing_across_workers(start_server, connect):
    server = start_server(HOLDING, worker_num=2)

    two = connections_in_two_workers(server, connect)
    for _ in range(6):
        connect(server).request(b"x")

    assert (two.fd_a, two.fd_b) == (1, 2)
    assert [c["fd"] for c in server.events("connect")] == list(range(1, 9))


def test_send_to_another_workers_session_is_forwarded_to_its_owner(start_server, connect):
    server = start_server(HOLDING, worker_num=2)
    two = connections_in_two_workers(server, connect)

    assert two.b.ask(f"server.send({two.fd_a}, b'relayed')") is True

    assert two.a.recv_exactly(len(b"relayed")) == b"relayed"


def test_a_large_send_to_another_workers_session_arrives_intact(start_server, connect):
    server = start_server(HOLDING, worker_num=2)
    two = connections_in_two_workers(server, connect)
    payload = bytes(range(256)) * 4096  # 1 MiB: more than one IPC message

    assert two.b.ask(f"server.send({two.fd_a}, bytes(range(256)) * 4096)") is True

    assert two.a.recv_exactly(len(payload)) == payload


def test_close_of_another_workers_session_is_forwarded_to_its_owner(start_server, connect):
    server = start_server(HOLDING, worker_num=2)
    two = connections_in_two_workers(server, connect)

    assert two.b.ask(f"server.close({two.fd_a})") is True

    assert two.a.recv_eof() == b""
    close = server.wait_event("close", fd=two.fd_a)
    assert (close["pid"], close["reactor_id"]) == (two.pid_a, -1)
    assert two.b.request(b"still here") == b"still here"


def test_each_worker_sees_only_its_own_connections(start_server, connect):
    server = start_server(HOLDING, worker_num=2)
    two = connections_in_two_workers(server, connect)

    assert two.b.ask("server.exist(fd)") is True
    assert two.b.ask(f"server.exist({two.fd_a})") is False
    assert two.b.ask("list(server.connections)") == [two.fd_b]
    assert two.a.ask("list(server.connections)") == [two.fd_a]


def test_stats_count_the_connections_of_all_workers(start_server, connect):
    server = start_server(HOLDING, worker_num=2)
    two = connections_in_two_workers(server, connect)

    stats = two.b.ask("server.stats()")

    assert stats["worker_num"] == 2
    assert stats["accept_count"] == 2
    assert stats["connection_num"] == 2


def test_many_concurrent_clients_are_all_served(start_server, connect):
    server = start_server(HOLDING, worker_num=2)
    clients = [connect(server) for _ in range(40)]

    for i, client in enumerate(clients):
        client.send(b"client %d" % i)

    assert [client.recv_exactly(len(b"client %d" % i)) for i, client in enumerate(clients)] == [
        b"client %d" % i for i in range(40)
    ]
    assert sorted(e["fd"] for e in server.events("connect")) == list(range(1, 41))


def test_sessions_of_closed_connections_are_freed(start_server, connect):
    server = start_server(HOLDING, worker_num=2)
    for i in range(100):
        client = connect(server)
        client.request(b"%d" % i)
        client.close()
    server.wait_events("close", 100)
    probe = connect(server)

    stats = probe.ask("server.stats()")

    assert (stats["accept_count"], stats["close_count"], stats["connection_num"]) == (101, 100, 1)
    assert probe.ask("list(server.connections)") == [101]
