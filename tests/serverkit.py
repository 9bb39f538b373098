"""Run pyswoole servers in real processes and watch them from a test.

Two halves, one per side of the process boundary:

* the *script side*, imported by the server scripts that the ``start_server`` fixture writes:
  ``record(kind, **fields)`` appends one JSON line per event to the events file,
  ``report_port(server)`` publishes the bound port, ``hold(gate)`` / ``ahold(gate)`` block a
  callback until the test opens that gate, ``recording_server(...)`` builds a server whose
  callbacks record every event and echo, ``answer`` serves ``ask`` probes, ``serve(server)``
  starts it and records what start() returned. All of it works in any process the server forks.
* the *test side*: ``ServerProcess`` (the handle on a running server script), ``wait_until``
  and the socket clients.

Invariant: the test never sleeps for a fixed time. It waits for a condition with a deadline,
and a condition that is not met in time fails the test with what was seen so far.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

EVENTS_ENV = "PYSWOOLE_TEST_EVENTS"
PORTFILE_ENV = "PYSWOOLE_TEST_PORTFILE"
GATES_ENV = "PYSWOOLE_TEST_GATES"

DEFAULT_TIMEOUT = 10.0

ASK = b"ask "  # prefix of a probe request: b"ask <python expression>\n"


# --------------------------------------------------------------------------------------------
# Script side
# --------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        # latin-1 maps every byte to one code point, so the test sees the exact bytes as a str.
        return bytes(value).decode("latin-1")
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return repr(value)


def record(kind: str, **fields: Any) -> None:
    """Append one event line ``{"kind", "pid", "t", **fields}`` to the events file.

    One ``write()`` on an ``O_APPEND`` descriptor: lines from concurrent processes never
    interleave, and the order of lines is the order in which they were recorded.
    """
    line = {"kind": kind, "pid": os.getpid(), "t": time.monotonic(), **fields}
    data = (json.dumps(line, default=_jsonable) + "\n").encode()
    fd = os.open(os.environ[EVENTS_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def report_port(server: Any) -> None:
    """Publish ``server.port`` for the test (atomically: the test never reads half a number)."""
    path = os.environ[PORTFILE_ENV]
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{server.port}\n")
    os.replace(tmp, path)


def _gate_path(gate: str) -> str:
    return os.path.join(os.environ[GATES_ENV], gate)


def hold(gate: str, timeout: float = 20.0) -> None:
    """Block the calling process until the test calls ``ServerProcess.release(gate)``."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(_gate_path(gate)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {gate!r} was never released")
        time.sleep(0.005)


