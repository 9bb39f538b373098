"""Fixtures of the cluster tests: a redis-server of the test's own on a free port, cluster nodes (real pyswoole
servers in their own processes) and WebSocket clients that ask a node to evaluate an expression.

``redis`` starts ``/usr/bin/redis-server`` (skipped, or failed under ``CI=true``, when it is missing) with an
append-only file in the test's directory, so ``redis.restart()`` brings back what it held; it is stopped at
teardown whatever happened. ``start_node(name, **settings)`` runs ``NODE`` (a WebSocketServer; ``kind="Server"``
for a plain TCP one) as node ``name`` of that Redis and waits for its workers. A ``NodeClient`` sends
``"ask <expr>"`` and gets the JSON of the value back as a message starting with ``=``; every other message it
receives (what other nodes push) is kept in ``inbox``.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from programs import need
from pyswoole.cluster.wire import Keys
from serverkit import ServerProcess, wait_until

NODE = """
from pyswoole import ErrorCode, Opcode, Server, WebSocketServer

server = (WebSocketServer if kind == "WebSocketServer" else Server)("127.0.0.1", 0, getattr(Mode, mode))
report_port(server)
server.set(**settings)

@server.on("WorkerStart")
def on_worker_start(server, worker_id):
    record("worker_start", worker_id=worker_id, node=server.cluster.node, taskworker=server.taskworker)

def evaluate(server, fd, text):
    try:
        value = eval(text, {"server": server, "fd": fd, **globals()})
    except Exception as exc:
        value = f"!{type(exc).__name__}: {exc}"
    return "=" + json.dumps(value, default=repr)

if kind == "WebSocketServer":
    @server.on("Open")
    def on_open(server, request):
        record("open", fd=request.fd, worker_id=server.worker_id)

    @server.on("Message")
    async def on_message(server, frame):
        if frame.data.startswith("ask "):
            server.push(frame.fd, evaluate(server, frame.fd, frame.data[4:]))
        elif frame.data.startswith("co "):  # an awaitable expression: its awaited value
            try:
                value = await eval(frame.data[3:], {"server": server, "fd": frame.fd, **globals()})
            except Exception as exc:
                value = f"!{type(exc).__name__}: {exc}"
            server.push(frame.fd, "=" + json.dumps(value, default=repr))
        else:
            record("message", fd=frame.fd, data=frame.data)
else:
    @server.on("Connect")
    def on_connect(server, fd, reactor_id):
        record("open", fd=fd, worker_id=server.worker_id)

    @server.on("Receive")
    def on_receive(server, fd, reactor_id, data):
        for line in data.decode().splitlines():
            if line.startswith("ask "):
                server.send(fd, evaluate(server, fd, line[4:]) + "\\n")

@server.on("Close")
def on_close(server, fd, reactor_id):
    record("close", fd=fd)

LOAD = {"ok": 0, "fail": 0, "seq": 0, "codes": {}}

def start_load(server, node, fd, every_ms=2, burst=5):
    # Push numbered messages to (node, fd) from a timer of this worker; LOAD counts what the calls said.
    def tick(timer_id):
        for _ in range(burst):
            LOAD["seq"] += 1
            if server.cluster.push(node, fd, str(LOAD["seq"])):
                LOAD["ok"] += 1
            else:
                LOAD["fail"] += 1
                code = server.get_last_error()
                LOAD["codes"][code] = LOAD["codes"].get(code, 0) + 1
    LOAD["timer"] = server.tick(every_ms, tick)
    return LOAD["timer"]

def run_task(server, task_id, src_worker_id, data):
    record("task_run", task_id=task_id, src_worker_id=src_worker_id, data=data, node=server.cluster.node,
           worker_id=server.worker_id)
    value = None
    if isinstance(data, dict) and data.get("sleep"):
        time.sleep(data["sleep"])
    if isinstance(data, dict) and "eval" in data:
        value = eval(data["eval"], {"server": server, **globals()})
    return {"ran_on": server.cluster.node, "data": data, "value": value}

if settings.get("task_enable_coroutine"):
    @server.on("Task")
    async def on_task(server, task):
        await asyncio.sleep(0)
        task.finish(run_task(server, task.id, task.worker_id, task.data))
else:
    server.on("Task", run_task)

@server.on("Finish")
def on_finish(server, task_id, result):
    record("finish", task_id=task_id, result=result)

