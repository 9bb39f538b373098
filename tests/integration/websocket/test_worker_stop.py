"""A BASE-mode worker that stops (a reload) still reads its connections while its coroutines finish. A WebSocket
upgrade it reads then is refused with 503 and the close: the session would otherwise outlive the worker's drain
and be reset at max_wait_time. The client's retry reaches the new worker."""

from __future__ import annotations

import signal
import socket

from wskit import RawWebSocket, upgrade_request

SERVER = """
from pyswoole import WebSocketServer

server = WebSocketServer("127.0.0.1", 0, Mode.BASE)
report_port(server)
server.set(worker_num=1, task_worker_num=1, max_wait_time=30)

@server.on("WorkerStart")
def on_worker_start(server, worker_id):
    record("worker_start", worker_id=worker_id, pid=os.getpid())

@server.on("WorkerExit")
def on_worker_exit(server, worker_id):
    record("worker_exit", pid=os.getpid())

@server.on("Task")
def on_task(server, task_id, src_worker_id, data):
    return data

@server.on("Request")
async def on_request(request, response):
    if request.server["path_info"] == "/hold":
        record("holding", pid=os.getpid())
        await ahold("finish")
    response.end(f"served by {os.getpid()}")

@server.on("Message")
def on_message(server, frame):
    server.push(frame.fd, frame.data)

serve(server)
"""


def read_head(sock: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, f"closed before a whole head: {head!r}"
        head += chunk
    return head


def read_to_close(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return received


def test_an_upgrade_read_by_a_stopping_worker_gets_503_and_the_retry_opens_on_the_new_one(start_server, connect):
    server = start_server(SERVER)
    old = server.wait_events("worker_start", 2)  # the event worker and the task worker
    keeper, holder = connect(server).sock, connect(server).sock
    keeper.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_head(keeper).startswith(b"HTTP/1.1 200")  # a keep-alive connection of the old worker, now idle
    holder.sendall(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
    old_pid = server.wait_event("holding")["pid"]

    server.signal(signal.SIGUSR1)  # reload: the old worker stops, and waits for /hold before it drains
    server.wait_event("worker_exit", pid=old_pid)
    keeper.sendall(upgrade_request(server.port))
    answer = read_to_close(keeper)

    assert answer.startswith(b"HTTP/1.1 503"), answer
    server.release("finish")
    assert read_head(holder).startswith(b"HTTP/1.1 200")
    server.wait_events("worker_start", 4)
    retry = connect(server).sock
    retry.sendall(upgrade_request(server.port))
    websocket = RawWebSocket(retry, read_head(retry).partition(b"\r\n\r\n")[2])
    websocket.send_frame(0x1, b"hello")
    assert websocket.recv_frame() == (0x1, b"hello")
    assert {event["pid"] for event in old} != {event["pid"] for event in server.events("worker_start")[2:]}
