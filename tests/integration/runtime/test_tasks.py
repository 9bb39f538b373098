"""Task workers: task(), Finish, finish(), task_wait(), task_wait_multi(), task_co(), and their error returns.

Every test starts a real server (BASE or PROCESS mode) from ``TASK_SERVER`` and drives it through
``client.ask(expression)``: the expression runs in the event worker that owns the connection, with the
helpers of the script in scope. What the task workers, Finish and PipeMessage see is recorded as events.

The Task callback understands commands, tuples ``(op, *args)`` (see ``on_task``); anything else is echoed
back as its result. A few commands block on purpose (``sleep``, ``hold``) to make a task slow.
"""

from __future__ import annotations

import hashlib
import os
import signal

import pytest

from serverkit import ServerProcess, wait_until

MODES = ["base", "process"]

TASK_SERVER = r"""
import hashlib
from serverkit import _jsonable

MODE = Mode.PROCESS if mode == "process" else Mode.BASE
server = recording_server(mode=MODE, **settings)
HELPERS = {}


def helper(fn):
    HELPERS[fn.__name__] = fn
    return fn


def pattern(n):
    return (bytes(range(256)) * (n // 256 + 1))[:n]


def digest(data):
    return hashlib.sha256(data).hexdigest()


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    def __repr__(self):
        return f"Point({self.x}, {self.y})"


HELPERS.update(Point=Point, pattern=pattern, digest=digest, time=time)


def describe(value):
    # What an event records of a value: itself when small, else its size and digest.
    if isinstance(value, (bytes, bytearray)) and len(value) > 256:
        return {"len": len(value), "sha256": digest(value)}
    if isinstance(value, (str, int, float, bool, type(None), bytes)):
        return value
    if isinstance(value, (list, dict)):
        try:
            json.dumps(value)
            return value
        except (TypeError, ValueError):
            pass
    return repr(value)


@server.on("WorkerStart")
def on_worker_start(server, worker_id):
    record("worker_start", worker_id=worker_id, taskworker=server.taskworker,
           worker_id_property=server.worker_id, get_worker_id=server.get_worker_id(), ppid=os.getppid())
    if start_tasks and not server.taskworker:
        def send_tasks():
            record("start_task_ids", worker_id=server.worker_id,
                   ids=[server.task(("ret", [server.worker_id, i])) for i in range(start_tasks)])
        server.after(20, send_tasks)


if manager_task:
    @server.on("ManagerStart")
    def on_manager_start(server):
        record("manager_task", id=server.task(("noreply_probe", "manager")),
               message=server.send_message("from the manager", 0), manager_pid=server.get_manager_pid())


if master_task:
    @server.on("Start")
    def on_start(server):
        server.after(50, lambda: record("master_task", id=server.task(("noreply_probe", "master"))))


SEEN = []


@server.on("Task")
def on_task(server, task_id, src_worker_id, data):
    if not (type(data) is tuple and data and isinstance(data[0], str)):
        op, args = "echo", (data,)
    else:
        op, args = data[0], data[1:]
    if op == "quiet":  # many tasks, (quiet, value, how many, seconds to sleep): one event when all came
        SEEN.append(task_id)
        if args[2]:
            time.sleep(args[2])
        if len(SEEN) == args[1]:
            record("task_seen", ids=SEEN, worker_id=server.worker_id)
        return ("quiet", args[0], os.getpid())
    record("task", task_id=task_id, src=src_worker_id, worker_id=server.worker_id, taskworker=server.taskworker,
           op=op, dtype=type(data).__name__, data=describe(data) if op == "echo" else None)
    if op == "echo":
        return data
    if op == "ret":
        return args[0]
    if op == "none":
        return None
    if op == "finish":
        record("finished", task_id=task_id, ok=server.finish(args[0]))
        return None
    if op == "finish_then_return":
        record("finished", task_id=task_id, ok=server.finish(args[0]), again=server.finish("third"))
        return args[1]
    if op == "sleep":
        time.sleep(args[0])
        return args[1]
    if op == "raise":
        raise RuntimeError("boom in Task")
    if op == "unpicklable":
        return lambda: "a lambda cannot be pickled"
    if op == "nested":
        record("nested", task=server.task("inner"), task_error=server.get_last_error(),
               task_wait=server.task_wait("inner", 0.1), task_wait_multi=server.task_wait_multi(["inner"], 0.1))
        return "nested done"
    if op == "noreply_probe":
        record("noreply", who=args[0], src=src_worker_id, finish=server.finish("nobody listens"))
        return "nobody listens either"
    if op == "hold":
        record("task_holding", gate=args[0], worker_id=server.worker_id)
        hold(args[0])
        return args[0]
    if op == "big":
        return pattern(args[0])
    if op == "digest":
        return [type(args[0]).__name__, len(args[0]), digest(args[0])]
    if op == "send_message":
        return server.send_message(args[0], args[1])
    if op == "stats":
        return server.stats()
    raise ValueError(f"unknown op {op!r}")


FINISHED = {"want": 0, "results": []}


@helper
def burst(n, dst=-1, slow_first=0.0):
    # n tasks in one go from this worker; Finish records one event when all n results are in.
    FINISHED.update(want=n, results=[])
    ids = []
    for i in range(n):
        ids.append(server.task(("quiet", i, n, slow_first if i == 0 else 0), dst))
    return ids


def on_finish(server, task_id, result):
    if type(result) is tuple and result[:1] == ("quiet",):
        FINISHED["results"].append([task_id, result[1], result[2]])
        if len(FINISHED["results"]) == FINISHED["want"]:
            record("all_finished", results=FINISHED["results"], worker_id=server.worker_id)
        return
    record("finish", task_id=task_id, result=describe(result), rtype=type(result).__name__,
           worker_id=server.worker_id, taskworker=server.taskworker)


server.on("Finish", on_finish)


@helper
def with_callback(data):
    def callback(server, task_id, result):
        record("callback", task_id=task_id, result=describe(result), worker_id=server.worker_id)
    return server.task(data, -1, callback)


@helper
def timed(call):
    # [what call() returned, seconds it took, get_last_error() after it]
    started = time.monotonic()
    value = call()
    return [describe(value), time.monotonic() - started, server.get_last_error()]


@helper
def raised(call):
    # The exception call() raised, as [is a TypeError, its type name, its text]; or its value.
    try:
        return {"value": describe(call())}
    except Exception as exc:
        return {"type_error": isinstance(exc, TypeError), "name": type(exc).__name__, "text": str(exc)}


@helper
def types_of(values):
    return [type(v).__name__ for v in values]


@server.on("WorkerError")
def on_worker_error(server, worker_id, worker_pid, exit_code, signal_number):
    record("worker_error", worker_id=worker_id, worker_pid=worker_pid, exit_code=exit_code, signal=signal_number)


if pipe_message:
    @server.on("PipeMessage")
    def on_pipe_message(server, src_worker_id, message):
        record("pipe_message", worker_id=server.worker_id, taskworker=server.taskworker, src=src_worker_id,
               message=describe(message), mtype=type(message).__name__)


def handle(server, fd, reactor_id, data):
    if data.startswith(b"ask "):
        answer(server, fd, data, **HELPERS)
    else:
        server.send(fd, data)


if async_receive:
    @server.on("Receive")
    async def on_receive(server, fd, reactor_id, data):
        if data.startswith(b"await "):
            scope = {**HELPERS, "server": server, "fd": fd, "asyncio": asyncio}
            try:
                reply = {"value": await eval(data[6:].decode().strip(), scope)}
            except Exception as exc:
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            server.send(fd, json.dumps(reply, default=_jsonable) + "\n")
        else:
            handle(server, fd, reactor_id, data)
else:
    server.on("Receive", handle)

serve(server)
"""