async def ahold(gate: str, timeout: float = 20.0) -> None:
    """``hold`` for coroutines: suspends only the calling task, not the event loop."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(_gate_path(gate)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {gate!r} was never released")
        await asyncio.sleep(0.005)


def attempt(compute: Callable[[], Any]) -> Any:
    """``compute()``, or the text ``"!ExcType: message"`` if it raises.

    Recorders use it so that one missing or broken server method spoils only the assertion that
    looks at it, not the whole event.
    """
    try:
        return compute()
    except Exception as exc:
        return f"!{type(exc).__name__}: {exc}"


def answer(server: Any, fd: int, data: bytes, **names: Any) -> None:
    """Reply to ``b"ask <python expression>\n"`` with one JSON line: ``{"value": ...}`` or ``{"error": ...}``.

    The expression is evaluated in the worker, with ``server``, ``fd``, ``os`` and ``names`` in
    scope: the test side is ``StreamClient.ask(expression)``.
    """
    expression = data[len(ASK) :].decode().strip()
    scope = {"server": server, "fd": fd, "os": os, "json": json, **names}
    try:
        reply = {"value": eval(expression, scope)}
    except Exception as exc:
        reply = {"error": f"{type(exc).__name__}: {exc}"}
    server.send(fd, json.dumps(reply, default=_jsonable) + "\n")


def recording_server(
    host: str = "127.0.0.1",
    port: int = 0,
    mode: Any = None,
    sock_type: Any = None,
    **settings: Any,
) -> Any:
    """A pyswoole Server, not started, that records every event and echoes what it receives.

    Every callback records an event named after it in snake_case (``worker_start``, ``connect``,
    ``receive``, ...). Receive echoes the data back, except ``b"ask ..."`` (see ``answer``);
    Packet echoes the datagram to its sender. A test script overrides whichever callback its
    behaviour needs, then calls ``serve(server)``.
    """
    from pyswoole import Mode, Server, SockType

    server = Server(host, port, Mode.BASE if mode is None else mode, SockType.TCP if sock_type is None else sock_type)
    report_port(server)
    if settings:
        server.set(**settings)

    def process_fields(server: Any) -> dict:
        return {
            "ppid": os.getppid(),
            "worker_id_property": attempt(lambda: server.worker_id),
            "master_pid": attempt(server.get_master_pid),
            "manager_pid": attempt(server.get_manager_pid),
        }

    def worker_fields(server: Any) -> dict:
        return {
            **process_fields(server),
            "get_worker_id": attempt(server.get_worker_id),
            "worker_pid": attempt(lambda: server.worker_pid),
        }

    server.on("Start", lambda s: record("start", **process_fields(s)))
    server.on("Shutdown", lambda s: record("shutdown", **process_fields(s)))
    server.on("ManagerStart", lambda s: record("manager_start", **process_fields(s)))
    server.on("ManagerStop", lambda s: record("manager_stop", **process_fields(s)))
    server.on("WorkerStart", lambda s, wid: record("worker_start", worker_id=wid, **worker_fields(s)))
    server.on("WorkerStop", lambda s, wid: record("worker_stop", worker_id=wid, **worker_fields(s)))

    def on_connect(server: Any, fd: int, reactor_id: int) -> None:
        record("connect", fd=fd, reactor_id=reactor_id)

    def on_receive(server: Any, fd: int, reactor_id: int, data: bytes) -> None:
        record("receive", fd=fd, reactor_id=reactor_id, data=data, type=type(data).__name__)
        if data.startswith(ASK):
            answer(server, fd, data, reactor_id=reactor_id)
        else:
            server.send(fd, data)

    def on_close(server: Any, fd: int, reactor_id: int) -> None:
        record("close", fd=fd, reactor_id=reactor_id, info=attempt(lambda: server.get_client_info(fd)))

    def on_packet(server: Any, data: bytes, client_info: dict) -> None:
        record("packet", data=data, client_info=client_info)
        server.sendto(client_info["address"], client_info.get("port", 0), data)  # no port: UNIX

    if sock_type in (SockType.UDP, SockType.UDP6, SockType.UNIX_DGRAM):
        server.on("Packet", on_packet)
    else:
        server.on("Connect", on_connect)
        server.on("Receive", on_receive)
        server.on("Close", on_close)
    return server


def serve(server: Any) -> None:
    """``server.start()``, recording what it returned (or raised) as ``start_returned``."""
    try:
        record("start_returned", value=server.start())
    except Exception as exc:
        record("start_returned", error=f"{type(exc).__name__}: {exc}")
        raise


# --------------------------------------------------------------------------------------------
# Test side: waiting
# --------------------------------------------------------------------------------------------

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A condition the test waited for was not met before its deadline."""


