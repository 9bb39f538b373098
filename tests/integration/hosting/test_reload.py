"""Zero-downtime reload: keep-alive clients in a closed loop while ``pyswoole reload`` replaces the workers three
times. No request may fail in either mode; in PROCESS mode (the reactor threads hold the connections) no
connection may even be closed. A reload also runs the application's code as it is on disk then, and each replaced
worker runs its lifespan shutdown. (``bench/reload_bench.py`` measures the same against gunicorn and uvicorn.)"""

from __future__ import annotations

import shutil
import socket
import threading
from dataclasses import dataclass, field

import pytest
from hostkit import APPS, http_client, pyswoole

from serverkit import wait_until

pytestmark = pytest.mark.timeout(120)

REQUEST = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"
CLIENTS = 8


@dataclass
class Load:
    port: int
    requests: int = 0
    failed: list[str] = field(default_factory=list)
    closed: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> None:
        """One client: keep-alive requests until the server ends the connection, then a new one."""
        while not self.stop.is_set():
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            except OSError as exc:
                self._fail(f"connect: {exc!r}")
                continue
            with sock:
                buffer = b""
                while not self.stop.is_set():
                    try:
                        sock.sendall(REQUEST)
                        keep_alive, status, buffer = read_response(sock, buffer)
                    except (OSError, EOFError) as exc:
                        self._fail(repr(exc))
                        break
                    with self.lock:
                        self.requests += 1
                    if status != 200:
                        self._fail(f"status {status}")
                    if not keep_alive:
                        with self.lock:
                            self.closed += 1
                        break

    def _fail(self, why: str) -> None:
        with self.lock:
            self.failed.append(why)


def read_response(sock: socket.socket, buffer: bytes) -> tuple[bool, int, bytes]:
    """(keep-alive, status, what follows) of the next whole response with a Content-Length."""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            raise EOFError("closed before the answer")
        buffer += data
    head, rest = buffer.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(b":") for line in lines[1:])}
    length = int(headers[b"content-length"])
    while len(rest) < length:
        data = sock.recv(65536)
        if not data:
            raise EOFError("closed inside the answer")
        rest += data
    return headers.get(b"connection", b"").lower() != b"close", int(lines[0].split()[1]), rest[length:]


def reload_and_wait(served, workers: int) -> None:
    before = served.group_pids()
    result = pyswoole("reload", str(served.pid_file))
    assert result.returncode == 0, result.stderr
    wait_until(lambda: len(before - served.group_pids()) >= workers and len(served.group_pids() - before) >= workers,
               20, "the workers were not replaced")  # fmt: skip


@pytest.mark.parametrize("mode", ["base", "process"])
def test_no_request_fails_while_the_workers_are_reloaded_three_times(serve, tmp_path, mode):
    log = tmp_path / "lifespan.txt"
    served = serve("asgi_probe:app", "--mode", mode, "--workers", "2", "--no-access-log",
                   env={"PROBE_LOG": str(log)})  # fmt: skip
    load = Load(served.port)
    clients = [threading.Thread(target=load.run) for _ in range(CLIENTS)]
    for client in clients:
        client.start()
    try:
        wait_until(lambda: load.requests > 200, 10, "the load never got going")
        for _ in range(3):
            reload_and_wait(served, 2)
            counted = load.requests
            wait_until(lambda: load.requests > counted + 100, 10, "no requests served after the reload")  # noqa: B023
    finally:
        load.stop.set()
        for client in clients:
            client.join(10)

    assert load.failed == [], f"{len(load.failed)} of {load.requests} requests failed: {load.failed[:5]}"
    if mode == "process":
        assert load.closed == 0, "keep-alive connections were closed"

    def startups() -> int:
        return sum(line.startswith("startup") for line in log.read_text().split("\n"))

    # The load may be served by one new worker while the other still runs its startup: wait for it.
    wait_until(lambda: startups() >= 8, 10, "a new worker did not run its lifespan startup")
    assert startups() == 8  # 2 workers, then 2 new ones per reload
    wait_until(lambda: log.read_text().count("shutdown") >= 6, 5, "replaced workers did not run their shutdown")


def test_a_reload_runs_the_applications_code_as_it_is_on_disk_then(serve, tmp_path):
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    source = app_dir / "versioned_app.py"
    shutil.copy(APPS / "versioned_app.py", source)
    served = serve("versioned_app:app", "--workers", "1", app_dir=app_dir)  # PROCESS mode: one worker reloads too
    with http_client(base_url=served.url) as client:
        before = client.get("/").text

        source.write_text(source.read_text().replace('VERSION = "v1"', 'VERSION = "v2, changed"'))
        reload_and_wait(served, 1)
        after = client.get("/").text

    assert before.startswith("v1 ")
    assert after.startswith("v2, changed ")
