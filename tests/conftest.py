"""Fixtures that start real pyswoole servers in real processes and talk to them over real sockets.

``start_server(body, **params)`` writes a server script and runs it with ``sys.executable`` in its
own process group. The script is ``SCRIPT_PRELUDE`` + one assignment per param + ``body``, so a
body reads as a plain pyswoole program::

    server = Server("127.0.0.1", 0, Mode.BASE)
    report_port(server)
    server.set(worker_num=worker_num)          # worker_num came from start_server(..., worker_num=2)
    server.on("Receive", lambda s, fd, rid, data: s.send(fd, data))
    record("start_returned", value=server.start())

When a test fails, the output, exit status and events of every server it started are attached to
the failure report. At teardown every server's process group is killed, whatever state it is in.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from serverkit import (  # noqa: E402
    DEFAULT_TIMEOUT,
    ServerProcess,
    StreamClient,
    connect_stream,
    datagram_socket,
)

SCRIPT_PRELUDE = """\
import asyncio, errno, json, os, signal, socket, sys, time
from pyswoole import Mode, Server, ServerError, SockType
from serverkit import ahold, answer, attempt, hold, record, recording_server, report_port, serve
"""

_SERVERS = pytest.StashKey[list]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when in ("setup", "call"):
        for server in item.stash.get(_SERVERS, []):
            report.sections.append((f"server {server.name}", server.describe()))


@pytest.fixture
def start_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: ``start_server(body, **params) -> ServerProcess``.

    ``params`` become module-level variables of the script (their ``repr()`` must be Python).
    """
    servers: list[ServerProcess] = []
    request.node.stash[_SERVERS] = servers
    env = dict(os.environ)
    env["PYTHONPATH"] = str(TESTS_DIR) + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONFAULTHANDLER"] = "1"

    def start(body: str, **params: Any) -> ServerProcess:
        name = f"server{len(servers)}"
        workdir = tmp_path / name
        workdir.mkdir()
        assignments = "".join(f"{key} = {value!r}\n" for key, value in params.items())
        script = workdir / "server.py"
        script.write_text(SCRIPT_PRELUDE + assignments + textwrap.dedent(body))
        server = ServerProcess(name, script, workdir, env)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()


@pytest.fixture
def connect() -> Iterator[Callable[..., StreamClient]]:
    """Factory: ``connect(port, host="127.0.0.1")``, ``connect(path)`` for AF_UNIX, or ``connect(server)``.

    Retries while the server is not listening yet (given the ``ServerProcess`` itself, it gives up
    at once if that process has exited); every client is closed at teardown.
    """
    clients: list[StreamClient] = []

    def open_client(
        where: int | str | ServerProcess,
        host: str = "127.0.0.1",
        family: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> StreamClient:
        server = where if isinstance(where, ServerProcess) else None
        if server is not None:
            where = server.port
        if isinstance(where, int):
            family = family or (socket.AF_INET6 if ":" in host else socket.AF_INET)
            address: tuple | str = (host, where)
        else:
            family, address = socket.AF_UNIX, where
        client = connect_stream(address, family, timeout, server)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()


@pytest.fixture
def dgram() -> Iterator[Callable[..., socket.socket]]:
    """Factory: ``dgram(family=AF_INET, bind=None)``: a datagram socket closed at teardown."""
    sockets: list[socket.socket] = []

    def open_socket(family: int = socket.AF_INET, bind: Any = None) -> socket.socket:
        sock = datagram_socket(family, bind)
        sockets.append(sock)
        return sock

    yield open_socket
    for sock in sockets:
        sock.close()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path, for UNIX socket paths (at most 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="psw-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
