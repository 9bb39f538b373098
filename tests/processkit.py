"""Shared pieces of the PROCESS-mode tests (``test_process_*.py``); this module holds no tests.

``PROCESS_SERVER`` is a recording PROCESS-mode server (see ``serverkit.recording_server``) whose Receive also
understands a few commands, each sent alone on its connection and answered by what the command does:

* ``cmd close`` / ``cmd reset``: ``server.close(fd)`` / ``server.close(fd, reset=True)``;
* ``cmd big N``: one ``send()`` of ``pattern(N)``; ``cmd bigclose N``: the same, then ``close(fd)``;
* ``cmd flood N M``: M sends of ``pattern(N)`` (for a client that does not read);
* ``cmd hold``: blocks the worker until the test opens the gate ``holding``, then replies ``released``.

Anything longer than ``BULK`` bytes is echoed but recorded by size only (events stay small).
"""

from __future__ import annotations

from typing import Any

from serverkit import ServerProcess, StreamClient

BULK = 16384

PROCESS_SERVER = """
def pattern(n):
    return (bytes(range(256)) * (n // 256 + 1))[:n]

server = recording_server(mode=Mode.PROCESS, **settings)
echo = server.get_callback("Receive")

@server.on("BeforeShutdown")
def on_before_shutdown(server):
    record("before_shutdown", ppid=os.getppid())

@server.on("Receive")
def on_receive(server, fd, reactor_id, data):
    if data.startswith(b"cmd "):
        op, *args = data[4:].decode().split()
        args = [int(a) for a in args]
        record("cmd", op=op, fd=fd, reactor_id=reactor_id)
        if op == "close":
            record("cmd_result", op=op, ok=server.close(fd))
        elif op == "reset":
            record("cmd_result", op=op, ok=server.close(fd, reset=True))
        elif op == "big":
            record("cmd_result", op=op, ok=server.send(fd, pattern(args[0])))
        elif op == "bigclose":
            sent = server.send(fd, pattern(args[0]))
            record("cmd_result", op=op, ok=[sent, server.close(fd)])
        elif op == "flood":
            record("cmd_result", op=op, ok=[server.send(fd, pattern(args[0])) for _ in range(args[1])])
        elif op == "hold":
            record("holding", fd=fd)
            hold("holding")
            server.send(fd, b"released")
    elif len(data) > BULK:
        record("receive", fd=fd, reactor_id=reactor_id, size=len(data))
        server.send(fd, data)
    else:
        echo(server, fd, reactor_id, data)

serve(server)
"""


def pattern(n: int) -> bytes:
    """The bytes the server's ``pattern(n)`` makes: no ``cmd `` or ``ask `` can start inside them."""
    return (bytes(range(256)) * (n // 256 + 1))[:n]


def start_process_server(start_server, **settings: Any) -> ServerProcess:
    """A ``PROCESS_SERVER`` with ``server.set(**settings)`` (worker_num 2 and reactor_num 2 unless given)."""
    settings = {"worker_num": 2, "reactor_num": 2, **settings}
    return start_server(PROCESS_SERVER, settings=settings, BULK=BULK)


def worker_pids(server: ServerProcess, count: int) -> dict[int, int]:
    """worker id -> pid of the current incarnation of each of the ``count`` workers (waits for them)."""
    starts = server.wait_events("worker_start", count)
    return {e["worker_id"]: e["pid"] for e in starts}  # later incarnations overwrite earlier ones


def worker_of_pid(server: ServerProcess) -> dict[int, int]:
    """pid -> worker id, over every incarnation seen so far."""
    return {e["pid"]: e["worker_id"] for e in server.events("worker_start")}


def whoami(client: StreamClient) -> dict[str, Any]:
    """Session id, socket fd, worker id and pid of the worker that handles this probe of the connection."""
    fd, socket_fd, worker_id, pid, reactor_id = client.ask(
        "[fd, server.get_client_info(fd)['socket_fd'], server.worker_id, os.getpid(), reactor_id]"
    )
    return {"fd": fd, "socket_fd": socket_fd, "worker_id": worker_id, "pid": pid, "reactor_id": reactor_id}


def receive_pids(server: ServerProcess, fd: int) -> list[int]:
    """Pids of the processes that ran Receive for session ``fd``, in recording order."""
    return [e["pid"] for e in server.events("receive", fd=fd)]
