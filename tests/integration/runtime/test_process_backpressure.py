"""PROCESS mode's max_queued_bytes: a connection whose data waits in a busy worker stops being read."""

from __future__ import annotations

import threading

import pytest

from processkit import start_process_server, whoami
from serverkit import wait_until

MIB = 1024 * 1024


@pytest.mark.timeout(30)
@pytest.mark.parametrize("limit, bound", [(64 * 1024, 1 * MIB), (0, None)])
def test_max_queued_bytes_stops_reading_a_connection_whose_worker_is_busy(start_server, connect, limit, bound):
    server = start_process_server(start_server, worker_num=2, reactor_num=1, max_queued_bytes=limit)
    busy, watcher = connect(server.port), connect(server.port)
    busy_fd, busy_worker = whoami(busy)["fd"], whoami(busy)["worker_id"]
    while whoami(watcher)["worker_id"] == busy_worker:  # the watcher must be served by the other worker
        watcher = connect(server.port)
    busy.send(b"cmd hold")
    server.wait_event("holding", fd=busy_fd)
    payload = bytes(range(256)) * (16 * 4096)  # 16 MiB
    sender = threading.Thread(target=lambda: busy.sock.sendall(payload), daemon=True)
    sender.start()

    def queued() -> int:
        return watcher.ask(f"server.get_client_info({busy_fd})['recv_queued_bytes']")

    if bound is None:  # without the limit the reactor keeps reading into the worker's pipe queue
        wait_until(lambda: queued() > 4 * MIB, timeout=10, message="recv_queued_bytes never grew")
        server.release("holding")
        sender.join(20)
        assert not sender.is_alive()
        return
    wait_until(lambda: queued() > limit, timeout=10, message="nothing was queued for the busy worker")
    peak = max(queued() for _ in range(20))
    assert peak <= bound
    server.release("holding")  # the worker catches up, reading resumes, every byte arrives
    wait_until(
        lambda: sum(e["size"] for e in server.events("receive", fd=busy_fd) if "size" in e) >= len(payload) - 16384,
        timeout=20,
        message="the rest of the data never arrived",
    )
    sender.join(10)
    assert not sender.is_alive()
