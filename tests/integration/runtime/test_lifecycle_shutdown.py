"""Graceful stop: shutdown(), SIGTERM and SIGINT stop every process in order and start() returns True."""

from __future__ import annotations

import signal
import time

import pytest

from serverkit import wait_until

SERVER = """
server = recording_server(worker_num=worker_num)
serve(server)
"""


def stop(server, connect, how: str) -> None:
    if how == "shutdown()":
        assert connect(server).ask("server.shutdown()") is True
    elif how.endswith(" to the group"):
        server.signal_group(getattr(signal, how.split()[0]))
    else:
        server.signal(getattr(signal, how))


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "shutdown()", "SIGTERM to the group", "SIGINT to the group"])
@pytest.mark.parametrize("worker_num", [1, 2])
def test_a_graceful_stop_stops_every_worker_then_shuts_down(start_server, connect, worker_num, how):
    server = start_server(SERVER, worker_num=worker_num)
    workers = server.wait_events("worker_start", worker_num)

    stop(server, connect, how)

    assert server.wait_exit() == 0
    kinds = server.kinds()
    stops = server.events("worker_stop")
    assert sorted(e["worker_id"] for e in stops) == list(range(worker_num))
    assert {e["pid"] for e in stops} == {w["pid"] for w in workers}
    assert kinds[-2:] == ["shutdown", "start_returned"]
    assert server.events("shutdown")[0]["pid"] == server.pid
    assert server.events("start_returned")[0]["value"] is True
    wait_until(lambda: server.group() == [], message=lambda: f"left behind: {server.group()}")


def test_the_manager_stops_after_its_workers_and_before_shutdown(start_server):
    server = start_server(SERVER, worker_num=2)
    server.wait_events("worker_start", 2)

    server.signal(signal.SIGTERM)

    assert server.wait_exit() == 0
    kinds = server.kinds()
    assert kinds.count("manager_stop") == 1
    assert server.events("manager_stop")[0]["pid"] == server.pid
    last_worker_stop = max(i for i, kind in enumerate(kinds) if kind == "worker_stop")
    assert last_worker_stop < kinds.index("manager_stop") < kinds.index("shutdown")


def test_manager_start_runs_in_the_starting_process_only_with_several_workers(start_server):
    single = start_server(SERVER, worker_num=1)
    multi = start_server(SERVER, worker_num=2)
    single.wait_event("worker_start")
    multi.wait_events("worker_start", 2)

    assert multi.wait_event("manager_start")["pid"] == multi.pid
    single.signal(signal.SIGTERM)
    assert single.wait_exit() == 0
    assert single.events("manager_start") == []


def test_a_stopped_server_closes_its_connections(start_server, connect):
    server = start_server(SERVER, worker_num=2)
    clients = [connect(server) for _ in range(3)]
    for client in clients:
        client.request(b"x")

    server.signal(signal.SIGTERM)

    assert server.wait_exit() == 0
    assert [client.recv_eof() for client in clients] == [b"", b"", b""]


@pytest.mark.parametrize("worker_num", [1, 2])
def test_an_idle_server_stops_promptly(start_server, worker_num):
    server = start_server(SERVER, worker_num=worker_num)
    server.wait_events("worker_start", worker_num)

    signalled = time.monotonic()
    server.signal(signal.SIGTERM)
    server.wait_exit()

    assert time.monotonic() - signalled < 0.75


def test_a_graceful_stop_lets_an_in_flight_coroutine_reply_before_closing(start_server, connect):
    server = start_server("""
        server = recording_server(worker_num=1)

        @server.on("Receive")
        async def on_receive(server, fd, reactor_id, data):
            server.shutdown()
            await asyncio.sleep(0.05)  # the worker handles its stop meanwhile
            record("replying", ok=server.send(fd, b"last reply"))

        serve(server)
    """)
    client = connect(server)

    client.send(b"stop the server")

    assert server.wait_exit() == 0
    assert server.events("replying")[0]["ok"] is True
    assert client.recv_eof() == b"last reply"


def test_a_client_that_reads_nothing_does_not_hold_up_the_stop(start_server, connect):
    server = start_server("""
        server = recording_server(worker_num=1, max_wait_time=1)
        server.on("Receive", lambda s, fd, rid, data: record("flooded", ok=s.send(fd, b"x" * (16 << 20))))
        serve(server)
    """)
    client = connect(server)
    client.send(b"flood me, I will not read")
    server.wait_event("flooded")

    server.signal(signal.SIGTERM)

    assert server.wait_exit(timeout=5) == 0
    assert server.kinds()[-2:] == ["shutdown", "start_returned"]
