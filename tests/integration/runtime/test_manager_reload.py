"""Graceful reload: SIGUSR1 (every worker and task worker), SIGUSR2 (task workers only), ``server.reload()``;
one new incarnation per worker, BeforeReload/AfterReload once, async or rolling, and in PROCESS mode no client
connection is dropped, even under load."""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest

from managerkit import gone, incarnations, start_manager_server, whoami
from serverkit import connect_stream, wait_until

pytestmark = pytest.mark.timeout(60)


def wait_reloads(server, count: int, timeout: float = 10) -> None:
    server.wait_events("after_reload", count, timeout=timeout)


def assert_one_reload_replaced(server, ids_reloaded: list[int], ids_kept: list[int], before: dict[int, list[int]]):
    """Every worker in ``ids_reloaded`` has exactly one incarnation more than ``before``; the others none;
    BeforeReload and AfterReload ran once, in the manager; the old incarnations stopped gracefully."""
    after = incarnations(server)
    for worker_id in ids_reloaded:
        assert len(after[worker_id]) == len(before[worker_id]) + 1, (worker_id, after)
        assert after[worker_id][-1] not in before[worker_id]
        old = before[worker_id][-1]
        assert server.events("worker_stop", pid=old), f"worker {worker_id} (pid {old}) did not stop gracefully"
        wait_until(lambda old=old: gone(old), message=f"old worker {worker_id} (pid {old}) lives on")
    for worker_id in ids_kept:
        assert after[worker_id] == before[worker_id], (worker_id, after)
    manager = server.events("manager_start")[0]["pid"]
    assert [e["pid"] for e in server.events("before_reload")] == [manager]
    assert [e["pid"] for e in server.events("after_reload")] == [manager]
    reload_started = server.events("before_reload")[0]["t"]
    reload_done = server.events("after_reload")[0]["t"]
    for worker_id in ids_reloaded:
        new = server.events("worker_start", pid=after[worker_id][-1])[0]
        assert reload_started < new["t"]
        stop = server.events("worker_stop", pid=before[worker_id][-1])[0]
        assert reload_started < stop["t"] < reload_done
    assert server.events("worker_error") == []


@pytest.mark.parametrize("mode", ["BASE", "PROCESS"])
def test_sigusr1_restarts_every_worker_and_task_worker_once(start_server, connect, mode):
    server = start_manager_server(start_server, mode, worker_num=2, task_worker_num=2)
    server.wait_events("worker_start", 4)
    manager = server.wait_event("manager_start")["pid"]
    client = connect(server)
    assert client.request(b"before") == b"before"
    was = whoami(client)
    before = incarnations(server)

    # PROCESS mode: the master forwards it to the manager. BASE mode: the script's process is the manager.
    assert manager == server.pid if mode == "BASE" else manager != server.pid
    server.signal(signal.SIGUSR1)

    wait_reloads(server, 1)
    server.wait_events("worker_start", 8)
    assert_one_reload_replaced(server, [0, 1, 2, 3], [], before)
    wait_until(lambda: "INFO\tServer is reloading all workers now" in server.log())
    if mode == "PROCESS":  # the client's connection lives in the master: the reload does not touch it
        assert client.request(b"after") == b"after"
        now = whoami(client)
        assert now["fd"] == was["fd"] and now["pid"] == incarnations(server)[now["worker_id"]][-1]
        assert server.events("close") == []
    assert connect(server).request(b"a new client") == b"a new client"
    assert connect(server).ask("server.task_wait('a task after the reload', 5)") == "a task after the reload"
    assert sum(map(len, incarnations(server).values())) == 8  # no more restarts meanwhile