def wait_until(
    predicate: Callable[[], T],
    timeout: float = DEFAULT_TIMEOUT,
    message: str | Callable[[], str] = "",
    interval: float = 0.005,
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise WaitTimeout(f"not met within {timeout} s: {text or predicate}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# Test side: the server process
# --------------------------------------------------------------------------------------------

EventMatch = str | Callable[[dict], bool]


def _matches(event: dict, match: EventMatch | None, fields: dict) -> bool:
    if match is not None:
        if callable(match):
            if not match(event):
                return False
        elif event.get("kind") != match:
            return False
    return all(event.get(k) == v for k, v in fields.items())


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgrp) of a live process, from /proc; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: the fields start after the last ")".
    state, ppid, pgrp = stat[stat.rindex(")") + 2 :].split()[:3]
    return state, int(ppid), int(pgrp)


def process_title(pid: int) -> str:
    """The command line of a process as ps shows it (what setproctitle set); "" if it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _live_pids(where: Callable[[int, int], bool]) -> list[int]:
    """Pids of non-zombie processes whose (ppid, pgrp) satisfy ``where``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _proc_stat(int(entry))
        if stat is not None and stat[0] not in "ZX" and where(stat[1], stat[2]):
            pids.append(int(entry))
    return sorted(pids)


class ServerProcess:
    """A server script running in its own process group, with its files in ``workdir``.

    ``pid`` is the process that runs the script (in BASE mode: the master, and the manager
    when worker_num > 1). Everything it and its children ``record()`` is read by ``events()``.
    """

    def __init__(self, name: str, script: Path, workdir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.script = script
        self.workdir = workdir
        self.events_path = workdir / "events.jsonl"
        self.port_path = workdir / "port"
        self.gates_dir = workdir / "gates"
        self.gates_dir.mkdir()
        self.stdout_path = workdir / "stdout.txt"
        self.stderr_path = workdir / "stderr.txt"
        self.events_path.touch()
        env = {
            **env,
            EVENTS_ENV: str(self.events_path),
            PORTFILE_ENV: str(self.port_path),
            GATES_ENV: str(self.gates_dir),
        }
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-u", str(script)],
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        self.pid = self.proc.pid
        self.pgid = self.pid  # start_new_session: the script leads its own group
        self.adopted_groups: list[int] = []  # more process groups to kill at teardown (a daemon's)
        self._port: int | None = None

    # -- the port -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port, as published by ``report_port()``; waits for it."""
        if self._port is None:

            def published() -> str | None:
                try:
                    text = self.port_path.read_text()
                except FileNotFoundError:
                    text = ""
                if text.endswith("\n"):
                    return text  # truthy even for port 0 (UNIX sockets)
                self._fail_if_exited("before reporting its port")
                return None

            self._port = int(wait_until(published, message=lambda: f"{self.name} reported no port"))
        return self._port

    # -- events ---------------------------------------------------------------------------

    def events(self, match: EventMatch | None = None, **fields: Any) -> list[dict]:
        """Recorded events in recording order, optionally filtered by kind (or predicate) and fields."""
        with open(self.events_path, "rb") as f:
            lines = f.read().split(b"\n")
        # The last element is "" after a complete line, or a line still being written: skip it.
        events = [json.loads(line) for line in lines[:-1]]
        return [e for e in events if _matches(e, match, fields)]

    def kinds(self) -> list[str]:
        return [e["kind"] for e in self.events()]

    def wait_event(self, match: EventMatch, timeout: float = DEFAULT_TIMEOUT, **fields: Any) -> dict:
        """The first event matching; waits for it."""
        return self.wait_events(match, 1, timeout, **fields)[0]

    def wait_events(self, match: EventMatch, count: int, timeout: float = DEFAULT_TIMEOUT, **fields: Any) -> list[dict]:
        """All events matching, once there are at least ``count`` of them."""

        def enough() -> list[dict] | None:
            found = self.events(match, **fields)
            if len(found) >= count:
                return found
            self._fail_if_exited(f"with {len(found)} of {count} events {match!r} {fields}")
            return None

        return wait_until(
            enough,
            timeout,
            message=lambda: f"{count} x {match!r} {fields} from {self.name}; events: {self.kinds()}",
        )

    def release(self, gate: str) -> None:
        """Open a gate that server code waits on with ``hold(gate)`` / ``ahold(gate)``."""
        (self.gates_dir / gate).touch()

    # -- the process ----------------------------------------------------------------------

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        """Signal the script's process only (as ``kill PID`` does)."""
        self.proc.send_signal(sig)

    def signal_group(self, sig: int) -> None:
        """Signal every process of the group (as Ctrl-C in a terminal, or systemd's stop, does)."""
        os.killpg(self.pgid, sig)

    def wait_exit(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        """The script's exit code (negative: killed by that signal); waits for the exit."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise WaitTimeout(f"{self.name} (pid {self.pid}) still running after {timeout} s")

    def children(self) -> list[int]:
        """Live (non-zombie) child processes of the script's process."""
        return _live_pids(lambda ppid, pgrp: ppid == self.pid)

    def group(self) -> list[int]:
        """Live (non-zombie) processes of the script's process group: it and all it forked."""
        return _live_pids(lambda ppid, pgrp: pgrp == self.pgid)

    def adopt_group(self, pgid: int) -> None:
        """Also kill process group ``pgid`` at teardown: a daemonized server leaves the script's group.
        While that group runs, waiting for events does not fail because the script's process has exited."""
        if pgid not in self.adopted_groups:
            self.adopted_groups.append(pgid)

    def _adopted_alive(self) -> bool:
        """True while a process of an adopted group runs (a daemon lives on after the script exited)."""
        groups = self.adopted_groups
        return bool(groups) and bool(_live_pids(lambda ppid, pgrp: pgrp in groups))

    def kill(self) -> None:
        """SIGKILL the whole process group (and every adopted group) and reap the script's process."""
        for pgid in self.adopted_groups:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for _ in range(3):
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                continue
            if not self.group():
                return

    # -- output ---------------------------------------------------------------------------

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def log(self) -> str:
        """stdout then stderr of the script and everything it forked."""
        return self.stdout() + self.stderr()

    def describe(self) -> str:
        """Everything that helps debug a failure: exit status, output, events."""
        status = "running" if self.alive() else f"exited with {self.proc.returncode}"
        adopted = f", adopted groups {self.adopted_groups}" if self.adopted_groups else ""
        return (
            f"{self.name}: pid {self.pid}, {status}, group {self.group()}{adopted}\n"
            f"--- script {self.script}\n{self.script.read_text()}\n"
            f"--- stdout\n{self.stdout()}\n--- stderr\n{self.stderr()}\n"
            f"--- events\n{self.events_path.read_text()}"
        )

    def _fail_if_exited(self, what: str) -> None:
        if self.proc.poll() is not None and not self._adopted_alive():
            raise AssertionError(f"{self.name} exited with {self.proc.returncode} {what}\n{self.log()}")


# --------------------------------------------------------------------------------------------
# Test side: clients
# --------------------------------------------------------------------------------------------


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    """Exactly ``n`` bytes from a stream socket; fails on EOF before that."""
    chunks = []
    remaining = n
    while remaining:
        chunk = sock.recv(min(remaining, 1 << 20))
        if not chunk:
            got = n - remaining
            raise AssertionError(f"EOF after {got} of {n} bytes: {b''.join(chunks)[:200]!r}")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class StreamClient:
    """A blocking TCP or UNIX-stream client with a timeout on every operation."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @property
    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_exactly(self, n: int) -> bytes:
        return recv_exactly(self.sock, n)

    def request(self, data: bytes, reply_size: int | None = None) -> bytes:
        """Send ``data`` and read a reply of ``reply_size`` bytes (default: as long as ``data``)."""
        self.send(data)
        return self.recv_exactly(len(data) if reply_size is None else reply_size)

    def recv_line(self) -> bytes:
        """Bytes up to and including the next b"\\n"."""
        data = bytearray()
        while not data.endswith(b"\n"):
            byte = self.sock.recv(1)
            if not byte:
                raise AssertionError(f"EOF before end of line: {bytes(data)!r}")
            data += byte
        return bytes(data)

    def recv_json(self) -> Any:
        """One JSON document sent by the server as a single line."""
        return json.loads(self.recv_line())

    def ask(self, expression: str) -> Any:
        """The value of a Python expression evaluated by the worker that owns this connection.

        The server must answer ``b"ask ..."`` with ``serverkit.answer`` (``recording_server`` does).
        """
        self.send(ASK + expression.encode() + b"\n")
        reply = self.recv_json()
        if "error" in reply:
            raise AssertionError(f"server raised evaluating {expression!r}: {reply['error']}")
        return reply["value"]

    def recv_eof(self) -> bytes:
        """Everything until the server closes its end; fails if it does not within the timeout."""
        data = bytearray()
        while chunk := self.sock.recv(65536):
            data += chunk
        return bytes(data)

    def close(self) -> None:
        self.sock.close()

    def abort(self) -> None:
        """Close with a TCP reset (SO_LINGER 0) instead of an orderly FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def connect_stream(
    address: tuple | str,
    family: int = socket.AF_INET,
    timeout: float = DEFAULT_TIMEOUT,
    server: ServerProcess | None = None,
) -> StreamClient:
    """Connect, retrying while refused: the server binds at construction but listens at start().

    With ``server``, stop retrying (and fail with its output) as soon as its process has exited.
    """
    deadline = time.monotonic() + timeout
    while True:
        if server is not None:
            server._fail_if_exited("while a client was connecting")
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
            return StreamClient(sock)
        except OSError as exc:
            sock.close()
            refused = exc.errno in (errno.ECONNREFUSED, errno.ENOENT, errno.EAGAIN)
            if not refused or time.monotonic() >= deadline:
                raise
        time.sleep(0.01)


def datagram_socket(family: int = socket.AF_INET, bind: Any = None, timeout: float = DEFAULT_TIMEOUT) -> socket.socket:
    """A UDP or UNIX-datagram socket with a timeout, bound to ``bind`` if given."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    if bind is not None:
        sock.bind(bind)
    return sock
