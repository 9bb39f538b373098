"""A real server under systemd's protocols: its notifications on a notify socket the test binds (READY=1,
RELOADING=1/READY=1, STOPPING=1, WATCHDOG=1), and socket activation with sockets the test creates and passes the
way systemd does (moved to fd 3 and up, LISTEN_FDS and LISTEN_PID set, then exec)."""

from __future__ import annotations

import functools
import os
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from managerkit import MANAGER_SERVER, gone, incarnations, run_cli
from serverkit import ServerProcess, wait_until

pytestmark = pytest.mark.timeout(60)

# systemd sets these before it execs the service; the script sets them before it builds its Server.
SYSTEMD_SERVER = (
    """
os.environ.update(environment)
if "WATCHDOG_USEC" in environment:
    os.environ["WATCHDOG_PID"] = str(os.getpid())  # systemd's MAINPID: the process it started
"""
    + MANAGER_SERVER
)
MODELS = [("PROCESS", 2, 1), ("BASE", 2, 1), ("BASE", 1, 0)]


class NotifySocket:
    """The datagram socket systemd listens on, with the sender's credentials (SO_PASSCRED), as systemd reads
    them to tell the main process from the others."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.setblocking(False)
        self.received: list[tuple[int, str, float]] = []  # (sender pid, message, when the test read it)

    def messages(self) -> list[tuple[int, str, float]]:
        while True:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except BlockingIOError:
                return self.received
            pid = struct.unpack("iII", ancillary[0][2])[0]
            self.received.append((pid, data.decode(), time.monotonic()))

    def said(self, message: str) -> list[tuple[int, str, float]]:
        """The notifications whose first line is ``message``."""
        return [entry for entry in self.messages() if entry[1].split("\n")[0] == message]

    def wait_for(self, message: str, count: int = 1, timeout: float = 10) -> list[tuple[int, str, float]]:
        return wait_until(
            lambda: len(found := self.said(message)) >= count and found,
            timeout,
            message=lambda: f"{count} x {message!r}; got {[text for _, text, _ in self.received]}",
        )


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    listener = NotifySocket(tmp_path / "notify")
    yield listener
    listener.sock.close()


def start_notified(
    start_server: Callable[..., ServerProcess], notify: NotifySocket, mode: str, **settings: object
) -> ServerProcess:
    environment = {"NOTIFY_SOCKET": str(notify.path)}
    if "watchdog_usec" in settings:
        environment["WATCHDOG_USEC"] = str(settings.pop("watchdog_usec"))
    settings = {"pid_file": "server.pid", **({"reactor_num": 1} if mode == "PROCESS" else {}), **settings}
    return start_server(SYSTEMD_SERVER, environment=environment, mode=mode, settings=settings)


def supervisor(server: ServerProcess, mode: str, worker_num: int) -> int:
    """The process that talks to systemd: the manager, or the only process."""
    return int(server.wait_event("manager_start")["pid"]) if mode == "PROCESS" else server.pid


@pytest.mark.parametrize(("mode", "worker_num", "task_worker_num"), MODELS)
def test_ready_once_every_worker_runs_reloading_then_ready_around_a_reload_and_stopping(
    start_server, notify_socket: NotifySocket, connect, mode, worker_num, task_worker_num
):
    server = start_notified(start_server, notify_socket, mode, worker_num=worker_num, task_worker_num=task_worker_num)

    [(sender, _, _)] = notify_socket.wait_for("READY=1")

    assert sender == supervisor(server, mode, worker_num)
    server.wait_events("worker_start", worker_num + task_worker_num)
    assert connect(server).request(b"ready") == b"ready"
    assert [text for _, text, _ in notify_socket.messages()] == ["READY=1"]  # no watchdog was asked for
    if worker_num > 1:
        old = [pid for pids in incarnations(server).values() for pid in pids]
        assert run_cli("reload", str(server.workdir / "server.pid")).returncode == 0
        [(_, reloading, _)] = notify_socket.wait_for("RELOADING=1")
        assert reloading.split("\n")[1].startswith("MONOTONIC_USEC=")
        notify_socket.wait_for("READY=1", 2)
        assert all(gone(pid) for pid in old)  # READY=1 came once the old processes were gone
        server.wait_events("after_reload", 1)
        assert [text.split("\n")[0] for _, text, _ in notify_socket.messages()] == [
            "READY=1",
            "RELOADING=1",
            "READY=1",
        ]

    server.signal(signal.SIGTERM)

    [(sender, _, _)] = notify_socket.wait_for("STOPPING=1")
    assert sender == supervisor(server, mode, worker_num)
    assert server.wait_exit() == 0
    assert notify_socket.messages()[-1][1] == "STOPPING=1"


@pytest.mark.parametrize(("mode", "worker_num"), [("PROCESS", 2), ("BASE", 2), ("BASE", 1)])
def test_watchdog_pings_come_every_half_watchdog_usec_from_the_supervising_loop(
    start_server, notify_socket: NotifySocket, mode, worker_num
):
    server = start_notified(start_server, notify_socket, mode, worker_num=worker_num, watchdog_usec=200_000)

    pings = notify_socket.wait_for("WATCHDOG=1", 6)

    assert {sender for sender, _, _ in pings} == {supervisor(server, mode, worker_num)}
    # Every 0.1 s: six pings take about half a second (the first one comes at once).
    assert 0.3 < pings[5][2] - pings[0][2] < 3


def test_a_one_process_server_stops_its_watchdog_pings_when_its_loop_is_stuck(
    start_server, notify_socket: NotifySocket, connect
):
    server = start_notified(start_server, notify_socket, "BASE", worker_num=1, watchdog_usec=200_000)
    notify_socket.wait_for("WATCHDOG=1", 2)

    connect(server).send(b"spin")  # the worker's loop, which is the whole server, never turns again

    spun = server.wait_event("spinning")["t"]
    # systemd would kill it WatchdogSec after the last ping: they stop within 2 s of the loop's last beat.
    wait_until(lambda: time.monotonic() - notify_socket.said("WATCHDOG=1")[-1][2] > 1.5, timeout=10)
    assert notify_socket.said("WATCHDOG=1")[-1][2] < spun + 3


# The launcher: what systemd does between fork and exec. The sockets the test passed (at whatever numbers) are
# moved to fd 3, 4, ...; LISTEN_FDS says how many, LISTEN_PID names this process, whose pid exec keeps.
ACTIVATED_SERVER = """
import fcntl
if "LISTEN_PID" not in os.environ:
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in passed_fds]
    for index, fd in enumerate(high):
        os.dup2(fd, 3 + index, inheritable=True)
    for fd in high + [fd for fd in passed_fds if fd >= 3 + len(passed_fds)]:
        os.close(fd)
    os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS=str(len(passed_fds)))
    os.execv(sys.executable, [sys.executable, "-u", __file__])

