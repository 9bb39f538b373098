"""BASE mode with one worker: one process is master and worker 0, and serves connections itself.

The servers here are ``serverkit.recording_server``: every callback records an event, Receive
echoes, and ``client.ask(expr)`` evaluates ``expr`` inside the worker that owns the connection.
"""

from __future__ import annotations

import json

import pytest

ECHO = """
server = recording_server(worker_num=1)
serve(server)
"""


def test_the_starting_process_is_master_and_worker_zero(start_server):
    server = start_server(ECHO)

    worker_start = server.wait_event("worker_start")
    start = server.wait_event("start")

    assert start["pid"] == worker_start["pid"] == server.pid
    assert worker_start["worker_id"] == 0
    assert start["manager_pid"] == 0
    assert start["master_pid"] == server.pid
    assert server.children() == []


def test_start_runs_before_worker_start(start_server):
    server = start_server(ECHO)

    server.wait_event("worker_start")

    assert server.kinds()[:2] == ["start", "worker_start"]


def test_worker_identity_is_visible_inside_the_worker(start_server):
    server = start_server("""
        server = recording_server(worker_num=1)
        record("before_start", worker_id=server.worker_id)
        serve(server)
    """)

    worker_start = server.wait_event("worker_start")

    assert server.events("before_start")[0]["worker_id"] == -1
    assert worker_start["get_worker_id"] == 0
    assert worker_start["worker_id_property"] == 0
    assert worker_start["worker_pid"] == server.pid
    assert worker_start["master_pid"] == server.pid
    assert worker_start["manager_pid"] == 0


def test_echoes_what_a_client_sends(start_server, connect):
    server = start_server(ECHO)
    client = connect(server)

    assert client.request(b"hello pyswoole") == b"hello pyswoole"


def test_receive_gets_the_data_as_bytes(start_server, connect):
    server = start_server(ECHO)
    client = connect(server)

    client.request(b"\x00\xffbinary")

    receive = server.wait_event("receive")
    assert receive["type"] == "bytes"
    assert receive["data"] == "\x00\xffbinary"


def test_a_connection_sees_connect_receive_close_in_order_with_one_fd(start_server, connect):
    server = start_server(ECHO)
    client = connect(server)
    client.request(b"one")
    client.request(b"two")
    client.close()

    close = server.wait_event("close")

    lifecycle = [
        (e["kind"], e["fd"], e["reactor_id"]) for e in server.events() if e["kind"] in ("connect", "receive", "close")
    ]
    fd = close["fd"]
    assert lifecycle == [("connect", fd, 0), ("receive", fd, 0), ("receive", fd, 0), ("close", fd, 0)]


def test_session_ids_start_at_one_and_increase(start_server, connect):
    server = start_server(ECHO)

    for _ in range(3):
        client = connect(server)
        client.request(b"x")

    assert [e["fd"] for e in server.events("connect")] == [1, 2, 3]


def test_send_accepts_str_and_encodes_it_as_utf8(start_server, connect):
    server = start_server("""
        server = recording_server(worker_num=1)
        server.on("Connect", lambda s, fd, rid: record("sent", ok=s.send(fd, "héllo ✓")))
        serve(server)
    """)
    client = connect(server)

    expected = "héllo ✓".encode()
    assert client.recv_exactly(len(expected)) == expected
    assert server.wait_event("sent")["ok"] is True


def test_server_close_ends_the_connection_and_close_gets_reactor_id_minus_one(start_server, connect):
    server = start_server(ECHO)
    client = connect(server)
    client.request(b"x")
    fd = server.wait_event("connect")["fd"]
    operator = connect(server)

    assert operator.ask(f"server.close({fd})") is True

    assert client.recv_eof() == b""
    close = server.wait_event("close")
    assert (close["fd"], close["reactor_id"]) == (fd, -1)


def test_close_after_a_large_send_delivers_everything_before_the_end(start_server, connect):
    server = start_server("""
        server = recording_server(worker_num=1)

        @server.on("Receive")
        def on_receive(server, fd, reactor_id, data):
            server.send(fd, bytes(range(256)) * 16384)  # 4 MiB: more than the socket takes at once
            server.close(fd)

        serve(server)
    """)
    client = connect(server)

    client.send(b"send and close")

    assert client.recv_eof() == bytes(range(256)) * 16384


def test_close_with_reset_aborts_the_connection(start_server, connect):
    server = start_server("""
        server = recording_server(worker_num=1)
        server.on("Receive", lambda s, fd, rid, data: record("closed", ok=s.close(fd, reset=True)))
        serve(server)
    """)
    client = connect(server)
    client.send(b"reset me")

    with pytest.raises(ConnectionResetError):
        client.recv_eof()
    assert server.wait_event("closed")["ok"] is True
    server.wait_event("close")


def test_client_info_describes_the_connection(start_server, connect):
    server = start_server(ECHO)
    client = connect(server)

    info = client.ask("server.get_client_info(fd)")

    assert info["remote_ip"] == "127.0.0.1"
    assert info["remote_port"] == client.local_port
    assert info["server_port"] == server.port
    assert info["reactor_id"] == 0
    assert isinstance(info["socket_fd"], int) and info["socket_fd"] >= 0
    assert isinstance(info["connect_time"], int) and info["connect_time"] > 0
    assert info["last_recv_time"] > 0
    expected_keys = {
        "server_port",
        "server_fd",
        "socket_fd",
        "socket_type",
        "remote_port",
        "remote_ip",
        "reactor_id",
        "connect_time",
        "last_time",
        "last_recv_time",
        "last_send_time",
        "last_dispatch_time",
        "close_errno",
        "recv_queued_bytes",
        "send_queued_bytes",
    }
    assert expected_keys - info.keys() == set()


