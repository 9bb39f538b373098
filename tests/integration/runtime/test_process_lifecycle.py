"""PROCESS mode: the process tree, where each callback runs, graceful stop, a worker's crash, the master's sends,
UDP."""

from __future__ import annotations

import os
import signal

import pytest

from processkit import start_process_server, whoami, worker_pids
from serverkit import _live_pids, _proc_stat, wait_until

pytestmark = pytest.mark.timeout(30)


def threads_of(pid: int) -> list[str]:
    return sorted(os.listdir(f"/proc/{pid}/task"))


def children_of(pid: int) -> list[int]:
    return _live_pids(lambda ppid, pgrp: ppid == pid)


def test_the_master_runs_reactor_threads_and_forks_one_manager_that_forks_the_workers(start_server, connect):
    server = start_process_server(start_server, worker_num=3, reactor_num=2)
    workers = worker_pids(server, 3)
    manager_start = server.wait_event("manager_start")
    start = server.wait_event("start")
    connect(server.port).request(b"x")  # serving

    master, manager = server.pid, manager_start["pid"]
    assert server.children() == [manager]
    assert sorted(children_of(manager)) == sorted(workers.values())
    assert sorted(workers) == [0, 1, 2]
    assert len(threads_of(master)) == 1 + 2, "main thread + reactor_num reactor threads"
    assert len(threads_of(manager)) == 1
    assert all(len(threads_of(pid)) == 1 for pid in workers.values())
    # Start in the master, ManagerStart in the manager, WorkerStart in the workers.
    assert (start["pid"], start["master_pid"], start["manager_pid"]) == (master, master, manager)
    assert manager_start["ppid"] == master
    for event in server.events("worker_start"):
        assert (event["ppid"], event["master_pid"], event["manager_pid"]) == (manager, master, manager)
        assert event["worker_id_property"] == event["get_worker_id"] == event["worker_id"]


def test_manager_start_and_worker_start_already_know_the_master_pid(start_server):
    server = start_process_server(start_server)

    manager_start = server.wait_event("manager_start")
    worker_starts = server.wait_events("worker_start", 2)

    assert manager_start["manager_pid"] == manager_start["pid"]
    assert manager_start["master_pid"] == server.pid
    assert [e["master_pid"] for e in worker_starts] == [server.pid, server.pid]


def test_sigterm_runs_before_shutdown_worker_stops_manager_stop_then_shutdown(start_server, connect):
    server = start_process_server(start_server, worker_num=2)
    workers = worker_pids(server, 2)
    manager = server.wait_event("manager_start")["pid"]
    client = connect(server.port)
    assert client.request(b"x") == b"x"

    server.signal(signal.SIGTERM)

    assert server.wait_exit() == 0
    kinds = server.kinds()
    before, stop, shutdown = kinds.index("before_shutdown"), kinds.index("manager_stop"), kinds.index("shutdown")
    worker_stops = [i for i, kind in enumerate(kinds) if kind == "worker_stop"]
    assert kinds.count("before_shutdown") == kinds.count("manager_stop") == kinds.count("shutdown") == 1
    assert before < min(worker_stops) and max(worker_stops) < stop < shutdown
    assert sorted((e["worker_id"], e["pid"]) for e in server.events("worker_stop")) == sorted(workers.items())
    assert server.events("before_shutdown")[0]["pid"] == server.pid
    assert server.events("shutdown")[0]["pid"] == server.pid
    assert server.events("manager_stop")[0]["pid"] == manager
    assert server.events("start_returned")[0]["value"] is True
    assert client.recv_eof() == b""
    wait_until(lambda: server.group() == [], message=lambda: f"left behind: {server.group()}")