# Neither address could be bound here (port 1 needs privileges, the directory does not exist): the server
# must take the passed sockets instead.
server = Server("127.0.0.1", 1, getattr(Mode, mode))
report_port(server)
server.add_listener(os.path.join(os.getcwd(), "no-such-directory", "app.sock"), 0, SockType.UNIX_STREAM)
server.set(worker_num=2, **settings)

@server.on("WorkerStart")
def on_worker_start(server, worker_id):
    record("worker_start", worker_id=worker_id, ports=[[port.host, port.port] for port in server.ports],
           environment=sorted(name for name in os.environ if name.startswith("LISTEN_")))

server.on("Receive", lambda server, fd, reactor_id, data: server.send(fd, b"%d:" % os.getpid() + data))
serve(server)
"""


def start_activated(
    start_server: Callable[..., ServerProcess],
    monkeypatch: pytest.MonkeyPatch,
    passed: list[socket.socket],
    mode: str,
) -> ServerProcess:
    fds = [sock.fileno() for sock in passed]
    with monkeypatch.context() as patch:
        # serverkit starts the script with subprocess.Popen: have it hand these fds down, as systemd does.
        patch.setattr(subprocess, "Popen", functools.partial(subprocess.Popen, pass_fds=fds))
        return start_server(
            ACTIVATED_SERVER, passed_fds=fds, mode=mode, settings={"reactor_num": 1} if mode == "PROCESS" else {}
        )


@pytest.fixture
def passed_sockets(short_dir: Path) -> Iterator[list[socket.socket]]:
    """What a .socket unit with ``ListenStream=127.0.0.1:0`` and ``ListenStream=<path>`` would bind and pass."""
    tcp = socket.create_server(("127.0.0.1", 0))
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(str(short_dir / "app.sock"))
    unix.listen()
    yield [tcp, unix]
    tcp.close()
    unix.close()


def echo_through(address: tuple[str, int] | str, data: bytes) -> bytes:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect(address)
        client.sendall(data)
        return client.recv(100)


@pytest.mark.parametrize("mode", ["PROCESS", "BASE"])
def test_socket_activation_listens_on_the_passed_sockets_in_order(
    start_server, monkeypatch, passed_sockets: list[socket.socket], mode
):
    tcp, unix = passed_sockets
    tcp_address, unix_path = tcp.getsockname(), unix.getsockname()

    server = start_activated(start_server, monkeypatch, passed_sockets, mode)

    starts = server.wait_events("worker_start", 2)
    assert server.port == tcp_address[1]
    assert starts[0]["ports"] == [list(tcp_address), [unix_path, 0]]
    assert starts[0]["environment"] == []  # taken: the workers do not see LISTEN_FDS
    workers = {event["pid"] for event in starts}
    assert int(echo_through(tcp_address, b"tcp").split(b":")[0]) in workers
    assert echo_through(unix_path, b"unix").endswith(b":unix")

    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    assert os.path.exists(unix_path)  # systemd's socket: not unlinked by the server that stops

    # systemd keeps the sockets across a restart of the service: a client that comes meanwhile waits in the
    # backlog and is served by the next server.
    waiting = socket.create_connection(tcp_address, timeout=10)
    waiting.sendall(b"meanwhile")
    successor = start_activated(start_server, monkeypatch, passed_sockets, mode)
    assert waiting.recv(100).endswith(b":meanwhile")
    waiting.close()
    assert successor.port == tcp_address[1]


def test_a_passed_socket_of_the_wrong_type_fails_the_constructor(
    start_server, monkeypatch, passed_sockets: list[socket.socket]
):
    tcp, unix = passed_sockets
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    try:
        server = start_activated(start_server, monkeypatch, [udp, unix], "BASE")  # a datagram one for the TCP port
        assert server.wait_exit() != 0
    finally:
        udp.close()
    assert "ServerError: socket activation: the socket passed for TCP port 127.0.0.1 is AF_INET/SOCK_DGRAM" in (
        server.stderr()
    )
    assert server.events() == []
