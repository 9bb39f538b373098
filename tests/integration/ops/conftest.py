"""Fixtures of the operations tests: ``admin`` (an AdminServer on 127.0.0.1, served by a select() loop in a
thread), ``pane`` (a command running in a tmux pane), ``chromium`` (headless Chromium on a URL) and
``start_ops_server`` (a real server with an admin server, a pid file and a fast stats timer) and ``echo_load``
(clients keeping it busy)."""

from __future__ import annotations

import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from managerkit import MANAGER_SERVER
from opskit import AdminFactory, SelectLoop, make_snapshot
from programs import need
from pyswoole.ops.admin import AdminServer
from serverkit import ServerProcess, recv_exactly


@pytest.fixture
def admin() -> Iterator[AdminFactory]:
    """admin(token=None, snapshot=..., **options) -> the loop serving a new AdminServer on 127.0.0.1."""
    loops: list[SelectLoop] = []

    def start(
        token: str | None = None, snapshot: Callable[[], Mapping[str, Any]] = make_snapshot, **options: Any
    ) -> SelectLoop:
        server = AdminServer(options.pop("host", "127.0.0.1"), 0, token, snapshot, **options)
        loops.append(SelectLoop(server))
        return loops[-1]

    yield start
    for loop in loops:
        loop.stop()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel's pick; nothing holds it afterwards)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def start_ops_server(start_server: Callable[..., ServerProcess]) -> Callable[..., ServerProcess]:
    """start_ops_server(mode, script=MANAGER_SERVER, **settings) -> a server script (``managerkit.MANAGER_SERVER``
    by default; it reads ``mode`` and ``settings``) with ``admin_server`` on a free loopback port,
    ``pid_file="server.pid"`` and ``stats_timer_interval=100``; ``server.admin_url`` is the admin server's base URL
    and ``server.pid_file`` the pid file's path."""

    def start(mode: str, script: str = MANAGER_SERVER, **settings: Any) -> ServerProcess:
        port = free_port()
        settings = {
            "admin_server": f"127.0.0.1:{port}",
            "pid_file": "server.pid",
            "stats_timer_interval": 100,
            **({"reactor_num": 1} if mode == "PROCESS" else {}),
            **settings,
        }
        server = start_server(script, mode=mode, settings=settings)
        server.admin_url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
        server.pid_file = server.workdir / "server.pid"  # type: ignore[attr-defined]
        return server

    return start


class Pane:
    """One tmux session on a private server (its own socket), running one command; the command's exit status is
    written to a file when it ends (tmux's own pane_dead_status is sometimes left empty)."""

    def __init__(self, socket: Path, command: str) -> None:
        self.socket = socket
        self.status_file = socket.with_name("exit-status")
        command = f"{command}; echo $? > {shlex.quote(str(self.status_file))}; sleep 60"
        self.tmux("new-session", "-d", "-s", "top", "-x", "130", "-y", "30", command)

    def tmux(self, *args: str) -> str:
        result = subprocess.run(
            [need("tmux"), "-S", str(self.socket), *args], capture_output=True, text=True, timeout=10
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "top")

    def wait_for(self, condition: Callable[[str], bool], timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if condition(screen):
                return screen
            assert time.monotonic() < deadline, f"not on the screen in {timeout}s:\n{screen}"
            time.sleep(0.05)

    def exit_status(self, timeout: float = 10) -> int:
        deadline = time.monotonic() + timeout
        while not self.status_file.exists() or not self.status_file.read_text().strip():
            assert time.monotonic() < deadline, f"still running:\n{self.screen()}"
            time.sleep(0.05)
        return int(self.status_file.read_text())


@pytest.fixture
def pane(tmp_path: Path) -> Iterator[Callable[[str], Pane]]:
    """pane(command) -> a Pane running ``command`` (a shell command line) in a 130x30 terminal."""
    socket = tmp_path / "tmux.sock"
    started: list[Pane] = []

    def start(command: str) -> Pane:
        started.append(Pane(socket, command))
        return started[-1]

    yield start
    if started:
        subprocess.run([need("tmux"), "-S", str(socket), "kill-server"], capture_output=True, timeout=10)


@pytest.fixture
def chromium(tmp_path: Path) -> Callable[..., str]:
    """chromium(url, *options) -> what headless Chromium prints for ``url`` (with ``--dump-dom``: the DOM once the
    page is ready; ``--virtual-time-budget=MS`` runs its timers that long first, while its fetches go to the real
    server)."""
    profile = tmp_path / "chromium-profile"

    def run(url: str, *options: str) -> str:
        result = subprocess.run(
            [need("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", *options, url],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout

    return run


class EchoLoad:
    """Echo clients kept busy by a thread: each sends 64 bytes and reads them back, over and over, until
    :meth:`stop`. ``answered`` counts the round trips."""

    PAYLOAD = b"x" * 64

    def __init__(self, port: int, clients: int) -> None:
        self.clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(clients)]
        self.answered = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping:
            for client in self.clients:
                client.sendall(self.PAYLOAD)
                assert recv_exactly(client, len(self.PAYLOAD)) == self.PAYLOAD
                self.answered += 1

    def stop(self) -> int:
        """Stop, close the clients, and return how many round trips were answered."""
        self._stopping = True
        self._thread.join(10)
        assert not self._thread.is_alive()
        for client in self.clients:
            client.close()
        return self.answered


@pytest.fixture
def echo_load() -> Iterator[Callable[..., EchoLoad]]:
    """echo_load(port, clients=4) -> an EchoLoad on 127.0.0.1:port; stopped at teardown."""
    loads: list[EchoLoad] = []

    def start(port: int, clients: int = 4) -> EchoLoad:
        loads.append(EchoLoad(port, clients))
        return loads[-1]

    yield start
    for load in loads:
        if not load._stopping:
            load.stop()
