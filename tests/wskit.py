"""A recording WebSocket server script and the client side of the WebSocket integration tests.

``WS_SERVER`` is a server script body for the ``start_server`` fixture: a ``WebSocketServer`` whose callbacks
record events and answer text messages by convention (``"ask <expr>"`` evaluates ``<expr>`` in the worker and
pushes the JSON result; anything else is echoed back with its opcode). ``ws_connect`` opens a ``websockets``
client; ``raw_upgrade`` opens a plain socket and performs the handshake by hand, for tests that send frames no
real client would.
"""

from __future__ import annotations

import base64
import os
import socket
import struct

WS_SERVER = """
from pyswoole import WebSocketServer, Opcode, Process

server = WebSocketServer("127.0.0.1", 0, getattr(Mode, mode))
report_port(server)
server.set(**settings)

@server.on("WorkerStart")
def on_worker_start(server, worker_id):
    record("worker_start", worker_id=worker_id, taskworker=server.taskworker)

@server.on("Open")
def on_open(server, request):
    record("open", fd=request.fd, worker_id=server.worker_id, path=request.server["path_info"],
           established=server.is_established(request.fd))

@server.on("Message")
def on_message(server, frame):
    record("message", fd=frame.fd, opcode=frame.opcode, flags=frame.flags, data=frame.data,
           code=getattr(frame, "code", None), reason=getattr(frame, "reason", None), worker_id=server.worker_id)
    if frame.opcode == Opcode.TEXT and frame.data.startswith("ask "):
        try:
            value = eval(frame.data[4:], {"server": server, "fd": frame.fd, "os": os, **globals()})
        except Exception as exc:
            value = f"!{type(exc).__name__}: {exc}"
        server.push(frame.fd, json.dumps(value, default=repr))
    elif frame.opcode in (Opcode.TEXT, Opcode.BINARY):
        server.push(frame.fd, frame.data, frame.opcode)

@server.on("Close")
def on_close(server, fd, reactor_id):
    record("close", fd=fd, reactor_id=reactor_id)

@server.on("Request")
def on_request(request, response):
    record("request", fd=request.fd, path=request.server["path_info"])
    response.end("plain http")

if settings.get("task_worker_num"):
    @server.on("Task")
    def on_task(server, task_id, src_worker_id, data):
        fd, text = data
        record("task_push", ok=server.push(fd, text), worker_id=server.worker_id)

def user_process(process):
    while True:
        fd, text = json.loads(process.read())
        record("process_push", ok=server.push(fd, text))

pusher = Process(user_process)
if with_process:
    server.add_process(pusher)

serve(server)
"""


def start_ws_server(start_server, mode: str, with_process: bool = False, **settings):
    """A WS_SERVER in ``mode`` ("BASE" or "PROCESS") with ``settings``."""
    settings.setdefault("worker_num", 1)
    server = start_server(WS_SERVER, mode=mode, settings=settings, with_process=with_process)
    server.wait_events("worker_start", settings["worker_num"] + settings.get("task_worker_num", 0))
    return server


def ws_url(server, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


class RawWebSocket:
    """A hand-driven WebSocket client over a plain socket: send any frame, read the server's frames."""

    def __init__(self, sock: socket.socket, rest: bytes) -> None:
        self.sock = sock
        self.buffer = rest

    def send_frame(self, opcode: int, payload: bytes, fin: bool = True, rsv: int = 0, masked: bool = True) -> None:
        first = (0x80 if fin else 0) | rsv << 4 | opcode
        length = len(payload)
        mask_bit = 0x80 if masked else 0
        if length < 126:
            header = struct.pack("!BB", first, mask_bit | length)
        elif length < 65536:
            header = struct.pack("!BBH", first, mask_bit | 126, length)
        else:
            header = struct.pack("!BBQ", first, mask_bit | 127, length)
        if masked:
            key = os.urandom(4)
            payload = (
                bytes(b ^ key[i % 4] for i, b in enumerate(payload)) if len(payload) < 4096 else _mask(payload, key)
            )
            header += key
        self.sock.sendall(header + payload)

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed with {len(self.buffer)} of {n} bytes")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def recv_frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame from the server (servers never mask)."""
        first, second = self._read(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read(8))
        return first & 0x0F, self._read(length)

    def recv_close(self) -> tuple[int, str]:
        """The code and reason of the server's close frame (skipping other frames)."""
        while True:
            opcode, payload = self.recv_frame()
            if opcode == 8:
                return (struct.unpack("!H", payload[:2])[0], payload[2:].decode()) if payload else (1005, "")

    def eof(self) -> bool:
        """True once the server has closed the TCP connection."""
        try:
            return self.sock.recv(65536) == b""
        except ConnectionResetError:
            return True


def _mask(payload: bytes, key: bytes) -> bytes:
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big")


def upgrade_request(
    port: int, path: str = "/", version: bytes = b"13", key: bytes | None = None, extra: bytes = b""
) -> bytes:
    key = base64.b64encode(os.urandom(16)) if key is None else key
    return (
        b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " % port + key + b"\r\nSec-WebSocket-Version: " + version + b"\r\n" + extra + b"\r\n"
    )


def raw_upgrade(port: int, path: str = "/", extra: bytes = b"") -> RawWebSocket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(upgrade_request(port, path, extra=extra))
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed during the handshake: {response!r}")
        response += chunk
    head, _, rest = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return RawWebSocket(sock, rest)
