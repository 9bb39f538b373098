"""A recording HTTP server script and the client side of the HTTP integration tests.

``HTTP_SERVER`` is a server script body for the ``start_server`` fixture: an ``HttpServer`` whose Request callback
records each request and answers by its path (``ROUTES`` below: ``/echo`` returns everything the Request holds as
JSON, ``/stream`` writes chunks, ``/raise`` raises, ``/detach`` hands the response to a task worker, ``/ask``
evaluates ``?expr=`` in the worker...). Anything else gets ``hello <name>``. Options: ``plain_port`` adds a
listener with ``open_http_protocol`` off that echoes (its port recorded as ``plain_port``), ``http_port`` a second
HTTP listener, ``with_process`` a user process that answers detached requests.

``read_response`` and ``closed_by_server`` are the hand-written client, for what no real client sends; the tests
use curl (``curl``), ``http.client`` and ``httpx`` for everything else.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

from programs import need

HTTP_SERVER = """
import asyncio
from pyswoole import HttpServer, Process, Request, Response

server = HttpServer("127.0.0.1", 0, getattr(Mode, mode))
report_port(server)
server.set(**settings)


def arg(request, name, default=""):
    return (request.get or {}).get(name, default)


def route_echo(request, response):
    files = {}
    for field, info in (request.files or {}).items():
        with open(info["tmp_name"], "rb") as f:
            content = f.read()
        files[field] = {**info, "content": content.decode("latin-1"), "dir": os.path.dirname(info["tmp_name"])}
    response.header("Content-Type", "application/json")
    response.end(json.dumps({
        "method": request.get_method(), "header": request.header, "server": request.server, "get": request.get,
        "post": request.post, "cookie": request.cookie, "files": files, "fd": request.fd,
        "content": request.get_content().decode("latin-1"), "data": request.get_data().decode("latin-1"),
        "worker_pid": os.getpid(),
    }))


def route_stream(request, response):
    response.header("Content-Type", "text/plain")
    for i in range(int(arg(request, "n", "3"))):
        response.write(f"chunk {i};")
    response.end(arg(request, "last"))


async def route_astream(request, response):
    for i in range(3):
        response.write(f"part {i};")
        await asyncio.sleep(0.01)
    response.end()


async def route_flood(request, response):
    chunk = b"f" * 65536
    for i in range(int(arg(request, "n", "1000"))):
        if not response.write(chunk):
            record("flood_refused", after=i, error=server.get_last_error(), writable=response.is_writable())
            return
        await asyncio.sleep(0.001)
    response.end()


def route_bulk(request, response):
    for i in range(int(arg(request, "n", "10"))):  # written in one go: the loop cannot run meanwhile
        response.write(bytes([65 + i % 26]) * 65536)
    response.end()


def route_raise(request, response):
    raise RuntimeError("the callback failed")


def route_raise_after_write(request, response):
    response.write("partial")
    raise RuntimeError("the callback failed after a write")


async def route_async_raise(request, response):
    await asyncio.sleep(0)
    raise RuntimeError("the coroutine failed")


def route_noend(request, response):
    response.status(201)
    response.header("X-Set", "before the return")


async def route_async_noend(request, response):
    await asyncio.sleep(0.01)
    response.header("X-Set", "after an await")


def route_sendfile(request, response):
    ok = response.sendfile(arg(request, "path"), int(arg(request, "offset", "0")), int(arg(request, "length", "0")))
    if not ok:
        error = server.get_last_error()
        response.status(404)
        response.end(f"refused {error}")


def route_redirect(request, response):
    response.redirect(arg(request, "to", "/"), int(arg(request, "code", "302")))


def route_cookies(request, response):
    response.cookie("plain", "a value; with=specials", path="/p", httponly=True, samesite="Lax")
    response.raw_cookie("raw", "as%20is", expires=2000000000, secure=True)
    refused = response.raw_cookie("bad", "a value; with=specials")
    response.end(json.dumps({"refused": refused, "error": server.get_last_error()}))