def test_a_killed_worker_is_replaced_and_the_master_keeps_its_connection(start_server, connect):
    server = start_process_server(start_server, worker_num=2)
    worker_pids(server, 2)
    client = connect(server.port)
    before = whoami(client)

    os.kill(before["pid"], signal.SIGKILL)
    wait_until(lambda: (_proc_stat(before["pid"]) or "Z")[0] in "ZX", message="the killed worker lives on")
    client.send(b"sent while no worker was there")

    replacement = server.wait_event(
        lambda e: e["kind"] == "worker_start" and e["worker_id"] == before["worker_id"] and e["pid"] != before["pid"],
        timeout=10,
    )
    assert client.recv_exactly(len(b"sent while no worker was there")) == b"sent while no worker was there"
    assert client.request(b"still connected") == b"still connected"
    after = whoami(client)
    assert after == {**before, "pid": replacement["pid"]}
    assert server.events("receive", data="still connected")[-1]["pid"] == replacement["pid"]
    assert server.events("close") == []
    assert server.alive()


def test_send_from_a_timer_in_the_master_reaches_a_client(start_server, connect):
    server = start_server("""
        server = recording_server(mode=Mode.PROCESS, worker_num=2, reactor_num=2)
        greeted = set()

        def greet(timer_id):
            for fd in server.connections:
                if fd not in greeted:
                    greeted.add(fd)
                    record("greet", fd=fd, ok=server.send(fd, b"hello from the master %d\\n" % os.getpid()))

        server.on("Start", lambda s: record("start", tick=s.tick(20, greet)))
        serve(server)
    """)
    start = server.wait_event("start")
    assert isinstance(start["tick"], int) and start["tick"] > 0
    client = connect(server.port)

    assert client.recv_line() == b"hello from the master %d\n" % server.pid
    greet = server.wait_event("greet")
    assert (greet["pid"], greet["ok"]) == (server.pid, True)
    assert client.request(b"and the workers still echo") == b"and the workers still echo"


def test_udp_datagrams_go_to_a_worker_whose_sendto_replies(start_server, dgram):
    server = start_server("""
        server = recording_server(mode=Mode.PROCESS, sock_type=SockType.UDP, worker_num=2, reactor_num=2)
        serve(server)
    """)
    workers = worker_pids(server, 2)
    client = dgram(bind=("127.0.0.1", 0))

    for i in range(5):
        client.sendto(b"datagram %d" % i, ("127.0.0.1", server.port))
        reply, sender = client.recvfrom(65536)
        assert (reply, sender) == (b"datagram %d" % i, ("127.0.0.1", server.port))

    packets = server.wait_events("packet", 5)
    assert [p["data"] for p in packets] == [f"datagram {i}" for i in range(5)]
    assert all(p["pid"] in workers.values() for p in packets)
    assert {p["client_info"]["address"] for p in packets} == {"127.0.0.1"}
    assert {p["client_info"]["port"] for p in packets} == {client.getsockname()[1]}
    # Default dispatch_mode 2 keys datagrams by the sender's address: one sender, one worker.
    assert len({p["pid"] for p in packets}) == 1
    assert server.events("start")[0]["pid"] == server.pid != packets[0]["pid"]


def test_a_large_udp_datagram_round_trips_intact(start_server, dgram):
    server = start_server("""
        server = recording_server(mode=Mode.PROCESS, sock_type=SockType.UDP, worker_num=2, reactor_num=2)
        serve(server)
    """)
    client = dgram()
    payload = bytes(range(256)) * 255 + b"x" * 227  # 65507 bytes: the largest UDP payload over IPv4

    client.sendto(payload, ("127.0.0.1", server.port))

    assert client.recv(65536) == payload


def test_an_async_start_callback_runs_on_the_masters_loop(start_server, connect):
    server = start_server("""
        server = recording_server(mode=Mode.PROCESS, worker_num=1)

        @server.on("Start")
        async def on_start(server):
            await asyncio.sleep(0.01)
            record("async_start", pid=os.getpid(), master_pid=server.master_pid)

        serve(server)
    """)

    started = server.wait_event("async_start")
    assert started["pid"] == started["master_pid"]
    assert connect(server.port).request(b"served") == b"served"
