"""``open_cpu_affinity`` binds reactor thread i and worker i (task workers by their worker_id) to the i-th usable
CPU, modulo their number, skipping ``cpu_affinity_ignore``; without it nothing is bound. Read from the kernel:
each process's and thread's ``Cpus_allowed_list``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from serverkit import wait_until

USABLE = sorted(os.sched_getaffinity(0))


def allowed(status: Path) -> set[int]:
    """The CPUs a process or thread may run on, from its /proc status file."""
    for line in status.read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            cpus: set[int] = set()
            for part in line.split(":", 1)[1].strip().split(","):
                first, _, last = part.partition("-")
                cpus.update(range(int(first), int(last or first) + 1))
            return cpus
    raise AssertionError(f"no Cpus_allowed_list in {status}")


def bound_threads(pid: int) -> list[set[int]]:
    """The CPU sets of a process's threads that are bound to fewer CPUs than the test may use."""
    threads = sorted(Path(f"/proc/{pid}/task").iterdir())
    return [cpus for cpus in (allowed(task / "status") for task in threads) if len(cpus) < len(USABLE)]


@pytest.mark.skipif(len(USABLE) < 2, reason="needs at least 2 usable CPUs to tell a binding from none")
@pytest.mark.parametrize("ignore", [None, [USABLE[0]]], ids=["all cpus", "first cpu ignored"])
def test_reactor_threads_workers_and_task_workers_are_bound_as_swoole_binds_them(start_server, ignore):
    server = start_server(
        """
        server = Server("127.0.0.1", 0, Mode.PROCESS)
        report_port(server)
        settings = dict(worker_num=2, reactor_num=2, task_worker_num=1, open_cpu_affinity=True)
        if ignore is not None:
            settings["cpu_affinity_ignore"] = ignore
        server.set(**settings)
        server.on("Receive", lambda *args: None)
        server.on("Task", lambda *args: None)

        @server.on("WorkerStart")
        def started(server, worker_id):
            record("started", worker_id=worker_id, cpus=sorted(os.sched_getaffinity(0)))

        serve(server)
        """,
        ignore=ignore,
    )
    started = {event["worker_id"]: set(event["cpus"]) for event in server.wait_events("started", 3)}

    cpus = [cpu for cpu in USABLE if cpu not in (ignore or ())]
    assert started == {worker_id: {cpus[worker_id % len(cpus)]} for worker_id in range(3)}
    # The master: its two reactor threads bound, to the CPUs of reactor 0 and 1; its main thread not.
    reactors = wait_until(lambda: bound_threads(server.pid) if len(bound_threads(server.pid)) == 2 else None)
    assert sorted(map(sorted, reactors)) == sorted([[cpus[0]], [cpus[1 % len(cpus)]]])
    assert allowed(Path(f"/proc/{server.pid}/status")) == set(USABLE)


def test_without_open_cpu_affinity_nothing_is_bound(start_server):
    server = start_server(
        """
        server = Server("127.0.0.1", 0, Mode.PROCESS)
        report_port(server)
        server.set(worker_num=2, reactor_num=2)
        server.on("Receive", lambda *args: None)

        @server.on("WorkerStart")
        def started(server, worker_id):
            record("started", worker_id=worker_id, cpus=sorted(os.sched_getaffinity(0)))

        serve(server)
        """
    )
    started = server.wait_events("started", 2)

    assert all(event["cpus"] == USABLE for event in started)
    assert bound_threads(server.pid) == []
