"""``pyswoole reload|stop|status PIDFILE``: the operator's command line against a running server."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from managerkit import MANAGER_SERVER, incarnations, run_cli
from serverkit import wait_until

pytestmark = pytest.mark.timeout(60)


def start_cli_server(start_server, mode: str, **settings):
    settings = {"pid_file": "server.pid", "stats_timer_interval": 100, **settings}
    if mode == "PROCESS":
        settings.setdefault("reactor_num", 1)
    server = start_server(MANAGER_SERVER, mode=mode, settings=settings)
    server.pid_file = server.workdir / "server.pid"
    return server


def status_json(server) -> dict:
    """The whole snapshot that ``status --json`` prints; its ``server`` part is stats()."""
    result = run_cli("status", "--json", str(server.pid_file))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize(("mode", "worker_num"), [("PROCESS", 2), ("BASE", 2), ("BASE", 1)])
def test_status_shows_the_running_servers_stats_as_a_table_and_as_json(start_server, connect, mode, worker_num):
    server = start_cli_server(start_server, mode, worker_num=worker_num)
    server.wait_events("worker_start", worker_num)
    clients = [connect(server) for _ in range(3)]
    for i, client in enumerate(clients):
        assert client.request(b"hello %d" % i) == b"hello %d" % i
    wait_until(lambda: server.pid_file.exists())

    # The stats file is rewritten every stats_timer_interval (100 ms): wait for one that counts the clients.
    snapshot = wait_until(
        lambda: (s := status_json(server))["server"]["connection_num"] == 3 and s["server"]["request_count"] >= 3 and s,
        message="status never showed the 3 clients",
    )
    stats = snapshot["server"]
    table = run_cli("status", str(server.pid_file))

    assert stats["worker_num"] == worker_num
    assert int(server.pid_file.read_text()) == server.pid
    if mode == "BASE" and worker_num > 1:  # the script's process is the manager; worker 0 stands for the master
        assert snapshot["manager_pid"] == server.pid
        assert snapshot["master_pid"] == server.events("worker_start", worker_id=0)[-1]["pid"]
    else:
        assert snapshot["master_pid"] == server.pid
    assert stats["accept_count"] >= 3 and stats["close_count"] == 0
    assert list(stats)[:4] == ["start_time", "connection_num", "abort_count", "accept_count"]  # Swoole's order
    assert table.returncode == 0, table.stderr
    rows = dict(line.split(None, 1) for line in table.stdout.splitlines())
    assert set(rows) >= {"connection_num", "request_count", "worker_num", "master_pid", "manager_pid"}
    assert rows["worker_num"].strip() == str(worker_num)
    assert int(rows["connection_num"]) >= 0

    clients[0].close()
    wait_until(lambda: status_json(server)["server"]["connection_num"] == 2, message="status never saw the close")


def test_reload_restarts_the_workers_and_reload_task_workers_only_the_task_workers(start_server, connect):
    server = start_cli_server(start_server, "PROCESS", worker_num=2, task_worker_num=1)
    server.wait_events("worker_start", 3)
    wait_until(lambda: server.pid_file.exists())
    client = connect(server)

    task_only = run_cli("reload", "--task-workers", str(server.pid_file))

    assert (task_only.returncode, task_only.stdout.strip()) == (0, "reload of task workers requested")
    server.wait_events("after_reload", 1)
    wait_until(lambda: len(incarnations(server).get(2, [])) == 2)
    assert [len(incarnations(server)[i]) for i in (0, 1)] == [1, 1]

    everything = run_cli("reload", str(server.pid_file))

    assert (everything.returncode, everything.stdout.strip()) == (0, "reload of all workers requested")
    server.wait_events("after_reload", 2)
    wait_until(lambda: [len(incarnations(server).get(i, [])) for i in (0, 1, 2)] == [2, 2, 3])
    assert len(server.events("before_reload")) == 2
    assert server.events("worker_error") == []
    assert client.request(b"still connected") == b"still connected"


@pytest.mark.parametrize("mode", ["PROCESS", "BASE"])
def test_stop_shuts_the_server_down_and_waits_for_it(start_server, connect, mode):
    server = start_cli_server(start_server, mode, worker_num=2)
    server.wait_events("worker_start", 2)
    wait_until(lambda: server.pid_file.exists() and (server.workdir / "server.pid.stats.json").exists())
    client = connect(server)
    assert client.request(b"x") == b"x"

    stopped = run_cli("stop", str(server.pid_file))

    assert (stopped.returncode, stopped.stdout.strip()) == (0, f"server {server.pid} stopped"), stopped.stderr
    assert server.wait_exit(timeout=1) == 0  # already gone when the command returned
    assert server.kinds()[-2:] == ["shutdown", "start_returned"]
    assert not server.pid_file.exists()
    assert not (server.workdir / "server.pid.stats.json").exists()
    assert client.recv_eof() == b""


def test_commands_on_a_missing_or_stale_pid_file_fail_with_a_message(tmp_path):
    missing = tmp_path / "missing.pid"
    for command in ("status", "stop", "reload"):
        result = run_cli(command, str(missing))
        assert result.returncode != 0
        assert f"cannot read a pid from {missing}" in result.stderr

    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / "stale.pid"
    stale.write_text(f"{dead.pid}\n")
    for command in ("status", "stop", "reload"):
        result = run_cli(command, str(stale))
        assert result.returncode != 0
        assert f"no server runs as pid {dead.pid}" in result.stderr


def test_reload_of_a_single_process_server_does_not_kill_it(start_server, connect):
    server = start_cli_server(start_server, "BASE", worker_num=1)
    server.wait_events("worker_start", 1)
    wait_until(lambda: server.pid_file.exists())
    client = connect(server)

    result = run_cli("reload", str(server.pid_file))

    assert result.returncode == 0
    wait_until(lambda: "reload is not supported with single process mode" in server.log())
    assert client.request(b"still served") == b"still served"
    assert server.alive()
    assert len(server.events("worker_start")) == 1
    os.kill(server.pid, signal.SIGTERM)
    assert server.wait_exit() == 0


def test_version_is_the_installed_package_version_from_both_entry_points():
    import subprocess
    import sys
    from importlib.metadata import version

    script = run_cli("--version")
    module = subprocess.run([sys.executable, "-m", "pyswoole", "--version"], capture_output=True, text=True, timeout=20)

    assert script.returncode == module.returncode == 0
    assert script.stdout == module.stdout == f"pyswoole {version('pyswoole')}\n"
