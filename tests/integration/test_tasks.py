"""Task workers: task(), Finish, finish(), task_wait(), task_wait_multi(), task_co(), and their error returns.

Every test starts a real server (BASE or PROCESS mode) from ``TASK_SERVER`` and drives it through
``client.ask(expression)``: the expression runs in the event worker that owns the connection, with the
helpers of the script in scope. What the task workers, Finish and PipeMessage see is recorded as events.

The Task callback understands commands, tuples ``(op, *args)`` (see ``on_task``); anything else is echoed
back as its result. A few commands block on purpose (``sleep``, ``hold``) to make a task slow.
"""

from __future__ import annotations

import hashlib
import time

import pytest

from serverkit import ServerProcess, wait_until

MODES = ["base", "process"]

TASK_SERVER = r"""
import hashlib

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
               message=server.send_message("from the manager", 0))


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
    if op == "quiet":  # many tasks: one event when the last one has arrived
        SEEN.append(task_id)
        if len(SEEN) == args[1]:
            record("task_seen", ids=SEEN, worker_id=server.worker_id)
        return ("quiet", args[0])
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
        if i == 0 and slow_first:
            ids.append(server.task(("sleep", slow_first, ("quiet", 0)), dst))
        else:
            ids.append(server.task(("quiet", i, n), dst))
    return ids


def on_finish(server, task_id, result):
    if type(result) is tuple and result[:1] == ("quiet",):
        FINISHED["results"].append([task_id, result[1]])
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
            server.send(fd, json.dumps(reply, default=repr) + "\n")
        else:
            handle(server, fd, reactor_id, data)
else:
    server.on("Receive", handle)

serve(server)
"""

DEFAULTS = dict(start_tasks=0, manager_task=False, master_task=False, pipe_message=True, async_receive=False)


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
