"""systemd's protocols against real sockets: a notify socket the test binds, and sockets passed to a real child
process the way systemd passes them (dup'ed to fd 3 and up, LISTEN_PID/LISTEN_FDS in the environment)."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyswoole.ops.systemd import Notifier, Watchdog, listen_fds, notify


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    yield sock
    sock.close()


def test_notify_sends_one_datagram_to_a_path(notify_socket: socket.socket) -> None:
    assert notify("READY=1\nSTATUS=serving")
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=serving"


def test_notify_reaches_an_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"pyswoole-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify("STOPPING=1")
        assert sock.recv(4096) == b"STOPPING=1"


def test_notify_is_a_no_op_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False


def test_notify_reports_a_socket_that_is_gone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody"))
    assert notify("READY=1") is False


def test_notify_from_a_child_process_carries_the_child_pid(notify_socket: socket.socket) -> None:
    # systemd tells the main process from the others by the sender's credentials (NotifyAccess=).
    notify_socket.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    child = subprocess.run(
        [sys.executable, "-c", "import os; from pyswoole.ops.systemd import notify; print(notify('READY=1'))"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert child.stdout.strip() == "True"
    data, ancillary, _, _ = notify_socket.recvmsg(4096, socket.CMSG_SPACE(12))
    assert data == b"READY=1"
    level, kind, credentials = ancillary[0]
    assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS)
    sender_pid = struct.unpack("iII", credentials)[0]
    assert sender_pid not in (0, os.getpid())


def test_watchdog_interval_is_half_watchdog_usec_for_our_pid() -> None:
    watchdog = Watchdog.from_environment({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())})
    assert watchdog is not None and watchdog.interval == 1.5
    watchdog = Watchdog.from_environment({"WATCHDOG_USEC": "3000000"})
    assert watchdog is not None and watchdog.interval == 1.5


@pytest.mark.parametrize(
    "environ",
    [{}, {"WATCHDOG_USEC": "0"}, {"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}, {"WATCHDOG_USEC": "x"}],
)
def test_no_watchdog_when_not_asked_or_asked_for_another_process(environ: dict[str, str]) -> None:
    assert Watchdog.from_environment(environ) is None


def test_watchdog_pings_when_due_and_not_before(notify_socket: socket.socket) -> None:
    watchdog = Watchdog(0.2)
    assert watchdog.ping_if_due()
    assert notify_socket.recv(4096) == b"WATCHDOG=1"
    assert watchdog.ping_if_due() is False
    assert 0.1 < watchdog.due_in() <= 0.2
    deadline = time.monotonic() + 5
    while not watchdog.ping_if_due():
        assert time.monotonic() < deadline
        time.sleep(watchdog.due_in())
    assert notify_socket.recv(4096) == b"WATCHDOG=1"


def test_the_notifier_says_each_state_once(notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    notifier = Notifier()
    notify_socket.settimeout(0.2)

    def said() -> list[str]:
        messages = []
        try:
            while True:
                messages.append(notify_socket.recv(4096).decode().split("\n")[0])
        except TimeoutError:
            return messages

    notifier.notify_ready()
    notifier.notify_ready()
    assert said() == ["READY=1"]
    notifier.notify_reloading()
    assert notifier.ready is False
    notifier.notify_ready()
    notifier.notify_stopping()
    notifier.notify_stopping()
    notifier.notify_ready()  # too late: the server is stopping
    notifier.ping()  # no watchdog was asked for
    assert said() == ["RELOADING=1", "READY=1", "STOPPING=1"]
    assert notifier.due_in() == float("inf")


# What systemd does between fork and exec: the passed sockets moved to fd 3, 4, ..., LISTEN_PID set to the
# process's own pid (exec keeps it), LISTEN_FDS to their count.
LAUNCHER = """\
import fcntl, os, sys
fds = [int(fd) for fd in sys.argv[1].split(",")]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]
for index, fd in enumerate(high):
    os.dup2(fd, 3 + index, inheritable=True)
for fd in high + [fd for fd in fds if fd >= 3 + len(fds)]:
    os.close(fd)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS=str(len(fds)), LISTEN_FDNAMES="a:b:c")
os.execv(sys.executable, [sys.executable, "-c", sys.argv[2]])
"""

CHILD = """\
import fcntl, json, os, socket
from pyswoole.ops.systemd import listen_fds
sockets = listen_fds()
report = {
    "sockets": [[s.fileno(), int(s.family), int(s.type), bool(fcntl.fcntl(s, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)]
                for s in sockets],
    "environment_left": sorted(name for name in os.environ if name.startswith("LISTEN_")),
}
print(json.dumps(report), flush=True)
tcp, udp, unix = sockets
connection, _ = tcp.accept()
connection.sendall(b"tcp:" + connection.recv(100))
data, peer = udp.recvfrom(100)
udp.sendto(b"udp:" + data, peer)
connection, _ = unix.accept()
connection.sendall(b"unix:" + connection.recv(100))
"""


def test_listen_fds_takes_the_sockets_systemd_passed(tmp_path: Path) -> None:
    tcp = socket.create_server(("127.0.0.1", 0))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(str(tmp_path / "app.sock"))
    unix.listen()
    passed = [tcp, udp, unix]
    child = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, ",".join(str(s.fileno()) for s in passed), textwrap.dedent(CHILD)],
        pass_fds=[s.fileno() for s in passed],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        report = json.loads(child.stdout.readline())
        assert report["sockets"] == [
            [3, socket.AF_INET, socket.SOCK_STREAM, True],
            [4, socket.AF_INET, socket.SOCK_DGRAM, True],
            [5, socket.AF_UNIX, socket.SOCK_STREAM, True],
        ]
        assert report["environment_left"] == []
        with socket.create_connection(tcp.getsockname(), timeout=5) as client:
            client.sendall(b"hello")
            assert client.recv(100) == b"tcp:hello"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(5)
            client.sendto(b"hello", udp.getsockname())
            assert client.recv(100) == b"udp:hello"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(5)
            client.connect(str(tmp_path / "app.sock"))
            client.sendall(b"hello")
            assert client.recv(100) == b"unix:hello"
        assert child.wait(10) == 0
    finally:
        child.kill()
        child.wait()
        for s in passed:
            s.close()


def test_listen_fds_ignores_sockets_meant_for_another_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISTEN_PID", str(os.getppid()))
    monkeypatch.setenv("LISTEN_FDS", "2")
    assert listen_fds() == []
    assert "LISTEN_PID" not in os.environ and "LISTEN_FDS" not in os.environ


def test_listen_fds_can_leave_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISTEN_PID", str(os.getppid()))
    monkeypatch.setenv("LISTEN_FDS", "1")
    assert listen_fds(unset_environment=False) == []
    assert os.environ["LISTEN_FDS"] == "1"


def test_listen_fds_without_socket_activation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LISTEN_PID", raising=False)
    monkeypatch.delenv("LISTEN_FDS", raising=False)
    assert listen_fds() == []


def test_listen_fds_rejects_garbage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISTEN_PID", "me")
    monkeypatch.setenv("LISTEN_FDS", "1")
    with pytest.raises(ValueError, match="LISTEN_PID"):
        listen_fds()
