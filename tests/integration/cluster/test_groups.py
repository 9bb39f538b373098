"""Groups across nodes: ``join``, ``leave``, ``members`` and ``broadcast`` (with ``exclude``), and a session that
closes leaving every group it was in, in both run modes."""

from __future__ import annotations

import pytest

from serverkit import wait_until

MODES = ["BASE", "PROCESS"]


@pytest.mark.parametrize("mode", MODES)
def test_broadcast_reaches_every_member_on_every_node_but_the_excluded(start_node, node_client, mode):
    a = start_node("a", mode)
    b = start_node("b", mode, worker_num=2)
    a1, a2 = node_client(a), node_client(a)
    b1, b2, b3 = node_client(b), node_client(b), node_client(b)
    for client in (a1, a2, b1, b2):
        assert client.ask("server.cluster.join(fd, 'room')") is True
    assert b3.ask("server.cluster.join(fd, 'elsewhere')") is True
    expected = sorted([["a", a1.fd], ["a", a2.fd], ["b", b1.fd], ["b", b2.fd]])
    assert b3.ask("server.cluster.members('room')") == expected
    assert a1.ask(f"server.cluster.broadcast('room', 'hello room', ('a', {a1.fd}))") is True
    assert a1.ask(f"server.cluster.broadcast('room', b'bytes', [('b', {b2.fd}), ('a', {a2.fd})])") is True
    assert a2.received(1) == ["hello room"]
    assert b1.received(2) == ["hello room", b"bytes"]
    assert b2.received(1) == ["hello room"]
    assert a1.received(1) == [b"bytes"]
    assert a1.ask("1") == 1 and a1.inbox == [b"bytes"]  # nothing more came
    assert b3.ask("1") == 1 and b3.inbox == []


def test_a_broadcast_to_plain_tcp_sessions_sends_the_bytes(start_node, node_client):
    from serverkit import connect_stream

    a = start_node("a")
    b = start_node("b", kind="Server")
    plain = connect_stream(("127.0.0.1", b.port), server=b)
    plain.send(b"ask server.cluster.join(fd, 'g')\n")
    assert plain.recv_line() == b"=true\n"
    assert node_client(a).ask("server.cluster.broadcast('g', 'raw bytes')") is True
    assert plain.recv_exactly(len("raw bytes")) == b"raw bytes"


def test_leave_and_join_checks(start_node, node_client):
    a = start_node("a")
    client = node_client(a)
    assert client.ask("server.cluster.leave(fd, 'g')") is False
    assert client.ask("server.get_last_error() == ErrorCode.SESSION_NOT_EXIST") is True
    assert client.ask("server.cluster.join(123456, 'g')") is False  # no such session
    assert client.ask("server.get_last_error() == ErrorCode.SESSION_NOT_EXIST") is True
    assert client.ask("server.cluster.join(fd, '')") is False
    assert client.ask("server.get_last_error() == ErrorCode.INVALID_PARAMS") is True
    assert client.ask("server.cluster.join(fd, 'g') and server.cluster.leave(fd, 'g')") is True
    assert client.ask("server.cluster.members('g')") == []


@pytest.mark.parametrize("mode", MODES)
def test_a_session_that_closes_leaves_all_its_groups(start_node, node_client, mode):
    a = start_node("a", mode)
    b = start_node("b", mode, worker_num=2)
    watcher = node_client(a)
    leaving = node_client(b)
    staying = node_client(b)
    for group in ("g1", "g2"):
        assert leaving.ask(f"server.cluster.join(fd, '{group}')") is True
    assert staying.ask("server.cluster.join(fd, 'g1')") is True
    leaving.close()
    wait_until(lambda: watcher.ask("server.cluster.members('g1')") == [["b", staying.fd]])
    assert watcher.ask("server.cluster.members('g2')") == []


def test_memberships_and_the_node_outlive_a_killed_worker_and_a_reload(start_node, node_client):
    import os
    import signal

    b = start_node("b", "PROCESS", worker_num=2)
    member = node_client(b)
    assert member.ask("server.cluster.join(fd, 'g')") is True
    victim = next(e["pid"] for e in b.events("worker_start") if e["worker_id"] == 1)
    os.kill(victim, signal.SIGKILL)
    b.wait_events("worker_start", 3)  # the manager forked a new worker 1
    os.kill(b.pid, signal.SIGUSR1)  # every worker stops gracefully, the new worker 1 among them
    b.wait_events("worker_start", 5)
    assert member.ask("server.cluster.members('g')") == [["b", member.fd]]
    assert member.ask("server.cluster.nodes()") == ["b"]
