"""The factory: where a send or close for a session goes, from whichever process asks.

Swoole's name for the piece that decides a package's journey. In BASE mode a session lives in the worker that
accepted it: the owner acts at once, any other process forwards the request over the owner's worker pipe.
Every method returns 0 or one of Swoole's error codes; the Server turns that into True/False and
``get_last_error()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import ipc, pipes
from .constants import ErrorCode, EventType

_NOT_EXIST = int(ErrorCode.SESSION_NOT_EXIST)

if TYPE_CHECKING:
    from .server import Server


class BaseFactory:
    def __init__(self, server: Server) -> None:
        self.server = server

    def send(self, session_id: int, data: bytes) -> int:
        worker = self.server._worker
        if worker is not None:
            code = worker.send(session_id, data)
            if code != _NOT_EXIST:
                return code
        return self._forward(session_id, ipc.Message(EventType.SEND_DATA, fd=session_id, data=data))

    def close(self, session_id: int, reset: bool) -> int:
        worker = self.server._worker
        if worker is not None:
            code = worker.close(session_id, reset)
            if code != ErrorCode.SESSION_NOT_EXIST:
                return code
        return self._forward(session_id, ipc.Message(EventType.CLOSE_FORWARD, fd=session_id, ext_flags=int(reset)))

    def pause(self, session_id: int) -> int:
        return self._own_or_forward(session_id, EventType.PAUSE_RECV)

    def resume(self, session_id: int) -> int:
        return self._own_or_forward(session_id, EventType.RESUME_RECV)

    def stop_worker(self, worker_id: int) -> int:
        return self._write(worker_id, ipc.Message(EventType.SHUTDOWN))

    def _own_or_forward(self, session_id: int, kind: EventType) -> int:
        worker = self.server._worker
        if worker is not None and session_id in worker.connections:
            return worker.pause(session_id) if kind == EventType.PAUSE_RECV else worker.resume(session_id)
        return self._forward(session_id, ipc.Message(kind, fd=session_id))

    def _forward(self, session_id: int, message: ipc.Message) -> int:
        server = self.server
        owner = server._shared.session_owner(session_id)
        if owner < 0 or server._worker is not None and owner == server._worker.worker_id:
            return ErrorCode.SESSION_NOT_EXIST
        return self._write(owner, message)

    def _write(self, worker_id: int, message: ipc.Message) -> int:
        server = self.server
        if server._pipes is None:
            return ErrorCode.SESSION_NOT_EXIST
        worker = server._worker
        message.reactor_id = worker.worker_id if worker is not None else -1
        datagrams = ipc.encode(message, server._shared.next_msg_id())
        if worker is not None:
            written = worker.writer_for(worker_id).write(datagrams)
        else:
            written = pipes.send_blocking(server._pipes.master_ends[worker_id], datagrams)
        return 0 if written else ErrorCode.SEND_TO_WORKER_TIMEOUT