def route_headers(request, response):
    response.status(299, "Custom Reason")
    response.header("x-multi", ["one", "two"])
    response.header("x-lower-case", "kept", False)
    response.header("X-Replaced", "first")
    response.header("X-Replaced", "second")
    response.end("headers")


def route_big(request, response):
    response.header("Content-Type", arg(request, "type", "text/plain"))
    response.end("pyswoole compresses " * int(arg(request, "n", "100")))


def route_detach(request, response):
    response.detach()
    if arg(request, "to") == "process":
        responder.write(json.dumps([request.fd, "from a user process"]))
    else:
        server.task(("respond", request.fd, "from a task worker"))


def route_detach_later(request, response):
    response.detach()
    fd = request.fd
    asyncio.get_running_loop().call_later(0.05, lambda: Response.create(server, fd).end("answered later"))


def route_refusals(request, response):
    codes = {}
    def refused(name, ok):
        codes[name] = [ok, server.get_last_error()]
    response.write("streaming")
    refused("header_after_write", response.header("X-Late", "1"))
    refused("status_after_write", response.status(404))
    refused("cookie_after_write", response.cookie("late", "1"))
    refused("sendfile_after_write", response.sendfile(__file__))
    refused("write_empty", response.write(b""))
    response.end()
    refused("end_after_end", response.end("again"))
    refused("write_after_end", response.write("again"))
    refused("is_writable_after_end", response.is_writable())
    refused("detach_after_end", response.detach())
    record("refusals", codes=codes)


def route_sendfile_refusals(request, response):
    codes = {}
    codes["missing"] = [response.sendfile("/nonexistent/file"), server.get_last_error()]
    codes["folder"] = [response.sendfile(os.path.dirname(__file__)), server.get_last_error()]
    codes["bad_status"] = [response.status(1000), server.get_last_error()]
    codes["writable"] = response.is_writable()
    record("refusals", codes=codes)
    response.end(json.dumps(codes))


def route_ask(request, response):
    try:
        scope = {"server": server, "request": request, "response": response, "os": os}
        value = eval(arg(request, "expr"), {**globals(), **scope})
    except Exception as exc:
        value = f"!{type(exc).__name__}: {exc}"
    response.header("Content-Type", "application/json")
    response.end(json.dumps(value, default=repr))


async def route_hold(request, response):
    await ahold(arg(request, "gate"))
    response.end("released")


def route_block(request, response):
    record("blocking", pid=os.getpid())
    hold(arg(request, "gate"))
    response.end("unblocked")


def route_default(request, response):
    response.end(f"hello {arg(request, 'name', 'world')}")


ROUTES = {name[len("route_"):].replace("_", "-"): fn for name, fn in globals().items() if name.startswith("route_")}


@server.on("WorkerStart")
def on_worker_start(server, worker_id):
    record("worker_start", worker_id=worker_id, taskworker=server.taskworker)


@server.on("Connect")
def on_connect(server, fd, reactor_id):
    record("connect", fd=fd)


@server.on("Close")
def on_close(server, fd, reactor_id):
    record("close", fd=fd)


@server.on("Request")
def on_request(request, response):
    path = request.server["path_info"]
    record("request", fd=request.fd, path=path, method=request.get_method(), pid=os.getpid(),
           worker_id=server.worker_id, body_size=len(request.get_content()))
    return ROUTES.get(path.strip("/").split("/")[0], route_default)(request, response)


@server.on("Task")
def on_task(server, task_id, src_worker_id, data):
    what, fd, text = data
    response = Response.create(server, fd)
    record("task_respond", fd=fd, ok=response.end(text), error=server.get_last_error())


def user_process(process):
    while True:
        fd, text = json.loads(process.read())
        record("process_respond", fd=fd, ok=Response.create(server, fd).end(text))


responder = Process(user_process)
if with_process:
    server.add_process(responder)

