"""``pyswoole top PIDFILE`` in a real terminal (a tmux pane) against a real running server."""

from __future__ import annotations

import re
import shlex

import pytest

from managerkit import cli_command, incarnations
from serverkit import wait_until

pytestmark = pytest.mark.timeout(60)


def test_top_shows_the_live_servers_processes_and_their_rates(start_ops_server, echo_load, pane):
    server = start_ops_server("PROCESS", worker_num=2, task_worker_num=1)
    server.wait_events("worker_start", 3)
    wait_until(lambda: server.pid_file.exists())
    pids = {worker_id: found[-1] for worker_id, found in incarnations(server).items()}
    command = " ".join(shlex.quote(part) for part in [*cli_command(), "top", str(server.pid_file)])

    top = pane(command)

    screen = top.wait_for(lambda screen: all(str(pid) in screen for pid in pids.values()))
    rows = {int(line.split()[0]): line.split() for line in screen.splitlines() if line[:4].strip().isdigit()}
    assert {worker_id: row[1:3] for worker_id, row in rows.items()} == {
        0: ["worker", str(pids[0])],
        1: ["worker", str(pids[1])],
        2: ["task_worker", str(pids[2])],
    }
    assert f"master {server.pid}" in screen and "PROCESS" in screen

    echo_load(server.port, clients=4)

    def serving(screen: str) -> bool:
        rate = re.search(r"requests/s ([\d,.]+)", screen)
        return rate is not None and float(rate.group(1).replace(",", "")) > 100 and "connections 4" in screen

    screen = top.wait_for(serving)
    columns = [line.split() for line in screen.splitlines()]
    worker_rates = [row[5] for row in columns if row[:2] in (["0", "worker"], ["1", "worker"])]  # REQ/S
    assert any(rate not in ("-", "0.0") for rate in worker_rates)  # per worker too

    top.tmux("send-keys", "-t", "top", "q")
    assert top.exit_status() == 0