def test_sigusr2_restarts_only_the_task_workers(start_server, connect):
    server = start_manager_server(start_server, "PROCESS", worker_num=2, task_worker_num=2)
    server.wait_events("worker_start", 4)
    client = connect(server)
    was = whoami(client)
    before = incarnations(server)

    server.signal(signal.SIGUSR2)

    wait_reloads(server, 1)
    server.wait_events("worker_start", 6)
    assert_one_reload_replaced(server, [2, 3], [0, 1], before)
    assert server.events("worker_start", taskworker=True)[-1]["worker_id"] in (2, 3)
    wait_until(lambda: "INFO\tServer is reloading task workers now" in server.log())
    assert whoami(client) == was
    assert client.ask("server.task_wait('after', 5)") == "after"


def test_sigusr2_without_task_workers_reloads_nothing(start_server, connect):
    server = start_manager_server(start_server, "PROCESS", worker_num=2)
    server.wait_events("worker_start", 2)

    server.signal(signal.SIGUSR2)

    wait_until(lambda: "cannot reload task workers, task workers is not started" in server.log())
    # Then a real reload: had SIGUSR2 started one, BeforeReload would show twice.
    server.signal(signal.SIGUSR1)
    wait_reloads(server, 1)
    server.wait_events("worker_start", 4)
    assert len(server.events("before_reload")) == 1
    assert connect(server).request(b"served") == b"served"
    assert {worker_id: len(pids) for worker_id, pids in incarnations(server).items()} == {0: 2, 1: 2}


def test_reload_from_a_worker_and_new_workers_import_the_code_afresh(start_server, connect):
    server = start_server("""
        import importlib

        with open("handler.py", "w") as f:  # the script's directory is on sys.path
            f.write('VERSION = "first"\\n')
        server = recording_server(worker_num=2, task_worker_num=1)
        server.on("Task", lambda server, task_id, src, data: data)
        server.on("BeforeReload", lambda server: record("before_reload"))
        server.on("AfterReload", lambda server: record("after_reload"))

        @server.on("WorkerStart")
        def on_worker_start(server, worker_id):
            handler = importlib.import_module("handler")  # imported by the workers only
            record("worker_start", worker_id=worker_id, version=handler.VERSION)

        serve(server)
    """)
    server.wait_events("worker_start", 3)
    before = incarnations(server)
    assert {e["version"] for e in server.events("worker_start")} == {"first"}
    (server.workdir / "handler.py").write_text('VERSION = "second, longer"\n')  # another size: no stale .pyc

    assert connect(server).ask("server.reload()") is True

    wait_reloads(server, 1)
    server.wait_events("worker_start", 6)
    after = incarnations(server)
    assert all(len(after[i]) == 2 and after[i][0] == before[i][0] for i in (0, 1, 2))
    assert [e["version"] for e in server.events("worker_start")][3:] == ["second, longer"] * 3
    assert len(server.events("before_reload")) == 1
    assert connect(server).ask("__import__('sys').modules['handler'].VERSION") == "second, longer"


ROLLING_SERVER = """
# reload_async=False needs enable_coroutine=False (Swoole forces reload_async on with coroutines).
server = recording_server(mode=Mode.PROCESS, worker_num=3, reactor_num=1, reload_async=reload_async,
                          enable_coroutine=reload_async)
server.on("BeforeReload", lambda server: record("before_reload"))
server.on("AfterReload", lambda server: record("after_reload"))
server.on("WorkerStart", lambda server, worker_id: record("worker_start", worker_id=worker_id))

@server.on("WorkerStop")
def on_worker_stop(server, worker_id):
    record("stop_begin", worker_id=worker_id)
    time.sleep(0.3)  # a slow WorkerStop makes the overlap (or not) of the old workers' exits visible
    record("stop_end", worker_id=worker_id)

serve(server)
"""


