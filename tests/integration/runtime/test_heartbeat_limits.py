"""Keeping a server healthy, in both modes: the heartbeat and max_idle_time close idle connections, max_conn
refuses the connections beyond it, enable_delay_receive holds a connection until confirm(), a second port
lives by its own settings and callbacks, and the TCP options reach the accepted sockets (model §3.2, §5.4,
§6.6)."""

from __future__ import annotations

import socket
import subprocess
import threading
import time

import pytest

from programs import need
from serverkit import StreamClient, connect_stream, wait_until

pytestmark = pytest.mark.timeout(30)

MODES = [pytest.param(1, id="base"), pytest.param(2, id="process")]  # Mode.BASE, Mode.PROCESS


def read_until_closed(client: StreamClient) -> bytes:
    """Everything the server sent before it closed the connection, by FIN or by RST."""
    data = bytearray()
    try:
        while chunk := client.sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return bytes(data)


# Heartbeat ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_an_idle_client_is_closed_between_idle_and_idle_plus_interval_even_while_the_server_sends_to_it(
    start_server, connect, mode
):
    server = start_server(
        """
        server = recording_server(mode=Mode(mode), worker_num=1, heartbeat_check_interval=1, heartbeat_idle_time=1)
        serve(server)
    """,
        mode=mode,
    )
    idle = connect(server.port)
    busy = connect(server.port)
    busy_fd = busy.ask("fd")
    stop_pinging = threading.Event()

    def keep_busy() -> None:
        while not stop_pinging.wait(0.25):
            busy.request(b"ping")

    pinger = threading.Thread(target=keep_busy, daemon=True)
    last_received = time.monotonic()  # the server's last receive from it is later than this
    idle_fd = idle.ask("[fd, server.tick(100, lambda timer_id: server.send(fd, b'.'))][0]")  # sending does not count
    pinger.start()

    dots = read_until_closed(idle)
    idle_for = time.monotonic() - last_received
    stop_pinging.set()
    pinger.join(5)

    assert dots.strip(b".") == b"", "the server's own sends reached the client until it closed"
    assert 1.0 <= idle_for <= 2.0 + 0.5, f"closed {idle_for:.2f} s after its last send (idle 1, interval 1)"
    close = server.wait_event("close", fd=idle_fd)
    assert close["reactor_id"] >= 0, "a heartbeat close is not a close() by the server"
    assert busy.request(b"still here") == b"still here", "a client that keeps sending is kept"
    assert server.events("close", fd=busy_fd) == []


@pytest.mark.parametrize("mode", MODES)
def test_heartbeat_lists_the_idle_sessions_and_closes_them_with_their_close_callback(start_server, connect, mode):
    server = start_server(
        """
        server = recording_server(mode=Mode(mode), worker_num=1, heartbeat_check_interval=1, heartbeat_idle_time=1)
        echo = server.get_callback("Receive")

        @server.on("Receive")
        def on_receive(server, fd, reactor_id, data):
            if data == b"sweep":
                time.sleep(1.3)  # everyone is idle now; in BASE mode this also holds the worker's own heartbeat
                record("listed", fds=server.heartbeat(False))
                record("swept", fds=server.heartbeat())
            else:
                echo(server, fd, reactor_id, data)

        serve(server)
    """,
        mode=mode,
    )
    idle = connect(server.port)
    idle_fd = idle.ask("fd")
    operator = connect(server.port)

    operator.send(b"sweep")

    listed = server.wait_event("listed")["fds"]
    assert idle_fd in listed
    assert server.wait_event("swept")["fds"] == listed
    read_until_closed(idle)
    closes = server.wait_events("close", 1, fd=idle_fd)
    assert [c["reactor_id"] for c in closes] == [-1], "closed by heartbeat(): Close runs once, as a server close"


@pytest.mark.parametrize("mode", MODES)
def test_max_idle_time_closes_a_silent_client_and_one_that_stopped_reading(start_server, mode):
    server = start_server(
        """
        server = recording_server(mode=Mode(mode), worker_num=1, max_idle_time=0.5,
                                  kernel_socket_send_buffer_size=65536)
        echo = server.get_callback("Receive")

        @server.on("Receive")
        def on_receive(server, fd, reactor_id, data):
            record("receive", fd=fd, data=data)
            if data == b"flood":
                server.send(fd, b"x" * (4 << 20))
            else:
                echo(server, fd, reactor_id, data)

        serve(server)
    """,
        mode=mode,
    )
    silent = connect_stream(("127.0.0.1", server.port))
    silent_fd = server.wait_event("connect")["fd"]
    stalled_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stalled_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    stalled_sock.settimeout(10)
    stalled_sock.connect(("127.0.0.1", server.port))
    stalled = StreamClient(stalled_sock)
    try:
        stalled.send(b"flood")  # and read nothing: the reply stops moving
        flood = server.wait_event("receive", data="flood")

        silent_close = server.wait_event("close", fd=silent_fd)
        stalled_close = server.wait_event("close", fd=flood["fd"])
        received = read_until_closed(stalled)
    finally:
        silent.close()
        stalled.close()

    connected = server.events("connect", fd=silent_fd)[0]["t"]  # a little after the reactor made the connection
    assert 0.45 <= silent_close["t"] - connected <= 2.0
    assert 0.5 <= stalled_close["t"] - flood["t"] <= 3.0
    assert silent_close["reactor_id"] >= 0 and stalled_close["reactor_id"] >= 0
    assert 0 < len(received) < 4 << 20, "the output still pending was dropped"


