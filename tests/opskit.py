"""Helpers for the operations tests: a snapshot of the shape the server publishes, and a select() loop in a
thread that drives an AdminServer as the manager will."""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any

from pyswoole.ops.admin import AdminServer


def make_snapshot(requests: int = 5000, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    return {
        "time": now,
        "server": {
            "start_time": int(now) - 3725, "connection_num": 7, "accept_count": 120, "close_count": 113,
            "abort_count": 2, "request_count": requests, "response_count": requests, "dispatch_count": requests,
            "total_recv_bytes": 640_000, "total_send_bytes": 638_720, "worker_num": 2, "task_worker_num": 1,
            "user_worker_num": 0, "idle_worker_num": 1, "task_idle_worker_num": 1, "tasking_num": 3,
            "task_count": 40, "pipe_packet_msg_id": 0, "session_round": 120,
        },
        "master_pid": 4100, "manager_pid": 4101, "mode": "PROCESS",
        "workers": [
            {"id": 0, "type": "worker", "pid": 4102, "status": "busy", "requests": requests * 3 // 5,
             "dispatch": requests * 3 // 5, "rss_bytes": 31_457_280, "connections": 4, "started": now - 3700},
            {"id": 1, "type": "worker", "pid": 4103, "status": "idle", "requests": requests * 2 // 5,
             "dispatch": requests * 2 // 5, "rss_bytes": 29_360_128, "connections": 3, "started": now - 3700},
            {"id": 2, "type": "task_worker", "pid": 4104, "status": "idle", "requests": 40, "dispatch": 40,
             "rss_bytes": 25_165_824, "connections": 0, "started": now - 3700},
        ],
        "restarts": {"crash": 1, "max_request": 4, "max_worker_rss": 0, "worker_timeout": 0, "reload": 2},
        "reloads": 1, "dropped_pipe_messages": 0,
        "http": {"1xx": 0, "2xx": 4800, "3xx": 10, "4xx": 170, "5xx": 10},
    }  # fmt: skip


class SelectLoop:
    """The manager's part: select() on what the admin server asks for, hand it what is ready, in a thread."""

    def __init__(self, server: AdminServer) -> None:
        self.server = server
        self.passes = 0
        self.longest_pass = 0.0
        self._wake_read, self._wake_write = os.pipe()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping:
            readers, writers = self.server.fds()
            ready_read, ready_write, _ = select.select([*readers, self._wake_read], writers, [], 0.05)
            started = time.monotonic()
            for fd in ready_read + ready_write:
                if fd != self._wake_read:
                    self.server.on_ready(fd)
            self.longest_pass = max(self.longest_pass, time.monotonic() - started)
            self.passes += 1

    @property
    def url(self) -> str:
        host, port = self.server.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def stop(self) -> None:
        self._stopping = True
        os.write(self._wake_write, b"x")
        self._thread.join(5)
        assert not self._thread.is_alive()
        os.close(self._wake_read)
        os.close(self._wake_write)
        self.server.close()


AdminFactory = Callable[..., SelectLoop]