DEFAULTS = {"start_tasks": 0, "manager_task": False, "master_task": False, "pipe_message": True, "async_receive": False}


def start_tasks_server(start_server, mode: str, **options) -> ServerProcess:
    """A TASK_SERVER; ``options`` are script switches (see DEFAULTS) or settings."""
    switches = {key: options.pop(key, default) for key, default in DEFAULTS.items()}
    settings = {"worker_num": 1, "task_worker_num": 1, **options}
    return start_server(TASK_SERVER, mode=mode, settings=settings, **switches)


def task_starts(server: ServerProcess, count: int) -> list[dict]:
    return server.wait_events("worker_start", count, taskworker=True)


def pattern(n: int) -> bytes:
    return (bytes(range(256)) * (n // 256 + 1))[:n]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(params=MODES)
def mode(request) -> str:
    return request.param


def finishes_by_id(server: ServerProcess) -> dict[int, dict]:
    return {e["task_id"]: e for e in server.events("finish")}


# --------------------------------------------------------------------------------------------------------
# task() and Finish
# --------------------------------------------------------------------------------------------------------


def test_task_ids_count_from_zero_in_each_worker_and_finish_runs_in_that_worker(start_server, mode):
    server = start_tasks_server(start_server, mode, worker_num=2, task_worker_num=2, start_tasks=3)

    sent = server.wait_events("start_task_ids", 2)
    finishes = server.wait_events("finish", 6)
    tasks = server.events("task")

    assert sorted(e["worker_id"] for e in sent) == [0, 1]
    assert [e["ids"] for e in sent] == [[0, 1, 2], [0, 1, 2]]
    pid_of = {e["worker_id"]: e["pid"] for e in server.events("worker_start")}
    for finish in finishes:
        origin, index = finish["result"]
        assert finish["task_id"] == index
        assert (finish["worker_id"], finish["pid"], finish["taskworker"]) == (origin, pid_of[origin], False)
    assert sorted((t["src"], t["task_id"]) for t in tasks) == [(w, i) for w in (0, 1) for i in range(3)]
    assert {t["worker_id"] for t in tasks} <= {2, 3} and all(t["taskworker"] for t in tasks)


def test_task_workers_have_ids_after_the_event_workers_and_taskworker_true(start_server, connect, mode):
    server = start_tasks_server(start_server, mode, worker_num=2, task_worker_num=3)

    starts = server.wait_events("worker_start", 5)
    client = connect(server)

    by_id = {e["worker_id"]: e for e in starts}
    assert sorted(by_id) == [0, 1, 2, 3, 4]
    for worker_id, start in by_id.items():
        assert start["taskworker"] is (worker_id >= 2)
        assert start["worker_id_property"] == start["get_worker_id"] == worker_id
    assert client.ask("[server.taskworker, server.worker_id < 2]") == [False, True]
    assert client.ask("server.task_wait(('stats',), 2)")["task_worker_num"] == 3
    task = server.wait_event("task", op="stats")
    assert task["taskworker"] is True and task["worker_id"] >= 2


def test_any_non_none_result_reaches_finish_and_none_sends_nothing(start_server, connect, mode):
    server = start_tasks_server(start_server, mode)
    client = connect(server)
    commands = [
        ("ret", False),
        ("ret", 0),
        ("ret", ""),
        ("ret", b""),
        ("none",),
        ("finish", "by finish()"),
        ("finish_then_return", "finished first", "returned after"),
        ("ret", "last"),
    ]

    ids = client.ask(f"[server.task(command) for command in {commands!r}]")
    server.wait_event("finish", task_id=ids[-1])

    assert ids == list(range(len(commands)))
    results = {task_id: (e["result"], e["rtype"]) for task_id, e in finishes_by_id(server).items()}
    assert results == {
        0: (False, "bool"),
        1: (0, "int"),
        2: ("", "str"),
        3: ("", "bytes"),
        5: ("by finish()", "str"),
        6: ("finished first", "str"),
        7: ("last", "str"),
    }
    assert len(server.events("finish", task_id=6)) == 1  # finish() once; the return value is not sent again
    finished = {e["task_id"]: e for e in server.events("finished")}
    assert finished[5]["ok"] is True
    assert (finished[6]["ok"], finished[6]["again"]) == (True, False)
    assert client.ask("server.finish('not in a task')") is False


def test_a_per_task_callback_gets_the_result_instead_of_finish(start_server, connect, mode):
    server = start_tasks_server(start_server, mode, worker_num=2, task_worker_num=2)
    client = connect(server)
    worker_id = client.ask("server.worker_id")

    with_callback = client.ask("with_callback(('ret', 'to the callback'))")
    plain = client.ask("server.task(('ret', 'to Finish'))")
    callback = server.wait_event("callback")
    server.wait_event("finish", task_id=plain)

    assert (callback["task_id"], callback["result"], callback["worker_id"]) == (
        with_callback,
        "to the callback",
        worker_id,
    )
    assert [e["result"] for e in server.events("finish")] == ["to Finish"]


def test_a_finish_callback_whose_result_does_not_come_in_time_is_dropped(start_server, connect, mode):
    server = start_tasks_server(start_server, mode, task_finish_timeout=0.5)
    client = connect(server)

    task_id = client.ask("with_callback(('hold', 'late'))")
    server.wait_event("task_holding", gate="late")
    wait_until(lambda: "1 task finish callback(s) dropped" in server.stderr(), message="no callback was dropped")
    server.release("late")
    wait_until(
        lambda: f"result of task {task_id} came after task_finish_timeout" in server.stderr(),
        message="the late result was not noticed",
    )

    assert client.ask("len(server._rt.tasks._callbacks)") == 0
    assert server.events("callback") == [] and server.events("finish") == []


def test_task_prefers_an_idle_task_worker(start_server, connect, mode):
    server = start_tasks_server(start_server, mode, task_worker_num=2)
    client = connect(server)
    task_starts(server, 2)

    client.ask("server.task(('hold', 'busy'), 0)")
    server.wait_event("task_holding")
    waited = client.ask("[server.task_wait(('ret', i), 2) for i in range(6)]")

    assert waited == [0, 1, 2, 3, 4, 5]
    assert [t["worker_id"] for t in server.events("task", op="ret")] == [2] * 6  # never the busy one


def test_a_full_task_queue_makes_task_return_false_instead_of_blocking(start_server, connect, mode):
    server = start_tasks_server(start_server, mode)
    client = connect(server)
    client.ask("server.task(('hold', 'full'), 0)")
    server.wait_event("task_holding")

    refused = client.ask(
        "next(([i, server.get_last_error()] for i in range(5000) "
        "if server.task(('none', b'x' * 60000), 0) is False), None)"
    )

    assert refused is not None, "5000 tasks of 60 kB were all accepted"
    queued, error = refused
    assert queued > 100 and error == 2002
    assert client.ask("server.worker_id") == 0  # the worker was not blocked
    server.release("full")
    assert client.ask("server.task_wait(('ret', 'drained'), 20)") == "drained"
    assert len(server.events("task", op="none")) == queued  # every accepted task ran, none of the refused


# --------------------------------------------------------------------------------------------------------
# task_wait, task_wait_multi, task_co
# --------------------------------------------------------------------------------------------------------


def test_task_wait_returns_the_result(start_server, connect, mode):
    server = start_tasks_server(start_server, mode)
    client = connect(server)

    value, took, _ = client.ask("timed(lambda: server.task_wait(('ret', {'a': [1, 2]}), 2))")

    assert value == {"a": [1, 2]}
    assert took < 1.0
    assert client.ask("server.task_wait(('ret', 0), 2)") == 0
    assert client.ask("server.task_wait(('ret', b'raw'), 2, 0)") == "raw"


def test_task_wait_times_out_with_false_and_ignores_the_late_result(start_server, connect, mode):
    server = start_tasks_server(start_server, mode)  # one task worker: the next task waits behind the slow one
    client = connect(server)

    timed_out = client.ask("timed(lambda: server.task_wait(('sleep', 0.6, 'late'), 0.2))")
    fresh = client.ask("timed(lambda: server.task_wait(('ret', 'fresh'), 3))")
    ids = client.ask("[server.task(('ret', 'sentinel'))]")
    server.wait_event("finish", task_id=ids[0])

    value, took, error = timed_out
    assert value is False and 0.2 <= took < 0.55 and error == 2003
    value, took, _ = fresh
    assert value == "fresh"  # not the late 'late'
    assert took >= 0.1  # it really waited for the slow task to finish first
    assert [e["result"] for e in server.events("finish")] == ["sentinel"]  # the late result went nowhere


def test_results_arriving_during_a_blocking_task_wait_still_reach_finish(start_server, connect, mode):
    server = start_tasks_server(start_server, mode, task_worker_num=2)
    client = connect(server)

    value = client.ask(
        "[server.task(('sleep', 0.1, 'for Finish'), 0), server.task_wait(('sleep', 0.4, 'for task_wait'), 2, 1)]"
    )
    finish = server.wait_event("finish", task_id=0)

    assert value == [0, "for task_wait"]
    assert finish["result"] == "for Finish"
    assert len(server.events("finish")) == 1


def test_task_wait_multi_returns_the_results_that_came_in_time(start_server, connect, mode):
    server = start_tasks_server(start_server, mode, task_worker_num=3)
    client = connect(server)

    value, took, _ = client.ask(
        "timed(lambda: sorted(server.task_wait_multi([('ret', 'a'), ('sleep', 1.0, 'slow'), ('ret', 'c')], 0.4)"
        ".items()))"
    )
    all_in_time = client.ask("sorted(server.task_wait_multi(['x', ('ret', 0), ('ret', False)], 2).items())")

    assert value == [[0, "a"], [2, "c"]]
    assert 0.4 <= took < 0.9
    assert all_in_time == [[0, "x"], [1, 0], [2, False]]
    assert client.ask("server.task_wait_multi(['x'] * 1024, 0.1)") is False
    assert len(server.events("task")) == 6  # the refused 1024 were never dispatched


def test_task_co_awaits_the_results_in_an_async_receive(start_server, connect, mode):
    server = start_tasks_server(start_server, mode, task_worker_num=3, async_receive=True)
    client = connect(server)

    client.send(b"await server.task_co([('ret', 1), ('sleep', 1.0, 'slow'), ('ret', [3])], 0.4)\n")
    partial = client.recv_json()
    client.send(b"await server.task_co([('ret', 'a'), b'b', ('ret', 0)], 2)\n")
    complete = client.recv_json()

    assert partial == {"value": [1, False, [3]]}
    assert complete == {"value": ["a", "b", 0]}
    assert client.ask("server.task_wait(('ret', 'still served'), 2)") == "still served"
    wait_until(lambda: "has expired" in server.log(), message="the late result of task_co is not logged")
    assert server.events("finish") == []  # task_co results never go to Finish


# --------------------------------------------------------------------------------------------------------
# Who may call task(), and where a task goes
# --------------------------------------------------------------------------------------------------------


def test_task_inside_a_task_worker_returns_false(start_server, connect, mode):
    server = start_tasks_server(start_server, mode)
    client = connect(server)

    assert client.ask("server.task_wait(('nested',), 3)") == "nested done"

    nested = server.wait_event("nested")
    assert nested["task"] is False and nested["task_error"] == 2002
    assert nested["task_wait"] is False
    assert nested["task_wait_multi"] is False
    assert [e["op"] for e in server.events("task")] == ["nested"]  # no inner task ran


def test_task_from_the_manager_runs_with_no_reply(start_server, connect, mode):
    server = start_tasks_server(start_server, mode, manager_task=True)

    probe = server.wait_event("noreply", who="manager")
    manager = server.wait_event("manager_task")
    client = connect(server)
    sentinel = client.ask("server.task(('ret', 'sentinel'))")
    server.wait_event("finish", task_id=sentinel)

    assert manager["id"] == 0 and manager["pid"] == manager["manager_pid"]
    assert probe["src"] == -1 and probe["finish"] is False
    assert [e["result"] for e in server.events("finish")] == ["sentinel"]
    assert manager["message"] is True
    assert server.wait_event("pipe_message", message="from the manager")["worker_id"] == 0


def test_task_from_the_master_runs_with_no_reply(start_server, connect):
    server = start_tasks_server(start_server, "process", master_task=True)

    probe = server.wait_event("noreply", who="master")
    master = server.wait_event("master_task")
    client = connect(server)
    sentinel = client.ask("server.task(('ret', 'sentinel'))")
    server.wait_event("finish", task_id=sentinel)

    assert master["id"] == 0 and master["pid"] == server.pid
    assert probe["src"] == -1 and probe["finish"] is False
    assert [e["result"] for e in server.events("finish")] == ["sentinel"]


def test_dst_worker_id_picks_the_task_worker(start_server, connect, mode):
    server = start_tasks_server(start_server, mode, task_worker_num=3)
    client = connect(server)

    ids = client.ask("[server.task(('ret', dst), dst) for dst in (2, 0, 1, 2, 0)]")
    tasks = server.wait_events("task", 5)
    waited = client.ask("[server.task_wait(('ret', dst), 2, dst) for dst in (1, 2)]")
    refused = client.ask(
        "[server.task('x', 3), server.get_last_error(), server.task('x', -2), server.task_wait('x', 0.1, 3)]"
    )

    worker_of = {t["task_id"]: t["worker_id"] for t in tasks}
    assert [worker_of[i] for i in ids] == [1 + 2, 1 + 0, 1 + 1, 1 + 2, 1 + 0]
    assert waited == [1, 2]
    assert [t["worker_id"] for t in server.events("task")][5:] == [2, 3]
    assert refused[0] is False and refused[1] != 0 and refused[2:] == [False, False]


def test_no_task_workers_means_task_returns_false(start_server, connect, mode):
    server = start_tasks_server(start_server, mode, worker_num=2, task_worker_num=0)
    client = connect(server)

    assert client.ask("[server.task('x'), server.get_last_error()]") == [False, 2002]
    assert client.ask("server.task_wait('x', 0.1)") is False


NO_TASK_CALLBACK = """
server = Server("127.0.0.1", 0, Mode.PROCESS if mode == "process" else Mode.BASE)
server.set(worker_num=1, task_worker_num=2)
server.on("Receive", lambda *args: None)
record("before_start", task=server.task("x"))
try:
    server.start()
    record("outcome", raised=None)
except Exception as exc:
    try:
        os.waitpid(-1, os.WNOHANG)
        children = True
    except ChildProcessError:
        children = False
    record("outcome", raised=type(exc).__name__, server_error=isinstance(exc, ServerError), text=str(exc),
           children=children)
"""


def test_start_without_a_task_callback_raises_before_forking(start_server, mode):
    server = start_server(NO_TASK_CALLBACK, mode=mode)

    outcome = server.wait_event("outcome")

    assert outcome["server_error"] is True, outcome
    assert "task" in outcome["text"].lower()
    assert outcome["children"] is False
    assert server.wait_event("before_start")["task"] is False
    assert server.wait_exit() == 0


# --------------------------------------------------------------------------------------------------------
# task_enable_coroutine
# --------------------------------------------------------------------------------------------------------

COROUTINE_SERVER = """
server = recording_server(mode=Mode.PROCESS if mode == "process" else Mode.BASE, worker_num=1,
                          task_worker_num=1, task_enable_coroutine=True)

@server.on("Task")
async def on_task(server, task):
    record("co_task", cls=type(task).__name__, data=task.data, id=task.id, worker_id=task.worker_id,
           in_worker=server.worker_id, taskworker=server.taskworker)
    op, arg = task.data
    if op == "sleep":
        await asyncio.sleep(arg)
        record("co_slept", id=task.id)
        return ["slept", task.id]
    if op == "finish":
        record("co_finished", ok=task.finish(arg), again=task.finish("again"), server_finish=server.finish("no"))
        return None
    if op == "return":
        return arg
    if op == "sync_sleep":
        time.sleep(arg)
        return "slept in sync"
    raise ValueError(op)

server.on("Finish", lambda s, task_id, result: record("finish", task_id=task_id, result=result,
                                                    worker_id=s.worker_id))
serve(server)
"""


def test_coroutine_task_workers_run_async_tasks_with_a_task_object(start_server, connect, mode):
    server = start_server(COROUTINE_SERVER, mode=mode)
    client = connect(server)

    ids = client.ask(
        "[server.task(('sleep', 0.5)), server.task(('sleep', 0.5)), "
        "server.task(('finish', 'via Task.finish')), server.task(('return', 0))]"
    )
    finishes = server.wait_events("finish", 4)
    waited = client.ask("server.task_wait(('return', 'waited'), 2)")

    by_id = {e["task_id"]: e["result"] for e in finishes}
    assert by_id == {ids[0]: ["slept", ids[0]], ids[1]: ["slept", ids[1]], ids[2]: "via Task.finish", ids[3]: 0}
    tasks = {e["id"]: e for e in server.events("co_task")}
    for task_id in ids:
        task = tasks[task_id]
        assert task["cls"] == "Task" and task["worker_id"] == 0
        assert task["in_worker"] == 1 and task["taskworker"] is True
    assert tasks[ids[0]]["data"] == ["sleep", 0.5]
    # Both sleeps ran at once on the task worker's loop: the second started before the first woke up.
    first_woke = server.events("co_slept", id=ids[0])[0]["t"]
    assert tasks[ids[1]]["t"] < first_woke
    finished = server.wait_event("co_finished")
    assert (finished["ok"], finished["again"], finished["server_finish"]) == (True, False, False)
    assert waited == "waited"


# --------------------------------------------------------------------------------------------------------
# Payloads
# --------------------------------------------------------------------------------------------------------


def test_any_picklable_object_round_trips_and_bytes_stay_bytes(start_server, connect, mode):
    server = start_tasks_server(start_server, mode)
    client = connect(server)
    values = "[b'raw bytes', 'text', 7, 1.5, {'k': [1, 2]}, (1, 't'), {1, 2}, Point(1, 2), bytearray(b'ba')]"

    same = client.ask(f"[server.task_wait(v, 2) == v for v in {values}]")
    types = client.ask(f"types_of([server.task_wait(v, 2) for v in {values}])")

    assert same == [True] * 9
    assert types == ["bytes", "str", "int", "float", "dict", "tuple", "set", "Point", "bytearray"]
    task_types = [e["dtype"] for e in server.events("task")][:9]
    assert task_types == types  # what Task itself received


def test_payloads_of_megabytes_arrive_intact(start_server, connect, mode, tmp_path):
    tmpdir = tmp_path / "task_tmp"
    tmpdir.mkdir()
    server = start_tasks_server(start_server, mode, task_tmpdir=str(tmpdir))
    client = connect(server)
    size = 4 * 1024 * 1024
    expected = sha(pattern(size))

    task_id = client.ask(f"server.task(('big', {size}))")
    finish = server.wait_event("finish", task_id=task_id)
    waited = client.ask(f"(lambda r: [type(r).__name__, len(r), digest(r)])(server.task_wait(('big', {size}), 5))")
    argument = client.ask(f"server.task_wait(('digest', pattern({size})), 5)")

    assert finish["result"] == {"len": size, "sha256": expected} and finish["rtype"] == "bytes"
    assert waited == ["bytes", size, expected]
    assert argument == ["bytes", size, expected]
    assert list(tmpdir.iterdir()) == []  # every temp file was unlinked by its reader


def test_an_unpicklable_argument_raises_type_error_at_the_call_site(start_server, connect, mode):
    server = start_tasks_server(start_server, mode, worker_num=2)
    client = connect(server)

    outcomes = client.ask(
        "[raised(lambda: server.task(lambda: 1)), raised(lambda: server.task_wait(lambda: 1, 1)), "
        "raised(lambda: server.task_wait_multi(['fine', lambda: 1], 1)), "
        "raised(lambda: server.send_message(lambda: 1, 2))]"
    )

    for outcome in outcomes:
        assert outcome.get("type_error") is True, outcome
        assert "pickle" in outcome["text"]
    assert client.ask("server.task_wait(('ret', 'still fine'), 2)") == "still fine"


def test_an_unpicklable_result_is_logged_and_the_waiter_gets_false(start_server, connect, mode):
    server = start_tasks_server(start_server, mode)
    client = connect(server)

    value, took, _ = client.ask("timed(lambda: server.task_wait(('unpicklable',), 3))")

    assert value is False and took < 2.0  # an answer, not a timeout
    wait_until(lambda: "pickle" in server.log(), message="no log line about the unpicklable result")
    assert client.ask("server.task_wait(('ret', 'next'), 2)") == "next"


def test_an_exception_in_task_is_logged_and_task_wait_gets_false(start_server, connect, mode):
    server = start_tasks_server(start_server, mode)
    client = connect(server)

    value, took, _ = client.ask("timed(lambda: server.task_wait(('raise',), 3))")
    raised_id = client.ask("server.task(('raise',))")
    sentinel = client.ask("server.task(('ret', 'sentinel'))")
    server.wait_event("finish", task_id=sentinel)

    assert value is False and took < 2.0
    wait_until(
        lambda: "boom in Task" in server.log() and "Traceback" in server.log(),
        message="the exception in Task is not logged with its traceback",
    )
    assert raised_id not in finishes_by_id(server)  # task(): nothing reaches Finish
    assert len(task_starts(server, 1)) == 1  # the task worker went on serving; it was not replaced


# --------------------------------------------------------------------------------------------------------
# Ordering, crashes, recycling
# --------------------------------------------------------------------------------------------------------


def test_2048_tasks_arrive_in_order_with_none_lost_even_behind_a_slow_one(start_server, connect, mode):
    server = start_tasks_server(start_server, mode)
    client = connect(server)

    ids = client.ask("burst(2048, -1, 0.3)")
    seen = server.wait_event("task_seen", timeout=20)
    finished = server.wait_event("all_finished", timeout=20)

    assert ids == list(range(2048))
    assert seen["ids"] == list(range(2048))
    assert [result[:2] for result in finished["results"]] == [[i, i] for i in range(2048)]


def test_a_task_worker_killed_mid_task_is_replaced_and_tasks_still_run(start_server, connect, mode):
    server = start_tasks_server(start_server, mode)
    client = connect(server)
    first = task_starts(server, 1)[0]

    client.ask("server.task(('hold', 'never'))")
    holding = server.wait_event("task_holding")
    assert holding["pid"] == first["pid"]

    os.kill(holding["pid"], signal.SIGKILL)
    second = task_starts(server, 2)[1]

    assert second["pid"] != first["pid"] and second["worker_id"] == first["worker_id"] == 1
    error = server.wait_event("worker_error")
    assert (error["worker_id"], error["worker_pid"], error["signal"]) == (1, first["pid"], 9)
    assert client.ask("server.task_wait(('ret', 'after the crash'), 5)") == "after the crash"
    task_id = client.ask("server.task(('ret', 'and with Finish'))")
    assert server.wait_event("finish", task_id=task_id)["result"] == "and with Finish"


def test_task_max_request_recycles_task_workers_without_losing_a_task(start_server, connect, mode):
    server = start_tasks_server(start_server, mode, task_worker_num=4, task_max_request=200)
    client = connect(server)

    ids = client.ask("len(burst(4000))")
    finished = server.wait_event("all_finished", timeout=40)

    assert ids == 4000
    assert sorted(value for _, value, _ in finished["results"]) == list(range(4000))
    assert sorted(task_id for task_id, _, _ in finished["results"]) == list(range(4000))
    starts = server.events("worker_start", taskworker=True)
    assert len(starts) > 15, len(starts)


def test_a_recycled_task_worker_leaves_its_queue_in_order_to_its_replacement(start_server, connect, mode):
    server = start_tasks_server(start_server, mode, task_max_request=100, task_max_request_grace=0)
    client = connect(server)

    client.ask("len(burst(1000))")
    finished = server.wait_event("all_finished", timeout=20)
    starts = task_starts(server, 11)

    assert [result[:2] for result in finished["results"]] == [[i, i] for i in range(1000)]
    pids = [pid for _, _, pid in finished["results"]]
    incarnations = [pids[i : i + 100] for i in range(0, 1000, 100)]
    assert all(len(set(run)) == 1 for run in incarnations)  # exactly task_max_request tasks each
    assert len({run[0] for run in incarnations}) == 10
    assert [s["pid"] for s in starts[:10]] == [run[0] for run in incarnations]


def test_task_ipc_mode_3_lets_the_first_free_task_worker_take_the_next_task(start_server, connect, mode):
    server = start_tasks_server(start_server, mode, task_worker_num=2, task_ipc_mode=3)
    client = connect(server)

    ids = client.ask("[server.task(('sleep', 0.3, i)) for i in range(4)]")
    finishes = server.wait_events("finish", 4)
    tasks = server.events("task")[:4]
    waited = client.ask("server.task_wait(('ret', 'waited'), 2)")
    pinned = client.ask("server.task_wait(('ret', 'pinned'), 2, 1)")

    assert sorted(f["result"] for f in finishes) == [0, 1, 2, 3]
    assert sorted(f["task_id"] for f in finishes) == ids
    assert {t["worker_id"] for t in tasks[:2]} == {1, 2}  # the second went to the free one, at once
    assert tasks[1]["t"] - tasks[0]["t"] < 0.25  # before the first one's 0.3 s were over
    assert {t["worker_id"] for t in tasks} == {1, 2}
    assert (waited, pinned) == ("waited", "pinned")
    assert server.events("task")[-1]["worker_id"] == 2


# --------------------------------------------------------------------------------------------------------
# Messages between workers
# --------------------------------------------------------------------------------------------------------


def test_send_message_reaches_event_and_task_workers(start_server, connect, mode):
    server = start_tasks_server(start_server, mode, worker_num=2, task_worker_num=2)
    client = connect(server)
    me = client.ask("server.worker_id")
    other = 1 - me
    size = 1024 * 1024

    sent = client.ask(
        f"[server.send_message('to an event worker', {other}), server.send_message(b'to task', 2), "
        f"server.send_message({{'to': 3}}, 3), server.send_message(pattern({size}), {other})]"
    )
    messages = server.wait_events("pipe_message", 4)
    from_task = client.ask("server.task_wait(('send_message', 'from a task worker', 0), 2, 0)")

    assert sent == [True] * 4
    got = sorted((m["worker_id"], m["taskworker"], m["src"], m["mtype"], str(m["message"])) for m in messages)
    assert got == sorted(
        [
            (other, False, me, "str", "to an event worker"),
            (2, True, me, "bytes", "to task"),
            (3, True, me, "dict", "{'to': 3}"),
            (other, False, me, "bytes", str({"len": size, "sha256": sha(pattern(size))})),
        ]
    )
    assert from_task is True
    message = server.wait_event("pipe_message", message="from a task worker")
    assert (message["worker_id"], message["src"]) == (0, 2)


def test_send_message_refuses_invalid_ids_and_oneself(start_server, connect, mode):
    server = start_tasks_server(start_server, mode, worker_num=2, task_worker_num=2)
    client = connect(server)

    refused = client.ask(
        "[server.send_message('x', -1), server.send_message('x', 4), server.send_message('x', server.worker_id)]"
    )
    task_to_itself = client.ask("server.task_wait(('send_message', 'to myself', 2), 2, 0)")
    delivered = client.ask("server.send_message('fine', 3)")

    assert refused == [False, False, False]
    assert task_to_itself is False
    assert delivered is True
    server.wait_event("pipe_message", message="fine")
    assert len(server.events("pipe_message")) == 1


def test_send_message_without_pipe_message_callback_returns_false(start_server, connect, mode):
    server = start_tasks_server(start_server, mode, worker_num=2, task_worker_num=1, pipe_message=False)
    client = connect(server)

    assert client.ask("[server.send_message('x', 1 - server.worker_id), server.send_message('x', 2)]") == [False, False]


# --------------------------------------------------------------------------------------------------------
# stats()
# --------------------------------------------------------------------------------------------------------


def test_stats_count_tasks_queued_running_and_idle_task_workers(start_server, connect, mode):
    server = start_tasks_server(start_server, mode, task_worker_num=2)
    client = connect(server)
    task_starts(server, 2)
    keys = "{k: server.stats()[k] for k in ('task_count', 'tasking_num', 'task_idle_worker_num')}"

    before = client.ask(keys)
    client.ask("[server.task(('hold', 'g0'), 0), server.task(('hold', 'g1'), 1)]")
    server.wait_events("task_holding", 2)
    client.ask("[server.task(('ret', i), i % 2) for i in range(3)]")
    busy = wait_until(lambda: (lambda s: s if s["task_count"] == 5 else None)(client.ask(keys)))
    server.release("g0")
    server.release("g1")
    server.wait_events("finish", 5)
    after = wait_until(lambda: (lambda s: s if s["task_idle_worker_num"] == 2 else None)(client.ask(keys)))

    assert before == {"task_count": 0, "tasking_num": 0, "task_idle_worker_num": 2}
    assert busy == {"task_count": 5, "tasking_num": 3, "task_idle_worker_num": 0}
    assert after == {"task_count": 5, "tasking_num": 0, "task_idle_worker_num": 2}


def test_a_late_result_too_big_for_a_datagram_leaves_no_temp_file(start_server, connect, mode, tmp_path):
    tmpdir = tmp_path / "task_tmp"
    tmpdir.mkdir()
    server = start_tasks_server(start_server, mode, task_tmpdir=str(tmpdir))  # one task worker
    client = connect(server)

    late = client.ask("server.task_wait(('sleep', 0.5, pattern(200000)), 0.1)")  # its result comes too late
    fresh = client.ask("server.task_wait(('ret', 'fresh'), 5)")  # reads, and drops, the late one first

    assert late is False and fresh == "fresh"
    wait_until(lambda: list(tmpdir.iterdir()) == [], message="the late result's temp file was left behind")