@pytest.mark.parametrize("reload_async", [False, True])
def test_rolling_reload_replaces_one_worker_at_a_time_and_async_reload_all_at_once(start_server, connect, reload_async):
    server = start_server(ROLLING_SERVER, reload_async=reload_async)
    server.wait_events("worker_start", 3)
    before = incarnations(server)
    client = connect(server)

    server.signal(signal.SIGUSR1)

    wait_reloads(server, 1)
    server.wait_events("worker_start", 6)
    old = {worker_id: pids[0] for worker_id, pids in before.items()}
    new = {worker_id: pids[1] for worker_id, pids in incarnations(server).items()}
    begin = {w: server.events("stop_begin", pid=pid)[0]["t"] for w, pid in old.items()}
    end = {w: server.events("stop_end", pid=pid)[0]["t"] for w, pid in old.items()}
    started = {w: server.events("worker_start", pid=pid)[0]["t"] for w, pid in new.items()}
    after_reload = server.events("after_reload")[0]["t"]
    if reload_async:
        # Every old worker got its SIGTERM at once, and its replacement started without waiting for it.
        assert max(begin.values()) < min(end.values())
        assert all(started[w] < end[w] for w in old)
    else:
        # One at a time, in worker order: the next one is stopped only after the previous one exited.
        order = sorted(old, key=begin.get)
        assert order == [0, 1, 2]
        assert all(end[a] < begin[b] for a, b in zip(order, order[1:], strict=False))
        assert all(started[w] > end[w] for w in old)
    assert max(end.values()) < after_reload
    assert len(server.events("before_reload")) == len(server.events("after_reload")) == 1
    assert client.request(b"still connected") == b"still connected"


LOAD_SERVER = """
server = Server("127.0.0.1", 0, Mode.PROCESS)
report_port(server)
server.set(worker_num=4, reactor_num=2, log_level=4)
server.on("BeforeReload", lambda server: record("before_reload"))
server.on("AfterReload", lambda server: record("after_reload"))
server.on("WorkerStart", lambda server, worker_id: record("worker_start", worker_id=worker_id))
server.on("Close", lambda server, fd, reactor_id: record("close", fd=fd))


@server.on("Receive")
async def on_receive(server, fd, reactor_id, data):
    await asyncio.sleep(0.001)  # so that a reload always finds requests in flight, which must still be answered
    server.send(fd, data)

serve(server)
"""

CLIENTS = 50


