"""The admin server of a real running server, in every process model: ``/metrics`` (read with prometheus_client's
parser) and ``/stats`` follow the server as it serves, restarts and reloads its workers; the token; the checks
made at ``start()`` before anything forks."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from managerkit import MANAGER_SERVER, incarnations, run_cli
from serverkit import ServerProcess, wait_until

pytestmark = pytest.mark.timeout(60)

# (mode, worker_num, task_worker_num): with a manager in both modes, and BASE mode's one-process server
MODELS = [("PROCESS", 2, 1), ("BASE", 2, 1), ("BASE", 1, 0)]
SNAPSHOT_KEYS = {"time", "server", "master_pid", "manager_pid", "mode", "workers", "restarts", "reloads",
                 "dropped_pipe_messages"}  # fmt: skip
WORKER_KEYS = {"id", "type", "pid", "status", "requests", "dispatch", "rss_bytes", "connections", "started"}
CAUSES = {"crash", "max_request", "max_worker_rss", "worker_timeout", "reload", "exit"}


def get(url: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(url, headers=headers, timeout=10)


def stats(server: ServerProcess, token: str | None = None) -> dict[str, Any]:
    """``/stats``, once the admin server answers (it is bound before start() forks; it serves from the first
    snapshot on)."""

    def answered() -> dict[str, Any] | None:
        try:
            response = get(server.admin_url + "/stats", token)  # type: ignore[attr-defined]
        except httpx.TransportError:
            server._fail_if_exited("before its admin server answered")
            return None
        assert response.status_code == 200, response.text
        return dict(response.json())

    return wait_until(answered, message="the admin server never answered")


def settled_stats(server: ServerProcess) -> dict[str, Any]:
    """``/stats`` once it shows the current process of every worker (snapshots are published every 100 ms)."""
    return wait_until(
        lambda: (s := stats(server)) and {row["id"]: row["pid"] for row in s["workers"]} == current_pids(server) and s
    )


def metrics(server: ServerProcess) -> dict[str, list[Any]]:
    """``/metrics`` parsed: family name -> its samples (each with ``.labels`` and ``.value``)."""
    response = get(server.admin_url + "/metrics")  # type: ignore[attr-defined]
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {family.name: family.samples for family in text_string_to_metric_families(response.text)}


def value(families: dict[str, list[Any]], name: str, **labels: str) -> float:
    matching = [sample.value for sample in families[name] if all(sample.labels.get(k) == v for k, v in labels.items())]
    assert len(matching) == 1, (name, labels, families.get(name))
    return float(matching[0])


def current_pids(server: ServerProcess) -> dict[int, int]:
    return {worker_id: pids[-1] for worker_id, pids in incarnations(server).items()}


def serving_pid(server: ServerProcess, mode: str, worker_num: int) -> int:
    """The process that serves the admin server: the manager, or the only process."""
    if mode == "PROCESS":
        return int(server.wait_event("manager_start")["pid"])
    return server.pid


def listening_socket_holders(server: ServerProcess, port: int) -> set[int]:
    """Pids of the server's processes that hold the socket listening on 127.0.0.1:``port``."""
    wanted = f"0100007F:{port:04X}"
    inodes = set()
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[1] == wanted and fields[3] == "0A":  # 0A: LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    holders = set()
    for pid in server.group():
        try:
            links = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        except OSError:
            continue  # exited meanwhile
        if links & inodes:
            holders.add(pid)
    return holders


