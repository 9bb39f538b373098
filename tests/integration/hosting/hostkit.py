"""Run ``pyswoole serve`` in a real process and talk to it; this module holds no tests.

``Served`` is one ``python -m pyswoole serve ...`` process, started in its own session with its output in a file
and a pid_file in its work directory; ``start()`` returns once the server answers HTTP on its port (or fails at
once, with the output, when the process exits first). ``stop()`` sends SIGTERM and returns the exit status; the
fixtures kill whatever is left of the process group at teardown.

Invariant: nothing here sleeps for a fixed time; every wait is a condition with a deadline.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from serverkit import wait_until

APPS = Path(__file__).resolve().parent / "apps"
REPO = Path(__file__).resolve().parents[3]
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pyswoole(*args: str, timeout: float = 30.0, cwd: Path | None = None, env: dict | None = None):
    """``python -m pyswoole ARGS`` to its end: the CompletedProcess (text output)."""
    return subprocess.run(
        [sys.executable, "-m", "pyswoole", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )


def raw_exchange(port: int, requests: bytes) -> bytes:
    """Send ``requests`` (raw HTTP, pipelined) on one connection; return everything received until the server
    closes it or the last response ends with ``probe`` (what the probe applications answer ``GET /`` with)."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(requests)
        while not received.endswith(b"probe"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    return received


def http_client(**options) -> httpx.Client:
    """An httpx client that ignores proxy variables of the environment."""
    return httpx.Client(trust_env=False, timeout=options.pop("timeout", 10.0), **options)


class Served:
    """One ``pyswoole serve`` process (see the module's docstring)."""

    def __init__(self, workdir: Path, app: str, *options: str, app_dir: Path = APPS, env: dict | None = None):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.pid_file = workdir / "server.pid"
        self.log_path = workdir / "output.txt"
        self.app = app
        self.options = list(options)
        self.app_dir = app_dir
        self.env = {**os.environ, "PYTHONFAULTHANDLER": "1", **(env or {})}
        self.uds = self.options[self.options.index("--uds") + 1] if "--uds" in self.options else None
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        where = [] if self.uds else ["--port", str(self.port)]
        return [sys.executable, "-m", "pyswoole", "serve", "--app-dir", str(self.app_dir),
                "--pid-file", str(self.pid_file), *where, *self.options, self.app]  # fmt: skip

    def launch(self) -> Served:
        """Start the process without waiting for it to serve."""
        self.port = self.port or free_port()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                         env=self.env, start_new_session=True)  # fmt: skip
        return self

    def start(self, ready_path: str = "/") -> Served:
        """Start and return once ``GET ready_path`` gets an answer (any status)."""
        for _attempt in range(3):
            self.launch()
            try:
                wait_until(lambda: self._answers(ready_path), START_TIMEOUT, self.describe)
                return self
            except Exception:
                assert self.proc is not None
                if self.proc.poll() is not None and "Address already in use" in self.output():
                    self.port = 0  # the free port was taken meanwhile: another one
                    continue
                raise
        raise AssertionError(self.describe())

    def _answers(self, path: str) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"the server exited with {self.proc.returncode}\n{self.describe()}")
        if self.uds:
            family, address = socket.AF_UNIX, self.uds
        else:
            family, address = socket.AF_INET, ("127.0.0.1", self.port)
        try:
            with socket.socket(family) as sock:
                sock.settimeout(5)
                sock.connect(address)
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
                return sock.recv(16).startswith(b"HTTP/1.")
        except OSError:
            return False

    def wait(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Signal the server's first process and return its exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def group_pids(self) -> set[int]:
        """The live processes of the server's session (its workers, manager, task workers...)."""
        assert self.proc is not None
        pids = set()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as stat:
                        fields = stat.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[3]) == self.proc.pid and fields[0] not in "ZX":  # session id
                    pids.add(int(entry))
        return pids

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def describe(self) -> str:
        status = None if self.proc is None else self.proc.poll()
        return f"pyswoole serve {self.app} (exit status {status}):\n{self.output()[-6000:]}"


def deadline_loop(seconds: float):
    """Yield until ``seconds`` have passed (a load loop's clock)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        yield
