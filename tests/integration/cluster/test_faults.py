"""Faults: Redis stopped and restarted under load (the nodes serve their own clients meanwhile, cluster calls
fail with CLUSTER_UNAVAILABLE and recover by themselves, no worker dies), and a node SIGKILLed (its groups are
swept once its registration runs out, its unfinished tasks run on another node, every task finishes once).
The figures each test measured are printed (``pytest -s``)."""

from __future__ import annotations

import os
import signal

from pyswoole import ErrorCode
from pyswoole.cluster.wire import Keys
from serverkit import wait_until

SHORT = {"cluster_node_ttl": 1, "cluster_task_timeout": 1}


def test_redis_stopped_and_restarted_under_load(start_node, node_client, redis_server):
    a = start_node("a", worker_num=2, **SHORT)
    b = start_node("b", worker_num=2, **SHORT)
    receiver = node_client(b)
    sender = node_client(a)
    local_b = node_client(b)
    workers = {e["pid"] for e in a.events("worker_start") + b.events("worker_start")}
    assert sender.ask(f"start_load(server, 'b', {receiver.fd}) > 0") is True
    receiver.received(200)

    redis_server.stop()
    wait_until(lambda: sender.ask("LOAD['codes']").get(str(int(ErrorCode.CLUSTER_UNAVAILABLE)), 0) > 0)
    assert local_b.ask("2 + 2") == 4  # both nodes serve their own clients
    assert sender.ask("server.cluster.members('g')") is False
    assert sender.ask("server.get_last_error()") == ErrorCode.CLUSTER_UNAVAILABLE
    during = sender.ask("dict(LOAD)")
    received_before = len(receiver.inbox)

    redis_server.restart()
    wait_until(lambda: sender.ask("server.cluster.nodes()") == ["a", "b"], timeout=15)
    receiver.received(received_before + 500, timeout=20)  # delivery resumed by itself
    assert sender.ask("server.cluster.join(fd, 'g') and server.cluster.members('g')") == [["a", sender.fd]]
    assert sender.ask("server.clear_timer(LOAD['timer'])") is True
    final = sender.ask("dict(LOAD)")
    stats = wait_until(lambda: (s := sender.ask("server.cluster.stats()"))["sent"] + s["lost"] >= final["ok"] and s)
    # Every message Redis took reached the receiver, but those published while b's postman was away.
    wait_until(lambda: receiver.ask("1") == 1 and len(receiver.inbox) >= stats["sent"] - stats["unheard"])
    numbers = [int(m) for m in receiver.inbox]
    assert numbers == sorted(set(numbers))  # in order, none twice
    assert {e["pid"] for e in a.events("worker_start") + b.events("worker_start")} == workers  # no worker died
    assert "Redis at" in a.log() and "reachable again" in a.log()
    print(
        f"\nRedis stop/restart under load: calls {final['seq']}, accepted {final['ok']}, refused {final['fail']} "
        f"({final['codes']}), during the outage refused {during['fail']}; published {stats['sent']}, lost in flight "
        f"{stats['lost']}, unheard {stats['unheard']}; delivered {len(numbers)}"
    )


def test_a_node_killed_leaves_its_groups_and_its_tasks_run_elsewhere(start_node, node_client, redis_server):
    a = start_node("a", task_worker_num=1, task_backend="cluster", **SHORT)
    b = start_node("b", task_worker_num=2, task_backend="cluster", **SHORT)
    watcher = node_client(a)
    members_b = [node_client(b) for _ in range(3)]
    for client in [watcher, *members_b]:
        assert client.ask("server.cluster.join(fd, 'room')") is True
    assert len(watcher.ask("server.cluster.members('room')")) == 4

    tasks = 12
    ids = [watcher.ask(f"server.task({{'n': {n}, 'sleep': 0.3}})") for n in range(tasks)]
    b.wait_events("task_run", 2)  # both of b's task workers are in the middle of one
    os.killpg(b.pgid, signal.SIGKILL)

    wait_until(lambda: watcher.ask("server.cluster.members('room')") == [["a", watcher.fd]], timeout=10)
    assert watcher.ask("server.cluster.nodes()") == ["a"]
    client = redis_server.client()
    wait_until(lambda: not client.exists(Keys.node_groups("b"), Keys.node_sessions("b")), timeout=10)
    assert not client.sismember(Keys.nodes, "b")

    finished = a.wait_events("finish", tasks, timeout=30)
    assert sorted(e["task_id"] for e in finished) == ids  # each task's Finish once
    ran_on_a = [e["data"]["n"] for e in a.events("task_run")]
    ran_on_b = [e["data"]["n"] for e in b.events("task_run")]
    twice = sorted(set(ran_on_a) & set(ran_on_b))
    assert sorted(set(ran_on_a) | set(ran_on_b)) == list(range(tasks))
    assert 1 <= len(twice) <= 2  # only what b's two task workers had in hand ran again
    assert "taken over by a/" in a.log()
    assert watcher.ask("server.cluster.broadcast('room', 'still here')") is True
    assert watcher.received(1) == ["still here"]
    print(
        f"\nnode SIGKILL: {tasks} tasks; started on b {len(ran_on_b)}, run on a {len(ran_on_a)}, "
        f"run twice {twice} (in hand on b at the kill), finished once each {len(finished)}"
    )