@pytest.mark.parametrize(("mode", "worker_num", "task_worker_num"), MODELS)
def test_metrics_show_every_worker_and_move_under_load(
    start_ops_server: Callable[..., ServerProcess], echo_load: Callable[..., Any], mode, worker_num, task_worker_num
):
    server = start_ops_server(mode, worker_num=worker_num, task_worker_num=task_worker_num)
    server.wait_events("worker_start", worker_num + task_worker_num)
    stats(server)
    pids = current_pids(server)
    kinds = {worker_id: "worker" if worker_id < worker_num else "task_worker" for worker_id in pids}

    # The snapshot is published every 100 ms: wait for one made once every process had begun.
    before = wait_until(
        lambda: (
            (m := metrics(server))
            and all(value(m, "pyswoole_worker_pid", worker=str(i), type=kinds[i]) == pid for i, pid in pids.items())
            and m
        )
    )

    assert value(before, "pyswoole_info", mode=mode) == 1
    for worker_id, kind in kinds.items():
        assert value(before, "pyswoole_worker_status", worker=str(worker_id), type=kind, status="exit") == 0
        rss = wait_until(lambda w=worker_id: value(metrics(server), "pyswoole_worker_rss_bytes", worker=str(w)))
        assert 10 << 20 < rss < 1 << 30
    assert value(before, "pyswoole_workers", type="worker") == worker_num
    assert {sample.labels["cause"] for sample in before["pyswoole_worker_restarts"]} == CAUSES
    assert "pyswoole_http_responses" not in before  # no HTTP port
    requests_before = value(before, "pyswoole_requests")

    def per_worker(m) -> float:
        return sum(
            value(m, "pyswoole_worker_requests", worker=str(worker_id), type="worker")
            for worker_id in range(worker_num)
        )

    load = echo_load(server.port, clients=4)
    # The total and the per-worker rows are published by each process on its own beat: wait for both to move.
    moved = wait_until(
        lambda: (
            (m := metrics(server))
            and value(m, "pyswoole_requests") >= requests_before + 500
            and per_worker(m) >= requests_before + 500
            and m
        ),
        message=lambda: f"requests_total did not move; {load.answered} round trips answered",
    )

    assert value(moved, "pyswoole_connections") == 4
    assert per_worker(moved) >= requests_before + 500
    assert value(moved, "pyswoole_accepts") >= 4
    answered = load.stop()
    final = wait_until(lambda: (m := metrics(server)) and value(m, "pyswoole_connections") == 0 and m)
    assert value(final, "pyswoole_requests") >= requests_before + answered
    assert value(final, "pyswoole_responses") >= answered


@pytest.mark.parametrize(("mode", "worker_num", "task_worker_num"), MODELS)
def test_stats_is_the_snapshot_that_status_json_prints(
    start_ops_server: Callable[..., ServerProcess], mode, worker_num, task_worker_num
):
    server = start_ops_server(mode, worker_num=worker_num, task_worker_num=task_worker_num)
    server.wait_events("worker_start", worker_num + task_worker_num)
    snapshot = settled_stats(server)
    wait_until(lambda: server.pid_file.exists())  # type: ignore[attr-defined]
    status = run_cli("status", "--json", str(server.pid_file))  # type: ignore[attr-defined]
    assert status.returncode == 0, status.stderr
    printed = json.loads(status.stdout)

    for shown in (snapshot, printed):
        assert set(shown) == SNAPSHOT_KEYS  # no "http": no HTTP port
        assert shown["mode"] == mode
        assert shown["server"]["worker_num"] == worker_num
        assert set(shown["restarts"]) == CAUSES
        assert shown["reloads"] == 0 and shown["dropped_pipe_messages"] == 0
        assert [set(row) for row in shown["workers"]] == [WORKER_KEYS] * (worker_num + task_worker_num)
    assert [row["type"] for row in snapshot["workers"]] == ["worker"] * worker_num + ["task_worker"] * task_worker_num
    assert all(row["status"] in ("idle", "busy") for row in snapshot["workers"])
    if mode == "PROCESS":
        assert (snapshot["master_pid"], snapshot["manager_pid"]) == (server.pid, serving_pid(server, mode, 0))
    elif worker_num > 1:
        assert snapshot["manager_pid"] == server.pid
    else:
        assert (snapshot["master_pid"], snapshot["manager_pid"]) == (server.pid, 0)
    # Only the process serving the admin server holds its socket: every other one closed its copy.
    port = int(server.admin_url.rsplit(":", 1)[1])  # type: ignore[attr-defined]
    assert listening_socket_holders(server, port) == {serving_pid(server, mode, worker_num)}


def test_with_a_token_every_request_but_the_page_needs_it(start_ops_server: Callable[..., ServerProcess]):
    server = start_ops_server("PROCESS", worker_num=1, admin_server_token="s3cret")
    server.wait_events("worker_start", 1)
    stats(server, token="s3cret")
    url = server.admin_url  # type: ignore[attr-defined]

    assert get(url + "/stats").status_code == 401
    assert get(url + "/metrics").status_code == 401
    assert get(url + "/metrics", token="wrong").status_code == 401
    assert get(url + "/stats", token="s3cret").json()["mode"] == "PROCESS"
    assert "pyswoole_requests_total" in get(url + "/metrics", token="s3cret").text
    page = get(url + "/")
    assert page.status_code == 200 and "pyswoole dashboard" in page.text


