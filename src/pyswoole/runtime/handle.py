"""The compiled core of the user's server handle: the call a callback makes for every package, ``send``.

``pyswoole.server.Server`` stays interpreted (it has Swoole's method aliases, and users subclass it and set
their own attributes), so a method defined there runs as bytecode, in every round trip of an echo. Its base,
this native class, is compiled with the hot path (``setup.py``'s ``COMPILED``) and still lets interpreted
classes derive from it. It holds the runtime and nothing else; everything that is not per package stays in
``server.py``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Final, cast

from mypy_extensions import mypyc_attr

from ..constants import ErrorCode
from .context import Runtime

if TYPE_CHECKING:
    from .worker import WorkerConnection

_NO_PAYLOAD: Final = int(ErrorCode.NO_PAYLOAD)
_NOT_RUNNING: Final = int(ErrorCode.SERVER_NOT_RUNNING)
_get_ident: Final = threading.get_ident


def to_bytes(data: Any) -> bytes:
    """What ``send`` accepts as data: bytes, or str sent as UTF-8 (bytearray and memoryview are copied)."""
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"data must be bytes or str, not {type(data).__name__}")


def send_bytes(rt: Runtime, fd: int, data: bytes) -> int:
    """``send`` on the loop's thread of this process: 0 once the bytes are on their way, else Swoole's error code.
    What else sends a session's bytes per message (``WebSocketServer.push``) comes here too."""
    conn = rt.local_connections.get(fd)
    if conn is not None and conn.writable and data:
        # The hot path: BASE mode's local send, inlined; everything else goes through the factory.
        counters = cast("WorkerConnection", conn).counters  # a BASE worker's sessions are all its own kind
        if not counters.pending:
            counters.moved()
        conn.last_send_time = counters.now
        transport = conn.transport
        assert transport is not None  # a writable connection has its transport
        transport.write(data)
        counters.response += 1
        counters.send_bytes += len(data)
        return 0
    if not data:
        return _NO_PAYLOAD
    if not rt.started:
        return _NOT_RUNNING
    code = rt.factory.send(fd, data)
    if code:
        return code
    sender = rt.worker
    if sender is not None:
        sender.count_send(len(data))
    return 0


@mypyc_attr(allow_interpreted_subclasses=True)
class ServerHandle:
    _rt: Runtime

    def _fail(self, code: int) -> bool:
        self._rt.last_error = int(code)
        return False

    def send(self, fd: int, data: bytes | str, server_socket: int = -1) -> bool:
        """Send to a session; False (see :meth:`get_last_error`) if it is unknown, closed or its buffer is full.

        ``data`` is bytes or str (sent as UTF-8). From any process of the server: the data travels to the
        process or thread that owns the connection.
        """
        rt = self._rt
        loop_thread = rt.loop_thread
        if loop_thread and _get_ident() != loop_thread:
            return bool(rt.in_loop_thread(self.send, fd, data))
        code = send_bytes(rt, fd, data if type(data) is bytes else to_bytes(data))
        if code:
            rt.last_error = code
            return False
        return True