# Limits ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_connections_beyond_max_conn_are_refused_counted_and_logged_once(start_server, connect, mode):
    server = start_server(
        """
        server = recording_server(mode=Mode(mode), worker_num=1, max_conn=2)
        serve(server)
    """,
        mode=mode,
    )
    first = connect(server.port)
    second = connect(server.port)
    assert first.request(b"one") == b"one"
    assert second.request(b"two") == b"two"

    refused = [connect(server.port) for _ in range(3)]

    for client in refused:
        assert read_until_closed(client) == b""
    assert first.ask("server.stats()['abort_count']") == 3
    assert first.ask("server.stats()['connection_num']") == 2
    assert server.log().count("Too many connections") == 1, "refusals are logged at most once a second"
    assert len(server.events("connect")) == 2
    second.close()
    wait_until(lambda: first.ask("server.stats()['connection_num']") == 1)
    assert connect(server.port).request(b"room again") == b"room again"


def test_backlog_is_the_listen_queue_of_the_port(start_server):
    server = start_server("""
        server = recording_server(worker_num=1, backlog=77)
        serve(server)
    """)
    server.wait_event("worker_start")

    listing = subprocess.run(
        [need("ss"), "-ltnH", f"sport = :{server.port}"], capture_output=True, text=True, check=False
    ).stdout.split()
    assert listing, "ss listed no listening socket"
    assert int(listing[2]) == 77, listing  # State Recv-Q Send-Q: a listener's Send-Q is its backlog


@pytest.mark.parametrize("mode", MODES)
def test_with_delay_receive_nothing_is_read_until_confirm(start_server, connect, mode):
    server = start_server(
        """
        server = recording_server(mode=Mode(mode), worker_num=1, enable_delay_receive=True)

        @server.on("Connect")
        def on_connect(server, fd, reactor_id):
            record("connect", fd=fd)
            server.after(300, lambda: record("confirmed", fd=fd, ok=server.confirm(fd)))

        serve(server)
    """,
        mode=mode,
    )
    client = connect(server.port)

    client.send(b"early bird")

    assert client.recv_exactly(10) == b"early bird"
    assert server.wait_event("confirmed")["ok"] is True
    assert [e["kind"] for e in server.events() if e["kind"] in ("connect", "confirmed", "receive")] == [
        "connect",
        "confirmed",
        "receive",
    ]


# Ports and socket options ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_second_port_has_its_own_framing_callbacks_and_heartbeat(start_server, connect, mode):
    server = start_server(
        """
        server = recording_server(mode=Mode(mode), worker_num=1)
        lines = server.listen("127.0.0.1", 0, SockType.TCP)
        lines.set(open_eof_split=True, package_eof=b"\\n", heartbeat_idle_time=1)

        @lines.on("Receive")
        def on_line(server, fd, reactor_id, data):
            record("line", fd=fd, data=data)
            server.send(fd, b"line:" + data)

        record("lines_port", port=lines.port)
        serve(server)
    """,
        mode=mode,
    )
    lines_port = server.wait_event("lines_port")["port"]
    raw = connect(server.port)
    lined = connect(lines_port)

    assert raw.request(b"a\nb\n") == b"a\nb\n", "the primary port echoes raw bytes"
    last_sent = time.monotonic()
    lined.send(b"a\nb\n")
    assert lined.recv_exactly(14) == b"line:a\nline:b\n"

    assert read_until_closed(lined) == b""
    idle_for = time.monotonic() - last_sent
    assert 1.0 <= idle_for <= 2.5, f"the second port's heartbeat closed it after {idle_for:.2f} s"
    assert raw.request(b"no heartbeat here") == b"no heartbeat here"
    lined_fd = server.wait_event("line")["fd"]
    assert [e["data"] for e in server.events("line")] == ["a\n", "b\n"]
    assert server.events("connect", fd=lined_fd), "a port without Connect uses the server's"
    assert server.wait_event("close", fd=lined_fd)["reactor_id"] >= 0


@pytest.mark.parametrize("mode", MODES)
def test_tcp_options_reach_the_accepted_socket(start_server, connect, mode):
    server = start_server(
        """
        server = recording_server(mode=Mode(mode), worker_num=1, open_tcp_nodelay=False, open_tcp_keepalive=True,
                                  tcp_keepidle=7, tcp_keepinterval=3, tcp_keepcount=4)

        def inspect(timer_id):
            # Start runs where the sockets are (PROCESS: the master; BASE: the worker), so does this timer.
            for fd in server.connections:
                sock = socket.socket(fileno=os.dup(server.get_client_info(fd)["socket_fd"]))
                try:
                    record("sockopts", fd=fd, options=[
                        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
                        sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
                    ])
                finally:
                    sock.close()

        server.on("Start", lambda server: server.tick(50, inspect))
        serve(server)
    """,
        mode=mode,
    )
    client = connect(server.port)
    assert client.request(b"hi") == b"hi"  # the connection is ready: its options are set
    ready = time.monotonic()

    seen = server.wait_event(lambda e: e["kind"] == "sockopts" and e["t"] > ready)

    assert seen["options"][0] == 0, "open_tcp_nodelay=False"
    assert seen["options"][1] != 0, "open_tcp_keepalive"
    assert seen["options"][2:] == [7, 3, 4]