@pytest.mark.parametrize("mode", ["PROCESS", "BASE"])
def test_a_non_loopback_address_without_a_token_fails_start_before_any_worker(start_server, mode):
    server = start_server(MANAGER_SERVER, mode=mode, settings={"worker_num": 2, "admin_server": "0.0.0.0:9502"})

    assert server.wait_exit() != 0
    error = server.wait_event("start_returned")["error"]
    assert error.startswith("ValueError: admin_server: '0.0.0.0:9502' is not a loopback address")
    assert "admin_server_token" in error
    assert server.kinds() == ["start_returned"]  # no manager, no worker: nothing was forked


@pytest.mark.parametrize("mode", ["PROCESS", "BASE"])
def test_an_admin_address_in_use_fails_start_before_any_worker(start_server, mode):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        server = start_server(
            MANAGER_SERVER, mode=mode, settings={"worker_num": 2, "admin_server": f"127.0.0.1:{port}"}
        )

        assert server.wait_exit() != 0
    error = server.wait_event("start_returned")["error"]
    assert error == f"ServerError: admin_server 127.0.0.1:{port}: Address already in use"
    assert server.kinds() == ["start_returned"]


@pytest.mark.parametrize("mode", ["PROCESS", "BASE"])
def test_the_admin_server_answers_all_through_a_reload(start_ops_server: Callable[..., ServerProcess], mode):
    server = start_ops_server(mode, worker_num=2, task_worker_num=1)
    server.wait_events("worker_start", 3)
    before = settled_stats(server)
    answers: list[int] = []
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                answers.append(client.get(server.admin_url + "/stats").status_code)  # type: ignore[attr-defined]

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        wait_until(lambda: len(answers) >= 5)
        reload = run_cli("reload", str(server.pid_file))  # type: ignore[attr-defined]
        assert reload.returncode == 0, reload.stderr
        server.wait_event("after_reload")
        during = len(answers)
        wait_until(lambda: len(answers) >= during + 5)
    finally:
        stop.set()
        poller.join(10)

    assert set(answers) == {200}
    wait_until(lambda: len(server.events("worker_start")) == 6)
    after = settled_stats(server)
    assert (after["reloads"], after["restarts"]["reload"]) == (1, 3)
    assert not {row["pid"] for row in after["workers"]} & {row["pid"] for row in before["workers"]}


@pytest.mark.parametrize("mode", ["PROCESS", "BASE"])
def test_restarts_are_counted_by_cause(start_ops_server: Callable[..., ServerProcess], connect, mode):
    server = start_ops_server(
        mode, worker_num=2, max_request=20, max_request_grace=0, worker_timeout=1, max_worker_rss="64M"
    )
    server.wait_events("worker_start", 2)
    expected = dict.fromkeys(CAUSES, 0)
    assert stats(server)["restarts"] == expected

    def restarted(cause: str, count: int = 1) -> None:
        expected[cause] += count
        wait_until(
            lambda: stats(server)["restarts"] == expected,
            message=lambda: f"restarts {stats(server)['restarts']}, expected {expected}",
        )

    client = connect(server)
    for i in range(20):  # the 20th request of its worker: recycled
        assert client.request(b"request %02d" % i) == b"request %02d" % i
    restarted("max_request")
    connect(server).send(b"exit 3")
    restarted("crash")
    connect(server).send(b"exit 0")  # a clean exit that the manager did not ask for
    restarted("exit")
    assert connect(server).request(b"grow 96", 6) == b"grown\n"
    restarted("max_worker_rss")
    connect(server).send(b"spin")
    restarted("worker_timeout")
    assert run_cli("reload", str(server.pid_file)).returncode == 0  # type: ignore[attr-defined]
    restarted("reload", 2)  # both workers

    final = stats(server)
    assert final["reloads"] == 1
    families = metrics(server)
    for cause, count in expected.items():
        assert value(families, "pyswoole_worker_restarts", cause=cause) == count
    assert value(families, "pyswoole_reloads") == 1


HTTP_SERVER = """
from pyswoole import HttpServer

server = HttpServer("127.0.0.1", 0, getattr(Mode, mode))
report_port(server)
server.set(worker_num=2, **settings)
server.on("Request", lambda request, response: response.end("hello"))
serve(server)
"""


@pytest.mark.parametrize("mode", ["PROCESS", "BASE"])
def test_a_server_with_an_http_port_reports_responses_by_status_class(start_ops_server, mode):
    server = start_ops_server(mode, script=HTTP_SERVER)
    assert httpx.get(f"http://127.0.0.1:{server.port}/", timeout=10).text == "hello"

    snapshot = stats(server)

    assert set(snapshot["http"]) == {"1xx", "2xx", "3xx", "4xx", "5xx"}
    families = metrics(server)
    assert {sample.labels["class"] for sample in families["pyswoole_http_responses"]} == set(snapshot["http"])