serve(server)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server of one test: on a free loopback port, its data in the test's directory."""

    def __init__(self, program: str, workdir: Path) -> None:
        self.program = program
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        for _ in range(5):  # the free port may be taken before redis-server binds it: then another one
            self.port = free_port()
            if self._launch():
                return
        raise AssertionError(f"redis-server never found a free port: {self.log()}")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self._launch(), f"redis-server could not listen on {self.port} again: {self.log()}"

    def _launch(self) -> bool:
        """Start it on ``self.port``; False if it exited instead (the port was taken). The process must be
        alive and the one answering: another test's server may hold a reused port."""
        log = open(self.workdir / "redis.log", "ab")  # noqa: SIM115 (the process keeps it)
        self.proc = subprocess.Popen(
            [
                self.program,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.workdir),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--protected-mode",
                "no",
            ],  # fmt: skip
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        proc = self.proc
        wait_until(
            lambda: proc.poll() is not None or self.ping(),
            message=lambda: f"redis-server on {self.port} never answered: {self.log()}",
        )
        return proc.poll() is None

    def ping(self) -> bool:
        """Whether this redis-server answers on its port (not another test's, on a port reused meanwhile): the
        ``process_id`` of its ``INFO server`` is ours."""
        reply = b""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"INFO server\r\n")
                while chunk := sock.recv(4096):
                    reply += chunk
                    _, found, rest = reply.partition(b"\r\nprocess_id:")
                    if found and b"\r\n" in rest:
                        return int(rest.partition(b"\r\n")[0]) == self.proc.pid  # type: ignore[union-attr]
        except (OSError, ValueError):
            pass
        return False

    def stop(self) -> None:
        """SIGTERM, as an operator stops it (the append-only file is complete)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url)

    def log(self) -> str:
        try:
            return (self.workdir / "redis.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    program = need("redis-server")
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisServer(program, workdir)
    yield server
    server.stop()


class NodeClient:
    """A WebSocket client of one node: ``ask`` evaluates in the node's worker; pushes land in ``inbox``."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.inbox: list[str | bytes] = []
        self.fd = int(self.ask("fd"))

    def ask(self, expression: str, timeout: float = 10.0, awaited: bool = False) -> Any:
        """The value of ``expression`` evaluated in the node's worker (``awaited``: of awaiting it there)."""
        self.ws.send(("co " if awaited else "ask ") + expression)
        deadline = time.monotonic() + timeout
        while True:
            message = self.ws.recv(max(0.01, deadline - time.monotonic()))
            if isinstance(message, str) and message.startswith("="):
                return json.loads(message[1:])
            self.inbox.append(message)

    def received(self, count: int, timeout: float = 10.0) -> list[str | bytes]:
        """The first ``count`` messages pushed to this client; waits for them."""
        deadline = time.monotonic() + timeout
        while len(self.inbox) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{len(self.inbox)} of {count} messages came: {self.inbox[:5]!r}")
            try:
                self.inbox.append(self.ws.recv(left))
            except TimeoutError:
                continue
        return self.inbox[:count]

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def start_node(start_server: Callable[..., ServerProcess], redis_server: RedisServer) -> Callable[..., ServerProcess]:
    """``start_node(name, mode="BASE", kind="WebSocketServer", **settings)``: a node of ``redis_server``, its
    workers started and its postman listening."""
    redis = redis_server.client()

    def start(name: str, mode: str = "BASE", kind: str = "WebSocketServer", **settings: Any) -> ServerProcess:
        settings = {"cluster": redis_server.url, "cluster_node": name, "worker_num": 1, **settings}
        node = start_server(NODE, mode=mode, kind=kind, settings=settings)
        node.wait_events("worker_start", settings["worker_num"] + settings.get("task_worker_num", 0), timeout=20)
        channel = Keys.channel(name)
        wait_until(lambda: redis.pubsub_numsub(channel) == [(channel.encode(), 1)], message=f"{name}'s postman")
        return node

    return start


@pytest.fixture
def node_client() -> Iterator[Callable[[ServerProcess | int], NodeClient]]:
    """Factory: ``node_client(node or port)``: a connected ``NodeClient``, closed at teardown."""
    with contextlib.ExitStack() as stack:

        def open_client(node: ServerProcess | int) -> NodeClient:
            port = node if isinstance(node, int) else node.port
            ws = stack.enter_context(connect(f"ws://127.0.0.1:{port}/", open_timeout=10, max_size=None))
            return NodeClient(ws)

        yield open_client