def test_client_info_is_still_available_inside_close(start_server, connect):
    server = start_server(ECHO)
    client = connect(server)
    client.request(b"hi")
    port = client.local_port
    client.close()

    info = server.wait_event("close")["info"]

    assert isinstance(info, dict), info
    assert info["remote_port"] == port
    assert info["server_port"] == server.port


def test_send_to_a_session_that_never_existed_fails_with_session_not_exist(start_server, connect):
    server = start_server(ECHO)
    client = connect(server)

    assert client.ask("[server.send(9999, b'x'), server.get_last_error()]") == [False, 1005]


def test_close_of_a_session_that_never_existed_returns_false(start_server, connect):
    server = start_server(ECHO)
    client = connect(server)

    assert client.ask("server.close(9999)") is False
    assert client.request(b"unaffected") == b"unaffected"


def test_send_to_a_closed_session_fails_with_session_not_exist(start_server, connect):
    server = start_server(ECHO)
    gone = connect(server)
    gone.request(b"x")
    gone.close()
    gone_fd = server.wait_event("close")["fd"]
    client = connect(server)

    reply = client.ask(f"[server.send({gone_fd}, b'x'), server.get_last_error()]")

    assert reply == [False, 1005]


def test_send_inside_close_of_a_session_the_server_closed_fails_with_session_closed(start_server, connect):
    server = start_server("""
        server = recording_server(worker_num=1)
        server.on("Close", lambda s, fd, rid: record(
            "send_in_close", result=[s.send(fd, b"too late"), s.get_last_error()]))
        serve(server)
    """)
    client = connect(server)
    fd = client.ask("fd")
    operator = connect(server)

    assert operator.ask(f"server.close({fd})") is True

    assert server.wait_event("send_in_close")["result"] == [False, 1004]
    assert client.recv_eof() == b""


def test_send_of_an_empty_payload_fails_with_no_payload(start_server, connect):
    server = start_server(ECHO)
    client = connect(server)

    assert client.ask("[server.send(fd, b''), server.get_last_error()]") == [False, 550]


def test_exist_is_true_only_for_open_sessions(start_server, connect):
    server = start_server(ECHO)
    gone = connect(server)
    gone.request(b"x")
    gone.close()
    gone_fd = server.wait_event("close")["fd"]
    client = connect(server)

    assert client.ask("server.exist(fd)") is True
    assert client.ask(f"server.exist({gone_fd})") is False
    assert client.ask("server.exist(9999)") is False


def test_client_list_and_connections_name_every_open_session(start_server, connect):
    server = start_server(ECHO)
    clients = [connect(server) for _ in range(4)]
    for client in clients:
        client.request(b"x")
    fds = [e["fd"] for e in server.events("connect")]

    assert sorted(clients[0].ask("server.get_client_list()")) == fds
    assert sorted(clients[0].ask("list(server.connections)")) == fds
    assert clients[0].ask("len(server.get_client_list(0, 2))") == 2
    assert sorted(clients[0].ask(f"server.get_client_list({fds[1]}, 10)")) == fds[2:]


def test_stats_count_connections_requests_and_bytes(start_server, connect):
    server = start_server(ECHO)
    first = connect(server)
    for _ in range(3):
        first.request(b"abcd")
    first.close()
    server.wait_event("close")
    second = connect(server)

    stats = second.ask("server.stats()")

    assert stats["accept_count"] == 2
    assert stats["close_count"] == 1
    assert stats["connection_num"] == 1
    assert stats["request_count"] >= 3
    assert stats["total_recv_bytes"] >= 12
    assert stats["worker_num"] == 1
    expected_keys = {
        "start_time",
        "connection_num",
        "abort_count",
        "accept_count",
        "close_count",
        "worker_num",
        "task_worker_num",
        "user_worker_num",
        "idle_worker_num",
        "dispatch_count",
        "request_count",
        "response_count",
        "total_recv_bytes",
        "total_send_bytes",
        "pipe_packet_msg_id",
        "session_round",
        "min_fd",
        "max_fd",
        "worker_request_count",
        "worker_dispatch_count",
        "coroutine_num",
    }
    assert expected_keys - stats.keys() == set()
    assert stats["session_round"] == 2


def test_a_large_payload_is_echoed_intact(start_server, connect):
    server = start_server(ECHO)
    client = connect(server)
    payload = bytes(range(256)) * (4 * 4096)  # 4 MiB

    client.send(payload)

    assert client.recv_exactly(len(payload)) == payload


def test_a_reply_written_in_several_sends_arrives_in_order(start_server, connect):
    server = start_server("""
        server = recording_server(worker_num=1)

        @server.on("Receive")
        def on_receive(server, fd, reactor_id, data):
            for i in range(100):
                server.send(fd, json.dumps(i) + "\\n")

        serve(server)
    """)
    client = connect(server)
    client.send(b"go")

    assert [json.loads(client.recv_line()) for _ in range(100)] == list(range(100))


def test_tcp6_echo(start_server, connect):
    server = start_server("""
        server = recording_server("::1", sock_type=SockType.TCP6)
        serve(server)
    """)
    client = connect(server, host="::1")

    assert client.request(b"over ipv6") == b"over ipv6"
    assert client.ask("server.get_client_info(fd)['remote_ip']") == "::1"
