"""Tasks across nodes (``task_backend="cluster"``): ``task`` with Finish or a callback, ``task_wait``,
``task_wait_multi`` and ``task_co`` keep their meaning while the task runs in a task worker of any node, blocking
or coroutine; ``dst_worker_id`` still names a task worker of the calling node."""

from __future__ import annotations

import pytest

CLUSTER_TASKS = {"task_backend": "cluster"}


@pytest.mark.parametrize("mode", ["BASE", "PROCESS"])
def test_task_runs_on_another_node_and_finish_runs_in_the_caller(start_node, node_client, mode):
    b = start_node("b", mode, task_worker_num=2, **CLUSTER_TASKS)
    a = start_node("a", mode, **CLUSTER_TASKS)
    caller = node_client(a)
    task_ids = [caller.ask(f"server.task({{'n': {n}}})") for n in range(5)]
    assert task_ids == [0, 1, 2, 3, 4]
    finished = a.wait_events("finish", 5)
    assert sorted(e["task_id"] for e in finished) == task_ids
    assert {e["result"]["ran_on"] for e in finished} == {"b"}
    assert sorted(e["data"]["n"] for e in b.events("task_run")) == [0, 1, 2, 3, 4]
    assert {e["src_worker_id"] for e in b.events("task_run")} == {0}


def test_task_wait_task_wait_multi_and_a_finish_callback(start_node, node_client):
    start_node("b", task_worker_num=2, **CLUSTER_TASKS)
    a = start_node("a", **CLUSTER_TASKS)
    caller = node_client(a)
    assert caller.ask("server.task_wait('one', 5)") == {"ran_on": "b", "data": "one", "value": None}
    results = caller.ask("server.task_wait_multi(['x', 'y', 'z'], 5)")
    assert {index: result["data"] for index, result in results.items()} == {"0": "x", "1": "y", "2": "z"}
    caller.ask("server.task('cb', -1, lambda s, task_id, result: record('callback', task_id=task_id, result=result))")
    assert a.wait_event("callback")["result"]["data"] == "cb"
    assert a.events("finish") == []  # the callback took it


def test_task_wait_times_out_with_task_timeout_and_the_late_result_is_dropped(start_node, node_client):
    start_node("b", task_worker_num=1, **CLUSTER_TASKS)
    a = start_node("a", **CLUSTER_TASKS)
    caller = node_client(a)
    assert caller.ask("server.task_wait({'sleep': 1.0}, 0.2)") is False
    assert caller.ask("server.get_last_error() == ErrorCode.TASK_TIMEOUT") is True
    assert caller.ask("server.task_wait('next', 5)")["data"] == "next"  # the late result did not stand in


@pytest.mark.parametrize("coroutine", [False, True], ids=["blocking", "coroutine"])
def test_task_co_gathers_results_from_task_workers_of_both_kinds(start_node, node_client, coroutine):
    start_node("b", task_worker_num=1, task_enable_coroutine=coroutine, **CLUSTER_TASKS)
    a = start_node("a", **CLUSTER_TASKS)
    caller = node_client(a)
    results = caller.ask("server.task_co([1, 2, 3], 5)", awaited=True)
    assert [result["data"] for result in results] == [1, 2, 3]


def test_dst_worker_id_still_names_a_local_task_worker(start_node, node_client):
    start_node("b", task_worker_num=1, **CLUSTER_TASKS)
    a = start_node("a", task_worker_num=1, **CLUSTER_TASKS)
    caller = node_client(a)
    assert caller.ask("server.task_wait('here', 5, 0)")["ran_on"] == "a"


def test_a_task_worker_of_the_calling_node_takes_tasks_from_the_shared_queue_too(start_node, node_client):
    a = start_node("a", task_worker_num=1, **CLUSTER_TASKS)
    caller = node_client(a)
    assert caller.ask("server.task_wait('alone', 5)")["ran_on"] == "a"


def test_with_redis_away_task_answers_false_and_the_waiting_calls_raise(start_node, node_client, redis_server):
    a = start_node("a", **CLUSTER_TASKS)
    caller = node_client(a)
    redis_server.stop()
    assert caller.ask("server.task('x')") is False
    assert caller.ask("server.get_last_error() == ErrorCode.CLUSTER_UNAVAILABLE") is True
    assert caller.ask("server.task_wait('x', 1)").startswith("!ServerError: task_wait: the cluster's Redis")
    assert caller.ask("server.task_co(['x'], 1)", awaited=True).startswith("!ServerError: task_co")
    assert caller.ask("1 + 1") == 2  # the node serves on
