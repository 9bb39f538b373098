"""Sessions across nodes: ``cluster.send`` and ``cluster.push`` reach a session of another node (through its
postman in worker 0, on to whichever worker or reactor owns the session), in both run modes; what cannot be
delivered is a counted, logged drop on the receiving node, never an error in the sender."""

from __future__ import annotations

import json

import pytest

from serverkit import connect_stream, wait_until

MODES = ["BASE", "PROCESS"]


@pytest.mark.parametrize("mode", MODES)
def test_push_reaches_a_websocket_session_of_another_node_owned_by_any_worker(start_node, node_client, mode):
    a = start_node("a", mode)
    b = start_node("b", mode, worker_num=2)
    sender = node_client(a)
    receivers = [node_client(b) for _ in range(2)]
    # BASE mode: the workers accept by themselves; go on until worker 1 (not the postman's) owns a session.
    while mode == "BASE" and {e["worker_id"] for e in b.events("open")} != {0, 1} and len(receivers) < 40:
        receivers.append(node_client(b))
    for index, receiver in enumerate(receivers):
        assert sender.ask(f"server.cluster.push('b', {receiver.fd}, 'text {index}')") is True
        assert sender.ask(f"server.cluster.push('b', {receiver.fd}, b'\\x00bin')") is True
    for index, receiver in enumerate(receivers):
        assert receiver.received(2) == [f"text {index}", b"\x00bin"]
    assert b.events("message") == []  # pushed to the client, not delivered to the node's own callbacks


@pytest.mark.parametrize("mode", MODES)
def test_send_reaches_a_tcp_session_of_another_node(start_node, mode):
    a = start_node("a", mode, kind="Server")
    b = start_node("b", mode, kind="Server", worker_num=2)
    sender = connect_stream(("127.0.0.1", a.port), server=a)
    receiver = connect_stream(("127.0.0.1", b.port), server=b)
    receiver.send(b"ask fd\n")
    fd = json.loads(receiver.recv_line()[1:])
    sender.send(f"ask server.cluster.send('b', {fd}, 'over there')\n".encode())
    assert sender.recv_line() == b"=true\n"
    assert receiver.recv_exactly(len("over there")) == b"over there"


def test_a_message_larger_than_1_mib_crosses_intact(start_node, node_client):
    a = start_node("a")
    b = start_node("b")
    sender = node_client(a)
    receiver = node_client(b)
    assert sender.ask(f"server.cluster.push('b', {receiver.fd}, bytes(range(256)) * 6144)") is True
    [message] = receiver.received(1, timeout=20)
    assert message == bytes(range(256)) * 6144  # 1.5 MiB


def test_a_session_that_is_gone_is_a_counted_drop_on_its_node_and_true_for_the_sender(start_node, node_client):
    a = start_node("a")
    b = start_node("b", kind="Server")
    sender = node_client(a)
    plain = connect_stream(("127.0.0.1", b.port), server=b)
    plain.send(b"ask fd\n")
    plain_fd = json.loads(plain.recv_line()[1:])
    assert sender.ask("server.cluster.push('b', 999999, 'to nobody')") is True
    assert sender.ask(f"server.cluster.push('b', {plain_fd}, 'to a plain session')") is True
    assert sender.ask("server.cluster.send('b', 999998, 'to nobody either')") is True

    def counts() -> dict:
        plain.send(b"ask server.cluster.stats()\n")
        return json.loads(plain.recv_line()[1:])

    stats = wait_until(lambda: (s := counts())["dropped_gone"] == 2 and s)
    assert stats["dropped_not_websocket"] == 1 and stats["delivered"] == 0
    assert "messages from other nodes dropped on b" in b.log()
    assert sender.ask("server.cluster.stats()")["sent"] == 3


def test_a_node_without_postman_counts_what_nobody_heard(start_node, node_client):
    a = start_node("a")
    sender = node_client(a)
    assert sender.ask("server.cluster.push('nowhere', 1, 'lost')") is True
    wait_until(lambda: sender.ask("server.cluster.stats()")["unheard"] == 1)
    assert "node 'nowhere' has no postman" in a.log()


def test_a_task_worker_sends_too(start_node, node_client):
    a = start_node("a", task_worker_num=1)
    b = start_node("b")
    receiver = node_client(b)
    sender = node_client(a)
    pushed = sender.ask(f"server.task_wait({{'eval': \"server.cluster.push('b', {receiver.fd}, 'from a task')\"}}, 5)")
    assert pushed["value"] is True  # a task worker has no loop: it publishes at once
    assert receiver.received(1) == ["from a task"]


def test_cluster_calls_on_a_server_without_a_cluster_fail_with_their_code(start_server):
    server = start_server(
        """
from pyswoole import ErrorCode
server = Server("127.0.0.1", 0)
report_port(server)
@server.on("WorkerStart")
def on_start(server, worker_id):
    record("calls", send=server.cluster.send("x", 1, "a"), nodes=server.cluster.nodes(),
           code=server.get_last_error(), expected=int(ErrorCode.CLUSTER_NOT_CONFIGURED), node=server.cluster.node)
    server.shutdown()
server.on("Receive", lambda *args: None)
serve(server)
"""
    )
    event = server.wait_event("calls")
    assert (event["send"], event["nodes"], event["code"], event["node"]) == (False, False, event["expected"], "")


def test_the_default_node_name_is_host_port_pid(start_server, redis_server):
    server = start_server(
        """
server = Server("127.0.0.1", 0)
report_port(server)
server.set(cluster=url)
@server.on("WorkerStart")
def on_start(server, worker_id):
    record("named", node=server.cluster.node, nodes=server.cluster.nodes(), pid=os.getpid())
server.on("Receive", lambda *args: None)
serve(server)
""",
        url=redis_server.url,
    )
    event = server.wait_event("named")
    assert event["node"] == f"127.0.0.1:{server.port}:{event['pid']}"
    assert event["nodes"] == [event["node"]]