class LoadClient(threading.Thread):
    """Request/response on one connection until told to stop; any short, wrong or missing reply is an error."""

    def __init__(self, port: int, index: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.client = connect_stream(("127.0.0.1", port), timeout=10)
        self.index = index
        self.stop = stop
        self.done = 0
        self.error: str | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                request = b"client %02d request %06d\n" % (self.index, self.done)
                reply = self.client.request(request)
                if reply != request:
                    raise AssertionError(f"wrong reply {reply!r} to {request!r}")
                self.done += 1
        except Exception as exc:
            self.error = f"client {self.index} after {self.done} replies: {type(exc).__name__}: {exc}"


def test_a_reload_under_load_loses_no_request_and_drops_no_connection(start_server, capsys):
    server = start_server(LOAD_SERVER)
    server.wait_events("worker_start", 4)
    stop = threading.Event()
    clients = [LoadClient(server.port, i, stop) for i in range(CLIENTS)]
    started = time.monotonic()
    for client in clients:
        client.start()

    def total() -> int:
        return sum(c.done for c in clients)

    def errors() -> list[str]:
        return [c.error for c in clients if c.error]

    def run_for(seconds: float, at_least: int) -> None:
        """Let the clients work for a while (and at least so many replies), unless one fails."""
        until, floor = time.monotonic() + seconds, total() + at_least
        wait_until(
            lambda: (time.monotonic() >= until and total() >= floor) or errors(),
            timeout=30,
            message=lambda: f"only {total()} replies",
        )

    during = []  # replies answered while a reload was under way
    try:
        for reload in range(2):
            run_for(1.0, 500)
            reload_started = total()
            server.signal(signal.SIGUSR1)
            wait_reloads(server, reload + 1, timeout=20)
            during.append(total() - reload_started)
        run_for(1.0, 500)
    finally:
        stop.set()
        for client in clients:
            client.join(15)
    duration = time.monotonic() - started
    requests = total()

    assert errors() == []
    assert all(not c.is_alive() for c in clients)
    assert all(c.done > 0 for c in clients)
    assert server.events("close") == []  # no connection was closed on the server's side
    assert len(server.events("worker_start")) == 4 * 3
    assert len(server.events("before_reload")) == len(server.events("after_reload")) == 2
    for client in clients:  # every connection is still open and served
        assert client.client.request(b"last\n") == b"last\n"
    figures = (
        f"reload under load: {CLIENTS} clients, {requests} requests all answered in {duration:.1f} s "
        f"({requests / duration:.0f} req/s), 2 reloads ({during[0]} and {during[1]} replies while they ran), "
        f"0 lost, 0 connections dropped"
    )
    with server.events_path.open("a") as events:  # kept with the server's events, for the failure report
        events.write(json.dumps({"kind": "figures", "text": figures}) + "\n")
    with capsys.disabled():
        print("\n" + figures)


DRAIN_SERVER = """
server = recording_server(mode=Mode.PROCESS, worker_num=1, reactor_num=1, max_wait_time=max_wait_time)
server.on("BeforeReload", lambda server: record("before_reload"))
server.on("AfterReload", lambda server: record("after_reload"))
server.on("WorkerStart", lambda server, worker_id: record("worker_start", worker_id=worker_id))
server.on("WorkerExit", lambda server, worker_id: record("worker_exit", worker_id=worker_id))
server.on("WorkerError", lambda server, worker_id, pid, code, signo: record(
    "worker_error", worker_id=worker_id, worker_pid=pid, exit_code=code, signal=signo))

@server.on("Receive")
async def on_receive(server, fd, reactor_id, data):
    record("receive", data=data)
    if data == b"slow":
        await ahold("finish")
        record("replying", ok=server.send(fd, b"finished by %d" % os.getpid()))
    elif data == b"block":
        time.sleep(60)  # blocks the whole worker: it cannot even see its SIGTERM
    else:
        server.send(fd, b"%s from %d" % (data, os.getpid()))

serve(server)
"""


def test_an_old_worker_finishes_its_coroutines_while_its_replacement_already_serves(start_server, connect):
    server = start_server(DRAIN_SERVER, max_wait_time=10)
    old = server.wait_event("worker_start")["pid"]
    client = connect(server)
    client.send(b"slow")
    server.wait_event("receive", data="slow")

    server.signal(signal.SIGUSR1)

    new = server.wait_events("worker_start", 2)[1]["pid"]  # started at once, not after the old one left
    server.wait_event("worker_exit", pid=old)  # WorkerExit: the old worker waits for its coroutine
    assert client.request(b"meanwhile", len(b"meanwhile from %d" % new)) == b"meanwhile from %d" % new
    assert server.events("after_reload") == [] and not gone(old)

    server.release("finish")

    assert client.recv_exactly(len(b"finished by %d" % old)) == b"finished by %d" % old
    server.wait_event("after_reload")
    wait_until(lambda: gone(old))
    assert server.events("worker_error") == []
    assert {e["pid"] for e in server.events("worker_exit")} == {old}
    assert client.request(b"after", len(b"after from %d" % new)) == b"after from %d" % new


def test_a_worker_that_does_not_stop_within_max_wait_time_is_killed_and_the_reload_completes(start_server, connect):
    server = start_server(DRAIN_SERVER, max_wait_time=1)
    old = server.wait_event("worker_start")["pid"]
    client = connect(server)
    client.send(b"block")
    server.wait_event("receive", data="block")

    server.signal(signal.SIGUSR1)

    error = server.wait_event("worker_error")
    assert (error["worker_pid"], error["exit_code"], error["signal"]) == (old, 0, 9)
    began = server.wait_event("before_reload")["t"]
    assert 0.9 <= error["t"] - began <= 3.0  # after max_wait_time, not at once, not much later
    server.wait_event("after_reload")
    assert f"force kill worker process(pid={old}, id=0)" in server.log()
    new = incarnations(server)[0][-1]
    assert new != old
    assert client.request(b"served", len(b"served from %d" % new)) == b"served from %d" % new
    assert len(server.events("before_reload")) == len(server.events("after_reload")) == 1
