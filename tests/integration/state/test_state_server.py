"""A real pyswoole Server whose two workers share a Table and an Atomic, and refuse to make new ones.

PROCESS mode with dispatch_mode 1 (round robin) sends successive requests to alternating workers, so the counts
each reply carries show whether both workers see every change of the other.
"""

from __future__ import annotations

SHARED_COUNTERS = """
from pyswoole import Atomic, AtomicLong, Lock, Table

hits = Table(1024)
hits.column("count", Table.TYPE_INT)
hits.create()
total = Atomic()
never_created = Table(64)  # made before start(), create()d too late
never_created.column("n", Table.TYPE_INT)

server = Server("127.0.0.1", 0, Mode.PROCESS)
report_port(server)
server.set(worker_num=2, dispatch_mode=1)

def on_worker_start(server, worker_id):
    record(
        "worker_start",
        worker_id=worker_id,
        table=attempt(lambda: Table(64)),
        atomic=attempt(Atomic),
        atomic_long=attempt(AtomicLong),
        lock=attempt(Lock),
        create=attempt(never_created.create),
    )

def on_receive(server, fd, reactor_id, data):
    client = data.decode().strip()
    count = hits.incr(client, "count")
    server.send(fd, f"{count} {total.add()} {os.getpid()}\\n".encode())

server.on("WorkerStart", on_worker_start)
server.on("Receive", on_receive)
serve(server)
"""


def test_two_workers_share_every_change_to_a_table_and_an_atomic(start_server, connect):
    server = start_server(SHARED_COUNTERS)
    server.wait_events("worker_start", 2)
    clients = {name: connect(server) for name in ("alice", "bob", "carol")}

    replies: dict[str, list[tuple[int, int, int]]] = {name: [] for name in clients}
    for _ in range(20):
        for name, client in clients.items():
            client.send(name.encode() + b"\n")
            count, total, pid = map(int, client.recv_line().split())
            replies[name].append((count, total, pid))

    pids = {pid for answers in replies.values() for _, _, pid in answers}
    assert len(pids) == 2, f"both workers served: {pids}"
    for answers in replies.values():
        assert [count for count, _, _ in answers] == list(range(1, 21))  # one row, counted by both workers
    totals = sorted(total for answers in replies.values() for _, total, _ in answers)
    assert totals == list(range(1, 61))  # one Atomic, every add seen by both


def test_a_worker_cannot_make_a_table_atomic_or_lock_after_start(start_server):
    server = start_server(SHARED_COUNTERS)
    for event in server.wait_events("worker_start", 2):
        for made in ("table", "atomic", "atomic_long", "lock", "create"):
            assert event[made].startswith("!ServerError: unable to create"), (made, event[made])