if plain_port:
    plain = server.add_listener("127.0.0.1", 0)
    plain.set(open_http_protocol=False)
    plain.on("Receive", lambda server, fd, reactor_id, data: (record("receive", fd=fd, data=data),
                                                               server.send(fd, b"plain " + data)))
    record("plain_port", port=plain.port)

if http_port:
    second = server.add_listener("127.0.0.1", 0)
    record("http_port", port=second.port)

serve(server)
"""


def start_http_server(
    start_server, mode: str, *, plain_port: bool = False, http_port: bool = False, with_process: bool = False,
    **settings,
):  # fmt: skip
    """An HTTP_SERVER in ``mode`` ("BASE" or "PROCESS") with ``settings``, once its workers have started."""
    settings.setdefault("worker_num", 1)
    settings.setdefault("task_worker_num", 1)
    server = start_server(
        HTTP_SERVER, mode=mode, settings=settings, plain_port=plain_port, http_port=http_port,
        with_process=with_process,
    )  # fmt: skip
    server.wait_events("worker_start", settings["worker_num"] + settings["task_worker_num"])
    return server


def http_counts(pid_file: Path) -> dict:
    """The responses by status class in the snapshot published beside ``pid_file`` ({} until there is one)."""
    try:
        return json.loads(pid_file.with_name(pid_file.name + ".stats.json").read_text()).get("http", {})
    except (OSError, ValueError):
        return {}


def url(server, path: str = "/", port: int | None = None) -> str:
    return f"http://127.0.0.1:{port or server.port}{path}"


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def read_response(
    sock: socket.socket, buffer: bytearray | None = None, head: bool = False
) -> tuple[bytes, dict[str, str], bytes]:
    """One response from ``sock``: (status line, headers lower-cased, body de-chunked). ``buffer`` keeps the bytes
    read past it, for the next call on a pipelined connection; ``head``: the answer to a HEAD request (no body). A
    response without a length ends at EOF."""
    data = buffer if buffer is not None else bytearray()

    def more() -> bool:
        chunk = sock.recv(65536)
        data.extend(chunk)
        return bool(chunk)

    while b"\r\n\r\n" not in data:
        if not more():
            raise ConnectionError(f"closed before a whole head: {bytes(data)!r}")
    end = data.index(b"\r\n\r\n")
    lines = bytes(data[:end]).decode("latin-1").split("\r\n")
    del data[: end + 4]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        headers[key] = headers[key] + ", " + value.strip() if key in headers else value.strip()
    status = lines[0].encode("latin-1")
    code = int(status.split()[1])
    if head or code < 200 or code in (204, 304):
        return status, headers, b""
    body = bytearray()
    if headers.get("transfer-encoding") == "chunked":
        while True:
            while b"\r\n" not in data:
                if not more():
                    raise ConnectionError("closed inside a chunk size line")
            line_end = data.index(b"\r\n")
            size = int(bytes(data[:line_end]).split(b";")[0], 16)
            del data[: line_end + 2]
            while len(data) < size + 2:
                if not more():
                    raise ConnectionError("closed inside a chunk")
            body += data[:size]
            del data[: size + 2]
            if size == 0:
                return status, headers, bytes(body)
    if "content-length" in headers:
        length = int(headers["content-length"])
        while len(data) < length:
            if not more():
                raise ConnectionError(f"closed after {len(data)} of {length} body bytes")
        body = data[:length]
        del data[:length]
        return status, headers, bytes(body)
    while more():
        pass
    body, data[:] = bytes(data), b""
    return status, headers, bytes(body)


def closed_by_server(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as a close); fails if it
    keeps it open longer than ``timeout``."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    data = bytearray()
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return bytes(data)
        except TimeoutError:
            break
        if not chunk:
            return bytes(data)
        data += chunk
    raise AssertionError(f"the server kept the connection open; it sent {bytes(data)[:200]!r}")


def curl(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run curl (silent, errors shown, 10 s at most) with ``args``."""
    command = [need("curl"), "--silent", "--show-error", "--max-time", "10", *args]
    return subprocess.run(command, capture_output=True, check=check, timeout=20)
